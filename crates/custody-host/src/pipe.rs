//! In-process pipes: a bounded byte buffer between a guest and the
//! embedder, with no OS pipe under it. Both ABIs use them: WASI for a
//! domain's stdin and stdout (custody-wasi's `Stdio::pipe_in` and
//! `Stdio::pipe_out`), the `custody` ABI for a handle whose resource is a
//! [`GuestSide`] (`read`, `write`, `poll` and `close` take it as they take
//! an fd's handle: an embedder inserts it with
//! [`Domain::insert_handle`](crate::Domain::insert_handle)).
//!
//! A server that gives each request a domain streams its body into the
//! guest and its response out. OS pipes cost `pipe2`, their registrations
//! with the reactor and their `close`s per request; these cost a lock per
//! transfer, and an fd only when the guest must wait (a [`WakeFd`], made on
//! its first wait).
//!
//! The guest's side blocks as any read or write of either ABI does: through the
//! domain's one cancellable, deadline-bounded wait, on the pipe's
//! [`WakeFd`], so an abort, an unload or the deadline reaches a guest
//! blocked on a full stdout or an empty stdin. The embedder's side never
//! blocks: [`PipeWriter::poll_write`] and [`PipeReader::poll_read`] take a
//! [`Context`] as `AsyncWrite` and `AsyncRead` do (the guest's side wakes
//! the task), so they fit any executor.
//!
//! The guest's side is open while a holder of it lives (a WASI
//! configuration that names it, a domain's stream made from it, a handle
//! not yet released): when the last goes (the domain unloaded, or never
//! made, or the guest closed its handle), the embedder reads the end of the
//! output, or its writes into the guest fail. When the embedder's end is
//! dropped, the guest reads the end of its input, or its writes fail with
//! `EPIPE`.
//!
//! # Invariants
//! - `bytes.len() <= capacity`.
//! - The guest waits only with `guest_waiting` set and the bell cleared,
//!   both under the lock, after finding it cannot go on; every change the
//!   waiter could want (bytes moved, an end closed) rings the bell under
//!   the lock when `guest_waiting` is set. So no wake-up is lost.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use custody_handle::ReleaseHandle;

use crate::boundary::cancel::WakeFd;

/// The default room of a pipe: 64 KiB, as a Linux pipe's.
pub const PIPE_CAPACITY: usize = 64 << 10;

/// A pipe into a guest (its stdin, a request body): the guest's side and
/// the embedder's writing end. `capacity` bytes wait in it at most (at
/// least 1).
pub fn into_guest(capacity: usize) -> (GuestSide, PipeWriter) {
    let shared = Shared::new(capacity, true);
    (GuestSide::new(Arc::clone(&shared)), PipeWriter(shared))
}

/// A pipe out of a guest (its stdout or stderr, a response body): the
/// guest's side and the embedder's reading end.
pub fn out_of_guest(capacity: usize) -> (GuestSide, PipeReader) {
    let shared = Shared::new(capacity, false);
    (GuestSide::new(Arc::clone(&shared)), PipeReader(shared))
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    /// A pipe into the guest (its stdin), or out of it.
    into_guest: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    bytes: VecDeque<u8>,
    /// Holders of the guest's side (configurations and streams); 0: closed.
    guest_sides: usize,
    /// The embedder's end was dropped.
    embedder_closed: bool,
    /// The embedder's task waiting for room or bytes.
    waker: Option<Waker>,
    /// The reader waits for this many bytes ([`PipeReader::poll_filled`]);
    /// 0: for any change.
    wake_at: usize,
    /// The guest's bell, made on its first wait.
    bell: Option<Arc<WakeFd>>,
    guest_waiting: bool,
}

impl State {
    /// Wakes whichever side waits: the change it waits for happened.
    fn wake(&mut self) {
        // A reader waiting for a fill (`wake_at` > 0) is not woken by the
        // guest's side closing: it learns of the end otherwise.
        let wanted =
            self.bytes.len() >= self.wake_at || (self.guest_sides == 0 && self.wake_at == 0);
        if wanted && let Some(waker) = self.waker.take() {
            waker.wake();
        }
        if std::mem::take(&mut self.guest_waiting)
            && let Some(bell) = &self.bell
        {
            bell.ring();
        }
    }
}

