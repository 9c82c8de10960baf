//! The `custody` ABI on in-process pipe ends (`custody_host::pipe`): an
//! embedder inserts the guest's side as a handle, and `read`, `write`,
//! `poll`, `dup` and `close` take it as they take an fd's.
//!
//! Memory layout: out slots at 0..64, the poll array at 100.., buffers at
//! 4096.. (the driver's one page).
//!
//! Every test takes `serial()`: they count fds.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use custody_host::abi::AbiError;
use custody_host::pipe::{self, PipeReader, PipeWriter};
use custody_host::{CallError, Domain, DomainConfig, Host, Policy, Val};
use custody_testkit::*;

const EPIPE: i32 = 32;
const EBADF: i32 = 9;
/// The pipes' room here: small, so bytes pass it many times over.
const ROOM: usize = 16;

fn e(error: AbiError) -> i32 {
    error.code()
}

/// Runs `future` on this thread (the pipes' embedder ends are poll-based).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

/// A driver domain holding the guest's sides of a pipe into it and a pipe
/// out of it, as handles: (domain, in handle, out handle, the embedder's
/// writer and reader).
fn piped(host: &Host) -> (Domain, i32, i32, PipeWriter, PipeReader) {
    let (domain, _module) = driver_domain(host, DomainConfig::new(), "");
    let (into, writer) = pipe::into_guest(ROOM);
    let (out_of, reader) = pipe::out_of_guest(ROOM);
    let input = domain.insert_handle(into).unwrap().raw() as i32;
    let output = domain.insert_handle(out_of).unwrap().raw() as i32;
    (domain, input, output, writer, reader)
}

