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

/// Guest text made safe to print: one line, no control characters (a
/// newline could forge a log line, an escape sequence could drive the
/// terminal). Control characters become Rust escapes (`\n`, `\u{1b}`);
/// text without any is returned as is.
pub(crate) fn escape_guest_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Sends one guest line, escaped, to `sink` and to `tracing`.
pub(crate) fn guest_line(sink: &LogSink, domain: u64, level: u8, text: &str) {
    let text = &*escape_guest_text(text);
    match level {
        0 => tracing::error!(target: "custody::guest", domain, "{text}"),
        1 => tracing::warn!(target: "custody::guest", domain, "{text}"),
        2 => tracing::info!(target: "custody::guest", domain, "{text}"),
        3 => tracing::debug!(target: "custody::guest", domain, "{text}"),
        _ => tracing::trace!(target: "custody::guest", domain, "{text}"),
    }
    sink(domain, level, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_is_one_line_without_control_characters() {
        assert_eq!(escape_guest_text("plain text, é"), "plain text, é");
        assert_eq!(
            escape_guest_text("ok\ncustody: forged\r\u{1b}[31mred\u{7}"),
            "ok\\ncustody: forged\\r\\u{1b}[31mred\\u{7}"
        );
        assert!(
            !escape_guest_text("a\u{85}b\u{0}")
                .chars()
                .any(char::is_control)
        );
    }
}
