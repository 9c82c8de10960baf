//! A call that runs long gets a share of a core, not a core: past the
//! policy's `throttle_after`, a running guest pauses at each epoch check
//! for as long as it ran since the last one, times `(100 - share) / share`.
//! On a machine with few cores a guest that spins (until its deadline, or
//! forever without one) then leaves the other domains' calls most of the
//! CPU; its own call only takes longer. The pause is the domain's one wait,
//! so an abort, an unload or the deadline ends it at once.
//!
//! The kernel could do this with a lower priority for the thread
//! (`SCHED_IDLE`), but an unprivileged thread cannot raise its priority
//! back (`RLIMIT_NICE`), and the thread goes on to serve other calls.

use std::time::{Duration, Instant};

use crate::config::MIN_THROTTLE_SHARE as MIN_SHARE;

/// One domain's throttle: the policy's threshold and share, and where the
/// current call is.
#[derive(Debug)]
pub(crate) struct Throttle {
    after: Duration,
    /// Percent of a core a long call gets, `MIN_SHARE..=100`.
    share: u32,
    /// When the current call began.
    began: Instant,
    /// When the guest last resumed (the call began, or its last pause ended).
    resumed: Instant,
}

impl Throttle {
    /// A throttle for calls longer than `after`, with `share` percent of a
    /// core (clamped to `MIN_SHARE..=100`); none for a share of 100.
    pub(crate) fn new(after: Duration, share: u8) -> Option<Throttle> {
        let share = share.clamp(MIN_SHARE, 100);
        let now = Instant::now();
        (share < 100).then_some(Throttle {
            after,
            share: u32::from(share),
            began: now,
            resumed: now,
        })
    }

    /// A call begins now.
    pub(crate) fn begin(&mut self, now: Instant) {
        self.began = now;
        self.resumed = now;
    }

    /// At an epoch check at `now`: how long to pause, if the call has run
    /// past the threshold.
    pub(crate) fn pause(&self, now: Instant) -> Option<Duration> {
        if now.saturating_duration_since(self.began) < self.after {
            return None;
        }
        let ran = now.saturating_duration_since(self.resumed);
        let pause = ran.saturating_mul(100 - self.share) / self.share;
        (!pause.is_zero()).then_some(pause)
    }

    /// The guest resumes at `now`, its pause over.
    pub(crate) fn resumed(&mut self, now: Instant) {
        self.resumed = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_call_pauses_in_proportion_to_what_it_ran() {
        let ms = Duration::from_millis;
        let mut throttle = Throttle::new(ms(10), 25).expect("a share under 100");
        let t0 = Instant::now();
        throttle.begin(t0);
        assert_eq!(throttle.pause(t0 + ms(4)), None, "not past the threshold");
        // Ran 12 ms since it began: 3 ms of pause for each 1 ms run.
        assert_eq!(throttle.pause(t0 + ms(12)), Some(ms(36)));
        throttle.resumed(t0 + ms(48));
        assert_eq!(throttle.pause(t0 + ms(50)), Some(ms(6)));
        throttle.begin(t0 + ms(60));
        assert_eq!(throttle.pause(t0 + ms(62)), None, "a new call starts over");
        assert!(
            Throttle::new(ms(10), 100).is_none(),
            "a whole core: no throttle"
        );
        let floor = Throttle::new(Duration::ZERO, 1).expect("clamped up");
        assert_eq!(floor.share, u32::from(MIN_SHARE));
        // A century run: the pause saturates instead of overflowing.
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        let far = floor.pause(floor.resumed + century);
        assert_eq!(far, Some(century.saturating_mul(9)));
    }
}
