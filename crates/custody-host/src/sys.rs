//! Every system call custody-host makes, through rustix's safe wrappers,
//! and one through libc ([`ignore_sigpipe`]: rustix has no safe signal API).
//! Its `unsafe` blocks are that one and the memory mappings of dense
//! allocation ([`map_anonymous`], [`discard`], [`unmap`]). Nothing in it
//! knows about domains or guests: a wait takes the cancellation signal as a
//! plain fd.
//!
//! # References
//! - [openat2(2)](https://man7.org/linux/man-pages/man2/openat2.2.html):
//!   `RESOLVE_BENEATH` confines a path to its directory (no `..`, absolute
//!   path or symlink escapes), `RESOLVE_NO_MAGICLINKS` refuses
//!   `/proc/self/fd`-style links.
//! - [sigaction(2)](https://man7.org/linux/man-pages/man2/sigaction.2.html):
//!   with `SIGPIPE` ignored, a write to a pipe with no reader fails with
//!   `EPIPE` instead of killing the process.
//! - [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html): a private
//!   anonymous mapping reads as zeros and takes memory only for the pages
//!   touched (`MAP_NORESERVE`: none is set aside at mapping time);
//!   [madvise(2)](https://man7.org/linux/man-pages/man2/madvise.2.html):
//!   after `MADV_DONTNEED` such pages are freed and read as zeros again.
//! - [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html),
//!   [eventfd(2)](https://man7.org/linux/man-pages/man2/eventfd.2.html),
//!   [pipe2(2)](https://man7.org/linux/man-pages/man2/pipe2.2.html).
//!
//! The file and path calls only WASI makes are custody-wasi's own (its
//! `sys` module); the one they share with the `custody` ABI, the confined
//! open, is here ([`open_beneath_raw`], public as
//! [`extension::open_beneath`](crate::extension::open_beneath)).

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};
use rustix::time::Timespec;

/// Opens a directory to serve as a pre-open: a handle that grants nothing
/// but lookups beneath it (`O_PATH`).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// How a guest asked to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenFlags {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
    pub append: bool,
}

/// Opens `relative` beneath `dir`, non-blocking; an escape is `EXDEV`.
pub(crate) fn open_beneath(
    dir: BorrowedFd<'_>,
    relative: &Path,
    flags: OpenFlags,
) -> Result<OwnedFd, Errno> {
    let mut oflags = match (flags.read, flags.write) {
        (true, true) => OFlags::RDWR,
        (false, true) => OFlags::WRONLY,
        _ => OFlags::RDONLY,
    };
    // Non-blocking: opening a FIFO (or a device) must not block outside the
    // one cancellable wait, and every later read or write on it waits there.
    oflags |= OFlags::NONBLOCK;
    if flags.create {
        oflags |= OFlags::CREATE;
    }
    if flags.truncate {
        oflags |= OFlags::TRUNC;
    }
    if flags.append {
        oflags |= OFlags::APPEND;
    }
    // One openat2 for every ABI: close-on-exec, no controlling terminal,
    // and a lookup a concurrent rename disturbed is retried there.
    open_beneath_raw(dir, relative, oflags, 0o644)
}

/// How many times an `openat2` that a concurrent rename disturbed
/// (`EAGAIN`) is retried before the error goes to the guest.
const RENAME_RETRIES: usize = 8;

/// `openat2(dir, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`,
/// close-on-exec and (unless `O_PATH`) without a controlling terminal; an
/// escape is `EXDEV`.
/// `flags` should hold `NONBLOCK` for anything that is not `O_PATH`, so
/// that a FIFO's open never blocks.
pub(crate) fn open_beneath_raw(
    dir: BorrowedFd<'_>,
    path: impl rustix::path::Arg + Copy,
    flags: OFlags,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    // openat2 refuses any flag beside `O_PATH` but `O_CLOEXEC`,
    // `O_DIRECTORY` and `O_NOFOLLOW` (`EINVAL`); an `O_PATH` fd opens no
    // terminal anyway.
    let flags = if flags.contains(OFlags::PATH) {
        flags | OFlags::CLOEXEC
    } else {
        flags | OFlags::CLOEXEC | OFlags::NOCTTY
    };
    // openat2 insists on mode 0 unless a file may be created (custody never
    // asks for `O_TMPFILE`, whose bits include `O_DIRECTORY`'s).
    let mode = if flags.contains(OFlags::CREATE) {
        Mode::from_raw_mode(mode)
    } else {
        Mode::empty()
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            dir,
            path,
            flags,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < RENAME_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// A non-blocking, close-on-exec pipe: (read end, write end). Non-blocking,
/// so a wait is always a `poll` that also watches the cancellation signal.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)
}

/// Reads once; `EAGAIN` means "not ready".
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    rustix::io::read(fd, buf)
}

/// Writes once; `EAGAIN` means "not ready".
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    rustix::io::write(fd, buf)
}

