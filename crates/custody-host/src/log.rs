//! Where guest log lines go: a [`LogSink`] the embedder chooses, stderr by
//! default. Every line is also a `tracing` event (target `custody::guest`).

use std::sync::Arc;

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

/// Sends one guest line to `sink` and to `tracing`.
pub(crate) fn guest_line(sink: &LogSink, domain: u64, level: u8, text: &str) {
    match level {
        0 => tracing::error!(target: "custody::guest", domain, "{text}"),
        1 => tracing::warn!(target: "custody::guest", domain, "{text}"),
        2 => tracing::info!(target: "custody::guest", domain, "{text}"),
        3 => tracing::debug!(target: "custody::guest", domain, "{text}"),
        _ => tracing::trace!(target: "custody::guest", domain, "{text}"),
    }
    sink(domain, level, text);
}
