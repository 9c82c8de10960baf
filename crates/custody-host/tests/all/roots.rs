//! SPEC D2: the roots that are not calls or refs, and what a root says of a
//! call blocked in the host. A handle pinned by a host thread outside a
//! call is a `PinnedHandle` root; a call blocked in a host wait names the
//! host function and the guest's stack when the wait began (a blocked guest
//! reaches no epoch check to be sampled at); a dependent ref made while its
//! holder completes never outlives it.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use custody_handle::{Fd, HandleId};
use custody_host::{
    AbiError, CallError, Category, DomainConfig, GuestCall, Host, PinError, Policy, RootKind,
};
use custody_testkit::*;

/// Guests that block in each kind of host wait, from named functions (so
/// their frames show in the stack).
const BLOCKERS: &str = r#"(module
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "poll" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "host" "nap" (func $host_nap (result i32)))
  (memory (export "memory") 1)
  (func $napper (result i32) (call $sleep (i32.const 5000)))
  (func (export "nap") (result i32) (call $napper))
  (func $reader (result i32)
    (drop (call $pipe (i32.const 0) (i32.const 4)))
    (call $read (i32.load (i32.const 0)) (i32.const 16) (i32.const 8) (i32.const 8)))
  (func (export "read_pipe") (result i32) (call $reader))
  (func $poller (result i32)
    (drop (call $pipe (i32.const 0) (i32.const 4)))
    (call $poll (i32.const 0) (i32.const 1) (i32.const 5000) (i32.const 8)))
  (func (export "poll_pipe") (result i32) (call $poller))
  (func $embedder_napper (result i32) (call $host_nap))
  (func (export "host_nap") (result i32) (call $embedder_napper))
)"#;

fn blocking_host() -> Host {
    quiet();
    let policy = Policy {
        deadline: Some(Duration::from_secs(20)),
        ..Policy::default()
    };
    Host::builder(policy)
        .func_wrap(
            "host",
            "nap",
            &[Category::Synchronization],
            |call: &mut GuestCall<'_>| {
                call.sleep(Duration::from_secs(5))?;
                Ok::<i32, AbiError>(0)
            },
        )
        .build()
        .unwrap()
}

#[test]
fn a_call_blocked_in_a_host_wait_names_the_function_and_the_stack_it_waited_from() {
    let _serial = serial();
    let host = blocking_host();
    let module = host.compile(BLOCKERS.as_bytes()).unwrap();
    let baseline = FdBaseline::now();
    for (export, function, frame) in [
        ("nap", "sleep", "napper"),
        ("read_pipe", "read", "reader"),
        ("poll_pipe", "poll", "poller"),
        ("host_nap", "nap", "embedder_napper"),
    ] {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("main", &module).unwrap();
        let caller = {
            let domain = domain.strong_ref("caller").unwrap();
            thread::spawn(move || domain.call(export, &[]))
        };
        // Wait until the call is in its wait (the record is made as it
        // begins).
        let until = Instant::now() + Duration::from_secs(10);
        let call_root = loop {
            let roots = domain.roots();
            let call = roots.into_iter().find(|r| r.kind == RootKind::Call);
            if let Some(call) = call.filter(|c| c.detail.is_some()) {
                break call;
            }
            assert!(Instant::now() < until, "{export}: never seen blocked");
            thread::sleep(Duration::from_millis(5));
        };
        let asked = Instant::now();
        let detail = call_root.detail.as_deref().unwrap();
        assert!(
            detail.starts_with(&format!("blocked in host function {function} for ")),
            "{export}: {detail}"
        );
        assert_eq!(
            call_root.blocked_in.as_deref(),
            Some(function),
            "{export}: the blocked function, without the prose"
        );
        let stack = call_root.stack.as_deref().unwrap();
        assert!(
            stack.contains(frame),
            "{export}: the stack names {frame}: {stack}"
        );
        // Read at once: a blocked guest is not waited for.
        assert!(
            domain.roots().iter().any(|r| r.kind == RootKind::Call),
            "{export}"
        );
        assert!(asked.elapsed() < Duration::from_millis(500), "{export}");
        // The same cause is what an unload that waits for it reports.
        let ticket = domain.begin_unload().unwrap();
        let blocked = ticket.wait(Duration::from_millis(20)).unwrap_err();
        assert!(
            blocked
                .to_string()
                .contains(&format!("blocked in host function {function}")),
            "{export}: {blocked}"
        );
        ticket.force();
        let outcome = caller.join().unwrap();
        assert!(
            matches!(
                outcome,
                Err(CallError::Aborted { .. } | CallError::NotRunning(_))
            ),
            "{export}: {outcome:?}"
        );
        ticket.wait(Duration::from_secs(5)).unwrap();
        // Once the wait is over, no record stays behind.
        assert!(domain.roots().is_empty(), "{export}");
    }
    baseline.assert_back("blocked calls forced out");
}

