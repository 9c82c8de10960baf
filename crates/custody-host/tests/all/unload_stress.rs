//! SPEC D1/D7, the stress test: worker threads create domains, call them,
//! arm timers, take refs, views and tickets, and unload them (cooperatively,
//! forced, or by dropping the last handle) concurrently for a bounded time.
//! At the end every domain created has completed its unload exactly once,
//! the registry is empty and the fd count is back at its baseline. A run
//! that takes longer than its duration plus 30 s is a hang, and fails.
//!
//! `CUSTODY_STRESS_SECS` (default 3) and `CUSTODY_STRESS_SEED` (default:
//! the clock) set the run; every failure names the seed. The seed fixes
//! each worker's choices, not the threads' interleaving.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use custody_host::{
    AbiError, CallError, Domain, DomainConfig, DomainRef, DomainState, Host, MemoryView, Module,
    Policy, RefError, RootKind, UnloadError, UnloadReport, UnloadTicket, Val,
};
use custody_testkit::*;

/// The guest. Memory: 0 ticks, 4 pipes opened, 8 the hook's mode, 12 timers
/// armed, 16..32 their handles, 64 "tick", 128.. the pipes' ends.
///
/// The hook's mode (set by `arm`): 0 leaves the timers armed (the unload
/// stays blocked until forced or dropped), 1 closes them, 2 sleeps 20 ms
/// first, 3 closes them and then spins until `unload_hook_timeout`.
const GUEST: &str = r#"(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "tick")
  (func $spin_here (loop $l (br $l)))
  (func (export "spin") (call $spin_here))
  (func (export "nap") (result i32) (call $sleep (i32.const 5)))
  (func (export "ticks") (result i32) (i32.load (i32.const 0)))
  (func (export "tick") (param i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
  ;; a pipe (at most 8 per domain): the pipe's result, or 1 once there are 8
  (func (export "pipe") (result i32) (local $n i32) (local $at i32)
    (local.set $n (i32.load (i32.const 4)))
    (if (i32.ge_u (local.get $n) (i32.const 8)) (then (return (i32.const 1))))
    (i32.store (i32.const 4) (i32.add (local.get $n) (i32.const 1)))
    (local.set $at (i32.add (i32.const 128) (i32.shl (local.get $n) (i32.const 3))))
    (call $pipe (local.get $at) (i32.add (local.get $at) (i32.const 4))))
  ;; a timer calling tick (at most 4 per domain), and the hook's mode:
  ;; timer_set's result, or 1 once there are 4
  (func (export "arm") (param $delay i32) (param $period i32) (param $mode i32) (result i32)
    (local $n i32) (local $r i32)
    (i32.store (i32.const 8) (local.get $mode))
    (local.set $n (i32.load (i32.const 12)))
    (if (i32.ge_u (local.get $n) (i32.const 4)) (then (return (i32.const 1))))
    (local.set $r (call $timer_set (local.get $delay) (local.get $period)
      (i32.const 64) (i32.const 4) (i32.add (i32.const 16) (i32.shl (local.get $n) (i32.const 2)))))
    (if (i32.eqz (local.get $r)) (then (i32.store (i32.const 12) (i32.add (local.get $n) (i32.const 1)))))
    (local.get $r))
  (func (export "custody_unloading") (local $mode i32) (local $i i32)
    (local.set $mode (i32.load (i32.const 8)))
    (if (i32.eqz (local.get $mode)) (then (return)))
    (if (i32.eq (local.get $mode) (i32.const 2)) (then (drop (call $sleep (i32.const 20)))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 12))))
      (drop (call $close (i32.load (i32.add (i32.const 16) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.store (i32.const 12) (i32.const 0))
    (if (i32.eq (local.get $mode) (i32.const 3)) (then (call $spin_here)))))"#;

/// Exports a worker calls (`arm` has its own operation).
const EXPORTS: &[&str] = &["pipe", "nap", "spin", "ticks"];
const SLOTS: usize = 8;
/// Worker threads, beside one monitor listing `Host::domains()` (which
/// upgrades every domain for a moment: a last handle may drop there).
const WORKERS: usize = 4;
/// How long the end waits for stragglers (timer-thread completions).
const SETTLE: Duration = Duration::from_secs(5);
/// How long an unload with nothing holding it may take to complete: its
/// unloading hook is bounded by `unload_hook_timeout` (100 ms).
const NOTHING_HOLDS_IT: Duration = Duration::from_secs(2);

fn policy() -> Policy {
    Policy {
        deadline: Some(Duration::from_millis(100)),
        unload_timeout: Duration::from_millis(300),
        unload_grace: Duration::from_millis(50),
        unload_hook_timeout: Duration::from_millis(100),
        ..Policy::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What happened, for the failure messages.
#[derive(Debug, Default)]
struct Stats {
    calls_ok: AtomicU64,
    calls_refused: AtomicU64,
    timers_armed: AtomicU64,
    tickets_blocked: AtomicU64,
    forced: AtomicU64,
    abandoned: AtomicU64,
    dropped: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, SeqCst);
}

struct Stress {
    seed: u64,
    run_for: Duration,
    host: Host,
    module: Module,
    slots: Mutex<Vec<Option<Domain>>>,
    /// Every domain created, in order.
    created: Mutex<Vec<u64>>,
    /// How many times each domain's `on_unloaded` ran.
    completed: Arc<Mutex<BTreeMap<u64, u32>>>,
    stop: AtomicBool,
    stats: Stats,
}

/// What a worker holds for a while, each with when it lets it go.
#[derive(Default)]
struct Held {
    refs: Vec<(Instant, DomainRef)>,
    views: Vec<(Instant, MemoryView)>,
    tickets: Vec<(Instant, UnloadTicket)>,
}

impl Held {
    fn expire(&mut self, now: Instant) {
        self.refs.retain(|(until, _)| *until > now);
        self.views.retain(|(until, _)| *until > now);
        self.tickets.retain(|(until, _)| *until > now);
    }
}

/// Stops the other workers if this one panics.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, SeqCst);
        }
    }
}

