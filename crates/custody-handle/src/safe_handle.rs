//! `SafeHandle<T>`: a shared, reference-counted owner of one OS resource.
//!
//! # The state word
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
//! Every transition is a single atomic read-modify-write of the whole word,
//! so the decision "this transition releases" (`n` 1 -> 0 while `C` was
//! clear) is made by exactly one thread: the release runs at most once under
//! any interleaving. The transitions, checked in the order shown:
//!
//! | operation | checks | new state | releases |
//! | --- | --- | --- | --- |
//! | add-ref | `C == 0`, `n < MAX` | `(n+1, C, D)` | never |
//! | release | `n > 0` | `(n-1, C \| n==1, D)` | `n == 1 && C == 0` |
//! | dispose | `D == 0` (else no-op), `n > 0` | `(n-1, C \| n==1, 1)` | `n == 1 && C == 0` |
//! | set invalid | none | `(n, 1, D)` | never |
//!
//! "Releases" additionally requires that the handle owns its resource and the
//! resource is not invalid.
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

use std::any::type_name;
use std::fmt;
use std::ops::Deref;

use crate::diagnostics;
use crate::error::HandleError;
use crate::history::{self, EventKind, Owner};
use crate::release::ReleaseHandle;
use crate::sync::{Arc, AtomicUsize, Ordering};

/// `C`: closed; no add-ref may succeed any more.
const CLOSED: usize = 0b01;
/// `D`: disposed; the creation reference has been consumed.
const DISPOSED: usize = 0b10;
/// One reference in the count field.
const REF_ONE: usize = 0b100;
/// Where the count field starts.
const REF_SHIFT: u32 = 2;
/// The largest reference count; add-ref beyond it is
/// [`HandleError::RefCountOverflow`] instead of .NET's silent wrap. Half the
/// count field, so the transient over-counts of racing add-refs never wrap
/// it, and a count above it is recognizably transient.
pub const MAX_REF_COUNT: usize = usize::MAX >> (REF_SHIFT + 1);

/// A snapshot of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
struct State(usize);

impl State {
    const NEW: State = State(REF_ONE);

    fn ref_count(self) -> usize {
        self.0 >> REF_SHIFT
    }
    fn is_closed(self) -> bool {
        self.0 & CLOSED != 0
    }
    fn is_disposed(self) -> bool {
        self.0 & DISPOSED != 0
    }
}

impl fmt::Debug for State {
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

/// The outcome of a dispose transition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transition {
    /// `dispose` on a disposed handle: nothing changed.
    NoOp,
    /// The count went down; `perform_release` says whether this thread must
    /// now run `release_handle`.
    Dropped {
        before: State,
        perform_release: bool,
    },
}

/// The shared part of a [`SafeHandle`]: what .NET keeps in the object.
struct Inner<T: ReleaseHandle> {
    state: AtomicUsize,
    owns_handle: bool,
    /// The handle-history identity of this owner, or `Owner::UNTRACED`.
    /// Read once at creation so that history off costs one predictable branch.
    owner: Owner,
    value: T,
}

