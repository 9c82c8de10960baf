//! `poll_oneoff` (SPEC W1, Part C): clocks and fds waited for through the
//! one cancellable, deadline-bounded wait; a wait past the policy's cap is
//! refused as the custody ABI refuses it; an abort wakes it at once.
//!
//! Every test takes `serial()`: they open fds and some count them.

use std::time::{Duration, Instant};

use custody_host::{CallError, Domain, DomainConfig, Policy, Val};
use custody_testkit::*;

const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOTCAPABLE: i32 = 76;

fn domain(policy: Policy) -> Domain {
    wasi_domain(&host_with(policy).0, DomainConfig::new(), "")
}

/// A clock subscription (relative, monotonic) of `ms`.
fn clock(userdata: u64, ms: u64) -> Vec<u8> {
    let mut sub = vec![0u8; 48];
    sub[0..8].copy_from_slice(&userdata.to_le_bytes());
    sub[8] = 0;
    sub[16..20].copy_from_slice(&1u32.to_le_bytes());
    sub[24..32].copy_from_slice(&(ms * 1_000_000).to_le_bytes());
    sub
}

/// An fd subscription: `kind` 1 read, 2 write.
fn fd_sub(userdata: u64, kind: u8, fd: i32) -> Vec<u8> {
    let mut sub = vec![0u8; 48];
    sub[0..8].copy_from_slice(&userdata.to_le_bytes());
    sub[8] = kind;
    sub[16..20].copy_from_slice(&fd.to_le_bytes());
    sub
}

/// Polls the subscriptions; `Ok` with the events' (userdata, errno, type).
fn poll(domain: &Domain, subs: &[Vec<u8>]) -> Result<Vec<(u64, u16, u8)>, i32> {
    poke(domain, 1000, &subs.concat());
    let errno = call(
        domain,
        "w_poll_oneoff",
        &[1000, 4000, subs.len() as i32, 16],
    );
    if errno != 0 {
        return Err(errno);
    }
    let n = call(domain, "load", &[16]);
    Ok((0..n)
        .map(|i| {
            let at = 4000 + i * 32;
            let userdata = domain.call("load64", &[Val::I32(at)]).unwrap()[0].unwrap_i64() as u64;
            (
                userdata,
                call(domain, "load16", &[at + 8]) as u16,
                call(domain, "load8", &[at + 10]) as u8,
            )
        })
        .collect())
}

