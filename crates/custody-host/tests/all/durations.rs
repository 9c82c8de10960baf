//! Any duration a user, a policy file or a guest gives is accepted or
//! refused with a named error, and never panics: every `Duration` field of
//! the policy, and every `*_ms` key of a policy file, is driven at 0, 1 ns
//! (1 ms in files), `u64::MAX` seconds and `Duration::MAX` through a whole
//! life: load (a start function that sleeps), a call that sleeps, polls and
//! arms a timer, an unloading hook that sleeps, the unload.

use std::time::Duration;

use custody_host::{Domain, DomainConfig, Policy};
use custody_testkit::{FdBaseline, host_with, serial};

/// Sleeps in its start function, its call and its unloading hook; polls a
/// pipe with a timeout; arms a timer and closes it.
const GUEST: &str = r#"
(module
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "poll" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "tick")
  (func $start (drop (call $sleep (i32.const 1))))
  (start $start)
  (func (export "tick") (param i32))
  (func (export "run") (result i32)
    (drop (call $sleep (i32.const 1)))
    (if (i32.eqz (call $pipe (i32.const 0) (i32.const 4)))
      (then
        (drop (call $poll (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 8)))
        (drop (call $close (i32.load (i32.const 0))))
        (drop (call $close (i32.load (i32.const 4))))))
    (if (i32.eqz (call $timer_set (i32.const 0) (i32.const 5) (i32.const 100) (i32.const 4) (i32.const 12)))
      (then (drop (call $close (i32.load (i32.const 12))))))
    (i32.const 7))
  (func (export "custody_unloading") (drop (call $sleep (i32.const 1))))
)
"#;

const EXTREMES: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(u64::MAX),
    Duration::MAX,
];

type Field = (&'static str, fn(&mut Policy, Duration));

const FIELDS: [Field; 8] = [
    ("deadline", |p, d| p.deadline = Some(d)),
    ("max_wait", |p, d| p.max_wait = d),
    ("timer_min_period", |p, d| p.timer_min_period = d),
    ("unload_hook_timeout", |p, d| p.unload_hook_timeout = d),
    ("unload_timeout", |p, d| p.unload_timeout = d),
    ("unload_grace", |p, d| p.unload_grace = d),
    ("compile_timeout", |p, d| p.compile_timeout = d),
    ("throttle_after", |p, d| p.throttle_after = Some(d)),
];

/// A whole life under `policy`; panics only if custody does. A refused
/// policy must say why.
fn live(policy: Policy, what: &str) {
    if let Err(refused) = policy.validate() {
        assert!(!refused.0.is_empty(), "{what}: refused without a reason");
        return;
    }
    let (host, _lines) = host_with(policy);
    let domain: Domain = host.create_domain(DomainConfig::new()).unwrap();
    // A compile timeout of 1 ns refuses the module; a deadline of 1 ns
    // aborts its start function or its call: both are answers, not panics.
    if let Ok(module) = host.compile(GUEST.as_bytes())
        && domain.load("main", &module).is_ok()
        && let Ok(results) = domain.call("run", &[])
    {
        assert_eq!(results[0].unwrap_i32(), 7, "{what}");
    }
    let report = domain.unload();
    assert!(report.is_ok(), "{what}: {report:?}");
}

#[test]
fn every_policy_duration_at_its_extremes_is_accepted_or_refused_by_name() {
    let _serial = serial();
    let fds = FdBaseline::now();
    for (name, set) in FIELDS {
        for extreme in EXTREMES {
            let mut policy = Policy::default();
            set(&mut policy, extreme);
            live(policy, &format!("{name} = {extreme:?}"));
        }
    }
    fds.assert_back("after every policy duration at its extremes");
}

#[test]
fn every_millisecond_key_of_a_policy_file_at_its_extremes_is_accepted_or_refused_by_name() {
    let _serial = serial();
    let keys = [
        "deadline_ms",
        "max_wait_ms",
        "timer_min_period_ms",
        "unload_hook_timeout_ms",
        "unload_timeout_ms",
        "unload_grace_ms",
        "compile_timeout_ms",
        "throttle_after_ms",
    ];
    for key in keys {
        for value in [0, 1, u64::MAX] {
            let text = format!("{key} = {value}");
            match Policy::from_toml(&text) {
                Ok(policy) => live(policy, &text),
                Err(refused) => assert!(
                    refused.0.contains(key.trim_end_matches("_ms")),
                    "{text}: the error does not name the key: {refused}"
                ),
            }
        }
    }
}

#[test]
fn a_deadline_too_far_for_the_clock_never_passes() {
    let _serial = serial();
    let policy = Policy {
        deadline: Some(Duration::MAX),
        ..Policy::default()
    };
    let (host, _lines) = host_with(policy);
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let module = host.compile(GUEST.as_bytes()).unwrap();
    domain.load("main", &module).unwrap();
    assert_eq!(domain.call("run", &[]).unwrap()[0].unwrap_i32(), 7);
    domain.unload().unwrap();
}
