//! Roots: what keeps an unloading domain from completing, each with what it
//! is, who made it and since when ([`Domain::roots`](super::Domain::roots)).
//!
//! The state word counts roots (one atomic add and subtract each); this
//! module keeps their descriptions. A call's record is written once per
//! call under a small mutex that nothing else contends for while calls run;
//! the other roots (refs, views, dependents) are made rarely.
//!
//! The stack of a guest running *now* is sampled on the guest's own thread:
//! [`Roots::request_sample`] raises a flag that the store's epoch callback
//! reads at the guest's next epoch check, where it captures the stack
//! (wasmtime's `WasmBacktrace`) and hands it back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::boundary::ctx::CtxShared;
use crate::runtime::ticker;

use serde::Serialize;

/// What kind of root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum RootKind {
    /// A call in flight (.NET: a thread with a frame in the context).
    Call,
    /// A strong [`DomainRef`](crate::DomainRef) the embedder holds (a strong
    /// GC handle).
    Ref,
    /// A host-held view of guest memory ([`MemoryView`](crate::MemoryView)).
    MemoryView,
    /// Another domain holding a `DomainRef` to this one (a cross-context
    /// reference), made by [`Domain::strong_ref_for`](crate::Domain::strong_ref_for).
    Dependent,
    /// An armed guest timer (`timer_set`; .NET: a timer callback into the
    /// context): its site is the guest stack that armed it.
    Timer,
    /// A host thread holding one of the domain's handles pinned outside a
    /// call ([`Domain::pin_handle`](crate::Domain::pin_handle); .NET: a
    /// `DangerousAddRef` never matched by its release).
    PinnedHandle,
}

/// One root and its origin.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Root {
    /// What it is.
    pub kind: RootKind,
    /// Its label (a ref's or a view's), the export a call runs, or the
    /// holding domain.
    pub label: String,
    /// The thread that made it (or runs it).
    pub thread: String,
    /// Where it was made: the caller's source location, or a backtrace when
    /// `CUSTODY_TRACE_ROOTS=1`.
    pub site: Option<String>,
    /// How long it has been held, in milliseconds.
    pub held_ms: u64,
    /// For a call: the guest's stack now (sampled at its next epoch check)
    /// or, if it is blocked in a host function, its stack when it began to
    /// wait (`detail` names the function).
    pub stack: Option<String>,
    /// For a dependent: the id of the domain that holds the ref.
    pub holder: Option<u64>,
    /// For a timer: when it is due, and its period; for a call blocked in
    /// a host function: which, and for how long; for a pinned handle: its
    /// id and type.
    pub detail: Option<String>,
    /// For a call blocked in a host function: the function (as `detail`
    /// names it, without the prose), for tools that list blocked calls.
    pub blocked_in: Option<String>,
}

impl Root {
    /// One line: kind, label, thread, age, site.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "{:?} {:?} on thread {:?}, held {} ms",
            self.kind, self.label, self.thread, self.held_ms
        );
        if let Some(holder) = self.holder {
            line.push_str(&format!(", held by domain {holder}"));
        }
        if let Some(detail) = &self.detail {
            line.push_str(&format!(", {detail}"));
        }
        if let Some(site) = &self.site {
            // A guest stack is several lines: its first frames here.
            let frames: Vec<&str> = site
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(3)
                .collect();
            line.push_str(&format!(", made at {}", frames.join(" <- ")));
        }
        line
    }
}

/// A root's description while it lives.
#[derive(Clone, Debug)]
pub(crate) struct RootRecord {
    pub(crate) kind: RootKind,
    pub(crate) label: String,
    pub(crate) thread: String,
    pub(crate) site: Option<String>,
    pub(crate) since: Instant,
    pub(crate) holder: Option<u64>,
    pub(crate) detail: Option<String>,
}

impl RootRecord {
    /// A record of a root whose origin is known already (a guest stack).
    pub(crate) fn with_origin(kind: RootKind, label: String, thread: &str, site: String) -> Self {
        RootRecord {
            kind,
            label,
            thread: thread.to_string(),
            site: Some(site),
            since: Instant::now(),
            holder: None,
            detail: None,
        }
    }

    /// A record made here, now, on this thread.
    pub(crate) fn new(kind: RootKind, label: String, site: String) -> Self {
        RootRecord {
            kind,
            label,
            thread: thread_name(&std::thread::current()),
            site: Some(site_or_backtrace(site)),
            since: Instant::now(),
            holder: None,
            detail: None,
        }
    }

    fn root(&self) -> Root {
        Root {
            kind: self.kind,
            label: self.label.clone(),
            thread: self.thread.clone(),
            site: self.site.clone(),
            held_ms: self.since.elapsed().as_millis() as u64,
            stack: None,
            holder: self.holder,
            detail: self.detail.clone(),
            blocked_in: None,
        }
    }
}

fn thread_name(thread: &Thread) -> String {
    match thread.name() {
        Some(name) => format!("{name} ({:?})", thread.id()),
        None => format!("{:?}", thread.id()),
    }
}

