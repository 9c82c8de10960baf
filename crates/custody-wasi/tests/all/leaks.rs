//! Leak-freedom for WASI guests (SPEC W3): a guest that opens files and
//! exits without closing them, traps, or is aborted mid-`fd_read` on a
//! pipe leaves the fd count at its baseline after unload.
//!
//! Every test takes `serial()`: they count fds.

use std::time::Duration;

use custody_host::{CallError, DomainConfig};
use custody_testkit::*;
use custody_wasi::{Stdio, WasiDomain, WasiDomainConfig};

/// A guest that opens `data/f` `n` times through the custody ABI, holds
/// each as a WASI fd, and then exits, traps or reads a pipe forever.
const OPENER: &str = r#"
  (data (i32.const 3000) "data/f")
  (func $open_n (export "open_n") (param $n i32)
    (loop $l
      (drop (call $open (i32.const 3000) (i32.const 6) (i32.const 7) (i32.const 3100)))
      ;; touch it through WASI: a write of 0 bytes
      (drop (call $fd_write (i32.load (i32.const 3100)) (i32.const 3200) (i32.const 0) (i32.const 3300)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0)))))
  (func (export "open_then_exit") (call $open_n (i32.const 5)) (call $proc_exit (i32.const 9)))
  (func (export "open_then_trap") (call $open_n (i32.const 5)) unreachable)
  (func (export "open_then_block")
    (call $open_n (i32.const 5))
    (drop (call $pipe (i32.const 3400) (i32.const 3404)))
    (i32.store (i32.const 3500) (i32.const 3600))
    (i32.store (i32.const 3504) (i32.const 16))
    (drop (call $fd_read (i32.load (i32.const 3400)) (i32.const 3500) (i32.const 1) (i32.const 3300))))
"#;

/// The WASI driver with OPENER's functions.
fn opener() -> String {
    wasi_driver(OPENER)
}

#[test]
fn exit_trap_or_abort_mid_read_leaves_no_fd_behind() {
    let _serial = serial();
    let dir = scratch("wasi-leaks");
    std::fs::write(dir.join("f"), b"x").unwrap();
    let host = host();
    let module = warmed_module(&host, &opener());
    for (export, expect) in [
        ("open_then_exit", "exit"),
        ("open_then_trap", "trap"),
        ("open_then_block", "abort"),
    ] {
        let baseline = FdBaseline::now();
        let config = DomainConfig::new()
            .preopen("data", &dir)
            .stdout(Stdio::Inherit)
            .stdin(Stdio::Inherit);
        let domain = host.create_domain(config).unwrap();
        domain.load("main", &module).unwrap();
        let waker = abort_after(&domain, Duration::from_millis(200));
        let outcome = domain.call(export, &[]);
        waker.join().unwrap();
        match (expect, &outcome) {
            ("exit", Err(CallError::Exit(9)))
            | ("trap", Err(CallError::Trap { .. }))
            | ("abort", Err(CallError::Aborted { .. })) => {}
            _ => panic!("{export}: {outcome:?}"),
        }
        assert_eq!(domain.table().len(), if expect == "abort" { 7 } else { 5 });
        let report = domain.unload().unwrap();
        assert!(
            report.ledger.released_at_unload >= 5,
            "{export}: {report:?}"
        );
        drop(domain);
        baseline.assert_back(export);
    }
}

#[test]
fn a_recycle_gives_the_new_instances_their_stdio_and_fresh_fds() {
    let _serial = serial();
    let dir = scratch("wasi-recycle");
    std::fs::write(dir.join("f"), b"x").unwrap();
    let host = host();
    let module = warmed_module(&host, &opener());
    let baseline = FdBaseline::now();
    // Trapping inside a critical region recycles the domain (the default
    // ladder); a WASI guest has no critical region, so ask for it.
    let policy = custody_host::Policy {
        escalation: custody_host::Escalation {
            outside_critical: custody_host::Action::RecycleDomain,
            ..Default::default()
        },
        ..custody_host::Policy::default()
    };
    let recycling = host
        .create_domain(DomainConfig::new().policy(policy).preopen("data", &dir))
        .unwrap();
    recycling.load("main", &module).unwrap();
    call(&recycling, "open_n", &[3]);
    assert_eq!(call(&recycling, "w_fd_close", &[1]), 0);
    assert!(matches!(
        recycling.call("trap", &[]),
        Err(CallError::Escalated { .. })
    ));
    assert_eq!(recycling.table().len(), 0, "every fd released");
    poke(&recycling, 100, b"again");
    iovec(&recycling, 0, 100, 5);
    assert_eq!(
        call(&recycling, "w_fd_write", &[1, 0, 1, 16]),
        0,
        "stdout is open again"
    );
    assert_eq!(recycling.take_stdout(), b"again");
    recycling.unload().unwrap();
    drop(recycling);
    baseline.assert_back("recycle");
}
