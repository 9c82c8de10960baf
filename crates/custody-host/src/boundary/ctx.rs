//! [`DomainCtx`]: the store data of a domain, which is what a host call sees
//! of it: its table, its pre-opens, its policy, the cancellation signal, the
//! current call's deadline and critical regions, the one wait every
//! blocking host call goes through, the checks of a running guest at its
//! epoch ticks (with the throttle of a long call), and the memory cap (the
//! store's `ResourceLimiter`).

use std::cell::{Cell, RefCell};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use custody_handle::{HandleError, HandleId, HandleTable};
use rustix::event::PollFlags;
use rustix::io::Errno;
use wasmtime::{Extern, ModuleExport, ResourceLimiter};

use super::blocked::BlockedIn;
use super::cancel::{Cancel, Interrupt, Reason, Waited};
use super::errno::AbiError;
use super::extensions::{Extensions, StoreState};
use super::preopen::Preopens;
use super::stack::StackSample;
use super::throttle::Throttle;
use crate::config::{OnMemoryLimit, Policy};
use crate::ledger::LedgerCounts;
use crate::log::{self, LogSink};

/// What one table element costs the host, counted against the memory cap.
pub(crate) const TABLE_ELEMENT_BYTES: usize = 8;
/// The most elements any one table may have, cap or no cap.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Counts the host locks a domain's current call holds, and whether one was
/// held when the call was aborted.
#[derive(Debug, Default)]
pub(crate) struct LockCount {
    pub(crate) held: AtomicU32,
    pub(crate) aborted_while_held: AtomicU32,
}

impl LockCount {
    /// Whether the call that just ended was aborted while holding a host
    /// lock (and clears it for the next call).
    pub(crate) fn take_aborted_while_held(&self) -> bool {
        self.aborted_while_held.swap(0, Ordering::AcqRel) != 0
    }

    /// Records an abort, noting whether a host lock was held at that moment.
    pub(crate) fn note_abort(&self) {
        if self.held.load(Ordering::Acquire) > 0 {
            self.aborted_while_held.store(1, Ordering::Release);
        }
    }
}

/// What a domain's store data shares with the domain outside the store:
/// its handle table, the cancellation signal, the ledger's counts, the
/// host locks held, and for the domain's roots the wait a call is blocked
/// in and the running guest's stack. One allocation for them all, made
/// once per domain (a domain is made per request): the domain, its
/// recycled stores and the host locks taken in its calls hold it.
pub(crate) struct CtxShared {
    pub(crate) table: HandleTable,
    pub(crate) blocked: BlockedIn,
    pub(crate) sample: StackSample,
    pub(crate) cancel: Cancel,
    pub(crate) ledger: LedgerCounts,
    pub(crate) host_locks: LockCount,
}

impl CtxShared {
    /// The shared part of a domain whose guests' handles go in `table`.
    pub(crate) fn new(table: HandleTable) -> CtxShared {
        CtxShared {
            table,
            blocked: BlockedIn::default(),
            sample: StackSample::default(),
            cancel: Cancel::default(),
            ledger: LedgerCounts::default(),
            host_locks: LockCount::default(),
        }
    }
}

/// The store data of a domain: what host functions see of it.
///
/// An ABI extension reaches it through [`HostCall`](super::marshal::HostCall):
/// the domain's id, policy and pre-opens, its one cancellable wait, the
/// errno of its last `E_IO`, and the extension's own slot
/// ([`extension`](Self::extension)). Everything else is the core's.
pub struct DomainCtx {
    pub(crate) id: u64,
    /// The handle table, the cancellation signal, the ledger's counts,
    /// the host locks held.
    pub(crate) shared: Arc<CtxShared>,
    pub(crate) preopens: Preopens,
    pub(crate) policy: Arc<Policy>,
    log: LogSink,
    /// How many guest log lines may still go out (the policy's
    /// `log_lines_per_second`).
    log_budget: RefCell<log::LogBudget>,
    /// The errno of the last `E_IO`, for `last_error`.
    pub(crate) last_errno: Cell<i32>,
    /// Open critical regions (and host locks held) in the current call.
    pub(crate) critical_depth: u32,
    /// When the current call must stop, if it has a deadline.
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// With the policy's `throttle_after`: where the current call is.
    throttle: Option<Throttle>,
    /// Running the `custody_unloading` export: aborted host calls return
    /// `E_ABORTED` to it instead of ending it.
    pub(crate) in_unloading_hook: bool,
    /// Linear memory and table elements of all the domain's instances, in
    /// bytes (the memory cap covers both).
    memory_used: usize,
    /// Memories and tables the module being instantiated defines that
    /// wasmtime has not created yet ([`DomainCtx::expect_creations`]).
    creating_memories: u32,
    creating_tables: u32,
    /// Whether the current call's growth past the cap was reported.
    memory_cap_reported: bool,
    /// The `memory` export of each loaded module that has one, resolved
    /// once at load: a host call finds its caller's memory by index, not by
    /// name (see `marshal`). The first instance's is kept apart, so a store
    /// of one instance (most) allocates no list.
    pub(crate) first_memory: Option<ModuleExport>,
    /// The `memory` exports of the instances after the first, in load
    /// order.
    pub(crate) memories: Vec<ModuleExport>,
    /// How many instances the store holds.
    pub(crate) instances: usize,
    /// A module is being instantiated: host calls come from its start
    /// function, whose instance is not among those recorded yet.
    pub(crate) instantiating: bool,
    /// The `memory` export of the module being instantiated, resolved
    /// before its start function runs: its host calls find their memory by
    /// index, as every other call does.
    pub(crate) starting_memory: Option<ModuleExport>,
    /// Arms guest timers for this domain (`timer_set`); set by the domain.
    pub(crate) timers: Option<Arc<dyn super::timer::Timers>>,
    /// The memory of the store's only instance, while it has exactly one:
    /// then every host call comes from that instance and needs no lookup.
    pub(crate) only_memory: Option<Extern>,
    /// What each ABI extension keeps of the domain, one slot a type.
    pub(crate) extensions: Extensions,
}