/// With `CUSTODY_TRACE_ROOTS=1`, the backtrace where a root was made; else
/// the caller's source location.
fn site_or_backtrace(location: String) -> String {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let trace = *TRACE.get_or_init(|| std::env::var("CUSTODY_TRACE_ROOTS").is_ok_and(|v| v == "1"));
    if trace {
        format!("{location}\n{}", std::backtrace::Backtrace::force_capture())
    } else {
        location
    }
}

/// Who runs the calls and into which export, as of the last time it
/// changed (calls repeat: most do not write it).
struct CallInfo {
    /// Shared with the store's resolved export (`Loaded::last_export`):
    /// describing a call allocates nothing.
    export: Arc<str>,
    thread: Thread,
}

/// A domain's roots (beside their count in the state word).
#[derive(Default)]
pub(crate) struct Roots {
    others: Mutex<BTreeMap<u64, RootRecord>>,
    next: AtomicU64,
    call: Mutex<Option<CallInfo>>,
    /// Whether a call is in flight, and since when (`ticker::coarse_ms`):
    /// written on every call, with plain atomic stores.
    call_active: AtomicBool,
    call_since_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Roots {
    /// Records a root other than a call; the key takes it back.
    pub(crate) fn add(&self, record: RootRecord) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.others).insert(key, record);
        key
    }

    /// Forgets the root recorded under `key`.
    pub(crate) fn remove(&self, key: u64) {
        lock(&self.others).remove(&key);
    }

    /// A call starts on this thread, into `export`; `None` says the
    /// caller knows the export and thread are those of the last call (it
    /// keeps them under the store's lock), so nothing but two stores happen.
    #[inline]
    pub(crate) fn call_started(&self, export: Option<Arc<str>>) {
        if let Some(export) = export {
            self.describe_call(export);
        }
        self.call_since_ms
            .store(ticker::coarse_ms(), Ordering::Relaxed);
        self.call_active.store(true, Ordering::Release);
    }

    /// A call unlike the last one (another export or thread) describes
    /// itself.
    #[cold]
    fn describe_call(&self, export: Arc<str>) {
        *lock(&self.call) = Some(CallInfo {
            export,
            thread: std::thread::current(),
        });
    }

    /// The call ended.
    #[inline]
    pub(crate) fn call_ended(&self) {
        self.call_active.store(false, Ordering::Release);
    }

    /// The call in flight, described on one line; `ctx` says where the
    /// store's host calls wait.
    pub(crate) fn current_call(&self, ctx: &CtxShared) -> Option<String> {
        let root = self.call_root()?;
        let blocked = match ctx.blocked.now() {
            Some(b) => format!(", blocked in host function {}", b.function),
            None => String::new(),
        };
        Some(format!(
            "the call to {} on thread {}, running for {} ms{blocked}",
            root.label, root.thread, root.held_ms
        ))
    }

    /// The call in flight as a root (no stack yet).
    fn call_root(&self) -> Option<Root> {
        if !self.call_active.load(Ordering::Acquire) {
            return None;
        }
        let held_ms =
            ticker::precise_ms().saturating_sub(self.call_since_ms.load(Ordering::Relaxed));
        lock(&self.call).as_ref().map(|c| Root {
            kind: RootKind::Call,
            label: c.export.to_string(),
            thread: thread_name(&c.thread),
            site: None,
            held_ms,
            stack: None,
            holder: None,
            detail: None,
            blocked_in: None,
        })
    }

    /// How many roots of each kind hold the domain now (no stack sampled).
    pub(crate) fn count_by_kind(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        if self.call_active.load(Ordering::Acquire) {
            counts.insert(format!("{:?}", RootKind::Call), 1);
        }
        for record in lock(&self.others).values() {
            *counts.entry(format!("{:?}", record.kind)).or_insert(0) += 1;
        }
        counts
    }

    /// Every root now. A running guest's stack is sampled at its next epoch
    /// check, waited for at most `wait`; a guest blocked in a host function
    /// reaches none, and has the stack it had when it began to wait.
    pub(crate) fn list(&self, ctx: &CtxShared, wait: Duration) -> Vec<Root> {
        let mut roots: Vec<Root> = Vec::new();
        if let Some(mut call) = self.call_root() {
            match ctx.blocked.now() {
                Some(blocked) => {
                    call.detail = Some(format!(
                        "blocked in host function {} for {} ms",
                        blocked.function,
                        blocked.since.elapsed().as_millis()
                    ));
                    call.stack = Some(blocked.stack);
                    call.blocked_in = Some(blocked.function);
                }
                None => {
                    // No epoch check within the wait: the thread was not
                    // scheduled, or it is in a host call that blocks
                    // outside custody's wait (an embedder function busy
                    // elsewhere), which reaches none.
                    let running = || self.call_active.load(Ordering::Acquire);
                    call.stack = Some(ctx.sample.take(wait, running).unwrap_or_else(|| {
                        format!(
                            "not sampled: no epoch check within {} ms (the thread was not scheduled, or it is in a host call that blocks outside custody's wait)",
                            wait.as_millis()
                        )
                    }));
                }
            }
            roots.push(call);
        }
        roots.extend(lock(&self.others).values().map(RootRecord::root));
        roots
    }
}
