//! The one error type of this crate.

use std::io;

use crate::id::HandleId;

/// Why a handle operation failed.
///
/// The first three variants are the .NET `SafeHandle` failures (an
/// `ObjectDisposedException` is [`Closed`](HandleError::Closed)); custody adds
/// [`RefCountOverflow`](HandleError::RefCountOverflow) and
/// [`ReleaseFailed`](HandleError::ReleaseFailed) where .NET wraps silently or
/// swallows the failure. The rest come from [`HandleTable`](crate::HandleTable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The handle is closed: its last reference was released, it was set
    /// invalid, or (for a dispose or release) its references are all gone.
    #[error("the handle is closed")]
    Closed,
    /// The reference count is at its maximum. .NET wraps the count silently
    /// to zero at this point, which releases a resource still in use.
    #[error("the handle's reference count is at its maximum")]
    RefCountOverflow,
    /// This call performed the release and [`release_handle`] failed. The
    /// handle is closed regardless and the release is never retried; the
    /// `releaseHandleFailed` diagnostic has fired.
    ///
    /// [`release_handle`]: crate::ReleaseHandle::release_handle
    #[error("releasing the handle failed: {0}")]
    ReleaseFailed(#[source] io::Error),
    /// A table lookup was given id 0, the null handle.
    #[error("the null handle (id 0) was used")]
    Null,
    /// A table id that was never issued, was closed, or whose slot has moved
    /// on to a newer generation. Fires `staleHandleUse`.
    #[error("handle id {0} is stale: it was closed or never issued")]
    Stale(HandleId),
    /// A table id holds a different kind of resource than the one asked for.
    #[error("handle id {id} holds a {found}, not a {expected}")]
    WrongKind {
        /// The id that was looked up.
        id: HandleId,
        /// The type the caller asked for.
        expected: &'static str,
        /// The type the table holds under that id.
        found: &'static str,
    },
    /// The table holds as many live handles as its limit allows.
    #[error("the handle table is full ({limit} live handles)")]
    QuotaExceeded {
        /// The table's limit on live handles.
        limit: usize,
    },
    /// An operating-system call other than the release failed (for example
    /// the `fcntl` behind [`SafeHandle::dup`](crate::SafeHandle::dup)).
    #[error(transparent)]
    Io(#[from] io::Error),
}