/// A non-blocking, close-on-exec eventfd: the cancellation signal.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
    )?)
}

/// Makes an eventfd readable. Saturation (`EAGAIN`) still leaves it
/// readable, so it is not an error.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Makes an eventfd unreadable again (reads its counter).
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut counter = [0u8; 8];
    let _ = rustix::io::read(fd, &mut counter);
}

/// How a [`wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The fd at this index is ready (readable/writable, or hung up).
    Ready(usize),
    /// The timeout passed.
    TimedOut,
    /// The signal fd became readable.
    Signalled,
}

/// Waits until one of `fds` is ready for its interest, `signal` becomes
/// readable, or the timeout passes. Retries `EINTR` with the time left.
pub(crate) fn wait(
    fds: &[(BorrowedFd<'_>, PollFlags)],
    signal: BorrowedFd<'_>,
    timeout: Duration,
) -> io::Result<Wait> {
    let deadline = crate::deadline::after(timeout);
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, interest)| PollFd::new(fd, *interest))
        .collect();
    pollfds.push(PollFd::new(&signal, PollFlags::IN));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timespec = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut pollfds, Some(&timespec)) {
            Ok(0) => return Ok(Wait::TimedOut),
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let Some((signal_fd, guest_fds)) = pollfds.split_last() else {
        return Ok(Wait::TimedOut);
    };
    if !signal_fd.revents().is_empty() {
        return Ok(Wait::Signalled);
    }
    Ok(guest_fds
        .iter()
        .position(|p| p.revents().intersects(READY))
        .map_or(Wait::TimedOut, Wait::Ready))
}

/// The events that make an fd "ready": its interest, or a hang-up or an
/// error (the next read or write reports it).
const READY: PollFlags = PollFlags::IN
    .union(PollFlags::OUT)
    .union(PollFlags::HUP)
    .union(PollFlags::ERR)
    .union(PollFlags::NVAL);

/// Makes a write to a broken pipe fail with `EPIPE` instead of killing the
/// process with `SIGPIPE`. Rust programs start with `SIGPIPE` ignored (the
/// standard library's runtime does it), so this changes nothing for them;
/// an embedder whose `main` is not Rust's may have it at its default, and
/// then a guest writing to a pipe whose reader went away would end the
/// host. A disposition someone set on purpose (a handler, or ignored) is
/// left alone.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: `sigaction` with a null new action only reads SIGPIPE's
    // disposition into `current`, a zeroed (valid) `sigaction` we own.
    // Installing `SIG_IGN` runs no code of ours in signal context. Both are
    // process-wide and thread-safe in the kernel; a race with another thread
    // setting SIGPIPE leaves one of the two dispositions, each valid.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_DFL
        {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
}

/// What `/proc/self/fd` names a wasmtime copy-on-write memory image: a
/// memfd each compiled module with initialized memory keeps while it lives.
const MEMORY_IMAGE: &str = "/memfd:wasm-memory-image";

/// The memfds of wasmtime's memory images open in the whole process, and
/// their bytes, read from `/proc/self/fd` (wasmtime does not say which
/// module holds which). An fd closed while it is read is skipped.
pub(crate) fn memory_image_fds() -> io::Result<(usize, u64)> {
    let mut fds = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let path = entry?.path();
        let is_image = std::fs::read_link(&path)
            .is_ok_and(|target| target.to_string_lossy().starts_with(MEMORY_IMAGE));
        if !is_image {
            continue;
        }
        // `metadata` follows the link: the memfd's own size.
        if let Ok(meta) = std::fs::metadata(&path) {
            fds += 1;
            bytes += meta.len();
        }
    }
    Ok((fds, bytes))
}

/// Maps `len` fresh bytes of private anonymous memory, readable and
/// writable, zero-filled; the kernel takes memory only for pages touched.
pub(crate) fn map_anonymous(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: with a null address the kernel picks a range no mapping uses,
    // so no memory the program holds is replaced; the new range is ours.
    let ptr = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }?;
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned a null address"))
}

/// Frees the pages of `len` bytes at `ptr` (their bytes read as zeros
/// afterwards; the range stays mapped).
///
/// # Safety
/// `ptr` is page-aligned, the range lies inside a mapping made by
/// [`map_anonymous`], and nothing reads or writes it concurrently or
/// expects its bytes kept.
pub(crate) unsafe fn discard(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller's contract; `MADV_DONTNEED` on a private anonymous
    // mapping only replaces its pages with zero pages.
    unsafe { rustix::mm::madvise(ptr.as_ptr().cast(), len, Advice::LinuxDontNeed) }?;
    Ok(())
}

/// Unmaps `len` bytes at `ptr`.
///
/// # Safety
/// The range is a whole mapping made by [`map_anonymous`] that nothing
/// uses any more.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller's contract: no reference into the range outlives
    // this call.
    unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len) }?;
    Ok(())
}
