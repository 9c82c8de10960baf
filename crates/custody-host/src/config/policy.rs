//! The reliability policy: how long hosted code may wait, how many handles it
//! may hold, and what it may touch (host protection).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a host function touches, after .NET's `HostProtectionAttribute`
/// categories. A module importing a function whose category the policy denies
/// fails to load, with an error naming the import and the category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum Category {
    /// Waits and synchronizes (sleep, poll, pipes, critical regions).
    Synchronization,
    /// Touches state shared across domains.
    SharedState,
    /// Creates or manages other processes.
    ExternalProcessMgmt,
    /// Affects the host process itself (exit, signals).
    SelfAffectingProcessMgmt,
    /// Creates or manages threads.
    ExternalThreading,
    /// Affects the calling thread.
    SelfAffectingThreading,
    /// Touches security settings.
    SecurityInfrastructure,
    /// User interface.
    UI,
    /// Acquires OS resources that an abort at the wrong moment could leak
    /// (custody's handle marshalling makes these safe; a policy may still
    /// deny them).
    MayLeakOnAbort,
    /// Reads the HTTP request a plugin serves or shapes its response
    /// (`custody serve`'s `custody_http` functions).
    Http,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 10] = [
        Category::Synchronization,
        Category::SharedState,
        Category::ExternalProcessMgmt,
        Category::SelfAffectingProcessMgmt,
        Category::ExternalThreading,
        Category::SelfAffectingThreading,
        Category::SecurityInfrastructure,
        Category::UI,
        Category::MayLeakOnAbort,
        Category::Http,
    ];

    /// The name used in policies and messages.
    pub fn name(self) -> &'static str {
        match self {
            Category::Synchronization => "Synchronization",
            Category::SharedState => "SharedState",
            Category::ExternalProcessMgmt => "ExternalProcessMgmt",
            Category::SelfAffectingProcessMgmt => "SelfAffectingProcessMgmt",
            Category::ExternalThreading => "ExternalThreading",
            Category::SelfAffectingThreading => "SelfAffectingThreading",
            Category::SecurityInfrastructure => "SecurityInfrastructure",
            Category::UI => "UI",
            Category::MayLeakOnAbort => "MayLeakOnAbort",
            Category::Http => "Http",
        }
    }

    /// The category with this name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Category> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the host does when a call fails (traps, or is aborted by a deadline,
/// a memory or stack limit, the host, or an unload).
///
/// .NET's escalation policy (abort the thread, then unload the AppDomain),
/// minus the rungs that take down the process: custody never has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// End the call; the domain goes on with its state and handles.
    AbortCall,
    /// End the call, release every handle of the domain and drop its
    /// instances; re-create them from the same modules if
    /// [`Escalation::recreate`] is set.
    RecycleDomain,
    /// End the call and unload the domain for good.
    UnloadDomain,
}

impl Action {
    /// The name used in policy files (`abort-call`, `recycle-domain`,
    /// `unload-domain`).
    pub fn name(self) -> &'static str {
        match self {
            Action::AbortCall => "abort-call",
            Action::RecycleDomain => "recycle-domain",
            Action::UnloadDomain => "unload-domain",
        }
    }
}

/// The escalation ladder. It only ever escalates: a failure inside a critical
/// region is handled at least as severely as one outside (checked by
/// [`Policy::validate`]), and no rung reaches the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escalation {
    /// A failure outside any critical region. Default: abort the call.
    pub outside_critical: Action,
    /// A failure inside a critical region (`critical_enter`) or while the
    /// guest holds a host lock: the guest's own state may be half-updated.
    /// Default: recycle the domain.
    pub inside_critical: Action,
    /// A call that returned with a critical region still open (an orphaned
    /// lock). Default: recycle the domain.
    pub orphaned_critical: Action,
    /// After a recycle, re-create the domain's instances from the same
    /// modules (fresh state, no handles). Default: true.
    pub recreate: bool,
    /// What [`Domain::unload`](crate::Domain::unload) does when the roots
    /// still hold the domain after `unload_timeout`. Default: force.
    pub unload_blocked: UnloadBlockedAction,
}

