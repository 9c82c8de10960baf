//! Guest timers are fair (SPEC D6 and C1): one domain's timers or calls
//! never hold up another domain's timers. Domain A is hostile (its
//! callbacks spin to the deadline, its exports run long); domain B's
//! callbacks must still start within [`LATE`] of their due time. Each
//! callback reports when it ran through an embedder function,
//! `probe.mark(tag)`.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use custody_host::abi::AbiError;
use custody_host::{CallError, Domain, DomainConfig, GuestCall, Host, Module, Policy};
use custody_testkit::*;

/// How late a callback may start (past its due time) while another domain
/// is hostile: what docs/RELIABILITY.md promises, with room for a shared,
/// noisy machine. Without fairness it is late by the hostile domain's
/// deadline (a second here), and by that again for each of its timers.
const LATE: Duration = Duration::from_millis(200);
/// The hostile domain's deadline: how long each of its calls may spin.
const DEADLINE: Duration = Duration::from_secs(1);

/// `arm(delay, period, which)` arms a timer calling `spin_cb` (0),
/// `mark_cb` (1) or `slow_cb` (2); its handle goes to 8. `mark_cb` calls
/// `probe.mark` with the tag at 0 (`set_tag`); `slow_cb` sleeps 100 ms
/// first. `spin` and `nap(ms)` hold the store. The hook sleeps for the
/// time at 4 (`set_hook_nap`), marking -2 as it starts and -1 as it ends.
const GUEST: &str = r#"
(module
  (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "probe" "mark" (func $mark (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "spin_cb")
  (data (i32.const 80) "mark_cb")
  (data (i32.const 96) "slow_cb")
  (func (export "arm") (param $delay i32) (param $period i32) (param $which i32) (result i32)
    (call $timer_set (local.get $delay) (local.get $period)
      (i32.add (i32.const 64) (i32.mul (local.get $which) (i32.const 16)))
      (i32.const 7) (i32.const 8)))
  (func (export "set_tag") (param i32) (i32.store (i32.const 0) (local.get 0)))
  (func (export "set_hook_nap") (param i32) (i32.store (i32.const 4) (local.get 0)))
  (func (export "spin_cb") (param i32) (loop $l (br $l)))
  (func (export "mark_cb") (param i32) (drop (call $mark (i32.load (i32.const 0)))))
  (func (export "slow_cb") (param i32)
    (drop (call $sleep (i32.const 100)))
    (drop (call $mark (i32.load (i32.const 0)))))
  (func (export "spin") (loop $l (br $l)))
  (func (export "nap") (param i32) (drop (call $sleep (local.get 0))))
  (func (export "custody_unloading")
    (drop (call $mark (i32.const -2)))
    (drop (call $sleep (i32.load (i32.const 4))))
    (drop (call $mark (i32.const -1)))))
"#;

const SPIN: i32 = 0;
const MARK: i32 = 1;
const SLOW: i32 = 2;

/// When each `probe.mark(tag)` ran.
#[derive(Clone, Default)]
struct Marks(Arc<Mutex<Vec<(i32, Instant)>>>);

impl Marks {
    /// The first mark of `tag` at or after `since`, waiting up to 5 s.
    fn first(&self, tag: i32, since: Instant) -> Instant {
        let waited = Instant::now();
        loop {
            let found = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(t, at)| *t == tag && *at >= since)
                .map(|(_, at)| *at);
            if let Some(at) = found {
                return at;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "tag {tag}: the timer never fired"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// How many marks of `tag` come from `since` until `wait` from now.
    fn count_after(&self, tag: i32, since: Instant, wait: Duration) -> usize {
        thread::sleep(wait);
        let marks = self.0.lock().unwrap();
        marks
            .iter()
            .filter(|(t, at)| *t == tag && *at >= since)
            .count()
    }
}

/// A host with `probe.mark`, and the guest compiled and warmed.
fn probe_host(policy: Policy) -> (Host, Module, Marks) {
    quiet();
    let marks = Marks::default();
    let sink = marks.clone();
    let host = Host::builder(policy)
        .log(Arc::new(|_, _, _| {}))
        .func_wrap(
            "probe",
            "mark",
            &[],
            move |_: &mut GuestCall<'_>, tag: i32| -> Result<i32, AbiError> {
                sink.0.lock().unwrap().push((tag, Instant::now()));
                Ok(0)
            },
        )
        .build()
        .unwrap();
    let module = warmed_module(&host, GUEST);
    (host, module, marks)
}

fn policy() -> Policy {
    Policy {
        deadline: Some(DEADLINE),
        ..Policy::default()
    }
}

/// A domain with the guest, whose `mark_cb` marks with `tag`.
fn domain(host: &Host, module: &Module, tag: i32) -> Domain {
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", module).unwrap();
    call(&domain, "set_tag", &[tag]);
    domain
}

/// Arms a one-shot timer of `delay_ms` in `domain` and returns how late
/// (past its due time) its callback started.
fn lateness(domain: &Domain, marks: &Marks, tag: i32, delay_ms: i32) -> Duration {
    let armed = Instant::now();
    assert_eq!(call(domain, "arm", &[delay_ms, 0, MARK]), 0);
    let due = armed + Duration::from_millis(delay_ms as u64);
    marks.first(tag, armed).saturating_duration_since(due)
}

#[test]
fn a_domain_whose_callbacks_spin_to_the_deadline_does_not_delay_another_s_timers() {
    let _serial = serial();
    let (host, module, marks) = probe_host(policy());
    let (a, b) = (domain(&host, &module, 1), domain(&host, &module, 2));
    // Four periodic timers of 1 ms, each callback spinning for a second.
    for _ in 0..4 {
        assert_eq!(call(&a, "arm", &[1, 1, SPIN]), 0);
    }
    thread::sleep(Duration::from_millis(50));
    for round in 0..5 {
        let late = lateness(&b, &marks, 2, 20);
        assert!(
            late < LATE,
            "round {round}: B's callback started {late:?} after it was due"
        );
    }
    let report = a.force_unload().unwrap();
    assert!(report.forced.is_some());
    b.unload().unwrap();
}

#[test]
fn a_long_call_into_a_domain_does_not_delay_another_s_timers_and_its_own_run_after_it() {
    let _serial = serial();
    let (host, module, marks) = probe_host(policy());
    let (a, b) = (domain(&host, &module, 1), domain(&host, &module, 2));
    let armed = Instant::now();
    assert_eq!(call(&a, "arm", &[30, 0, MARK]), 0);
    // A's export spins to its deadline while A's timer comes due.
    let busy = {
        let a = a.clone();
        thread::spawn(move || {
            let outcome = a.call("spin", &[]);
            (outcome, Instant::now())
        })
    };
    thread::sleep(Duration::from_millis(10));
    let late = lateness(&b, &marks, 2, 20);
    assert!(
        late < LATE,
        "B's callback started {late:?} after it was due"
    );
    let (outcome, call_ended) = busy.join().unwrap();
    assert!(
        matches!(outcome, Err(CallError::Aborted { .. })),
        "{outcome:?}"
    );
    // A's callback waited for A's call (calls into a domain are
    // serialized), then ran as soon as the call gave the store back.
    let fired = marks.first(1, armed);
    assert!(
        fired + Duration::from_millis(50) >= call_ended,
        "A's callback ran {:?} before A's call ended",
        call_ended - fired
    );
    assert!(
        fired < call_ended + LATE,
        "A's callback ran {:?} after A's call ended",
        fired - call_ended
    );
    a.unload().unwrap();
    b.unload().unwrap();
}

#[test]
fn delays_and_periods_below_the_policy_s_minimum_are_raised_to_it() {
    let _serial = serial();
    let floor = Duration::from_millis(50);
    let (host, module, marks) = probe_host(Policy {
        timer_min_period: floor,
        ..policy()
    });
    let a = domain(&host, &module, 1);
    let armed = Instant::now();
    // Asked for every millisecond, from now.
    assert_eq!(call(&a, "arm", &[0, 1, MARK]), 0);
    let first = marks.first(1, armed);
    assert!(
        first >= armed + floor,
        "fired {:?} after arming",
        first - armed
    );
    let fired = marks.count_after(1, armed, Duration::from_millis(500));
    // At most one per floor (fewer on a busy machine, never more).
    assert!(
        (1..=500 / 50 + 2).contains(&fired),
        "{fired} callbacks in about 550 ms"
    );
    a.force_unload().unwrap();
}

#[test]
fn a_periodic_timer_skips_while_its_callback_or_a_call_runs_and_never_piles_up() {
    let _serial = serial();
    let (host, module, marks) = probe_host(policy());
    let a = domain(&host, &module, 1);
    // Due every 10 ms, each callback takes 100 ms: the next is counted from
    // the end of the last.
    let armed = Instant::now();
    assert_eq!(call(&a, "arm", &[10, 10, SLOW]), 0);
    let fired = marks.count_after(1, armed, Duration::from_millis(600));
    assert!(
        (1..=600 / 110 + 1).contains(&fired),
        "{fired} slow callbacks in 600 ms"
    );
    a.force_unload().unwrap();
    let a = domain(&host, &module, 2);
    // A call holding the store for 400 ms while a 10 ms timer is due:
    // afterwards, one callback runs, not forty.
    assert_eq!(call(&a, "arm", &[10, 10, MARK]), 0);
    marks.first(2, armed);
    call(&a, "nap", &[400]);
    let after = marks.count_after(2, Instant::now(), Duration::from_millis(100));
    assert!(
        after <= 100 / 10 + 2,
        "{after} callbacks in the 100 ms after the call"
    );
    a.force_unload().unwrap();
}

#[test]
fn a_timer_due_during_the_unloading_hook_runs_after_it_and_the_unload_completes() {
    let _serial = serial();
    let (host, module, marks) = probe_host(policy());
    let baseline = FdBaseline::now();
    let a = domain(&host, &module, 1);
    call(&a, "set_hook_nap", &[150]);
    let armed = Instant::now();
    assert_eq!(call(&a, "arm", &[20, 0, MARK]), 0);
    // The hook holds the store while the timer comes due; a cooperative
    // unload still lets the callback in, and the one-shot timer that fired
    // holds the unload no more.
    let ticket = a.begin_unload().unwrap();
    let report = ticket.wait(Duration::from_secs(5)).expect("it completed");
    assert!(report.forced.is_none());
    let fired = marks.first(1, armed);
    let (hook_started, hook_ended) = (marks.first(-2, armed), marks.first(-1, armed));
    assert!(
        fired <= hook_started || fired >= hook_ended,
        "the callback ran during the hook"
    );
    drop(a);
    baseline.assert_back("timers");
}

#[test]
fn many_hostile_domains_each_take_one_worker_at_most() {
    let _serial = serial();
    let (host, module, marks) = probe_host(policy());
    // Fewer hostile domains than workers: each one's spinning callbacks
    // take one worker, whatever its number of timers, and the last worker
    // is free for the well-behaved domain.
    let hostile: Vec<Domain> = (0..3).map(|i| domain(&host, &module, 10 + i)).collect();
    for domain in &hostile {
        for _ in 0..8 {
            assert_eq!(call(domain, "arm", &[1, 1, SPIN]), 0);
        }
    }
    let b = domain(&host, &module, 2);
    thread::sleep(Duration::from_millis(50));
    for round in 0..3 {
        let late = lateness(&b, &marks, 2, 20);
        assert!(
            late < LATE,
            "round {round}: B's callback started {late:?} after it was due"
        );
    }
    for domain in &hostile {
        domain.force_unload().unwrap();
    }
    b.unload().unwrap();
}

#[test]
fn a_callback_that_finds_its_domain_busy_is_never_lost() {
    let _serial = serial();
    let (host, module, marks) = probe_host(policy());
    let a = domain(&host, &module, 1);
    // Each round, a call holds the store across the timer's due time and
    // gives it back about when the runner finds it held and parks: the
    // last release must hand the store on, or the callback never runs (no
    // later call would wake it).
    let mut rng = Rng(10);
    for round in 0..150 {
        let armed = Instant::now();
        assert_eq!(call(&a, "arm", &[10, 0, MARK]), 0);
        let nap = 8 + rng.next_u64() % 5;
        call(&a, "nap", &[nap as i32]);
        let waited = Instant::now();
        let fired = marks.first(1, armed);
        assert!(
            fired < waited + LATE,
            "round {round}: the callback came {:?} after the store was free",
            fired - waited
        );
    }
    a.unload().unwrap();
}
