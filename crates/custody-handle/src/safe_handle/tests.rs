//! One test per row of the state table and per consequence in SPEC A2.

use std::sync::atomic::Ordering::SeqCst;
use std::thread;

use super::state::{REF_ONE, REF_SHIFT};
use super::*;
use crate::diagnostics::{Assistant, Collector};
use crate::sync::Ordering;
use crate::testing::{Counted, Inert};

fn releases(h: &SafeHandle<Counted>) -> usize {
    h.dangerous_get_handle().releases()
}

fn snapshot(h: &SafeHandle<Counted>) -> (usize, bool, bool) {
    (h.ref_count(), h.is_closed(), h.is_disposed())
}

// ---- add-ref / acquire row --------------------------------------------------

#[test]
fn add_ref_increments_the_count() {
    let h = SafeHandle::new(Counted::new());
    h.dangerous_add_ref().unwrap();
    assert_eq!(snapshot(&h), (2, false, false));
    let g = h.acquire().unwrap();
    assert_eq!(snapshot(&h), (3, false, false));
    drop(g);
    h.dangerous_release().unwrap();
    assert_eq!(snapshot(&h), (1, false, false));
    assert_eq!(releases(&h), 0);
}

#[test]
fn add_ref_on_a_closed_handle_is_closed() {
    let h = SafeHandle::new(Counted::new());
    h.dispose().unwrap();
    assert!(matches!(h.dangerous_add_ref(), Err(HandleError::Closed)));
    assert!(matches!(h.acquire(), Err(HandleError::Closed)));
    assert_eq!(
        snapshot(&h),
        (0, true, true),
        "a failed add-ref changes nothing"
    );
}

#[test]
fn add_ref_at_the_maximum_is_an_overflow_not_a_wrap() {
    let h = SafeHandle::new(Counted::new());
    h.inner
        .state
        .store(MAX_REF_COUNT << REF_SHIFT, Ordering::Relaxed);
    assert!(matches!(
        h.dangerous_add_ref(),
        Err(HandleError::RefCountOverflow)
    ));
    assert_eq!(h.ref_count(), MAX_REF_COUNT, "the count did not wrap");
    assert!(!h.is_closed());
    // One below the maximum still succeeds.
    h.inner
        .state
        .store((MAX_REF_COUNT - 1) << REF_SHIFT, Ordering::Relaxed);
    h.dangerous_add_ref().unwrap();
    assert_eq!(h.ref_count(), MAX_REF_COUNT);
    // Put the state back to a single reference so the drop is ordinary.
    h.inner.state.store(REF_ONE, Ordering::Relaxed);
}

// ---- dangerous_release / guard drop row -------------------------------------

#[test]
fn release_of_the_last_reference_releases_and_closes() {
    let h = SafeHandle::new(Counted::new());
    h.dangerous_add_ref().unwrap();
    h.dispose().unwrap();
    assert_eq!(snapshot(&h), (1, false, true));
    assert_eq!(releases(&h), 0);
    h.dangerous_release().unwrap();
    assert_eq!(snapshot(&h), (0, true, true));
    assert_eq!(releases(&h), 1);
}

#[test]
fn release_with_no_reference_left_is_closed() {
    let h = SafeHandle::new(Counted::new());
    h.dispose().unwrap();
    assert!(matches!(h.dangerous_release(), Err(HandleError::Closed)));
    assert_eq!(releases(&h), 1, "no second release");
}

#[test]
fn guard_drop_releases_its_reference() {
    let h = SafeHandle::new(Counted::new());
    {
        let g = h.acquire().unwrap();
        assert_eq!(
            g.raw_value(),
            h.raw_value(),
            "the guard derefs to the resource"
        );
        assert!(g.handle().ptr_eq(&h));
        assert_eq!(h.ref_count(), 2);
    }
    assert_eq!(h.ref_count(), 1);
}