impl Shared {
    fn new(capacity: usize, into_guest: bool) -> Arc<Shared> {
        Arc::new(Shared {
            capacity: capacity.max(1),
            into_guest,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a guest's transfer on a pipe did.
#[derive(Debug)]
pub enum Transfer {
    /// Moved this many bytes (0 on a read: the end of the stream).
    Done(usize),
    /// Nothing can move yet: wait on this bell, then try again.
    Wait(Arc<WakeFd>),
    /// The embedder's end is gone (a write: `EPIPE`).
    Closed,
}

/// The guest's side of a pipe, as a configuration, a domain's stream or a
/// handle holds it: counted while it lives, until it is dropped or (a
/// handle) released, whichever comes first.
#[derive(Debug)]
pub struct GuestSide {
    shared: Arc<Shared>,
    /// This holder no longer counts (released as a handle, or dropped).
    closed: AtomicBool,
}

impl GuestSide {
    fn new(shared: Arc<Shared>) -> GuestSide {
        shared.lock().guest_sides += 1;
        GuestSide {
            shared,
            closed: AtomicBool::new(false),
        }
    }

    /// Whether the pipe goes into the guest (its stdin, a request body),
    /// else out of it.
    pub fn goes_into_guest(&self) -> bool {
        self.shared.into_guest
    }

    /// Another holder of the same side (a domain's stream made from a
    /// configuration).
    pub fn open(&self) -> GuestSide {
        GuestSide::new(Arc::clone(&self.shared))
    }

    /// This holder stops counting (once): when it was the last, the
    /// embedder sees the guest's side closed. A write through it after is
    /// [`Transfer::Closed`], a read the end of the stream. Dropping or
    /// releasing it closes it too.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let mut state = self.shared.lock();
            state.guest_sides -= 1;
            if state.guest_sides == 0 {
                state.wake();
            }
        }
    }

    /// Writes as much of `data` as there is room for (a guest's write on a
    /// pipe out of it).
    ///
    /// # Errors
    /// Making the guest's bell (an eventfd) on its first wait.
    pub fn write(&self, data: &[u8]) -> io::Result<Transfer> {
        let mut state = self.shared.lock();
        if state.embedder_closed || self.closed.load(Ordering::Acquire) {
            return Ok(Transfer::Closed);
        }
        let room = self.shared.capacity - state.bytes.len();
        if room == 0 && !data.is_empty() {
            return self.wait(state);
        }
        let n = room.min(data.len());
        state.bytes.extend(&data[..n]);
        state.wake();
        Ok(Transfer::Done(n))
    }

    /// Reads into `into` what there is (`Done(0)` at the end: the
    /// embedder's end is gone and everything was read): a guest's read on a
    /// pipe into it.
    ///
    /// # Errors
    /// Making the guest's bell on its first wait.
    pub fn read(&self, into: &mut [u8]) -> io::Result<Transfer> {
        let mut state = self.shared.lock();
        if self.closed.load(Ordering::Acquire) {
            return Ok(Transfer::Done(0));
        }
        if state.bytes.is_empty() && !into.is_empty() {
            if state.embedder_closed {
                return Ok(Transfer::Done(0));
            }
            return self.wait(state);
        }
        let n = take_into(&mut state.bytes, into);
        state.wake();
        Ok(Transfer::Done(n))
    }

    /// Whether a write (`writing`) or a read would not wait now, as
    /// `poll(2)` sees a pipe's end; if it would, the bell to wait on, armed.
    /// In the pipe's direction: bytes to read (room to write), or the
    /// embedder's end gone (the end of the input, `EPIPE`). Against it (a
    /// read of a pipe out of the guest): only the embedder's end gone, as
    /// an OS pipe's write end reports an error once its reader is gone.
    ///
    /// # Errors
    /// Making the guest's bell on its first wait.
    pub fn ready(&self, writing: bool) -> io::Result<Option<Arc<WakeFd>>> {
        let state = self.shared.lock();
        let ready = state.embedder_closed
            || match (writing, self.shared.into_guest) {
                (false, true) => !state.bytes.is_empty(),
                (true, false) => state.bytes.len() < self.shared.capacity,
                _ => false,
            };
        if ready {
            return Ok(None);
        }
        match self.wait(state)? {
            Transfer::Wait(bell) => Ok(Some(bell)),
            _ => Ok(None),
        }
    }

    /// Arms the bell: cleared, and rung by the next change.
    fn wait(&self, mut state: MutexGuard<'_, State>) -> io::Result<Transfer> {
        let bell = match &state.bell {
            Some(bell) => Arc::clone(bell),
            None => {
                let bell = Arc::new(WakeFd::new()?);
                state.bell = Some(Arc::clone(&bell));
                bell
            }
        };
        bell.clear();
        state.guest_waiting = true;
        // A reader waiting for a fill learns the guest waits for room.
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        Ok(Transfer::Wait(bell))
    }
}

impl Drop for GuestSide {
    fn drop(&mut self) {
        self.close();
    }
}

/// A guest's side in a domain's handle table (the `custody` ABI's pipe
/// ends): releasing the handle (the guest's `close`, the host's, an
/// unload's drain) closes this holder, as dropping it does.
impl ReleaseHandle for GuestSide {
    fn is_invalid(&self) -> bool {
        false
    }

    fn release_handle(&self) -> io::Result<()> {
        self.close();
        Ok(())
    }

    /// The pipe's address: one value for every holder of the same pipe.
    fn raw_value(&self) -> u64 {
        Arc::as_ptr(&self.shared) as usize as u64
    }
}

/// Moves up to `into.len()` bytes from the front of `bytes` into `into`.
fn take_into(bytes: &mut VecDeque<u8>, into: &mut [u8]) -> usize {
    let n = bytes.len().min(into.len());
    let (front, back) = bytes.as_slices();
    let first = front.len().min(n);
    into[..first].copy_from_slice(&front[..first]);
    into[first..n].copy_from_slice(&back[..n - first]);
    bytes.drain(..n);
    n
}

/// The embedder's end of a pipe into a domain's stdin. Dropping it is the
/// end of the guest's stdin.
#[derive(Debug)]
pub struct PipeWriter(Arc<Shared>);

impl PipeWriter {
    /// Writes as much of `data` as there is room for, or registers the
    /// task to be woken when there is room. `BrokenPipe` once the guest's
    /// side is closed (every domain given it ended).
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.0.lock();
        if state.guest_sides == 0 {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = self.0.capacity - state.bytes.len();
        if room == 0 && !data.is_empty() {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        state.bytes.extend(&data[..n]);
        state.wake();
        Poll::Ready(Ok(n))
    }

    /// Writes all of `data` (a future over [`poll_write`](Self::poll_write)).
    ///
    /// # Errors
    /// `BrokenPipe` once the guest's side is closed.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write(cx, data)).await?;
            data = &data[n..];
        }
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.embedder_closed = true;
        state.wake();
    }
}

/// The embedder's end of a pipe out of a domain's stdout or stderr.
/// Dropping it makes the guest's further writes fail (`EPIPE`).
#[derive(Debug)]
pub struct PipeReader(Arc<Shared>);

impl PipeReader {
    /// Fills `into` with the bytes waiting (as many as fit), or registers
    /// the task to be woken when some arrive. `Ready(0)` for a non-empty
    /// `into` is the end: the guest's side is closed and everything was
    /// read.
    pub fn poll_read(&self, cx: &mut Context<'_>, into: &mut [u8]) -> Poll<usize> {
        let mut state = self.0.lock();
        if state.bytes.is_empty() && !into.is_empty() {
            if state.guest_sides == 0 {
                return Poll::Ready(0);
            }
            state.waker = Some(cx.waker().clone());
            state.wake_at = 0;
            return Poll::Pending;
        }
        let n = take_into(&mut state.bytes, into);
        state.wake();
        Poll::Ready(n)
    }

