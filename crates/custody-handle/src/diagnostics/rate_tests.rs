//! Unit tests of the rate limit: a [`Limiter`] driven by a fake clock (so
//! every count is exact, whatever else the process fires), the
//! [`RateLimit`] syntax and the summary diagnostic. The process-wide wiring
//! through `fire` is tested in `tests/diagnostics_rate.rs`, a process of its
//! own.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;

use super::rate::{Admission, Limiter, RateLimit, START_BITS};
use super::*;

/// A limiter of the process-wide kind.
fn limiter() -> Limiter {
    Limiter::new()
}

/// `burst` per `window_ms`.
fn limit(burst: u32, window_ms: u64) -> Option<RateLimit> {
    Some(RateLimit::new(burst, Duration::from_millis(window_ms)))
}

/// What a run of occurrences came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    delivered: u64,
    /// The summaries, in order.
    summaries: Vec<u64>,
    suppressed: u64,
}

impl Tally {
    fn fire(&mut self, limiter: &Limiter, limit: Option<RateLimit>, now_ms: u64) {
        match limiter.admit(limit, now_ms) {
            Admission::Deliver { summary } => {
                if summary > 0 {
                    self.summaries.push(summary);
                }
                self.delivered += 1;
            }
            Admission::Suppress => self.suppressed += 1,
        }
    }

    fn fire_n(&mut self, n: u64, limiter: &Limiter, limit: Option<RateLimit>, now_ms: u64) {
        for _ in 0..n {
            self.fire(limiter, limit, now_ms);
        }
    }
}

#[test]
fn a_window_delivers_at_most_its_burst() {
    let (limiter, l) = (limiter(), limit(3, 1000));
    let mut t = Tally::default();
    t.fire_n(10, &limiter, l, 5);
    t.fire_n(10, &limiter, l, 999);
    assert_eq!(t.delivered, 3);
    assert_eq!(t.suppressed, 17);
    assert!(t.summaries.is_empty());
    assert_eq!(limiter.suppressed(), 17);
}

#[test]
fn the_next_window_opens_with_an_exact_summary_before_its_first_delivery() {
    let (limiter, l) = (limiter(), limit(3, 1000));
    let mut t = Tally::default();
    t.fire_n(10, &limiter, l, 0);
    assert_eq!(
        limiter.admit(l, 1000),
        Admission::Deliver { summary: 7 },
        "the opener carries the summary"
    );
    assert_eq!(limiter.admit(l, 1001), Admission::Deliver { summary: 0 });
    assert_eq!(limiter.admit(l, 1002), Admission::Deliver { summary: 0 });
    assert_eq!(limiter.admit(l, 1003), Admission::Suppress);
    // Three more windows, each flooded by a different amount.
    let mut t = Tally::default();
    for (window, n) in [(2, 4), (3, 100), (4, 3)] {
        t.fire_n(n, &limiter, l, window * 1000 + 10);
    }
    t.fire(&limiter, l, 10_000);
    assert_eq!(
        t.summaries,
        [1, 1, 97],
        "the 1 left in window 1, then 4-3, 100-3"
    );
    assert_eq!(limiter.take_pending(), 0);
    assert_eq!(limiter.suppressed(), 7 + 1 + 1 + 97);
}

#[test]
fn a_quiet_window_has_no_summary() {
    let (limiter, l) = (limiter(), limit(2, 100));
    let mut t = Tally::default();
    t.fire_n(2, &limiter, l, 0);
    t.fire_n(2, &limiter, l, 150);
    t.fire_n(2, &limiter, l, 5000);
    assert_eq!(t.delivered, 6);
    assert!(t.summaries.is_empty());
}

#[test]
fn a_window_opens_at_the_first_occurrence_after_a_quiet_spell() {
    let (limiter, l) = (limiter(), limit(1, 1000));
    assert_eq!(limiter.admit(l, 1500), Admission::Deliver { summary: 0 });
    // Measured from 1500, not from a one-second grid.
    assert_eq!(limiter.admit(l, 2400), Admission::Suppress);
    assert_eq!(limiter.admit(l, 2499), Admission::Suppress);
    assert_eq!(limiter.admit(l, 2500), Admission::Deliver { summary: 2 });
}

#[test]
fn an_older_clock_reading_counts_in_the_window_just_opened() {
    let (limiter, l) = (limiter(), limit(1, 10));
    assert_eq!(limiter.admit(l, 0), Admission::Deliver { summary: 0 });
    assert_eq!(limiter.admit(l, 100), Admission::Deliver { summary: 0 });
    // A thread that read the clock before 100 does not reopen the window.
    assert_eq!(limiter.admit(l, 95), Admission::Suppress);
    assert_eq!(limiter.admit(l, 99), Admission::Suppress);
    assert_eq!(limiter.admit(l, 110), Admission::Deliver { summary: 2 });
}

