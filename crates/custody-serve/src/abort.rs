//! Stopping a request's guest from the async side ([`Abort`]): the
//! blocking side registers its domain before the call, and an abort asked
//! earlier keeps the call from starting. An operator's cancel
//! (`POST /admin/requests/{id}/cancel`) is an abort that is remembered, so
//! the request's fault is `cancelled`, not what the stopped call looks
//! like (a trap).

use std::sync::{Arc, Mutex, PoisonError};

use custody_host::{Domain, WeakDomain};

/// A way to stop the request's guest from the async side: the blocking
/// side registers its domain before the call; an abort asked earlier
/// makes the call not start.
#[derive(Clone, Default)]
pub(crate) struct Abort(Arc<Mutex<AbortState>>);

#[derive(Default)]
struct AbortState {
    aborted: bool,
    /// An operator cancelled the request (an abort too).
    cancelled: bool,
    domain: Option<WeakDomain>,
    /// The domain's id, kept after the domain is gone (for the request's
    /// fault and the admin API's listing).
    domain_id: Option<u64>,
}

impl Abort {
    fn lock(&self) -> std::sync::MutexGuard<'_, AbortState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the domain; false if the request was aborted already.
    pub(crate) fn register(&self, domain: &Domain) -> bool {
        let mut state = self.lock();
        state.domain = Some(domain.downgrade());
        state.domain_id = Some(domain.id());
        !state.aborted
    }

    /// Aborts the guest's call, now or before it starts.
    pub(crate) fn abort(&self) {
        let domain = {
            let mut state = self.lock();
            state.aborted = true;
            state.domain.as_ref().and_then(WeakDomain::upgrade)
        };
        // Outside the lock: the domain's last `Domain` may be this one,
        // and its drop unloads it.
        if let Some(domain) = domain {
            domain.abort();
        }
    }

    /// Marks the request cancelled by an operator, without stopping it
    /// (a forced unload stops it its own way).
    pub(crate) fn mark_cancelled(&self) {
        self.lock().cancelled = true;
    }

    /// Cancels the request: marked, then aborted.
    pub(crate) fn cancel(&self) {
        self.mark_cancelled();
        self.abort();
    }

    /// Whether an operator cancelled the request.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// The id of the request's domain, once it has one.
    pub(crate) fn domain_id(&self) -> Option<u64> {
        self.lock().domain_id
    }

    /// The request's domain, while it lives.
    pub(crate) fn domain(&self) -> Option<Domain> {
        let weak = self.lock().domain.clone();
        weak.as_ref().and_then(WeakDomain::upgrade)
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
