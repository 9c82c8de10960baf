//! Calls into a domain: the export looked up and run (through
//! [`guest_run`](super::guest_run)), and a failure inside a critical region
//! escalated by the policy.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Val;

use super::guest_run::{call_func, report_aborted};
use super::state::Admit;
use super::store_guard::StoreGuard;
use super::{Domain, DomainShared, Loaded, recycle};
use crate::boundary::cancel::Reason;
use crate::config::Action;
use crate::error::{CallError, Refused};

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
        Self::call_shared(&self.shared, name, args, Admit::Running)
    }

    /// The call as it was before calls were roots (SPEC D2): the store
    /// locked and the export run, with no root taken or described. Only
    /// for the benchmark that measures what root tracking costs.
    #[cfg(feature = "bench-internals")]
    #[doc(hidden)]
    pub fn call_untracked(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, CallError> {
        let mut guard = self.shared.lock();
        if let Some(loaded) = guard.as_mut() {
            resolve_export(loaded, name);
        }
        call_locked(&self.shared, &mut guard, name, args)
    }

    /// A call as a root of the domain (`admit` says whether a cooperative
    /// unload still lets it in): the root is taken, the store locked, the
    /// call run; as it ends, the unloading event runs if one waits for the
    /// store, and the root's drop completes the unload if it was the last.
    // Inlined, as `call_rooted`: as frames of their own, saving registers
    // and moving the call's result on, they were a third of what root
    // tracking costs a call (docs/PERFORMANCE.md, round 2).
    #[inline(always)]
    pub(crate) fn call_shared(
        shared: &Arc<DomainShared>,
        name: &str,
        args: &[Val],
        admit: Admit,
    ) -> Result<Vec<Val>, CallError> {
        let not_running = |state| CallError::from(shared.not_running(state, Refused::Call));
        // The root and the store in one CAS (the store free, as usual).
        let guard = shared.lock_rooted(admit).map_err(not_running)?;
        Self::call_rooted(shared, guard, name, args)
    }

    /// A call whose root the caller took, with the store it holds (a
    /// timer's runner takes the store without waiting): the call is run;
    /// as it ends, the unloading event runs if one waits for the store, and
    /// the root's drop completes the unload if it was the last.
    #[inline(always)]
    pub(crate) fn call_rooted(
        shared: &Arc<DomainShared>,
        mut guard: StoreGuard<'_>,
        name: &str,
        args: &[Val],
    ) -> Result<Vec<Val>, CallError> {
        // The root's description stands if the export and the thread are
        // the last call's (the export is resolved once, here; `&`, not
        // `&&`: the thread is recorded either way).
        let same = guard
            .as_mut()
            .is_some_and(|loaded| resolve_export(loaded, name) & same_thread(loaded));
        // A new description shares the resolved export's name.
        let described = (!same).then(|| {
            guard
                .as_ref()
                .and_then(|loaded| loaded.last_export.as_ref())
                .map_or_else(|| Arc::from(name), |(export, ..)| Arc::clone(export))
        });
        shared.roots.call_started(described);
        let outcome = call_locked(shared, &mut guard, name, args);
        shared.roots.call_ended();
        // The root and the store given back (one CAS while running; an
        // unloading event that waited for the store runs first, and the
        // last root completes the unload).
        guard.end_rooted();
        outcome
    }
}

/// Whether this call comes from the thread of the last one; records it.
fn same_thread(loaded: &mut Loaded) -> bool {
    let thread = this_thread();
    loaded.last_thread.replace(thread) == Some(thread)
}

/// This thread's number, never reused (a thread-local's address would be,
/// by a later thread). A `const` thread-local, so a call reads it without
/// the lazy initialization check a `ThreadId` in one costs.
fn this_thread() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static THREAD: Cell<u64> = const { Cell::new(0) };
    }
    THREAD.with(|thread| match thread.get() {
        0 => {
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            thread.set(number);
            number
        }
        number => number,
    })
}

/// Makes `name` the export in `loaded.last_export` (the first loaded
/// module's export of that name: loading more modules never changes which,
/// so only a new store clears it), or clears it if no module exports
/// `name`. True if it already was the last call's export.
fn resolve_export(loaded: &mut Loaded, name: &str) -> bool {
    if matches!(&loaded.last_export, Some((last, ..)) if **last == *name) {
        return true;
    }
    // By the module's export index, found once per module and kept with
    // the name as a shared string (`CalledExports`): no lookup by name, no
    // copy of the name, in a module's later domains.
    let Some((name, func)) = loaded.modules.iter().find_map(|m| {
        let (name, export) = m.exports.called.get(&m.module, name)?;
        let func = (m.instance)
            .get_module_export(&mut loaded.store, &export)?
            .into_func()?;
        Some((name, func))
    }) else {
        // The root was described as this call: the next one must not be
        // taken for the last export's.
        loaded.last_export = None;
        return false;
    };
    let ty = func.ty(&loaded.store);
    loaded.last_export = Some((name, func, ty));
    false
}

/// The call, with the store held and the export resolved by
/// [`resolve_export`] into `Loaded::last_export`.
fn call_locked(
    shared: &Arc<DomainShared>,
    guard: &mut Option<Loaded>,
    name: &str,
    args: &[Val],
) -> Result<Vec<Val>, CallError> {
    let not_running = |state| CallError::from(shared.not_running(state, Refused::Call));
    // The caller's span (a server's request) is the call's parent when
    // there is one, so the call joins the caller's trace whichever
    // request made the domain (a pooled one outlives many); else the
    // domain's span is.
    let caller = tracing::Span::current();
    let parent = if caller.is_none() {
        &shared.span
    } else {
        &caller
    };
    let _span = tracing::debug_span!(target: "custody::call", parent: parent, "call", domain = shared.id, export = name).entered();
    let loaded = guard
        .as_mut()
        .ok_or_else(|| not_running(shared.state().load()))?;
    let Loaded {
        store,
        last_export: Some((_, func, ty)),
        ..
    } = loaded
    else {
        // `resolve_export` found no module exporting `name`.
        return Err(CallError::NoSuchExport(name.to_string()));
    };
    // An abort raised while no call was in flight is not for this one.
    shared.ctx_shared.cancel.lower(Reason::Abort);
    let policy = Arc::clone(&shared.policy);
    tracing::trace!(target: "custody::call", "call started");
    let outcome = call_func(store, name, *func, ty, args, policy.deadline);
    match &outcome {
        Ok(_) => tracing::trace!(target: "custody::call", "call ended"),
        Err(error) => tracing::debug!(target: "custody::call", %error, "call failed"),
    }
    shared.ctx_shared.cancel.lower(Reason::Abort);
    let regions = std::mem::take(&mut loaded.store.data_mut().critical_depth);
    let locked = loaded
        .store
        .data()
        .shared
        .host_locks
        .take_aborted_while_held();
    let critical = regions + u32::from(locked);
    let (reason, backtrace) = match &outcome {
        Ok(_) if critical == 0 => return outcome,
        Ok(_) => (
            format!("it returned with {regions} critical region(s) still open (an orphaned lock)"),
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
        report_aborted(shared.id, name, &reason, &backtrace, context.as_deref());
    }
    if shared.ctx_shared.cancel.reason() == Some(Reason::Unload) {
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
    let failure = outcome.err().map(Arc::new);
    let escalated = recycle::escalate(
        shared,
        guard,
        action,
        name,
        &reason,
        &backtrace,
        failure.clone(),
    );
    Err(CallError::Escalated {
        export: name.to_string(),
        reason,
        backtrace,
        action,
        outcome: escalated.outcome,
        released: escalated.released,
        failure,
    })
}
