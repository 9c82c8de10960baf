//! WASI's bytes (SPEC W1): `fd_read`, `fd_write`, `fd_pread`, `fd_pwrite`,
//! `fd_seek`, `fd_tell` on files, pipes and stdio; iovec arrays bounded;
//! wild pointers `EFAULT`; a blocked read woken by an abort at once.
//!
//! Every test takes `serial()`: they open fds and some count them.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use custody_host::{Domain, DomainConfig, Host, Policy, Val};
use custody_testkit::*;
use custody_wasi::{Stdio, WasiDomain, WasiDomainConfig};

const EAGAIN: i32 = 6;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EFBIG: i32 = 22;
const EINVAL: i32 = 28;
const ESPIPE: i32 = 70;

fn domain_with(host: &Host, config: DomainConfig) -> Domain {
    wasi_domain(host, config, "")
}

/// Opens `path` under the pre-open `data` through the custody ABI (flags
/// as `custody.h`: 1 read, 2 write, 4 create, 8 truncate); its id.
fn open(domain: &Domain, path: &str, flags: i32) -> i32 {
    let full = format!("data/{path}");
    poke(domain, 2000, full.as_bytes());
    assert_eq!(
        call(domain, "abi_open", &[2000, full.len() as i32, flags, 2100]),
        0,
        "open {path}"
    );
    call(domain, "load", &[2100])
}

fn i64s(args: &[i64]) -> Vec<Val> {
    args.iter().map(|&a| Val::I64(a)).collect()
}

#[test]
fn files_are_read_and_written_through_iovecs() {
    let _serial = serial();
    let dir = scratch("wasi-io");
    let domain = domain_with(&host(), DomainConfig::new().preopen("data", &dir));
    let fd = open(&domain, "f.txt", 2 | 4 | 1);
    poke(&domain, 100, b"hello, world");
    // Two iovecs gathered into one write.
    iovec(&domain, 0, 100, 5);
    iovec(&domain, 8, 105, 7);
    assert_eq!(call(&domain, "w_fd_write", &[fd, 0, 2, 16]), 0);
    assert_eq!(call(&domain, "load", &[16]), 12);
    assert_eq!(std::fs::read(dir.join("f.txt")).unwrap(), b"hello, world");
    // Tell, seek back, read into the first non-empty iovec.
    assert_eq!(call(&domain, "w_fd_tell", &[fd, 24]), 0);
    assert_eq!(call(&domain, "load", &[24]), 12);
    let seek = |offset: i64, whence: i32| {
        wcall(
            &domain,
            "w_fd_seek",
            &[
                Val::I32(fd),
                Val::I64(offset),
                Val::I32(whence),
                Val::I32(24),
            ],
        )
    };
    assert_eq!(seek(-5, 2), 0, "from the end");
    assert_eq!(call(&domain, "load", &[24]), 7);
    assert_eq!(seek(0, 0), 0);
    iovec(&domain, 0, 300, 0);
    iovec(&domain, 8, 300, 64);
    assert_eq!(call(&domain, "w_fd_read", &[fd, 0, 2, 16]), 0);
    assert_eq!(call(&domain, "load", &[16]), 12);
    assert_eq!(peek(&domain, 300, 12), b"hello, world");
    assert_eq!(seek(0, 3), EINVAL, "bad whence");
    assert_eq!(seek(-1, 0), EINVAL, "before the start");
    // Positioned I/O leaves the offset alone.
    let mut args = vec![Val::I32(fd), Val::I32(8), Val::I32(1)];
    args.extend(i64s(&[7]));
    args.push(Val::I32(16));
    assert_eq!(wcall(&domain, "w_fd_pread", &args), 0);
    assert_eq!(call(&domain, "load", &[16]), 5);
    assert_eq!(peek(&domain, 300, 5), b"world");
    iovec(&domain, 0, 100, 5);
    args[1] = Val::I32(0);
    args[3] = Val::I64(20);
    assert_eq!(wcall(&domain, "w_fd_pwrite", &args), 0);
    assert_eq!(call(&domain, "w_fd_tell", &[fd, 24]), 0);
    assert_eq!(call(&domain, "load", &[24]), 12, "pwrite moved nothing");
    let bytes = std::fs::read(dir.join("f.txt")).unwrap();
    assert_eq!(&bytes[20..], b"hello");
    assert_eq!(call(&domain, "w_fd_close", &[fd]), 0);
    domain.unload().unwrap();
}