#[test]
fn guard_release_returns_the_failure_of_the_release_it_performs() {
    crate::diagnostics::capture_for_tests();
    let h = SafeHandle::new(Counted::new().failing());
    let g = h.acquire().unwrap();
    h.dispose().unwrap();
    assert!(matches!(g.release(), Err(HandleError::ReleaseFailed(_))));
    assert_eq!(releases(&h), 1);
}

// ---- dispose row ------------------------------------------------------------

#[test]
fn dispose_of_the_only_reference_releases() {
    let h = SafeHandle::new(Counted::new());
    h.dispose().unwrap();
    assert_eq!(snapshot(&h), (0, true, true));
    assert_eq!(releases(&h), 1);
}

#[test]
fn close_is_dispose() {
    let h = SafeHandle::new(Counted::new());
    h.close().unwrap();
    assert_eq!(snapshot(&h), (0, true, true));
    assert_eq!(releases(&h), 1);
}

#[test]
fn second_and_third_dispose_are_silent_no_ops() {
    let h = SafeHandle::new(Counted::new());
    h.dangerous_add_ref().unwrap();
    h.dispose().unwrap();
    assert_eq!(snapshot(&h), (1, false, true));
    h.dispose().unwrap();
    h.dispose().unwrap();
    assert_eq!(
        snapshot(&h),
        (1, false, true),
        "later disposes change nothing"
    );
    h.dangerous_release().unwrap();
    h.dispose().unwrap();
    assert_eq!(releases(&h), 1);
}

#[test]
fn dispose_after_the_creation_reference_was_released_is_closed() {
    let h = SafeHandle::new(Counted::new());
    h.dangerous_release().unwrap(); // consumes the creation reference
    assert!(matches!(h.dispose(), Err(HandleError::Closed)));
    assert_eq!(releases(&h), 1);
}

// ---- set_handle_as_invalid row ----------------------------------------------

#[test]
fn set_handle_as_invalid_closes_without_releasing() {
    let h = SafeHandle::new(Counted::new());
    h.set_handle_as_invalid();
    assert_eq!(snapshot(&h), (1, true, false));
    assert!(matches!(h.acquire(), Err(HandleError::Closed)));
    h.dispose().unwrap();
    assert_eq!(snapshot(&h), (0, true, true));
    assert_eq!(releases(&h), 0, "never releases");
}

#[test]
fn set_handle_as_invalid_with_references_outstanding_never_releases() {
    let h = SafeHandle::new(Counted::new());
    let g = h.acquire().unwrap();
    h.set_handle_as_invalid();
    h.dispose().unwrap();
    drop(g);
    assert_eq!(snapshot(&h), (0, true, true));
    assert_eq!(releases(&h), 0);
}

// ---- drop of the last clone row ---------------------------------------------

#[test]
fn dropping_the_last_clone_disposes() {
    let shared = SafeHandle::new(Counted::new());
    let counter = shared.dangerous_get_handle().counter();
    let clone = shared.clone();
    drop(shared);
    assert_eq!(counter.load(SeqCst), 0, "a clone is still alive");
    drop(clone);
    assert_eq!(counter.load(SeqCst), 1);
}

#[test]
fn dropping_the_last_clone_after_dispose_does_not_release_again() {
    let h = SafeHandle::new(Counted::new());
    let counter = h.dangerous_get_handle().counter();
    h.dispose().unwrap();
    drop(h);
    assert_eq!(counter.load(SeqCst), 1);
}

#[test]
fn dropping_the_last_clone_reports_a_failed_release_and_does_not_panic() {
    crate::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let h = SafeHandle::new(Counted::new().failing());
    let raw = h.raw_value();
    drop(h);
    let seen = collector.matching(|d| d.raw_value == Some(raw));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].assistant, Assistant::ReleaseHandleFailed);
}

#[test]
fn dropping_the_last_clone_with_add_refs_outstanding_is_reported() {
    crate::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let h = SafeHandle::new(Counted::new());
    let raw = h.raw_value();
    h.dangerous_add_ref().unwrap();
    h.dangerous_add_ref().unwrap();
    drop(h); // leaks, as in .NET, but not silently
    let seen = collector.matching(|d| d.raw_value == Some(raw));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].assistant, Assistant::OutstandingReferences);
    assert_eq!(seen[0].outstanding, Some(2));
}

