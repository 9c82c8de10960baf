//! Every system call custody-wasi makes, through rustix's safe wrappers.
//! Its one `unsafe` block is [`dup_onto`]'s (`fd_renumber`). The confined
//! open every path lookup goes through is custody-host's
//! ([`open_beneath`]: one `openat2` for every ABI).
//!
//! # References
//! - [dup3(2)](https://man7.org/linux/man-pages/man2/dup3.2.html): the fd
//!   number stays, the open file behind it is replaced atomically (WASI's
//!   `fd_renumber`).
//! - [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html): what is
//!   ready now, after the domain's one wait said something is.
//!
//! The file operations beyond reading and writing (stat, seek, flags, sync,
//! times, sockets, clocks, random bytes) are in `sys/file.rs`; the path
//! calls of the `path_*` functions in `sys/path.rs`.

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

mod file;
mod path;

pub(crate) use custody_host::extension::open_beneath;
pub(crate) use file::*;
pub(crate) use path::*;

use std::io::{self, IoSlice};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

/// Reads once; `EAGAIN` means "not ready".
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    rustix::io::read(fd, buf)
}

/// Writes `bufs` in order, once; `EAGAIN` means "not ready". One buffer
/// (a libc `write`) is a `write`: the kernel's `writev` imports the iovec
/// array first, which cost about a third more system time per 4 KiB write
/// to /dev/null (docs/PERFORMANCE.md); several are one `writev`.
pub(crate) fn write_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> Result<usize, Errno> {
    match bufs {
        [one] => rustix::io::write(fd, one),
        _ => rustix::io::writev(fd, bufs),
    }
}

/// Makes the fd number `to` name what `from` names (close-on-exec); the
/// open file `to` named before is closed by the kernel, atomically.
pub(crate) fn dup_onto(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: `to` is an open fd, borrowed for this call. The `OwnedFd`
    // made from its number is never dropped (`ManuallyDrop`), so it never
    // closes it, and it does not outlive this call. `dup3` keeps the
    // number open throughout (it replaces what is behind it atomically),
    // so whoever owns `to` still owns an open fd afterwards.
    let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(to.as_raw_fd()) });
    rustix::io::dup3(from, &mut target, rustix::io::DupFlags::CLOEXEC)
}

/// What `poll` reports of each of `fds`, now (no waiting): its ready
/// events, empty if none.
pub(crate) fn ready_now(fds: &[(BorrowedFd<'_>, PollFlags)]) -> io::Result<Vec<PollFlags>> {
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, interest)| PollFd::new(fd, *interest))
        .collect();
    loop {
        match rustix::event::poll(&mut pollfds, Some(&Timespec::default())) {
            Ok(_) => return Ok(pollfds.iter().map(|p| p.revents() & READY).collect()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The events that make an fd "ready": its interest, or a hang-up or an
/// error (the next read or write reports it).
const READY: PollFlags = PollFlags::IN
    .union(PollFlags::OUT)
    .union(PollFlags::HUP)
    .union(PollFlags::ERR)
    .union(PollFlags::NVAL);