#[test]
fn a_clock_rings_after_its_timeout() {
    let _serial = serial();
    let domain = domain(Policy::default());
    let started = Instant::now();
    assert_eq!(poll(&domain, &[clock(7, 30)]), Ok(vec![(7, 0, 0)]));
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[test]
fn a_ready_fd_ends_the_wait_before_its_clock() {
    let _serial = serial();
    let domain = domain(Policy::default());
    assert_eq!(call(&domain, "abi_pipe", &[200, 204]), 0);
    let (read_end, write_end) = (call(&domain, "load", &[200]), call(&domain, "load", &[204]));
    let started = Instant::now();
    let events = poll(
        &domain,
        &[
            fd_sub(1, 1, read_end),
            fd_sub(2, 2, write_end),
            clock(3, 5000),
        ],
    );
    assert_eq!(events, Ok(vec![(2, 0, 2)]), "only the write end is ready");
    poke(&domain, 100, b"x");
    iovec(&domain, 0, 100, 1);
    assert_eq!(call(&domain, "w_fd_write", &[write_end, 0, 1, 16]), 0);
    let events = poll(&domain, &[fd_sub(1, 1, read_end), clock(3, 5000)]);
    assert_eq!(events, Ok(vec![(1, 0, 1)]));
    assert!(started.elapsed() < Duration::from_secs(2));
    // stdout is always writable; stdin (null) always at its end.
    assert_eq!(
        poll(&domain, &[fd_sub(4, 2, 1), fd_sub(5, 1, 0)]),
        Ok(vec![(4, 0, 2), (5, 0, 1)])
    );
}

#[test]
fn an_abort_wakes_a_blocked_poll_at_once() {
    let _serial = serial();
    let domain = domain(Policy::default());
    assert_eq!(call(&domain, "abi_pipe", &[200, 204]), 0);
    let read_end = call(&domain, "load", &[200]);
    poke(
        &domain,
        1000,
        &[fd_sub(1, 1, read_end), clock(2, 8000)].concat(),
    );
    let waker = abort_after(&domain, Duration::from_millis(150));
    let started = Instant::now();
    let outcome = domain.call(
        "w_poll_oneoff",
        &[Val::I32(1000), Val::I32(4000), Val::I32(2), Val::I32(16)],
    );
    waker.join().unwrap();
    assert_aborted_within(&outcome, started, Duration::from_secs(2));
}

#[test]
fn waits_are_bounded_as_the_policy_says() {
    let _serial = serial();
    let domain = domain(Policy {
        max_wait: Duration::from_millis(500),
        deadline: Some(Duration::from_millis(300)),
        ..Policy::default()
    });
    assert_eq!(
        poll(&domain, &[clock(1, 600)]),
        Err(ENOTCAPABLE),
        "past max_wait"
    );
    assert_eq!(call(&domain, "abi_pipe", &[200, 204]), 0);
    let read_end = call(&domain, "load", &[200]);
    assert_eq!(
        poll(&domain, &[fd_sub(1, 1, read_end)]),
        Err(ENOTCAPABLE),
        "no end, not granted"
    );
    // The call's deadline cuts an allowed wait.
    let started = Instant::now();
    poke(&domain, 1000, &clock(1, 450));
    let outcome = domain.call(
        "w_poll_oneoff",
        &[Val::I32(1000), Val::I32(4000), Val::I32(1), Val::I32(16)],
    );
    assert!(
        matches!(outcome, Err(CallError::Aborted { .. })),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(440));
}

#[test]
fn bad_subscriptions_are_errors() {
    let _serial = serial();
    let domain = domain(Policy::default());
    assert_eq!(
        call(&domain, "w_poll_oneoff", &[1000, 4000, 0, 16]),
        EINVAL,
        "none"
    );
    assert_eq!(poll(&domain, &[fd_sub(1, 1, 99)]), Err(EBADF));
    assert_eq!(
        poll(&domain, &[fd_sub(1, 9, 1)]),
        Err(EINVAL),
        "an unknown tag"
    );
    let mut cpu = clock(1, 1);
    cpu[16] = 2;
    assert_eq!(poll(&domain, &[cpu]), Err(EINVAL), "a CPU-time clock");
    assert_eq!(
        call(&domain, "w_poll_oneoff", &[65_500, 4000, 1, 16]),
        EFAULT
    );
    poke(&domain, 1000, &clock(1, 1));
    assert_eq!(
        call(&domain, "w_poll_oneoff", &[1000, 65_530, 1, 16]),
        EFAULT
    );
    assert_eq!(
        call(&domain, "w_poll_oneoff", &[1000, 4000, 5000, 16]),
        EINVAL,
        "too many"
    );
}

/// A clock of `u64::MAX` nanoseconds (584 years) under a policy that
/// grants any wait: no `Instant` arithmetic overflows; the wait is one the
/// host can still end, and an abort does.
#[test]
fn a_clock_of_u64_max_nanoseconds_waits_until_aborted_without_overflow() {
    let _serial = serial();
    let domain = domain(Policy {
        max_wait: Duration::MAX,
        allow_infinite_wait: true,
        ..Policy::default()
    });
    let mut sub = clock(9, 0);
    sub[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    poke(&domain, 1000, &sub);
    let aborter = abort_after(&domain, Duration::from_millis(100));
    let outcome = domain.call(
        "w_poll_oneoff",
        &[Val::I32(1000), Val::I32(4000), Val::I32(1), Val::I32(16)],
    );
    aborter.join().unwrap();
    assert!(
        matches!(outcome, Err(CallError::Aborted { .. })),
        "{outcome:?}"
    );
}

#[test]
fn an_in_process_pipe_is_polled_ready_only_when_bytes_or_room_are_there() {
    let _serial = serial();
    use custody_wasi::{Stdio, WasiDomainConfig};
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let (stdin, writer) = Stdio::pipe_in(8);
    let (stdout, reader) = Stdio::pipe_out(1);
    let config = DomainConfig::new().stdin(stdin).stdout(stdout);
    let domain = wasi_domain(&host(), config, "");
    let read_or_ring = [fd_sub(7, 1, 0), clock(9, 20)];
    assert_eq!(poll(&domain, &read_or_ring), Ok(vec![(9, 0, 0)]), "empty");
    assert!(matches!(
        writer.poll_write(&mut cx, b"a"),
        Poll::Ready(Ok(1))
    ));
    assert_eq!(poll(&domain, &read_or_ring), Ok(vec![(7, 0, 1)]), "bytes");
    poke(&domain, 100, b"z");
    iovec(&domain, 0, 100, 1);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    let write_or_ring = [fd_sub(7, 2, 1), clock(9, 20)];
    assert_eq!(poll(&domain, &write_or_ring), Ok(vec![(9, 0, 0)]), "full");
    assert_eq!(reader.poll_read(&mut cx, &mut [0u8; 1]), Poll::Ready(1));
    assert_eq!(poll(&domain, &write_or_ring), Ok(vec![(7, 0, 2)]), "room");
    domain.unload().unwrap();
}
