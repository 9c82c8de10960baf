//! Diagnostics: custody's managed debugging assistants.
//!
//! .NET's MDAs (`releaseHandleFailed` and friends) are opt-in, debugger-only
//! and say little. custody's fire in production, name the type, the value and
//! the likely cause, and can be routed anywhere.
//!
//! | assistant | default | fires when |
//! | --- | --- | --- |
//! | `releaseHandleFailed` | on | `release_handle` returned `Err` |
//! | `staleHandleUse` | on | a table id that is closed or was never issued is used |
//! | `handleFinalized` | off | a handle was released by dropping its last clone instead of `dispose` |
//! | `outstandingReferences` | on | the last clone dropped while manual add-refs were outstanding |
//! | `unloadBlocked`, `callAborted`, `domainRecycled` | on | host events |
//!
//! # Configuration
//! `CUSTODY_DIAGNOSTICS` is a comma-separated list applied left to right to
//! the defaults: `all`, `none`, `NAME` (enable), `-NAME` (disable). For
//! example `none,releaseHandleFailed` or `all,-staleHandleUse`. The API
//! equivalents are [`configure`], [`set_enabled`] and [`is_enabled`].
//!
//! # Sinks
//! - stderr, on by default: a human-readable report per diagnostic, or one
//!   JSON object per line with `CUSTODY_DIAGNOSTICS_FORMAT=json` (or
//!   [`set_format`]). [`set_stderr`] turns it off.
//! - in-process: [`subscribe`] registers a callback that receives every
//!   enabled [`Diagnostic`]; [`Collector`] keeps them for inspection.
//!
//! Every assistant also has a counter, incremented whether or not it is
//! enabled: [`count`].
//!
//! # JSON fields
//! One object per diagnostic; absent fields are omitted.
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `assistant` | string | e.g. `"releaseHandleFailed"` |
//! | `message` | string | the one-paragraph human summary |
//! | `thread` | string | the thread it fired on |
//! | `handle_type` | string | the resource type (Rust path) |
//! | `raw_value` | number | the raw value |
//! | `raw_hex` | string | the raw value as `0x%08X` |
//! | `handle_id` | number | a table id |
//! | `errno` | number | the OS error number |
//! | `error` | string | the error text |
//! | `causes` | array of strings | the likely causes, most likely first |
//! | `history` | array of events | the raw value's handle history (see [`crate::history::Event`]) |
//! | `outstanding` | number | references that can no longer be released |
//! | `domain` | number | the host domain id |
//! | `function` | string | the guest or host function |
//! | `reason` | string | why a call was aborted or a domain recycled |
//! | `backtrace` | string | a guest or host backtrace |

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use serde::Serialize;

use crate::history::{self, Event, EventKind};
use crate::release::format_raw;
use crate::table::HandleId;

/// One assistant: a kind of diagnostic that can be enabled or disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assistant {
    /// `release_handle` failed. On by default.
    ReleaseHandleFailed,
    /// A stale or never-issued table id was used. On by default.
    StaleHandleUse,
    /// A handle was released by its last clone's drop, not by `dispose`.
    /// Off by default (it is normal Rust style; turn it on to hunt leaks).
    HandleFinalized,
    /// The last clone dropped with add-refs outstanding: the resource leaks.
    /// On by default.
    OutstandingReferences,
    /// A domain's unload is blocked. On by default.
    UnloadBlocked,
    /// A guest call was aborted. On by default.
    CallAborted,
    /// A domain was recycled. On by default.
    DomainRecycled,
}

impl Assistant {
    /// Every assistant.
    pub const ALL: [Assistant; 7] = [
        Assistant::ReleaseHandleFailed,
        Assistant::StaleHandleUse,
        Assistant::HandleFinalized,
        Assistant::OutstandingReferences,
        Assistant::UnloadBlocked,
        Assistant::CallAborted,
        Assistant::DomainRecycled,
    ];

