//! Calls into a domain: the export looked up and run (through
//! [`invoke`](super::invoke)), and a failure inside a critical region
//! escalated by the policy.

use std::sync::Arc;

use wasmtime::Val;

use super::invoke::{call_func, report_aborted};
use super::{Domain, recycle};
use crate::boundary::cancel::Reason;
use crate::config::Action;
use crate::error::CallError;

impl Domain {
    /// Calls an exported function (the first loaded module exporting `name`)
    /// under the policy's deadline.
    ///
    /// # Errors
    /// See [`CallError`]. A trap or abort outside a critical region ends the
    /// call and the domain goes on; inside one, or when the call returns with
    /// a region still open, the policy's escalation applies
    /// ([`CallError::Escalated`]). Every trap and abort fires `callAborted`,
    /// every escalation `domainRecycled`.
    pub fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, CallError> {
        let not_running = |state| CallError::NotRunning {
            domain: self.id(),
            state,
            cause: self.shared.ended_by(),
        };
        if self.state() != super::DomainState::Running {
            return Err(not_running(self.state()));
        }
        let _span = tracing::debug_span!(target: "custody::call", parent: &self.shared.span, "call", domain = self.id(), export = name).entered();
        let mut guard = self.shared.lock();
        let loaded = guard.as_mut().ok_or_else(|| not_running(self.state()))?;
        let func = loaded
            .modules
            .iter()
            .find_map(|m| m.instance.get_func(&mut loaded.store, name))
            .ok_or_else(|| CallError::NoSuchExport(name.to_string()))?;
        // An abort raised while no call was in flight is not for this one.
        self.shared.cancel.lower(Reason::Abort);
        let policy = Arc::clone(&self.shared.policy);
        tracing::trace!(target: "custody::call", "call started");
        let outcome = call_func(&mut loaded.store, name, func, args, policy.deadline);
        match &outcome {
            Ok(_) => tracing::trace!(target: "custody::call", "call ended"),
            Err(error) => tracing::debug!(target: "custody::call", %error, "call failed"),
        }
        self.shared.cancel.lower(Reason::Abort);
        let regions = std::mem::take(&mut loaded.store.data_mut().critical_depth);
        let locked = loaded.store.data().host_locks.take_aborted_while_held();
        let critical = regions + u32::from(locked);
        let (reason, backtrace) = match &outcome {
            Ok(_) if critical == 0 => return outcome,
            Ok(_) => (
                format!(
                    "it returned with {regions} critical region(s) still open (an orphaned lock)"
                ),
                String::new(),
            ),
            Err(CallError::Trap {
                message, backtrace, ..
            }) => (message.clone(), backtrace.clone()),
            Err(CallError::Aborted {
                reason, backtrace, ..
            }) => (reason.clone(), backtrace.clone()),
            Err(_) => return outcome,
        };
        // Where the failure happened, if that makes it escalate.
        let context = match (regions, locked) {
            (0, false) => None,
            (0, true) => Some("while holding a host lock".to_string()),
            (n, false) => Some(format!("inside {n} critical region(s)")),
            (n, true) => Some(format!(
                "inside {n} critical region(s) and holding a host lock"
            )),
        };
        if outcome.is_err() {
            self.report_aborted(name, &reason, &backtrace, context.as_deref());
        }
        if self.shared.cancel.reason() == Some(Reason::Unload) {
            return outcome; // the unload takes it from here
        }
        let escalation = policy.escalation;
        let action = match (&outcome, critical) {
            (Ok(_), _) => escalation.orphaned_critical,
            (Err(_), 0) => escalation.outside_critical,
            (Err(_), _) => escalation.inside_critical,
        };
        if action == Action::AbortCall {
            return outcome;
        }
        let reason = match (&outcome, &context) {
            (Err(_), Some(context)) => format!("{reason}, {context}"),
            _ => reason,
        };
        let (released, outcome) =
            recycle::escalate(&self.shared, &mut guard, action, name, &reason, &backtrace);
        Err(CallError::Escalated {
            export: name.to_string(),
            reason,
            backtrace,
            action,
            outcome,
            released,
        })
    }

    fn report_aborted(&self, function: &str, reason: &str, backtrace: &str, context: Option<&str>) {
        report_aborted(self.id(), function, reason, backtrace, context);
    }
}