/// A shared, reference-counted owner of one OS resource that releases it
/// exactly once.
///
/// This is .NET's `System.Runtime.InteropServices.SafeHandle`. Cloning a
/// `SafeHandle` is like copying a reference to the .NET object: all clones
/// share one state. A new handle holds one *creation reference*, consumed by
/// [`dispose`](Self::dispose) (= `close`) or, failing that, by dropping the
/// last clone (.NET's critical finalizer). Code that uses the raw resource
/// brackets the use with [`acquire`](Self::acquire) (or the .NET-style
/// [`dangerous_add_ref`](Self::dangerous_add_ref) /
/// [`dangerous_release`](Self::dangerous_release)), so a concurrent `dispose`
/// defers the release until the use ends.
///
/// # Where custody differs from .NET, and why
/// - The count never wraps: add-ref at [`MAX_REF_COUNT`] is
///   [`HandleError::RefCountOverflow`]. .NET's count silently wraps to zero and
///   the resource is released while still in use.
/// - A failed release is never silent: the call that performed the release
///   returns [`HandleError::ReleaseFailed`], the `releaseHandleFailed`
///   diagnostic fires (naming the type, the raw value and the likely causes)
///   and a counter goes up. The handle is closed and never retried.
/// - Dropping the last clone while manual add-refs are outstanding leaks the
///   resource, as in .NET, but fires `outstandingReferences` instead of
///   leaking silently.
/// - `release_handle` is never called on an invalid or unowned value.
///
/// # Example
/// ```
/// use custody_handle::{Fd, SafeHandle};
/// use std::io::Write;
/// use std::os::fd::AsFd;
///
/// let file = tempfile_for_doc();
/// let handle: SafeHandle<Fd> = SafeHandle::from(file);
/// {
///     let guard = handle.acquire()?; // add-ref'd: a concurrent dispose waits for us
///     let mut f = std::fs::File::from(guard.as_fd().try_clone_to_owned()?);
///     f.write_all(b"hello")?;
/// } // guard dropped: released
/// handle.dispose()?; // the fd is closed here, exactly once
/// # fn tempfile_for_doc() -> std::fs::File {
/// #     std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").unwrap()
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SafeHandle<T: ReleaseHandle> {
    inner: Arc<Inner<T>>,
}