    /// The name used in configuration and reports, e.g. `releaseHandleFailed`.
    pub fn name(self) -> &'static str {
        match self {
            Assistant::ReleaseHandleFailed => "releaseHandleFailed",
            Assistant::StaleHandleUse => "staleHandleUse",
            Assistant::HandleFinalized => "handleFinalized",
            Assistant::OutstandingReferences => "outstandingReferences",
            Assistant::UnloadBlocked => "unloadBlocked",
            Assistant::CallAborted => "callAborted",
            Assistant::DomainRecycled => "domainRecycled",
        }
    }

    /// The assistant with this name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Assistant> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether it is on when nothing configures it.
    pub fn enabled_by_default(self) -> bool {
        self != Assistant::HandleFinalized
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Serialize for Assistant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of enabled assistants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnabledSet(u32);

impl EnabledSet {
    /// The defaults: everything but `handleFinalized`.
    pub fn defaults() -> Self {
        Self(
            Assistant::ALL
                .into_iter()
                .filter(|a| a.enabled_by_default())
                .fold(0, |bits, a| bits | a.bit()),
        )
    }

    /// Whether `assistant` is in the set.
    pub fn contains(self, assistant: Assistant) -> bool {
        self.0 & assistant.bit() != 0
    }

    /// Applies a `CUSTODY_DIAGNOSTICS`-style list to this set.
    ///
    /// # Errors
    /// The first unknown name; the set is left unchanged.
    pub fn apply(self, spec: &str) -> Result<Self, UnknownAssistant> {
        let all = Assistant::ALL.into_iter().fold(0, |b, a| b | a.bit());
        let mut bits = self.0;
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (enable, name) = match token.strip_prefix('-') {
                Some(name) => (false, name),
                None => (true, token.strip_prefix('+').unwrap_or(token)),
            };
            let mask = match name.to_ascii_lowercase().as_str() {
                "all" => all,
                "none" => {
                    // "-none" would mean "all"; keep it simple and literal.
                    if enable {
                        bits = 0;
                        continue;
                    }
                    all
                }
                _ => Assistant::from_name(name)
                    .ok_or_else(|| UnknownAssistant(name.to_string()))?
                    .bit(),
            };
            if enable {
                bits |= mask;
            } else {
                bits &= !mask;
            }
        }
        Ok(Self(bits))
    }
}

/// A name in a diagnostics list that is not an assistant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown diagnostic {0:?}; known: all, none, releaseHandleFailed, staleHandleUse, handleFinalized, outstandingReferences, unloadBlocked, callAborted, domainRecycled"
)]
pub struct UnknownAssistant(pub String);

/// The stderr report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A human-readable report (the default).
    Human,
    /// One JSON object per line.
    Json,
}

/// One diagnostic. See the module docs for the JSON form.
#[derive(Clone, Debug, Serialize)]
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

    /// The human-readable report, as printed to stderr.
    pub fn render(&self) -> String {
        let mut out = format!("custody: {}: {}\n", self.assistant, self.message);
        for (name, value) in [
            ("domain", self.domain.map(|d| d.to_string())),
            ("function", self.function.clone()),
            ("reason", self.reason.clone()),
        ] {
            if let Some(value) = value {
                let _ = writeln!(out, "  {name}: {value}");
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
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// The JSON-lines form (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"assistant\":\"{}\",\"error\":\"{e}\"}}", self.assistant)
        })
    }
}

type Callback = Arc<dyn Fn(&Diagnostic) + Send + Sync>;

struct Global {
    enabled: AtomicU32,
    format: AtomicU8,
    stderr: AtomicBool,
    counts: [AtomicU64; Assistant::ALL.len()],
    subscribers: RwLock<Vec<(u64, Callback)>>,
    next_subscriber: AtomicU64,
}

fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let mut enabled = EnabledSet::defaults();
        if let Ok(spec) = std::env::var("CUSTODY_DIAGNOSTICS") {
            match enabled.apply(&spec) {
                Ok(set) => enabled = set,
                Err(e) => config_warning(&format!("CUSTODY_DIAGNOSTICS: {e}; using the defaults")),
            }
        }
        let format = match std::env::var("CUSTODY_DIAGNOSTICS_FORMAT").as_deref() {
            Ok("json") => Format::Json,
            Ok("human") | Ok("") | Err(_) => Format::Human,
            Ok(other) => {
                config_warning(&format!(
                    "CUSTODY_DIAGNOSTICS_FORMAT={other:?} is not human or json; using human"
                ));
                Format::Human
            }
        };
        Global {
            enabled: AtomicU32::new(enabled.0),
            format: AtomicU8::new(format as u8),
            stderr: AtomicBool::new(true),
            counts: Default::default(),
            subscribers: RwLock::new(Vec::new()),
            next_subscriber: AtomicU64::new(1),
        }
    })
}

/// Prints a configuration problem once to stderr (never panics).
pub(crate) fn config_warning(message: &str) {
    let _ = writeln!(io::stderr(), "custody: configuration: {message}");
}

/// Replaces the enabled set with `spec` applied to the defaults (the same
/// syntax as `CUSTODY_DIAGNOSTICS`).
///
/// # Errors
/// An unknown name; nothing changes.
pub fn configure(spec: &str) -> Result<(), UnknownAssistant> {
    let set = EnabledSet::defaults().apply(spec)?;
    global().enabled.store(set.0, Ordering::Relaxed);
    Ok(())
}

/// The enabled set.
pub fn enabled_set() -> EnabledSet {
    EnabledSet(global().enabled.load(Ordering::Relaxed))
}

/// Enables or disables one assistant.
pub fn set_enabled(assistant: Assistant, on: bool) {
    let enabled = &global().enabled;
    if on {
        enabled.fetch_or(assistant.bit(), Ordering::Relaxed);
    } else {
        enabled.fetch_and(!assistant.bit(), Ordering::Relaxed);
    }
}

/// Whether an assistant is enabled.
pub fn is_enabled(assistant: Assistant) -> bool {
    enabled_set().contains(assistant)
}

/// Sets the stderr format.
pub fn set_format(format: Format) {
    global().format.store(format as u8, Ordering::Relaxed);
}

/// Turns the stderr sink on or off (subscribers still receive everything).
pub fn set_stderr(on: bool) {
    global().stderr.store(on, Ordering::Relaxed);
}

/// How many times an assistant's condition has occurred in this process,
/// whether or not it was enabled.
pub fn count(assistant: Assistant) -> u64 {
    global().counts[assistant.index()].load(Ordering::Relaxed)
}

/// A registered in-process subscriber; dropping it unsubscribes.
#[must_use = "dropping the subscription unsubscribes at once"]
pub struct Subscription {
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = global()
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|(id, _)| *id != self.id);
    }
}

/// Calls `callback` with every enabled diagnostic, on the thread where it
/// fires, until the returned [`Subscription`] is dropped.
pub fn subscribe(callback: impl Fn(&Diagnostic) + Send + Sync + 'static) -> Subscription {
    let g = global();
    let id = g.next_subscriber.fetch_add(1, Ordering::Relaxed);
    g.subscribers
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, Arc::new(callback)));
    Subscription { id }
}

/// Keeps every enabled diagnostic fired while it lives. Diagnostics are
/// process-wide: filter what you take by handle or domain when other threads
/// may be firing too.
pub struct Collector {
    seen: Arc<std::sync::Mutex<Vec<Diagnostic>>>,
    _subscription: Subscription,
}

impl Collector {
    /// Starts collecting.
    pub fn start() -> Self {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let subscription = subscribe(move |d| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(d.clone());
        });
        Self {
            seen,
            _subscription: subscription,
        }
    }

    /// Everything collected so far (and clears it).
    pub fn take(&self) -> Vec<Diagnostic> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The collected diagnostics that match `filter` (not cleared).
    pub fn matching(&self, filter: impl Fn(&Diagnostic) -> bool) -> Vec<Diagnostic> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|d| filter(d))
            .cloned()
            .collect()
    }
}