/// What an unload does when roots still hold the domain after the policy's
/// `unload_timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum UnloadBlockedAction {
    /// Force the unload: calls aborted, refs invalidated (SPEC D1).
    #[default]
    Force,
    /// Keep waiting, firing `domainLeaked` once a minute.
    Wait,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            outside_critical: Action::AbortCall,
            inside_critical: Action::RecycleDomain,
            orphaned_critical: Action::RecycleDomain,
            recreate: true,
            unload_blocked: UnloadBlockedAction::Force,
        }
    }
}

/// What a guest's growth past the memory cap ([`Policy::memory_limit`])
/// does. Either way the growth does not happen, and `memoryLimitReached`
/// (once per call) or `callAborted` says the cap was reached. Memories and
/// tables a module declares are checked when it is instantiated: past the
/// cap the load fails, whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OnMemoryLimit {
    /// `memory.grow` and `table.grow` return -1, as the WebAssembly
    /// standard has them fail: the guest handles it (`malloc` returns
    /// NULL), and its call goes on.
    #[default]
    FailGrow,
    /// The call is aborted from inside the `memory.grow` or `table.grow`
    /// ([`CallError::Aborted`](crate::CallError::Aborted), "the memory
    /// limit of … bytes was reached"): for guests that would ignore the -1.
    Abort,
}

impl OnMemoryLimit {
    /// The name used in policy files (`fail-grow`, `abort`).
    pub fn name(self) -> &'static str {
        match self {
            OnMemoryLimit::FailGrow => "fail-grow",
            OnMemoryLimit::Abort => "abort",
        }
    }
}

/// The smallest [`Policy::throttle_share`]: below it a throttled call's
/// pause outlasts `roots()`'s wait for the guest's next epoch check (its
/// stack would not be sampled).
pub const MIN_THROTTLE_SHARE: u8 = 10;

