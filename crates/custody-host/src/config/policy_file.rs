//! The policy file format (TOML): every key optional, defaults for the rest.
//! Unknown keys are errors, so a typo never silently loosens a policy.

use std::time::Duration;

use serde::Deserialize;

use super::policy::{
    Action, Allocation, Category, CompileLimits, Policy, PolicyError, UnloadBlockedAction,
};

/// A policy file: every key optional, defaults for the rest; durations in
/// milliseconds, sizes in bytes. Unknown keys are errors (a typo must not
/// silently loosen a policy).
///
/// ```toml
/// deadline_ms = 2000
/// max_wait_ms = 10000
/// allow_infinite_wait = false
/// memory_limit_bytes = 67108864
/// stack_limit_bytes = 524288
/// handle_quota = 4096
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    deadline_ms: Option<u64>,
    max_wait_ms: Option<u64>,
    allow_infinite_wait: Option<bool>,
    memory_limit_bytes: Option<usize>,
    stack_limit_bytes: Option<usize>,
    handle_quota: Option<usize>,
    unload_hook_timeout_ms: Option<u64>,
    unload_timeout_ms: Option<u64>,
    unload_grace_ms: Option<u64>,
    deny: Option<Vec<String>>,
    escalation: Option<EscalationFile>,
    allocation: Option<Allocation>,
    pool_size: Option<u32>,
    module_cache_entries: Option<usize>,
    threads: Option<bool>,
    log_lines_per_second: Option<u32>,
    compile_memory_limit_bytes: Option<usize>,
    compile_timeout_ms: Option<u64>,
    compile_limits: Option<CompileLimitsFile>,
}

/// `[compile_limits]`: the structural limits, each optional.
#[derive(Debug, Default, Deserialize)]
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

impl CompileLimitsFile {
    fn apply(self, to: &mut CompileLimits) {
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationFile {
    outside_critical: Option<Action>,
    inside_critical: Option<Action>,
    orphaned_critical: Option<Action>,
    recreate: Option<bool>,
    unload_blocked: Option<UnloadBlockedAction>,
}

impl Policy {
    /// Reads a policy from TOML (see the format below), starting from the
    /// defaults, and validates it.
    ///
    /// ```toml
    /// deadline_ms = 2000            # per call; absent: none
    /// max_wait_ms = 10000           # longest blocking host call
    /// allow_infinite_wait = false   # poll with timeout -1
    /// memory_limit_bytes = 67108864 # all of a domain's memories; absent: none
    /// stack_limit_bytes = 524288
    /// handle_quota = 4096
    /// unload_hook_timeout_ms = 1000
    /// unload_timeout_ms = 10000     # cooperative unload, then escalation.unload_blocked
    /// unload_grace_ms = 1000        # then unloadBlocked lists the roots
    /// deny = ["ExternalProcessMgmt"] # host-protection categories
    /// allocation = "pooling"        # pooling, on-demand or dense
    /// pool_size = 1000              # live instances the pool holds
    /// module_cache_entries = 256    # compiled modules kept by content
    /// threads = false               # shared memories and atomic waits
    /// log_lines_per_second = 100    # guest log lines; the rest are counted
    /// compile_memory_limit_bytes = 1073741824
    /// compile_timeout_ms = 60000
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
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError(e.message().to_string()))?;
        let mut policy = Policy::default();
        if let Some(ms) = file.deadline_ms {
            policy.deadline = Some(Duration::from_millis(ms));
        }
        if let Some(ms) = file.max_wait_ms {
            policy.max_wait = Duration::from_millis(ms);
        }
        if let Some(allow) = file.allow_infinite_wait {
            policy.allow_infinite_wait = allow;
        }
        policy.memory_limit = file.memory_limit_bytes.or(policy.memory_limit);
        if let Some(bytes) = file.stack_limit_bytes {
            policy.stack_limit = bytes;
        }
        if let Some(quota) = file.handle_quota {
            policy.handle_quota = quota;
        }
        if let Some(ms) = file.unload_hook_timeout_ms {
            policy.unload_hook_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = file.unload_timeout_ms {
            policy.unload_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = file.unload_grace_ms {
            policy.unload_grace = Duration::from_millis(ms);
        }
        for name in file.deny.unwrap_or_default() {
            let category = Category::from_name(&name)
                .ok_or_else(|| PolicyError(format!("deny: unknown category {name:?}")))?;
            policy.denied.push(category);
        }
        if let Some(e) = file.escalation {
            let ladder = &mut policy.escalation;
            ladder.outside_critical = e.outside_critical.unwrap_or(ladder.outside_critical);
            ladder.inside_critical = e.inside_critical.unwrap_or(ladder.inside_critical);
            ladder.orphaned_critical = e.orphaned_critical.unwrap_or(ladder.orphaned_critical);
            ladder.recreate = e.recreate.unwrap_or(ladder.recreate);
            ladder.unload_blocked = e.unload_blocked.unwrap_or(ladder.unload_blocked);
        }
        policy.allocation = file.allocation.unwrap_or(policy.allocation);
        policy.pool_size = file.pool_size.unwrap_or(policy.pool_size);
        policy.module_cache_entries = file
            .module_cache_entries
            .unwrap_or(policy.module_cache_entries);
        policy.threads = file.threads.unwrap_or(policy.threads);
        policy.log_lines_per_second = file
            .log_lines_per_second
            .unwrap_or(policy.log_lines_per_second);
        policy.compile_memory_limit = file
            .compile_memory_limit_bytes
            .unwrap_or(policy.compile_memory_limit);
        if let Some(ms) = file.compile_timeout_ms {
            policy.compile_timeout = Duration::from_millis(ms);
        }
        if let Some(limits) = file.compile_limits {
            limits.apply(&mut policy.compile_limits);
        }
        policy.validate()?;
        Ok(policy)
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
            memory_limit_bytes = 1048576
            deny = ["Synchronization", "ui"]
            allocation = "dense"
            threads = true
            compile_memory_limit_bytes = 1000000
            compile_timeout_ms = 1500
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
        assert_eq!(policy.memory_limit, Some(1 << 20));
        assert_eq!(policy.denied, vec![Category::Synchronization, Category::UI]);
        assert_eq!(policy.escalation.inside_critical, Action::UnloadDomain);
        assert!(!policy.escalation.recreate);
        assert_eq!(policy.allocation, Allocation::Dense);
        assert!(policy.threads);
        assert_eq!(policy.compile_memory_limit, 1_000_000);
        assert_eq!(policy.compile_timeout, Duration::from_millis(1500));
        assert_eq!(policy.compile_limits.nesting_depth, 10);
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
            ("compile_timeout_ms = 0", "compile timeout of 0"),
        ] {
            let error = Policy::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
