//! The in-process pipes' unit tests: both directions, bounded, their
//! ends closing each other, the guest's bell and the reader's waker.

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
