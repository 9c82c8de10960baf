//! The process-wide rate limit, through `fire`: suppressed occurrences are
//! counted but not built, summaries come first in the next window and at a
//! flush, and `off` delivers everything.
//!
//! The limit is process-wide, so these tests live in a binary of their own
//! and run one at a time (`serial`); each sets the limit it needs.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use custody_handle::diagnostics::{self, Assistant, Collector, Diagnostic, RateLimit};

/// Holds the process-wide limit for one test; routes diagnostics through
/// libtest's capture and clears what earlier tests left pending.
fn serial(limit: Option<RateLimit>) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    diagnostics::capture_for_tests();
    diagnostics::set_rate_limit(None);
    diagnostics::flush_suppressed();
    diagnostics::set_rate_limit(limit);
    guard
}

/// Fires `n` `callAborted` diagnostics, returning how many were built.
fn flood(n: u64) -> u64 {
    let built = AtomicU64::new(0);
    for i in 0..n {
        diagnostics::fire(Assistant::CallAborted, || {
            built.fetch_add(1, SeqCst);
            Diagnostic::new(Assistant::CallAborted, format!("flood {i}"))
        });
    }
    built.load(SeqCst)
}

/// The `suppressed` count of a summary, or `None` for an ordinary one.
fn summarized(d: &Diagnostic) -> Option<u64> {
    d.detail.as_ref()?.get("suppressed")?.as_u64()
}

fn call_aborted(collector: &Collector) -> Vec<Diagnostic> {
    collector.matching(|d| d.assistant == Assistant::CallAborted)
}

#[test]
fn past_the_burst_nothing_is_built_but_everything_is_counted() {
    let _serial = serial(Some(RateLimit::new(5, Duration::from_secs(3600))));
    let collector = Collector::start();
    let (count, suppressed) = (
        diagnostics::count(Assistant::CallAborted),
        diagnostics::suppressed(Assistant::CallAborted),
    );
    assert_eq!(flood(50), 5, "built only within the burst");
    assert_eq!(diagnostics::count(Assistant::CallAborted) - count, 50);
    assert_eq!(
        diagnostics::suppressed(Assistant::CallAborted) - suppressed,
        45
    );
    let seen = call_aborted(&collector);
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|d| summarized(d).is_none()));

    assert_eq!(diagnostics::flush_suppressed(), 45);
    let seen = call_aborted(&collector);
    assert_eq!(seen.len(), 6);
    let summary = &seen[5];
    assert_eq!(summarized(summary), Some(45));
    assert_eq!(
        summary.message,
        "45 more callAborted diagnostics suppressed (rate limit: 5 per 3600 s)"
    );
    assert_eq!(diagnostics::flush_suppressed(), 0, "reported once");
}

#[test]
fn the_next_window_starts_with_the_summary() {
    let _serial = serial(Some(RateLimit::new(3, Duration::from_millis(300))));
    let collector = Collector::start();
    flood(20);
    thread::sleep(Duration::from_millis(350));
    flood(1);
    let seen = call_aborted(&collector);
    // Normally 3, the summary of 17, then the new one; a test thread
    // descheduled for a whole window mid-flood delivers more, never fewer.
    let summaries: Vec<(usize, u64)> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, summarized(d)?)))
        .collect();
    let delivered = seen.len() - summaries.len();
    let reported: u64 = summaries.iter().map(|(_, n)| n).sum();
    assert_eq!(delivered as u64 + reported, 21, "{seen:#?}");
    let (at, _) = *summaries.last().expect("a summary");
    assert_eq!(at, seen.len() - 2, "just before the new window's first");
    assert_eq!(seen.last().unwrap().message, "flood 0");
    assert_eq!(diagnostics::flush_suppressed(), 0);
}

#[test]
fn threads_flooding_lose_no_occurrence() {
    let _serial = serial(Some(RateLimit::new(10, Duration::from_millis(5))));
    let collector = Collector::start();
    let built: u64 = thread::scope(|s| {
        let floods: Vec<_> = (0..4).map(|_| s.spawn(|| flood(5_000))).collect();
        floods.into_iter().map(|f| f.join().unwrap()).sum()
    });
    diagnostics::flush_suppressed();
    let seen = call_aborted(&collector);
    let reported: u64 = seen.iter().filter_map(summarized).sum();
    let delivered = seen.iter().filter(|d| summarized(d).is_none()).count() as u64;
    assert_eq!(delivered, built);
    assert_eq!(delivered + reported, 20_000);
}

#[test]
fn off_delivers_everything() {
    let _serial = serial(None);
    assert_eq!(diagnostics::rate_limit(), None);
    let collector = Collector::start();
    let suppressed = diagnostics::suppressed(Assistant::CallAborted);
    assert_eq!(flood(500), 500);
    assert_eq!(call_aborted(&collector).len(), 500);
    assert_eq!(diagnostics::suppressed(Assistant::CallAborted), suppressed);
}

#[test]
fn a_disabled_assistant_keeps_its_summary_until_enabled() {
    let _serial = serial(Some(RateLimit::new(1, Duration::from_secs(3600))));
    let collector = Collector::start();
    flood(4);
    diagnostics::set_enabled(Assistant::CallAborted, false);
    assert_eq!(diagnostics::flush_suppressed(), 0);
    diagnostics::set_enabled(Assistant::CallAborted, true);
    assert_eq!(diagnostics::flush_suppressed(), 3);
    let seen = call_aborted(&collector);
    assert_eq!(seen.len(), 2);
    assert_eq!(summarized(&seen[1]), Some(3));
}

#[test]
fn the_limit_is_readable_and_settable() {
    let _serial = serial(Some(RateLimit::per_second(7)));
    assert_eq!(diagnostics::rate_limit(), Some(RateLimit::per_second(7)));
    diagnostics::set_rate_limit(Some(RateLimit::DEFAULT));
    assert_eq!(diagnostics::rate_limit(), Some(RateLimit::DEFAULT));
}
