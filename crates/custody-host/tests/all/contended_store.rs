//! The store's lock under contention (issue 20: it lives in the state
//! word): calls from two threads into one domain take turns, a call that
//! finds the store held parks until it is given back, a view of the domain
//! never waits for it, and an unload begun behind a blocked call runs its
//! event once and completes once, when the last call ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use custody_host::{CallError, DomainConfig, Policy};
use custody_testkit::*;

/// `bump` reads a counter, spins, then writes it back plus one: two calls
/// running at once would lose an update. `spin` never returns (its
/// deadline ends it).
const COUNTER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "bump") (result i32) (local $v i32) (local $i i32)
    (local.set $v (i32.load (i32.const 0)))
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 2000))))
    (i32.store (i32.const 0) (i32.add (local.get $v) (i32.const 1)))
    (i32.load (i32.const 0)))
  (func (export "spin") (loop $l (br $l))))"#;

/// Waits until `ready` holds, for at most five seconds.
fn until(what: &str, ready: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !ready() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn calls_from_two_threads_into_one_domain_take_turns() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, COUNTER);
    let baseline = FdBaseline::now();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    const CALLS: i32 = 500;
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let domain = domain.clone();
            thread::spawn(move || {
                for _ in 0..CALLS {
                    call(&domain, "bump", &[]);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
    assert_eq!(call(&domain, "bump", &[]), 2 * CALLS + 1, "no update lost");
    assert_eq!(domain.info().roots, 0, "every call gave its root back");
    let report = domain.unload().unwrap();
    assert!(report.forced.is_none());
    baseline.assert_back("after the contended calls");
}

#[test]
fn an_unload_behind_a_blocked_call_and_a_parked_one_completes_once_when_both_end() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(300)),
        unload_grace: Duration::from_secs(5),
        ..Policy::default()
    });
    let module = warmed_module(&host, COUNTER);
    let baseline = FdBaseline::now();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    assert!(domain.info().memory_bytes.is_some(), "the store is free");
    let events = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&events);
    domain.on_unloading(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let blocked = {
        let domain = domain.clone();
        thread::spawn(move || domain.call("spin", &[]))
    };
    // A view reads the modules only if the store is free: it is held now,
    // and the view does not wait for it.
    until("the spin holds the store", || {
        domain.info().memory_bytes.is_none()
    });
    let parked = {
        let domain = domain.clone();
        thread::spawn(move || call(&domain, "bump", &[]))
    };
    // The second call took its root and parked for the store.
    until("the bump holds a root", || domain.info().roots == 2);
    let unloading = {
        let domain = domain.clone();
        thread::spawn(move || domain.unload())
    };
    until("the unload began", || {
        domain.state() == custody_host::DomainState::Unloading
    });
    assert_eq!(
        events.load(Ordering::SeqCst),
        0,
        "the store is held: no event yet"
    );
    let spun = blocked.join().unwrap();
    assert!(matches!(spun, Err(CallError::Aborted { .. })), "{spun:?}");
    assert_eq!(parked.join().unwrap(), 1, "the parked call ran, once woken");
    let report = unloading.join().unwrap().unwrap();
    assert!(report.forced.is_none(), "completed by the last call's end");
    assert_eq!(events.load(Ordering::SeqCst), 1, "the event ran once");
    assert_eq!(domain.state(), custody_host::DomainState::Unloaded);
    assert!(matches!(
        domain.call("bump", &[]),
        Err(CallError::NotRunning(_))
    ));
    drop(domain);
    baseline.assert_back("after the unload");
}