impl DomainCtx {
    /// The domain's handle table.
    #[inline]
    pub(crate) fn table(&self) -> &HandleTable {
        &self.shared.table
    }

    pub(crate) fn new(
        id: u64,
        shared: Arc<CtxShared>,
        preopens: Preopens,
        policy: Arc<Policy>,
        log: LogSink,
    ) -> Self {
        let log_budget = RefCell::new(log::LogBudget::new(policy.log_lines_per_second));
        let throttle =
            (policy.throttle_after).and_then(|after| Throttle::new(after, policy.throttle_share));
        DomainCtx {
            throttle,
            log_budget,
            id,
            shared,
            preopens,
            policy,
            log,
            last_errno: Cell::new(0),
            critical_depth: 0,
            deadline: None,
            in_unloading_hook: false,
            memory_used: 0,
            creating_memories: 0,
            creating_tables: 0,
            memory_cap_reported: false,
            first_memory: None,
            memories: Vec::new(),
            instances: 0,
            instantiating: false,
            starting_memory: None,
            timers: None,
            only_memory: None,
            // The domain gives the store its own (`new_store`).
            extensions: Extensions::default(),
        }
    }

    /// Sends a guest log line, within the policy's rate; lines past it are
    /// dropped and counted, and the count said before the next line that
    /// passes (or when the domain's store goes).
    pub(crate) fn log_line(&self, level: u8, text: &str) {
        let (admitted, suppressed) = self.log_budget.borrow_mut().admit(Instant::now());
        if let Some(n) = suppressed {
            self.say_suppressed(n);
        }
        if admitted {
            log::guest_line(&self.log, self.id, level, text);
        }
    }

    fn say_suppressed(&self, n: u64) {
        let line = log::suppressed_line(n, self.policy.log_lines_per_second);
        log::guest_line(&self.log, self.id, 1, &line);
    }

    /// Why the current call is being stopped.
    /// At a running guest's epoch check: `Err` stops it (the cancellation
    /// signal is raised, or its deadline has passed); a call past the
    /// policy's `throttle_after` first pauses, in the one wait (which the
    /// signal and the deadline cut short), to keep to its share of a core.
    pub(crate) fn at_epoch(&mut self) -> Result<(), Interrupt> {
        self.still_running()?;
        let pause = self.throttle.as_ref().and_then(|t| t.pause(Instant::now()));
        if let Some(pause) = pause {
            // Cut short by the signal or the deadline: both are seen below.
            let _ = self.wait(&[], pause);
            if let Some(throttle) = &mut self.throttle {
                throttle.resumed(Instant::now());
            }
            self.still_running()?;
        }
        Ok(())
    }

    /// `Err` if the guest must stop now: the signal, or the deadline.
    fn still_running(&self) -> Result<(), Interrupt> {
        if self.shared.cancel.is_raised() {
            return Err(self.interrupt());
        }
        match self.deadline {
            Some((at, limit)) if Instant::now() >= at => Err(Interrupt::Deadline(limit)),
            _ => Ok(()),
        }
    }

    pub(crate) fn interrupt(&self) -> Interrupt {
        match (self.shared.cancel.reason(), self.deadline) {
            (Some(Reason::Unload), _) => Interrupt::Unloading,
            (Some(Reason::Abort), _) | (_, None) => Interrupt::HostAbort,
            (None, Some((_, limit))) => Interrupt::Deadline(limit),
        }
    }

