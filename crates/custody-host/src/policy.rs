//! The reliability policy: how long hosted code may wait, how many handles it
//! may hold, and what it may touch (host protection).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

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

/// The policy a [`Host`](crate::Host) applies to every domain.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The longest any blocking host call may wait (`sleep`, `poll`, a read
    /// on an empty pipe). A guest asking for more is refused with `E_DENIED`
    /// rather than silently cut short, so it never believes it waited longer
    /// than it did; a read or write that blocks this long returns
    /// `E_TIMEDOUT`. Default 10 s.
    pub max_wait: Duration,
    /// Whether `poll` may wait with no timeout (`-1`). Default false: an
    /// infinite wait is `E_DENIED`. Even when granted, abort and unload end
    /// it at once.
    pub allow_infinite_wait: bool,
    /// The most handles one domain may hold (`E_QUOTA` beyond). Default 4096.
    pub handle_quota: usize,
    /// How long a guest's `custody_unloading` export may run. Default 1 s.
    pub unload_hook_timeout: Duration,
    /// Categories no imported host function may carry.
    pub denied: Vec<Category>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_wait: Duration::from_secs(10),
            allow_infinite_wait: false,
            handle_quota: 4096,
            unload_hook_timeout: Duration::from_secs(1),
            denied: Vec::new(),
        }
    }
}

/// What `-1` becomes when the policy grants an infinite wait: long enough
/// never to end by itself, short enough for `poll(2)`'s timespec.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Policy {
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
