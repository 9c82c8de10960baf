//! The store's lock: the domain's [state word](super::state) and the value
//! it guards (the store), in one type, so that the `STORE_HELD` bit of
//! that word is the lock of this value and no other. A call takes its root
//! and the store in one CAS and gives both back in one
//! ([`StoreLock::lock_rooted`], [`Held::release_with_root`]); the only
//! `unsafe` of the store's lock is here.
//!
//! A thread that finds the store held parks (the slow path only): under the
//! park mutex it sets `STORE_WAITERS` if the store is still held, then
//! waits; a releaser whose RMW found `STORE_WAITERS` takes the park mutex
//! and wakes every waiter (they race for the store again, the losers park
//! again). The waiter holds the park mutex from its check to its wait, and
//! the releaser takes it after its RMW, so the wake-up cannot fall between
//! the two: none is lost.

// SAFETY arguments live beside each `unsafe` block of this module; the
// crate denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(not(loom))]
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::PoisonError;
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex};

use super::state::{Admit, StateWord, StoreReleased};
use crate::registry::DomainState;

/// The state word and the value its `STORE_HELD` bit guards.
pub(crate) struct StoreLock<T> {
    state: StateWord,
    value: UnsafeCell<T>,
    /// Parked waiters wait here (with `STORE_WAITERS` set).
    park: Mutex<()>,
    unparked: Condvar,
}

// SAFETY: the value is reached only through a `Held` (or `get_mut`, with
// the lock borrowed exclusively), and one `Held` exists at a time: it is
// made only by the CAS that sets `STORE_HELD` and ends with the RMW that
// clears it, whose Release/Acquire orders each holder's accesses before
// the next holder's. So the lock moves the value between threads but never
// shares it, which `T: Send` allows (as for `std::sync::Mutex<T>`).
unsafe impl<T: Send> Sync for StoreLock<T> {}

impl<T> StoreLock<T> {
    /// A running domain with no roots, its store `value` free.
    pub(crate) fn new(value: T) -> Self {
        StoreLock {
            state: StateWord::new(),
            value: UnsafeCell::new(value),
            park: Mutex::new(()),
            unparked: Condvar::new(),
        }
    }

    /// The state word (the store's lock is two of its bits).
    #[inline]
    pub(crate) fn state(&self) -> &StateWord {
        &self.state
    }

    /// The value, waiting for its holder to give it back.
    pub(crate) fn lock(&self) -> Held<'_, T> {
        if !self.state.try_take_store() {
            self.park_until_taken();
        }
        Held::new(self)
    }

    /// The value if it is free now.
    pub(crate) fn try_lock(&self) -> Option<Held<'_, T>> {
        // `then`, not `then_some`: a `Held` made eagerly and dropped would
        // give back a store this thread does not hold.
        self.state.try_take_store().then(|| Held::new(self))
    }

    /// A root (if `admit` lets one in) and the value, in one CAS when the
    /// value is free; else the root, then the value once its holder gives
    /// it back. `Err` is the state that refused the root.
    #[inline]
    pub(crate) fn lock_rooted(&self, admit: Admit) -> Result<Held<'_, T>, DomainState> {
        if !self.state.acquire_root_and_store(admit)? {
            self.park_until_taken();
        }
        Ok(Held::new(self))
    }

    /// The value, exclusively borrowed: no lock needed.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` excludes every `Held` (each borrows the lock)
        // and every other borrow of the value.
        unsafe { &mut *self.value_ptr() }
    }

    /// Parks until this thread takes the store (see the module docs).
    #[cold]
    fn park_until_taken(&self) {
        loop {
            if self.state.try_take_store() {
                return;
            }
            let parked = self.park.lock().unwrap_or_else(PoisonError::into_inner);
            if !self.state.mark_store_waiter() {
                continue; // given back meanwhile: take it
            }
            drop(
                self.unparked
                    .wait(parked)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }

    /// Wakes the parked waiters if the release found one.
    #[inline]
    fn wake(&self, released: StoreReleased) {
        if released.wake_waiters() {
            self.wake_parked();
        }
    }

    #[cold]
    fn wake_parked(&self) {
        // Taking the park mutex after the release: a waiter that saw the
        // store held is inside its wait by now.
        drop(self.park.lock().unwrap_or_else(PoisonError::into_inner));
        self.unparked.notify_all();
    }

    fn value_ptr(&self) -> *mut T {
        #[cfg(loom)]
        {
            self.value.with_mut(|ptr| ptr)
        }
        #[cfg(not(loom))]
        {
            self.value.get()
        }
    }
}

/// The value, held: dropping it gives the value back.
pub(crate) struct Held<'a, T> {
    lock: &'a StoreLock<T>,
    /// A `Held` is a `&mut T` for auto traits: sent to another thread if
    /// `T: Send`, shared between threads only if `T: Sync` (the lock alone
    /// would make it `Sync` for any `T: Send`).
    _value: PhantomData<&'a mut T>,
}

