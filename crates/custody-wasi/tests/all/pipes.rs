//! In-process stdio pipes (`Stdio::pipe_in`, `Stdio::pipe_out`): bytes
//! stream both ways past the pipe's capacity with the guest waiting through
//! the domain's cancellable wait, the ends close each other, a blocked
//! guest is stopped by an abort, and a pipe costs no fd beyond its bell.
//!
//! Every test takes `serial()`: they count fds.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use custody_host::{Domain, DomainConfig, Val};
use custody_testkit::*;
use custody_wasi::{Stdio, WasiDomain, WasiDomainConfig};

const EPIPE: i32 = 64;

/// Runs a future on this thread (the embedder's ends are poll-based, for
/// any executor; a test needs none).
fn block_on<T>(future: impl Future<Output = T>) -> T {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

/// A guest blocked in a host call: seen through its roots.
fn wait_blocked(domain: &Domain, function: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !domain
        .roots()
        .into_iter()
        .filter_map(|root| root.detail)
        .any(|detail| detail.contains(function))
    {
        assert!(Instant::now() < until, "never seen blocked in {function}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn bytes_stream_both_ways_past_the_capacity_and_the_ends_close_each_other() {
    let _serial = serial();
    let fds = FdBaseline::now();
    let (stdin, writer) = Stdio::pipe_in(8);
    let (stdout, reader) = Stdio::pipe_out(16);
    let config = DomainConfig::new().stdin(stdin).stdout(stdout);
    let domain = wasi_domain(&host(), config, "");

    // stdout: a write takes what there is room for; the next waits until
    // the embedder drains.
    poke(&domain, 100, &[b'x'; 40]);
    iovec(&domain, 0, 100, 40);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "load", &[16]), 16, "a short write, no wait");
    let caller = thread::spawn({
        let domain = domain.strong_ref("caller").unwrap();
        move || domain.call("w_fd_write", &[1, 0, 1, 16].map(Val::I32))
    });
    wait_blocked(&domain, "fd_write");
    let mut buf = [0u8; 64];
    let n = block_on(reader.read(&mut buf[..5]));
    let mut got = buf[..n].to_vec();
    assert_eq!(got, b"xxxxx");
    caller.join().unwrap().unwrap();
    assert_eq!(call(&domain, "load", &[16]), 5, "written once drained");

    // stdin: reads take what the embedder wrote, at most the capacity at
    // once, then the end once its writer is dropped.
    iovec(&domain, 0, 300, 64);
    let feeder =
        thread::spawn(move || block_on(writer.write_all(b"hello, pipe: past eight bytes")));
    let mut read = Vec::new();
    loop {
        assert_eq!(call(&domain, "w_fd_read", &[0, 0, 1, 16]), 0);
        let n = call(&domain, "load", &[16]);
        if n == 0 {
            break;
        }
        assert!(n <= 8, "at most the capacity at once");
        read.extend(peek(&domain, 300, n));
    }
    feeder.join().unwrap().unwrap();
    assert_eq!(read, b"hello, pipe: past eight bytes");

    // The unload closes the guest's side: the drainer reads to the end.
    domain.unload().unwrap();
    loop {
        let n = block_on(reader.read(&mut buf));
        if n == 0 {
            break;
        }
        got.extend(&buf[..n]);
    }
    assert_eq!(got, [b'x'; 21], "16 + 5 bytes, then the end");
    drop((domain, reader));
    assert_eq!(FdBaseline::now(), fds, "the bells closed with the pipes");
}

#[test]
fn a_guest_blocked_on_a_full_stdout_is_stopped_by_an_abort_and_a_gone_reader_is_epipe() {
    let _serial = serial();
    let fds = FdBaseline::now();
    let (stdout, reader) = Stdio::pipe_out(4);
    let domain = wasi_domain(&host(), DomainConfig::new().stdout(stdout), "");
    poke(&domain, 100, b"12345678");
    iovec(&domain, 0, 100, 8);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    let caller = thread::spawn({
        let domain = domain.strong_ref("caller").unwrap();
        move || {
            let args = [1, 0, 1, 16].map(Val::I32);
            domain.call("w_fd_write", &args)
        }
    });
    wait_blocked(&domain, "fd_write");
    let started = Instant::now();
    domain.abort();
    assert_aborted_within(&caller.join().unwrap(), started, Duration::from_secs(2));

    drop(reader);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), EPIPE);
    domain.unload().unwrap();
    drop(domain);
    assert_eq!(FdBaseline::now(), fds);
}

#[test]
fn a_pipe_in_the_wrong_direction_is_refused_at_creation() {
    let _serial = serial();
    let (stdout, _reader) = Stdio::pipe_out(4);
    let error = host()
        .create_domain(DomainConfig::new().stdin(stdout))
        .unwrap_err()
        .to_string();
    assert!(error.contains("stdin"), "{error}");
}

#[test]
fn a_write_of_several_iovecs_fills_the_pipe_in_their_order() {
    let _serial = serial();
    let (stdout, reader) = Stdio::pipe_out(16);
    let domain = wasi_domain(&host(), DomainConfig::new().stdout(stdout), "");
    poke(&domain, 100, b"abcdefgh");
    iovec(&domain, 0, 100, 3);
    iovec(&domain, 8, 103, 5);
    iovec(&domain, 16, 100, 8);
    iovec(&domain, 24, 100, 8);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 4, 40]), 0);
    assert_eq!(call(&domain, "load", &[40]), 16, "what the room takes");
    let mut buf = [0u8; 64];
    let n = block_on(reader.read(&mut buf));
    assert_eq!(&buf[..n], b"abcdefghabcdefgh");
    domain.unload().unwrap();
}

#[test]
fn pipes_closed_by_the_embedder_end_the_output_before_the_unload_and_refuse_later_writes() {
    let _serial = serial();
    let (stdin, writer) = Stdio::pipe_in(8);
    let (stdout, reader) = Stdio::pipe_out(16);
    let config = DomainConfig::new().stdin(stdin).stdout(stdout);
    let domain = wasi_domain(&host(), config, "");
    poke(&domain, 100, b"done");
    iovec(&domain, 0, 100, 4);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(reader.take_closed(), None, "the guest may still write");
    domain.close_pipes();
    // The domain still lives; its output has ended.
    assert_eq!(reader.take_closed().as_deref(), Some(&b"done"[..]));
    assert_eq!(
        call(&domain, "w_fd_write", &[1, 0, 1, 16]),
        EPIPE,
        "a write after the close"
    );
    iovec(&domain, 0, 300, 8);
    assert_eq!(call(&domain, "w_fd_read", &[0, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "load", &[16]), 0, "stdin is at its end");
    assert!(
        block_on(writer.write_all(b"late")).is_err(),
        "the embedder's writer sees the guest's side gone"
    );
    domain.unload().unwrap();
}
