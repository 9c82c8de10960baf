//! Shared memories and `memory.atomic.wait` (SPEC C1, memory and blocking):
//! refused unless the policy enables threads; then a shared memory counts
//! at its maximum against the memory cap, and every wait ends at the
//! deadline, at an abort and at an unload, through every door: a call, the
//! start function and the unloading hook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_host::{Allocation, CallError, DomainConfig, HookOutcome, LoadError, Policy, Val};
use custody_testkit::*;

fn threads(policy: Policy) -> custody_host::Host {
    host_with(Policy {
        threads: true,
        ..policy
    })
    .0
}

/// A guest that waits on its shared memory for `timeout` ns (an i64 arg).
const WAITER: &str = r#"(module
  (memory (export "memory") 1 1 shared)
  (func (export "wait") (param i64) (result i32)
    (memory.atomic.wait32 (i32.const 0) (i32.const 0) (local.get 0)))
  (func (export "mismatch") (result i32)
    (memory.atomic.wait32 offset=4 (i32.const 0) (i32.const 1) (i64.const -1))))"#;

fn wait(domain: &custody_host::Domain, ns: i64) -> Result<i32, CallError> {
    domain
        .call("wait", &[Val::I64(ns)])
        .map(|r| r[0].unwrap_i32())
}

#[test]
fn shared_memories_are_refused_unless_the_policy_enables_threads() {
    let _serial = serial();
    let host = host();
    let error = host.compile(WAITER.as_bytes()).unwrap_err();
    assert!(matches!(error, LoadError::Limits { .. }), "{error}");
    assert!(error.to_string().contains("threads = true"), "{error}");
    // Threads pick an allocation that can hold shared memories.
    assert_eq!(
        threads(Policy::default()).allocation(),
        Allocation::OnDemand
    );
}

#[test]
fn a_shared_memory_counts_at_its_maximum() {
    let _serial = serial();
    let host = threads(Policy {
        memory_limit: Some(16 << 20),
        ..Policy::default()
    });
    let huge = host
        .compile(br#"(module (memory (export "memory") 1 65536 shared))"#)
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let error = domain.load("huge", &huge).unwrap_err();
    assert!(matches!(error, LoadError::Limits { .. }), "{error}");
    assert!(error.to_string().contains("memory_limit"), "{error}");
    // Within the cap it loads and grows to its maximum; two of them do not
    // fit where one does.
    let grows = host
        .compile(
            br#"(module (memory (export "memory") 1 160 shared)
                 (func (export "grow") (result i32) (memory.grow (i32.const 159))))"#,
        )
        .unwrap();
    domain.load("grows", &grows).unwrap();
    assert_eq!(call(&domain, "grow", &[]), 1);
    let again = host.create_domain(DomainConfig::new()).unwrap();
    again.load("one", &grows).unwrap();
    let twice = again.load("two", &grows).unwrap_err();
    assert!(twice.to_string().contains("memory_limit"), "{twice}");
}

#[test]
fn waits_return_what_the_instruction_does() {
    let _serial = serial();
    let host = threads(Policy::default());
    let module = host.compile(WAITER.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("waiter", &module).unwrap();
    let started = Instant::now();
    assert_eq!(wait(&domain, 30_000_000).unwrap(), 2, "timed out");
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(call(&domain, "mismatch", &[]), 1, "not equal");
}

#[test]
fn an_endless_wait_is_refused_without_the_grant() {
    let _serial = serial();
    let host = threads(Policy::default());
    let module = host.compile(WAITER.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("waiter", &module).unwrap();
    for ns in [-1, 11_000_000_000] {
        let error = wait(&domain, ns).unwrap_err();
        assert!(matches!(error, CallError::Trap { .. }), "{error}");
        assert!(error.to_string().contains("max_wait"), "{error}");
    }
}

#[test]
fn the_deadline_ends_a_wait_in_a_call_and_in_a_start_function() {
    let _serial = serial();
    let host = threads(Policy {
        deadline: Some(Duration::from_millis(100)),
        allow_infinite_wait: true,
        ..Policy::default()
    });
    let module = host.compile(WAITER.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("waiter", &module).unwrap();
    let started = Instant::now();
    let error = wait(&domain, -1).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "waited on");
    assert!(matches!(error, CallError::Aborted { .. }), "{error}");
    assert!(error.to_string().contains("deadline"), "{error}");

    let start = host
        .compile(
            br#"(module (memory (export "memory") 1 1 shared)
                 (func $w (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))
                 (start $w))"#,
        )
        .unwrap();
    let started = Instant::now();
    let error = domain.load("start", &start).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "waited on");
    assert!(error.to_string().contains("deadline"), "{error}");
}

#[test]
fn abort_and_unload_wake_a_waiting_guest() {
    let _serial = serial();
    let host = threads(Policy {
        allow_infinite_wait: true,
        unload_hook_timeout: Duration::from_millis(200),
        ..Policy::default()
    });
    let module = host.compile(WAITER.as_bytes()).unwrap();
    let domain = Arc::new(host.create_domain(DomainConfig::new()).unwrap());
    domain.load("waiter", &module).unwrap();
    let waiter = {
        let domain = Arc::clone(&domain);
        std::thread::spawn(move || wait(&domain, -1))
    };
    std::thread::sleep(Duration::from_millis(50));
    let aborted = Instant::now();
    domain.abort();
    let error = waiter.join().unwrap().unwrap_err();
    assert!(aborted.elapsed() < Duration::from_secs(1), "woke late");
    assert!(matches!(error, CallError::Aborted { .. }), "{error}");

    // The unloading hook waits too: the hook's timeout ends it.
    let hook = host
        .compile(
            br#"(module (memory (export "memory") 1 1 shared)
                 (func (export "custody_unloading")
                   (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))))"#,
        )
        .unwrap();
    domain.load("hook", &hook).unwrap();
    let waiter = {
        let domain = Arc::clone(&domain);
        std::thread::spawn(move || wait(&domain, -1))
    };
    std::thread::sleep(Duration::from_millis(50));
    // A cooperative unload would wait for the call; a forced one wakes it.
    let unloading = Instant::now();
    let report = domain.force_unload().unwrap();
    assert!(unloading.elapsed() < Duration::from_secs(2), "unload hung");
    assert!(report.forced.is_some());
    assert!(waiter.join().unwrap().is_err());
    assert!(
        !matches!(report.hook(), HookOutcome::Completed),
        "{:?}",
        report.hooks
    );
}
