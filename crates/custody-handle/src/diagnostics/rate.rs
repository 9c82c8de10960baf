//! The per-assistant rate limit: [`RateLimit`] (the configuration) and
//! [`Limiter`] (one assistant's window word and suppressed counters, and
//! every transition on them).
//!
//! A guest that triggers a diagnostic in a loop must not flood stderr, the
//! `tracing` pipeline or the subscribers. Each assistant may deliver at most
//! `burst` diagnostics per window; the occurrences past that are *suppressed*
//! (not even built) and counted, and the next delivery after the window
//! closes is preceded by one summary, "N more ... suppressed". Every
//! suppressed occurrence is reported in exactly one summary: at the next
//! window's first delivery, or at an explicit flush.
//!
//! # The words
//!
//! Three atomic words per assistant:
//!
//! ```text
//!  63                                    24 23                 0
//! +----------------------------------------+-------------------+
//! |         START (ms, 40 bits)            |  TAKEN (24 bits)  |   window
//! +----------------------------------------+-------------------+
//! |     PENDING: suppressed, not yet in a summary (64 bits)    |   pending
//! +------------------------------------------------------------+
//! |     SUPPRESSED: suppressed in this process (64 bits)       |   suppressed
//! +------------------------------------------------------------+
//! ```
//!
//! - `START`: when the current window opened, in milliseconds of the caller's
//!   clock (the process's monotonic clock in production, anything in tests),
//!   truncated to [`START_BITS`] bits. Differences are taken modulo
//!   2^[`START_BITS`] (34 years of milliseconds), and one more than half of
//!   that range is read as "before the start" (see [`elapsed`]).
//! - `TAKEN`: deliveries admitted in the current window; never above the
//!   burst, which is at most [`RateLimit::MAX_BURST`], so it never carries into
//!   `START`.
//! - `PENDING`: suppressed occurrences not yet reported in a summary.
//! - `SUPPRESSED`: every suppressed occurrence, for [`Limiter::suppressed`].
//!
//! The initial window word is 0: a window that opened at time 0 with nothing
//! taken.
//!
//! # The transitions
//! One call of [`Limiter::admit`] with the limit `(burst, window)` at time
//! `now`, reading the window word `(start, taken)`; checked in the order
//! shown:
//!
//! | transition | checks | new window word | other words | result |
//! | --- | --- | --- | --- | --- |
//! | open | `now - start >= window` | `(now, 1)` (CAS) | `PENDING` swapped to 0 | deliver, after a summary of the swapped count if it is not 0 |
//! | suppress | `taken >= burst` | unchanged (no write) | `PENDING += 1`, `SUPPRESSED += 1` | suppress |
//! | admit | `taken < burst` | `(start, taken + 1)` (CAS) | none | deliver |
//! | unlimited | the limit is off | unchanged | `PENDING` swapped to 0 if not 0 | deliver, after a summary if it was not 0 |
//! | flush ([`Limiter::take_pending`]) | none | unchanged | `PENDING` swapped to 0 | a summary if it was not 0 |
//! | close ([`Limiter::close`], on a new limit) | none | `(now - CLOSED_AGO_MS, 0)` (store) | none | the next occurrence opens a window |
//!
//! A failed CAS re-reads the word and starts over. A thread whose clock
//! reading is older than a window another thread has just opened counts in
//! that window (it never reopens it).
//!
//! # Why nothing is lost or counted twice
//! Every change of `PENDING` is one read-modify-write: suppressions add 1,
//! openers and flushes swap it to 0. They are totally ordered on that one
//! word, so each increment is read by exactly one swap (or is still pending).
//! A suppression that lands just after an opener's swap is simply reported
//! in the following summary. All three words carry only themselves (no other
//! data is published through them), so `Relaxed` suffices; the loom model at
//! the end of this file checks `delivered + sum(summaries) == fired`.
//!
//! # Costs
//! With the limit off, `admit` is one load of `PENDING`. Under the burst, a
//! load and one CAS of the window word. Past it, a load and two
//! `fetch_add`s: no diagnostic is built.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Bits of the window word holding `TAKEN`, the deliveries of the current
/// window.
pub(crate) const TAKEN_BITS: u32 = 24;