impl<T: ReleaseHandle> Clone for SafeHandle<T> {
    /// Shares the handle: the clone sees the same state (this is not an OS
    /// duplicate; for that see [`SafeHandle::dup`] on fds).
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: ReleaseHandle> SafeHandle<T> {
    /// Wraps a resource this handle owns: it will be released exactly once.
    /// .NET: `new SafeHandle(..., ownsHandle: true)` + `SetHandle`.
    pub fn new(value: T) -> Self {
        Self::with_ownership(value, true)
    }

    /// Wraps a resource, releasing it only if `owns_handle` is true.
    ///
    /// An unowned handle still counts references and closes, so borrowed
    /// resources get the same use-after-close protection, but it never calls
    /// `release_handle`. .NET's `ownsHandle: false`.
    pub fn with_ownership(value: T, owns_handle: bool) -> Self {
        let owner = history::new_owner();
        if owner.is_traced() {
            history::record(
                owner,
                value.raw_value(),
                type_name::<T>(),
                EventKind::Created,
            );
        }
        Self {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(State::NEW.0),
                owns_handle,
                owner,
                value,
            }),
        }
    }

    /// Takes a reference for a scope: the returned guard derefs to the
    /// resource and releases the reference on drop.
    ///
    /// While any guard lives, a `dispose` on another thread (or this one)
    /// defers the release to the last guard's drop.
    ///
    /// # Errors
    /// [`HandleError::Closed`] if the handle is closed,
    /// [`HandleError::RefCountOverflow`] at the maximum count.
    #[inline]
    pub fn acquire(&self) -> Result<HandleRef<'_, T>, HandleError> {
        self.dangerous_add_ref()?;
        Ok(HandleRef { handle: self })
    }

    /// Adds a reference. .NET: `DangerousAddRef`. Every success must be paired
    /// with one [`dangerous_release`](Self::dangerous_release); prefer
    /// [`acquire`](Self::acquire), which cannot forget.
    ///
    /// Succeeds on an invalid handle (as in .NET): validity only decides
    /// whether the final release calls `release_handle`.
    ///
    /// # Errors
    /// [`HandleError::Closed`] if `C` is set; [`HandleError::RefCountOverflow`]
    /// at [`MAX_REF_COUNT`] (where .NET wraps).
    #[inline]
    pub fn dangerous_add_ref(&self) -> Result<(), HandleError> {
        let inner = &*self.inner;
        // Acquire pairs with the Release of earlier reference drops, so our
        // use of the resource starts after everything before it.
        let before = State(inner.state.fetch_add(REF_ONE, Ordering::Acquire));
        if before.is_closed() || before.ref_count() >= MAX_REF_COUNT {
            // A phantom increment: take it back (see the module docs).
            inner.state.fetch_sub(REF_ONE, Ordering::Relaxed);
            return Err(if before.is_closed() {
                HandleError::Closed
            } else {
                HandleError::RefCountOverflow
            });
        }
        if inner.owner.is_traced() {
            self.record(EventKind::AddRef);
        }
        Ok(())
    }

    /// Drops a reference taken by [`dangerous_add_ref`](Self::dangerous_add_ref).
    /// .NET: `DangerousRelease`.
    ///
    /// If this drops the last reference the resource is released here, on
    /// this thread. Called without a matching add-ref, it consumes the
    /// creation reference (as in .NET).
    ///
    /// # Errors
    /// [`HandleError::Closed`] if no reference is left;
    /// [`HandleError::ReleaseFailed`] if this call performed the release and
    /// it failed.
    #[inline]
    pub fn dangerous_release(&self) -> Result<(), HandleError> {
        let inner = &*self.inner;
        if inner.owner.is_traced() {
            self.record(EventKind::Release);
        }
        let before = State(inner.state.fetch_sub(REF_ONE, Ordering::Release));
        match before.ref_count() {
            1 => inner.die(),
            0 => {
                // No reference was left: undo (see the module docs).
                inner.state.fetch_add(REF_ONE, Ordering::Relaxed);
                Err(HandleError::Closed)
            }
            _ => Ok(()),
        }
    }

    /// Consumes the creation reference: the resource is released now, or, if
    /// references are outstanding, by the last of them. .NET: `Dispose()` /
    /// `Close()`.
    ///
    /// A second and later `dispose` is a silent no-op.
    ///
    /// # Errors
    /// [`HandleError::Closed`] if the creation reference was already consumed
    /// by a `dangerous_release` without add-ref; [`HandleError::ReleaseFailed`]
    /// if this call performed the release and it failed.
    pub fn dispose(&self) -> Result<(), HandleError> {
        if self.inner.owner.is_traced() {
            self.record(EventKind::Dispose);
        }
        self.dispose_reference().map(|_| ())
    }

    /// Same as [`dispose`](Self::dispose). .NET: `Close()`.
    ///
    /// # Errors
    /// As [`dispose`](Self::dispose).
    pub fn close(&self) -> Result<(), HandleError> {
        self.dispose()
    }

    /// Marks the handle closed without releasing the resource. .NET:
    /// `SetHandleAsInvalid`. Use it when the resource was handed to something
    /// else that will release it.
    pub fn set_handle_as_invalid(&self) {
        if self.inner.owner.is_traced() {
            self.record(EventKind::SetInvalid);
        }
        self.inner.state.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// The resource itself, with no reference taken. .NET:
    /// `DangerousGetHandle`.
    ///
    /// Nothing stops a `dispose` on another thread from releasing the
    /// resource while you use the value: bracket the use with an add-ref, or
    /// use [`acquire`](Self::acquire). Never release the raw value yourself:
    /// that is the first cause the `releaseHandleFailed` diagnostic names.
    /// With handle history on, this call is recorded.
    pub fn dangerous_get_handle(&self) -> &T {
        if self.inner.owner.is_traced() {
            self.record(EventKind::GetHandle);
        }
        &self.inner.value
    }

    /// The raw value, readable even after close (for logs and diagnostics).
    pub fn raw_value(&self) -> u64 {
        self.inner.value.raw_value()
    }

    /// Whether `C` is set. .NET: `IsClosed`.
    pub fn is_closed(&self) -> bool {
        self.state().is_closed()
    }

    /// Whether the creation reference has been consumed by `dispose`.
    pub fn is_disposed(&self) -> bool {
        self.state().is_disposed()
    }

    /// Whether the resource is invalid. .NET: `IsInvalid`.
    pub fn is_invalid(&self) -> bool {
        self.inner.value.is_invalid()
    }

    /// Whether this handle releases its resource. .NET: `ownsHandle`.
    pub fn owns_handle(&self) -> bool {
        self.inner.owns_handle
    }

    /// The current reference count (creation reference included). A
    /// snapshot, for diagnostics and tests.
    pub fn ref_count(&self) -> usize {
        self.state().ref_count()
    }

    /// Whether `self` and `other` are clones of one handle.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Neither closed nor disposed (one load of the state word).
    #[inline]
    pub(crate) fn is_usable(&self) -> bool {
        self.state().0 & (CLOSED | DISPOSED) == 0
    }

    /// The resource, without recording a history event (for guards).
    #[inline]
    pub(crate) fn value(&self) -> &T {
        &self.inner.value
    }

    fn state(&self) -> State {
        State(self.inner.state.load(Ordering::Acquire))
    }

    fn record(&self, kind: EventKind) {
        history::record(
            self.inner.owner,
            self.inner.value.raw_value(),
            type_name::<T>(),
            kind,
        );
    }

    /// Consumes the creation reference per the table in the module docs
    /// and, if this thread made the releasing transition, runs the release.
    fn dispose_reference(&self) -> Result<Transition, HandleError> {
        let transition = self.inner.dispose_transition()?;
        if let Transition::Dropped {
            perform_release: true,
            ..
        } = transition
        {
            self.inner.release_now()?;
        }
        Ok(transition)
    }
}

