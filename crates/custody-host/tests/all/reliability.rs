//! The reliability policy (SPEC Part C): deadlines, cancellable blocking
//! calls, memory and stack limits, the handle quota, critical regions and
//! the escalation ladder, and the diagnostics they fire.
//!
//! Every test takes `serial()`: they open fds and some count them.

use std::thread;
use std::time::{Duration, Instant};

use custody_handle::diagnostics::{Assistant, Collector};
use custody_host::abi::AbiError;
use custody_host::{
    Action, Allocation, CallError, DomainConfig, DomainState, Escalation, LoadError, OnMemoryLimit,
    Policy, Val,
};
use custody_testkit::*;

/// A guest that misbehaves in every way Part C covers.
const UNRULY: &str = r#"
(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "poll" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "custody" "critical_enter" (func $enter (result i32)))
  (import "custody" "critical_exit" (func $exit (result i32)))
  (memory (export "memory") 1)
  (global $counter (mut i32) (i32.const 0))
  (func (export "bump") (result i32)
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (global.get $counter))
  (func (export "open_pipe") (result i32) (call $pipe (i32.const 0) (i32.const 4)))
  (func $spin (loop $l (br $l)))
  (func (export "spin") (call $spin))
  (func (export "spin_critical") (drop (call $enter)) (call $spin))
  (func (export "trap") unreachable)
  (func (export "trap_critical") (drop (call $enter)) unreachable)
  (func (export "leave_open") (drop (call $enter)))
  (func (export "balanced") (result i32) (drop (call $enter)) (call $exit))
  (func (export "sleep") (param i32) (result i32) (call $sleep (local.get 0)))
  (func (export "sleep_critical") (param i32) (result i32)
    (drop (call $enter)) (call $sleep (local.get 0)))
  ;; Blocks reading the (empty) pipe made by open_pipe.
  (func (export "read_pipe") (result i32)
    (call $read (i32.load (i32.const 0)) (i32.const 1024) (i32.const 16) (i32.const 8)))
  (func (export "poll_pipe") (param i32) (result i32)
    (i32.store (i32.const 100) (i32.load (i32.const 0)))
    (call $poll (i32.const 100) (i32.const 1) (local.get 0) (i32.const 8)))
  (func $recurse (param i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "recurse") (result i32) (call $recurse (i32.const 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
)
"#;

fn unruly(policy: Policy) -> (custody_host::Host, custody_host::Domain) {
    let (host, _) = host_with(policy);
    let module = host.compile(UNRULY.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("unruly", &module).unwrap();
    (host, domain)
}

fn with_deadline(ms: u64) -> Policy {
    Policy {
        deadline: Some(Duration::from_millis(ms)),
        ..Policy::default()
    }
}

fn aborted_reason(result: Result<Vec<Val>, CallError>) -> String {
    match result {
        Err(CallError::Aborted { reason, .. }) => reason,
        other => panic!("expected Aborted, got {other:?}"),
    }
}

#[test]
fn an_infinite_loop_is_aborted_at_the_deadline_and_the_domain_goes_on() {
    let _serial = serial();
    let (_host, domain) = unruly(with_deadline(50));
    let start = Instant::now();
    let reason = aborted_reason(domain.call("spin", &[]));
    let elapsed = start.elapsed();
    assert!(reason.contains("deadline"), "{reason}");
    assert!(elapsed >= Duration::from_millis(50));
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    assert_eq!(call(&domain, "bump", &[]), 1, "usable afterwards");
    assert_eq!(call(&domain, "bump", &[]), 2, "its state kept");
    assert_eq!(domain.state(), DomainState::Running);
}

#[test]
fn blocking_calls_are_woken_at_the_deadline_not_when_their_wait_ends() {
    let _serial = serial();
    let (_host, domain) = unruly(with_deadline(100));
    assert_eq!(call(&domain, "open_pipe", &[]), 0);
    // The domain's cancellation eventfd is made by its first wait and lives
    // until the unload; make it now so the count below is steady.
    assert_eq!(call(&domain, "sleep", &[0]), 0);
    let pipe_fds = open_fds();
    for (export, args) in [
        ("sleep", vec![Val::I32(5000)]),
        ("poll_pipe", vec![Val::I32(5000)]),
        ("read_pipe", vec![]),
    ] {
        let start = Instant::now();
        let reason = aborted_reason(domain.call(export, &args));
        assert!(reason.contains("deadline"), "{export}: {reason}");
        assert!(
            start.elapsed() < Duration::from_millis(600),
            "{export}: {:?}",
            start.elapsed()
        );
    }
    // The pipe's pins were dropped with each call; the guest still owns it.
    assert_eq!(domain.table().len(), 2);
    assert_eq!(open_fds(), pipe_fds);
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 2);
}

#[test]
fn the_host_can_abort_a_call_blocked_in_a_wait() {
    let _serial = serial();
    let (_host, domain) = unruly(Policy::default());
    let sleeper = {
        let domain = domain.clone();
        thread::spawn(move || {
            let start = Instant::now();
            (domain.call("sleep", &[Val::I32(5000)]), start.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(100));
    domain.abort();
    let (result, elapsed) = sleeper.join().unwrap();
    assert!(aborted_reason(result).contains("aborted by the host"));
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    // An abort with no call in flight does not poison the next call.
    domain.abort();
    assert_eq!(call(&domain, "sleep", &[1]), 0);
}

#[test]
fn an_infinite_wait_is_denied_and_an_over_cap_wait_refused() {
    let _serial = serial();
    let (_host, domain) = unruly(Policy::default());
    call(&domain, "open_pipe", &[]);
    assert_eq!(call(&domain, "poll_pipe", &[-1]), AbiError::Denied.code());
    assert_eq!(call(&domain, "sleep", &[10_001]), AbiError::Denied.code());
}

#[test]
fn growing_memory_past_the_cap_aborts_the_call_not_the_host() {
    let _serial = serial();
    for on_limit in [OnMemoryLimit::FailGrow, OnMemoryLimit::Abort] {
        let collector = Collector::start();
        let (_host, domain) = unruly(Policy {
            memory_limit: Some(4 * 65536),
            on_memory_limit: on_limit,
            ..Policy::default()
        });
        assert_eq!(
            call(&domain, "grow", &[2]),
            1,
            "within the cap: the old size in pages"
        );
        let past = domain.call("grow", &[Val::I32(2)]);
        if on_limit == OnMemoryLimit::Abort {
            let reason = aborted_reason(past);
            assert!(reason.contains("memory limit of 262144 bytes"), "{reason}");
        } else {
            assert_eq!(past.unwrap()[0].unwrap_i32(), -1, "WebAssembly's failure");
            let id = domain.id();
            let reached = collector
                .matching(|d| d.assistant == Assistant::MemoryLimitReached && d.domain == Some(id));
            assert_eq!(reached.len(), 1, "{reached:?}");
            assert!(
                reached[0].message.contains("memory limit of 262144 bytes"),
                "{}",
                reached[0].message
            );
        }
        assert_eq!(
            call(&domain, "grow", &[1]),
            3,
            "the domain goes on, at its cap"
        );
    }
    // A module whose initial memory is already past the cap does not load.
    let (host, _) = host_with(Policy {
        memory_limit: Some(65536),
        ..Policy::default()
    });
    // With the pooling allocator (sized from the cap) it is refused when
    // compiled; with on-demand allocation, when loaded.
    let error = host.compile(br#"(module (memory 2))"#).unwrap_err();
    assert!(matches!(error, LoadError::Limits { .. }), "{error}");
    assert!(
        error.to_string().contains("memory limit is 65536 bytes"),
        "{error}"
    );
    let (host, _) = host_with(Policy {
        memory_limit: Some(65536),
        allocation: Allocation::OnDemand,
        ..Policy::default()
    });
    let big = host.compile(br#"(module (memory 2))"#).unwrap();
    let other = host.create_domain(DomainConfig::new()).unwrap();
    let error = other.load("big", &big).unwrap_err();
    assert!(error.to_string().contains("memory limit"), "{error}");
}

#[test]
fn the_handle_quota_is_e_quota() {
    let _serial = serial();
    let (_host, domain) = unruly(Policy {
        handle_quota: 3,
        ..Policy::default()
    });
    assert_eq!(call(&domain, "open_pipe", &[]), 0);
    assert_eq!(call(&domain, "open_pipe", &[]), AbiError::Quota.code());
    assert_eq!(domain.table().len(), 2, "the half-made pipe was released");
}

#[test]
fn unbounded_recursion_is_aborted_by_the_stack_limit() {
    let _serial = serial();
    let (_host, domain) = unruly(Policy::default());
    let reason = aborted_reason(domain.call("recurse", &[]));
    assert!(reason.contains("stack limit"), "{reason}");
    assert_eq!(call(&domain, "bump", &[]), 1, "the domain goes on");
}

#[test]
fn a_trap_outside_a_critical_region_fails_only_the_call() {
    let _serial = serial();
    let (_host, domain) = unruly(Policy::default());
    call(&domain, "open_pipe", &[]);
    call(&domain, "bump", &[]);
    assert!(matches!(
        domain.call("trap", &[]),
        Err(CallError::Trap { .. })
    ));
    assert_eq!(domain.table().len(), 2, "handles kept");
    assert_eq!(call(&domain, "bump", &[]), 2, "state kept");
}

#[test]
fn a_failure_inside_a_critical_region_recycles_the_domain() {
    let _serial = serial();
    let collector = Collector::start();
    let (_host, domain) = unruly(with_deadline(100));
    let baseline = open_fds();
    call(&domain, "open_pipe", &[]);
    call(&domain, "bump", &[]);
    for export in ["trap_critical", "spin_critical"] {
        call(&domain, "open_pipe", &[]);
        match domain.call(export, &[]) {
            Err(CallError::Escalated {
                action,
                released,
                reason,
                ..
            }) => {
                assert_eq!(action, Action::RecycleDomain);
                assert!(released >= 2, "{export}: every handle released");
                assert!(reason.contains("critical region"), "{reason}");
            }
            other => panic!("{export}: expected Escalated, got {other:?}"),
        }
        assert_eq!(domain.state(), DomainState::Running, "re-created");
        assert_eq!(domain.table().len(), 0);
        assert_eq!(call(&domain, "bump", &[]), 1, "fresh instance state");
    }
    assert_eq!(open_fds(), baseline);
    assert_eq!(domain.ledger().recycles, 2);
    let seen = collector.matching(|d| d.domain == Some(domain.id()));
    let aborted: Vec<_> = seen
        .iter()
        .filter(|d| d.assistant == Assistant::CallAborted)
        .collect();
    let recycled: Vec<_> = seen
        .iter()
        .filter(|d| d.assistant == Assistant::DomainRecycled)
        .collect();
    assert_eq!((aborted.len(), recycled.len()), (2, 2));
    assert_eq!(aborted[0].function.as_deref(), Some("trap_critical"));
    assert_eq!(recycled[0].function.as_deref(), Some("trap_critical"));
    assert!(
        recycled[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("critical region")
    );
    assert!(
        recycled[0].backtrace.is_some(),
        "the recycle carries the guest backtrace"
    );
    assert!(
        aborted[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("unreachable")
    );
    assert!(
        aborted[0]
            .backtrace
            .as_deref()
            .unwrap()
            .contains("trap_critical")
            || !aborted[0].backtrace.as_deref().unwrap().is_empty()
    );
    assert!(aborted[1].reason.as_deref().unwrap().contains("deadline"));
}

#[test]
fn an_abort_while_blocked_inside_a_critical_region_recycles_too() {
    let _serial = serial();
    let (_host, domain) = unruly(with_deadline(100));
    call(&domain, "open_pipe", &[]);
    match domain.call("sleep_critical", &[Val::I32(5000)]) {
        Err(CallError::Escalated {
            action, released, ..
        }) => {
            assert_eq!(action, Action::RecycleDomain);
            assert_eq!(released, 2);
        }
        other => panic!("expected Escalated, got {other:?}"),
    }
}

#[test]
fn a_call_returning_with_a_region_open_is_an_orphaned_lock() {
    let _serial = serial();
    let (_host, domain) = unruly(Policy::default());
    assert_eq!(
        call(&domain, "balanced", &[]),
        0,
        "balanced regions are fine"
    );
    call(&domain, "open_pipe", &[]);
    match domain.call("leave_open", &[]) {
        Err(CallError::Escalated {
            reason, released, ..
        }) => {
            assert!(reason.contains("orphaned"), "{reason}");
            assert_eq!(released, 2);
        }
        other => panic!("expected Escalated, got {other:?}"),
    }
    assert_eq!(domain.state(), DomainState::Running);
}

#[test]
fn the_ladder_is_configurable() {
    let _serial = serial();
    // Recycle without re-creating: the domain ends Recycled.
    let (_host, domain) = unruly(Policy {
        escalation: Escalation {
            recreate: false,
            ..Escalation::default()
        },
        ..Policy::default()
    });
    assert!(matches!(
        domain.call("trap_critical", &[]),
        Err(CallError::Escalated { .. })
    ));
    assert_eq!(domain.state(), DomainState::Recycled);
    assert!(matches!(
        domain.call("bump", &[]),
        Err(CallError::NotRunning(_))
    ));
    // A recycled domain holds no handle, and its unload is its report.
    assert_eq!(domain.table().len(), 0);
    let report = domain.unload().expect("the recycle's report");
    assert_eq!(report.ledger.recycles, 1);
    assert_eq!(domain.state(), DomainState::Recycled);

    // Escalate every failure, even outside regions, to an unload.
    let (host, domain) = unruly(Policy {
        escalation: Escalation {
            outside_critical: Action::UnloadDomain,
            inside_critical: Action::UnloadDomain,
            orphaned_critical: Action::UnloadDomain,
            ..Escalation::default()
        },
        ..Policy::default()
    });
    match domain.call("trap", &[]) {
        Err(CallError::Escalated { action, .. }) => assert_eq!(action, Action::UnloadDomain),
        other => panic!("expected Escalated, got {other:?}"),
    }
    assert_eq!(domain.state(), DomainState::Unloaded);
    assert!(host.domains().is_empty());

    // A ladder that would de-escalate is refused.
    let backwards = Policy {
        escalation: Escalation {
            outside_critical: Action::RecycleDomain,
            inside_critical: Action::AbortCall,
            ..Escalation::default()
        },
        ..Policy::default()
    };
    assert!(custody_host::Host::new(backwards).is_err());
}

#[test]
fn deadlines_still_fire_after_the_host_value_is_dropped() {
    let _serial = serial();
    let (host, domain) = unruly(with_deadline(50));
    drop(host);
    let reason = aborted_reason(domain.call("spin", &[]));
    assert!(reason.contains("deadline"), "{reason}");
}