/// `TAKEN`'s mask in the window word.
const TAKEN_MASK: u64 = (1 << TAKEN_BITS) - 1;

/// Bits of the window word holding `START`, the window's opening time in ms.
pub(crate) const START_BITS: u32 = u64::BITS - TAKEN_BITS;

/// `START`'s mask, before shifting (a time in ms, truncated).
const START_MASK: u64 = (1 << START_BITS) - 1;

/// The largest window, in ms (the configuration packs it in 32 bits; it is
/// far below half of `START`'s range).
const MAX_WINDOW_MS: u64 = u32::MAX as u64;

/// How far before `now` [`Limiter::close`] puts `START`: longer than any
/// window, and shorter than half of `START`'s range even for a reading that
/// is a little stale, so the next occurrence opens a window.
const CLOSED_AGO_MS: u64 = 1 << (START_BITS - 2);

/// Packs a window word.
fn pack(start_ms: u64, taken: u64) -> u64 {
    ((start_ms & START_MASK) << TAKEN_BITS) | (taken & TAKEN_MASK)
}

/// Unpacks a window word into `(start, taken)`.
fn unpack(word: u64) -> (u64, u64) {
    (word >> TAKEN_BITS, word & TAKEN_MASK)
}

/// Milliseconds from `start` to `now`, both truncated to `START_BITS`
/// bits. A `now` up to half the range *before* `start` (a thread that read
/// the clock just before another opened the window) is 0: same window.
fn elapsed(now_ms: u64, start_ms: u64) -> u64 {
    let d = now_ms.wrapping_sub(start_ms) & START_MASK;
    if d > START_MASK / 2 { 0 } else { d }
}

/// A rate limit: at most [`burst`](RateLimit::burst) diagnostics of each
/// assistant per [`window`](RateLimit::window).
///
/// The default ([`RateLimit::DEFAULT`]) is 100 per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    burst: u32,
    window_ms: u32,
}

impl RateLimit {
    /// The largest burst, 16,777,215 (2^24 - 1): a window's deliveries
    /// are counted in 24 bits.
    pub const MAX_BURST: u32 = TAKEN_MASK as u32;

    /// 100 per second: the default.
    pub const DEFAULT: RateLimit = RateLimit {
        burst: 100,
        window_ms: 1000,
    };

    /// At most `burst` per assistant per `window`. `burst` is clamped to
    /// `1..=`[`MAX_BURST`](Self::MAX_BURST) (turn the limit off with `set_rate_limit(None)`, or
    /// the assistant off with `set_enabled`); `window` to whole
    /// milliseconds, from 1 ms to `u32::MAX` ms (49 days).
    pub fn new(burst: u32, window: Duration) -> Self {
        let window_ms = window.as_millis().clamp(1, u128::from(MAX_WINDOW_MS));
        Self {
            burst: burst.clamp(1, Self::MAX_BURST),
            window_ms: window_ms as u32,
        }
    }

    /// At most `burst` per assistant per second (clamped as in
    /// [`RateLimit::new`]).
    pub fn per_second(burst: u32) -> Self {
        Self::new(burst, Duration::from_secs(1))
    }

    /// The most diagnostics of one assistant delivered per window.
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// The window.
    pub fn window(self) -> Duration {
        Duration::from_millis(u64::from(self.window_ms))
    }

    /// The limit as one word for an atomic (0 is "off": a burst is never 0).
    pub(crate) fn to_bits(limit: Option<RateLimit>) -> u64 {
        limit.map_or(0, |l| (u64::from(l.window_ms) << 32) | u64::from(l.burst))
    }

