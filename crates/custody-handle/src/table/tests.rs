//! Unit tests of the table: ids, generations and retirement, pins and
//! deferred closes, the quota, drain, and the live ids (the counts are in
//! `count_tests.rs`).

use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;

use super::slot::{BUCKETS, bucket_len, bucket_of};
use super::*;
use crate::SafeHandle;
use crate::diagnostics::{Assistant, Collector};
use crate::id::MAX_GENERATION;
use crate::testing::{AnotherKind, Counted, Inert};

#[test]
fn bucket_math_covers_every_slot_once() {
    let mut expected = (0, 0);
    for index in 0..MAX_SLOTS {
        let got = bucket_of(index);
        assert_eq!(got, expected, "slot {index}");
        expected.1 += 1;
        if expected.1 == bucket_len(expected.0) {
            expected = (expected.0 + 1, 0);
        }
    }
    assert!(bucket_of(MAX_SLOTS - 1).0 < BUCKETS);
}

#[test]
fn ids_are_never_zero_and_positive_as_i32() {
    let table = HandleTable::new();
    for _ in 0..100 {
        let id = table.insert(Counted::new()).unwrap();
        assert!(!id.is_null());
        assert!(i32::try_from(id.raw()).is_ok());
        assert!((1..=MAX_GENERATION).contains(&id.generation()));
    }
    assert_eq!(table.len(), 100);
}

#[test]
fn null_is_its_own_error() {
    let table = HandleTable::new();
    assert!(matches!(
        table.get::<Counted>(HandleId::NULL),
        Err(HandleError::Null)
    ));
    assert!(matches!(
        table.close(HandleId::NULL),
        Err(HandleError::Null)
    ));
}

