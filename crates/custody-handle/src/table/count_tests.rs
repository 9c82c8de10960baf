//! Unit tests of what the table counts: its counters (the numbers a
//! ledger is built from) and its live handles by resource type.

use std::sync::atomic::Ordering::SeqCst;

use super::*;
use crate::SafeHandle;
use crate::testing::{Counted, Inert};

fn failing() -> Counted {
    Counted::new().failing()
}

#[test]
fn a_new_table_counts_nothing() {
    assert_eq!(HandleTable::new().counters(), TableCounters::default());
}

#[test]
fn inserted_counts_insert_and_insert_handle_but_not_refused_values() {
    let table = HandleTable::with_limit(3);
    table.insert(Counted::new()).unwrap();
    let shared = SafeHandle::new(Counted::new());
    table.insert_handle(&shared).unwrap();
    table.insert_handle(&shared).unwrap();
    assert_eq!(table.counters().inserted, 3);
    // Refused by the quota, and refused because closed: not inserted.
    assert!(table.insert(Counted::new()).is_err());
    let closed = SafeHandle::new(Counted::new());
    closed.dispose().unwrap();
    assert!(HandleTable::new().insert_handle(&closed).is_err());
    assert!(table.insert_handle(&closed).is_err());
    assert_eq!(
        table.counters(),
        TableCounters {
            inserted: 3,
            ..TableCounters::default()
        }
    );
}

#[test]
fn closed_counts_closes_released_now_and_deferred_but_not_stale_ones() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    let now = table.insert(Counted::new()).unwrap();
    let later = table.insert(Counted::new()).unwrap();
    let guard = table.get::<Counted>(later).unwrap();
    assert_eq!(table.close(now).unwrap(), CloseOutcome::Released);
    assert_eq!(table.close(later).unwrap(), CloseOutcome::Deferred);
    assert!(matches!(table.close(now), Err(HandleError::Stale(_))));
    assert!(matches!(
        table.close(HandleId::NULL),
        Err(HandleError::Null)
    ));
    drop(guard);
    assert_eq!(
        table.counters(),
        TableCounters {
            inserted: 2,
            closed: 2,
            drained: 0,
            release_failures: 0,
        }
    );
}

#[test]
fn drained_counts_every_handle_the_drain_removed() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    for _ in 0..3 {
        table.insert(Counted::new()).unwrap();
    }
    let closed = table.insert(Counted::new()).unwrap();
    table.close(closed).unwrap();
    table.insert(failing()).unwrap();
    let pinned = table.insert(Counted::new()).unwrap();
    let guard = table.get::<Counted>(pinned).unwrap();
    let report = table.drain();
    assert_eq!(
        (report.released, report.failed.len(), report.deferred),
        (3, 1, 1)
    );
    drop(guard);
    assert_eq!(
        table.counters(),
        TableCounters {
            inserted: 6,
            closed: 1,
            drained: 5,
            release_failures: 1,
        }
    );
    // A second drain finds nothing.
    table.drain();
    assert_eq!(table.counters().drained, 5);
}

#[test]
fn release_failures_count_a_failure_in_close() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    let id = table.insert(failing()).unwrap();
    assert!(matches!(
        table.close(id),
        Err(HandleError::ReleaseFailed(_))
    ));
    let counters = table.counters();
    assert_eq!((counters.closed, counters.release_failures), (1, 1));
}

#[test]
fn release_failures_count_a_failure_deferred_to_the_last_guard() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    let (probe, releases) = Counted::with_counter();
    let id = table.insert(probe.failing()).unwrap();
    let first = table.get::<Counted>(id).unwrap();
    let second = table.get::<Counted>(id).unwrap();
    assert_eq!(table.close(id).unwrap(), CloseOutcome::Deferred);
    assert_eq!(table.counters().release_failures, 0, "nothing released yet");
    drop(first);
    assert_eq!(
        table.counters().release_failures,
        0,
        "one guard still pins it"
    );
    drop(second);
    assert_eq!(releases.load(SeqCst), 1);
    assert_eq!(
        table.counters(),
        TableCounters {
            inserted: 1,
            closed: 1,
            drained: 0,
            release_failures: 1,
        }
    );
}

#[test]
fn release_failures_count_a_refused_value_whose_release_failed() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::with_limit(0);
    assert!(matches!(
        table.insert(failing()),
        Err(HandleError::QuotaExceeded { limit: 0 })
    ));
    assert_eq!(
        table.counters(),
        TableCounters {
            release_failures: 1,
            ..TableCounters::default()
        }
    );
}

