//! Unload releases everything, runs the guest's unloading hook (bounded in
//! time), and wakes calls blocked in the host.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use custody_host::{CallError, DomainConfig, HookOutcome, Policy};
use custody_testkit::*;

#[test]
fn a_thousand_domains_open_files_and_pipes_and_unload_back_to_the_fd_baseline() {
    let _serial = serial();
    let dir = scratch("thousand");
    fs::write(dir.join("f"), "data").unwrap();
    let host = host();
    let module = warmed_module(&host, &driver(&data(1024, "d/f")));
    let baseline = open_fds();
    let (mut released, mut trapped) = (0, 0);
    for i in 0..1000 {
        let domain = host
            .create_domain(DomainConfig::new().preopen("d", &dir))
            .unwrap();
        domain.load("main", &module).unwrap();
        assert_eq!(call(&domain, "abi_open", &[1024, 3, 1, 0]), 0);
        assert_eq!(call(&domain, "abi_open", &[1024, 3, 1, 4]), 0);
        assert_eq!(call(&domain, "abi_pipe", &[8, 12]), 0);
        let mut expected = 4;
        if i % 3 == 0 {
            // Trap in mid-call while holding two more handles.
            assert!(matches!(
                domain.call("pipe_then_trap", &[]),
                Err(CallError::Trap { .. })
            ));
            expected += 2;
            trapped += 1;
        }
        let report = domain.unload().unwrap();
        assert_eq!(report.released, expected);
        assert_eq!(report.ledger.released_at_unload, expected as u64);
        assert!(report.failed.is_empty());
        released += report.released;
    }
    assert_eq!(trapped, 334);
    assert_eq!(released, 1000 * 4 + 334 * 2);
    assert_eq!(open_fds(), baseline, "every fd came back");
    assert!(host.domains().is_empty());
}

const HOOKED: &str = r#"
(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "goodbye")
  (func (export "setup") (drop (call $pipe (i32.const 0) (i32.const 4))))
  ;; The hook closes the read end itself and says goodbye; the host releases
  ;; the write end.
  (func (export "custody_unloading")
    (drop (call $close (i32.load (i32.const 0))))
    (drop (call $log (i32.const 2) (i32.const 64) (i32.const 7))))
)
"#;

#[test]
fn the_unloading_hook_runs_before_the_handles_are_released() {
    let _serial = serial();
    let (host, lines) = host_with(Policy::default());
    let module = warmed_module(&host, HOOKED);
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    call(&domain, "setup", &[]);
    let report = domain.unload().unwrap();
    assert_eq!(report.hook(), HookOutcome::Completed);
    assert_eq!(report.ledger.opened, 2);
    assert_eq!(report.ledger.closed_by_guest, 1, "the hook closed one");
    assert_eq!(report.released, 1, "unload released the other");
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(d, _, text)| *d == domain.id() && text == "goodbye")
    );
    assert_eq!(open_fds(), baseline);
}

#[test]
fn every_module_s_unloading_hook_is_reported_in_load_order() {
    let _serial = serial();
    let (host, lines) = host_with(Policy::default());
    let trapping = warmed_module(
        &host,
        r#"(module (func (export "custody_unloading") unreachable))"#,
    );
    let silent = warmed_module(&host, "(module)");
    let tidy = warmed_module(&host, HOOKED);
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("trapping", &trapping).unwrap();
    domain.load("silent", &silent).unwrap();
    domain.load("tidy", &tidy).unwrap();
    call(&domain, "setup", &[]);
    let report = domain.unload().unwrap();
    let hooks: Vec<(&str, &HookOutcome)> = report
        .hooks
        .iter()
        .map(|h| (h.module.as_str(), &h.outcome))
        .collect();
    assert_eq!(
        hooks.len(),
        2,
        "a module with no hook is not listed: {hooks:?}"
    );
    assert_eq!(hooks[0].0, "trapping");
    assert!(matches!(hooks[0].1, HookOutcome::Trapped(_)), "{hooks:?}");
    assert_eq!(hooks[1], ("tidy", &HookOutcome::Completed));
    // The hook after the one that trapped ran all the same.
    assert_eq!(report.ledger.closed_by_guest, 1);
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, text)| text == "goodbye")
    );
    assert_eq!(
        report.hook(),
        hooks[0].1.clone(),
        "the summary: the failure"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hooks"][0]["module"], "trapping");
    assert_eq!(json["hooks"][0]["outcome"]["outcome"], "trapped");
    assert_eq!(json["hooks"][1]["outcome"]["outcome"], "completed");
    assert_eq!(open_fds(), baseline);

    let plain = host.create_domain(DomainConfig::new()).unwrap();
    plain.load("silent", &silent).unwrap();
    let report = plain.unload().unwrap();
    assert!(report.hooks.is_empty());
    assert_eq!(report.hook(), HookOutcome::Absent);
}