/// A file the host pins for a while: its id, the file's path.
fn domain_with_file(host: &Host, tag: &str) -> (custody_host::Domain, HandleId) {
    let dir = scratch(tag);
    let path = dir.join("pinned.txt");
    std::fs::write(&path, b"still here").unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let id = domain
        .insert_handle(Fd::from(File::open(&path).unwrap()))
        .unwrap();
    (domain, id)
}

#[test]
fn a_handle_pinned_outside_a_call_is_a_root_until_its_guard_drops() {
    let _serial = serial();
    let host = host();
    let baseline = FdBaseline::now();
    let (domain, id) = domain_with_file(&host, "pinned-root");

    let pinned = domain.pin_handle::<Fd>(id, "thumbnail worker").unwrap();
    assert_eq!(pinned.id(), id);
    let roots = domain.roots();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let root = &roots[0];
    assert_eq!(root.kind, RootKind::PinnedHandle);
    assert_eq!(root.label, "thumbnail worker");
    assert_eq!(
        root.detail.as_deref(),
        Some(format!("handle {} (Fd)", id.raw()).as_str())
    );
    assert!(
        root.site.as_deref().unwrap().contains("roots.rs"),
        "{root:?}"
    );
    assert_eq!(domain.info().roots_by_kind.get("PinnedHandle"), Some(&1));

    // The guest (here: the embedder for it) closes the id: the resource
    // stays open for the guard.
    domain.close_handle(id).unwrap();
    let mut text = String::new();
    File::from(pinned.as_fd().try_clone_to_owned().unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "still here");

    // A cooperative unload waits for it, and says why.
    let ticket = domain.begin_unload().unwrap();
    let blocked = ticket.wait(Duration::from_millis(20)).unwrap_err();
    assert_eq!(blocked.roots.len(), 1);
    assert!(
        blocked.to_string().contains("thumbnail worker"),
        "{blocked}"
    );
    // No new pins once unloading.
    assert!(matches!(
        domain.pin_handle::<Fd>(id, "late"),
        Err(PinError::Handle(_) | PinError::NotRunning(_))
    ));
    let started = Instant::now();
    drop(pinned);
    let report = ticket.wait(Duration::from_secs(5)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(report.deferred, 0, "the guard dropped before the drain");
    baseline.assert_back("a pinned handle dropped");
}

#[test]
fn pinning_a_bad_id_holds_nothing() {
    let _serial = serial();
    let host = host();
    let (domain, id) = domain_with_file(&host, "pinned-bad");
    assert!(matches!(
        domain.pin_handle::<Fd>(HandleId::NULL, "null"),
        Err(PinError::Handle(_))
    ));
    assert!(matches!(
        domain.pin_handle::<Fd>(HandleId::from_raw(id.raw() + 1), "forged"),
        Err(PinError::Handle(_))
    ));
    assert!(domain.roots().is_empty(), "a failed pin is no root");
    domain.unload().unwrap();
    assert!(matches!(
        domain.pin_handle::<Fd>(id, "after"),
        Err(PinError::Handle(_) | PinError::NotRunning(_))
    ));
}

#[test]
fn a_dependent_ref_made_while_its_holder_completes_never_outlives_it() {
    let _serial = serial();
    let host = host();
    for round in 0..300 {
        let holder = host.create_domain(DomainConfig::new()).unwrap();
        let target = host.create_domain(DomainConfig::new()).unwrap();
        let start = Arc::new(Barrier::new(2));
        // An empty domain's unload completes inside `unload`, on that
        // thread: racing it is racing the holder's completion.
        let unloader = {
            let holder = holder.downgrade().upgrade().unwrap();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                holder.unload()
            })
        };
        start.wait();
        let made = target.strong_ref_for(&holder, "forwarder");
        assert!(unloader.join().unwrap().is_ok(), "round {round}");
        drop(made);
        // Whichever way the race went, nothing of the holder roots the
        // target now.
        let report = target.begin_unload().unwrap().wait(Duration::from_secs(5));
        assert!(report.is_ok(), "round {round}: {report:?}");
    }
}