/// Counts an occurrence and, if its assistant is enabled, builds the
/// diagnostic with `build` and sends it to the sinks. Never panics.
pub fn fire(assistant: Assistant, build: impl FnOnce() -> Diagnostic) {
    let g = global();
    g.counts[assistant.index()].fetch_add(1, Ordering::Relaxed);
    if !is_enabled(assistant) {
        return;
    }
    let diagnostic = build();
    if g.stderr.load(Ordering::Relaxed) {
        let text = if g.format.load(Ordering::Relaxed) == Format::Json as u8 {
            diagnostic.to_json() + "\n"
        } else {
            diagnostic.render()
        };
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
    // Clone the list so a callback may subscribe or unsubscribe.
    let subscribers: Vec<Callback> = g
        .subscribers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, cb)| Arc::clone(cb))
        .collect();
    for callback in subscribers {
        callback(&diagnostic);
    }
}

/// The causes a `releaseHandleFailed` report lists, in custody's words,
/// after the seeds' list.
pub const RELEASE_FAILED_CAUSES: [&str; 4] = [
    "the raw value was copied out (dangerous_get_handle, as_raw_fd) and closed directly, outside the handle",
    "a second owning wrapper was built around the same raw value (double ownership); wrap values you do not own with owns_handle = false",
    "a bitwise copy of the value was made instead of an OS-level duplicate (dup), so two owners release one value",
    "a double close elsewhere in a shared namespace (all fds are one namespace) closed this value after it was reused for an unrelated resource",
];

pub(crate) fn release_handle_failed(handle_type: &'static str, raw: u64, error: &io::Error) {
    fire(Assistant::ReleaseHandleFailed, || {
        let mut d = Diagnostic::new(
            Assistant::ReleaseHandleFailed,
            format!(
                "a SafeHandle or CriticalHandle of type '{handle_type}' failed to release the handle with value {}: {error}. The resource may have leaked, or another owner released it first.",
                format_raw(raw)
            ),
        )
        .with_handle(handle_type, raw)
        .with_error(error);
        d.causes = RELEASE_FAILED_CAUSES
            .iter()
            .map(|c| c.to_string())
            .collect();
        d.history = history::history_of(raw);
        d.culprit = culprit(&d.history);
        d
    });
}

/// Reads a failed release's history backwards from the failure: another
/// owner's successful release of the same value is the culprit; failing
/// that, the failing owner's own `dangerous_get_handle` is the likely leak
/// of the raw value.
fn culprit(history: &[Event]) -> Option<String> {
    let failure = history
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::ReleaseFailed(_)))?;
    let failing_owner = history[failure].owner;
    let before = &history[..failure];
    if let Some(other) = before
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::ReleaseHandle && e.owner != failing_owner)
    {
        return Some(format!(
            "owner {} ({}) released this value first (event #{}, on thread {}); owner {} then failed to release it",
            other.owner, other.handle_type, other.seq, other.thread, failing_owner
        ));
    }
    before
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::GetHandle && e.owner == failing_owner)
        .map(|copy| {
            format!(
                "the raw value was copied out with dangerous_get_handle (event #{}, on thread {}) and no custody owner released it: look there for a direct close",
                copy.seq, copy.thread
            )
        })
}

pub(crate) fn handle_finalized(handle_type: &'static str, raw: u64) {
    fire(Assistant::HandleFinalized, || {
        Diagnostic::new(
            Assistant::HandleFinalized,
            format!(
                "a handle of type '{handle_type}' with value {} was released because its last clone was dropped, not by dispose: if that was not intended, it is a leak candidate",
                format_raw(raw)
            ),
        )
        .with_handle(handle_type, raw)
    });
}