#[test]
fn the_counters_balance_under_concurrent_use() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    std::thread::scope(|s| {
        for t in 0..4 {
            let table = &table;
            s.spawn(move || {
                for i in 0..500 {
                    let id = table
                        .insert(if (i + t) % 7 == 0 {
                            Counted::new().failing()
                        } else {
                            Counted::new()
                        })
                        .unwrap();
                    let guard = table.get::<Counted>(id).unwrap();
                    if i % 2 == 0 {
                        let _ = table.close(id);
                    }
                    drop(guard);
                }
            });
        }
    });
    let report = table.drain();
    let c = table.counters();
    assert_eq!(c.inserted, 2000);
    assert_eq!(c.closed, 1000);
    assert_eq!(c.drained, 1000);
    assert_eq!(report.released + report.failed.len(), 1000);
    // Every (t, i) pair with (i + t) % 7 == 0 failed its release once.
    let failing = (0..4)
        .flat_map(|t| (0..500).map(move |i| (i + t) % 7 == 0))
        .filter(|&f| f)
        .count() as u64;
    assert_eq!(c.release_failures, failing);
    assert!(table.is_empty());
}

#[test]
fn count_by_kind_follows_inserts_deferred_closes_the_quota_and_drain() {
    crate::diagnostics::capture_for_tests();
    let (probe, other) = (
        std::any::type_name::<Counted>(),
        std::any::type_name::<Inert>(),
    );
    let sorted = |mut v: Vec<(&'static str, usize)>| {
        v.sort_unstable();
        v
    };
    let table = HandleTable::with_limit(4);
    assert!(table.count_by_kind().is_empty());
    let first = table.insert(Counted::new()).unwrap();
    table.insert(Counted::new()).unwrap();
    table.insert(Inert).unwrap();
    table.insert(Inert).unwrap();
    assert!(table.insert(Inert).is_err(), "past the quota");
    assert_eq!(table.count_by_kind(), sorted(vec![(probe, 2), (other, 2)]));
    // A close deferred to a guard counts until the guard drops, as `len`.
    let guard = table.get::<Counted>(first).unwrap();
    assert_eq!(table.close(first).unwrap(), CloseOutcome::Deferred);
    assert_eq!(table.count_by_kind(), sorted(vec![(probe, 2), (other, 2)]));
    drop(guard);
    assert_eq!(table.count_by_kind(), sorted(vec![(probe, 1), (other, 2)]));
    let total: usize = table.count_by_kind().iter().map(|(_, n)| n).sum();
    assert_eq!(total, table.len());
    table.drain();
    assert!(table.count_by_kind().is_empty());
}

#[test]
fn count_by_kind_is_consistent_under_concurrent_use() {
    let table = HandleTable::with_limit(64);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (table, stop) = (&table, &stop);
        let counter = s.spawn(move || {
            let mut snapshots = 0;
            while !stop.load(SeqCst) {
                let counts = table.count_by_kind();
                let total: usize = counts.iter().map(|(_, n)| n).sum();
                assert!(total <= 64, "{counts:?}");
                assert!(counts.iter().all(|&(_, n)| n > 0), "{counts:?}");
                snapshots += 1;
            }
            snapshots
        });
        let workers: Vec<_> = (0..3)
            .map(|t| {
                s.spawn(move || {
                    for i in 0..2000 {
                        let id = if (i + t) % 2 == 0 {
                            table.insert(Counted::new())
                        } else {
                            table.insert(Inert)
                        };
                        table.close(id.unwrap()).unwrap();
                    }
                    // Each leaves one of each behind.
                    table.insert(Counted::new()).unwrap();
                    table.insert(Inert).unwrap();
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        stop.store(true, SeqCst);
        assert!(counter.join().unwrap() > 0);
    });
    let (probe, other) = (
        std::any::type_name::<Counted>(),
        std::any::type_name::<Inert>(),
    );
    let mut expected = vec![(probe, 3), (other, 3)];
    expected.sort_unstable();
    assert_eq!(table.count_by_kind(), expected);
}

#[test]
fn insert_all_inserts_every_value_or_none() {
    let table = HandleTable::with_limit(3);
    let held = table.insert(Counted::new()).unwrap();
    let (a, a_releases) = Counted::with_counter();
    let (b, b_releases) = Counted::with_counter();
    assert!(matches!(
        table.insert_all([a, b, Counted::new()]),
        Err(HandleError::QuotaExceeded { limit: 3 })
    ));
    assert_eq!(
        (a_releases.load(SeqCst), b_releases.load(SeqCst)),
        (1, 1),
        "every refused value is released"
    );
    assert_eq!(table.len(), 1, "no slot taken");
    assert_eq!(table.counters().inserted, 1, "nothing counted");
    assert_eq!(table.count_by_kind().len(), 1);
    let ids = table.insert_all([Counted::new(), Counted::new()]).unwrap();
    assert_eq!(table.len(), 3);
    assert_eq!(table.counters().inserted, 3);
    assert_ne!(ids[0], ids[1]);
    for id in ids.into_iter().chain([held]) {
        assert!(table.get::<Counted>(id).is_ok());
    }
    assert!(matches!(
        table.insert_all([Counted::new()]),
        Err(HandleError::QuotaExceeded { .. })
    ));
}