#[test]
fn dropping_a_disposed_last_clone_with_add_refs_outstanding_is_reported() {
    crate::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let h = SafeHandle::new(Counted::new());
    let raw = h.raw_value();
    h.dangerous_add_ref().unwrap();
    h.dispose().unwrap();
    drop(h);
    let seen = collector.matching(|d| d.raw_value == Some(raw));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].outstanding, Some(1));
}

#[test]
fn a_count_driven_below_zero_is_reported_at_the_last_drop() {
    crate::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let h = SafeHandle::new(Counted::new());
    let raw = h.raw_value();
    h.dispose().unwrap();
    // What a racing misuse can leave behind: one release too many.
    h.inner.state.fetch_sub(REF_ONE, Ordering::Relaxed);
    drop(h);
    let seen = collector.matching(|d| d.raw_value == Some(raw));
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].message.contains("below zero"),
        "{}",
        seen[0].message
    );
}

#[test]
fn handle_finalized_fires_only_for_a_release_by_drop() {
    crate::diagnostics::capture_for_tests();
    // Other tests toggle this assistant too: hold it on for the whole test.
    let _lock = crate::diagnostics::tests::enabled_set_lock();
    let was = crate::diagnostics::is_enabled(Assistant::HandleFinalized);
    crate::diagnostics::set_enabled(Assistant::HandleFinalized, true);
    let collector = Collector::start();
    let by_drop = SafeHandle::new(Counted::new());
    let by_dispose = SafeHandle::new(Counted::new());
    let (a, b) = (by_drop.raw_value(), by_dispose.raw_value());
    drop(by_drop);
    by_dispose.dispose().unwrap();
    drop(by_dispose);
    crate::diagnostics::set_enabled(Assistant::HandleFinalized, was);
    let finalized = |raw| {
        collector
            .matching(|d| d.assistant == Assistant::HandleFinalized && d.raw_value == Some(raw))
            .len()
    };
    assert_eq!(finalized(a), 1);
    assert_eq!(finalized(b), 0);
}

// ---- consequences -----------------------------------------------------------

#[test]
fn dispose_with_references_outstanding_defers_the_release_to_the_last_release_on_that_thread() {
    let h = SafeHandle::new(Counted::new());
    h.dangerous_add_ref().unwrap();
    let worker = {
        let h = h.clone();
        thread::spawn(move || {
            // Holds the reference taken above until told to drop it.
            h.dangerous_release().unwrap();
            thread::current().id()
        })
    };
    // Dispose before the worker has necessarily run: either way the release
    // happens on whichever thread drops the last reference.
    h.dispose().unwrap();
    let worker_id = worker.join().unwrap();
    assert_eq!(releases(&h), 1);
    let released_on = h.dangerous_get_handle().released_on().unwrap();
    assert!(released_on == worker_id || released_on == thread::current().id());

    // And deterministically: dispose first, then the holder releases.
    let h = SafeHandle::new(Counted::new());
    let g = h.acquire().unwrap();
    h.dispose().unwrap();
    assert_eq!(releases(&h), 0, "deferred while the guard lives");
    assert!(!h.is_closed(), "not closed until the last reference goes");
    let holder = thread::scope(|s| {
        s.spawn(move || {
            drop(g);
            thread::current().id()
        })
        .join()
        .unwrap()
    });
    assert_eq!(releases(&h), 1);
    assert_eq!(
        h.dangerous_get_handle().released_on(),
        Some(holder),
        "released on the thread that dropped the last reference"
    );
}

#[test]
fn is_closed_is_the_c_flag() {
    let h = SafeHandle::new(Counted::new());
    assert!(!h.is_closed());
    let g = h.acquire().unwrap();
    h.dispose().unwrap();
    assert!(!h.is_closed(), "disposed but referenced: C still clear");
    drop(g);
    assert!(h.is_closed());
}

