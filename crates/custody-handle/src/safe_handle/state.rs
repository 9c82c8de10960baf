//! The state word of a [`SafeHandle`](crate::SafeHandle): the reference
//! count `n` and the flags `D` and `C`, packed in one atomic word, and every
//! transition on it.
//!
//! All transitions are performed via RMW operations. This establishes an
//! unambiguous modification order: the decision "this transition releases"
//! (`n` 1 -> 0 while `C` was clear) is made by exactly one thread, so the
//! release runs at most once under any interleaving.
//!
//! # The word
//!
//! One atomic word holds the whole state, as in .NET's `SafeHandle._state`:
//!
//! ```text
//!  usize::BITS-1            2   1   0
//! +---------------------------+---+---+
//! |      reference count n    | D | C |
//! +---------------------------+---+---+
//! ```
//!
//! - `C` ([`CLOSED`]): no further add-ref may succeed. Set by the transition
//!   that takes `n` to zero, or by `set_handle_as_invalid`.
//! - `D` ([`DISPOSED`]): the creation reference has been consumed by
//!   `dispose`, so a second `dispose` is a no-op.
//! - `n`: the creation reference (1 at birth) plus every outstanding add-ref.
//!
//! # The transitions
//! Checked in the order shown:
//!
//! | operation | method | checks | new state | releases |
//! | --- | --- | --- | --- | --- |
//! | add-ref | [`State::ref_inc`] | `C == 0`, `n < MAX` | `(n+1, C, D)` | never |
//! | release | [`State::ref_dec`] + [`State::transition_to_dead`] | `n > 0` | `(n-1, C \| n==1, D)` | `n == 1 && C == 0` |
//! | dispose | [`State::transition_to_disposed`] | `D == 0` (else no-op), `n > 0` | `(n-1, C \| n==1, 1)` | `n == 1 && C == 0` |
//! | set invalid | [`State::set_closed`] | none | `(n, 1, D)` | never |
//!
//! "Releases" additionally requires that the handle owns its resource and the
//! resource is not invalid: the caller decides that, not the word.
//!
//! # Why both add-ref and release are one `fetch_add`/`fetch_sub`
//! As in Linux's `rcuref`, the hot paths are single atomic additions, like
//! `Arc`'s clone and drop, and the rare transitions pay for it:
//!
//! - **Add-ref** adds one reference and then looks at the state it added to.
//!   If `C` was set (or the count was at its maximum) it failed: it takes
//!   its "phantom" increment back. `C` never clears, so a phantom on a closed
//!   handle can neither start nor stop a release.
//! - **Release** subtracts one. From `n >= 2` that is the whole transition.
//!   From `n == 1` the word is now `(0, C, D)` with `C` clear, and the
//!   releasing thread tries one compare-and-swap that sets `C` (the *death*
//!   step); only if that succeeds does it release. An add-ref that lands
//!   between the two sees `C` clear and succeeds: it *resurrects* the handle,
//!   linearized before the release, and the death CAS fails (the count is
//!   no longer zero), so that releaser is not the last after all. Whoever
//!   takes the count to zero last and wins the death CAS releases: exactly
//!   once.
//! - A release by a caller holding no reference (a misuse the API reports as
//!   `Closed`) briefly takes the count below zero and undoes it. The flags
//!   are untouched (the count moves in steps of 4), counts above
//!   [`MAX_REF_COUNT`] are recognizably transient, and the death step waits
//!   them out instead of mistaking them for a resurrection. If such a misuse
//!   races a failed add-ref's phantom it can take the phantom for a real
//!   reference, and the count ends below zero. Even then nothing is released
//!   twice, nothing leaks and the handle stays closed; the last clone's drop
//!   reports the misuse (`outstandingReferences`, "count went below zero").
//!
//! `dispose` and `set_handle_as_invalid` are rare and stay a CAS loop and a
//! `fetch_or`. The loom models check every path.

use std::fmt;

use crate::error::HandleError;
use crate::sync::{AtomicUsize, Ordering};

/// `C`: closed; no add-ref may succeed any more.
pub(super) const CLOSED: usize = 0b01;
/// `D`: disposed; the creation reference has been consumed.
pub(super) const DISPOSED: usize = 0b10;
/// One reference in the count field.
pub(super) const REF_ONE: usize = 0b100;
/// Where the count field starts.
pub(super) const REF_SHIFT: u32 = 2;
/// The largest reference count; add-ref beyond it is
/// [`HandleError::RefCountOverflow`] instead of .NET's silent wrap. Half the
/// count field, so the transient over-counts of racing add-refs never wrap
/// it, and a count above it is recognizably transient.
pub const MAX_REF_COUNT: usize = usize::MAX >> (REF_SHIFT + 1);

/// The atomic state word.
pub(super) struct State {
    val: AtomicUsize,
}

/// A snapshot of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot(usize);

/// What a reference drop ([`State::ref_dec`]) did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum RefDec {
    /// References remain: nothing more to do.
    Remaining,
    /// The count went from 1 to 0: the caller runs the death step
    /// ([`State::transition_to_dead`]).
    Last,
    /// No reference was left (a misuse); the word is as it was.
    Underflow,
}

/// The outcome of a dispose transition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Transition {
    /// `dispose` on a disposed handle: nothing changed.
    NoOp,
    /// The creation reference was dropped; `last` says this took the count
    /// to zero on a handle that was not closed yet, so this thread must now
    /// release (if the handle owns a valid resource).
    Dropped {
        /// The word just before the transition.
        before: Snapshot,
        /// `n == 1 && C == 0` before the transition.
        last: bool,
    },
}

