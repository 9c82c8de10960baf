//! The release contract every wrapped resource implements.

use std::io;

/// A resource that a [`SafeHandle`](crate::SafeHandle) or
/// [`CriticalHandle`](crate::CriticalHandle) owns and releases exactly once.
///
/// This is .NET's `SafeHandle.ReleaseHandle` / `IsInvalid` pair. The value is a
/// *description* of the resource (a raw fd, an address and length, a pid): it
/// does not release anything on `Drop`. Only the handle wrappers release it,
/// which is how custody guarantees "exactly once".
///
/// # Contract
/// - [`release_handle`](ReleaseHandle::release_handle) is called at most once
///   per wrapper and never concurrently with itself, and only when
///   [`is_invalid`](ReleaseHandle::is_invalid) is false and the wrapper owns the
///   resource.
/// - It must not fail for transient reasons (no resource shortage, no retry):
///   a failure means the resource was released by someone else or never was
///   the wrapper's to release. Unlike .NET, where `ReleaseHandle` returning
///   `false` is at best an opt-in debugging message, custody returns the error
///   to the caller that performed the release and fires the
///   `releaseHandleFailed` diagnostic; the release is never retried.
pub trait ReleaseHandle: Send + Sync + 'static {
    /// Whether the value is not a live resource (e.g. fd -1). An invalid
    /// value's release is skipped; add-ref on it still succeeds, as in .NET.
    fn is_invalid(&self) -> bool;

    /// Releases the resource. See the trait's contract.
    fn release_handle(&self) -> io::Result<()>;

    /// The raw value, for diagnostics and the handle history (printed as
    /// `0x%08X`).
    fn raw_value(&self) -> u64;
}

/// Formats a raw value the way every custody report prints it: `0x%08X`.
pub fn format_raw(raw: u64) -> String {
    format!("0x{raw:08X}")
}