/// The last clone dropped with the count not back to zero: `Some(n)` add-refs
/// were never released (the resource leaks), or `None` the count went below
/// zero (more releases than add-refs; the resource was released at most
/// once).
pub(crate) fn unbalanced_references(
    handle_type: &'static str,
    raw: u64,
    outstanding: Option<usize>,
) {
    fire(Assistant::OutstandingReferences, || {
        let value = format_raw(raw);
        let message = match outstanding {
            Some(n) => format!(
                "the last clone of a handle of type '{handle_type}' with value {value} was dropped with {n} add-ref(s) never released: the resource leaks (dangerous_add_ref without dangerous_release)"
            ),
            None => format!(
                "the reference count of a handle of type '{handle_type}' with value {value} went below zero: dangerous_release was called more often than dangerous_add_ref (the resource was released at most once)"
            ),
        };
        let mut d = Diagnostic::new(Assistant::OutstandingReferences, message)
            .with_handle(handle_type, raw);
        d.outstanding = outstanding;
        d.history = history::history_of(raw);
        d
    });
}

pub(crate) fn stale_handle_use(id: HandleId, domain: Option<u64>, why: &str) {
    fire(Assistant::StaleHandleUse, || {
        let mut d = Diagnostic::new(
            Assistant::StaleHandleUse,
            format!("handle id {id} was used but {why}"),
        )
        .with_handle_id(id);
        d.domain = domain;
        d
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn defaults_exclude_only_handle_finalized() {
        let d = EnabledSet::defaults();
        for a in Assistant::ALL {
            assert_eq!(d.contains(a), a != Assistant::HandleFinalized, "{a}");
        }
    }

    #[test]
    fn spec_lists_apply_left_to_right() {
        let d = EnabledSet::defaults();
        let none = d.apply("none").unwrap();
        assert!(Assistant::ALL.iter().all(|&a| !none.contains(a)));
        let all = d.apply("all").unwrap();
        assert!(Assistant::ALL.iter().all(|&a| all.contains(a)));

        let one = d.apply("none,releaseHandleFailed").unwrap();
        assert!(one.contains(Assistant::ReleaseHandleFailed));
        assert!(!one.contains(Assistant::StaleHandleUse));

        let minus = d.apply("all, -staleHandleUse").unwrap();
        assert!(minus.contains(Assistant::HandleFinalized));
        assert!(!minus.contains(Assistant::StaleHandleUse));

        let plus = d.apply("handlefinalized").unwrap();
        assert!(
            plus.contains(Assistant::HandleFinalized),
            "names are case-insensitive"
        );

        assert_eq!(d.apply("").unwrap(), d);
        assert_eq!(d.apply(" , ,").unwrap(), d);
    }

    #[test]
    fn unknown_names_are_rejected_whole() {
        let err = EnabledSet::defaults()
            .apply("none,releaseHandleFailed,bogus")
            .unwrap_err();
        assert_eq!(err, UnknownAssistant("bogus".into()));
        assert!(err.to_string().contains("releaseHandleFailed"));
    }

    #[test]
    fn names_round_trip() {
        for a in Assistant::ALL {
            assert_eq!(Assistant::from_name(a.name()), Some(a));
        }
        assert_eq!(Assistant::from_name("nope"), None);
    }

    #[test]
    fn json_form_names_fields() {
        let d = Diagnostic::new(Assistant::ReleaseHandleFailed, "msg")
            .with_handle("my::Type", 0xBEEF)
            .with_error(&io::Error::from_raw_os_error(libc::EBADF));
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(v["assistant"], "releaseHandleFailed");
        assert_eq!(v["raw_hex"], "0x0000BEEF");
        assert_eq!(v["raw_value"], 0xBEEF);
        assert_eq!(v["errno"], libc::EBADF);
        assert_eq!(v["handle_type"], "my::Type");
        assert!(v.get("domain").is_none(), "absent fields are omitted");
    }
}
