//! Calls into a domain: the export looked up, the call run under the
//! policy's deadline, its failure classified (trap or abort) and reported,
//! and, inside a critical region, escalated by the policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use wasmtime::{Func, Store, Trap, Val, ValType, WasmBacktrace};

use super::{Domain, recycle};
use crate::boundary::cancel::{Interrupt, Reason};
use crate::boundary::ctx::DomainCtx;
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
        };
        if self.state() != super::DomainState::Running {
            return Err(not_running(self.state()));
        }
        let _span = tracing::debug_span!(target: "custody::call", "call", domain = self.id(), export = name).entered();
        let mut guard = self.shared.lock();
        let loaded = guard.as_mut().ok_or_else(|| not_running(self.state()))?;
        let func = loaded
            .modules
            .iter()
            .find_map(|m| m.instance.get_func(&mut loaded.store, name))
            .ok_or_else(|| CallError::NoSuchExport(name.to_string()))?;
        // An abort raised while no call was in flight is not for this one.
        self.shared.cancel.lower(Reason::Abort);
        let policy = Arc::clone(&self.shared.runtime.policy);
        let outcome = call_func(&mut loaded.store, name, func, args, policy.deadline);
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
        let released =
            recycle::escalate(&self.shared, &mut guard, action, name, &reason, &backtrace);
        Err(CallError::Escalated {
            export: name.to_string(),
            reason,
            backtrace,
            action,
            released,
        })
    }

    fn report_aborted(&self, function: &str, reason: &str, backtrace: &str, context: Option<&str>) {
        report_aborted(self.id(), function, reason, backtrace, context);
    }
}

/// Fires `callAborted` for a failed call.
pub(crate) fn report_aborted(
    domain: u64,
    function: &str,
    reason: &str,
    backtrace: &str,
    context: Option<&str>,
) {
    diagnostics::fire(Assistant::CallAborted, || {
        let where_ = context.map(|c| format!(" {c}")).unwrap_or_default();
        Diagnostic::new(
            Assistant::CallAborted,
            format!("the call to {function} in domain {domain} was aborted{where_}: {reason}"),
        )
        .with_call(domain, function, reason)
        .with_backtrace(backtrace)
    });
}

fn describe(types: impl Iterator<Item = ValType>) -> String {
    let names: Vec<String> = types.map(|t| t.to_string()).collect();
    format!("({})", names.join(", "))
}

pub(crate) fn call_func(
    store: &mut Store<DomainCtx>,
    export: &str,
    func: Func,
    args: &[Val],
    deadline: Option<Duration>,
) -> Result<Vec<Val>, CallError> {
    let ty = func.ty(&*store);
    let params: Vec<ValType> = ty.params().collect();
    let matches = params.len() == args.len()
        && params
            .iter()
            .zip(args)
            .all(|(p, a)| a.ty(&*store).map(|t| ValType::eq(&t, p)).unwrap_or(false));
    if !matches {
        let got: Vec<ValType> = args.iter().filter_map(|a| a.ty(&*store).ok()).collect();
        return Err(CallError::Signature {
            export: export.to_string(),
            expected: describe(params.into_iter()),
            got: describe(got.into_iter()),
        });
    }
    let mut results: Vec<Val> = ty
        .results()
        .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
        .collect();
    store.data_mut().deadline = deadline.map(|d| (Instant::now() + d, d));
    let outcome = func.call(&mut *store, args, &mut results);
    store.data_mut().deadline = None;
    match outcome {
        Ok(()) => Ok(results),
        Err(error) => Err(call_error(export, error, store.data().policy.stack_limit)),
    }
}

fn call_error(export: &str, error: wasmtime::Error, stack_limit: usize) -> CallError {
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string())
        .unwrap_or_default();
    let aborted = |reason: String| CallError::Aborted {
        export: export.to_string(),
        reason,
        backtrace: backtrace.clone(),
    };
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return aborted(interrupt.to_string());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => aborted(format!(
            "the stack limit of {stack_limit} bytes was exhausted"
        )),
        Some(trap) => CallError::Trap {
            export: export.to_string(),
            message: trap.to_string(),
            backtrace,
        },
        None => CallError::Trap {
            export: export.to_string(),
            message: format!("{error:#}"),
            backtrace,
        },
    }
}
