//! The abort vocabulary: the cancellation signal that abort and unload raise,
//! and [`Interrupt`], why a guest was stopped.
//!
//! wasmtime's epoch interruption stops running guest code at its next check,
//! but cannot reach a guest blocked inside a host call. The signal can: every
//! blocking host call waits on an eventfd beside its own fds, and raising the
//! signal makes that eventfd readable.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustix::event::PollFlags;

use crate::sys::{self, Wait};

/// Why the guest was stopped: the error a stopped call carries (the
/// source of [`CallError::Aborted`](crate::CallError::Aborted)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Interrupt {
    /// The domain is unloading: the unload stopped the call.
    #[error("the domain is unloading")]
    Unloading,
    /// The host aborted the call ([`Domain::abort`](crate::Domain::abort)).
    #[error("aborted by the host")]
    HostAbort,
    /// The call's deadline passed.
    #[error("the deadline of {0:?} passed")]
    Deadline(Duration),
    /// The domain's memory limit was reached (with `on_memory_limit =
    /// "abort"`).
    #[error("the memory limit of {0} bytes was reached")]
    MemoryLimit(usize),
}

/// A guest's call ended with an exit status (WASI's `proc_exit`, or any
/// ABI's own exit): a host function returns it as its error
/// (`Err(Exit(status).into())`) and the call ends with
/// [`CallError::Exit`](crate::CallError::Exit). An exit is the guest's own
/// ending: never a trap, never escalated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the guest exited with status {0}")]
pub struct Exit(pub i32);

/// Why the signal is raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Reason {
    /// The host aborts the call in flight; lowered when that call ends.
    Abort = 1,
    /// The domain is unloading: final.
    Unload = 2,
}

/// A domain's cancellation signal. It carries why it was raised; an unload
/// outranks an abort.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    /// 0 (lowered) or a [`Reason`].
    raised: AtomicU8,
    /// Created on the first wait (most domains never block), closed by
    /// [`Cancel::close`] at unload. A waiter holds its own reference.
    eventfd: Mutex<Option<Arc<OwnedFd>>>,
}

/// How a cancellable wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The fd at this index is ready.
    Ready(usize),
    /// The timeout passed.
    TimedOut,
    /// The signal was raised.
    Cancelled,
}

impl Cancel {
    fn fd(&self) -> MutexGuard<'_, Option<Arc<OwnedFd>>> {
        self.eventfd.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal(&self) {
        if let Some(fd) = self.fd().as_ref() {
            sys::eventfd_signal(fd.as_fd());
        }
    }

    /// Raises the signal: current and future waits return `Cancelled` until
    /// it is lowered.
    pub(crate) fn raise(&self, reason: Reason) {
        self.raised.fetch_max(reason as u8, Ordering::SeqCst);
        self.signal();
    }

    /// Why the signal is raised, if it is.
    pub(crate) fn reason(&self) -> Option<Reason> {
        match self.raised.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Reason::Abort),
            _ => Some(Reason::Unload),
        }
    }

    /// Whether the signal is raised.
    #[inline]
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst) != 0
    }

    /// Lowers the signal if it is raised for exactly `reason` (an abort is
    /// lowered when its call ends; an unload raised meanwhile stays).
    pub(crate) fn lower(&self, reason: Reason) {
        if self
            .raised
            .compare_exchange(reason as u8, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            if let Some(fd) = self.fd().as_ref() {
                sys::eventfd_drain(fd.as_fd());
            }
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
        let fd = Arc::new(sys::eventfd()?);
        *slot = Some(Arc::clone(&fd));
        Ok(fd)
    }

    /// Waits until one of `fds` is ready for its interest, the timeout
    /// passes, or the signal is raised.
    pub(crate) fn wait(
        &self,
        fds: &[(BorrowedFd<'_>, PollFlags)],
        timeout: Duration,
    ) -> io::Result<Waited> {
        let signal = self.eventfd()?;
        // Checked after the eventfd exists, so a raise between the two is
        // seen either here or by the wait.
        if self.is_raised() {
            return Ok(Waited::Cancelled);
        }
        let outcome = sys::wait(fds, signal.as_fd(), timeout)?;
        Ok(match outcome {
            _ if self.is_raised() => Waited::Cancelled,
            Wait::Signalled => Waited::Cancelled,
            Wait::Ready(index) => Waited::Ready(index),
            Wait::TimedOut => Waited::TimedOut,
        })
    }
}

/// An fd a host call waits on ([`HostCall::wait`](crate::extension::HostCall::wait)
/// or `wait_ready`) until another thread rings it: how an extension blocks
/// a guest on something kept in process (an in-memory pipe) through the
/// domain's one cancellable, deadline-bounded wait. Level-triggered: once
/// rung it stays readable until cleared, so a ring between a waiter's
/// check and its wait is never lost.
#[derive(Debug)]
pub struct WakeFd(OwnedFd);

impl WakeFd {
    /// A new, unrung one (a non-blocking, close-on-exec eventfd).
    ///
    /// # Errors
    /// The process is out of fds or kernel memory.
    pub fn new() -> io::Result<WakeFd> {
        Ok(WakeFd(sys::eventfd()?))
    }

    /// Makes it readable: a wait on it ends.
    pub fn ring(&self) {
        sys::eventfd_signal(self.0.as_fd());
    }

    /// Makes it unreadable again (before checking what it guards and
    /// waiting).
    pub fn clear(&self) {
        sys::eventfd_drain(self.0.as_fd());
    }
}

impl AsFd for WakeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
