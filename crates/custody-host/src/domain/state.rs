//! The domain's state word: its phase, the progress of an unload, and how
//! many roots hold it. A leaf: errors, views and the registry name a
//! [`DomainState`] without importing the domain.
//!
//! # The word
//! ```text
//!  63 ........ 32 | 31 .. 9 |       8       |     7      |    6       |     5      |      4        |   3    | 2 .. 0
//!  ROOTS (count)  | unused  | STORE_WAITERS | STORE_HELD | COMPLETING | EVENT_DONE | EVENT_STARTED | FORCED | PHASE
//! ```
//! `PHASE` is a [`DomainState`]. A *root* is anything that keeps an
//! unloading domain from completing (a call in flight, a `DomainRef`, a
//! timer, a memory view, ...; `roots.rs` keeps what each one is): taking one
//! adds [`ROOT`], dropping one subtracts it.
//!
//! `STORE_HELD` is the store's lock (`store_lock.rs` owns the store and
//! parks its waiters; `STORE_WAITERS` says one is parked). It lives in this
//! word so that a call takes its root and the store in one CAS, and gives
//! both back in one: the call's fast path is two atomic RMWs in all.
//!
//! # Transitions
//! Every transition is one RMW (a CAS loop or a `fetch_*`), so racing
//! threads see one winner for each claim:
//!
//! | operation | from | effect |
//! | --- | --- | --- |
//! | `acquire_root(Admit)` | `Running` (and, for `Admit::WhileUnloading`, `Unloading` not forced nor completing) | `ROOTS += 1` |
//! | `release_root` | any | `ROOTS -= 1`; if that was the last root of a cooperative unload whose event is done, claims `COMPLETING`: the caller completes |
//! | `begin_unload` | `Running` | `PHASE = Unloading` (a second call finds `Unloading`: the same unload) |
//! | `claim_event` | `Unloading`, event not started (also once completing: a forced unload runs it if nobody has) | sets `EVENT_STARTED`: the caller runs the unloading event |
//! | `event_done` | `Unloading` | sets `EVENT_DONE`; with no root left, claims `COMPLETING` |
//! | `force` | `Unloading` | sets `FORCED` and claims `COMPLETING` if nobody has |
//! | `finish(to)` | any | `PHASE = to` (`Unloaded` or `Recycled`: final) |
//! | `acquire_root_and_store(Admit)` | as `acquire_root` | `ROOTS += 1`, and `STORE_HELD` set if it was clear (else the caller parks for the store) |
//! | `try_take_store` | `STORE_HELD` clear | sets `STORE_HELD` |
//! | `mark_store_waiter` | `STORE_HELD` set | sets `STORE_WAITERS` (under the park mutex: the waiter then waits) |
//! | `release_store` | `STORE_HELD` set | clears `STORE_HELD` and `STORE_WAITERS`; the old word says whether to wake the parked waiters and whether an unloading event waits for the store |
//! | `release_root_and_store` | `Running`, `STORE_HELD` set | `ROOTS -= 1`, clears `STORE_HELD` and `STORE_WAITERS` (a call's end); not `Running`: nothing changes, the caller ends the call the slow way (event, root, then store) |
//!
//! `COMPLETING` is claimed once per domain: exactly one thread tears it
//! down. The loom models below check that under every interleaving of
//! `begin_unload`, `force`, `event_done` and roots taken and dropped;
//! `store_lock.rs`'s check the store's bits (calls taking and giving back
//! their root and the store, an unload racing them, a parked waiter woken).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::DomainState;

// The phase's bits, read here beside the word that holds them.
impl DomainState {
    fn from_bits(v: u64) -> DomainState {
        match v & PHASE {
            0 => DomainState::Running,
            1 => DomainState::Unloading,
            2 => DomainState::Unloaded,
            _ => DomainState::Recycled,
        }
    }
}

const PHASE: u64 = 0b111;
const FORCED: u64 = 1 << 3;
const EVENT_STARTED: u64 = 1 << 4;
const EVENT_DONE: u64 = 1 << 5;
const COMPLETING: u64 = 1 << 6;
/// The store is held (its lock).
const STORE_HELD: u64 = 1 << 7;
/// A thread is parked waiting for the store: its releaser wakes it.
const STORE_WAITERS: u64 = 1 << 8;
/// One root.
const ROOT: u64 = 1 << 32;

const fn roots(word: u64) -> u64 {
    word >> 32
}

