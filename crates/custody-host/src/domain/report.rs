//! What an unload reports: [`UnloadReport`], each module's unloading hook
//! ([`ModuleHook`], [`HookOutcome`]), releases that failed, and what a
//! forced unload cut.

use custody_handle::{DrainReport, format_raw};
use serde::Serialize;

use crate::ledger::Ledger;

/// How the guest's `custody_unloading` export went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
#[non_exhaustive]
pub enum HookOutcome {
    /// No loaded module exports it.
    Absent,
    /// It ran to completion.
    Completed,
    /// It trapped (the unload went on).
    Trapped(String),
    /// It ran past the policy's `unload_hook_timeout` and was stopped.
    TimedOut,
    /// It was stopped by another bound (the memory or stack limit): why.
    Aborted(String),
}

/// One module's unloading hook: the module's name and how its
/// `custody_unloading` export went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleHook {
    /// The module's name in the domain.
    pub module: String,
    /// How its hook went (never [`HookOutcome::Absent`]: a module without
    /// a hook is not listed).
    pub outcome: HookOutcome,
}

/// One release that failed at unload.
#[derive(Clone, Debug, Serialize)]
pub struct FailedRelease {
    /// The guest's id for it.
    pub handle: u32,
    /// The resource type.
    pub handle_type: String,
    /// The raw value, `0x%08X`.
    pub raw_hex: String,
    /// The error.
    pub error: String,
}

/// What an unload (or a recycle that ended the domain) did.
#[derive(Clone, Debug, Serialize)]
pub struct UnloadReport {
    /// The domain.
    pub domain: u64,
    /// Handles released by the unload.
    pub released: usize,
    /// Releases that failed (each also fired `releaseHandleFailed`).
    pub failed: Vec<FailedRelease>,
    /// Handles still in use by a host thread: their release happens when
    /// that use ends.
    pub deferred: usize,
    /// How each module's unloading hook went, in load order: one entry
    /// per module that exports `custody_unloading`, empty if none does or
    /// if the hooks did not run (a recycle, or a forced unload that never
    /// had the store). [`UnloadReport::hook`] sums them up.
    pub hooks: Vec<ModuleHook>,
    /// Whether the unload was forced, and what that cut.
    pub forced: Option<Forced>,
    /// The domain's final handle ledger.
    pub ledger: Ledger,
}

impl UnloadReport {
    /// The hooks summed up: [`HookOutcome::Absent`] if none ran, else the
    /// first that did not complete (in load order), else
    /// [`HookOutcome::Completed`].
    pub fn hook(&self) -> HookOutcome {
        match self
            .hooks
            .iter()
            .find(|h| h.outcome != HookOutcome::Completed)
        {
            Some(failed) => failed.outcome.clone(),
            None if self.hooks.is_empty() => HookOutcome::Absent,
            None => HookOutcome::Completed,
        }
    }

    pub(crate) fn record(&mut self, drained: &DrainReport) {
        self.released = drained.released;
        self.deferred = drained.deferred;
        self.failed = drained
            .failed
            .iter()
            .map(|f| FailedRelease {
                handle: f.id.raw(),
                handle_type: f.handle_type.to_string(),
                raw_hex: format_raw(f.raw_value),
                error: f.error.to_string(),
            })
            .collect();
    }
}

/// What a forced unload cut.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Forced {
    /// Why it was forced (asked for, or the policy after `unload_timeout`).
    pub why: String,
    /// The roots it cut, each described on one line.
    pub roots_cut: Vec<String>,
    /// A call that did not return within `unload_grace` of the cancellation
    /// signal (an embedder host function that neither returns nor waits
    /// through custody): its store is dropped when it returns.
    pub abandoned: Option<String>,
}
