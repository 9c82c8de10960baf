//! Where diagnostics go: the process-wide configuration (enabled set, stderr
//! format, counters), the in-process subscribers, the `tracing` events, and
//! [`fire`], which counts an occurrence and sends it to all of them.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use super::assistant::{Assistant, EnabledSet, UnknownAssistant};
use super::record::Diagnostic;
use crate::env::config_warning;

/// The target of the `tracing` event every fired diagnostic also emits.
pub const TRACING_TARGET: &str = "custody::diagnostics";

/// The stderr report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A human-readable report (the default).
    Human,
    /// One JSON object per line.
    Json,
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
            enabled: AtomicU32::new(enabled.bits()),
            format: AtomicU8::new(format as u8),
            stderr: AtomicBool::new(true),
            counts: Default::default(),
            subscribers: RwLock::new(Vec::new()),
            next_subscriber: AtomicU64::new(1),
        }
    })
}

/// Replaces the enabled set with `spec` applied to the defaults (the same
/// syntax as `CUSTODY_DIAGNOSTICS`).
///
/// # Errors
/// An unknown name; nothing changes.
pub fn configure(spec: &str) -> Result<(), UnknownAssistant> {
    let set = EnabledSet::defaults().apply(spec)?;
    global().enabled.store(set.bits(), Ordering::Relaxed);
    Ok(())
}

/// The enabled set.
pub fn enabled_set() -> EnabledSet {
    EnabledSet::from_bits(global().enabled.load(Ordering::Relaxed))
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

/// Turns the stderr sink on or off (subscribers and `tracing` still receive
/// everything).
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

/// Keeps the enabled diagnostics fired while it lives. Diagnostics are
/// process-wide: filter what you take by handle or domain when other threads
/// may be firing too.
///
/// [`Collector::start`] keeps everything (for tests and short tools);
/// [`Collector::bounded`] keeps only the most recent `capacity` and counts
/// the rest ([`dropped`](Collector::dropped)), so a guest that fires
/// diagnostics in a loop cannot grow the host's memory through it.
pub struct Collector {
    seen: Arc<std::sync::Mutex<Kept>>,
    _subscription: Subscription,
}

struct Kept {
    capacity: usize,
    diagnostics: std::collections::VecDeque<Diagnostic>,
    dropped: u64,
}

impl Collector {
    /// Starts collecting, keeping everything.
    pub fn start() -> Self {
        Self::bounded(usize::MAX)
    }

    /// Starts collecting, keeping the most recent `capacity` diagnostics.
    pub fn bounded(capacity: usize) -> Self {
        let seen = Arc::new(std::sync::Mutex::new(Kept {
            capacity,
            diagnostics: std::collections::VecDeque::new(),
            dropped: 0,
        }));
        let sink = Arc::clone(&seen);
        let subscription = subscribe(move |d| {
            let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.capacity == 0 {
                kept.dropped += 1;
                return;
            }
            if kept.diagnostics.len() == kept.capacity {
                kept.diagnostics.pop_front();
                kept.dropped += 1;
            }
            kept.diagnostics.push_back(d.clone());
        });
        Self {
            seen,
            _subscription: subscription,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything kept so far, oldest first (and clears it).
    pub fn take(&self) -> Vec<Diagnostic> {
        self.lock().diagnostics.drain(..).collect()
    }

    /// The kept diagnostics that match `filter` (not cleared).
    pub fn matching(&self, filter: impl Fn(&Diagnostic) -> bool) -> Vec<Diagnostic> {
        self.lock()
            .diagnostics
            .iter()
            .filter(|d| filter(d))
            .cloned()
            .collect()
    }

    /// How many diagnostics were not kept (past the capacity).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

/// Counts an occurrence and, if its assistant is enabled, builds the
/// diagnostic with `build` and sends it to the sinks: stderr (if on), a
/// `tracing` event (target [`TRACING_TARGET`]), and every subscriber.
/// Never panics.
pub fn fire(assistant: Assistant, build: impl FnOnce() -> Diagnostic) {
    let g = global();
    g.counts[assistant.index()].fetch_add(1, Ordering::Relaxed);
    if !is_enabled(assistant) {
        return;
    }
    let diagnostic = build();
    if g.stderr.load(Ordering::Relaxed) {
        let _ = io::stderr()
            .lock()
            .write_all(stderr_text(&diagnostic).as_bytes());
    }
    emit_tracing_event(&diagnostic);
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

/// The text the stderr sink prints for `diagnostic`, in the current format.
fn stderr_text(diagnostic: &Diagnostic) -> String {
    if global().format.load(Ordering::Relaxed) == Format::Json as u8 {
        diagnostic.to_json() + "\n"
    } else {
        diagnostic.render()
    }
}

/// The level of an assistant's `tracing` events: `INFO` for
/// `handleFinalized` (a leak candidate, normal Rust style), `WARN` for the
/// rest.
fn tracing_level(assistant: Assistant) -> tracing::Level {
    match assistant {
        Assistant::HandleFinalized => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    }
}

/// Emits `diagnostic` as a `tracing` event. With no `tracing` subscriber
/// installed this is a cached callsite-interest check: nothing is recorded
/// or formatted.
fn emit_tracing_event(diagnostic: &Diagnostic) {
    // One invocation per level: a callsite's level is static.
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: TRACING_TARGET,
                $level,
                assistant = diagnostic.assistant.name(),
                message = diagnostic.message.as_str(),
                domain = diagnostic.domain,
                handle_id = diagnostic.handle_id,
                handle_type = diagnostic.handle_type.as_deref(),
                raw_hex = diagnostic.raw_hex.as_deref(),
                errno = diagnostic.errno,
                function = diagnostic.function.as_deref(),
                reason = diagnostic.reason.as_deref(),
            )
        };
    }
    if tracing_level(diagnostic.assistant) == tracing::Level::INFO {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::WARN);
    }
}

/// Routes diagnostics through libtest's output capture, for this crate's
/// tests and (with the `testing` feature) for other crates' tests.
///
/// The stderr sink writes with `io::stderr()` directly, which libtest cannot
/// capture, so every diagnostic a passing test fires would clutter the test
/// output. Once per process, this turns the stderr sink off and subscribes a
/// callback that prints each diagnostic, in the stderr sink's format, with
/// `eprint!`: libtest captures that per test and shows it only when the test
/// fails (or with `--nocapture`). Call it first in every test that fires
/// diagnostics; later calls do nothing. The production default (the stderr
/// sink on) is untouched unless this is called.
#[cfg(any(test, feature = "testing"))]
pub fn capture_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        set_stderr(false);
        // Kept for the life of the process.
        std::mem::forget(subscribe(|d| eprint!("{}", stderr_text(d))));
    });
}
