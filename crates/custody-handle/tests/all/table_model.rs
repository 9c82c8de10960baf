//! The `HandleTable` against a simple model, under random operation
//! sequences (proptest), and under real threads racing lookups against
//! closes and reinserts.
//!
//! Both provoke stale-id uses by design, so they turn the `staleHandleUse`
//! assistant off, for the whole test binary (its own test lives in the unit
//! tests; no other test here counts it).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::thread;

use custody_handle::diagnostics::{self, Assistant};
use custody_handle::testing::{AnotherKind, Counted, serial};
use custody_handle::{CloseOutcome, HandleError, HandleId, HandleTable};
use proptest::prelude::*;

/// Two resource kinds, told apart by the table's typed lookups: `Counted`
/// (kind A) and `AnotherKind` (kind B).
fn insert(
    table: &HandleTable,
    b: bool,
    releases: &Arc<AtomicUsize>,
) -> Result<HandleId, HandleError> {
    if b {
        table.insert(AnotherKind(Counted::counting_into(releases)))
    } else {
        table.insert(Counted::counting_into(releases))
    }
}

fn quiet() {
    diagnostics::capture_for_tests();
    diagnostics::set_enabled(Assistant::StaleHandleUse, false);
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        b: bool,
    },
    Get {
        pick: usize,
        b: bool,
    },
    Close {
        pick: usize,
    },
    /// Pin, close (deferred), check stale, unpin (released).
    CloseWhilePinned {
        pick: usize,
    },
    Forged {
        raw: u32,
    },
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|b| Op::Insert { b }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, b)| Op::Get { pick, b }),
        3 => any::<usize>().prop_map(|pick| Op::Close { pick }),
        1 => any::<usize>().prop_map(|pick| Op::CloseWhilePinned { pick }),
        1 => any::<u32>().prop_map(|raw| Op::Forged { raw }),
        1 => Just(Op::Drain),
    ]
}

struct Issued {
    id: HandleId,
    b: bool,
    releases: Arc<AtomicUsize>,
    live: bool,
}

const LIMIT: usize = 6;

