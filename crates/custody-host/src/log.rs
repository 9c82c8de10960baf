//! Where guest log lines go: a [`LogSink`] the embedder chooses, stderr by
//! default. Every line is also a `tracing` event (target `custody::guest`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_handle::diagnostics::escape_control;

/// Where guest log lines go: `(domain, level 0..=4, text)`.
pub type LogSink = Arc<dyn Fn(u64, u8, &str) + Send + Sync>;

/// The names of the guest log levels, 0 to 4.
pub(crate) const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The default log sink: one line per message on stderr.
pub fn stderr_log() -> LogSink {
    Arc::new(|domain, level, text| {
        let level = LEVELS.get(usize::from(level)).unwrap_or(&"?");
        eprintln!("custody: domain {domain}: {level}: {text}");
    })
}

/// Sends one guest line, escaped, to `sink` and to `tracing`.
pub(crate) fn guest_line(sink: &LogSink, domain: u64, level: u8, text: &str) {
    // One line, no control characters: a newline could forge a log line,
    // an escape sequence could drive the terminal.
    let text = &*escape_control(text);
    match level {
        0 => tracing::error!(target: "custody::guest", domain, "{text}"),
        1 => tracing::warn!(target: "custody::guest", domain, "{text}"),
        2 => tracing::info!(target: "custody::guest", domain, "{text}"),
        3 => tracing::debug!(target: "custody::guest", domain, "{text}"),
        _ => tracing::trace!(target: "custody::guest", domain, "{text}"),
    }
    sink(domain, level, text);
}

/// A domain's guest log budget: at most `per_second` lines in any window
/// of a second; the rest are dropped and counted, and the next line that
/// passes (or the domain's end) says how many were.
#[derive(Debug)]
pub(crate) struct LogBudget {
    per_second: u32,
    window: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

const WINDOW: Duration = Duration::from_secs(1);

impl LogBudget {
    pub(crate) fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            window: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may go out at `now`; `Some(n)` with it if `n` lines
    /// were suppressed before it (to be said first).
    pub(crate) fn admit(&mut self, now: Instant) -> (bool, Option<u64>) {
        if self
            .window
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            self.window = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.per_second {
            self.suppressed += 1;
            return (false, None);
        }
        self.in_window += 1;
        (true, self.take_suppressed())
    }

    /// Lines suppressed and not yet said.
    pub(crate) fn take_suppressed(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.suppressed)).filter(|n| *n > 0)
    }
}

/// The line that stands for `n` suppressed guest lines.
pub(crate) fn suppressed_line(n: u64, per_second: u32) -> String {
    format!("{n} more guest log line(s) suppressed (rate limit: {per_second} per second)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_admits_its_rate_and_counts_the_rest() {
        let mut budget = LogBudget::new(2);
        let t0 = Instant::now();
        assert_eq!(budget.admit(t0), (true, None));
        assert_eq!(budget.admit(t0), (true, None));
        for _ in 0..5 {
            assert_eq!(budget.admit(t0), (false, None));
        }
        let t1 = t0 + WINDOW;
        assert_eq!(budget.admit(t1), (true, Some(5)), "said before the next");
        assert_eq!(budget.admit(t1), (true, None));
        assert_eq!(budget.admit(t1), (false, None));
        assert_eq!(budget.take_suppressed(), Some(1), "said at the end");
        assert_eq!(budget.take_suppressed(), None);
    }
}
