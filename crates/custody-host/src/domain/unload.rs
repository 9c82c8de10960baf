//! The one unload procedure. An explicit [`Domain::unload`], an escalation
//! to unload and a recycle that is not re-created all end a domain through
//! [`teardown`]: the unloading hook (for an unload), then the instances
//! dropped, then the table drained (OS handles last, after all guest code),
//! then the cancellation signal closed, the state made final and the domain
//! forgotten by the registry.

use std::time::{Duration, Instant};

use custody_handle::{DrainReport, format_raw};
use serde::Serialize;
use wasmtime::Func;

use super::invoke::{call_func, report_aborted};
use super::state::DomainState;
use super::{Domain, DomainShared, Loaded};
use crate::boundary::cancel::Reason;
use crate::error::{CallError, UnloadError};
use crate::ledger::{Ledger, LedgerCounts};

/// How a domain ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Unloaded: its unloading hook runs first.
    Unloaded,
    /// Recycled and not re-created: its instances are already gone.
    Recycled,
}

impl Domain {
    /// Unloads the domain: refuses new calls, stops an in-flight call
    /// (waking it if it is blocked in the host), runs the guest's
    /// `custody_unloading` export if it has one (bounded by the policy's
    /// `unload_hook_timeout`), releases every handle still in the table
    /// (OS handles last, after all guest code), and drops the instances.
    ///
    /// A domain that a recycle ended (`Recycled`) holds nothing any more:
    /// its unload returns the report of that recycle.
    ///
    /// # Errors
    /// [`UnloadError::NotRunning`] if the domain is already unloading or
    /// unloaded.
    pub fn unload(&self) -> Result<UnloadReport, UnloadError> {
        let shared = &self.shared;
        if let Err(state) = shared.state.begin_unload() {
            let recycled = shared.recycled.lock().unwrap_or_else(|e| e.into_inner());
            return match (state, recycled.as_ref()) {
                (DomainState::Recycled, Some(report)) => Ok(report.clone()),
                _ => Err(UnloadError::NotRunning {
                    domain: shared.id,
                    state,
                    cause: shared.ended_by(),
                }),
            };
        }
        // Wake a call blocked in the host and stop running guest code; then
        // wait for it to give the store back. The signal is lowered again
        // so the unloading hook's own waits can run.
        shared.cancel.raise(Reason::Unload);
        let mut guard = shared.lock();
        shared.cancel.lower(Reason::Unload);
        Ok(teardown(shared, &mut guard, Ending::Unloaded))
    }
}

/// Ends the domain (see the module docs). The caller holds the store's
/// mutex, so no guest code runs during or after it.
pub(crate) fn teardown(
    shared: &DomainShared,
    guard: &mut Option<Loaded>,
    ending: Ending,
) -> UnloadReport {
    let mut report = UnloadReport {
        domain: shared.id,
        released: 0,
        failed: Vec::new(),
        deferred: 0,
        hook: HookOutcome::Absent,
        ledger: Ledger::default(),
    };
    if let Some(mut loaded) = guard.take() {
        if ending == Ending::Unloaded {
            report.hook = run_unloading_hook(&mut loaded, shared.policy.unload_hook_timeout);
        }
        // Guest code is done and its instances go; the OS handles last.
        drop(loaded);
    }
    let drained = shared.table.drain();
    report.record(&drained);
    let (counter, state) = match ending {
        Ending::Unloaded => (&shared.ledger.released_at_unload, DomainState::Unloaded),
        Ending::Recycled => (&shared.ledger.released_at_recycle, DomainState::Recycled),
    };
    LedgerCounts::bump(counter, drained.released as u64);
    shared.cancel.close();
    shared.state.finish(state);
    shared.runtime.registry.forget(shared.id);
    report.ledger = shared.ledger();
    if ending == Ending::Recycled {
        *shared.recycled.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
    }
    tracing::info!(
        target: "custody::domain",
        parent: &shared.span,
        domain = shared.id,
        state = ?state,
        released = report.released,
        failed = report.failed.len(),
        deferred = report.deferred,
        "ended"
    );
    report
}

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

const UNLOADING_EXPORT: &str = "custody_unloading";

/// Runs every module's `custody_unloading` export, bounded by `limit` each.
fn run_unloading_hook(loaded: &mut Loaded, limit: Duration) -> HookOutcome {
    let hooks: Vec<Func> = loaded
        .modules
        .iter()
        .filter_map(|m| m.instance.get_func(&mut loaded.store, UNLOADING_EXPORT))
        .collect();
    let mut outcome = HookOutcome::Absent;
    let domain = loaded.store.data().id;
    loaded.store.data_mut().in_unloading_hook = true;
    for hook in hooks {
        let started = Instant::now();
        let result = call_func(&mut loaded.store, UNLOADING_EXPORT, hook, &[], Some(limit));
        outcome = match result {
            Ok(_) => HookOutcome::Completed,
            Err(CallError::Aborted {
                reason, backtrace, ..
            }) => {
                report_aborted(domain, UNLOADING_EXPORT, &reason, &backtrace, None);
                // Only the hook's own time limit is a time-out; a memory or
                // stack limit keeps its cause.
                if started.elapsed() >= limit {
                    HookOutcome::TimedOut
                } else {
                    HookOutcome::Aborted(reason)
                }
            }
            Err(CallError::HostStack { reason, .. }) => HookOutcome::Aborted(reason),
            Err(e) => {
                if let CallError::Trap {
                    message, backtrace, ..
                } = &e
                {
                    report_aborted(domain, UNLOADING_EXPORT, message, backtrace, None);
                }
                HookOutcome::Trapped(e.to_string())
            }
        };
    }
    outcome
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

/// What [`Domain::unload`] did.
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
    /// How the guest's unloading hook went.
    pub hook: HookOutcome,
    /// The domain's final handle ledger.
    pub ledger: Ledger,
}

impl UnloadReport {
    fn record(&mut self, drained: &DrainReport) {
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
