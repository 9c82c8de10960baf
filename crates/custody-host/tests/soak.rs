//! The chaos soak: many domains, threads and calls mixing infinite loops,
//! memory exhaustion, stack overflow, traps, sleeps, handle churn, forced
//! release failures, host aborts and unloads. At the end the process's fd
//! count is back to its baseline, every counted handle was released exactly
//! once, nothing panicked, and every abort and recycle was reported.
//!
//! CI runs it for a few seconds; a longer run:
//!
//! ```sh
//! CUSTODY_SOAK_SECS=600 cargo test --release -p custody-host --test soak -- --nocapture
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use custody_handle::diagnostics::{self, Assistant, Collector};
use custody_handle::testing::Counted;
use custody_host::{CallError, Domain, DomainConfig, Host, Policy, Val};
use custody_testkit::*;

const CHAOS: &str = r#"
(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "custody" "critical_enter" (func $enter (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "d/f")
  (func $spin (loop $l (br $l)))
  (func (export "spin") (call $spin))
  (func (export "spin_critical") (drop (call $enter)) (call $spin))
  (func (export "trap") unreachable)
  (func (export "trap_critical") (drop (call $enter)) unreachable)
  (func (export "leave_open") (drop (call $enter)))
  (func (export "exhaust_memory")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))))
  (func $recurse (param i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "recurse") (result i32) (call $recurse (i32.const 0)))
  (func (export "sleep") (param i32) (result i32) (call $sleep (local.get 0)))
  ;; Opens n pipes and a file, closes every other pipe: handle churn that
  ;; leaves some for the unload or recycle.
  (func (export "churn") (param $n i32) (result i32)
    (local $i i32)
    (drop (call $open (i32.const 1024) (i32.const 3) (i32.const 1) (i32.const 8)))
    (loop $l
      (if (i32.eqz (call $pipe (i32.const 0) (i32.const 4)))
        (then
          (if (i32.and (local.get $i) (i32.const 1))
            (then
              (drop (call $close (i32.load (i32.const 0))))
              (drop (call $close (i32.load (i32.const 4))))))))
      (local.tee $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $n))))
    (local.get $i))
)
"#;

/// The raw value of the handles the soak inserts, to find their diagnostics.
const TOKEN_RAW: u64 = 0x70C3;

#[derive(Default)]
struct Tally {
    calls: AtomicUsize,
    failed: AtomicUsize,
    escalated: AtomicUsize,
    orphaned: AtomicUsize,
    not_running: AtomicUsize,
    unloads: AtomicUsize,
    aborts: AtomicUsize,
}

