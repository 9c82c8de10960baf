//! Where diagnostics go: the process-wide configuration (enabled set, stderr
//! format, rate limit, counters), the in-process subscribers, the `tracing`
//! events, and [`fire`], which counts an occurrence, applies the rate limit
//! and sends it to all of them.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use super::assistant::{Assistant, EnabledSet, UnknownAssistant};
use super::rate::{Admission, Limiter, RateLimit};
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
    /// The rate limit, [`RateLimit::to_bits`] (0: off).
    rate_limit: AtomicU64,
    /// One per assistant, indexed like `counts`.
    limiters: [Limiter; Assistant::ALL.len()],
    /// Time 0 of the limiters' clock.
    epoch: Instant,
    subscribers: RwLock<Vec<(u64, Callback)>>,
    next_subscriber: AtomicU64,
}

impl Global {
    /// The limiters' clock: milliseconds since `epoch` (monotonic).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
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
        let rate_limit = match std::env::var("CUSTODY_DIAGNOSTICS_RATE").as_deref() {
            Err(_) | Ok("") => Some(RateLimit::DEFAULT),
            Ok(spec) => RateLimit::parse_env(spec).unwrap_or_else(|e| {
                config_warning(&format!(
                    "CUSTODY_DIAGNOSTICS_RATE: {e}; using {}",
                    RateLimit::DEFAULT
                ));
                Some(RateLimit::DEFAULT)
            }),
        };
        Global {
            enabled: AtomicU32::new(enabled.bits()),
            format: AtomicU8::new(format as u8),
            stderr: AtomicBool::new(true),
            counts: Default::default(),
            rate_limit: AtomicU64::new(RateLimit::to_bits(rate_limit)),
            limiters: Default::default(),
            epoch: Instant::now(),
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
/// whether or not it was enabled, and whether or not it was suppressed by the
/// rate limit.
pub fn count(assistant: Assistant) -> u64 {
    global().counts[assistant.index()].load(Ordering::Relaxed)
}

/// Sets the rate limit every assistant is held to (`None`: off). It applies
/// from the next occurrence, which opens a new window for its assistant.
/// Suppressed occurrences not yet summarized keep waiting for their summary
/// (with the limit off, the assistant's next delivery carries it).
pub fn set_rate_limit(limit: Option<RateLimit>) {
    let g = global();
    g.rate_limit
        .store(RateLimit::to_bits(limit), Ordering::Relaxed);
    let now_ms = g.now_ms();
    for limiter in &g.limiters {
        limiter.close(now_ms);
    }
}

/// The rate limit (`None`: off). [`RateLimit::DEFAULT`] unless
/// `CUSTODY_DIAGNOSTICS_RATE` or [`set_rate_limit`] changed it.
pub fn rate_limit() -> Option<RateLimit> {
    RateLimit::from_bits(global().rate_limit.load(Ordering::Relaxed))
}

/// How many occurrences of an assistant the rate limit has suppressed in
/// this process (each is, or will be, reported in one summary).
pub fn suppressed(assistant: Assistant) -> u64 {
    global().limiters[assistant.index()].suppressed()
}

/// Delivers now, for every enabled assistant, the summary of the occurrences
/// suppressed since its last summary, instead of waiting for its next
/// delivery; returns how many occurrences the summaries reported. Call it
/// before exiting, so that a flood at the very end is still reported. A
/// disabled assistant's pending count waits until it is enabled again.
pub fn flush_suppressed() -> u64 {
    let g = global();
    let limit = rate_limit();
    let mut reported = 0;
    for assistant in Assistant::ALL {
        if !is_enabled(assistant) {
            continue;
        }
        let pending = g.limiters[assistant.index()].take_pending();
        if pending > 0 {
            deliver(g, &summary(assistant, pending, limit));
            reported += pending;
        }
    }
    reported
}

/// The summary of `suppressed` occurrences of `assistant`.
pub(super) fn summary(
    assistant: Assistant,
    suppressed: u64,
    limit: Option<RateLimit>,
) -> Diagnostic {
    let plural = if suppressed == 1 { "" } else { "s" };
    let limit = match limit {
        Some(limit) => format!("rate limit: {limit}"),
        None => "by a rate limit since turned off".to_string(),
    };
    Diagnostic::new(
        assistant,
        format!("{suppressed} more {assistant} diagnostic{plural} suppressed ({limit})"),
    )
    .with_detail(serde_json::json!({ "suppressed": suppressed }))
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

/// Counts an occurrence and, if its assistant is enabled and within the
/// rate limit, builds the diagnostic with `build` and sends it to the sinks:
/// stderr (if on), a `tracing` event (target [`TRACING_TARGET`]), and every
/// subscriber. Never panics.
///
/// Past the rate limit ([`rate_limit`]) the occurrence is suppressed: counted
/// ([`count`], [`suppressed`]) but neither built nor sent. The assistant's
/// first delivery in a later window is preceded by a summary diagnostic of
/// the same assistant, "N more NAME diagnostics suppressed (rate limit:
/// ...)", with `detail` `{"suppressed": N}` ([`flush_suppressed`] sends the
/// summaries at once).
pub fn fire(assistant: Assistant, build: impl FnOnce() -> Diagnostic) {
    let g = global();
    let index = assistant.index();
    g.counts[index].fetch_add(1, Ordering::Relaxed);
    if !is_enabled(assistant) {
        return;
    }
    let limit = RateLimit::from_bits(g.rate_limit.load(Ordering::Relaxed));
    let now_ms = if limit.is_some() { g.now_ms() } else { 0 };
    match g.limiters[index].admit(limit, now_ms) {
        Admission::Suppress => return,
        Admission::Deliver { summary: 0 } => {}
        Admission::Deliver { summary: n } => deliver(g, &summary(assistant, n, limit)),
    }
    deliver(g, &build());
}

/// Sends `diagnostic` to every sink.
fn deliver(g: &Global, diagnostic: &Diagnostic) {
    if g.stderr.load(Ordering::Relaxed) {
        let _ = io::stderr()
            .lock()
            .write_all(stderr_text(diagnostic).as_bytes());
    }
    emit_tracing_event(diagnostic);
    // Clone the list so a callback may subscribe or unsubscribe.
    let subscribers: Vec<Callback> = g
        .subscribers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, cb)| Arc::clone(cb))
        .collect();
    for callback in subscribers {
        callback(diagnostic);
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
/// diagnostics; later calls do nothing.
///
/// It also turns the rate limit off ([`set_rate_limit`]`(None)`), so that
/// tests that count what they fired see every diagnostic whatever else runs
/// in the process; a test of the rate limit sets one after calling this.
///
/// The production defaults (the stderr sink on, the rate limit on) are
/// untouched unless this is called.
#[cfg(any(test, feature = "testing"))]
pub fn capture_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        set_stderr(false);
        set_rate_limit(None);
        // Kept for the life of the process. custody's own threads (named
        // `custody-*`: timer workers, the epoch ticker) outlive the test
        // that started them, and libtest captures no output of theirs:
        // what they report goes to subscribers only, not to stderr.
        std::mem::forget(subscribe(|d| {
            let thread = std::thread::current();
            if !thread.name().is_some_and(|n| n.starts_with("custody-")) {
                eprint!("{}", stderr_text(d));
            }
        }));
    });
}