impl State {
    /// A new handle's word: `(1, C=0, D=0)`, the creation reference.
    pub(super) fn new() -> State {
        State {
            val: AtomicUsize::new(REF_ONE),
        }
    }

    /// The current word (Acquire, for reads that act on it).
    #[inline]
    pub(super) fn load(&self) -> Snapshot {
        Snapshot(self.val.load(Ordering::Acquire))
    }

    /// Add-ref: one `fetch_add`. A refused increment (closed, or at
    /// [`MAX_REF_COUNT`]) is taken back.
    #[inline]
    pub(super) fn ref_inc(&self) -> Result<(), HandleError> {
        // Acquire pairs with the Release of earlier reference drops, so our
        // use of the resource starts after everything before it.
        let before = Snapshot(self.val.fetch_add(REF_ONE, Ordering::Acquire));
        if before.is_closed() || before.ref_count() >= MAX_REF_COUNT {
            // A phantom increment: take it back (see the module docs).
            self.val.fetch_sub(REF_ONE, Ordering::Relaxed);
            return Err(if before.is_closed() {
                HandleError::Closed
            } else {
                HandleError::RefCountOverflow
            });
        }
        Ok(())
    }

    /// Reference drop: one `fetch_sub`, undone if no reference was left.
    #[inline]
    pub(super) fn ref_dec(&self) -> RefDec {
        let before = Snapshot(self.val.fetch_sub(REF_ONE, Ordering::Release));
        match before.ref_count() {
            1 => RefDec::Last,
            0 => {
                // No reference was left: undo (see the module docs).
                self.val.fetch_add(REF_ONE, Ordering::Relaxed);
                RefDec::Underflow
            }
            _ => RefDec::Remaining,
        }
    }

    /// The death step, after [`ref_dec`](Self::ref_dec) took the count to
    /// zero: set `C`, unless an add-ref resurrected the handle meanwhile
    /// (then it is not dead) or `C` was set by someone else (then there is
    /// nothing to release). `true` iff this thread set `C` at `n == 0`, and
    /// so must release.
    #[cold]
    pub(super) fn transition_to_dead(&self) -> bool {
        let mut current = Snapshot(self.val.load(Ordering::Relaxed));
        loop {
            if current.is_closed() {
                return false;
            }
            match current.ref_count() {
                0 => {}
                n if n > MAX_REF_COUNT => {
                    // A misused release's transient underflow: wait it out.
                    crate::sync::spin_wait();
                    current = Snapshot(self.val.load(Ordering::Relaxed));
                    continue;
                }
                _ => return false, // resurrected: not the last reference
            }
            // AcqRel: Acquire sees every other holder's use (their Release
            // decrements precede this in the word's order) before releasing.
            match self.val.compare_exchange_weak(
                current.0,
                current.0 | CLOSED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = Snapshot(actual),
            }
        }
    }

    /// Dispose (and the last clone's drop): consume the creation reference
    /// with a CAS loop. `Err` carries the word when no reference is left
    /// (`n == 0` and `D == 0`).
    pub(super) fn transition_to_disposed(&self) -> Result<Transition, Snapshot> {
        let mut current = Snapshot(self.val.load(Ordering::Relaxed));
        loop {
            if current.is_disposed() {
                return Ok(Transition::NoOp);
            }
            let n = current.ref_count();
            if n == 0 {
                return Err(current);
            }
            let mut next = (current.0 - REF_ONE) | DISPOSED;
            if n == 1 {
                next |= CLOSED;
            }
            // AcqRel: Release publishes this thread's use of the resource;
            // Acquire lets the releasing thread see every other thread's use
            // (they all released into this word before it) before it
            // releases.
            match self.val.compare_exchange_weak(
                current.0,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Transition::Dropped {
                        before: current,
                        last: n == 1 && !current.is_closed(),
                    });
                }
                Err(actual) => current = Snapshot(actual),
            }
        }
    }

    /// Set invalid: set `C` with one `fetch_or`; the count is untouched.
    pub(super) fn set_closed(&self) {
        self.val.fetch_or(CLOSED, Ordering::AcqRel);
    }
}

/// Raw access to the word, for tests that plant states no API reaches.
#[cfg(all(test, not(loom)))]
impl State {
    pub(super) fn store(&self, word: usize, order: Ordering) {
        self.val.store(word, order);
    }

    pub(super) fn fetch_sub(&self, word: usize, order: Ordering) -> usize {
        self.val.fetch_sub(word, order)
    }
}

impl Snapshot {
    /// `n`: the creation reference (if not consumed) plus the add-refs.
    #[inline]
    pub(super) fn ref_count(self) -> usize {
        self.0 >> REF_SHIFT
    }

    /// `C`.
    #[inline]
    pub(super) fn is_closed(self) -> bool {
        self.0 & CLOSED != 0
    }

    /// `D`.
    #[inline]
    pub(super) fn is_disposed(self) -> bool {
        self.0 & DISPOSED != 0
    }

    /// Neither `C` nor `D`: a lookup may hand the handle out.
    #[inline]
    pub(super) fn is_usable(self) -> bool {
        self.0 & (CLOSED | DISPOSED) == 0
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(n={}, C={}, D={})",
            self.ref_count(),
            u8::from(self.is_closed()),
            u8::from(self.is_disposed())
        )
    }
}
