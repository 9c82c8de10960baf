//! The reliability policy: how long hosted code may wait, how many handles it
//! may hold, and what it may touch (host protection).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a host function touches, after .NET's `HostProtectionAttribute`
/// categories. A module importing a function whose category the policy denies
/// fails to load, with an error naming the import and the category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 9] = [
        Category::Synchronization,
        Category::SharedState,
        Category::ExternalProcessMgmt,
        Category::SelfAffectingProcessMgmt,
        Category::ExternalThreading,
        Category::SelfAffectingThreading,
        Category::SecurityInfrastructure,
        Category::UI,
        Category::MayLeakOnAbort,
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
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            outside_critical: Action::AbortCall,
            inside_critical: Action::RecycleDomain,
            orphaned_critical: Action::RecycleDomain,
            recreate: true,
        }
    }
}

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
    /// may have; growing past it aborts the call. `None`: wasmtime's limits
    /// only. Default: `None`.
    pub memory_limit: Option<usize>,
    /// The most native stack a guest call may use (wasmtime's
    /// `max_wasm_stack`); deeper recursion aborts the call. Default 512 KiB.
    pub stack_limit: usize,
    /// The most handles one domain may hold (`E_QUOTA` beyond). Default 4096.
    pub handle_quota: usize,
    /// How long a guest's `custody_unloading` export may run. Default 1 s.
    pub unload_hook_timeout: Duration,
    /// Categories no imported host function may carry.
    pub denied: Vec<Category>,
    /// What failures escalate to.
    pub escalation: Escalation,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            deadline: None,
            max_wait: Duration::from_secs(10),
            allow_infinite_wait: false,
            memory_limit: None,
            stack_limit: 512 * 1024,
            handle_quota: 4096,
            unload_hook_timeout: Duration::from_secs(1),
            denied: Vec::new(),
            escalation: Escalation::default(),
        }
    }
}

/// A policy that contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyError(pub String);

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
    deny: Option<Vec<String>>,
    escalation: Option<EscalationFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationFile {
    outside_critical: Option<Action>,
    inside_critical: Option<Action>,
    orphaned_critical: Option<Action>,
    recreate: Option<bool>,
}

/// What `-1` becomes when the policy grants an infinite wait: long enough
/// never to end by itself, short enough for `poll(2)`'s timespec.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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
    /// deny = ["ExternalProcessMgmt"] # host-protection categories
    ///
    /// [escalation]                  # abort-call, recycle-domain or unload-domain
    /// outside_critical = "abort-call"
    /// inside_critical = "recycle-domain"
    /// orphaned_critical = "recycle-domain"
    /// recreate = true
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
        }
        policy.validate()?;
        Ok(policy)
    }

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
            return Err(PolicyError("a deadline of 0 would abort every call".into()));
        }
        if self.stack_limit < 16 * 1024 {
            return Err(PolicyError(format!(
                "a stack limit of {} bytes is too small to call anything",
                self.stack_limit
            )));
        }
        if self.handle_quota == 0 {
            return Err(PolicyError(
                "a handle quota of 0 would refuse every handle".into(),
            ));
        }
        Ok(())
    }

    /// The wait a guest's `ms` argument is allowed, or `None` if the policy
    /// refuses it (infinite without the grant, or above `max_wait`).
    pub fn wait_for(&self, ms: i32) -> Option<Duration> {
        match ms {
            -1 if self.allow_infinite_wait => Some(FOREVER),
            ms if ms < 0 => None,
            ms => Some(Duration::from_millis(ms as u64)).filter(|d| *d <= self.max_wait),
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
    fn policies_read_from_toml() {
        let policy = Policy::from_toml(
            r#"
            deadline_ms = 250
            memory_limit_bytes = 1048576
            deny = ["Synchronization", "ui"]
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
        ] {
            let error = Policy::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
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