impl Stress {
    fn fail(&self, what: String) -> ! {
        let (seed, secs, stats) = (self.seed, self.run_for.as_secs(), &self.stats);
        panic!(
            "seed {seed}: {what}\n(replay: CUSTODY_STRESS_SEED={seed} CUSTODY_STRESS_SECS={secs}); stats: {stats:?}"
        )
    }

    fn rng(&self, worker: usize) -> Rng {
        Rng((self.seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// The domain in a random slot, if there is one.
    fn pick(&self, rng: &mut Rng) -> Option<Domain> {
        lock(&self.slots)[slot(rng)].clone()
    }

    /// `Some` unless the domain is no longer running (a race): any other
    /// error fails.
    fn running<T>(&self, what: &str, result: Result<T, RefError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(RefError::NotRunning(_)) => None,
            Err(e) => self.fail(format!("{what}: {e}")),
        }
    }

    /// `Some` unless the domain had already ended (a race).
    fn unless_ended<T>(&self, what: &str, result: Result<T, UnloadError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(UnloadError::NotRunning(_)) => None,
            Err(e) => self.fail(format!("{what}: {e}")),
        }
    }

    fn run(&self) {
        thread::scope(|scope| {
            let workers: Vec<_> = (0..=WORKERS)
                .map(|w| {
                    thread::Builder::new()
                        .name(format!("stress-{w}"))
                        .spawn_scoped(scope, move || self.worker(w))
                        .unwrap()
                })
                .collect();
            for worker in workers {
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic); // the others stopped (StopOnPanic)
                }
            }
        });
    }

    fn worker(&self, w: usize) {
        let _stop = StopOnPanic(&self.stop);
        let mut rng = self.rng(w);
        let mut held = Held::default();
        let end = Instant::now() + self.run_for;
        while !self.stop.load(SeqCst) && Instant::now() < end {
            if w == WORKERS {
                // The monitor: lists every domain, as a dashboard would.
                let _ = self.host.domains();
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            held.expire(Instant::now());
            self.step(&mut rng, &mut held);
        }
        drop(held); // what it still holds goes here, perhaps completing unloads
    }

    /// One operation, at random: creating and calling most, ending least.
    fn step(&self, rng: &mut Rng, held: &mut Held) {
        let ms = |rng: &mut Rng, max: u64| Duration::from_millis(rng.next_u64() % max);
        match rng.next_u64() % 22 {
            0..=2 => self.create(rng),
            3..=5 => {
                let Some(domain) = self.pick(rng) else { return };
                let export = rng.pick(EXPORTS);
                self.check_call("a call", export, domain.call(export, &[]));
            }
            6 | 7 => {
                let Some(domain) = self.pick(rng) else { return };
                let args = self.arm_args(rng);
                self.check_call("arming a timer", "arm", domain.call("arm", &args));
            }
            8 | 9 => {
                let Some(domain) = self.pick(rng) else { return };
                if let Some(r) = self.running("strong_ref", domain.strong_ref("stress ref")) {
                    held.refs.push((Instant::now() + ms(rng, 50), r));
                }
            }
            10 | 11 => {
                let i = rng.next_u64() as usize % held.refs.len().max(1);
                let Some((_, r)) = held.refs.get(i) else {
                    return;
                };
                if one_in(rng, 4) {
                    let args = self.arm_args(rng);
                    self.check_call("arming through a ref", "arm", r.call("arm", &args));
                } else {
                    let export = rng.pick(EXPORTS);
                    self.check_call("a call through a ref", export, r.call(export, &[]));
                }
            }
            12 => {
                let Some(domain) = self.pick(rng) else { return };
                if let Some(view) = self.running("memory_view", domain.memory_view("stress view")) {
                    self.check_read(&view);
                    if one_in(rng, 2) {
                        held.views.push((Instant::now() + ms(rng, 50), view));
                    }
                }
            }
            13 => {
                if let Some((_, view)) = held.views.first() {
                    self.check_read(view);
                }
            }
            14 => {
                let Some(domain) = self.pick(rng) else { return };
                let weak = domain.downgrade();
                drop(domain);
                if let Some(domain) = weak.upgrade() {
                    self.check_call("an upgrade", "ticks", domain.call("ticks", &[]));
                }
            }
            15 => self.roots(rng),
            16 | 17 => {
                let Some(domain) = self.pick(rng) else { return };
                self.begin(&domain, rng, held);
            }
            18 => {
                if let Some((_, ticket)) = held.tickets.pop() {
                    let report = ticket.force();
                    self.check_report(ticket.domain(), &report, "ticket.force()");
                }
            }
            op @ (19 | 20) => {
                let Some(domain) = self.pick(rng) else { return };
                let (what, result) = match op {
                    19 => ("unload()", domain.unload()),
                    _ => ("force_unload()", domain.force_unload()),
                };
                if let Some(report) = self.unless_ended(what, result) {
                    self.check_report(domain.id(), &report, what);
                    self.check_ended(&domain, what);
                }
            }
            _ => {
                let taken = lock(&self.slots)[slot(rng)].take();
                if taken.is_some() {
                    bump(&self.stats.dropped);
                }
                // Without unload: if nothing else holds it, it unloads here.
                drop(taken);
            }
        }
    }

    /// Creates a domain and puts it in a random slot that is empty or holds
    /// one that has ended.
    fn create(&self, rng: &mut Rng) {
        let i = slot(rng);
        let free = |slot: &Option<Domain>| slot.as_ref().is_none_or(|d| d.state().is_final());
        if !free(&lock(&self.slots)[i]) {
            return;
        }
        let domain = self
            .host
            .create_domain(DomainConfig::new())
            .unwrap_or_else(|e| self.fail(format!("create_domain: {e}")));
        let id = domain.id();
        lock(&self.created).push(id);
        let completed = Arc::clone(&self.completed);
        domain.on_unloaded(move |_| *lock(&completed).entry(id).or_default() += 1);
        domain
            .load("main", &self.module)
            .unwrap_or_else(|e| self.fail(format!("load into domain {id}: {e}")));
        let mut slots = lock(&self.slots);
        let replaced = if free(&slots[i]) {
            slots[i].replace(domain)
        } else {
            Some(domain) // taken meanwhile: this one is dropped (an implicit unload)
        };
        drop(slots);
        drop(replaced);
    }

    fn arm_args(&self, rng: &mut Rng) -> [Val; 3] {
        let delay = rng.pick(&[0, 1, 5, 20]);
        let period = rng.pick(&[0, 2, 5, 10, 20]);
        let mode = rng.pick(&[0, 1, 1, 2, 3]);
        [Val::I32(delay), Val::I32(period), Val::I32(mode)]
    }

    /// A call's outcome: what the export returns, or an error a race
    /// explains (the domain unloading or unloaded, a deadline, a force).
    fn check_call(&self, what: &str, export: &str, result: Result<Vec<Val>, CallError>) {
        match result {
            Ok(values) => {
                bump(&self.stats.calls_ok);
                let v = values.first().map(Val::unwrap_i32);
                let fine = match export {
                    "pipe" => matches!(v, Some(0 | 1)),
                    "nap" => v == Some(0),
                    "ticks" => v.is_some_and(|t| t >= 0),
                    "arm" => {
                        if v == Some(0) {
                            bump(&self.stats.timers_armed);
                        }
                        // E_DENIED: a timer is not armed while unloading.
                        matches!(v, Some(0 | 1)) || v == Some(AbiError::Denied.code())
                    }
                    _ => false, // spin never returns
                };
                if !fine {
                    self.fail(format!("{what}: {export} returned {values:?}"));
                }
            }
            Err(
                CallError::NotRunning(_) | CallError::Aborted { .. } | CallError::Escalated { .. },
            ) => bump(&self.stats.calls_refused),
            Err(e) => self.fail(format!("{what}: {export}: unexpected error: {e}")),
        }
    }

    fn check_read(&self, view: &MemoryView) {
        // None once the domain is gone; else the tick counter's 4 bytes.
        let read = view.read(0, 4);
        if read.as_ref().is_some_and(|bytes| bytes.len() != 4) {
            self.fail(format!("a view read 4 bytes and got {read:?}"));
        }
    }

    fn roots(&self, rng: &mut Rng) {
        let Some(domain) = self.pick(rng) else { return };
        for root in domain.roots() {
            let label = root.label.as_str();
            let known = match root.kind {
                RootKind::Call => EXPORTS.contains(&label) || label == "arm" || label == "tick",
                RootKind::Ref => label == "stress ref",
                RootKind::MemoryView => label == "stress view",
                RootKind::Timer => label == "tick",
                _ => false,
            };
            if !known {
                self.fail(format!("a root nobody made: {}", root.describe()));
            }
        }
        let _ = domain.info();
    }

    /// `begin_unload` and a short wait. An unload that nothing holds (no
    /// root listed, none counted) must complete once its unloading event has
    /// run: that is checked here.
    fn begin(&self, domain: &Domain, rng: &mut Rng, held: &mut Held) {
        let Some(ticket) = self.unless_ended("begin_unload", domain.begin_unload()) else {
            return;
        };
        let wait = Duration::from_millis(rng.next_u64() % 30);
        match ticket.wait(wait) {
            Ok(report) => self.check_report(domain.id(), &report, "ticket.wait()"),
            Err(blocked) => {
                bump(&self.stats.tickets_blocked);
                if blocked.roots.is_empty() && domain.info().roots == 0 {
                    self.nothing_holds_it(domain, &ticket);
                }
            }
        }
        if ticket.is_complete() && ticket.wait(Duration::ZERO).is_err() {
            self.fail(format!("domain {}: complete, and no report", domain.id()));
        }
        if one_in(rng, 2) {
            let until = Instant::now() + Duration::from_millis(rng.next_u64() % 50);
            held.tickets.push((until, ticket));
        }
    }

    fn nothing_holds_it(&self, domain: &Domain, ticket: &UnloadTicket) {
        // Out of its slot meanwhile, so that no other worker's unload or
        // force completes it for the event that should have.
        let mut slots = lock(&self.slots);
        let slot = slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|d| d.id() == domain.id()));
        let _parked = slot.and_then(Option::take);
        drop(slots);
        if let Err(blocked) = ticket.wait(NOTHING_HOLDS_IT) {
            let info = domain.info();
            if blocked.roots.is_empty() && info.roots == 0 && !info.forced {
                self.fail(format!(
                    "CHECK 'an unload nothing holds completes': begin_unload, then {NOTHING_HOLDS_IT:?} with no root listed or counted, and no completion: {info:?}"
                ));
            }
        }
    }

    fn check_report(&self, id: u64, report: &UnloadReport, what: &str) {
        if report.domain != id || !report.failed.is_empty() {
            self.fail(format!("{what} of domain {id}: {report:?}"));
        }
        if let Some(forced) = &report.forced {
            bump(&self.stats.forced);
            if forced.abandoned.is_some() {
                bump(&self.stats.abandoned);
            }
        }
    }

    /// After `unload()` or `force_unload()` returned its report.
    fn check_ended(&self, domain: &Domain, what: &str) {
        let state = domain.state();
        if state != DomainState::Unloaded || domain.downgrade().upgrade().is_some() {
            self.fail(format!(
                "{what} of domain {} returned: {state:?}",
                domain.id()
            ));
        }
    }

    /// The end: every remaining domain unloaded, every one created
    /// completed once, the registry empty, the fds back.
    fn finish(&self, baseline: FdBaseline) {
        let remaining: Vec<Domain> = lock(&self.slots).drain(..).flatten().collect();
        for domain in remaining {
            if let Some(report) = self.unless_ended("the final unload()", domain.unload()) {
                self.check_report(domain.id(), &report, "the final unload()");
            }
        }
        let settled = Instant::now();
        // (domain, how many times on_unloaded ran) unless once.
        let missing = || -> Vec<(u64, u32)> {
            let completed = lock(&self.completed);
            let runs = |id| completed.get(id).copied().unwrap_or(0);
            let created = lock(&self.created);
            let wrong = created.iter().filter(|id| runs(id) != 1);
            wrong.map(|id| (*id, runs(id))).collect()
        };
        while (!missing().is_empty() || self.host.domain_count() != 0 || open_fds() != baseline.0)
            && settled.elapsed() < SETTLE
        {
            thread::sleep(Duration::from_millis(10));
        }
        let created = lock(&self.created).len();
        if created < WORKERS {
            self.fail(format!("only {created} domains were created"));
        }
        let missing = missing();
        if !missing.is_empty() {
            self.fail(format!(
                "CHECK 'every domain completes once': {} of {created} domains did not complete exactly once ({SETTLE:?} after the end): (domain, on_unloaded runs) {missing:?}; registered: {:?}",
                missing.len(),
                self.host.domains()
            ));
        }
        if self.host.domain_count() != 0 {
            self.fail(format!(
                "CHECK 'the registry empties': still registered: {:?}",
                self.host.domains()
            ));
        }
        baseline.assert_back(&format!(
            "seed {}: CHECK 'fds back at baseline' after {created} domains",
            self.seed
        ));
    }
}