/// The policy a [`Host`](crate::Host) applies to every domain.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long one call into a domain may run (guest code and host waits
    /// together); past it the call is aborted ([`CallError::Aborted`]).
    /// `None`: no deadline. Default: `None`.
    ///
    /// [`CallError::Aborted`]: crate::CallError::Aborted
    pub deadline: Option<Duration>,
    /// The longest any blocking host call may wait (`sleep`, `poll`, a read
    /// on an empty pipe). A guest asking for more is refused with `E_DENIED`
    /// rather than silently cut short, so it never believes it waited longer
    /// than it did; a read or write that blocks this long returns
    /// `E_TIMEDOUT`. Default 10 s.
    pub max_wait: Duration,
    /// Whether `poll` may wait with no timeout (`-1`). Default false: an
    /// infinite wait is `E_DENIED`. Even when granted, abort, deadline and
    /// unload end it at once.
    pub allow_infinite_wait: bool,
    /// The most linear memory, in bytes, all of a domain's instances together
    /// may have (table elements count too); what growing past it does is
    /// `on_memory_limit`'s. `None`: wasmtime's limits only. Default: `None`.
    pub memory_limit: Option<usize>,
    /// What a `memory.grow` or `table.grow` past `memory_limit` does.
    /// Default [`OnMemoryLimit::FailGrow`]: it returns -1, as WebAssembly
    /// says, and the guest handles it (`malloc` returns NULL).
    pub on_memory_limit: OnMemoryLimit,
    /// The most native stack a guest call may use (wasmtime's
    /// `max_wasm_stack`); deeper recursion aborts the call. Default 512 KiB.
    pub stack_limit: usize,
    /// The most handles one domain may hold (`E_QUOTA` beyond). Default 4096.
    pub handle_quota: usize,
    /// The shortest delay and period of a guest timer (`timer_set`): a
    /// shorter one is raised to it (not refused: a guest asking for 1 ms
    /// gets a timer that fires as often as the host allows). It bounds how
    /// often one timer can take the domain's store and a timer worker.
    /// Default 10 ms; 0 sets no floor.
    pub timer_min_period: Duration,
    /// How long a guest's `custody_unloading` export may run. Default 1 s.
    pub unload_hook_timeout: Duration,
    /// How long [`Domain::unload`](crate::Domain::unload) waits for a
    /// cooperative unload to complete before `escalation.unload_blocked`
    /// applies. Default 10 s.
    pub unload_timeout: Duration,
    /// How long a cooperative unload may take before `unloadBlocked`
    /// reports what holds it; also how long a forced unload waits for the
    /// call in flight to return before it reports it abandoned. Default 1 s.
    pub unload_grace: Duration,
    /// A call running longer than this is throttled to
    /// [`throttle_share`](Self::throttle_share) percent of a core: at each
    /// epoch check it pauses (in the domain's cancellable wait) for what it
    /// ran times `(100 - share) / share`, so a guest that spins leaves the
    /// other domains the CPU. `None` (the default): never.
    pub throttle_after: Option<Duration>,
    /// The percent of a core a throttled call gets,
    /// [`MIN_THROTTLE_SHARE`] to 100 (100: not throttled). Default 25.
    pub throttle_share: u8,
    /// Categories no imported host function may carry.
    pub denied: Vec<Category>,
    /// What failures escalate to.
    pub escalation: Escalation,
    /// How guest memories and instances are allocated (engine-wide: the
    /// host's policy decides). Default: [`Allocation::Pooling`].
    pub allocation: Allocation,
    /// With [`Allocation::Pooling`]: how many instances (and as many
    /// memories and tables) may be live at once in the host. Default 1000.
    pub pool_size: u32,
    /// With [`Allocation::Pooling`]: how many bytes at the start of each
    /// pooled memory and table a freed slot keeps resident, zeroed with
    /// `memset` for the next instance, rather than handed back to the
    /// kernel (the rest is, with `madvise`). A small guest's memory is
    /// then reset without a system call, page faults or the cross-CPU TLB
    /// flushes a multi-threaded `madvise` costs, which is most of what a
    /// per-request server's kernel time goes to; the price is up to this
    /// much resident memory per pool slot used recently (wasmtime's
    /// `linear_memory_keep_resident` and `table_keep_resident`). Default
    /// 64 KiB, one wasm page; at most [`MAX_POOL_KEEP_RESIDENT`].
    pub pool_keep_resident: usize,
    /// Structural limits checked on a module's bytes before it is compiled,
    /// so that untrusted bytes cannot drive the compiler's time and memory
    /// without bound.
    pub compile_limits: CompileLimits,
    /// The most memory compiling one module may take, in bytes, as
    /// estimated from its shape before compiling (the largest function
    /// bodies, compiled in parallel, and the total code size; see
    /// docs/RELIABILITY.md for the measured costs). A module past it is
    /// [`LoadError::Limits`](crate::LoadError::Limits). Default 1 GiB.
    pub compile_memory_limit: usize,
    /// How long compiling one module may take. Past it the load fails with
    /// [`LoadError::Limits`](crate::LoadError::Limits) at once; the
    /// compiler cannot be stopped, so it finishes on its own thread (bounded
    /// by the structural limits) and the host refuses other compilations
    /// until it has. Default 60 s.
    pub compile_timeout: Duration,
    /// Whether guests may use WebAssembly threads' shared memories (and so
    /// `memory.atomic.wait`). Default false: a module with a shared memory
    /// is refused at load, since a wait inside wasmtime is out of custody's
    /// reach. When true, a shared memory counts against the memory cap at
    /// its declared maximum from the start (its growth never reaches the
    /// cap's accounting), it must be exported, every atomic wait is cut at
    /// the deadline and woken by the cancellation signal, and the host
    /// allocates on demand (the pooling allocator cannot hold shared
    /// memories).
    pub threads: bool,
    /// How many log lines a domain's guests may write per second (a window
    /// of one second); the rest are dropped, and a line saying how many
    /// stands for them. Default 100.
    pub log_lines_per_second: u32,
    /// How many compiled modules the host keeps, keyed by content, so that
    /// compiling the same bytes again (a reload, another domain) costs a
    /// hash; and how many it keeps prepared for instantiation (imports
    /// resolved once). Each entry keeps its module alive: its code mapped
    /// and, if it initializes memory, a memfd (wasmtime's copy-on-write
    /// image), so this bounds the fds and memory the caches hold
    /// ([`Host::cache_stats`](crate::Host::cache_stats)): at most twice
    /// this many modules, when every prepared one has left the module
    /// cache. Default 256; 0 turns both caches off.
    pub module_cache_entries: usize,
    /// Whether guests may import WASI preview 1 (`wasi_snapshot_preview1`).
    /// Default true; false: a module importing any of its functions fails
    /// to load ([`LoadError::DeniedModule`](crate::LoadError::DeniedModule)),
    /// and custody-wasi makes no WASI state for the domain (no streams
    /// opened, no captures).
    pub wasi: bool,
    /// The most bytes a WASI stdout or stderr capture buffer holds until
    /// the embedder drains it (custody-wasi's `WasiDomain::take_stdout`);
    /// writes past it fail with `EFBIG` (and a warning). Default 1 MiB.
    pub stdio_capture_limit: usize,
}

