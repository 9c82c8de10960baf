//! The diagnostics this crate fires itself, about handles: a failed release
//! (with its likely causes and the culprit read from the handle history), a
//! stale table id, a release by the last clone's drop, and an unbalanced
//! reference count. Host events are built by the host with
//! [`Diagnostic::new`] and [`fire`].

use std::io;

use super::assistant::Assistant;
use super::record::Diagnostic;
use super::sink::fire;
use crate::history::{self, Event, EventKind};
use crate::id::HandleId;
use crate::release::format_raw;

/// The causes a `releaseHandleFailed` report lists, in custody's words,
/// after the seeds' list.
pub const RELEASE_FAILED_CAUSES: [&str; 4] = [
    "the raw value was copied out (dangerous_get_handle, as_raw_fd) and closed directly, outside the handle",
    "a second owning wrapper was built around the same raw value (double ownership); wrap values you do not own with owns_handle = false",
    "a bitwise copy of the value was made instead of an OS-level duplicate (dup), so two owners release one value",
    "a double close elsewhere in a shared namespace (all fds are one namespace) closed this value after it was reused for an unrelated resource",
];

/// `releaseHandleFailed`: `release_handle` of a `handle_type` with value
/// `raw` returned `error`.
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

/// `handleFinalized`: a handle was released by its last clone's drop.
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

/// `staleHandleUse`: table id `id` was used but `why` (closed, never
/// issued, retired).
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