#[test]
fn the_raw_value_stays_readable_after_close() {
    let h = SafeHandle::new(Counted::new());
    let raw = h.raw_value();
    h.dispose().unwrap();
    assert_eq!(h.raw_value(), raw);
    assert_eq!(h.dangerous_get_handle().raw_value(), raw);
}

#[test]
fn an_unowned_handle_never_releases() {
    let h = SafeHandle::with_ownership(Counted::new(), false);
    assert!(!h.owns_handle());
    let g = h.acquire().unwrap();
    h.dispose().unwrap();
    drop(g);
    assert!(h.is_closed());
    assert_eq!(releases(&h), 0);
    let dropped = SafeHandle::with_ownership(Counted::new(), false);
    let counter = dropped.dangerous_get_handle().counter();
    drop(dropped);
    assert_eq!(counter.load(SeqCst), 0);
}

#[test]
fn add_ref_on_an_invalid_handle_succeeds_and_release_is_skipped() {
    let h = SafeHandle::new(Counted::new().invalid());
    assert!(h.is_invalid());
    let g = h.acquire().unwrap();
    drop(g);
    h.dispose().unwrap();
    assert!(h.is_closed());
    assert_eq!(releases(&h), 0);
}

#[test]
fn dangerous_release_without_add_ref_consumes_the_creation_reference() {
    let h = SafeHandle::new(Counted::new());
    h.dangerous_release().unwrap();
    assert_eq!(snapshot(&h), (0, true, false));
    assert_eq!(releases(&h), 1);
}

#[test]
fn a_failed_release_is_returned_reported_counted_and_never_retried() {
    crate::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let before = crate::diagnostics::count(Assistant::ReleaseHandleFailed);
    let h = SafeHandle::new(Counted::new().failing());
    let raw = h.raw_value();
    let err = h.dispose().unwrap_err();
    let HandleError::ReleaseFailed(io) = err else {
        panic!("expected ReleaseFailed, got {err:?}");
    };
    assert_eq!(io.raw_os_error(), Some(libc::EBADF));
    assert!(h.is_closed(), "closed regardless");
    assert!(crate::diagnostics::count(Assistant::ReleaseHandleFailed) > before);
    let seen = collector.matching(|d| d.raw_value == Some(raw));
    assert_eq!(seen.len(), 1);
    let d = &seen[0];
    assert_eq!(d.assistant, Assistant::ReleaseHandleFailed);
    assert_eq!(d.errno, Some(libc::EBADF));
    assert_eq!(d.raw_hex.as_deref(), Some(&*format!("0x{raw:08X}")));
    assert!(d.handle_type.as_deref().unwrap().ends_with("Counted"));
    assert_eq!(d.causes.len(), 4);
    assert!(d.render().contains(&format!("0x{raw:08X}")));

    // Never retried: no later operation calls release_handle again.
    h.dispose().unwrap();
    assert!(h.dangerous_release().is_err());
    drop(h.clone());
    assert_eq!(releases(&h), 1);
}

#[test]
fn the_release_failure_is_returned_by_the_dangerous_release_that_performed_it() {
    crate::diagnostics::capture_for_tests();
    let h = SafeHandle::new(Counted::new().failing());
    h.dangerous_add_ref().unwrap();
    h.dispose().unwrap(); // defers
    assert!(matches!(
        h.dangerous_release(),
        Err(HandleError::ReleaseFailed(_))
    ));
}

#[test]
fn release_runs_at_most_once_across_racing_threads() {
    for _ in 0..200 {
        let h = SafeHandle::new(Counted::new());
        thread::scope(|s| {
            for i in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    if let Ok(g) = h.acquire() {
                        assert_eq!(g.releases(), 0, "used after release");
                    }
                    if i % 2 == 0 {
                        let _ = h.dispose();
                    }
                });
            }
        });
        assert_eq!(releases(&h), 1);
    }
}

#[test]
fn debug_shows_the_state() {
    let h = SafeHandle::new(Inert);
    assert_eq!(
        format!("{h:?}"),
        "SafeHandle { value: Inert, state: (n=1, C=0, D=0), owns_handle: true }"
    );
}
