//! The escalation ladder applied: after a call failed where the policy says
//! the domain cannot go on (inside a critical region, or an orphaned one),
//! the domain is recycled (every handle released, instances re-created from
//! the same modules if the policy says so) or unloaded, through the same
//! teardown as an explicit unload.

use std::mem;

use custody_handle::diagnostics::{self, Assistant, Diagnostic};

use super::unload::{self, Ending};
use super::{DomainShared, Loaded, LoadedModule, link};
use crate::config::Action;
use crate::ledger::LedgerCounts;

/// Recycles or unloads the domain after a failed call; returns how many
/// handles were released.
pub(crate) fn escalate(
    shared: &DomainShared,
    guard: &mut Option<Loaded>,
    action: Action,
    function: &str,
    reason: &str,
    backtrace: &str,
) -> usize {
    let (released, failures, outcome) = match action {
        Action::AbortCall => return 0,
        Action::UnloadDomain => {
            // Another thread's unload may have begun meanwhile; then it
            // owns the teardown and will find `Loaded` gone.
            let _ = shared.state.begin_unload();
            let report = unload::teardown(shared, guard, Ending::Unloaded);
            (report.released, report.failed.len(), "unloaded")
        }
        Action::RecycleDomain => recycle(shared, guard),
    };
    let domain = shared.id;
    tracing::warn!(target: "custody::domain", parent: &shared.span, domain, function, reason, outcome, released, "escalated");
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
    released
}

/// Drops the instances, releases every handle, and re-creates the instances
/// from the same modules if the policy says so; a domain not re-created
/// ends `Recycled` through the teardown.
fn recycle(shared: &DomainShared, guard: &mut Option<Loaded>) -> (usize, usize, &'static str) {
    let Some(loaded) = guard.as_mut() else {
        return (0, 0, "recycled (not re-created)");
    };
    let preopens = mem::take(&mut loaded.store.data_mut().preopens);
    // Guest instances and memories go first, the OS handles last.
    let fresh = shared.new_store(preopens);
    drop(mem::replace(&mut loaded.store, fresh));
    let drained = shared.table.drain();
    LedgerCounts::bump(&shared.ledger.released_at_recycle, drained.released as u64);
    LedgerCounts::bump(&shared.ledger.recycles, 1);
    let runtime = &shared.runtime;
    let mut recreated = runtime.policy.escalation.recreate;
    if recreated {
        for old in mem::take(&mut loaded.modules) {
            match link::instantiate(runtime, loaded, &old.name, &old.module) {
                Ok(instance) => loaded.modules.push(LoadedModule { instance, ..old }),
                Err(_) => {
                    recreated = false;
                    break;
                }
            }
        }
    }
    let failures = drained.failed.len();
    if recreated {
        (
            drained.released,
            failures,
            "recycled and re-created from its modules",
        )
    } else {
        unload::teardown(shared, guard, Ending::Recycled);
        (drained.released, failures, "recycled (not re-created)")
    }
}