#[test]
fn wild_iovecs_are_efault_and_too_many_einval() {
    let _serial = serial();
    let domain = domain_with(&host(), DomainConfig::new());
    iovec(&domain, 0, 65_530, 100);
    assert_eq!(
        call(&domain, "w_fd_write", &[1, 0, 1, 16]),
        EFAULT,
        "a buffer past memory"
    );
    assert_eq!(
        call(&domain, "w_fd_write", &[1, 65_532, 1, 16]),
        EFAULT,
        "the array past memory"
    );
    iovec(&domain, 0, 100, 1);
    assert_eq!(
        call(&domain, "w_fd_write", &[1, 0, 1, 65_534]),
        EFAULT,
        "the result past memory"
    );
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1025, 16]), EINVAL);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, -1, 16]), EINVAL);
    assert_eq!(
        domain.take_stdout(),
        b"",
        "nothing written by a failed call"
    );
    assert_eq!(
        call(&domain, "w_fd_read", &[1, 0, 1, 16]),
        EBADF,
        "stdout is not read"
    );
    assert_eq!(
        call(&domain, "w_fd_write", &[0, 0, 1, 16]),
        EBADF,
        "stdin is not written"
    );
    assert_eq!(call(&domain, "w_fd_tell", &[1, 16]), ESPIPE);
}

#[test]
fn stdio_goes_where_the_embedder_says() {
    let _serial = serial();
    let dir = scratch("wasi-stdio");
    std::fs::File::create(dir.join("in"))
        .unwrap()
        .write_all(b"input!")
        .unwrap();
    let config = DomainConfig::new()
        .stdin(Stdio::File(std::fs::File::open(dir.join("in")).unwrap()))
        .stdout(Stdio::File(std::fs::File::create(dir.join("out")).unwrap()))
        .stderr(Stdio::Null);
    let domain = domain_with(&host(), config);
    iovec(&domain, 0, 100, 64);
    assert_eq!(call(&domain, "w_fd_read", &[0, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "load", &[16]), 6);
    iovec(&domain, 0, 100, 6);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "w_fd_write", &[2, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "load", &[16]), 6, "null takes everything");
    assert_eq!(std::fs::read(dir.join("out")).unwrap(), b"input!");
    assert_eq!(domain.take_stdout(), b"", "not a capture");
    // A null stdin is at its end at once.
    let null = domain_with(&host(), DomainConfig::new());
    iovec(&null, 0, 100, 64);
    assert_eq!(call(&null, "w_fd_read", &[0, 0, 1, 16]), 0);
    assert_eq!(call(&null, "load", &[16]), 0);
}

#[test]
fn a_capture_buffer_is_bounded() {
    let _serial = serial();
    let (host, _) = host_with(Policy {
        stdio_capture_limit: 10,
        ..Policy::default()
    });
    let domain = domain_with(&host, DomainConfig::new());
    poke(&domain, 100, b"0123456789abc");
    iovec(&domain, 0, 100, 8);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(
        call(&domain, "load", &[16]),
        2,
        "a short write up to the limit"
    );
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), EFBIG);
    assert_eq!(domain.take_stdout(), b"0123456701");
    assert_eq!(
        call(&domain, "w_fd_write", &[1, 0, 1, 16]),
        0,
        "drained: room again"
    );
}

#[test]
fn a_read_on_an_empty_pipe_waits_and_an_abort_wakes_it() {
    let _serial = serial();
    let domain = domain_with(&host(), DomainConfig::new());
    assert_eq!(call(&domain, "abi_pipe", &[200, 204]), 0);
    let read_end = call(&domain, "load", &[200]);
    iovec(&domain, 0, 100, 16);
    let waker = abort_after(&domain, Duration::from_millis(150));
    let started = Instant::now();
    let outcome = domain.call(
        "w_fd_read",
        &[Val::I32(read_end), Val::I32(0), Val::I32(1), Val::I32(16)],
    );
    waker.join().unwrap();
    assert_aborted_within(&outcome, started, Duration::from_secs(2));
    // NONBLOCK: EAGAIN instead of a wait.
    assert_eq!(call(&domain, "w_fd_fdstat_set_flags", &[read_end, 4]), 0);
    assert_eq!(call(&domain, "w_fd_read", &[read_end, 0, 1, 16]), EAGAIN);
    domain.unload().unwrap();
}

