//! The system calls WASI needs beyond reading and writing: stat, seek,
//! positioned I/O, status flags, size, sync, advice, allocation, times,
//! sockets, clocks and random bytes. Each is one call through rustix.

use std::io::IoSlice;
use std::num::NonZeroU64;
use std::os::fd::{BorrowedFd, OwnedFd};

pub(crate) use rustix::fs::{Advice, FileType, OFlags, SeekFrom, Stat, Timestamps};
pub(crate) use rustix::net::{RecvFlags, Shutdown};
pub(crate) use rustix::time::{ClockId, Timespec};

use rustix::io::Errno;

/// `fstat`.
pub(crate) fn stat(fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
    rustix::fs::fstat(fd)
}

/// `pread`: reads at `offset`, leaving the file's offset alone.
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    rustix::io::pread(fd, buf, offset)
}

/// `pwritev`: writes `bufs` in order at `offset`, leaving the file's
/// offset alone (one buffer is a `pwrite`, as in `write_vectored`).
pub(crate) fn write_vectored_at(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    offset: u64,
) -> Result<usize, Errno> {
    match bufs {
        [one] => rustix::io::pwrite(fd, one, offset),
        _ => rustix::io::pwritev(fd, bufs, offset),
    }
}

/// `lseek`: the new offset.
pub(crate) fn seek(fd: BorrowedFd<'_>, to: SeekFrom) -> Result<u64, Errno> {
    rustix::fs::seek(fd, to)
}

/// `fcntl(F_GETFL)`: the access mode and status flags.
pub(crate) fn status_flags(fd: BorrowedFd<'_>) -> Result<OFlags, Errno> {
    rustix::fs::fcntl_getfl(fd)
}

/// `fcntl(F_SETFL)`.
pub(crate) fn set_status_flags(fd: BorrowedFd<'_>, flags: OFlags) -> Result<(), Errno> {
    rustix::fs::fcntl_setfl(fd, flags)
}

/// `ftruncate`.
pub(crate) fn set_size(fd: BorrowedFd<'_>, size: u64) -> Result<(), Errno> {
    rustix::fs::ftruncate(fd, size)
}

/// `fsync`.
pub(crate) fn sync(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::fs::fsync(fd)
}

/// `fdatasync`.
pub(crate) fn sync_data(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::fs::fdatasync(fd)
}

/// `posix_fadvise` (a `len` of 0: to the end of the file).
pub(crate) fn advise(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    advice: Advice,
) -> Result<(), Errno> {
    rustix::fs::fadvise(fd, offset, NonZeroU64::new(len), advice)
}

/// `fallocate` (mode 0: the file grows to cover the range).
pub(crate) fn allocate(fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), Errno> {
    rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), offset, len)
}

/// `futimens`.
pub(crate) fn set_times(fd: BorrowedFd<'_>, times: &Timestamps) -> Result<(), Errno> {
    rustix::fs::futimens(fd, times)
}

/// `clock_gettime`.
pub(crate) fn clock_now(id: ClockId) -> Timespec {
    rustix::time::clock_gettime(id)
}

/// `clock_getres`.
pub(crate) fn clock_resolution(id: ClockId) -> Timespec {
    rustix::time::clock_getres(id)
}

/// Fills `buf` with random bytes (`getrandom`, retried until full).
pub(crate) fn random(buf: &mut [u8]) -> Result<(), Errno> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// `accept4`, non-blocking and close-on-exec (so reading it waits in the
/// one cancellable wait).
pub(crate) fn accept(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    rustix::net::accept_with(
        fd,
        rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
    )
}

/// `recv`: (bytes received into `buf`, the message's whole length).
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: RecvFlags,
) -> Result<(usize, usize), Errno> {
    rustix::net::recv(fd, buf, flags | RecvFlags::DONTWAIT)
}

/// `send`, without `SIGPIPE` (a peer gone is `EPIPE`).
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    rustix::net::send(
        fd,
        buf,
        rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
    )
}

/// `shutdown`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: Shutdown) -> Result<(), Errno> {
    rustix::net::shutdown(fd, how)
}

/// Whether `fd` is a terminal.
pub(crate) fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    rustix::termios::isatty(fd)
}

/// Whether a socket is a datagram socket (else a stream).
pub(crate) fn is_datagram(fd: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_type(fd).is_ok_and(|t| t == rustix::net::SocketType::DGRAM)
}
