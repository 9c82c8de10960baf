//! The store's lock (`store_lock.rs`: two bits of the state word) under loom:
//! calls that take their root and the store in one CAS, an unload racing
//! them, and the ends of calls as `StoreGuard` runs them (one CAS while
//! running; else the event, the root, then the store, whose release runs an
//! event left waiting). A waiter never woken is a deadlock loom reports.

use super::{Held, StoreLock};
use crate::domain::state::{Admit, Next};
use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::sync::atomic::Ordering;
use loom::thread;

/// A domain as the models see it: the lock (the store a count of the
/// calls that held it), how many threads hold it now, the events run
/// and the completions claimed.
struct Model {
    lock: StoreLock<u32>,
    inside: AtomicUsize,
    events: AtomicUsize,
    completions: AtomicUsize,
}

impl Model {
    fn new() -> Arc<Model> {
        Arc::new(Model {
            lock: StoreLock::new(0),
            inside: AtomicUsize::new(0),
            events: AtomicUsize::new(0),
            completions: AtomicUsize::new(0),
        })
    }

    fn complete(&self, next: Next) {
        if next == Next::Complete {
            self.completions.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `unload::run_event`, with the store held.
    fn run_event(&self) {
        if self.lock.state().claim_event() {
            self.events.fetch_add(1, Ordering::SeqCst);
            self.complete(self.lock.state().event_done());
        }
    }

    /// `unload::run_event_if_free`.
    fn run_event_if_free(&self) {
        if self.lock.state().wants_event()
            && let Some(_held) = self.lock.try_lock()
        {
            self.run_event();
        }
    }

    /// `StoreGuard`'s drop.
    fn give_back(&self, held: Held<'_, u32>) {
        if held.release().wants_event() {
            self.run_event_if_free();
        }
    }

    /// A call: root and store, the guest's work, `StoreGuard::end_rooted`.
    fn call(&self, admit: Admit) {
        let Ok(mut held) = self.lock.lock_rooted(admit) else {
            return;
        };
        assert_eq!(self.inside.fetch_add(1, Ordering::SeqCst), 0, "exclusive");
        *held += 1;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        if let Err(held) = held.release_with_root() {
            if self.lock.state().wants_event() {
                self.run_event();
            }
            self.complete(self.lock.state().release_root());
            self.give_back(held);
        }
    }
}

#[test]
fn two_calls_exclude_each_other_and_a_parked_one_is_woken() {
    loom::model(|| {
        let model = Model::new();
        let other = {
            let model = Arc::clone(&model);
            thread::spawn(move || model.call(Admit::Running))
        };
        model.call(Admit::Running);
        other.join().unwrap();
        assert_eq!(*model.lock.lock(), 2, "both calls ran");
        assert_eq!(model.lock.state().roots(), 0);
    });
}

/// Two calls (one let in during a cooperative unload, as a ref's) race
/// an unload that runs its event if the store is free: the event runs
/// once, the unload completes once, every root goes, the store is free.
#[test]
fn calls_racing_an_unload_run_the_event_once_and_complete_once() {
    loom::model(|| {
        let model = Model::new();
        let calls: Vec<_> = [Admit::Running, Admit::WhileUnloading]
            .into_iter()
            .map(|admit| {
                let model = Arc::clone(&model);
                thread::spawn(move || model.call(admit))
            })
            .collect();
        assert_eq!(model.lock.state().begin_unload(), Ok(true));
        model.run_event_if_free();
        for call in calls {
            call.join().unwrap();
        }
        assert_eq!(model.events.load(Ordering::SeqCst), 1, "the event once");
        assert_eq!(
            model.completions.load(Ordering::SeqCst),
            1,
            "completed once"
        );
        assert_eq!(model.lock.state().roots(), 0);
        assert!(model.lock.try_lock().is_some(), "the store given back");
    });
}
