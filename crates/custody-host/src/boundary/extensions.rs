//! What each ABI extension keeps in a domain's store: one typed slot per
//! extension ([`StoreState`]), found by its Rust type from a host call
//! ([`DomainCtx::extension`](super::ctx::DomainCtx::extension)), as
//! wasmtime-wasi finds its context through `WasiView`.
//!
//! The core never looks inside a slot. It tells each one two things: a
//! guest closed a handle (through any ABI: [`StoreState::forget`]), and the
//! domain is being recycled ([`StoreState::renew`]: the state its fresh
//! store starts with).

use std::any::Any;

use custody_handle::HandleId;

/// The part of an extension's per-domain state that lives in the store:
/// reached only from host calls (which hold the store), never shared.
pub trait StoreState: Any + Send {
    /// A guest closed the handle `id` (through any ABI): forget what this
    /// extension keeps of it. The default keeps nothing per handle.
    fn forget(&mut self, id: HandleId) {
        let _ = id;
    }

    /// The domain is recycled: the state its fresh store starts with (what
    /// outlives the old instances, such as configuration and streams, moved
    /// over; what belonged to them, such as per-handle state, dropped).
    fn renew(&mut self) -> Box<dyn StoreState>;
}

/// A store's extension slots, in the order the host's extensions were
/// registered (a linear search: a host has a handful).
#[derive(Default)]
pub(crate) struct Extensions(Vec<Box<dyn StoreState>>);

impl Extensions {
    pub(crate) fn new(slots: Vec<Box<dyn StoreState>>) -> Self {
        Extensions(slots)
    }

    /// The slot of type `T`, if an extension put one in this store.
    #[inline]
    pub(crate) fn get<T: StoreState>(&self) -> Option<&T> {
        self.0
            .iter()
            .find_map(|slot| (&**slot as &dyn Any).downcast_ref::<T>())
    }

    /// The slot of type `T`, mutably.
    #[inline]
    pub(crate) fn get_mut<T: StoreState>(&mut self) -> Option<&mut T> {
        self.0
            .iter_mut()
            .find_map(|slot| (&mut **slot as &mut dyn Any).downcast_mut::<T>())
    }

    /// Tells every slot that the guest closed `id`.
    pub(crate) fn forget(&mut self, id: HandleId) {
        for slot in &mut self.0 {
            slot.forget(id);
        }
    }

    /// The slots of a recycled domain's fresh store.
    pub(crate) fn renew(&mut self) -> Extensions {
        Extensions(self.0.iter_mut().map(|slot| slot.renew()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32, Vec<u32>);

    impl StoreState for Counter {
        fn forget(&mut self, id: HandleId) {
            self.1.push(id.raw());
        }
        fn renew(&mut self) -> Box<dyn StoreState> {
            Box::new(Counter(self.0, Vec::new()))
        }
    }

    struct Other;

    impl StoreState for Other {
        fn renew(&mut self) -> Box<dyn StoreState> {
            Box::new(Other)
        }
    }

    #[test]
    fn slots_are_found_by_type_told_of_closes_and_renewed() {
        let mut slots = Extensions::new(vec![Box::new(Other), Box::new(Counter(7, Vec::new()))]);
        assert_eq!(slots.get::<Counter>().map(|c| c.0), Some(7));
        assert!(slots.get::<Other>().is_some());
        slots.forget(HandleId::from_raw(5));
        assert_eq!(slots.get_mut::<Counter>().unwrap().1, [5]);
        let fresh = slots.renew();
        let counter = fresh.get::<Counter>().unwrap();
        assert_eq!(
            (counter.0, counter.1.len()),
            (7, 0),
            "config kept, per-handle state dropped"
        );
        assert!(Extensions::default().get::<Other>().is_none());
    }
}
