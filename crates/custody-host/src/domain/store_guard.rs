//! [`StoreGuard`]: the store, held, the one way to reach it. Giving it
//! back runs what waited for it: an unloading event, a parked timer
//! runner; a call gives back its root with it (one CAS while the domain
//! runs).

use super::state::{Admit, Next};
use super::store_lock::Held;
use super::{DomainShared, Loaded, unload};
use crate::registry::DomainState;

/// The store, held. An unload begun while someone held the store could not
/// run its unloading event; so whoever gives the store back (a call, a
/// load, a memory view, a view of the domain) checks, once the store is
/// free, whether an event waits for it and runs it then. Every holder goes
/// through this guard, so an event is never left waiting for a store that
/// is free.
pub(crate) struct StoreGuard<'a> {
    shared: &'a DomainShared,
    /// `None` once given back (with the root, by [`Self::end_rooted`]).
    held: Option<Held<'a, Option<Loaded>>>,
}

impl StoreGuard<'_> {
    /// Ends a call or a load: gives back its root and the store. While the
    /// domain runs, that is one CAS; during an unload, the unloading event
    /// runs first if it waits for the store, then the root goes (the last
    /// one completes the unload), then the store.
    #[inline]
    pub(crate) fn end_rooted(mut self) {
        let held = self.held.take().expect("held until dropped");
        match held.release_with_root() {
            // Running: no event nor completion waits for the store.
            Ok(_) => self.shared.timers.store_released(),
            Err(held) => {
                self.held = Some(held);
                self.end_rooted_unloading();
            }
        }
    }

    #[cold]
    fn end_rooted_unloading(mut self) {
        let shared = self.shared;
        if shared.state().wants_event() {
            unload::run_event(shared, &mut self);
        }
        if shared.state().release_root() == Next::Complete {
            unload::teardown(shared, &mut self, unload::Ending::Unloaded, None);
        }
        if shared.state().load().is_final() {
            // A forced unload completed without the store (this call was
            // abandoned): its instances go now that it returned.
            drop(self.take());
        }
        // Dropping `self` gives the store back.
    }
}

impl std::ops::Deref for StoreGuard<'_> {
    type Target = Option<Loaded>;
    fn deref(&self) -> &Option<Loaded> {
        self.held.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Option<Loaded> {
        self.held.as_mut().expect("held until dropped")
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return; // given back with its root
        };
        if held.release().wants_event() {
            unload::run_event_if_free(self.shared);
        }
        // A timer runner that found the store held waits for this.
        self.shared.timers.store_released();
    }
}

impl DomainShared {
    /// The store, waiting for an in-flight call to return. Whoever gives
    /// it back runs an unloading event that waits for it ([`StoreGuard`]).
    pub(crate) fn lock(&self) -> StoreGuard<'_> {
        StoreGuard {
            shared: self,
            held: Some(self.store.lock()),
        }
    }

    /// The store if it is free now.
    pub(crate) fn try_lock(&self) -> Option<StoreGuard<'_>> {
        Some(StoreGuard {
            shared: self,
            held: Some(self.store.try_lock()?),
        })
    }

    /// A root (if `admit` lets one in) and the store, in one CAS when the
    /// store is free (else the root, then the store once it is given
    /// back); [`StoreGuard::end_rooted`] gives both back. `Err` is the
    /// state that refused the root.
    #[inline]
    pub(crate) fn lock_rooted(&self, admit: Admit) -> Result<StoreGuard<'_>, DomainState> {
        Ok(StoreGuard {
            shared: self,
            held: Some(self.store.lock_rooted(admit)?),
        })
    }
}