#[test]
fn windows_keep_opening_when_the_clock_wraps_the_start_field() {
    let (limiter, l) = (limiter(), limit(1, 10));
    let wrap = 1u64 << START_BITS;
    // Half the range at a time: a reading further ahead reads as stale.
    assert_eq!(
        limiter.admit(l, wrap / 2 - 1),
        Admission::Deliver { summary: 0 }
    );
    assert_eq!(
        limiter.admit(l, wrap - 20),
        Admission::Deliver { summary: 0 }
    );
    let mut t = Tally::default();
    t.fire_n(3, &limiter, l, wrap - 5);
    t.fire_n(3, &limiter, l, wrap + 5);
    t.fire_n(3, &limiter, l, wrap + 15);
    assert_eq!(t.delivered, 3);
    assert_eq!(t.summaries, [2, 2]);
}

#[test]
fn closing_the_window_makes_the_next_occurrence_open_one() {
    let (limiter, l) = (limiter(), limit(1, 1000));
    assert_eq!(limiter.admit(l, 100), Admission::Deliver { summary: 0 });
    assert_eq!(limiter.admit(l, 101), Admission::Suppress);
    limiter.close(102);
    // Even under a much longer window, and from a slightly stale reading.
    let longer = limit(1, u64::from(u32::MAX));
    assert_eq!(
        limiter.admit(longer, 101),
        Admission::Deliver { summary: 1 }
    );
    assert_eq!(limiter.admit(longer, 5000), Admission::Suppress);
    limiter.close(0);
    assert_eq!(limiter.admit(l, 0), Admission::Deliver { summary: 1 });
}

#[test]
fn flush_takes_the_pending_count_once() {
    let (limiter, l) = (limiter(), limit(2, 1000));
    let mut t = Tally::default();
    t.fire_n(12, &limiter, l, 0);
    assert_eq!(limiter.take_pending(), 10);
    assert_eq!(limiter.take_pending(), 0);
    // Already reported: the next window's opener has nothing to add.
    assert_eq!(limiter.admit(l, 1000), Admission::Deliver { summary: 0 });
    assert_eq!(limiter.suppressed(), 10, "the total is not reset");
}

#[test]
fn with_the_limit_off_everything_is_delivered_and_what_was_pending_is_handed_over() {
    let limiter = limiter();
    let mut t = Tally::default();
    t.fire_n(1000, &limiter, None, 0);
    assert_eq!(t.delivered, 1000);
    assert_eq!(limiter.suppressed(), 0);
    t.fire_n(5, &limiter, limit(1, 1000), 0);
    t.fire_n(3, &limiter, None, 0);
    assert_eq!(t.summaries, [4], "the first delivery after turning it off");
    assert_eq!(t.delivered, 1004);
}

#[test]
fn threads_racing_window_changes_lose_no_occurrence() {
    let limiter = Arc::new(limiter());
    let l = limit(5, 3);
    let fired_per_thread = 20_000;
    let threads: Vec<_> = (0..4)
        .map(|seed| {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || {
                let mut t = Tally::default();
                for i in 0..fired_per_thread {
                    // Clocks that disagree a little, as real threads' do.
                    t.fire(&limiter, l, i / 50 + (seed * 7) % 3);
                }
                t
            })
        })
        .collect();
    let tallies: Vec<Tally> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let delivered: u64 = tallies.iter().map(|t| t.delivered).sum();
    let summarized: u64 = tallies.iter().flat_map(|t| &t.summaries).sum::<u64>();
    let flushed = limiter.take_pending();
    assert_eq!(delivered + summarized + flushed, 4 * fired_per_thread);
    assert_eq!(limiter.suppressed(), summarized + flushed);
    assert!(summarized > 0 && delivered < 4 * fired_per_thread);
}

/// The limiter's transitions, written out plainly (single-threaded).
#[derive(Default)]
struct Model {
    start: u64,
    taken: u64,
    pending: u64,
}

impl Model {
    fn admit(&mut self, burst: u64, window_ms: u64, now: u64) -> Admission {
        if now >= self.start + window_ms {
            (self.start, self.taken) = (now, 1);
            Admission::Deliver {
                summary: std::mem::take(&mut self.pending),
            }
        } else if self.taken >= burst {
            self.pending += 1;
            Admission::Suppress
        } else {
            self.taken += 1;
            Admission::Deliver { summary: 0 }
        }
    }
}