fn slot(rng: &mut Rng) -> usize {
    (rng.next_u64() % SLOTS as u64) as usize
}

fn one_in(rng: &mut Rng, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The run's duration and seed.
fn settings() -> (Duration, u64) {
    let clock = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let secs = env("CUSTODY_STRESS_SECS").unwrap_or(3);
    (
        Duration::from_secs(secs),
        env("CUSTODY_STRESS_SEED").unwrap_or_else(clock),
    )
}

#[test]
fn domains_created_called_rooted_and_unloaded_from_many_threads_all_complete() {
    let _serial = serial();
    let (run_for, seed) = settings();
    let host = host_with(policy()).0;
    // Warmed first: wasmtime keeps a memfd per module while it lives.
    let module = warmed_module(&host, GUEST);
    let baseline = FdBaseline::now();
    let stress = Arc::new(Stress {
        seed,
        run_for,
        host,
        module,
        slots: Mutex::new(vec![None; SLOTS]),
        created: Mutex::default(),
        completed: Arc::default(),
        stop: AtomicBool::new(false),
        stats: Stats::default(),
    });
    let (done, finished) = mpsc::channel();
    let runner = {
        let stress = Arc::clone(&stress);
        thread::spawn(move || {
            stress.run();
            stress.finish(baseline);
            let _ = done.send(());
        })
    };
    // The watchdog: a hang is a failure, named with its seed.
    let limit = run_for + Duration::from_secs(30);
    match finished.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(RecvTimeoutError::Timeout) => panic!(
            "seed {seed}: CHECK 'no hang': the stress run did not end within {limit:?} (replay: CUSTODY_STRESS_SEED={seed} CUSTODY_STRESS_SECS={}); stats: {:?}; registered: {:?}",
            run_for.as_secs(),
            stress.stats,
            stress.host.domains()
        ),
    }
}
