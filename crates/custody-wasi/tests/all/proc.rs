//! The rest of WASI preview 1 (SPEC W1): clocks, random bytes,
//! `sched_yield`, `proc_raise`, commands (`_start`) and reactors
//! (`_initialize`, once at load), and sockets the embedder inserts.
//!
//! Every test takes `serial()`: they open fds and some count them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use custody_handle::Fd;
use custody_host::{CallError, DomainConfig, LoadError, Val};
use custody_testkit::*;
use custody_wasi::WasiDomain;

const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ENOTSOCK: i32 = 57;

fn load(extra: &str) -> custody_host::Domain {
    wasi_domain(&host(), DomainConfig::new(), extra)
}

fn u64_at(domain: &custody_host::Domain, at: i32) -> u64 {
    domain.call("load64", &[Val::I32(at)]).unwrap()[0].unwrap_i64() as u64
}

#[test]
fn clocks_answer_in_nanoseconds() {
    let _serial = serial();
    let domain = load("");
    let time = |id: i32| {
        wcall(
            &domain,
            "w_clock_time_get",
            &[Val::I32(id), Val::I64(1), Val::I32(16)],
        )
    };
    assert_eq!(time(0), 0);
    let realtime = u64_at(&domain, 16);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        now.abs_diff(realtime) < 5_000_000_000,
        "{realtime} vs {now}"
    );
    assert_eq!(time(1), 0);
    let first = u64_at(&domain, 16);
    assert_eq!(time(1), 0);
    assert!(u64_at(&domain, 16) >= first, "monotonic");
    assert_eq!(time(2), 0, "process CPU time");
    assert_eq!(time(3), 0, "thread CPU time");
    assert!(u64_at(&domain, 16) > 0);
    assert_eq!(time(4), EINVAL);
    assert_eq!(call(&domain, "w_clock_res_get", &[1, 16]), 0);
    assert!(u64_at(&domain, 16) >= 1);
    assert_eq!(call(&domain, "w_clock_res_get", &[1, 65_534]), EFAULT);
}

#[test]
fn random_bytes_yield_and_raise() {
    let _serial = serial();
    let domain = load("");
    assert_eq!(call(&domain, "w_random_get", &[100, 64]), 0);
    assert_ne!(peek(&domain, 100, 64), vec![0; 64]);
    assert_eq!(call(&domain, "w_random_get", &[65_000, 1000]), EFAULT);
    assert_eq!(call(&domain, "w_sched_yield", &[]), 0);
    assert_eq!(call(&domain, "w_proc_raise", &[9]), ENOSYS);
}

#[test]
fn a_command_exits_and_a_reactor_initializes_once() {
    let _serial = serial();
    let command = load(
        r#"(func (export "_start") (call $proc_exit (i32.const 42)))
           (func (export "ok") (result i32) (i32.const 0))"#,
    );
    assert!(matches!(
        command.call("_start", &[]),
        Err(CallError::Exit(42))
    ));
    assert_eq!(
        call(&command, "ok", &[]),
        0,
        "the domain goes on after an exit"
    );
    // `_initialize` runs as a start function does: its calls find its
    // memory (the write reads its iovec there).
    let reactor = load(
        r#"(global $runs (mut i32) (i32.const 0))
           (data (i32.const 500) "init\n")
           (func (export "_initialize")
             (i32.store (i32.const 600) (i32.const 500))
             (i32.store (i32.const 604) (i32.const 5))
             (drop (call $fd_write (i32.const 1) (i32.const 600) (i32.const 1) (i32.const 608)))
             (global.set $runs (i32.add (global.get $runs) (i32.const 1))))
           (func (export "runs") (result i32) (global.get $runs))"#,
    );
    assert_eq!(reactor.take_stdout(), b"init\n");
    assert_eq!(call(&reactor, "runs", &[]), 1);
    let host = host();
    let failing = host
        .compile(wasi_driver(r#"(func (export "_initialize") unreachable)"#).as_bytes())
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let error = domain.load("main", &failing).unwrap_err();
    assert!(matches!(error, LoadError::Instantiate { .. }), "{error}");
    assert!(error.to_string().contains("_initialize"), "{error}");
}

#[test]
fn sockets_the_embedder_inserts_are_used_and_released() {
    let _serial = serial();
    let baseline = FdBaseline::now();
    let domain = load("");
    let (mine, theirs) = UnixStream::pair().unwrap();
    let socket = domain
        .insert_handle(Fd::from(std::os::fd::OwnedFd::from(theirs)))
        .unwrap();
    let fd = socket.raw() as i32;
    let mut mine = mine;
    mine.write_all(b"ping").unwrap();
    iovec(&domain, 0, 100, 16);
    assert_eq!(call(&domain, "w_sock_recv", &[fd, 0, 1, 0, 16, 20]), 0);
    assert_eq!(call(&domain, "load", &[16]), 4);
    assert_eq!(peek(&domain, 100, 4), b"ping");
    poke(&domain, 100, b"pong");
    iovec(&domain, 0, 100, 4);
    assert_eq!(call(&domain, "w_sock_send", &[fd, 0, 1, 0, 16]), 0);
    let mut reply = [0u8; 4];
    mine.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"pong");
    assert_eq!(
        call(&domain, "w_sock_send", &[fd, 0, 1, 1, 16]),
        EINVAL,
        "no si_flags exist"
    );
    assert_eq!(call(&domain, "w_sock_shutdown", &[fd, 2]), 0);
    assert_eq!(call(&domain, "w_sock_shutdown", &[fd, 0]), EINVAL);
    assert_eq!(
        call(&domain, "w_sock_recv", &[1, 0, 1, 0, 16, 20]),
        ENOTSOCK,
        "stdout"
    );
    assert_eq!(
        call(&domain, "w_sock_accept", &[fd, 0, 16]),
        EINVAL,
        "not listening"
    );
    assert_eq!(call(&domain, "w_sock_accept", &[99, 0, 16]), EBADF);
    domain.unload().unwrap();
    drop((domain, mine));
    baseline.assert_back("sockets");
}
