//! Every system call custody-host makes on a guest's behalf, through
//! rustix's safe wrappers (no `unsafe` here).
//!
//! # References
//! - [openat2(2)](https://man7.org/linux/man-pages/man2/openat2.2.html):
//!   `RESOLVE_BENEATH` confines a path to its directory (no `..`, absolute
//!   path or symlink escapes), `RESOLVE_NO_MAGICLINKS` refuses
//!   `/proc/self/fd`-style links.
//! - [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html),
//!   [eventfd(2)](https://man7.org/linux/man-pages/man2/eventfd.2.html),
//!   [pipe2(2)](https://man7.org/linux/man-pages/man2/pipe2.2.html).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

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

/// Opens `relative` beneath `dir`; an escape is `EXDEV`.
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
    oflags |= OFlags::CLOEXEC | OFlags::NOCTTY;
    if flags.create {
        oflags |= OFlags::CREATE;
    }
    if flags.truncate {
        oflags |= OFlags::TRUNC;
    }
    if flags.append {
        oflags |= OFlags::APPEND;
    }
    // openat2 insists on mode 0 unless a file may be created.
    let mode = if flags.create {
        Mode::from_raw_mode(0o644)
    } else {
        Mode::empty()
    };
    rustix::fs::openat2(
        dir,
        relative,
        oflags,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
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

/// A domain's cancellation signal: abort and unload raise it, and every
/// blocking host call waits on it beside its own fds, so it wakes at once.
/// (wasmtime's epoch interruption cannot reach a guest blocked in the host.)
///
/// The signal carries why it was raised: [`Cancel::ABORT`] (the host aborted
/// the call in flight; lowered when that call ends) or [`Cancel::UNLOAD`]
/// (final). An unload outranks an abort.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    /// 0 (lowered), `ABORT` or `UNLOAD`.
    raised: AtomicU8,
    /// Created on the first wait (most domains never block), closed by
    /// [`Cancel::close`] at unload. A waiter holds its own reference.
    eventfd: Mutex<Option<Arc<OwnedFd>>>,
}

impl Cancel {
    /// The host aborts the call in flight.
    pub(crate) const ABORT: u8 = 1;
    /// The domain is unloading.
    pub(crate) const UNLOAD: u8 = 2;

    fn fd(&self) -> MutexGuard<'_, Option<Arc<OwnedFd>>> {
        self.eventfd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal(&self) {
        if let Some(fd) = self.fd().as_ref() {
            // Saturation (EAGAIN) still leaves it readable.
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    fn drain(&self) {
        if let Some(fd) = self.fd().as_ref() {
            let mut counter = [0u8; 8];
            let _ = rustix::io::read(fd, &mut counter);
        }
    }

    /// Raises the signal for `reason`: current and future waits return
    /// `Cancelled` until it is lowered.
    pub(crate) fn raise(&self, reason: u8) {
        self.raised.fetch_max(reason, Ordering::SeqCst);
        self.signal();
    }

    /// Why the signal is raised (0 if it is not).
    pub(crate) fn reason(&self) -> u8 {
        self.raised.load(Ordering::SeqCst)
    }

    /// Whether the signal is raised.
    pub(crate) fn is_raised(&self) -> bool {
        self.reason() != 0
    }

    /// Lowers the signal if it is raised for exactly `reason` (an abort is
    /// lowered when its call ends; an unload raised meanwhile stays).
    pub(crate) fn lower(&self, reason: u8) {
        if self
            .raised
            .compare_exchange(reason, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.drain();
            // Raised again between the exchange and the drain: re-signal.
            if self.is_raised() {
                self.signal();
            }
        }
    }

    /// Closes the eventfd (at unload: no wait can start any more).
    pub(crate) fn close(&self) {
        self.fd().take();
    }

    fn eventfd(&self) -> io::Result<Arc<OwnedFd>> {
        let mut slot = self.fd();
        if let Some(fd) = slot.as_ref() {
            return Ok(Arc::clone(fd));
        }
        let fd = Arc::new(rustix::event::eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?);
        *slot = Some(Arc::clone(&fd));
        Ok(fd)
    }
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The fd at this index is ready (readable/writable, or hung up).
    Ready(usize),
    /// The timeout passed.
    TimedOut,
    /// The domain's cancellation signal was raised.
    Cancelled,
}

/// Waits until one of `fds` is ready for `interest`, the timeout passes, or
/// `cancel` is raised. Retries `EINTR` with the time that is left.
pub(crate) fn wait(
    fds: &[BorrowedFd<'_>],
    interest: PollFlags,
    cancel: &Cancel,
    timeout: Duration,
) -> io::Result<Wait> {
    let signal = cancel.eventfd()?;
    let signal = signal.as_fd();
    // Checked after the eventfd exists, so a raise between the two is seen
    // either here or by poll.
    if cancel.is_raised() {
        return Ok(Wait::Cancelled);
    }
    let deadline = Instant::now() + timeout;
    let mut pollfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, interest)).collect();
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
    let (signal_fd, guest_fds) = pollfds.split_last().expect("the signal is always polled");
    if !signal_fd.revents().is_empty() || cancel.is_raised() {
        return Ok(Wait::Cancelled);
    }
    let ready = PollFlags::IN | PollFlags::OUT | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
    Ok(guest_fds
        .iter()
        .position(|p| p.revents().intersects(ready))
        .map_or(Wait::TimedOut, Wait::Ready))
}