    /// The limit [`to_bits`](Self::to_bits) packed.
    pub(crate) fn from_bits(bits: u64) -> Option<RateLimit> {
        (bits != 0).then_some(RateLimit {
            burst: bits as u32,
            window_ms: (bits >> 32) as u32,
        })
    }

    /// Parses `CUSTODY_DIAGNOSTICS_RATE`: `off`, or `N` (per second, from 1
    /// to [`MAX_BURST`](Self::MAX_BURST)).
    pub(crate) fn parse_env(spec: &str) -> Result<Option<RateLimit>, String> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        match spec.parse::<u32>() {
            Ok(n) if (1..=Self::MAX_BURST).contains(&n) => Ok(Some(RateLimit::per_second(n))),
            _ => Err(format!(
                "{spec:?} is not off or a number of diagnostics per second from 1 to {}",
                Self::MAX_BURST
            )),
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `100 per second`, `3 per 250 ms`, `5 per 60 s`.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.window_ms {
            1000 => write!(f, "{} per second", self.burst),
            ms if ms % 1000 == 0 => write!(f, "{} per {} s", self.burst, ms / 1000),
            ms => write!(f, "{} per {ms} ms", self.burst),
        }
    }
}

/// What [`Limiter::admit`] decided about one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Deliver it; first deliver a summary of `summary` suppressed
    /// occurrences if that is not 0.
    Deliver {
        /// Suppressed occurrences this delivery must report first.
        summary: u64,
    },
    /// Suppressed: counted, not built, not delivered.
    Suppress,
}

/// The atomic word the limiter is written against: std's `AtomicU64` in the
/// process-wide limiters (a `static`'s atomics cannot be loom's, which live
/// inside one model run), loom's in the model. Every access is `Relaxed`
/// (see the module docs).
pub(crate) trait Word {
    /// A word holding `value`.
    fn new(value: u64) -> Self;
    /// Loads the word.
    fn get(&self) -> u64;
    /// Replaces `current` by `new`, or returns what the word holds.
    fn cas(&self, current: u64, new: u64) -> Result<u64, u64>;
    /// Adds `n`, returning the previous value.
    fn add(&self, n: u64) -> u64;
    /// Stores `value`, returning the previous value.
    fn replace(&self, value: u64) -> u64;
}

macro_rules! relaxed_word {
    ($atomic:ty) => {
        impl Word for $atomic {
            fn new(value: u64) -> Self {
                <$atomic>::new(value)
            }
            fn get(&self) -> u64 {
                self.load(Relaxed)
            }
            fn cas(&self, current: u64, new: u64) -> Result<u64, u64> {
                self.compare_exchange_weak(current, new, Relaxed, Relaxed)
            }
            fn add(&self, n: u64) -> u64 {
                self.fetch_add(n, Relaxed)
            }
            fn replace(&self, value: u64) -> u64 {
                self.swap(value, Relaxed)
            }
        }
    };
}

relaxed_word!(AtomicU64);
#[cfg(loom)]
relaxed_word!(loom::sync::atomic::AtomicU64);

/// One assistant's rate-limit state (see the module docs for the words and
/// their transitions). Lock-free; the limit and the clock are arguments, so
/// tests drive it with any limit and any time.
pub(crate) struct Limiter<W: Word = AtomicU64> {
    /// `(START, TAKEN)`.
    window: W,
    /// Suppressed, not yet reported in a summary.
    pending: W,
    /// Suppressed, ever.
    suppressed: W,
}

impl<W: Word> Limiter<W> {
    /// A limiter whose first window opened at time 0.
    pub(crate) fn new() -> Self {
        Self {
            window: W::new(0),
            pending: W::new(0),
            suppressed: W::new(0),
        }
    }

