//! `CriticalHandle<T>`: a single owner with no reference count.

use std::any::type_name;
use std::fmt;
use std::ops::Deref;

use crate::diagnostics;
use crate::error::HandleError;
use crate::release::ReleaseHandle;

/// A single owner of one OS resource, released exactly once by
/// [`close`](Self::close) or drop.
///
/// This is .NET's `CriticalHandle`: no reference count, so no add-ref cost and
/// no protection against use during close. .NET documents that two threads
/// closing one `CriticalHandle` at once may release it twice; here ownership
/// is unique (the type is not `Clone` and `close` takes `self`), so that
/// cannot compile. Share a [`SafeHandle`](crate::SafeHandle) instead when more
/// than one party needs the resource.
///
/// A failed release is returned by `close` and reported by the
/// `releaseHandleFailed` diagnostic, as for `SafeHandle`.
pub struct CriticalHandle<T: ReleaseHandle> {
    value: T,
    /// Set by `set_handle_as_invalid` and by `close`: nothing left to release.
    closed: bool,
}

impl<T: ReleaseHandle> CriticalHandle<T> {
    /// Takes ownership of a resource.
    pub fn new(value: T) -> Self {
        Self {
            value,
            closed: false,
        }
    }

    /// Releases the resource now. .NET: `Close()`/`Dispose()`.
    ///
    /// # Errors
    /// [`HandleError::ReleaseFailed`] if `release_handle` failed (it is not
    /// retried).
    pub fn close(mut self) -> Result<(), HandleError> {
        self.release()
    }

    /// Gives up ownership without releasing. .NET: `SetHandleAsInvalid`.
    pub fn set_handle_as_invalid(&mut self) {
        self.closed = true;
    }

    /// Whether the handle has nothing left to release: closed, set invalid, or
    /// holding an invalid value. .NET: `IsClosed || IsInvalid`.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the value is invalid. .NET: `IsInvalid`.
    pub fn is_invalid(&self) -> bool {
        self.value.is_invalid()
    }

    /// The raw value (for diagnostics).
    pub fn raw_value(&self) -> u64 {
        self.value.raw_value()
    }

    fn release(&mut self) -> Result<(), HandleError> {
        if std::mem::replace(&mut self.closed, true) || self.value.is_invalid() {
            return Ok(());
        }
        self.value.release_handle().map_err(|error| {
            diagnostics::release_handle_failed(type_name::<T>(), self.value.raw_value(), &error);
            HandleError::ReleaseFailed(error)
        })
    }
}

impl<T: ReleaseHandle> Deref for CriticalHandle<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ReleaseHandle> Drop for CriticalHandle<T> {
    fn drop(&mut self) {
        if !self.closed && !self.value.is_invalid() {
            diagnostics::handle_finalized(type_name::<T>(), self.value.raw_value());
        }
        // A failure has been reported by the diagnostic already.
        let _ = self.release();
    }
}

impl<T: ReleaseHandle + fmt::Debug> fmt::Debug for CriticalHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalHandle")
            .field("value", &self.value)
            .field("closed", &self.closed)
            .finish()
    }
}