const STUBBORN: &str = r#"
(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "setup") (drop (call $pipe (i32.const 0) (i32.const 4))))
  ;; Sleeps in the host, then spins forever.
  (func (export "custody_unloading")
    (drop (call $sleep (i32.const 5000)))
    (loop $forever (br $forever)))
)
"#;

#[test]
fn the_unloading_hook_is_bounded_in_time() {
    let _serial = serial();
    let (host, _) = host_with(Policy {
        unload_hook_timeout: Duration::from_millis(100),
        ..Policy::default()
    });
    let module = warmed_module(&host, STUBBORN);
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    call(&domain, "setup", &[]);
    let collector = custody_handle::diagnostics::Collector::start();
    let start = Instant::now();
    let report = domain.unload().unwrap();
    assert_eq!(report.hook(), HookOutcome::TimedOut);
    let aborted = collector.matching(|d| d.domain == Some(domain.id()));
    assert_eq!(aborted.len(), 1, "the hook's abort is reported");
    assert_eq!(aborted[0].function.as_deref(), Some("custody_unloading"));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report.released, 2, "released anyway");
    assert_eq!(open_fds(), baseline);
}

#[test]
fn a_forced_unload_wakes_a_call_blocked_in_sleep_poll_or_read_and_releases_its_handles() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, &driver(""));
    let baseline = open_fds();
    for (export, args) in [
        ("abi_read", [0, 4096, 64, 8]),
        ("abi_poll", [100, 1, 5000, 8]),
        ("abi_sleep", [5000, 0, 0, 0]),
    ] {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("main", &module).unwrap();
        call(&domain, "abi_pipe", &[0, 4]);
        let r = call(&domain, "load", &[0]);
        call(&domain, "store", &[100, r]);
        let args: Vec<custody_host::Val> = match export {
            "abi_sleep" => vec![args[0].into()],
            "abi_read" => vec![r.into(), args[1].into(), args[2].into(), args[3].into()],
            _ => args.iter().map(|&a| a.into()).collect(),
        };
        let blocked = {
            let domain = domain.clone();
            thread::spawn(move || {
                let start = Instant::now();
                (domain.call(export, &args), start.elapsed())
            })
        };
        // Forced once the call waits (not after a fixed sleep: on a loaded
        // machine the thread may not have called yet).
        let waiting = Instant::now();
        while !domain.roots().iter().any(|root| root.blocked_in.is_some()) {
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "{export}: the call never waited"
            );
            thread::sleep(Duration::from_millis(5));
        }
        // A cooperative unload would let the call run to its end: forced.
        let report = domain.force_unload().unwrap();
        let (result, waited) = blocked.join().unwrap();
        assert!(
            waited < Duration::from_secs(2),
            "{export}: woken promptly, not at its 5-10 s wait: {waited:?}"
        );
        assert!(
            matches!(&result, Err(CallError::Aborted { reason, .. }) if reason.contains("unloading")),
            "{export}: the aborted call ends as Aborted: {result:?}"
        );
        assert_eq!(report.released, 2, "{export}");
    }
    assert_eq!(open_fds(), baseline);
}

#[test]
fn dropping_the_last_domain_handle_releases_everything_too() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, &driver(""));
    let baseline = open_fds();
    {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("main", &module).unwrap();
        call(&domain, "abi_pipe", &[0, 4]);
        call(&domain, "abi_pipe", &[8, 12]);
        assert_eq!(open_fds(), baseline + 4);
    }
    assert_eq!(open_fds(), baseline);
}