    /// Ready once `at_least` bytes wait (at most the capacity) or the
    /// guest waits for room; else registers the task, woken only then: not
    /// on every write, and not when the guest's side closes (a reader
    /// waits for the call's end beside it). For a reader that prefers the
    /// whole output of a short call to its first bytes.
    pub fn poll_filled(&self, cx: &mut Context<'_>, at_least: usize) -> Poll<()> {
        let mut state = self.0.lock();
        let at_least = at_least.clamp(1, self.0.capacity);
        if state.bytes.len() >= at_least || state.guest_waiting {
            return Poll::Ready(());
        }
        state.waker = Some(cx.waker().clone());
        state.wake_at = at_least;
        Poll::Pending
    }

    /// Whether the guest's side is closed (every domain given it ended, or
    /// its handle released): what is left to read is all there will be.
    pub fn guest_closed(&self) -> bool {
        self.0.lock().guest_sides == 0
    }

    /// Everything left to read, whole, once the guest's side is closed
    /// (what a call that ended wrote): the pipe's buffer itself, not a
    /// copy through a caller's. `None` while the guest may still write.
    pub fn take_closed(&self) -> Option<Vec<u8>> {
        let mut state = self.0.lock();
        if state.guest_sides != 0 {
            return None;
        }
        Some(Vec::from(std::mem::take(&mut state.bytes)))
    }

    /// A future over [`poll_filled`](Self::poll_filled).
    pub async fn filled(&self, at_least: usize) {
        std::future::poll_fn(|cx| self.poll_filled(cx, at_least)).await;
    }

    /// Reads into `into` (a future over [`poll_read`](Self::poll_read)):
    /// how many bytes, 0 at the end.
    pub async fn read(&self, into: &mut [u8]) -> usize {
        std::future::poll_fn(|cx| self.poll_read(cx, into)).await
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.embedder_closed = true;
        state.bytes.clear();
        state.wake();
    }
}

#[cfg(test)]
mod tests;