/// Which phases a new root may be taken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Only while `Running` (a call through the `Domain`, a new ref).
    Running,
    /// Also during a cooperative unload (a call through a `DomainRef`, a
    /// timer's callback): the unload waits for them.
    WhileUnloading,
}

/// What dropping a root or finishing a step asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Next {
    /// Nothing.
    Nothing,
    /// The caller claimed the completion: it must tear the domain down.
    Complete,
}

/// What giving the store back found (the word before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) struct StoreReleased(u64);

impl StoreReleased {
    /// A waiter is parked for the store: the releaser must wake it.
    pub(crate) fn wake_waiters(self) -> bool {
        self.0 & STORE_WAITERS != 0
    }

    /// An unload waits for the store to run its unloading event.
    pub(crate) fn wants_event(self) -> bool {
        wants_event(self.0)
    }
}

fn wants_event(word: u64) -> bool {
    DomainState::from_bits(word) == DomainState::Unloading && word & EVENT_STARTED == 0
}

/// Whether `admit` lets a new root in with the word `word`.
fn admits(word: u64, admit: Admit) -> bool {
    match DomainState::from_bits(word) {
        DomainState::Running => true,
        DomainState::Unloading => {
            admit == Admit::WhileUnloading && word & (FORCED | COMPLETING) == 0
        }
        _ => false,
    }
}

/// The atomic state word.
#[derive(Debug)]
pub(crate) struct StateWord(AtomicU64);

impl StateWord {
    /// A running domain with no roots.
    pub(crate) fn new() -> Self {
        StateWord(AtomicU64::new(DomainState::Running as u64))
    }

    /// The phase now.
    pub(crate) fn load(&self) -> DomainState {
        DomainState::from_bits(self.0.load(Ordering::Acquire))
    }

    /// How many roots hold the domain now.
    pub(crate) fn roots(&self) -> u64 {
        roots(self.0.load(Ordering::Acquire))
    }

    /// Whether an unload was forced.
    pub(crate) fn is_forced(&self) -> bool {
        self.0.load(Ordering::Acquire) & FORCED != 0
    }

    /// Whether an unload is waiting for its unloading event to run.
    pub(crate) fn wants_event(&self) -> bool {
        wants_event(self.0.load(Ordering::Acquire))
    }

