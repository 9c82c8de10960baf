//! Every system call custody-handle makes, and every `unsafe` block that
//! touches the OS, in one small module to audit.
//!
//! # References
//! - [close(2)](https://man7.org/linux/man-pages/man2/close.2.html)
//! - [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html)

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

/// `close(fd)`, returning its error.
///
/// `EINTR` counts as closed: on Linux the descriptor is always released
/// before `close` returns, and retrying could close a descriptor another
/// thread has just been given. `EBADF` is returned: the value was not open.
pub(crate) fn close(fd: RawFd) -> io::Result<()> {
    // SAFETY: `close` takes a plain integer and touches no memory of ours.
    // Whether `fd` is the caller's to close is the caller's ownership claim,
    // which is exactly what a failure here reports.
    let rc = unsafe { libc::close(fd) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EINTR) {
        Ok(())
    } else {
        Err(error)
    }
}

/// Borrows a raw fd for the lifetime of `owner`.
///
/// # Safety
/// `fd` must stay open for as long as `owner` is borrowed.
pub(crate) unsafe fn borrow_fd<O: ?Sized>(fd: RawFd, _owner: &O) -> BorrowedFd<'_> {
    // SAFETY: forwarded to the caller.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// An anonymous private read-write mapping of `len` bytes.
pub(crate) fn mmap_anonymous(len: usize) -> io::Result<usize> {
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses
    // aliases no existing memory; we only pass integers.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(addr as usize)
    }
}

/// A private read-only mapping of `len` bytes of `fd` from `offset`.
pub(crate) fn mmap_file(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: a new read-only private mapping at a kernel-chosen address
    // aliases no Rust object; `fd` is open for the duration of the call.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            fd.as_raw_fd(),
            offset,
        )
    };
    if addr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(addr as usize)
    }
}

/// `munmap(addr, len)`.
///
/// Note that unmapping a range that is no longer mapped succeeds on Linux, so
/// a double unmap cannot be detected here (unlike a double `close`).
pub(crate) fn munmap(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller's `Mapping` owns this range, which no Rust reference
    // outlives (its byte views borrow the handle's reference).
    let rc = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The bytes of a live mapping.
///
/// # Safety
/// `addr..addr+len` must be a readable mapping that stays mapped, and is not
/// written through another path, while the returned slice lives.
pub(crate) unsafe fn mapped_bytes<'a>(addr: usize, len: usize) -> &'a [u8] {
    // SAFETY: forwarded to the caller.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
}
