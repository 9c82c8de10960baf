//! The policy file format (TOML): every key optional, defaults for the rest.
//! Unknown keys are errors, so a typo never silently loosens a policy. The
//! keys are read into [`PolicyOverrides`], which applies them over any
//! policy (the defaults, for a policy file; the host's, for a domain's).

use std::time::Duration;

use serde::Deserialize;

use super::policy::{
    Action, Allocation, Category, CompileLimits, OnMemoryLimit, Policy, PolicyError,
    UnloadBlockedAction,
};
use super::size::deserialize_size;

/// A policy file: every key optional, defaults for the rest; durations in
/// milliseconds, sizes in bytes (or, for `memory_limit`, as text such as
/// `"64MiB"`). Unknown keys are errors (a typo must not silently loosen a
/// policy).
///
/// ```toml
/// deadline_ms = 2000
/// max_wait_ms = 10000
/// allow_infinite_wait = false
/// memory_limit_bytes = 67108864
/// stack_limit_bytes = 524288
/// handle_quota = 4096
/// timer_min_period_ms = 10
/// unload_hook_timeout_ms = 1000
/// deny = ["ExternalProcessMgmt"]
/// allocation = "pooling"
///
/// [escalation]
/// outside_critical = "abort-call"
/// inside_critical = "recycle-domain"
/// orphaned_critical = "recycle-domain"
/// recreate = true
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    deadline_ms: Option<u64>,
    max_wait_ms: Option<u64>,
    allow_infinite_wait: Option<bool>,
    memory_limit_bytes: Option<usize>,
    #[serde(default, deserialize_with = "deserialize_size")]
    memory_limit: Option<usize>,
    on_memory_limit: Option<OnMemoryLimit>,
    stack_limit_bytes: Option<usize>,
    handle_quota: Option<usize>,
    timer_min_period_ms: Option<u64>,
    unload_hook_timeout_ms: Option<u64>,
    unload_timeout_ms: Option<u64>,
    unload_grace_ms: Option<u64>,
    throttle_after_ms: Option<u64>,
    throttle_share: Option<u8>,
    deny: Option<Vec<String>>,
    escalation: Option<EscalationFile>,
    allocation: Option<Allocation>,
    pool_size: Option<u32>,
    #[serde(default, deserialize_with = "deserialize_size")]
    pool_keep_resident: Option<usize>,
    module_cache_entries: Option<usize>,
    threads: Option<bool>,
    log_lines_per_second: Option<u32>,
    compile_memory_limit_bytes: Option<usize>,
    compile_timeout_ms: Option<u64>,
    compile_limits: Option<CompileLimitsFile>,
    wasi: Option<bool>,
    #[serde(default, deserialize_with = "deserialize_size")]
    stdio_capture_limit: Option<usize>,
}

/// `[compile_limits]`: the structural limits, each optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompileLimitsFile {
    module_bytes: Option<usize>,
    functions: Option<u32>,
    function_body_bytes: Option<usize>,
    locals: Option<u32>,
    nesting_depth: Option<u32>,
    imports_and_exports: Option<u32>,
    tables: Option<u32>,
    data_segments: Option<u32>,
    element_segments: Option<u32>,
}

/// Pushes the name of each field that is set, with a prefix.
macro_rules! set_keys {
    ($keys:ident, $from:expr, $prefix:literal: $($field:ident),*) => {
        $( if $from.$field.is_some() { $keys.push(concat!($prefix, stringify!($field))); } )*
    };
}

