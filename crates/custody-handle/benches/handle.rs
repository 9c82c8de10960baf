//! Hot paths beside their baselines, measured in the same run:
//! - `acquire+drop` and `dangerous_add_ref+dangerous_release` vs `Arc`
//!   clone+drop, and vs `Weak` upgrade+drop: std's fallible increment (a
//!   compare-and-swap, as add-ref must be, since it fails on a closed handle);
//! - `new+dispose` vs `Box` new+drop (and `Arc` new+drop);
//! - table `get+drop` vs `Arc` clone+drop;
//! - two threads contending on one handle vs two threads on one `Arc`;
//! - two threads looking up *different* ids of one table: neighbouring slots
//!   (0 and 1) vs slots far apart (0 and 64). Slots are padded to two
//!   cache lines, so the neighbours' words share no line and the two rows
//!   should match;
//! - `acquire+drop` on a traced handle (history on), to show what history
//!   costs when on; the untraced rows above are the history-off hot path.
//!
//! Every row observes the same thing through `black_box`: a reference to the
//! resource (not the guard itself, which would force a multi-word guard
//! through the stack and measure store forwarding instead of the protocol).
//!
//! Run: `cargo bench -p custody-handle --bench handle`

use std::hint::black_box;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use custody_handle::history::{self, Mode};
use custody_handle::{HandleId, HandleTable, ReleaseHandle, SafeHandle};

/// A resource whose release costs nothing, so only custody is measured.
struct Noop(u64);

impl ReleaseHandle for Noop {
    fn is_invalid(&self) -> bool {
        false
    }
    fn release_handle(&self) -> io::Result<()> {
        black_box(self.0);
        Ok(())
    }
    fn raw_value(&self) -> u64 {
        self.0
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("refcount");
    let arc = Arc::new(Noop(1));
    g.bench_function("baseline: Arc clone+drop", |b| {
        b.iter(|| {
            let a = Arc::clone(black_box(&arc));
            black_box(&*a);
        })
    });
    let weak = Arc::downgrade(&arc);
    g.bench_function("baseline: Weak upgrade+drop", |b| {
        b.iter(|| {
            let a = black_box(&weak).upgrade().unwrap();
            black_box(&*a);
        })
    });
    let handle = SafeHandle::new(Noop(1));
    g.bench_function("SafeHandle acquire+drop", |b| {
        b.iter(|| {
            let guard = black_box(&handle).acquire().unwrap();
            black_box(&*guard);
        })
    });
    g.bench_function("SafeHandle dangerous_add_ref+dangerous_release", |b| {
        b.iter(|| {
            let h = black_box(&handle);
            h.dangerous_add_ref().unwrap();
            h.dangerous_release().unwrap();
        })
    });
    let table = HandleTable::new();
    for i in 0..64 {
        table.insert(Noop(i)).unwrap();
    }
    let id = table.insert(Noop(99)).unwrap();
    g.bench_function("HandleTable get+drop", |b| {
        b.iter(|| {
            let guard = black_box(&table).get::<Noop>(black_box(id)).unwrap();
            black_box(&*guard);
        })
    });
    history::set_mode(Mode::On);
    let traced = SafeHandle::new(Noop(2));
    history::set_mode(Mode::Off);
    g.bench_function("SafeHandle acquire+drop, history on", |b| {
        b.iter(|| {
            let guard = black_box(&traced).acquire().unwrap();
            black_box(&*guard);
        })
    });
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("lifecycle");
    g.bench_function("baseline: Box new+drop", |b| {
        b.iter(|| drop(black_box(Box::new(Noop(black_box(3))))))
    });
    g.bench_function("baseline: Arc new+drop", |b| {
        b.iter(|| drop(black_box(Arc::new(Noop(black_box(3))))))
    });
    g.bench_function("SafeHandle new+dispose", |b| {
        b.iter(|| {
            let h = SafeHandle::new(Noop(black_box(3)));
            h.dispose().unwrap();
            drop(black_box(h));
        })
    });
    let table = HandleTable::new();
    g.bench_function("HandleTable insert+close", |b| {
        b.iter(|| {
            let id = table.insert(Noop(black_box(4))).unwrap();
            table.close(black_box(id)).unwrap();
        })
    });
    g.finish();
}

/// Times `op` on this thread while another thread runs it on the same object.
fn contended<T: Sync>(shared: &T, op: impl Fn(&T) + Sync, iters: u64) -> Duration {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    op(shared);
                }
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            op(shared);
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("two threads, one object");
    let arc = Arc::new(Noop(5));
    g.bench_function("baseline: Arc clone+drop", |b| {
        b.iter_custom(|iters| {
            contended(
                &arc,
                |a| {
                    let a = Arc::clone(a);
                    black_box(&*a);
                },
                iters,
            )
        })
    });
    let handle = SafeHandle::new(Noop(5));
    g.bench_function("SafeHandle acquire+drop", |b| {
        b.iter_custom(|iters| {
            contended(
                &handle,
                |h| {
                    black_box(&*h.acquire().unwrap());
                },
                iters,
            )
        })
    });
    let table = HandleTable::new();
    let id = table.insert(Noop(6)).unwrap();
    g.bench_function("HandleTable get+drop", |b| {
        b.iter_custom(|iters| {
            contended(
                &table,
                |t| {
                    black_box(&*t.get::<Noop>(id).unwrap());
                },
                iters,
            )
        })
    });
    g.finish();
}

/// Times `get+drop` of `mine` on this thread while another thread does the
/// same on `theirs`, in the same table.
fn neighbours(table: &HandleTable, mine: HandleId, theirs: HandleId, iters: u64) -> Duration {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    black_box(&*table.get::<Noop>(black_box(theirs)).unwrap());
                }
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            black_box(&*table.get::<Noop>(black_box(mine)).unwrap());
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

fn neighbouring_ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("neighbour ids, two threads");
    let table = HandleTable::new();
    let ids: Vec<HandleId> = (0..65).map(|i| table.insert(Noop(i)).unwrap()).collect();
    assert_eq!((ids[0].slot(), ids[1].slot(), ids[64].slot()), (0, 1, 64));
    g.bench_function("HandleTable get+drop, slots 0 and 1", |b| {
        b.iter_custom(|iters| neighbours(&table, ids[0], ids[1], iters))
    });
    g.bench_function("HandleTable get+drop, slots 0 and 64", |b| {
        b.iter_custom(|iters| neighbours(&table, ids[0], ids[64], iters))
    });
    g.finish();
}

/// What firing a diagnostic costs with every sink off (stderr off, no
/// subscriber, no `tracing` subscriber): building the report dominates; the
/// `tracing` event beside the sinks must add nothing measurable.
fn diagnostics_fire(c: &mut Criterion) {
    let mut g = c.benchmark_group("diagnostics");
    diagnostics::set_stderr(false);
    g.bench_function("fire staleHandleUse, every sink off", |b| {
        b.iter(|| {
            diagnostics::fire(Assistant::StaleHandleUse, || {
                Diagnostic::new(Assistant::StaleHandleUse, black_box("handle id 1 was used"))
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    uncontended,
    lifecycle,
    contention,
    neighbouring_ids,
    diagnostics_fire
);
criterion_main!(benches);