impl<T: ReleaseHandle> Inner<T> {
    /// The death step, after a release took the count to zero: set `C` and
    /// release, unless an add-ref resurrected the handle meanwhile (then it
    /// is not dead) or `C` was set by someone else (then nothing to release).
    #[cold]
    fn die(&self) -> Result<(), HandleError> {
        let mut current = State(self.state.load(Ordering::Relaxed));
        loop {
            if current.is_closed() {
                return Ok(());
            }
            match current.ref_count() {
                0 => {}
                n if n > MAX_REF_COUNT => {
                    // A misused release's transient underflow: wait it out.
                    crate::sync::spin_wait();
                    current = State(self.state.load(Ordering::Relaxed));
                    continue;
                }
                _ => return Ok(()), // resurrected: not the last reference
            }
            // AcqRel: Acquire sees every other holder's use (their Release
            // decrements precede this in the word's order) before releasing.
            match self.state.compare_exchange_weak(
                current.0,
                current.0 | CLOSED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if self.owns_handle && !self.value.is_invalid() => return self.release_now(),
                Ok(_) => return Ok(()),
                Err(actual) => current = State(actual),
            }
        }
    }

    /// The compare-and-swap loop behind dispose and the last clone's drop.
    fn dispose_transition(&self) -> Result<Transition, HandleError> {
        let mut current = State(self.state.load(Ordering::Relaxed));
        loop {
            if current.is_disposed() {
                return Ok(Transition::NoOp);
            }
            let n = current.ref_count();
            if n == 0 {
                return Err(HandleError::Closed);
            }
            let mut next = (current.0 - REF_ONE) | DISPOSED;
            if n == 1 {
                next |= CLOSED;
            }
            // AcqRel: Release publishes this thread's use of the resource;
            // Acquire lets the releasing thread see every other thread's use
            // (they all released into this word before it) before it
            // releases.
            match self.state.compare_exchange_weak(
                current.0,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let perform_release = n == 1
                        && !current.is_closed()
                        && self.owns_handle
                        && !self.value.is_invalid();
                    return Ok(Transition::Dropped {
                        before: current,
                        perform_release,
                    });
                }
                Err(actual) => current = State(actual),
            }
        }
    }

    /// Runs `release_handle` and reports a failure. Called by the one thread
    /// whose transition released.
    #[cold]
    fn release_now(&self) -> Result<(), HandleError> {
        let raw = self.value.raw_value();
        let result = self.value.release_handle();
        if self.owner.is_traced() {
            let kind = match &result {
                Ok(()) => EventKind::ReleaseHandle,
                Err(e) => EventKind::ReleaseFailed(e.to_string()),
            };
            history::record(self.owner, raw, type_name::<T>(), kind);
        }
        result.map_err(|error| {
            diagnostics::release_handle_failed(type_name::<T>(), raw, &error);
            HandleError::ReleaseFailed(error)
        })
    }
}