    /// Whether the store is held now.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn store_held(&self) -> bool {
        self.0.load(Ordering::Acquire) & STORE_HELD != 0
    }

    /// Whether a waiter is parked for the store now.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn store_waiters(&self) -> bool {
        self.0.load(Ordering::Acquire) & STORE_WAITERS != 0
    }

    /// One CAS loop: `f` maps the word to its next value, or refuses
    /// (`Err` is the word refused). `Ok` is the word before and after.
    #[inline]
    fn update(&self, mut f: impl FnMut(u64) -> Option<u64>) -> Result<(u64, u64), u64> {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let new = f(current).ok_or(current)?;
            match self
                .0
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok((current, new)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a root; `Err` is the state that refused it.
    pub(crate) fn acquire_root(&self, admit: Admit) -> Result<(), DomainState> {
        self.update(|word| admits(word, admit).then_some(word + ROOT))
            .map(drop)
            .map_err(DomainState::from_bits)
    }

    /// Takes a root and, if it is free, the store, in one CAS (a call's
    /// start). `Ok(true)`: both taken; `Ok(false)`: the root only (the
    /// store is held: the caller parks for it); `Err` is the state that
    /// refused the root.
    #[inline]
    pub(crate) fn acquire_root_and_store(&self, admit: Admit) -> Result<bool, DomainState> {
        self.update(|word| admits(word, admit).then_some((word + ROOT) | STORE_HELD))
            .map(|(before, _)| before & STORE_HELD == 0)
            .map_err(DomainState::from_bits)
    }

    /// Takes the store if it is free.
    #[inline]
    pub(crate) fn try_take_store(&self) -> bool {
        self.update(|word| (word & STORE_HELD == 0).then_some(word | STORE_HELD))
            .is_ok()
    }

    /// Says a waiter parks for the store, if the store is still held
    /// (`false`: it is free, take it).
    pub(crate) fn mark_store_waiter(&self) -> bool {
        self.update(|word| (word & STORE_HELD != 0).then_some(word | STORE_WAITERS))
            .is_ok()
    }

    /// Gives the store back (its holder only).
    #[inline]
    pub(crate) fn release_store(&self) -> StoreReleased {
        let before = self
            .0
            .fetch_and(!(STORE_HELD | STORE_WAITERS), Ordering::AcqRel);
        debug_assert!(before & STORE_HELD != 0, "the store released unheld");
        StoreReleased(before)
    }

    /// Gives back a root and the store in one CAS (a call's end), if the
    /// domain is `Running` (nothing to complete, no event to run); else
    /// changes nothing (`None`): the caller runs the event and drops its
    /// root with the store held, then gives the store back.
    #[inline]
    pub(crate) fn release_root_and_store(&self) -> Option<StoreReleased> {
        self.update(|word| {
            debug_assert!(word & STORE_HELD != 0 && roots(word) > 0);
            (DomainState::from_bits(word) == DomainState::Running)
                .then_some((word - ROOT) & !(STORE_HELD | STORE_WAITERS))
        })
        .ok()
        .map(|(before, _)| StoreReleased(before))
    }

    /// Drops a root. [`Next::Complete`] if it was the last one of a
    /// cooperative unload whose event is done (the caller completes it).
    pub(crate) fn release_root(&self) -> Next {
        let before = self.0.fetch_sub(ROOT, Ordering::AcqRel);
        debug_assert!(roots(before) > 0, "a root released twice");
        // While running there is nothing to complete: an unload that begins
        // after this release sees no root and completes by itself (the
        // word's modification order puts its transition after this one).
        // The common case, a call's end, stops here.
        if roots(before) == 1 && DomainState::from_bits(before) == DomainState::Unloading {
            self.claim_completion_if_idle()
        } else {
            Next::Nothing
        }
    }

    /// Claims `COMPLETING` if the unload is cooperative-ready: unloading,
    /// its event done, no root left, nobody completing.
    fn claim_completion_if_idle(&self) -> Next {
        let claimed = self.update(|word| {
            let ready = DomainState::from_bits(word) == DomainState::Unloading
                && word & EVENT_DONE != 0
                && word & COMPLETING == 0
                && roots(word) == 0;
            ready.then_some(word | COMPLETING)
        });
        if claimed.is_ok() {
            Next::Complete
        } else {
            Next::Nothing
        }
    }

    /// `Running -> Unloading`. `Ok(true)` for the call that began it,
    /// `Ok(false)` if an unload was already under way; `Err` is a final
    /// state.
    pub(crate) fn begin_unload(&self) -> Result<bool, DomainState> {
        match self.update(|word| {
            (DomainState::from_bits(word) == DomainState::Running)
                .then_some((word & !PHASE) | DomainState::Unloading as u64)
        }) {
            Ok(_) => Ok(true),
            Err(word) if DomainState::from_bits(word) == DomainState::Unloading => Ok(false),
            Err(word) => Err(DomainState::from_bits(word)),
        }
    }

    /// Claims the running of the unloading event (once per unload; a
    /// forced unload whose event never ran claims it too).
    pub(crate) fn claim_event(&self) -> bool {
        self.update(|word| {
            (DomainState::from_bits(word) == DomainState::Unloading && word & EVENT_STARTED == 0)
                .then_some(word | EVENT_STARTED)
        })
        .is_ok()
    }

    /// The unloading event has run; [`Next::Complete`] if no root is left.
    pub(crate) fn event_done(&self) -> Next {
        self.0
            .fetch_or(EVENT_DONE | EVENT_STARTED, Ordering::AcqRel);
        self.claim_completion_if_idle()
    }

    /// Forces the unload under way. [`Next::Complete`] if this call claimed
    /// the completion (nobody was completing yet).
    pub(crate) fn force(&self) -> Next {
        match self.update(|word| {
            (DomainState::from_bits(word) == DomainState::Unloading && word & COMPLETING == 0)
                .then_some(word | FORCED | COMPLETING)
        }) {
            Ok(_) => Next::Complete,
            Err(word) => {
                if DomainState::from_bits(word) == DomainState::Unloading {
                    self.0.fetch_or(FORCED, Ordering::AcqRel);
                }
                Next::Nothing
            }
        }
    }

    /// Moves to a final state (`Unloaded` or `Recycled`), keeping the roots
    /// count; returns the phase it left.
    pub(crate) fn finish(&self, to: DomainState) -> DomainState {
        debug_assert!(to.is_final());
        let mut left = DomainState::Running;
        let _ = self.update(|word| {
            left = DomainState::from_bits(word);
            Some((word & !PHASE) | to as u64)
        });
        left
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_cooperative_unload_completes_when_the_last_root_goes() {
        let word = StateWord::new();
        word.acquire_root(Admit::Running).unwrap();
        assert_eq!(word.begin_unload(), Ok(true));
        assert_eq!(word.begin_unload(), Ok(false), "the same unload");
        assert_eq!(
            word.acquire_root(Admit::Running),
            Err(DomainState::Unloading)
        );
        word.acquire_root(Admit::WhileUnloading).unwrap();
        assert!(word.claim_event());
        assert!(!word.claim_event(), "once");
        assert_eq!(word.event_done(), Next::Nothing, "two roots left");
        assert_eq!(word.release_root(), Next::Nothing);
        assert_eq!(word.release_root(), Next::Complete);
        assert_eq!(word.force(), Next::Nothing, "already completing");
        word.finish(DomainState::Unloaded);
        assert_eq!(word.load(), DomainState::Unloaded);
        assert_eq!(word.begin_unload(), Err(DomainState::Unloaded));
    }

    #[test]
    fn force_claims_the_completion_whatever_holds_it() {
        let word = StateWord::new();
        word.acquire_root(Admit::Running).unwrap();
        word.begin_unload().unwrap();
        assert_eq!(word.force(), Next::Complete);
        assert!(word.is_forced());
        assert_eq!(
            word.acquire_root(Admit::WhileUnloading),
            Err(DomainState::Unloading),
            "a forced unload admits nothing"
        );
        assert_eq!(word.release_root(), Next::Nothing, "already completing");
        assert_eq!(word.event_done(), Next::Nothing);
    }

    #[test]
    fn an_event_done_with_no_roots_completes_at_once() {
        let word = StateWord::new();
        word.begin_unload().unwrap();
        assert!(word.claim_event());
        assert_eq!(word.event_done(), Next::Complete);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// Counts the completions claimed: the models assert exactly one.
    fn complete(next: Next, completions: &AtomicUsize) {
        if next == Next::Complete {
            completions.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_last_root_and_the_event_race_to_one_completion() {
        loom::model(|| {
            let word = Arc::new(StateWord::new());
            let completions = Arc::new(AtomicUsize::new(0));
            word.acquire_root(Admit::Running).unwrap();
            word.acquire_root(Admit::Running).unwrap();
            word.begin_unload().unwrap();
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (word, completions) = (Arc::clone(&word), Arc::clone(&completions));
                    thread::spawn(move || complete(word.release_root(), &completions))
                })
                .collect();
            if word.claim_event() {
                complete(word.event_done(), &completions);
            }
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(completions.load(Ordering::SeqCst), 1);
            assert_eq!(word.roots(), 0);
        });
    }

    /// A call ends (its root released while the word says `Running`, the
    /// fast path that claims nothing) as another thread begins the unload
    /// and runs its event: whoever comes second completes, once.
    #[test]
    fn a_call_ending_as_the_unload_begins_completes_once() {
        loom::model(|| {
            let word = Arc::new(StateWord::new());
            let completions = Arc::new(AtomicUsize::new(0));
            word.acquire_root(Admit::Running).unwrap();
            let call = {
                let (word, completions) = (Arc::clone(&word), Arc::clone(&completions));
                thread::spawn(move || complete(word.release_root(), &completions))
            };
            if word.begin_unload().unwrap() && word.claim_event() {
                complete(word.event_done(), &completions);
            }
            call.join().unwrap();
            assert_eq!(completions.load(Ordering::SeqCst), 1);
            assert_eq!(word.roots(), 0);
        });
    }

    #[test]
    fn force_racing_the_last_root_and_a_late_ref_call_completes_once() {
        loom::model(|| {
            let word = Arc::new(StateWord::new());
            let completions = Arc::new(AtomicUsize::new(0));
            word.acquire_root(Admit::Running).unwrap();
            word.begin_unload().unwrap();
            assert!(word.claim_event());
            let forcer = {
                let (word, completions) = (Arc::clone(&word), Arc::clone(&completions));
                thread::spawn(move || complete(word.force(), &completions))
            };
            let late = {
                let (word, completions) = (Arc::clone(&word), Arc::clone(&completions));
                thread::spawn(move || {
                    if word.acquire_root(Admit::WhileUnloading).is_ok() {
                        complete(word.release_root(), &completions);
                    }
                })
            };
            complete(word.event_done(), &completions);
            complete(word.release_root(), &completions);
            forcer.join().unwrap();
            late.join().unwrap();
            assert_eq!(completions.load(Ordering::SeqCst), 1);
        });
    }
}
