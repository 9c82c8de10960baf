//! `Fd`: a file descriptor released with `close(2)`.

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use super::sys;
use crate::critical_handle::CriticalHandle;
use crate::error::HandleError;
use crate::release::ReleaseHandle;
use crate::safe_handle::{HandleRef, SafeHandle};

/// A raw file descriptor, released with `close(2)`. .NET:
/// `SafeFileHandle`.
///
/// `Fd` is a value, like a `RawFd`: it closes nothing on drop. Put it in a
/// [`SafeHandle`] or [`CriticalHandle`] (both convert from [`OwnedFd`] and
/// [`File`] directly), which release it exactly once.
///
/// # Release
/// `EBADF` is a release failure: the descriptor was closed elsewhere (the raw
/// value was copied out and closed, or two owners wrapped one value), which is
/// the `releaseHandleFailed` seed's case. `EINTR` counts as released, because
/// Linux always frees the descriptor before `close` returns and a retry could
/// close a descriptor another thread was just given.
#[derive(Debug, PartialEq, Eq)]
pub struct Fd {
    raw: RawFd,
}

impl Fd {
    /// The invalid descriptor, -1.
    pub const INVALID: Fd = Fd { raw: -1 };

    /// The raw descriptor.
    pub fn raw(&self) -> RawFd {
        self.raw
    }

    /// Turns the value back into an [`OwnedFd`]; `None` if it is invalid.
    pub fn into_owned_fd(self) -> Option<OwnedFd> {
        // SAFETY: an `Fd` is only built from an owned descriptor (`From`
        // impls) or by a caller of the unsafe `from_raw_fd` who vouched for
        // ownership; consuming `self` transfers that ownership.
        (self.raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(self.raw) })
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        Fd {
            raw: fd.into_raw_fd(),
        }
    }
}

impl From<File> for Fd {
    fn from(file: File) -> Self {
        Fd::from(OwnedFd::from(file))
    }
}

impl FromRawFd for Fd {
    /// # Safety
    /// `fd` must be open and owned by the caller, who hands ownership over.
    /// Building a second owning wrapper around a descriptor someone else owns
    /// is the double-ownership bug `releaseHandleFailed` reports.
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        Fd { raw: fd }
    }
}

impl ReleaseHandle for Fd {
    fn is_invalid(&self) -> bool {
        self.raw < 0
    }

    fn release_handle(&self) -> io::Result<()> {
        sys::close(self.raw)
    }

    fn raw_value(&self) -> u64 {
        u64::from(self.raw as u32)
    }
}

impl From<OwnedFd> for SafeHandle<Fd> {
    fn from(fd: OwnedFd) -> Self {
        SafeHandle::new(Fd::from(fd))
    }
}

impl From<File> for SafeHandle<Fd> {
    fn from(file: File) -> Self {
        SafeHandle::new(Fd::from(file))
    }
}

impl From<OwnedFd> for CriticalHandle<Fd> {
    fn from(fd: OwnedFd) -> Self {
        CriticalHandle::new(Fd::from(fd))
    }
}

impl From<File> for CriticalHandle<Fd> {
    fn from(file: File) -> Self {
        CriticalHandle::new(Fd::from(file))
    }
}

impl SafeHandle<Fd> {
    /// An OS-level duplicate (`fcntl(F_DUPFD_CLOEXEC)`) in a new, independent
    /// handle: the correct way to give a second party its own copy, where
    /// .NET would need `DuplicateHandle`. A bitwise copy of the raw value
    /// instead is the third cause `releaseHandleFailed` names.
    ///
    /// # Errors
    /// [`HandleError::Closed`] if this handle is closed, or the OS error.
    pub fn dup(&self) -> Result<SafeHandle<Fd>, HandleError> {
        let guard = self.acquire()?;
        let duplicate = guard.as_fd().try_clone_to_owned()?;
        Ok(SafeHandle::from(duplicate))
    }
}

impl AsFd for HandleRef<'_, Fd> {
    /// The descriptor, valid while the guard holds its reference.
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the guard's reference defers any release until the guard
        // (which this borrow cannot outlive) is dropped.
        unsafe { sys::borrow_fd(self.raw(), self) }
    }
}

impl AsRawFd for HandleRef<'_, Fd> {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

impl AsFd for CriticalHandle<Fd> {
    /// The descriptor, valid while the handle is borrowed (`close` takes the
    /// handle by value, so it cannot run meanwhile).
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is released only by `close(self)` or drop,
        // neither of which can happen while `self` is borrowed.
        unsafe { sys::borrow_fd(self.raw(), self) }
    }
}

impl AsFd for crate::table::TableRef<'_, Fd> {
    /// The descriptor, valid while the guard pins the table entry.
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the pin keeps the table's reference on the handle, so the
        // descriptor is not released before the guard (which this borrow
        // cannot outlive) drops.
        unsafe { sys::borrow_fd(self.raw(), self) }
    }
}