proptest! {
    /// Any sequence of occurrences (the clock moving forward by random
    /// steps, each reading up to 2 ms stale) and flushes, under any limit:
    /// the limiter decides as the model does, and every occurrence is
    /// delivered or in exactly one summary.
    #[test]
    fn every_suppressed_occurrence_is_in_exactly_one_summary(
        burst in 1u32..5,
        window_ms in 1u64..20,
        steps in prop::collection::vec((0u64..8, any::<bool>(), 0u64..3), 1..300),
    ) {
        let (limiter, l) = (limiter(), limit(burst, window_ms));
        let mut model = Model::default();
        let mut t = Tally::default();
        let (mut now, mut flushed, mut fired) = (0u64, 0u64, 0u64);
        for (dt, flush, stale) in steps {
            now += dt;
            if flush {
                let taken = limiter.take_pending();
                prop_assert_eq!(taken, std::mem::take(&mut model.pending));
                flushed += taken;
                continue;
            }
            let reading = now.saturating_sub(stale);
            let expected = model.admit(u64::from(burst), window_ms, reading);
            prop_assert_eq!(limiter.admit(l, reading), expected);
            match expected {
                Admission::Deliver { summary } => {
                    t.delivered += 1;
                    t.summaries.push(summary);
                }
                Admission::Suppress => t.suppressed += 1,
            }
            fired += 1;
        }
        flushed += limiter.take_pending();
        let summarized: u64 = t.summaries.iter().sum();
        prop_assert_eq!(t.delivered + summarized + flushed, fired);
        prop_assert_eq!(limiter.suppressed(), summarized + flushed);
        prop_assert_eq!(t.suppressed, summarized + flushed);
    }
}

#[test]
fn the_environment_syntax_is_off_or_a_rate_per_second() {
    assert_eq!(RateLimit::parse_env("off"), Ok(None));
    assert_eq!(RateLimit::parse_env(" OFF "), Ok(None));
    assert_eq!(
        RateLimit::parse_env("250"),
        Ok(Some(RateLimit::per_second(250)))
    );
    for bad in ["0", "-3", "ten", "10/s", "16777216", "1.5"] {
        let err = RateLimit::parse_env(bad).unwrap_err();
        assert!(err.contains("not off or a number"), "{bad}: {err}");
    }
}

#[test]
fn a_rate_limit_clamps_and_displays_its_window() {
    assert_eq!(RateLimit::default(), RateLimit::per_second(100));
    assert_eq!(RateLimit::DEFAULT.to_string(), "100 per second");
    let l = RateLimit::new(3, Duration::from_millis(250));
    assert_eq!((l.burst(), l.window()), (3, Duration::from_millis(250)));
    assert_eq!(l.to_string(), "3 per 250 ms");
    assert_eq!(
        RateLimit::new(5, Duration::from_secs(60)).to_string(),
        "5 per 60 s"
    );
    let zero = RateLimit::new(0, Duration::ZERO);
    assert_eq!((zero.burst(), zero.window()), (1, Duration::from_millis(1)));
    let huge = RateLimit::new(u32::MAX, Duration::from_secs(u64::MAX));
    assert_eq!(huge.burst(), RateLimit::MAX_BURST);
    assert_eq!(huge.window(), Duration::from_millis(u64::from(u32::MAX)));
    for limit in [
        None,
        Some(l),
        Some(zero),
        Some(huge),
        Some(RateLimit::DEFAULT),
    ] {
        assert_eq!(RateLimit::from_bits(RateLimit::to_bits(limit)), limit);
    }
}

#[test]
fn a_summary_names_the_count_the_assistant_and_the_limit() {
    let d = sink::summary(
        Assistant::StaleHandleUse,
        300,
        Some(RateLimit::per_second(100)),
    );
    assert_eq!(d.assistant, Assistant::StaleHandleUse);
    assert_eq!(
        d.message,
        "300 more staleHandleUse diagnostics suppressed (rate limit: 100 per second)"
    );
    assert_eq!(d.detail, Some(serde_json::json!({"suppressed": 300})));
    let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(v["detail"]["suppressed"], 300);
    let one = sink::summary(Assistant::CallAborted, 1, None);
    assert_eq!(
        one.message,
        "1 more callAborted diagnostic suppressed (by a rate limit since turned off)"
    );
}

#[test]
fn each_limiter_counts_its_own_window() {
    let (a, b, l) = (limiter(), limiter(), limit(1, 1000));
    assert_eq!(a.admit(l, 0), Admission::Deliver { summary: 0 });
    assert_eq!(a.admit(l, 0), Admission::Suppress);
    assert_eq!(b.admit(l, 0), Admission::Deliver { summary: 0 });
    assert_eq!((a.suppressed(), b.suppressed()), (1, 0));
}
