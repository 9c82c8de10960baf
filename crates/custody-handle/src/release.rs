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

/// A resource type's name without its path, for people: `Fd` for
/// `custody_handle::os::fd::Fd`, `Guard<Fd>` for `a::Guard<b::Fd>`.
pub fn short_type_name(name: &str) -> String {
    let mut short = String::with_capacity(name.len());
    let mut segment = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            short.push_str(segment.rsplit("::").next().unwrap_or(""));
            segment.clear();
            short.push(c);
        }
    }
    short.push_str(segment.rsplit("::").next().unwrap_or(""));
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name("custody_handle::os::fd::Fd"), "Fd");
        assert_eq!(short_type_name("Fd"), "Fd");
        assert_eq!(short_type_name("a::Guard<b::c::Fd, u8>"), "Guard<Fd, u8>");
        assert_eq!(short_type_name("(a::X, [b::Y; 2])"), "(X, [Y; 2])");
        assert_eq!(short_type_name(""), "");
    }
}