#[test]
fn either_of_two_kinds_is_one_lookup_and_a_third_is_the_wrong_kind() {
    let table = HandleTable::new();
    let counted = table.insert(Counted::new()).unwrap();
    let inert = table.insert(Inert).unwrap();
    let another = table.insert(AnotherKind(Counted::new())).unwrap();
    assert!(matches!(
        table.get_either::<Counted, Inert>(counted),
        Ok(Either::First(r)) if r.id() == counted
    ));
    assert!(matches!(
        table.get_either::<Counted, Inert>(inert),
        Ok(Either::Second(r)) if r.id() == inert
    ));
    match table.get_either::<Counted, Inert>(another) {
        Err(HandleError::WrongKind {
            expected, found, ..
        }) => {
            assert!(expected.ends_with("Counted") && found.ends_with("AnotherKind"));
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert!(matches!(
        table.get_either::<Counted, Inert>(HandleId::NULL),
        Err(HandleError::Null)
    ));
    // No pin left behind by any of them: each close releases at once.
    for id in [counted, inert, another] {
        assert_eq!(table.close(id).unwrap(), CloseOutcome::Released);
    }
    // The first slot freed is the next one used, by a third kind: the old
    // id is stale there, not the wrong kind.
    let reused = table.insert(AnotherKind(Counted::new())).unwrap();
    assert_eq!(reused.slot(), counted.slot());
    assert!(matches!(
        table.get_either::<Counted, Inert>(counted),
        Err(HandleError::Stale(id)) if id == counted
    ));
}

#[test]
fn lookup_by_the_right_kind_and_the_wrong_one() {
    let table = HandleTable::new();
    let id = table.insert(Counted::new()).unwrap();
    assert_eq!(table.get::<Counted>(id).unwrap().id(), id);
    match table.get::<Inert>(id) {
        Err(HandleError::WrongKind {
            id: got,
            expected,
            found,
        }) => {
            assert_eq!(got, id);
            assert!(expected.ends_with("Inert"));
            assert!(found.ends_with("Counted"));
        }
        other => panic!("expected WrongKind, got {:?}", other.map(|r| r.id())),
    }
    assert!(table.kind_of(id).unwrap().ends_with("Counted"));
    // A wrong-kind lookup left no pin behind: close releases at once.
    assert_eq!(table.close(id).unwrap(), CloseOutcome::Released);
}

#[test]
fn close_releases_and_makes_the_id_stale() {
    crate::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let table = HandleTable::new().for_domain(0xD0_0001);
    let (probe, releases) = Counted::with_counter();
    let id = table.insert(probe).unwrap();
    assert_eq!(table.close(id).unwrap(), CloseOutcome::Released);
    assert_eq!(releases.load(SeqCst), 1);
    assert!(matches!(table.get::<Counted>(id), Err(HandleError::Stale(s)) if s == id));
    assert!(
        matches!(table.close(id), Err(HandleError::Stale(_))),
        "double close is stale"
    );
    assert_eq!(releases.load(SeqCst), 1);
    let stale = collector.matching(|d| d.domain == Some(0xD0_0001));
    assert_eq!(stale.len(), 2);
    assert!(
        stale
            .iter()
            .all(|d| d.assistant == Assistant::StaleHandleUse)
    );
    assert!(stale[0].message.contains(&id.to_string()));
    assert!(stale[0].message.contains("closed"));
    assert_eq!(stale[0].handle_id, Some(id.raw()));
}

#[test]
fn forged_ids_are_stale_never_a_panic() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    let live = table.insert(Counted::new()).unwrap();
    assert_eq!(live.raw(), 1 << 20, "slot 0, generation 1");
    for raw in [
        1,
        2,
        31,
        32,
        2 << 20,
        (1 << 20) + 1,
        u32::MAX,
        i32::MAX as u32,
        live.raw() + 1,
    ] {
        let id = HandleId::from_raw(raw);
        let result = table.get::<Counted>(id);
        assert!(matches!(result, Err(HandleError::Stale(_))), "{raw:#x}");
        assert!(matches!(table.close(id), Err(HandleError::Stale(_))));
    }
    assert!(table.get::<Counted>(live).is_ok());
}

#[test]
fn a_slot_never_returns_to_an_old_generation_and_is_retired_when_exhausted() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::with_limit(1);
    let mut seen = HashSet::new();
    let first = table.insert(Counted::new()).unwrap();
    table.close(first).unwrap();
    seen.insert(first);
    for _ in 1..MAX_GENERATION {
        let id = table.insert(Counted::new()).unwrap();
        assert_eq!(id.slot(), first.slot(), "the limit of 1 reuses one slot");
        assert!(seen.insert(id), "an id was issued twice: {id}");
        table.close(id).unwrap();
    }
    assert_eq!(seen.len(), MAX_GENERATION as usize);
    assert_eq!(table.retired_slots(), 1);
    // The next insert cannot use the retired slot.
    let next = table.insert(Counted::new()).unwrap();
    assert_ne!(next.slot(), first.slot());
    assert_eq!(next.generation(), 1);
    // Every old id is stale, including the last generation of the retired slot.
    for id in &seen {
        assert!(matches!(
            table.get::<Counted>(*id),
            Err(HandleError::Stale(_))
        ));
    }
}

#[test]
fn a_close_while_pinned_is_deferred_to_the_last_guard() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    let (probe, releases) = Counted::with_counter();
    let id = table.insert(probe).unwrap();
    let guard = table.get::<Counted>(id).unwrap();
    let second = table.get::<Counted>(id).unwrap();
    assert_eq!(table.close(id).unwrap(), CloseOutcome::Deferred);
    assert!(
        matches!(table.get::<Counted>(id), Err(HandleError::Stale(_))),
        "stale at once"
    );
    drop(guard);
    assert_eq!(releases.load(SeqCst), 0, "one guard still pins it");
    assert_eq!(second.releases(), 0);
    drop(second);
    assert_eq!(releases.load(SeqCst), 1);
    assert_eq!(table.len(), 0);
}

