//! `Mapping`: a memory mapping released with `munmap(2)`.

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;

use super::sys;
use crate::critical_handle::CriticalHandle;
use crate::release::ReleaseHandle;
use crate::safe_handle::HandleRef;

/// A memory mapping, released with `munmap(2)`.
///
/// Like every resource value it unmaps nothing on drop: wrap it in a
/// [`SafeHandle`](crate::SafeHandle) or [`CriticalHandle`]. Read the bytes
/// through a guard ([`HandleRef::bytes`]) so the mapping cannot be released
/// under you.
///
/// Linux's `munmap` succeeds on a range that is no longer mapped, so a double
/// unmap is not detectable and does not fire `releaseHandleFailed`.
#[derive(Debug, PartialEq, Eq)]
pub struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    /// A new private anonymous read-write mapping of `len` bytes (zeroed).
    ///
    /// # Errors
    /// The OS error; `EINVAL` for `len == 0`.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        Ok(Mapping {
            addr: sys::mmap_anonymous(len)?,
            len,
        })
    }

    /// A private read-only mapping of `len` bytes of a file from `offset`
    /// (a multiple of the page size). The mapping stays valid after the file
    /// is closed.
    ///
    /// # Errors
    /// The OS error; `EINVAL` for `len == 0` or a misaligned offset.
    pub fn of_file(file: impl AsFd, len: usize, offset: u64) -> io::Result<Mapping> {
        Ok(Mapping {
            addr: sys::mmap_file(file.as_fd(), len, offset)?,
            len,
        })
    }

    /// The start address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the length is zero (never true for a live mapping).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ReleaseHandle for Mapping {
    fn is_invalid(&self) -> bool {
        self.addr == 0 || self.len == 0
    }

    fn release_handle(&self) -> io::Result<()> {
        sys::munmap(self.addr, self.len)
    }

    fn raw_value(&self) -> u64 {
        self.addr as u64
    }
}

impl HandleRef<'_, Mapping> {
    /// The mapped bytes, readable while the guard holds its reference.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the guard's reference keeps the mapping from being
        // released while the slice (which borrows the guard) lives, and
        // custody never writes to it.
        unsafe { sys::mapped_bytes(self.addr, self.len) }
    }
}

impl CriticalHandle<Mapping> {
    /// The mapped bytes, readable while the handle is borrowed.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `close` takes the handle by value, so the mapping outlives
        // this borrow; custody never writes to it.
        unsafe { sys::mapped_bytes(self.addr, self.len) }
    }
}
