//! Where a domain's call is blocked in a host function (SPEC D2): written
//! by the waiting thread as it begins a wait, read by `Domain::roots()`.
//!
//! A guest blocked in the host reaches no epoch check, so its stack cannot
//! be sampled the way a running guest's is: it is captured when the wait
//! begins instead. Only waits record (a host call that does not block pays
//! nothing), and a wait is a blocking syscall, next to which the capture is
//! small.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A wait in progress: which host function, the guest's stack when it
/// began, and since when.
#[derive(Clone, Debug)]
pub(crate) struct Blocked {
    pub(crate) function: String,
    pub(crate) stack: String,
    pub(crate) since: Instant,
}

/// The wait a domain's call is in, if any (a domain runs one call at a
/// time, so one slot).
#[derive(Debug, Default)]
pub(crate) struct BlockedIn {
    slot: Mutex<Option<Blocked>>,
}

impl BlockedIn {
    fn slot(&self) -> MutexGuard<'_, Option<Blocked>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the call waits in `function`, the guest at `stack`,
    /// until the guard drops.
    pub(crate) fn enter(&self, function: &str, stack: String) -> WaitGuard<'_> {
        *self.slot() = Some(Blocked {
            function: function.to_string(),
            stack,
            since: Instant::now(),
        });
        WaitGuard(self)
    }

    /// The wait in progress, if any.
    pub(crate) fn now(&self) -> Option<Blocked> {
        self.slot().clone()
    }
}

/// Clears the record when the wait ends.
pub(crate) struct WaitGuard<'a>(&'a BlockedIn);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        *self.0.slot() = None;
    }
}