fn check_lookup(table: &HandleTable, entry: &Issued, b: bool) {
    let result = if b {
        table.get::<AnotherKind>(entry.id).map(|_| ())
    } else {
        table.get::<Counted>(entry.id).map(|_| ())
    };
    match (entry.live, entry.b == b, result) {
        (true, true, Ok(())) => {}
        (true, false, Err(HandleError::WrongKind { id, .. })) => assert_eq!(id, entry.id),
        (false, _, Err(HandleError::Stale(id))) => assert_eq!(id, entry.id),
        (live, same, other) => panic!("live={live} same_kind={same}: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_table_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..120)) {
        let _serial = serial();
        quiet();
        let table = HandleTable::with_limit(LIMIT);
        let mut issued: Vec<Issued> = Vec::new();
        let mut ids = HashSet::new();
        for op in ops {
            let live = issued.iter().filter(|e| e.live).count();
            match op {
                Op::Insert { b } => {
                    let releases = Arc::new(AtomicUsize::new(0));
                    let result = insert(&table, b, &releases);
                    match result {
                        Ok(id) => {
                            prop_assert!(live < LIMIT);
                            prop_assert!(!id.is_null());
                            prop_assert!(ids.insert(id), "id {} issued twice", id);
                            issued.push(Issued { id, b, releases, live: true });
                        }
                        Err(HandleError::QuotaExceeded { limit }) => {
                            prop_assert_eq!(limit, LIMIT);
                            prop_assert_eq!(live, LIMIT);
                            prop_assert_eq!(releases.load(SeqCst), 1, "refused value released");
                        }
                        Err(e) => prop_assert!(false, "insert: {e}"),
                    }
                }
                Op::Get { pick, b } if !issued.is_empty() => {
                    check_lookup(&table, &issued[pick % issued.len()], b);
                }
                Op::Close { pick } if !issued.is_empty() => {
                    let n = issued.len();
                    let entry = &mut issued[pick % n];
                    let result = table.close(entry.id);
                    if entry.live {
                        prop_assert_eq!(result.unwrap(), CloseOutcome::Released);
                        prop_assert_eq!(entry.releases.load(SeqCst), 1);
                        entry.live = false;
                    } else {
                        prop_assert!(matches!(result, Err(HandleError::Stale(_))));
                    }
                }
                Op::CloseWhilePinned { pick } if !issued.is_empty() => {
                    let n = issued.len();
                    let entry = &mut issued[pick % n];
                    if entry.live && !entry.b {
                        let guard = table.get::<Counted>(entry.id).unwrap();
                        prop_assert_eq!(table.close(entry.id).unwrap(), CloseOutcome::Deferred);
                        prop_assert!(matches!(table.get::<Counted>(entry.id), Err(HandleError::Stale(_))));
                        prop_assert_eq!(entry.releases.load(SeqCst), 0);
                        drop(guard);
                        prop_assert_eq!(entry.releases.load(SeqCst), 1);
                        entry.live = false;
                    }
                }
                Op::Forged { raw } => {
                    let id = HandleId::from_raw(raw);
                    match issued.iter().find(|e| e.id == id) {
                        Some(entry) => check_lookup(&table, entry, entry.b),
                        None if raw == 0 => {
                            prop_assert!(matches!(table.get::<Counted>(id), Err(HandleError::Null)));
                        }
                        None => {
                            prop_assert!(matches!(table.get::<Counted>(id), Err(HandleError::Stale(_))));
                            prop_assert!(matches!(table.close(id), Err(HandleError::Stale(_))));
                        }
                    }
                }
                Op::Drain => {
                    let report = table.drain();
                    prop_assert_eq!(report.released, live);
                    prop_assert_eq!(report.deferred, 0);
                    prop_assert!(report.failed.is_empty());
                    for entry in issued.iter_mut() {
                        entry.live = false;
                    }
                }
                _ => {}
            }
            prop_assert_eq!(table.len(), issued.iter().filter(|e| e.live).count());
            for entry in &issued {
                let expected = usize::from(!entry.live);
                prop_assert_eq!(entry.releases.load(SeqCst), expected, "id {}", entry.id);
            }
        }
        drop(table);
        for entry in &issued {
            prop_assert_eq!(entry.releases.load(SeqCst), 1, "released exactly once: {}", entry.id);
        }
    }
}

#[test]
fn lookups_race_closes_and_reinserts_without_ever_reaching_a_recycled_slot() {
    let _serial = serial();
    quiet();
    const SHARED: usize = 8;
    const ROUNDS: usize = 20_000;
    // A small table, so slots are recycled constantly (room for the shared
    // ids, the new one, and one deferred close per reader).
    let table = HandleTable::with_limit(SHARED + 4);
    let ids: Vec<AtomicU32> = (0..SHARED).map(|_| AtomicU32::new(0)).collect();
    let stop = AtomicBool::new(false);
    let hits = AtomicUsize::new(0);
    let releases = Arc::new(AtomicUsize::new(0));
    thread::scope(|s| {
        for reader in 0..3 {
            let (table, ids, stop, hits) = (&table, &ids, &stop, &hits);
            s.spawn(move || {
                let mut i: usize = reader;
                while !stop.load(SeqCst) {
                    i = i.wrapping_add(7);
                    let id = HandleId::from_raw(ids[i % SHARED].load(SeqCst));
                    if let Ok(guard) = table.get::<Counted>(id) {
                        let issued = guard.tag();
                        assert!(
                            issued == 0 || issued == u64::from(id.raw()),
                            "reached a recycled slot"
                        );
                        assert!(!guard.was_released(), "released while pinned");
                        hits.fetch_add(1, SeqCst);
                    }
                }
            });
        }
        s.spawn(|| {
            for round in 0..ROUNDS {
                let id = table.insert(Counted::counting_into(&releases)).unwrap();
                table
                    .get::<Counted>(id)
                    .unwrap()
                    .set_tag(u64::from(id.raw()));
                let old = ids[round % SHARED].swap(id.raw(), SeqCst);
                if old != 0 {
                    table.close(HandleId::from_raw(old)).unwrap();
                }
            }
            stop.store(true, SeqCst);
        });
    });
    let remaining = table.drain();
    assert_eq!(remaining.released, SHARED);
    assert_eq!(releases.load(SeqCst), ROUNDS, "each released exactly once");
    assert!(hits.load(SeqCst) > 0, "the readers hit live handles");
}