/// Structural limits on a module, checked before compiling it (after the
/// limits the JavaScript embedding of WebAssembly sets, plus a nesting
/// depth, which is what drives a compiler's memory). A module past one is
/// [`LoadError::Limits`](crate::LoadError::Limits), naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Bytes of the module (binary). Default 1 GiB.
    pub module_bytes: usize,
    /// Functions defined. Default 1,000,000.
    pub functions: u32,
    /// Bytes of one function body. Default 7,654,321.
    pub function_body_bytes: usize,
    /// Locals of one function. Default 50,000.
    pub locals: u32,
    /// Blocks, loops and ifs open at once in one function. Default 1,024.
    pub nesting_depth: u32,
    /// Imports plus exports. Default 200,000.
    pub imports_and_exports: u32,
    /// Tables. Default 100,000.
    pub tables: u32,
    /// Data segments. Default 100,000.
    pub data_segments: u32,
    /// Element segments. Default 10,000,000.
    pub element_segments: u32,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            module_bytes: 1 << 30,
            functions: 1_000_000,
            function_body_bytes: 7_654_321,
            locals: 50_000,
            nesting_depth: 1024,
            imports_and_exports: 200_000,
            tables: 100_000,
            data_segments: 100_000,
            element_segments: 10_000_000,
        }
    }
}

/// How a host allocates guest instances and their linear memories.
///
/// Each is a trade between instantiation speed, memory-access speed and how
/// many domains one process can hold (docs/PERFORMANCE.md measures all
/// three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Allocation {
    /// wasmtime's pooling allocator, sized from the policy (`pool_size`
    /// slots, each memory slot reserving `memory_limit`): creating and
    /// instantiating a domain reuses a slot instead of calling `mmap`. If
    /// the machine cannot reserve the pool's address space, the host falls
    /// back to [`Allocation::OnDemand`] and says so in a diagnostic.
    #[default]
    Pooling,
    /// One `mmap` reservation per memory, with guard pages (wasmtime's
    /// default): fast memory accesses, but every memory costs its
    /// reservation of address space and a few kernel memory maps.
    OnDemand,
    /// Memories on the heap, with explicit bounds checks and no reservation
    /// or guard region: the most domains per process (no memory map per
    /// memory, so the kernel's limit of 65,530 maps does not bind), at the
    /// cost of a bounds check on every memory access.
    Dense,
}

impl Allocation {
    /// The name used in policy files (`pooling`, `on-demand`, `dense`).
    pub fn name(self) -> &'static str {
        match self {
            Allocation::Pooling => "pooling",
            Allocation::OnDemand => "on-demand",
            Allocation::Dense => "dense",
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            deadline: None,
            max_wait: Duration::from_secs(10),
            allow_infinite_wait: false,
            memory_limit: None,
            on_memory_limit: OnMemoryLimit::default(),
            stack_limit: 512 * 1024,
            handle_quota: 4096,
            timer_min_period: Duration::from_millis(10),
            unload_hook_timeout: Duration::from_secs(1),
            unload_timeout: Duration::from_secs(10),
            unload_grace: Duration::from_secs(1),
            throttle_after: None,
            throttle_share: 25,
            denied: Vec::new(),
            escalation: Escalation::default(),
            allocation: Allocation::default(),
            pool_size: 1000,
            pool_keep_resident: 64 << 10,
            module_cache_entries: 256,
            compile_limits: CompileLimits::default(),
            compile_memory_limit: 1 << 30,
            compile_timeout: Duration::from_secs(60),
            threads: false,
            log_lines_per_second: 100,
            wasi: true,
            stdio_capture_limit: 1 << 20,
        }
    }
}

/// The most [`Policy::pool_keep_resident`] may be: a 32-bit memory's whole
/// size (4 GiB).
pub const MAX_POOL_KEEP_RESIDENT: usize = 1 << 32;

/// A policy that contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyError(pub String);

/// What `-1` becomes when the policy grants an infinite wait: long enough
/// never to end by itself, short enough for `poll(2)`'s timespec.
const FOREVER: Duration = crate::deadline::NEVER;

