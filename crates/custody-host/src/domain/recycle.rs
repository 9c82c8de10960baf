//! The escalation ladder applied: after a call failed where the policy says
//! the domain cannot go on (inside a critical region, or an orphaned one),
//! the domain is recycled (every handle released, instances re-created from
//! the same modules if the policy says so) or unloaded, through the same
//! teardown as an explicit unload.

use std::mem;
use std::sync::Arc;

use custody_handle::diagnostics::{self, Assistant, Diagnostic};

use super::unload::{self, Ending};
use super::{DomainShared, Loaded, LoadedModule, link};
use crate::config::Action;
use crate::error::{CallError, EndCause, EscalationOutcome};
use crate::ledger::LedgerCounts;

/// What an escalation did to the domain.
pub(crate) struct Escalated {
    /// Handles released.
    pub(crate) released: usize,
    /// What became of the domain.
    pub(crate) outcome: EscalationOutcome,
}

/// Recycles or unloads the domain after a failed call (`failure`, kept as
/// the cause of the errors that follow its ending); returns what it did.
pub(crate) fn escalate(
    shared: &DomainShared,
    guard: &mut Option<Loaded>,
    action: Action,
    function: &str,
    reason: &str,
    backtrace: &str,
    failure: Option<Arc<CallError>>,
) -> Escalated {
    let (released, failures, outcome) = match action {
        Action::AbortCall => {
            return Escalated {
                released: 0,
                outcome: EscalationOutcome::NotTouched,
            };
        }
        Action::UnloadDomain => {
            end(
                shared,
                format!("unloaded: its call to {function} failed: {reason}"),
                failure,
            );
            // Another thread's unload may have begun meanwhile; then it
            // owns the teardown and will find `Loaded` gone.
            let _ = shared.state().begin_unload();
            unload::teardown(shared, guard, Ending::Unloaded, None);
            let report = shared.report().expect("teardown keeps the report");
            let outcome = EscalationOutcome::Unloaded;
            (report.released, report.failed.len(), outcome)
        }
        Action::RecycleDomain => recycle(shared, guard, function, reason, failure),
    };
    let domain = shared.id;
    tracing::warn!(target: "custody::domain", parent: &shared.span, domain, function, reason, %outcome, released, "escalated");
    diagnostics::fire(Assistant::DomainRecycled, || {
        Diagnostic::new(
            Assistant::DomainRecycled,
            format!(
                "domain {domain} was {outcome} because its call to {function} failed ({reason}): {released} handle(s) released, {failures} release failure(s)"
            ),
        )
        .with_call(domain, function, reason)
        .with_backtrace(backtrace)
    });
    Escalated { released, outcome }
}

/// Records why the domain ended, for the errors of what comes after.
fn end(shared: &DomainShared, description: String, failure: Option<Arc<CallError>>) {
    *shared
        .ended_by
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some(Arc::new(EndCause::new(description, failure)));
}

/// Drops the instances, releases every handle, and re-creates the instances
/// from the same modules if the policy says so; a domain not re-created
/// ends `Recycled` through the teardown. Returns what the escalation
/// reports: handles released, release failures, and what became of it.
fn recycle(
    shared: &DomainShared,
    guard: &mut Option<Loaded>,
    function: &str,
    reason: &str,
    failure: Option<Arc<CallError>>,
) -> (usize, usize, EscalationOutcome) {
    let Some(loaded) = guard.as_mut() else {
        return (0, 0, EscalationOutcome::NothingToRecreate);
    };
    let ctx = loaded.store.data_mut();
    let preopens = mem::take(&mut ctx.preopens);
    // Each extension's state renewed (WASI: the same arguments,
    // environment and stdio; the fds as at creation).
    let extensions = ctx.extensions.renew();
    // Guest instances and memories go first, the OS handles last.
    let fresh = shared.new_store(preopens, extensions);
    drop(loaded.replace_store(fresh));
    let drained = shared.table().drain();
    LedgerCounts::bump(
        &shared.ctx_shared.ledger.released_at_recycle,
        drained.released as u64,
    );
    LedgerCounts::bump(&shared.ctx_shared.ledger.recycles, 1);
    // Re-instantiation runs start functions: under the same rules as a
    // load (deadline, memory, stack, critical regions). The modules are
    // re-created in load order, so each import binds as it did (nothing is
    // loaded on demand again).
    let mut not_recreated =
        (!shared.policy.escalation.recreate).then_some(EscalationOutcome::RecreateOff);
    if not_recreated.is_none() {
        for old in mem::take(&mut loaded.modules) {
            match link::instantiate(shared, loaded, &old.name, &old.module) {
                Ok((instance, _)) => loaded.modules.push(LoadedModule { instance, ..old }),
                Err(error) => {
                    not_recreated = Some(EscalationOutcome::RecreationFailed(Arc::new(error)));
                    break;
                }
            }
        }
    }
    let failures = drained.failed.len();
    match not_recreated {
        None => (drained.released, failures, EscalationOutcome::Recreated),
        Some(outcome) => {
            end(
                shared,
                format!("{outcome}: its call to {function} failed: {reason}"),
                failure,
            );
            unload::teardown(shared, guard, Ending::Recycled, None);
            (drained.released, failures, outcome)
        }
    }
}
