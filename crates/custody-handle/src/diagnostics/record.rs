//! [`Diagnostic`]: one report, its builder methods, and its two printed
//! forms (the human report and the JSON line).

use std::fmt::Write as _;
use std::io;

use serde::Serialize;

use super::assistant::Assistant;
use crate::history::{self, Event};
use crate::id::HandleId;
use crate::release::format_raw;

/// One diagnostic. See the module docs for the JSON form.
///
/// Non-exhaustive: build one with [`Diagnostic::new`] and the `with_*`
/// methods (or assign the public fields); new fields may be added.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Which assistant fired.
    pub assistant: Assistant,
    /// The one-paragraph summary.
    pub message: String,
    /// The thread it fired on.
    pub thread: String,
    /// The resource type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle_type: Option<String>,
    /// The raw value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<u64>,
    /// The raw value as `0x%08X`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
    /// A table id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<u32>,
    /// The OS error number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// The error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Likely causes, most likely first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// The raw value's handle history, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Event>,
    /// What the history points at, when it points at something: the other
    /// owner that released the value first, or where the raw value was
    /// copied out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub culprit: Option<String>,
    /// References that can no longer be released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outstanding: Option<usize>,
    /// The host domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<u64>,
    /// The guest or host function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Why a call was aborted or a domain recycled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A guest or host backtrace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
    /// Host-defined structured data (for example what a forced unload cut
    /// short), printed as-is in the JSON form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Diagnostic {
    /// A diagnostic with only its assistant, message and thread; the builder
    /// methods add the rest.
    pub fn new(assistant: Assistant, message: impl Into<String>) -> Self {
        Self {
            assistant,
            message: message.into(),
            thread: history::thread_label(),
            handle_type: None,
            raw_value: None,
            raw_hex: None,
            handle_id: None,
            errno: None,
            error: None,
            causes: Vec::new(),
            history: Vec::new(),
            culprit: None,
            outstanding: None,
            domain: None,
            function: None,
            reason: None,
            backtrace: None,
            detail: None,
        }
    }

    /// Names the handle: its type and raw value.
    pub fn with_handle(mut self, handle_type: &str, raw_value: u64) -> Self {
        self.handle_type = Some(handle_type.to_string());
        self.raw_value = Some(raw_value);
        self.raw_hex = Some(format_raw(raw_value));
        self
    }

    /// Names a table id.
    pub fn with_handle_id(mut self, id: HandleId) -> Self {
        self.handle_id = Some(id.raw());
        self
    }

    /// Adds the error (and its errno, if it is an OS error).
    pub fn with_error(mut self, error: &io::Error) -> Self {
        self.errno = error.raw_os_error();
        self.error = Some(error.to_string());
        self
    }

    /// Names the domain, function and reason of a host event.
    pub fn with_call(mut self, domain: u64, function: &str, reason: &str) -> Self {
        self.domain = Some(domain);
        self.function = Some(function.to_string());
        self.reason = Some(reason.to_string());
        self
    }

    /// Adds a backtrace.
    pub fn with_backtrace(mut self, backtrace: impl Into<String>) -> Self {
        self.backtrace = Some(backtrace.into());
        self
    }

    /// Adds host-defined structured data (the JSON field `detail`).
    pub fn with_detail(mut self, detail: impl Into<serde_json::Value>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The human-readable report, as printed to stderr. Every field is
    /// printed with its control characters escaped (a function name or a
    /// backtrace may come from a guest: it cannot break a line or drive the
    /// terminal).
    pub fn render(&self) -> String {
        let mut out = format!(
            "custody: {}: {}\n",
            self.assistant,
            escape_control(&self.message)
        );
        for (name, value) in [
            ("domain", self.domain.map(|d| d.to_string())),
            ("function", self.function.clone()),
            ("reason", self.reason.clone()),
            ("detail", self.detail.as_ref().map(|d| d.to_string())),
        ] {
            if let Some(value) = value {
                let _ = writeln!(out, "  {name}: {}", escape_control(&value));
            }
        }
        if let Some(culprit) = &self.culprit {
            let _ = writeln!(out, "  Culprit, from the history: {culprit}");
        }
        if !self.causes.is_empty() {
            out.push_str("  Likely causes, most likely first:\n");
            for cause in &self.causes {
                let _ = writeln!(out, "    - {cause}");
            }
        }
        if let Some(raw) = &self.raw_hex {
            if self.history.is_empty() {
                if self.assistant == Assistant::ReleaseHandleFailed {
                    let _ = writeln!(
                        out,
                        "  Run with CUSTODY_TRACE_HANDLES=1 to see the history of {raw}."
                    );
                }
            } else {
                let _ = writeln!(out, "  History of {raw}, oldest first:");
                for event in &self.history {
                    let _ = writeln!(out, "    {event}");
                    if let Some(bt) = &event.backtrace {
                        for line in bt.lines() {
                            let _ = writeln!(out, "        {line}");
                        }
                    }
                }
            }
        }
        if let Some(bt) = &self.backtrace {
            out.push_str("  Backtrace:\n");
            for line in bt.lines() {
                let _ = writeln!(out, "    {}", escape_control(line));
            }
        }
        out
    }

    /// The JSON-lines form (one line, no trailing newline; JSON escapes
    /// control characters itself).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"assistant\":\"{}\",\"error\":\"{e}\"}}", self.assistant)
        })
    }
}

/// `text` with every control character (newlines, escape bytes) written as
/// a Rust escape (`\\n`, `\\u{1b}`).
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
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
