//! Handle history: the culprit finder.
//!
//! The `releaseHandleFailed` seed's advice for finding who closed a handle
//! early is to "instrument the code that calls the native release method, in
//! order to capture the identity of the caller, or possibly a full stack
//! trace, and the value of the handle being released". custody does that for
//! you: with `CUSTODY_TRACE_HANDLES=1` (or [`set_mode`]) it keeps a bounded
//! history of lifecycle events per raw value, and a `releaseHandleFailed`
//! report includes the history of the value that failed: which owners held it,
//! who copied the raw value out, who released it first.
//!
//! `CUSTODY_TRACE_HANDLES` values: `1`/`on`/`true` (events with thread names),
//! `backtrace` (and a captured backtrace per event), `0`/`off`/unset (nothing).
//!
//! # Cost
//! The mode is read once when a handle is created and remembered in the handle
//! as its owner id; with history off, every operation pays one
//! well-predicted branch on a field it already has in cache. Handles created
//! while history was off stay untraced.
//!
//! # Bounds
//! At most [`EVENTS_PER_VALUE`] events per raw value (oldest dropped first)
//! and [`MAX_VALUES`] raw values (the value least recently first seen is
//! forgotten first).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;

/// Events kept per raw value.
pub const EVENTS_PER_VALUE: usize = 64;
/// Raw values kept.
pub const MAX_VALUES: usize = 4096;

/// Whether and how handle history is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is recorded (the default).
    Off,
    /// Events with their thread.
    On,
    /// Events with their thread and a captured backtrace (slow; for hunting).
    Backtrace,
}

impl Mode {
    /// Parses a `CUSTODY_TRACE_HANDLES` value; `None` for an unknown one.
    pub fn parse(value: &str) -> Option<Mode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "off" | "false" | "no" => Some(Mode::Off),
            "1" | "on" | "true" | "yes" => Some(Mode::On),
            "backtrace" | "bt" | "2" => Some(Mode::Backtrace),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::On,
            2 => Mode::Backtrace,
            _ => Mode::Off,
        }
    }
}

/// What happened to a handle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "error")]
pub enum EventKind {
    /// A wrapper took ownership of the value.
    Created,
    /// A reference was added (`dangerous_add_ref`, `acquire`, a table lookup).
    AddRef,
    /// A reference was dropped (`dangerous_release`, a guard's drop).
    Release,
    /// `dispose`/`close` was called.
    Dispose,
    /// The raw value was copied out with `dangerous_get_handle`.
    GetHandle,
    /// `set_handle_as_invalid` was called.
    SetInvalid,
    /// The last clone was dropped without `dispose`, releasing the value.
    Finalized,
    /// `release_handle` succeeded: this owner closed the value.
    ReleaseHandle,
    /// `release_handle` failed, with the OS error.
    ReleaseFailed(String),
}

impl EventKind {
    /// A short name, as printed in reports.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::AddRef => "add_ref",
            EventKind::Release => "release",
            EventKind::Dispose => "dispose",
            EventKind::GetHandle => "dangerous_get_handle",
            EventKind::SetInvalid => "set_handle_as_invalid",
            EventKind::Finalized => "finalized (last clone dropped)",
            EventKind::ReleaseHandle => "release_handle ok",
            EventKind::ReleaseFailed(_) => "release_handle FAILED",
        }
    }
}

