//! `SafeHandle<T>`: a shared, reference-counted owner of one OS resource.
//!
//! This module owns the public API ([`SafeHandle`], [`HandleRef`]) and what
//! happens around a transition: history events, running `release_handle`
//! exactly once, and the diagnostics of the last clone's drop. The state
//! word itself, the reference count `n` and the flags `D` (disposed) and `C`
//! (closed), and every transition on it live in `state.rs`: each transition
//! is one atomic read-modify-write of the whole word, so the decision "this
//! transition releases" is made by exactly one thread.
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

use std::any::type_name;
use std::fmt;
use std::ops::Deref;

use crate::diagnostics;
use crate::error::HandleError;
use crate::history::{self, EventKind, Owner};
use crate::release::ReleaseHandle;
use crate::sync::Arc;

mod state;

pub use state::MAX_REF_COUNT;
use state::{RefDec, Snapshot, State, Transition};

/// The shared part of a [`SafeHandle`]: what .NET keeps in the object.
struct Inner<T: ReleaseHandle> {
    state: State,
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
                state: State::new(),
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
        inner.state.ref_inc()?;
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
        match inner.state.ref_dec() {
            RefDec::Last => inner.die(),
            RefDec::Underflow => Err(HandleError::Closed),
            RefDec::Remaining => Ok(()),
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
        self.inner.state.set_closed();
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
        self.state().is_usable()
    }

    /// The resource, without recording a history event (for guards).
    #[inline]
    pub(crate) fn value(&self) -> &T {
        &self.inner.value
    }

    fn state(&self) -> Snapshot {
        self.inner.state.load()
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
        if let Transition::Dropped { last: true, .. } = transition
            && self.inner.must_release()
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
        if self.state.transition_to_dead() && self.must_release() {
            return self.release_now();
        }
        Ok(())
    }

    /// The dispose transition (dispose and the last clone's drop).
    fn dispose_transition(&self) -> Result<Transition, HandleError> {
        self.state
            .transition_to_disposed()
            .map_err(|_| HandleError::Closed)
    }

    /// Whether a transition that dropped the last reference of an open
    /// handle must call `release_handle`: only for an owned, valid resource.
    fn must_release(&self) -> bool {
        self.owns_handle && !self.value.is_invalid()
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
            Transition::NoOp => self.state.load().ref_count(),
            Transition::Dropped { before, last } => {
                if last && self.must_release() {
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
