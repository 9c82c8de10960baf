//! The domain's state word. A leaf: errors, views and the registry name a
//! [`DomainState`] without importing the domain.
//!
//! All transitions are performed via RMW operations (a compare-and-swap or
//! a swap) on one `AtomicU8`, so two threads racing to unload see exactly
//! one winner:
//!
//! ```text
//! Running --begin_unload--> Unloading --finish(Unloaded)--> Unloaded
//! Running --finish(Recycled)--> Recycled     (a recycle not re-created)
//! Running --finish(Unloaded)--> Unloaded     (escalation to unload)
//! ```
//! A recycle that re-creates the domain leaves it `Running`. `Unloaded` and
//! `Recycled` are final.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

/// Where a domain is in its life (see the module docs for the transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DomainState {
    /// Takes calls.
    Running,
    /// Refuses calls; its unloading hook runs and its handles are released.
    Unloading,
    /// Gone: every handle released, every instance dropped.
    Unloaded,
    /// Recycled after a failure and not re-created: every handle released,
    /// every instance dropped.
    Recycled,
}

impl DomainState {
    fn from_u8(v: u8) -> DomainState {
        match v {
            0 => DomainState::Running,
            1 => DomainState::Unloading,
            2 => DomainState::Unloaded,
            _ => DomainState::Recycled,
        }
    }

    /// Whether the domain is gone for good.
    pub fn is_final(self) -> bool {
        matches!(self, DomainState::Unloaded | DomainState::Recycled)
    }
}

/// The atomic state word.
#[derive(Debug)]
pub(crate) struct StateWord(AtomicU8);

impl StateWord {
    /// A running domain.
    pub(crate) fn new() -> Self {
        StateWord(AtomicU8::new(DomainState::Running as u8))
    }

    /// The state now.
    pub(crate) fn load(&self) -> DomainState {
        DomainState::from_u8(self.0.load(Ordering::Acquire))
    }

    /// `Running -> Unloading`; `Err` carries the state that refused it.
    pub(crate) fn begin_unload(&self) -> Result<(), DomainState> {
        self.0
            .compare_exchange(
                DomainState::Running as u8,
                DomainState::Unloading as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(DomainState::from_u8)
    }

    /// Moves to a final state (`Unloaded` or `Recycled`); returns the state
    /// it left.
    pub(crate) fn finish(&self, to: DomainState) -> DomainState {
        debug_assert!(to.is_final());
        DomainState::from_u8(self.0.swap(to as u8, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unload_wins() {
        let word = StateWord::new();
        assert_eq!(word.begin_unload(), Ok(()));
        assert_eq!(word.begin_unload(), Err(DomainState::Unloading));
        assert_eq!(word.finish(DomainState::Unloaded), DomainState::Unloading);
        assert_eq!(word.begin_unload(), Err(DomainState::Unloaded));
        assert!(word.load().is_final());
    }
}
