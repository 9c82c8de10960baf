//! A full memory is the guest's to handle, as WebAssembly says: under the
//! default `on_memory_limit` ("fail-grow") a `memory.grow` or `table.grow`
//! past the cap returns -1 and the call goes on, with one
//! `memoryLimitReached` per call; under "abort" the call is aborted from
//! inside the grow.

use custody_handle::diagnostics::{Assistant, Collector};
use custody_host::{CallError, DomainConfig, OnMemoryLimit, Policy, Val};
use custody_testkit::*;

/// Grows memory and a table by `step` until refused (memory in pages,
/// the table in 1,000-element steps), then returns how many grows passed.
const GREEDY: &str = r#"(module
  (memory 1)
  (table 1 funcref)
  (func (export "grow_memory") (param $step i32) (result i32) (local $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.eq (memory.grow (local.get $step)) (i32.const -1)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $n))
  (func (export "grow_table") (result i32) (local $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.eq (table.grow (ref.null func) (i32.const 1000)) (i32.const -1)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $n))
  (func (export "pages") (result i32) (memory.size))
  (func (export "elements") (result i32) (table.size)))"#;

/// 1 MiB: 16 pages.
const CAP: usize = 1 << 20;

fn greedy(on_limit: OnMemoryLimit) -> (custody_host::Host, custody_host::Domain) {
    let (host, _lines) = host_with(Policy {
        memory_limit: Some(CAP),
        on_memory_limit: on_limit,
        // The pool's tables hold at most 65,536 elements: on demand, only
        // the cap bounds them.
        allocation: custody_host::Allocation::OnDemand,
        ..Policy::default()
    });
    let module = host.compile(GREEDY.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("greedy", &module).unwrap();
    (host, domain)
}

fn reached(collector: &Collector, domain: u64) -> Vec<custody_handle::diagnostics::Diagnostic> {
    collector.matching(|d| d.assistant == Assistant::MemoryLimitReached && d.domain == Some(domain))
}

#[test]
fn a_guest_that_grows_until_refused_survives_under_fail_grow() {
    let _serial = serial();
    let collector = Collector::start();
    let (_host, domain) = greedy(OnMemoryLimit::FailGrow);
    // 1 page to start; the table's one element takes 8 bytes of the cap,
    // so 14 more pages fit, one at a time.
    assert_eq!(call(&domain, "grow_memory", &[1]), 14);
    assert_eq!(call(&domain, "pages", &[]), 15, "at the cap, not past it");
    let seen = reached(&collector, domain.id());
    assert_eq!(seen.len(), 1, "once per call: {seen:?}");
    let message = &seen[0].message;
    assert!(
        message.contains("memory limit of 1048576 bytes")
            && message.contains("memory.grow of 65536 bytes"),
        "{message}"
    );
    assert_eq!(
        seen[0].detail.as_ref().unwrap()["requested_bytes"],
        65536,
        "{seen:?}"
    );
    // The next call is another call: reported again, once.
    assert_eq!(call(&domain, "grow_memory", &[1]), 0);
    assert_eq!(reached(&collector, domain.id()).len(), 2);
    // Tables count against the same cap, and fail the same way.
    // The 65,528 bytes left: 8 steps of 8,000.
    assert_eq!(call(&domain, "grow_table", &[]), 8);
    assert_eq!(call(&domain, "elements", &[]), 8001);
    assert_eq!(reached(&collector, domain.id()).len(), 3);
    let info = domain.info();
    assert!(info.memory_bytes.unwrap() <= CAP, "{info:?}");
    domain.unload().unwrap();
}

#[test]
fn a_table_grown_until_refused_stops_at_the_cap_under_fail_grow() {
    let _serial = serial();
    let (_host, domain) = greedy(OnMemoryLimit::FailGrow);
    // One page of memory (64 KiB) and 8 bytes per element: 1,000 elements
    // are 8,000 bytes, so 122 steps fit in the 960 KiB left.
    let grows = call(&domain, "grow_table", &[]);
    assert_eq!(grows as usize, (CAP - 65536 - 8) / 8000, "{grows}");
    assert!(domain.info().memory_bytes.unwrap() <= CAP);
    assert_eq!(call(&domain, "pages", &[]), 1);
    domain.unload().unwrap();
}

#[test]
fn the_same_guest_is_aborted_under_abort() {
    let _serial = serial();
    let collector = Collector::start();
    let (_host, domain) = greedy(OnMemoryLimit::Abort);
    for export in ["grow_memory", "grow_table"] {
        let args: &[Val] = if export == "grow_memory" {
            &[Val::I32(1)]
        } else {
            &[]
        };
        match domain.call(export, args) {
            Err(CallError::Aborted { reason, .. }) => {
                assert!(reason.contains("memory limit of 1048576 bytes"), "{reason}")
            }
            other => panic!("{export}: expected an abort, got {other:?}"),
        }
    }
    assert!(
        reached(&collector, domain.id()).is_empty(),
        "an abort is callAborted's"
    );
    assert_eq!(
        call(&domain, "pages", &[]),
        15,
        "the domain goes on at its cap"
    );
    domain.unload().unwrap();
}