    /// Decides one occurrence at `now_ms` under `limit` (`None`: off).
    pub(crate) fn admit(&self, limit: Option<RateLimit>, now_ms: u64) -> Admission {
        let Some(limit) = limit else {
            // Unlimited: still hand over what an earlier limit suppressed.
            return Admission::Deliver {
                summary: self.take_pending(),
            };
        };
        let (burst, window_ms) = (u64::from(limit.burst), u64::from(limit.window_ms));
        let mut word = self.window.get();
        loop {
            let (start, taken) = unpack(word);
            let (new, opens) = if elapsed(now_ms, start) >= window_ms {
                (pack(now_ms, 1), true)
            } else if taken >= burst {
                self.pending.add(1);
                self.suppressed.add(1);
                return Admission::Suppress;
            } else {
                (pack(start, taken + 1), false)
            };
            match self.window.cas(word, new) {
                Ok(_) if opens => {
                    return Admission::Deliver {
                        summary: self.take_pending(),
                    };
                }
                Ok(_) => return Admission::Deliver { summary: 0 },
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes the suppressed occurrences not yet reported (the flush
    /// transition): the caller must report them in one summary.
    pub(crate) fn take_pending(&self) -> u64 {
        // The load keeps the common case (nothing pending) a read.
        if self.pending.get() == 0 {
            0
        } else {
            self.pending.replace(0)
        }
    }

    /// Closes the current window at `now_ms`: the next occurrence opens a
    /// new one (under whatever limit it is given). Pending counts stay.
    pub(crate) fn close(&self, now_ms: u64) {
        self.window
            .replace(pack(now_ms.wrapping_sub(CLOSED_AGO_MS), 0));
    }

    /// Every occurrence this limiter has suppressed.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.get()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! Threads firing through one limiter across a window change: every
    //! occurrence is delivered or reported in exactly one summary.

    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU64;
    use loom::thread;

    use super::*;

    /// What one thread saw: `(delivered, sum of summaries, suppressed)`.
    type Tally = (u64, u64, u64);

    fn fire(limiter: &Limiter<AtomicU64>, limit: RateLimit, now_ms: u64, tally: &mut Tally) {
        match limiter.admit(Some(limit), now_ms) {
            Admission::Deliver { summary } => {
                tally.0 += 1;
                tally.1 += summary;
            }
            Admission::Suppress => tally.2 += 1,
        }
    }

    /// One per 10 ms; the window at 0 is full before the threads start. One
    /// thread keeps firing in it (suppressed), one fires at 10 ms and opens
    /// the next window (taking the pending count), and the main thread fires
    /// at 10 ms too and then flushes.
    #[test]
    fn suppressions_racing_a_window_change_are_each_summarized_once() {
        loom::model(|| {
            let limit = RateLimit::new(1, Duration::from_millis(10));
            let limiter = Arc::new(Limiter::<AtomicU64>::new());
            let mut main = (0, 0, 0);
            fire(&limiter, limit, 0, &mut main);
            assert_eq!(main, (1, 0, 0));
            let spawn = |times: &'static [u64]| {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || {
                    let mut tally = (0, 0, 0);
                    for &now in times {
                        fire(&limiter, limit, now, &mut tally);
                    }
                    tally
                })
            };
            let old = spawn(&[0, 0]);
            let new = spawn(&[10]);
            fire(&limiter, limit, 10, &mut main);
            let tallies = [main, old.join().unwrap(), new.join().unwrap()];
            let flushed = limiter.take_pending();
            let fired = 5;
            let delivered: u64 = tallies.iter().map(|t| t.0).sum();
            let summarized: u64 = tallies.iter().map(|t| t.1).sum::<u64>() + flushed;
            let suppressed: u64 = tallies.iter().map(|t| t.2).sum();
            assert_eq!(delivered + suppressed, fired, "{tallies:?}");
            assert_eq!(summarized, suppressed, "{tallies:?} + {flushed}");
            assert_eq!(limiter.suppressed(), suppressed);
            assert_eq!(delivered, 2, "one per window, two windows: {tallies:?}");
            assert_eq!(limiter.take_pending(), 0);
        });
    }
}