impl Policy {
    /// Checks that the policy is consistent: the ladder only escalates, the
    /// limits are usable.
    ///
    /// # Errors
    /// A [`PolicyError`] saying what is wrong.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let e = &self.escalation;
        if e.inside_critical < e.outside_critical || e.orphaned_critical < e.outside_critical {
            return Err(PolicyError(format!(
                "the escalation ladder must only escalate: inside a critical region ({}) and orphaned regions ({}) must be handled at least as severely as outside ({})",
                e.inside_critical.name(),
                e.orphaned_critical.name(),
                e.outside_critical.name()
            )));
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err(PolicyError("deadline: 0 would abort every call".into()));
        }
        if self.stack_limit < 16 * 1024 {
            return Err(PolicyError(format!(
                "stack_limit: {} bytes is too small to call anything",
                self.stack_limit
            )));
        }
        if self.pool_keep_resident > MAX_POOL_KEEP_RESIDENT {
            // wasmtime would refuse the engine, and the refusal would read
            // as a pool too large to reserve (the fallback to on demand).
            return Err(PolicyError(format!(
                "pool_keep_resident: {} bytes is more than a 32-bit memory holds ({MAX_POOL_KEEP_RESIDENT} bytes)",
                self.pool_keep_resident
            )));
        }
        if self.allocation == Allocation::Pooling && self.pool_size == 0 {
            return Err(PolicyError(
                "pool_size: 0 instances would refuse every domain".into(),
            ));
        }
        if self.log_lines_per_second == 0 {
            return Err(PolicyError(
                "log_lines_per_second: 0 would drop every guest log line".into(),
            ));
        }
        if !(MIN_THROTTLE_SHARE..=100).contains(&self.throttle_share) {
            return Err(PolicyError(format!(
                "throttle_share: {} is not a percent of a core from {MIN_THROTTLE_SHARE} to 100",
                self.throttle_share
            )));
        }
        if self.compile_timeout.is_zero() {
            return Err(PolicyError(
                "compile_timeout: 0 would refuse every module".into(),
            ));
        }
        if self.handle_quota == 0 {
            return Err(PolicyError(
                "handle_quota: 0 would refuse every handle".into(),
            ));
        }
        Ok(())
    }

    /// The wait a guest's `ms` argument is allowed, or `None` if the policy
    /// refuses it (infinite without the grant, or above `max_wait`).
    pub fn wait_for(&self, ms: i32) -> Option<Duration> {
        match ms {
            -1 => self.wait_up_to(None),
            ms if ms < 0 => None,
            ms => self.wait_up_to(Some(Duration::from_millis(ms as u64))),
        }
    }

    /// The wait a guest may have for `wanted` (`None`: no end), or `None`
    /// if the policy refuses it (the rule of [`wait_for`](Self::wait_for)).
    pub fn wait_up_to(&self, wanted: Option<Duration>) -> Option<Duration> {
        match wanted {
            None if self.allow_infinite_wait => Some(FOREVER),
            None => None,
            Some(wait) => Some(wait).filter(|d| *d <= self.max_wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_finite_and_capped_unless_granted() {
        let policy = Policy::default();
        assert_eq!(policy.wait_for(0), Some(Duration::ZERO));
        assert_eq!(policy.wait_for(10_000), Some(Duration::from_secs(10)));
        assert_eq!(policy.wait_for(10_001), None);
        assert_eq!(policy.wait_for(-1), None);
        let granted = Policy {
            allow_infinite_wait: true,
            ..Policy::default()
        };
        assert!(granted.wait_for(-1).unwrap() > Duration::from_secs(3600));
    }

    #[test]
    fn the_ladder_only_escalates() {
        assert!(Policy::default().validate().is_ok());
        let backwards = Policy {
            escalation: Escalation {
                outside_critical: Action::RecycleDomain,
                inside_critical: Action::AbortCall,
                ..Escalation::default()
            },
            ..Policy::default()
        };
        let error = backwards.validate().unwrap_err();
        assert!(error.to_string().contains("only escalate"), "{error}");
        assert!(Action::AbortCall < Action::RecycleDomain);
        assert!(Action::RecycleDomain < Action::UnloadDomain);
        let zero = Policy {
            deadline: Some(Duration::ZERO),
            ..Policy::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::from_name(c.name()), Some(c));
        }
        assert_eq!(
            Category::from_name("synchronization"),
            Some(Category::Synchronization)
        );
        assert_eq!(Category::from_name("nope"), None);
    }
}