/// The byte at `i` of the test's stream.
fn byte(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

#[test]
fn pipe_ends_move_bytes_both_ways_past_their_room_and_leave_no_fd() {
    let _serial = serial();
    let host = host();
    let _warm = warmed_module(&host, &driver(""));
    let baseline = FdBaseline::now();
    let (domain, input, output, writer, reader) = piped(&host);
    const TOTAL: usize = 40 * ROOM + 3;

    // Into the guest: the embedder writes on its own thread, waiting for
    // room; the guest's reads wait for bytes, then see the end.
    let feeder = thread::spawn(move || {
        let bytes: Vec<u8> = (0..TOTAL).map(byte).collect();
        block_on(writer.write_all(&bytes)).unwrap();
    });
    let mut got = Vec::new();
    loop {
        assert_eq!(call(&domain, "abi_read", &[input, 4096, 64, 8]), 0);
        let n = call(&domain, "load", &[8]);
        assert!((0..=ROOM as i32).contains(&n), "at most the room: {n}");
        if n == 0 {
            break;
        }
        got.extend((0..n).map(|i| call(&domain, "load8", &[4096 + i]) as u8));
    }
    feeder.join().unwrap();
    assert_eq!(got, (0..TOTAL).map(byte).collect::<Vec<_>>());

    // Out of the guest: its writes are short, and wait while the pipe is
    // full; closing its handle is the embedder's end of the output.
    for i in 0..TOTAL {
        call(&domain, "store8", &[4096 + i as i32, i32::from(byte(i))]);
    }
    let drain = thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = [0u8; 5];
        loop {
            match block_on(reader.read(&mut chunk)) {
                0 => return all,
                n => all.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let mut written = 0;
    while written < TOTAL as i32 {
        let left = TOTAL as i32 - written;
        assert_eq!(
            call(&domain, "abi_write", &[output, 4096 + written, left, 8]),
            0
        );
        let n = call(&domain, "load", &[8]);
        assert!((1..=ROOM as i32).contains(&n), "a short write: {n}");
        written += n;
    }
    assert_eq!(call(&domain, "abi_close", &[output]), 0);
    assert_eq!(
        drain.join().unwrap(),
        (0..TOTAL).map(byte).collect::<Vec<_>>()
    );

    let report = domain.unload().unwrap();
    assert_eq!(report.released, 1, "the input's handle, at unload");
    drop(domain);
    baseline.assert_back("pipe ends, their bells and the domain");
}

#[test]
fn the_embedders_ends_gone_are_the_end_of_the_input_and_epipe() {
    let _serial = serial();
    let host = host();
    let (domain, input, output, writer, reader) = piped(&host);
    block_on(writer.write_all(b"last")).unwrap();
    drop(writer);
    assert_eq!(call(&domain, "abi_read", &[input, 4096, 64, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 4, "what was written first");
    assert_eq!(call(&domain, "abi_read", &[input, 4096, 64, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 0, "then the end");

    drop(reader);
    assert_eq!(
        call(&domain, "abi_write", &[output, 4096, 4, 8]),
        e(AbiError::Io)
    );
    assert_eq!(call(&domain, "abi_last_error", &[]), EPIPE);
    domain.unload().unwrap();
}

#[test]
fn a_pipe_end_against_its_direction_is_ebadf_and_bad_input_acts_on_nothing() {
    let _serial = serial();
    let host = host();
    let (domain, input, output, writer, reader) = piped(&host);
    block_on(writer.write_all(b"kept")).unwrap();
    assert_eq!(
        call(&domain, "abi_write", &[input, 4096, 4, 8]),
        e(AbiError::Io)
    );
    assert_eq!(call(&domain, "abi_last_error", &[]), EBADF);
    assert_eq!(
        call(&domain, "abi_read", &[output, 4096, 4, 8]),
        e(AbiError::Io)
    );
    assert_eq!(call(&domain, "abi_last_error", &[]), EBADF);
    // A buffer past the end of memory, a bad out slot, a negative length:
    // refused before a byte moves.
    for args in [
        [input, 65536 - 2, 4, 8],
        [input, 4096, 4, 65536],
        [input, 4096, -1, 8],
    ] {
        assert!(call(&domain, "abi_read", &args) < 0, "{args:?}");
    }
    assert!(call(&domain, "abi_write", &[output, 65536 - 2, 4, 8]) < 0);
    assert_eq!(call(&domain, "abi_read", &[input, 4096, 64, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 4, "nothing was consumed");
    let mut got = [0u8; 8];
    assert!(
        !reader.guest_closed() && read_now(&reader, &mut got).is_none(),
        "nothing was written"
    );
    domain.unload().unwrap();
    drop(writer);
}

/// What `reader` has now, without waiting: `None` if nothing.
fn read_now(reader: &PipeReader, into: &mut [u8]) -> Option<usize> {
    let waker = Waker::noop();
    match reader.poll_read(&mut Context::from_waker(waker), into) {
        Poll::Ready(n) => Some(n),
        Poll::Pending => None,
    }
}

#[test]
fn poll_and_dup_take_pipe_ends() {
    let _serial = serial();
    let host = host();
    let (domain, input, output, writer, reader) = piped(&host);
    // The out pipe's end first: it is not readable (as an OS pipe's write
    // end is not) until its reader goes.
    call(&domain, "store", &[100, output]);
    call(&domain, "store", &[104, input]);
    assert_eq!(
        call(&domain, "abi_poll", &[100, 2, 0, 8]),
        e(AbiError::TimedOut)
    );
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        block_on(writer.write_all(b"x")).unwrap();
        writer
    });
    let start = Instant::now();
    assert_eq!(call(&domain, "abi_poll", &[100, 2, 5000, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 1, "the input is readable");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "woken by the write"
    );
    let writer = late.join().unwrap();
    drop(reader);
    assert_eq!(call(&domain, "abi_poll", &[100, 2, 0, 8]), 0);
    assert_eq!(
        call(&domain, "load", &[8]),
        0,
        "the reader gone: an error pending"
    );

    // A duplicate is another holder: the side stays open until both close.
    assert_eq!(call(&domain, "abi_dup", &[input, 12]), 0);
    let duplicate = call(&domain, "load", &[12]);
    assert_eq!(call(&domain, "abi_close", &[input]), 0);
    assert!(
        block_on(writer.write_all(b"y")).is_ok(),
        "the duplicate holds it"
    );
    assert_eq!(call(&domain, "abi_read", &[duplicate, 4096, 64, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 2, "x and y");
    assert_eq!(call(&domain, "abi_close", &[duplicate]), 0);
    assert!(
        block_on(writer.write_all(b"z")).is_err(),
        "every holder closed: the writer's end is broken"
    );
    domain.unload().unwrap();
}

#[test]
fn a_read_of_an_empty_pipe_waits_at_most_max_wait() {
    let _serial = serial();
    let policy = Policy {
        max_wait: Duration::from_millis(50),
        ..Policy::default()
    };
    let (host, _lines) = host_with(policy);
    let (domain, input, _output, _writer, _reader) = piped(&host);
    let start = Instant::now();
    assert_eq!(
        call(&domain, "abi_read", &[input, 4096, 64, 8]),
        e(AbiError::TimedOut)
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    domain.unload().unwrap();
}

#[test]
fn an_abort_or_an_unload_reaches_a_guest_blocked_on_an_empty_or_full_pipe() {
    let _serial = serial();
    let host = host();
    let _warm = warmed_module(&host, &driver(""));
    let baseline = FdBaseline::now();
    for (full, unload) in [(false, false), (true, false), (false, true), (true, true)] {
        let (domain, input, output, writer, reader) = piped(&host);
        let args: Vec<Val> = if full {
            // Fill the pipe: the next write waits for room.
            assert_eq!(
                call(&domain, "abi_write", &[output, 4096, ROOM as i32, 8]),
                0
            );
            vec![output.into(), 4096.into(), 4.into(), 8.into()]
        } else {
            vec![input.into(), 4096.into(), 4.into(), 8.into()]
        };
        let export = if full { "abi_write" } else { "abi_read" };
        let blocked = {
            let domain = domain.clone();
            thread::spawn(move || {
                let start = Instant::now();
                (domain.call(export, &args), start.elapsed())
            })
        };
        thread::sleep(Duration::from_millis(100));
        let what = format!("{export}, by {}", if unload { "unload" } else { "abort" });
        if unload {
            let report = domain.force_unload().unwrap();
            assert_eq!(report.released, 2, "{what}: both pipe ends");
        } else {
            domain.abort();
        }
        let (result, waited) = blocked.join().unwrap();
        assert!(
            waited < Duration::from_secs(2),
            "{what}: woken promptly, not at max_wait: {waited:?}"
        );
        assert!(
            matches!(&result, Err(CallError::Aborted { .. })),
            "{what}: the call ends as Aborted: {result:?}"
        );
        if !unload {
            domain.unload().unwrap();
        }
        assert!(reader.guest_closed(), "{what}: the guest's side is closed");
        drop((domain, writer, reader));
    }
    baseline.assert_back("aborted pipe waits");
}
