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
mod tests {
    use super::*;
    use rustix::event::{PollFd, PollFlags, Timespec};
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn context() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn stdout_bytes_flow_bounded_and_end_when_the_guest_side_closes() {
        let (guest, reader) = out_of_guest(4);
        let (woken, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let mut got = [0u8; 16];
        assert_eq!(reader.poll_read(&mut cx, &mut got), Poll::Pending);
        assert!(matches!(guest.write(b"abcdef").unwrap(), Transfer::Done(4)));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the reader is woken");
        let Transfer::Wait(bell) = guest.write(b"ef").unwrap() else {
            panic!("a full pipe makes the guest wait")
        };
        let rung = |bell: &WakeFd| {
            let fd = bell.as_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            rustix::event::poll(&mut fds, Some(&Timespec::default())).unwrap();
            fds[0].revents().contains(PollFlags::IN)
        };
        assert!(!rung(&bell));
        assert_eq!(reader.poll_read(&mut cx, &mut got[..3]), Poll::Ready(3));
        assert_eq!(&got[..3], b"abc");
        assert!(rung(&bell), "the drain rang the guest's bell");
        drop(guest);
        assert_eq!(reader.poll_read(&mut cx, &mut got), Poll::Ready(1));
        assert_eq!(got[0], b'd');
        assert_eq!(
            reader.poll_read(&mut cx, &mut got),
            Poll::Ready(0),
            "the end"
        );
    }

    #[test]
    fn what_a_closed_guest_side_left_is_taken_whole_and_only_then() {
        let (guest, reader) = out_of_guest(16);
        assert!(matches!(guest.write(b"head").unwrap(), Transfer::Done(4)));
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let mut first = [0u8; 1];
        assert_eq!(reader.poll_read(&mut cx, &mut first), Poll::Ready(1));
        assert!(matches!(guest.write(b" body").unwrap(), Transfer::Done(5)));
        assert_eq!(reader.take_closed(), None, "the guest may still write");
        drop(guest);
        assert_eq!(reader.take_closed().as_deref(), Some(&b"ead body"[..]));
        assert_eq!(
            reader.take_closed().as_deref(),
            Some(&b""[..]),
            "taken once"
        );
        assert_eq!(reader.poll_read(&mut cx, &mut first), Poll::Ready(0));
    }

    #[test]
    fn a_holder_closed_while_another_lives_ends_the_output_and_writes_nothing_more() {
        let (config, reader) = out_of_guest(16);
        let stream = Arc::new(config.open());
        drop(config);
        assert!(matches!(stream.write(b"out").unwrap(), Transfer::Done(3)));
        let kept = Arc::clone(&stream);
        stream.close();
        assert_eq!(reader.take_closed().as_deref(), Some(&b"out"[..]));
        assert!(matches!(kept.write(b"late").unwrap(), Transfer::Closed));
        drop(kept);
        drop(stream);
        assert!(reader.guest_closed());

        let (config, _writer) = into_guest(8);
        config.close();
        let mut buf = [0u8; 4];
        assert!(matches!(config.read(&mut buf).unwrap(), Transfer::Done(0)));
    }

    #[test]
    fn stdin_reads_what_was_written_then_the_end_and_a_closed_reader_is_epipe() {
        let (guest, writer) = into_guest(8);
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        assert!(matches!(guest.read(&mut buf).unwrap(), Transfer::Wait(_)));
        assert!(matches!(
            writer.poll_write(&mut cx, b"hello"),
            Poll::Ready(Ok(5))
        ));
        assert!(matches!(
            guest.read(&mut buf[..2]).unwrap(),
            Transfer::Done(2)
        ));
        assert!(matches!(guest.read(&mut buf).unwrap(), Transfer::Done(3)));
        drop(writer);
        assert!(matches!(guest.read(&mut buf).unwrap(), Transfer::Done(0)));

        let (guest, reader) = out_of_guest(8);
        drop(reader);
        assert!(matches!(guest.write(b"x").unwrap(), Transfer::Closed));
    }

    #[test]
    fn a_reader_waiting_for_a_fill_is_woken_by_the_fill_or_a_blocked_guest_only() {
        let (guest, reader) = out_of_guest(8);
        let (woken, waker) = context();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(reader.poll_filled(&mut cx, 4), Poll::Pending);
        assert!(matches!(guest.write(b"ab").unwrap(), Transfer::Done(2)));
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "not for two bytes");
        assert!(matches!(guest.write(b"cd").unwrap(), Transfer::Done(2)));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "for four");
        assert_eq!(
            reader.poll_filled(&mut cx, 100),
            Poll::Pending,
            "at most the capacity"
        );
        assert!(matches!(guest.write(b"efghi").unwrap(), Transfer::Done(4)));
        assert_eq!(woken.0.load(Ordering::SeqCst), 2, "full");
        assert_eq!(reader.poll_filled(&mut cx, 100), Poll::Ready(()));
        let mut all = [0u8; 8];
        assert_eq!(reader.poll_read(&mut cx, &mut all), Poll::Ready(8));
        assert_eq!(reader.poll_filled(&mut cx, 4), Poll::Pending);
        drop(guest);
        assert_eq!(woken.0.load(Ordering::SeqCst), 2, "not for the end");
        assert!(reader.guest_closed());
        assert_eq!(reader.poll_filled(&mut cx, 4), Poll::Pending);
    }

    #[test]
    fn a_writer_to_a_closed_guest_side_fails() {
        let (guest, writer) = into_guest(8);
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let opened = guest.open();
        drop(guest);
        assert!(matches!(
            writer.poll_write(&mut cx, b"a"),
            Poll::Ready(Ok(1))
        ));
        drop(opened);
        assert!(matches!(
            writer.poll_write(&mut cx, b"a"),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe
        ));
    }

    #[test]
    fn a_released_handle_closes_its_holder_once_and_readiness_follows_the_direction() {
        let (guest, reader) = out_of_guest(2);
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        assert!(guest.ready(true).unwrap().is_none(), "room to write");
        assert!(
            guest.ready(false).unwrap().is_some(),
            "a read of a pipe out of the guest waits, as poll(2) on a write end"
        );
        guest.release_handle().unwrap();
        assert!(reader.guest_closed(), "released: the embedder sees the end");
        assert_eq!(reader.poll_read(&mut cx, &mut [0u8; 4]), Poll::Ready(0));
        drop(guest);
        let (guest, writer) = into_guest(2);
        let second = guest.open();
        drop(guest);
        assert!(
            matches!(writer.poll_write(&mut cx, b"ab"), Poll::Ready(Ok(2))),
            "one holder is left"
        );
        assert!(second.ready(false).unwrap().is_none(), "bytes to read");
        assert!(second.ready(true).unwrap().is_some(), "no write into it");
        drop(writer);
        assert!(
            second.ready(true).unwrap().is_none(),
            "the embedder is gone"
        );
    }
}