impl<'a, T> Held<'a, T> {
    /// The holder of `lock`, whose `STORE_HELD` this thread just set.
    fn new(lock: &'a StoreLock<T>) -> Self {
        Held {
            lock,
            _value: PhantomData,
        }
    }
}

impl<'a, T> Held<'a, T> {
    /// Gives the value back; what the release found.
    pub(crate) fn release(self) -> StoreReleased {
        let lock = self.lock;
        std::mem::forget(self);
        let released = lock.state.release_store();
        lock.wake(released);
        released
    }

    /// Gives back a root and the value in one CAS, if the domain is
    /// `Running`; else keeps both (`Err`): an unload needs the store first.
    #[inline]
    pub(crate) fn release_with_root(self) -> Result<StoreReleased, Self> {
        let lock = self.lock;
        match lock.state.release_root_and_store() {
            Some(released) => {
                std::mem::forget(self);
                lock.wake(released);
                Ok(released)
            }
            None => Err(self),
        }
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this `Held` is the one holder (module docs; `Sync`
        // above): no `&mut` to the value exists elsewhere while it lives,
        // and the borrow ends with `&self`.
        unsafe { &*self.lock.value_ptr() }
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow of
        // the value through the one holder.
        unsafe { &mut *self.lock.value_ptr() }
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        let released = self.lock.state.release_store();
        self.lock.wake(released);
    }
}

/// The lock and the call protocol under loom (run by `.ci/run`).
#[cfg(all(test, loom))]
mod loom_models;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_held_store_refuses_try_lock_and_parks_lock_until_given_back() {
        let lock = Arc::new(StoreLock::new(0u32));
        let mut held = lock.lock_rooted(Admit::Running).expect("running");
        assert!(lock.state().store_held());
        assert!(lock.try_lock().is_none(), "held");
        *held += 1;
        let waiter = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                let mut held = lock.lock();
                *held += 10;
                *held
            })
        };
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while !lock.state().store_waiters() {
            assert!(
                std::time::Instant::now() < give_up,
                "the waiter never parked"
            );
            std::thread::yield_now();
        }
        assert!(
            held.release_with_root().is_ok(),
            "running: both go in one CAS"
        );
        assert_eq!(
            waiter.join().expect("waiter"),
            11,
            "woken, after the holder"
        );
        assert_eq!(lock.state().roots(), 0);
        assert!(!lock.state().store_held());
        assert!(lock.try_lock().is_some());
    }

    #[test]
    fn an_unloading_domain_keeps_the_store_for_the_slow_path() {
        let lock = StoreLock::new(());
        let held = lock.lock_rooted(Admit::Running).expect("running");
        lock.state().begin_unload().expect("running");
        let held = held
            .release_with_root()
            .expect_err("an unload needs the store");
        assert_eq!(lock.state().roots(), 1, "the root stays too");
        assert!(lock.state().wants_event());
        assert!(
            held.release().wants_event(),
            "the release reports the event"
        );
        assert_eq!(
            lock.lock_rooted(Admit::Running).err(),
            Some(DomainState::Unloading)
        );
        assert!(!lock.state().store_held(), "a refused root takes no store");
    }
}
