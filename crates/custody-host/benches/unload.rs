//! What unloadability costs (SPEC D1, D2), measured in one run:
//!
//! - **Root tracking**: `Domain::call` of an empty export (the call is a
//!   root: its count in the state word and its description) vs the same
//!   call with no root tracking (`call_untracked`, the call path before
//!   roots; only with the `bench-internals` feature), each timed in blocks
//!   alternating with blocks of the other, so both see the same load.
//! - **Completion**: from the drop of the last root (a `DomainRef`) of a
//!   cooperative unload to its completion seen by `on_unloaded`.
//! - **`roots()` on a spinning guest**: how long until it returns the
//!   guest's live stack (sampled at its next epoch check).
//!
//! Run: `cargo bench -p custody-host --features bench-internals --bench unload`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use custody_host::{Domain, DomainConfig, Host, Policy, RootKind};
use custody_testkit::paired;

const GUEST: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "nothing"))
  (func $spin_here (loop $l (br $l)))
  (func (export "spin") (call $spin_here)))"#;

fn domain(host: &Host) -> Domain {
    let module = host.compile(GUEST.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    domain
}

/// Calls per block: enough that reading the clock is lost in them, few
/// enough that the two variants alternate thousands of times a second.
const BLOCK: u64 = 256;

fn root_tracking(c: &mut Criterion) {
    let host = Host::new(Policy::default()).unwrap();
    let domain = domain(&host);
    let untracked = || {
        black_box(domain.call_untracked("nothing", &[]).unwrap());
    };
    let tracked = || {
        black_box(domain.call("nothing", &[]).unwrap());
    };
    let mut group = c.benchmark_group("call of an empty export");
    group.bench_function("baseline: no root tracking", |b| {
        b.iter_custom(|iters| paired(iters, BLOCK, untracked, tracked))
    });
    group.bench_function("Domain::call (a root)", |b| {
        b.iter_custom(|iters| paired(iters, BLOCK, tracked, untracked))
    });
    group.finish();
}

fn completion(c: &mut Criterion) {
    let host = Host::new(Policy::default()).unwrap();
    let mut group = c.benchmark_group("unload");
    group.bench_function("last root dropped -> on_unloaded", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let domain = domain(&host);
                let r = domain.strong_ref("held").unwrap();
                let seen = Arc::new(Mutex::new(None));
                let sink = Arc::clone(&seen);
                domain.on_unloaded(move |_| *sink.lock().unwrap() = Some(Instant::now()));
                let ticket = domain.begin_unload().unwrap();
                let dropped = Instant::now();
                drop(r);
                let completed = seen.lock().unwrap().expect("completed by the drop");
                total += completed - dropped;
                assert!(ticket.is_complete());
            }
            total
        })
    });
    group.finish();
}

fn live_stack(c: &mut Criterion) {
    let host = Host::new(Policy::default()).unwrap();
    let domain = domain(&host);
    let spinning = Arc::new(AtomicBool::new(true));
    let runner = {
        let (domain, spinning) = (domain.clone(), Arc::clone(&spinning));
        std::thread::spawn(move || {
            while spinning.load(Ordering::Relaxed) {
                let _ = domain.call("spin", &[]);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut group = c.benchmark_group("roots");
    group.sample_size(20);
    group.bench_function("roots() of a spinning guest, with its live stack", |b| {
        b.iter(|| {
            let roots = domain.roots();
            let call = roots.iter().find(|r| r.kind == RootKind::Call);
            let stack = call.and_then(|r| r.stack.as_deref()).unwrap_or_default();
            assert!(stack.contains("spin_here"), "{stack}");
            black_box(roots)
        })
    });
    group.finish();
    spinning.store(false, Ordering::Relaxed);
    domain.abort();
    let _ = domain.force_unload();
    runner.join().unwrap();
}

criterion_group!(benches, root_tracking, completion, live_stack);
criterion_main!(benches);