#[test]
fn a_guest_blocked_in_fd_read_or_poll_oneoff_is_a_root_that_names_it() {
    let _serial = serial();
    let domain = domain_with(&host(), DomainConfig::new());
    assert_eq!(call(&domain, "abi_pipe", &[200, 204]), 0);
    let read_end = call(&domain, "load", &[200]);
    iovec(&domain, 0, 100, 16);
    // One fd_read subscription on the empty pipe, and a clock of 8 s.
    let mut subs = vec![0u8; 96];
    subs[8] = 1;
    subs[16..20].copy_from_slice(&read_end.to_le_bytes());
    subs[64] = 1;
    subs[72..80].copy_from_slice(&8_000_000_000u64.to_le_bytes());
    poke(&domain, 1000, &subs);
    for (export, args, function) in [
        ("w_fd_read", [read_end, 0, 1, 16], "fd_read"),
        ("w_poll_oneoff", [1000, 4000, 2, 16], "poll_oneoff"),
    ] {
        let caller = {
            let domain = domain.strong_ref("caller").unwrap();
            let args: Vec<Val> = args.iter().map(|&a| Val::I32(a)).collect();
            std::thread::spawn(move || domain.call(export, &args))
        };
        let until = Instant::now() + Duration::from_secs(10);
        let detail = loop {
            let roots = domain.roots();
            if let Some(detail) = roots.into_iter().find_map(|r| r.detail) {
                break detail;
            }
            assert!(Instant::now() < until, "{export}: never seen blocked");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            detail.starts_with(&format!("blocked in host function {function} for ")),
            "{export}: {detail}"
        );
        let started = Instant::now();
        domain.abort();
        let outcome = caller.join().unwrap();
        assert_aborted_within(&outcome, started, Duration::from_secs(2));
    }
    domain.unload().unwrap();
}

#[test]
fn writes_go_out_whole_in_iovec_order_and_within_every_bound() {
    let _serial = serial();
    let dir = scratch("wasi-writev");
    let out = dir.join("out");
    let domain = domain_with(
        &host(),
        DomainConfig::new()
            .preopen("data", &dir)
            .stdout(Stdio::File(std::fs::File::create(&out).unwrap())),
    );
    poke(&domain, 100, b"hello, world");
    // Three iovecs, the middle one empty: one write, in order.
    iovec(&domain, 0, 100, 5);
    iovec(&domain, 8, 300, 0);
    iovec(&domain, 16, 105, 7);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 3, 40]), 0);
    assert_eq!(call(&domain, "load", &[40]), 12);
    assert_eq!(std::fs::read(&out).unwrap(), b"hello, world");
    // A wild iovec after a good one: EFAULT, and not a byte written.
    iovec(&domain, 8, 65_530, 100);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 2, 40]), EFAULT);
    let file = open(&domain, "f", 2 | 4);
    assert_eq!(call(&domain, "w_fd_write", &[file, 0, 2, 40]), EFAULT);
    assert_eq!(std::fs::read(&out).unwrap(), b"hello, world");
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"");
    // 40 iovecs over the whole memory (2.5 MiB): a short write of MAX_IO
    // (1 MiB), to a stdio file and to a file.
    for i in 0..40 {
        iovec(&domain, 1000 + 8 * i, 0, 65_536);
    }
    for fd in [1, file] {
        assert_eq!(call(&domain, "w_fd_write", &[fd, 1000, 40, 40]), 0);
        assert_eq!(call(&domain, "load", &[40]), 1 << 20);
    }
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 12 + (1 << 20));
    let written = std::fs::read(dir.join("f")).unwrap();
    assert_eq!(written.len(), 1 << 20);
    assert_eq!(&written[100..112], b"hello, world");
    assert_eq!(written[..65_536], written[65_536..131_072], "whole copies");
    // Positioned, the same iovecs: the same bytes at the offset.
    let mut args = vec![Val::I32(file), Val::I32(0), Val::I32(3)];
    args.extend(i64s(&[3]));
    args.push(Val::I32(40));
    iovec(&domain, 8, 300, 0);
    assert_eq!(wcall(&domain, "w_fd_pwrite", &args), 0);
    assert_eq!(call(&domain, "load", &[40]), 12);
    let rewritten = std::fs::read(dir.join("f")).unwrap();
    assert_eq!(rewritten.len(), 1 << 20, "pwrite within the file");
    assert_eq!(&rewritten[3..15], b"hello, world");
    domain.unload().unwrap();
}