impl CompileLimitsFile {
    fn apply(&self, to: &mut CompileLimits) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { to.$field = v; } )* };
        }
        set!(
            module_bytes,
            functions,
            function_body_bytes,
            locals,
            nesting_depth,
            imports_and_exports,
            tables,
            data_segments,
            element_segments
        );
    }

    fn keys(&self, keys: &mut Vec<&'static str>) {
        set_keys!(keys, self, "compile_limits.": module_bytes, functions, function_body_bytes,
            locals, nesting_depth, imports_and_exports, tables, data_segments, element_segments);
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationFile {
    outside_critical: Option<Action>,
    inside_critical: Option<Action>,
    orphaned_critical: Option<Action>,
    recreate: Option<bool>,
    unload_blocked: Option<UnloadBlockedAction>,
}

/// The keys of the policy file that configure the host's engine, the same
/// for every domain: only the host's policy sets them (a table `[name]`
/// stands for each of its keys).
pub const ENGINE_WIDE_KEYS: [&str; 9] = [
    "stack_limit_bytes",
    "allocation",
    "pool_size",
    "pool_keep_resident",
    "module_cache_entries",
    "threads",
    "compile_memory_limit_bytes",
    "compile_timeout_ms",
    "[compile_limits]",
];

/// The keys of a policy in TOML (the policy file's format, see
/// [`Policy::from_toml`]), read but not yet applied: each key that is set
/// replaces that value of the [`Policy`] it is applied to, and every key
/// that is not set keeps it. A domain's `[policy]` table in a
/// [`Manifest`](crate::Manifest) is read as one, and applied over the
/// host's policy.
///
/// ```
/// use std::time::Duration;
/// use custody_host::{Policy, PolicyOverrides};
///
/// let host = Policy { max_wait: Duration::from_secs(2), ..Policy::default() };
/// let overrides = PolicyOverrides::from_toml("deadline_ms = 500\nmemory_limit = \"64MiB\"")?;
/// let mut domain = host.clone();
/// overrides.apply_to(&mut domain)?;
/// assert_eq!(domain.deadline, Some(Duration::from_millis(500)));
/// assert_eq!(domain.memory_limit, Some(64 << 20));
/// assert_eq!(domain.max_wait, Duration::from_secs(2), "the rest is the host's");
/// assert_eq!(overrides.keys(), ["deadline_ms", "memory_limit"]);
/// # Ok::<(), custody_host::PolicyError>(())
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct PolicyOverrides {
    file: PolicyFile,
}

impl PolicyOverrides {
    /// Reads the keys from TOML, in the policy file's format.
    ///
    /// # Errors
    /// A [`PolicyError`] naming an unknown key or a value of the wrong type.
    pub fn from_toml(text: &str) -> Result<PolicyOverrides, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError(e.message().to_string()))
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }

    /// The keys that are set, as the file writes them (a key of a table as
    /// `table.key`), in the file format's order.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let file = &self.file;
        set_keys!(keys, file, "": deadline_ms, max_wait_ms, allow_infinite_wait,
            memory_limit_bytes, memory_limit, on_memory_limit, stack_limit_bytes, handle_quota,
            timer_min_period_ms, unload_hook_timeout_ms, unload_timeout_ms, unload_grace_ms,
            throttle_after_ms, throttle_share, deny);
        if let Some(e) = &file.escalation {
            set_keys!(keys, e, "escalation.": outside_critical, inside_critical,
                orphaned_critical, recreate, unload_blocked);
        }
        set_keys!(keys, file, "": allocation, pool_size, pool_keep_resident, module_cache_entries, threads,
            log_lines_per_second, compile_memory_limit_bytes, compile_timeout_ms, wasi,
            stdio_capture_limit);
        if let Some(limits) = &file.compile_limits {
            limits.keys(&mut keys);
        }
        keys
    }

    /// The keys that are set and configure the engine
    /// ([`ENGINE_WIDE_KEYS`]): a domain's policy may not set them.
    pub fn engine_wide_keys(&self) -> Vec<&'static str> {
        self.keys()
            .into_iter()
            .filter(|key| ENGINE_WIDE_KEYS.contains(key) || key.starts_with("compile_limits."))
            .collect()
    }

    /// Applies the keys that are set to `policy`, key by key (`deny`
    /// replaces the list), and validates the result. On an error `policy`
    /// is left as it was.
    ///
    /// # Errors
    /// A [`PolicyError`] for an unknown category, both `memory_limit` and
    /// `memory_limit_bytes`, or a policy that does not validate.
    pub fn apply_to(&self, policy: &mut Policy) -> Result<(), PolicyError> {
        let file = &self.file;
        let mut new = policy.clone();
        let ms = Duration::from_millis;
        if let Some(ms) = file.deadline_ms {
            new.deadline = Some(Duration::from_millis(ms));
        }
        new.max_wait = file.max_wait_ms.map_or(new.max_wait, ms);
        new.allow_infinite_wait = file.allow_infinite_wait.unwrap_or(new.allow_infinite_wait);
        if file.memory_limit.is_some() && file.memory_limit_bytes.is_some() {
            return Err(PolicyError(
                "memory_limit and memory_limit_bytes both set the memory limit: keep one".into(),
            ));
        }
        if let Some(bytes) = file.memory_limit.or(file.memory_limit_bytes) {
            new.memory_limit = Some(bytes);
        }
        new.on_memory_limit = file.on_memory_limit.unwrap_or(new.on_memory_limit);
        new.stack_limit = file.stack_limit_bytes.unwrap_or(new.stack_limit);
        new.handle_quota = file.handle_quota.unwrap_or(new.handle_quota);
        new.timer_min_period = file.timer_min_period_ms.map_or(new.timer_min_period, ms);
        new.unload_hook_timeout = file
            .unload_hook_timeout_ms
            .map_or(new.unload_hook_timeout, ms);
        new.unload_timeout = file.unload_timeout_ms.map_or(new.unload_timeout, ms);
        new.unload_grace = file.unload_grace_ms.map_or(new.unload_grace, ms);
        if let Some(after) = file.throttle_after_ms {
            new.throttle_after = Some(ms(after));
        }
        new.throttle_share = file.throttle_share.unwrap_or(new.throttle_share);
        if let Some(names) = &file.deny {
            new.denied = names
                .iter()
                .map(|name| {
                    Category::from_name(name)
                        .ok_or_else(|| PolicyError(format!("deny: unknown category {name:?}")))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(e) = &file.escalation {
            let ladder = &mut new.escalation;
            ladder.outside_critical = e.outside_critical.unwrap_or(ladder.outside_critical);
            ladder.inside_critical = e.inside_critical.unwrap_or(ladder.inside_critical);
            ladder.orphaned_critical = e.orphaned_critical.unwrap_or(ladder.orphaned_critical);
            ladder.recreate = e.recreate.unwrap_or(ladder.recreate);
            ladder.unload_blocked = e.unload_blocked.unwrap_or(ladder.unload_blocked);
        }
        new.allocation = file.allocation.unwrap_or(new.allocation);
        new.pool_size = file.pool_size.unwrap_or(new.pool_size);
        new.pool_keep_resident = file.pool_keep_resident.unwrap_or(new.pool_keep_resident);
        new.module_cache_entries = file
            .module_cache_entries
            .unwrap_or(new.module_cache_entries);
        new.threads = file.threads.unwrap_or(new.threads);
        new.log_lines_per_second = file
            .log_lines_per_second
            .unwrap_or(new.log_lines_per_second);
        new.compile_memory_limit = file
            .compile_memory_limit_bytes
            .unwrap_or(new.compile_memory_limit);
        new.compile_timeout = file.compile_timeout_ms.map_or(new.compile_timeout, ms);
        if let Some(limits) = &file.compile_limits {
            limits.apply(&mut new.compile_limits);
        }
        new.wasi = file.wasi.unwrap_or(new.wasi);
        new.stdio_capture_limit = file.stdio_capture_limit.unwrap_or(new.stdio_capture_limit);
        new.validate()?;
        *policy = new;
        Ok(())
    }
}

impl Policy {
    /// Reads a policy from TOML (see the format below), starting from the
    /// defaults, and validates it: [`Policy::default`] with
    /// [`Policy::apply_toml`].
    ///
    /// ```toml
    /// deadline_ms = 2000            # per call; absent: none
    /// max_wait_ms = 10000           # longest blocking host call
    /// allow_infinite_wait = false   # poll with timeout -1
    /// memory_limit_bytes = 67108864 # all of a domain's memories; absent: none
    /// # memory_limit = "64MiB"      # the same, as a size (one of the two)
    /// on_memory_limit = "fail-grow" # past it memory.grow returns -1; "abort": the call is aborted
    /// stack_limit_bytes = 524288
    /// handle_quota = 4096
    /// timer_min_period_ms = 10      # shorter guest timer delays and periods are raised to it
    /// unload_hook_timeout_ms = 1000
    /// unload_timeout_ms = 10000     # cooperative unload, then escalation.unload_blocked
    /// unload_grace_ms = 1000        # then unloadBlocked lists the roots
    /// throttle_after_ms = 50        # a call running longer gets throttle_share; absent: never
    /// throttle_share = 25           # percent of a core, 10 to 100
    /// deny = ["ExternalProcessMgmt"] # host-protection categories
    /// allocation = "pooling"        # pooling, on-demand or dense
    /// pool_size = 1000              # live instances the pool holds
    /// pool_keep_resident = "64KiB"  # of each pooled memory: reset by memset, not returned
    /// module_cache_entries = 256    # compiled modules kept by content
    /// threads = false               # shared memories and atomic waits
    /// log_lines_per_second = 100    # guest log lines; the rest are counted
    /// compile_memory_limit_bytes = 1073741824
    /// compile_timeout_ms = 60000
    /// wasi = true                   # wasi_snapshot_preview1 imports allowed
    /// stdio_capture_limit = "1MiB"  # a WASI stdout/stderr capture buffer
    ///
    /// [compile_limits]              # checked before compiling
    /// module_bytes = 1073741824
    /// functions = 1000000
    /// function_body_bytes = 7654321
    /// locals = 50000
    /// nesting_depth = 1024
    /// imports_and_exports = 200000
    /// tables = 100000
    /// data_segments = 100000
    /// element_segments = 10000000
    ///
    /// [escalation]                  # abort-call, recycle-domain or unload-domain
    /// outside_critical = "abort-call"
    /// inside_critical = "recycle-domain"
    /// orphaned_critical = "recycle-domain"
    /// recreate = true
    /// unload_blocked = "force"      # or "wait"
    /// ```
    ///
    /// # Errors
    /// A [`PolicyError`] naming the bad key or value.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        policy.apply_toml(text)?;
        Ok(policy)
    }

    /// Applies a policy in TOML over this one, key by key: each key the
    /// text sets replaces that value, every other keeps its own (see
    /// [`PolicyOverrides`]). The result is validated; on an error the
    /// policy is left as it was.
    ///
    /// # Errors
    /// As [`Policy::from_toml`].
    pub fn apply_toml(&mut self, text: &str) -> Result<(), PolicyError> {
        PolicyOverrides::from_toml(text)?.apply_to(self)
    }

    /// The first engine-wide setting ([`ENGINE_WIDE_KEYS`]) in which this
    /// policy differs from `host`'s, by its key.
    pub(crate) fn engine_wide_change(&self, host: &Policy) -> Option<&'static str> {
        [
            (self.stack_limit != host.stack_limit, "stack_limit_bytes"),
            (self.allocation != host.allocation, "allocation"),
            (self.pool_size != host.pool_size, "pool_size"),
            (
                self.pool_keep_resident != host.pool_keep_resident,
                "pool_keep_resident",
            ),
            (
                self.module_cache_entries != host.module_cache_entries,
                "module_cache_entries",
            ),
            (self.threads != host.threads, "threads"),
            (
                self.compile_memory_limit != host.compile_memory_limit,
                "compile_memory_limit_bytes",
            ),
            (
                self.compile_timeout != host.compile_timeout,
                "compile_timeout_ms",
            ),
            (
                self.compile_limits != host.compile_limits,
                "[compile_limits]",
            ),
        ]
        .into_iter()
        .find_map(|(changed, key)| changed.then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_from_toml() {
        let policy = Policy::from_toml(
            r#"
            deadline_ms = 250
            timer_min_period_ms = 25
            memory_limit_bytes = 1048576
            on_memory_limit = "abort"
            deny = ["Synchronization", "ui"]
            allocation = "dense"
            threads = true
            compile_memory_limit_bytes = 1000000
            compile_timeout_ms = 1500
            wasi = false
            stdio_capture_limit = "64KiB"
            pool_keep_resident = "1MiB"
            [compile_limits]
            nesting_depth = 10
            [escalation]
            outside_critical = "recycle-domain"
            inside_critical = "unload-domain"
            orphaned_critical = "unload-domain"
            recreate = false
            "#,
        )
        .unwrap();
        assert_eq!(policy.deadline, Some(Duration::from_millis(250)));
        assert_eq!(policy.timer_min_period, Duration::from_millis(25));
        assert_eq!(
            Policy::default().timer_min_period,
            Duration::from_millis(10)
        );
        assert_eq!(policy.memory_limit, Some(1 << 20));
        assert_eq!(policy.on_memory_limit, OnMemoryLimit::Abort);
        assert_eq!(Policy::default().on_memory_limit, OnMemoryLimit::FailGrow);
        assert_eq!(policy.denied, vec![Category::Synchronization, Category::UI]);
        assert_eq!(policy.escalation.inside_critical, Action::UnloadDomain);
        assert!(!policy.escalation.recreate);
        assert_eq!(policy.allocation, Allocation::Dense);
        assert!(policy.threads);
        assert_eq!(policy.compile_memory_limit, 1_000_000);
        assert_eq!(policy.compile_timeout, Duration::from_millis(1500));
        assert_eq!(policy.compile_limits.nesting_depth, 10);
        assert!(!policy.wasi);
        assert_eq!(policy.stdio_capture_limit, 64 << 10);
        assert_eq!(policy.pool_keep_resident, 1 << 20);
        assert_eq!(Policy::default().pool_keep_resident, 64 << 10);
        assert_eq!(policy.compile_limits.locals, 50_000, "the rest default");
        assert_eq!(
            policy.max_wait,
            Duration::from_secs(10),
            "defaults for the rest"
        );
        assert_eq!(Policy::from_toml("").unwrap().deadline, None);

        for (text, needle) in [
            ("deadline = 5", "unknown field"),
            ("deny = [\"Nope\"]", "Nope"),
            ("[escalation]\noutside_critical = \"reboot\"", "reboot"),
            (
                "[escalation]\noutside_critical = \"unload-domain\"",
                "only escalate",
            ),
            ("deadline_ms = \"soon\"", "invalid type"),
            ("[compile_limits]\ndepth = 3", "unknown field"),
            ("compile_timeout_ms = 0", "compile_timeout: 0"),
            ("memory_limit = \"lots\"", "is not a size"),
            ("memory_limit = -3", "cannot be negative"),
            ("on_memory_limit = \"crash\"", "unknown variant `crash`"),
            (
                "pool_keep_resident = \"8GiB\"",
                "pool_keep_resident: 8589934592 bytes is more than",
            ),
            (
                "memory_limit = 5\nmemory_limit_bytes = 5",
                "both set the memory limit",
            ),
        ] {
            let error = Policy::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn a_policy_applies_over_another_key_by_key() {
        let host = Policy::from_toml(
            "deadline_ms = 100\nmax_wait_ms = 2000\ndeny = [\"UI\"]\n[escalation]\nrecreate = false",
        )
        .unwrap();
        let mut domain = host.clone();
        domain
            .apply_toml("memory_limit = \"64MiB\"\ndeny = [\"SharedState\"]\n[escalation]\ninside_critical = \"unload-domain\"")
            .unwrap();
        assert_eq!(domain.memory_limit, Some(64 << 20));
        assert_eq!(domain.denied, vec![Category::SharedState], "deny replaces");
        assert_eq!(domain.escalation.inside_critical, Action::UnloadDomain);
        assert!(!domain.escalation.recreate, "the rest of the table is kept");
        assert_eq!(domain.deadline, Some(Duration::from_millis(100)));
        assert_eq!(domain.max_wait, Duration::from_secs(2));
        assert_eq!(
            Policy::from_toml("memory_limit = 4096")
                .unwrap()
                .memory_limit,
            Some(4096)
        );

        // A bad override leaves the policy as it was.
        let before = domain.clone();
        assert!(domain.apply_toml("deadline_ms = 0").is_err());
        assert_eq!(format!("{domain:?}"), format!("{before:?}"));

        let overrides = PolicyOverrides::from_toml(
            "deadline_ms = 5\nthreads = true\n[escalation]\nrecreate = true\n[compile_limits]\nlocals = 9",
        )
        .unwrap();
        assert_eq!(
            overrides.keys(),
            [
                "deadline_ms",
                "escalation.recreate",
                "threads",
                "compile_limits.locals"
            ]
        );
        assert_eq!(
            overrides.engine_wide_keys(),
            ["threads", "compile_limits.locals"]
        );
        assert!(PolicyOverrides::default().is_empty());
        assert!(!overrides.is_empty());

        let mut changed = Policy::default();
        assert_eq!(changed.engine_wide_change(&Policy::default()), None);
        changed.deadline = Some(Duration::from_secs(1));
        changed.handle_quota = 3;
        assert_eq!(changed.engine_wide_change(&Policy::default()), None);
        changed.pool_keep_resident = 0;
        assert_eq!(
            changed.engine_wide_change(&Policy::default()),
            Some("pool_keep_resident")
        );
        changed.allocation = Allocation::Dense;
        assert_eq!(
            changed.engine_wide_change(&Policy::default()),
            Some("allocation")
        );
    }
}