/// One recorded event. JSON fields: `seq`, `owner`, `handle_type`,
/// `raw_value`, `kind` (+ `error` for `release_failed`), `thread`,
/// `backtrace` (when captured).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Global order of events (1 is the first ever recorded).
    pub seq: u64,
    /// Which wrapper instance: every traced handle gets its own number, so
    /// two owners of one raw value show up as two numbers.
    pub owner: u64,
    /// The wrapper's resource type.
    pub handle_type: &'static str,
    /// The raw value.
    pub raw_value: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The thread it happened on: its name, or its id.
    pub thread: String,
    /// A backtrace, in [`Mode::Backtrace`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} owner {} ({}) {} on thread {}",
            self.seq,
            self.owner,
            self.handle_type,
            self.kind.name(),
            self.thread
        )?;
        if let EventKind::ReleaseFailed(e) = &self.kind {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// The identity of one traced wrapper instance; [`Owner::UNTRACED`] when
/// history was off at its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner(u64);

impl Owner {
    pub(crate) const UNTRACED: Owner = Owner(0);

    #[inline]
    pub(crate) fn is_traced(self) -> bool {
        self.0 != 0
    }
}

struct Store {
    by_value: HashMap<u64, VecDeque<Event>>,
    /// Raw values in the order they were first seen, for eviction.
    order: VecDeque<u64>,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        Mutex::new(Store {
            by_value: HashMap::new(),
            order: VecDeque::new(),
        })
    })
}

const UNINIT: u8 = u8::MAX;
static MODE: AtomicU8 = AtomicU8::new(UNINIT);
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// The current mode (first call reads `CUSTODY_TRACE_HANDLES`).
pub fn mode() -> Mode {
    let v = MODE.load(Ordering::Relaxed);
    if v != UNINIT {
        return Mode::from_u8(v);
    }
    let mode = match std::env::var("CUSTODY_TRACE_HANDLES") {
        Ok(value) => Mode::parse(&value).unwrap_or_else(|| {
            crate::env::config_warning(&format!(
                "CUSTODY_TRACE_HANDLES={value:?} is not one of 0, 1, backtrace; history stays off"
            ));
            Mode::Off
        }),
        Err(_) => Mode::Off,
    };
    // Another thread may have raced us or set_mode may have run: keep theirs.
    let _ = MODE.compare_exchange(UNINIT, mode as u8, Ordering::Relaxed, Ordering::Relaxed);
    Mode::from_u8(MODE.load(Ordering::Relaxed))
}

/// Sets the mode for handles created from now on (overrides the variable).
pub fn set_mode(mode: Mode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// The recorded events for a raw value, oldest first.
pub fn history_of(raw_value: u64) -> Vec<Event> {
    let store = store().lock().unwrap_or_else(PoisonError::into_inner);
    store
        .by_value
        .get(&raw_value)
        .map(|events| events.iter().cloned().collect())
        .unwrap_or_default()
}

/// Forgets everything recorded so far.
pub fn clear() {
    let mut store = store().lock().unwrap_or_else(PoisonError::into_inner);
    store.by_value.clear();
    store.order.clear();
}

/// A new owner id if history is on, else [`Owner::UNTRACED`].
#[inline]
pub(crate) fn new_owner() -> Owner {
    match mode() {
        Mode::Off => Owner::UNTRACED,
        _ => Owner(NEXT_OWNER.fetch_add(1, Ordering::Relaxed)),
    }
}

/// The current thread, as reports print it.
pub(crate) fn thread_label() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) => format!("'{name}'"),
        None => format!("{:?}", thread.id()),
    }
}

/// Records an event for a traced owner.
#[cold]
pub(crate) fn record(owner: Owner, raw_value: u64, handle_type: &'static str, kind: EventKind) {
    if !owner.is_traced() {
        return;
    }
    let backtrace =
        (mode() == Mode::Backtrace).then(|| std::backtrace::Backtrace::force_capture().to_string());
    let event = Event {
        seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        owner: owner.0,
        handle_type,
        raw_value,
        kind,
        thread: thread_label(),
        backtrace,
    };
    let mut store = store().lock().unwrap_or_else(PoisonError::into_inner);
    let Store { by_value, order } = &mut *store;
    let events = by_value.entry(raw_value).or_insert_with(|| {
        order.push_back(raw_value);
        VecDeque::new()
    });
    if events.len() == EVENTS_PER_VALUE {
        events.pop_front();
    }
    events.push_back(event);
    while by_value.len() > MAX_VALUES {
        match order.pop_front() {
            Some(oldest) => {
                by_value.remove(&oldest);
            }
            None => break,
        }
    }
}