#[test]
fn a_pipe_like_stdout_takes_pipe_buf_and_a_capture_every_iovec() {
    let _serial = serial();
    let (mut pipe_reader, pipe_writer) = std::io::pipe().unwrap();
    let os_pipe = std::fs::File::from(std::os::fd::OwnedFd::from(pipe_writer));
    let domain = domain_with(&host(), DomainConfig::new().stdout(Stdio::File(os_pipe)));
    let captured = domain_with(&host(), DomainConfig::new());
    for domain in [&domain, &captured] {
        poke(domain, 100, b"abcdefgh");
        iovec(domain, 0, 100, 3);
        iovec(domain, 8, 103, 5);
        // 3 + 5 + 5000 bytes: past PIPE_BUF (4096).
        iovec(domain, 16, 100, 5000);
    }
    // An OS pipe: one write of at most PIPE_BUF bytes, in iovec order.
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 3, 40]), 0);
    assert_eq!(call(&domain, "load", &[40]), 4096);
    let mut got = vec![0; 4096];
    pipe_reader.read_exact(&mut got).unwrap();
    assert_eq!(&got[..16], b"abcdefghabcdefgh");
    // A capture: every iovec.
    assert_eq!(call(&captured, "w_fd_write", &[1, 0, 3, 40]), 0);
    assert_eq!(call(&captured, "load", &[40]), 5008);
    let taken = captured.take_stdout();
    assert_eq!(taken.len(), 5008);
    assert_eq!(&taken[..16], b"abcdefghabcdefgh");
    domain.unload().unwrap();
}

/// A guest over a shared memory (wasm threads) that writes through WASI.
const SHARED_WRITER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1 1 shared)
  (data (i32.const 100) "hello, world")
  (func (export "store") (param i32 i32) (i32.atomic.store (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32) (i32.atomic.load (local.get 0)))
  (func (export "w_fd_write") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
)
"#;

#[test]
fn a_shared_memory_writes_through_a_bounce_buffer_with_the_same_bounds() {
    let _serial = serial();
    // Shared memories need the policy's threads.
    let (host, _) = host_with(Policy {
        threads: true,
        ..Policy::default()
    });
    let dir = scratch("wasi-shared-write");
    let err = dir.join("err");
    let config = DomainConfig::new().stderr(Stdio::File(std::fs::File::create(&err).unwrap()));
    let domain = host.create_domain(config).unwrap();
    domain
        .load("main", &host.compile(SHARED_WRITER.as_bytes()).unwrap())
        .unwrap();
    iovec(&domain, 0, 100, 5);
    iovec(&domain, 8, 105, 7);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 2, 40]), 0);
    assert_eq!(call(&domain, "load", &[40]), 12);
    assert_eq!(domain.take_stdout(), b"hello, world");
    iovec(&domain, 8, 65_530, 100);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 2, 40]), EFAULT);
    assert_eq!(
        domain.take_stdout(),
        b"",
        "nothing written by a failed call"
    );
    for i in 0..40 {
        iovec(&domain, 1000 + 8 * i, 0, 65_536);
    }
    assert_eq!(call(&domain, "w_fd_write", &[2, 1000, 40, 40]), 0);
    assert_eq!(call(&domain, "load", &[40]), 1 << 20, "cut to MAX_IO");
    let written = std::fs::read(&err).unwrap();
    assert_eq!(written.len(), 1 << 20);
    assert_eq!(&written[100..112], b"hello, world");
    domain.unload().unwrap();
}
