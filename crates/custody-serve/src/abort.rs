//! Stopping a request's guest from the async side ([`Abort`]): the
//! blocking side registers its domain before the call, and an abort asked
//! earlier keeps the call from starting.

use std::sync::{Arc, Mutex, PoisonError};

use custody_host::WeakDomain;

/// A way to stop the request's guest from the async side: the blocking
/// side registers its domain before the call; an abort asked earlier
/// makes the call not start.
#[derive(Clone, Default)]
pub(crate) struct Abort(Arc<Mutex<AbortState>>);

#[derive(Default)]
struct AbortState {
    aborted: bool,
    domain: Option<WeakDomain>,
}

impl Abort {
    fn lock(&self) -> std::sync::MutexGuard<'_, AbortState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the domain; false if the request was aborted already.
    pub(crate) fn register(&self, domain: WeakDomain) -> bool {
        let mut state = self.lock();
        state.domain = Some(domain);
        !state.aborted
    }

    /// Aborts the guest's call, now or before it starts.
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        if let Some(domain) = state.domain.as_ref().and_then(WeakDomain::upgrade) {
            domain.abort();
        }
    }
}

/// Aborts the guest's call when dropped, unless disarmed (`None`).
pub(crate) struct AbortOnDrop(pub(crate) Option<Abort>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(abort) = self.0.take() {
            abort.abort();
        }
    }
}
