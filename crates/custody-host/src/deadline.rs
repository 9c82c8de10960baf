//! Instants from durations that users, policy files and guests choose.
//!
//! custody accepts any `Duration` up to `Duration::MAX` wherever one is
//! configured or asked for (a deadline, a wait, a timer delay, a timeout).
//! `Instant + Duration` panics past what the monotonic clock can represent,
//! and `Duration::MAX` is past it, so no code adds to an `Instant` itself:
//! it asks [`after`], which saturates at [`NEVER`], a span no process lives
//! through. A deadline that far away never passes, which is what its
//! chooser meant.

use std::time::{Duration, Instant};

/// The longest span custody waits or counts: 100 years. Longer durations
/// are this one (they would end no sooner in practice), and it stays far
/// inside what `Instant`, `poll(2)`'s timespec and a condition variable's
/// timeout can hold.
pub(crate) const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `span` after now, saturated at [`NEVER`] from now.
#[inline]
pub(crate) fn after(span: Duration) -> Instant {
    at(Instant::now(), span)
}

/// The instant `span` after `from`, saturated at [`NEVER`] after it.
#[inline]
pub(crate) fn at(from: Instant, span: Duration) -> Instant {
    from + span.min(NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_gives_an_instant() {
        let now = Instant::now();
        for span in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let when = at(now, span);
            assert!(when >= now);
            assert!(when - now <= NEVER);
        }
        assert_eq!(
            at(now, Duration::from_secs(1)) - now,
            Duration::from_secs(1)
        );
    }
}