#[test]
fn chaos_soak() {
    let seconds: u64 = std::env::var("CUSTODY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    diagnostics::set_stderr(false);
    let collector = Collector::start();
    let dir = scratch("soak");
    std::fs::write(dir.join("f"), "x").unwrap();
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(30)),
        max_wait: Duration::from_millis(50),
        memory_limit: Some(2 << 20),
        handle_quota: 64,
        ..Policy::default()
    });
    let module = warmed_module(&host, CHAOS);
    let baseline = open_fds();
    let tokens: Mutex<Vec<(Arc<AtomicUsize>, bool)>> = Mutex::new(Vec::new());
    let tally = Tally::default();
    // Every other domain aborts at the memory cap; the rest fail the grow.
    let created = AtomicUsize::new(0);
    let new_domain = |host: &Host| {
        let mut policy = host.policy().clone();
        if created.fetch_add(1, SeqCst) % 2 == 1 {
            policy.on_memory_limit = custody_host::OnMemoryLimit::Abort;
        }
        let domain = host
            .create_domain(DomainConfig::new().preopen("d", &dir).policy(policy))
            .unwrap();
        domain.load("chaos", &module).unwrap();
        domain
    };
    let pool: Mutex<Vec<Domain>> = Mutex::new((0..6).map(|_| new_domain(&host)).collect());
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(seconds);

    thread::scope(|s| {
        for worker in 0..4u64 {
            let (host, pool, tally, tokens, stop) = (&host, &pool, &tally, &tokens, &stop);
            let new_domain = &new_domain;
            s.spawn(move || {
                let mut rng = Rng(0x5EED_0000 + worker);
                while !stop.load(SeqCst) {
                    let pick = rng.next_u64() as usize;
                    let domain = {
                        let pool = pool.lock().unwrap();
                        pool[pick % pool.len()].clone()
                    };
                    let (export, args): (&str, Vec<Val>) = match rng.next_u64() % 14 {
                        0 => ("spin", vec![]),
                        1 => ("spin_critical", vec![]),
                        2 => ("trap", vec![]),
                        3 => ("trap_critical", vec![]),
                        4 => ("leave_open", vec![]),
                        5 => ("exhaust_memory", vec![]),
                        6 => ("recurse", vec![]),
                        7 | 8 => ("sleep", vec![Val::I32((rng.next_u64() % 60) as i32)]),
                        9 => {
                            // Counted handles, some failing their release.
                            let releases = Arc::new(AtomicUsize::new(0));
                            let fail = rng.next_u64().is_multiple_of(4);
                            tokens.lock().unwrap().push((Arc::clone(&releases), fail));
                            // A host-inserted handle that counts its
                            // releases; some are made to fail theirs.
                            let token = Counted::counting_into(&releases).with_raw(TOKEN_RAW);
                            let token = if fail { token.failing() } else { token };
                            let _ = domain.insert_handle(token);
                            continue;
                        }
                        10 => {
                            // Replace the domain: unload it (its calls are aborted).
                            let fresh = new_domain(host);
                            let old = {
                                let mut pool = pool.lock().unwrap();
                                let slot = pick % pool.len();
                                std::mem::replace(&mut pool[slot], fresh)
                            };
                            if old.unload().is_ok() {
                                tally.unloads.fetch_add(1, SeqCst);
                            }
                            continue;
                        }
                        _ => ("churn", vec![Val::I32((rng.next_u64() % 12) as i32)]),
                    };
                    tally.calls.fetch_add(1, SeqCst);
                    match domain.call(export, &args) {
                        Ok(_) => {}
                        Err(CallError::Escalated { reason, .. }) => {
                            tally.escalated.fetch_add(1, SeqCst);
                            if reason.contains("orphaned") {
                                tally.orphaned.fetch_add(1, SeqCst);
                            } else {
                                tally.failed.fetch_add(1, SeqCst);
                            }
                        }
                        Err(CallError::Trap { .. } | CallError::Aborted { .. }) => {
                            tally.failed.fetch_add(1, SeqCst);
                        }
                        Err(CallError::NotRunning(_)) => {
                            tally.not_running.fetch_add(1, SeqCst);
                        }
                        Err(other) => panic!("{export}: unexpected {other}"),
                    }
                }
            });
        }
        // The host aborting calls at random.
        s.spawn(|| {
            let mut rng = Rng(0xAB07);
            while Instant::now() < deadline {
                thread::sleep(Duration::from_millis(rng.next_u64() % 10));
                let domain = {
                    let pool = pool.lock().unwrap();
                    pool[rng.next_u64() as usize % pool.len()].clone()
                };
                domain.abort();
                tally.aborts.fetch_add(1, SeqCst);
            }
            stop.store(true, SeqCst);
        });
    });

    let domains: Vec<Domain> = pool.lock().unwrap().drain(..).collect();
    for domain in &domains {
        domain.unload().unwrap();
    }
    drop(domains);
    let fds_after = open_fds();

    let tokens = tokens.into_inner().unwrap();
    let failing = tokens.iter().filter(|(_, fail)| *fail).count();
    for (releases, _) in &tokens {
        assert_eq!(
            releases.load(SeqCst),
            1,
            "every counted handle released exactly once"
        );
    }
    let seen = collector.take();
    let count = |a: Assistant| seen.iter().filter(|d| d.assistant == a).count();
    let token_failures = seen
        .iter()
        .filter(|d| d.assistant == Assistant::ReleaseHandleFailed && d.raw_value == Some(TOKEN_RAW))
        .count();
    let t = |c: &AtomicUsize| c.load(SeqCst);
    println!(
        "soak: {seconds} s, {} calls, {} failed, {} escalated ({} orphaned), {} not running, {} unloads, {} host aborts, {} counted handles ({failing} failing)",
        t(&tally.calls),
        t(&tally.failed),
        t(&tally.escalated),
        t(&tally.orphaned),
        t(&tally.not_running),
        t(&tally.unloads),
        t(&tally.aborts),
        tokens.len()
    );
    assert_eq!(fds_after, baseline, "every fd came back");
    assert_eq!(
        token_failures, failing,
        "every forced release failure was reported"
    );
    assert_eq!(
        count(Assistant::CallAborted),
        t(&tally.failed),
        "every abort and trap reported"
    );
    assert_eq!(
        count(Assistant::DomainRecycled),
        t(&tally.escalated),
        "every recycle reported"
    );
    assert!(t(&tally.calls) > 100, "the soak ran");
    assert!(t(&tally.escalated) > 0 && t(&tally.failed) > t(&tally.escalated));
    drop(module);
}