impl<T: ReleaseHandle> Drop for Inner<T> {
    /// The last clone is gone: .NET's critical finalizer. Behaves as
    /// `dispose`; reports a release failure (it cannot return it), a release
    /// that happened here rather than in `dispose` (`handleFinalized`, off by
    /// default) and add-refs that can now never be released
    /// (`outstandingReferences`).
    fn drop(&mut self) {
        let raw = self.value.raw_value();
        let name = type_name::<T>();
        let Ok(transition) = self.dispose_transition() else {
            // n == 0: the creation reference was consumed by a release
            // without add-ref and the handle is closed. Nothing to do.
            return;
        };
        let remaining = match transition {
            Transition::NoOp => State(self.state.load(Ordering::Acquire)).ref_count(),
            Transition::Dropped {
                before,
                perform_release,
            } => {
                if perform_release {
                    if self.owner.is_traced() {
                        history::record(self.owner, raw, name, EventKind::Finalized);
                    }
                    diagnostics::handle_finalized(name, raw);
                    // A failure has already been reported by release_now.
                    let _ = self.release_now();
                }
                before.ref_count() - 1
            }
        };
        if remaining > MAX_REF_COUNT {
            diagnostics::unbalanced_references(name, raw, None);
        } else if remaining > 0 {
            diagnostics::unbalanced_references(name, raw, Some(remaining));
        }
    }
}

impl<T: ReleaseHandle + fmt::Debug> fmt::Debug for SafeHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeHandle")
            .field("value", &self.inner.value)
            .field("state", &self.state())
            .field("owns_handle", &self.inner.owns_handle)
            .finish()
    }
}

/// A reference taken by [`SafeHandle::acquire`]: derefs to the resource and
/// releases the reference when dropped (releasing the resource if a
/// `dispose` happened meanwhile and this was the last reference).
///
/// .NET has no guard; this is `DangerousAddRef` + `try/finally
/// DangerousRelease` made impossible to get wrong.
#[must_use = "dropping the guard releases the reference at once"]
pub struct HandleRef<'a, T: ReleaseHandle> {
    handle: &'a SafeHandle<T>,
}

impl<'a, T: ReleaseHandle> HandleRef<'a, T> {
    /// The handle this reference was taken on.
    pub fn handle(&self) -> &'a SafeHandle<T> {
        self.handle
    }

    /// Releases the reference now and returns what the release did (a guard's
    /// drop can only report a failure through diagnostics).
    ///
    /// # Errors
    /// [`HandleError::ReleaseFailed`] if this was the last reference and the
    /// resource's release failed.
    pub fn release(self) -> Result<(), HandleError> {
        let handle = self.handle;
        std::mem::forget(self);
        handle.dangerous_release()
    }
}

impl<T: ReleaseHandle> Deref for HandleRef<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.handle.inner.value
    }
}

impl<T: ReleaseHandle> Drop for HandleRef<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // The guard's add-ref guarantees n > 0, so the only possible error is
        // a failed release, which release_now has already reported.
        let _ = self.handle.dangerous_release();
    }
}

impl<T: ReleaseHandle + fmt::Debug> fmt::Debug for HandleRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandleRef").field(&**self).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