#[test]
fn a_shared_handle_disposed_by_its_owner_is_closed_but_stays_open_until_removed() {
    let table = HandleTable::new();
    let (probe, releases) = Counted::with_counter();
    let handle = SafeHandle::new(probe);
    let id = table.insert_handle(&handle).unwrap();
    handle.dispose().unwrap();
    assert!(matches!(table.get::<Counted>(id), Err(HandleError::Closed)));
    assert_eq!(
        releases.load(SeqCst),
        0,
        "the table's reference keeps it open"
    );
    table.close(id).unwrap();
    assert_eq!(releases.load(SeqCst), 1);
    // Inserting a closed handle is refused.
    assert!(matches!(
        table.insert_handle(&handle),
        Err(HandleError::Closed)
    ));
}

#[test]
fn the_quota_is_enforced_and_a_refused_value_is_released() {
    let table = HandleTable::with_limit(2);
    table.insert(Counted::new()).unwrap();
    let second = table.insert(Counted::new()).unwrap();
    let (probe, releases) = Counted::with_counter();
    assert!(matches!(
        table.insert(probe),
        Err(HandleError::QuotaExceeded { limit: 2 })
    ));
    assert_eq!(releases.load(SeqCst), 1, "refused, so released, not leaked");
    table.close(second).unwrap();
    table.insert(Counted::new()).unwrap();
    // A refused shared handle is left as it was.
    let (probe, releases) = Counted::with_counter();
    let shared = SafeHandle::new(probe);
    assert!(table.insert_handle(&shared).is_err());
    assert_eq!(shared.ref_count(), 1);
    assert_eq!(releases.load(SeqCst), 0);
}

#[test]
fn drain_reports_released_failed_and_deferred() {
    crate::diagnostics::capture_for_tests();
    let table = HandleTable::new();
    let counters: Vec<_> = (0..3)
        .map(|_| {
            let (probe, releases) = Counted::with_counter();
            table.insert(probe).unwrap();
            releases
        })
        .collect();
    let failing = table
        .insert(Counted::new().failing().with_raw(0x7AB1E))
        .unwrap();
    let (probe, pinned_releases) = Counted::with_counter();
    let pinned = table.insert(probe).unwrap();
    let guard = table.get::<Counted>(pinned).unwrap();
    let report = table.drain();
    assert_eq!(report.released, 3);
    assert_eq!(report.deferred, 1);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].id, failing);
    assert_eq!(report.failed[0].raw_value, 0x7AB1E);
    assert_eq!(
        report.failed[0].os_error().unwrap().raw_os_error(),
        Some(libc::EBADF)
    );
    assert!(counters.iter().all(|c| c.load(SeqCst) == 1));
    assert_eq!(pinned_releases.load(SeqCst), 0);
    drop(guard);
    assert_eq!(pinned_releases.load(SeqCst), 1);
    assert!(table.is_empty());
}

#[test]
fn dropping_the_table_releases_everything_once() {
    let counters: Vec<_>;
    {
        let table = HandleTable::new();
        counters = (0..200)
            .map(|_| {
                let (probe, releases) = Counted::with_counter();
                table.insert(probe).unwrap();
                releases
            })
            .collect();
    }
    assert!(counters.iter().all(|c| c.load(SeqCst) == 1));
}

#[test]
fn live_ids_lists_exactly_the_live_handles() {
    let table = HandleTable::new();
    assert!(table.live_ids().is_empty());
    let ids: Vec<HandleId> = (0..5)
        .map(|_| table.insert(Counted::new()).unwrap())
        .collect();
    table.close(ids[1]).unwrap();
    table.close(ids[3]).unwrap();
    assert_eq!(table.live_ids(), vec![ids[0], ids[2], ids[4]]);
    let again = table.insert(Counted::new()).unwrap();
    let live: HashSet<HandleId> = table.live_ids().into_iter().collect();
    assert!(live.contains(&again) && !live.contains(&ids[1]) && live.len() == 4);
}