    /// Ends every host call the same way: `E_ABORTED` ends the guest's
    /// call at once, as a trap carrying the reason, except in the unloading
    /// hook, which can still observe it; any other code goes to the guest.
    #[inline]
    pub(crate) fn deliver(&self, error: AbiError) -> Result<AbiError, Interrupt> {
        if error == AbiError::Aborted && !self.in_unloading_hook {
            Err(self.interrupt())
        } else {
            Ok(error)
        }
    }

    /// Records an OS error as the domain's `last_error`; returns `E_IO`.
    pub fn os_error(&self, errno: Errno) -> AbiError {
        self.last_errno.set(errno.raw_os_error());
        AbiError::Io
    }

    /// Records an I/O error's errno (EIO if it has none); returns `E_IO`.
    pub fn io_error(&self, error: &std::io::Error) -> AbiError {
        self.os_error(
            error
                .raw_os_error()
                .map_or(Errno::IO, Errno::from_raw_os_error),
        )
    }

    /// The one way a host call waits: on `fds`, each for its interest (or
    /// only on time), for at most
    /// `wanted`, cut at the call's deadline, and woken at once by the
    /// cancellation signal. A guest blocked in the host never reaches an
    /// epoch check, so the wait itself must end at the deadline.
    ///
    /// `Ok` is `Ready` or the guest's own timeout (`TimedOut`); a
    /// cancellation or the deadline is `E_ABORTED`; an OS error is `E_IO`.
    pub(crate) fn wait(
        &self,
        fds: &[(BorrowedFd<'_>, PollFlags)],
        wanted: Duration,
    ) -> Result<Waited, AbiError> {
        let (timeout, cut_by_deadline) = match self.deadline {
            Some((at, _)) => {
                let left = at.saturating_duration_since(Instant::now());
                (left.min(wanted), left < wanted)
            }
            None => (wanted, false),
        };
        match self.shared.cancel.wait(fds, timeout) {
            Ok(Waited::Cancelled) => Err(AbiError::Aborted),
            Ok(Waited::TimedOut) if cut_by_deadline => Err(AbiError::Aborted),
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(self.io_error(&e)),
        }
    }

    /// Closes a guest's handle: the id is stale at once, what every
    /// extension keeps of it forgotten, and the close counted in the ledger. `Ok(true)` if its
    /// owner (the host) had closed it already: it is removed all the same.
    pub fn close_handle(&mut self, id: HandleId) -> Result<bool, AbiError> {
        // A null or stale id ends here (one `staleHandleUse`, not two).
        let closed_by_owner = match self.table().kind_of(id) {
            Ok(_) => false,
            Err(HandleError::Closed) => true,
            Err(error) => return Err(error.into()),
        };
        let outcome = self.table().close(id);
        if matches!(outcome, Ok(_) | Err(HandleError::ReleaseFailed(_))) {
            LedgerCounts::bump(&self.shared.ledger.closed_by_guest, 1);
            self.extensions.forget(id);
        }
        match outcome {
            Ok(_) => Ok(closed_by_owner),
            Err(HandleError::ReleaseFailed(error)) => Err(self.io_error(&error)),
            Err(error) => Err(error.into()),
        }
    }
}

/// What an ABI extension reads of the domain.
impl DomainCtx {
    /// The domain's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The domain's policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The domain's pre-opened directories.
    pub fn preopens(&self) -> &Preopens {
        &self.preopens
    }

    /// The errno of the domain's last `E_IO` (what `last_error` returns).
    pub fn last_errno(&self) -> i32 {
        self.last_errno.get()
    }

    /// This domain's slot of the extension whose store state is `T`, if
    /// the host has that extension.
    #[inline]
    pub fn extension<T: StoreState>(&self) -> Option<&T> {
        self.extensions.get()
    }

    /// [`extension`](Self::extension), mutably.
    #[inline]
    pub fn extension_mut<T: StoreState>(&mut self) -> Option<&mut T> {
        self.extensions.get_mut()
    }
}

impl Drop for DomainCtx {
    /// The domain's store goes (unload, recycle): lines suppressed since
    /// the last one that passed are said now.
    fn drop(&mut self) {
        if let Some(n) = self.log_budget.get_mut().take_suppressed() {
            self.say_suppressed(n);
        }
    }
}

impl DomainCtx {
    /// Records a new instance and its `memory` export, if it has one.
    pub(crate) fn add_instance(&mut self, memory: Option<(ModuleExport, Extern)>) {
        self.instances += 1;
        self.only_memory = None;
        if let Some((export, memory)) = memory {
            if self.instances == 1 {
                self.only_memory = Some(memory);
                self.first_memory = Some(export);
            } else {
                self.memories.push(export);
            }
        }
    }
}

impl DomainCtx {
    /// Linear memory and table bytes the domain's instances hold now (what
    /// the memory cap counts).
    pub(crate) fn memory_used(&self) -> usize {
        self.memory_used
    }

    /// Counts `bytes` against the memory cap ahead of time (a shared
    /// memory's growth, which wasmtime does not report to the limiter).
    /// `Err` is the cap it would pass.
    pub(crate) fn reserve_memory(&mut self, bytes: usize) -> Result<(), usize> {
        let grown = self.memory_used.saturating_add(bytes);
        match self.policy.memory_limit {
            Some(limit) if grown > limit => Err(limit),
            _ => {
                self.memory_used = grown;
                Ok(())
            }
        }
    }

    /// Gives back a reservation whose instance never came to be.
    pub(crate) fn unreserve_memory(&mut self, bytes: usize) {
        self.memory_used = self.memory_used.saturating_sub(bytes);
    }
}

impl DomainCtx {
    /// Counts the memories and tables `module` defines: wasmtime creates
    /// each through the limiter (current size 0) before its start function
    /// runs, and a creation past the cap fails the load, whatever the
    /// policy's `on_memory_limit`.
    pub(crate) fn expect_creations(&mut self, module: &wasmtime::Module) {
        let required = module.resources_required();
        self.creating_memories = required.num_memories;
        self.creating_tables = required.num_tables;
    }

    /// The instantiation is over (created, or failed part way).
    pub(crate) fn end_creations(&mut self) {
        self.creating_memories = 0;
        self.creating_tables = 0;
    }

    /// A new call (or start function) begins: its first growth past the cap
    /// is reported again.
    pub(crate) fn begin_call(&mut self) {
        self.memory_cap_reported = false;
        if let Some(throttle) = &mut self.throttle {
            throttle.begin(Instant::now());
        }
    }

    /// Growth by `added` bytes of a `kind` (memory or table) goes past the
    /// cap of `limit` bytes: the creation of a module's own memory or table
    /// fails its load, and a grow fails as `on_memory_limit` says (-1, or
    /// the call aborted). A -1 is reported once per call.
    fn past_cap(
        &mut self,
        kind: &str,
        creating: bool,
        added: usize,
        limit: usize,
    ) -> wasmtime::Result<bool> {
        if creating || self.policy.on_memory_limit == OnMemoryLimit::Abort {
            return Err(Interrupt::MemoryLimit(limit).into());
        }
        if !std::mem::replace(&mut self.memory_cap_reported, true) {
            let (domain, used) = (self.id, self.memory_used);
            diagnostics::fire(Assistant::MemoryLimitReached, || {
                let mut diagnostic = Diagnostic::new(
                    Assistant::MemoryLimitReached,
                    format!(
                        "domain {domain} reached its memory limit of {limit} bytes: a {kind}.grow of {added} bytes, with {used} in use, returned -1 (further failed growth in this call is not reported)"
                    ),
                )
                .with_detail(serde_json::json!({
                    "grow": kind,
                    "requested_bytes": added,
                    "used_bytes": used,
                    "limit_bytes": limit,
                }));
                diagnostic.domain = Some(domain);
                diagnostic.reason = Some(Interrupt::MemoryLimit(limit).to_string());
                diagnostic
            });
        }
        Ok(false)
    }

    /// Whether a growth from `current` is the creation of a memory or table
    /// the module being instantiated defines (counting it off).
    fn creation(current: usize, pending: &mut u32) -> bool {
        let creating = current == 0 && *pending > 0;
        if creating {
            *pending -= 1;
        }
        creating
    }
}

impl ResourceLimiter for DomainCtx {
    /// Growth past the cap fails as the policy's `on_memory_limit` says:
    /// `Ok(false)` makes `memory.grow` return -1 (WebAssembly's own
    /// failure), an error aborts the call from inside the instruction.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let creating = Self::creation(current, &mut self.creating_memories);
        let added = desired.saturating_sub(current);
        let grown = self.memory_used.saturating_add(added);
        if let Some(limit) = self.policy.memory_limit
            && grown > limit
        {
            return self.past_cap("memory", creating, added, limit);
        }
        self.memory_used = grown;
        Ok(true)
    }

    /// Tables count against the same cap as memories, at the host memory
    /// their elements take (`TABLE_ELEMENT_BYTES`, 8 each): a guest cannot
    /// spend host memory through tables that it could not through memory.
    /// Past the cap, as for memories.
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let creating = Self::creation(current, &mut self.creating_tables);
        let added = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        let grown = self.memory_used.saturating_add(added);
        if let Some(limit) = self.policy.memory_limit
            && grown > limit
        {
            return self.past_cap("table", creating, added, limit);
        }
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.memory_used = grown;
        Ok(true)
    }
}
