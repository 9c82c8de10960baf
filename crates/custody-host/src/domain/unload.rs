//! Unloading, cooperative and forced (SPEC D1), and the one procedure every
//! ending goes through ([`teardown`]).
//!
//! ```text
//! begin_unload ──> Unloading: new calls and loads refused; a call in flight runs on
//!      │            (bounded by its own deadline); calls through a DomainRef still run
//!      ├─ the store is free ──> the unloading event: on_unloading callbacks, then
//!      │                        every module's `custody_unloading` (bounded)
//!      ├─ the last root drops (event done) ──> teardown: instances dropped, table
//!      │                                       drained, Unloaded, on_unloaded
//!      └─ force (asked, or the policy after unload_timeout) ──> cancellation signal
//!             raised, refs invalidated, the store taken as soon as the call in
//!             flight returns (or abandoned after unload_grace), teardown
//! ```
//! Completion is driven by whoever drops the last root (the end of a call,
//! the drop of a `DomainRef`): nothing polls. Whoever finds the store free
//! runs the unloading event: `begin_unload` itself, or the call in flight as
//! it ends (it checks again after giving the store back, so one of the two
//! always sees the other).

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use wasmtime::Func;

use super::guest_run::{call_func, report_aborted};
use super::report::{Forced, HookOutcome, ModuleHook, UnloadReport};
use super::roots::Root;
use super::state::Next;
use super::store_lock::Held;
use super::{Domain, DomainShared, Loaded};
use crate::boundary::cancel::Reason;
use crate::compile::pre_cache::UNLOADING_EXPORT;
use crate::config::UnloadBlockedAction;
use crate::error::{CallError, Refused, UnloadError};
use crate::ledger::{Ledger, LedgerCounts};
use crate::registry::DomainState;

/// How a domain ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Unloaded: its unloading hook runs first (if the event has not).
    Unloaded,
    /// Recycled and not re-created: its instances are already gone.
    Recycled,
}

/// A cooperative unload under way ([`Domain::begin_unload`]). Holding it
/// does not keep the domain from completing.
pub struct UnloadTicket {
    shared: Arc<DomainShared>,
}

/// A cooperative unload that has not completed: what holds the domain.
#[derive(Debug, thiserror::Error)]
#[error("domain {domain} has not finished unloading: {} root(s) hold it: {}", roots.len(), describe(roots))]
pub struct UnloadBlocked {
    /// The domain.
    pub domain: u64,
    /// What holds it, with each root's origin.
    pub roots: Vec<Root>,
}

fn describe(roots: &[Root]) -> String {
    roots
        .iter()
        .map(Root::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

impl UnloadTicket {
    /// The domain being unloaded.
    pub fn domain(&self) -> u64 {
        self.shared.id
    }

    /// Whether the unload has completed.
    pub fn is_complete(&self) -> bool {
        self.shared.is_complete()
    }

    /// Waits at most `timeout` for the unload to complete.
    ///
    /// # Errors
    /// [`UnloadBlocked`], listing the roots that hold the domain now.
    pub fn wait(&self, timeout: Duration) -> Result<UnloadReport, UnloadBlocked> {
        self.shared
            .wait_report(timeout)
            .ok_or_else(|| UnloadBlocked {
                domain: self.shared.id,
                roots: self
                    .shared
                    .roots
                    .list(&self.shared.ctx_shared, super::SAMPLE_WAIT),
            })
    }

    /// Forces this unload (see the module docs) and returns its report.
    pub fn force(&self) -> UnloadReport {
        force(&self.shared, "asked for")
    }
}

impl Domain {
    /// Begins a cooperative unload (see the module docs) and returns its
    /// ticket; a second call returns a ticket for the same unload. A domain
    /// a recycle ended returns a ticket that is already complete.
    ///
    /// # Errors
    /// [`UnloadError::NotRunning`] if the domain has already been unloaded.
    pub fn begin_unload(&self) -> Result<UnloadTicket, UnloadError> {
        begin(&self.shared)?;
        Ok(UnloadTicket {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Unloads the domain: [`begin_unload`](Self::begin_unload), then waits
    /// up to the policy's `unload_timeout` for the roots to go (firing
    /// `unloadBlocked` after `unload_grace`), then, by
    /// `escalation.unload_blocked`, forces the unload (the default) or keeps
    /// waiting (firing `domainLeaked` once a minute).
    ///
    /// # Errors
    /// [`UnloadError::NotRunning`] if the domain has already been unloaded.
    pub fn unload(&self) -> Result<UnloadReport, UnloadError> {
        begin(&self.shared)?;
        let policy = &self.shared.policy;
        let begun = Instant::now();
        if let Some(report) = self.shared.wait_report(policy.unload_grace) {
            return Ok(report);
        }
        report_blocked(&self.shared);
        let left = policy.unload_timeout.saturating_sub(begun.elapsed());
        if let Some(report) = self.shared.wait_report(left) {
            return Ok(report);
        }
        match policy.escalation.unload_blocked {
            UnloadBlockedAction::Force => Ok(force(&self.shared, "unload_timeout passed")),
            UnloadBlockedAction::Wait => loop {
                report_leaked(&self.shared, begun.elapsed());
                if let Some(report) = self.shared.wait_report(Duration::from_secs(60)) {
                    return Ok(report);
                }
            },
        }
    }

    /// Begins an unload and forces it at once: running guest code stops at
    /// its next epoch check, a call blocked in a host wait wakes, every
    /// `DomainRef` is invalidated.
    ///
    /// # Errors
    /// [`UnloadError::NotRunning`] if the domain has already been unloaded.
    pub fn force_unload(&self) -> Result<UnloadReport, UnloadError> {
        begin(&self.shared)?;
        Ok(force(&self.shared, "asked for"))
    }

    /// Runs `callback` (with the domain's id) when an unload begins, before
    /// the guests' `custody_unloading` exports.
    pub fn on_unloading(&self, callback: impl FnOnce(u64) + Send + 'static) {
        super::lock(&self.shared.on_unloading).push(Box::new(callback));
    }

    /// Runs `callback` with the report when the domain's unload completes
    /// (at once, if it has).
    pub fn on_unloaded(&self, callback: impl FnOnce(&UnloadReport) + Send + 'static) {
        let mut callbacks = super::lock(&self.shared.on_unloaded);
        match self.shared.report() {
            Some(report) => {
                drop(callbacks);
                callback(&report);
            }
            None => callbacks.push(Box::new(callback)),
        }
    }
}

/// Starts the unload (or finds it started); runs the event if the store is
/// free. `Err` for a domain already unloaded.
fn begin(shared: &Arc<DomainShared>) -> Result<(), UnloadError> {
    match shared.state().begin_unload() {
        Ok(first) => {
            if first {
                *super::lock(&shared.unload_requested) = Some(Instant::now());
                tracing::debug!(target: "custody::domain", parent: &shared.span, domain = shared.id, "unload requested");
            }
            run_event_if_free(shared);
            Ok(())
        }
        Err(DomainState::Recycled) if shared.is_complete() => Ok(()),
        Err(state) => Err(UnloadError::from(
            shared.not_running(state, Refused::Unload),
        )),
    }
}

/// Runs the unloading event if it is wanted and the store is free (else
/// the call holding the store runs it when it ends); then hands on the
/// store to a timer runner that found it held.
pub(crate) fn run_event_if_free(shared: &DomainShared) {
    if !shared.state().wants_event() {
        return;
    }
    // The raw lock, not a `StoreGuard`: giving it back must not come here
    // again (and the event, once claimed, is not wanted any more).
    if let Some(mut guard) = shared.store.try_lock() {
        run_event(shared, &mut guard);
        drop(guard);
        // A timer due during the event runs now (a cooperative unload
        // still lets callbacks in).
        shared.timers.store_released();
    }
}

/// The unloading event, with the store: embedder callbacks, then the
/// guests' hooks; then completes if no root is left.
pub(crate) fn run_event(shared: &DomainShared, guard: &mut Option<Loaded>) {
    if !shared.state().claim_event() {
        return;
    }
    event_body(shared, guard.as_mut());
    if shared.state().event_done() == Next::Complete {
        teardown(shared, guard, Ending::Unloaded, None);
    }
}

/// A root went; completes the unload if it was the last one.
pub(crate) fn root_released(shared: &DomainShared) {
    if shared.state().release_root() == Next::Complete {
        complete(shared);
    }
}

/// Completes a cooperative unload whose completion the caller claimed.
pub(crate) fn complete(shared: &DomainShared) {
    let mut guard = shared.lock();
    teardown(shared, &mut guard, Ending::Unloaded, None);
}

/// Forces the unload under way and returns its report (waiting for the
/// thread that completes it, if another does).
pub(crate) fn force(shared: &DomainShared, why: &str) -> UnloadReport {
    if shared.state().force() == Next::Complete {
        let roots_cut: Vec<String> = shared
            .roots
            .list(&shared.ctx_shared, Duration::ZERO)
            .iter()
            .map(Root::describe)
            .collect();
        // Running code stops at its next epoch check; a blocked host call
        // wakes at once.
        shared.ctx_shared.cancel.raise(Reason::Unload);
        let mut forced = Forced {
            why: why.to_string(),
            roots_cut,
            abandoned: None,
        };
        match lock_within(shared, shared.policy.unload_grace) {
            Some(mut guard) => {
                // The unloading hook may still run (and wait) if the event
                // has not: the signal is lowered for it.
                shared.ctx_shared.cancel.lower(Reason::Unload);
                if shared.state().claim_event() {
                    event_body(shared, guard.as_mut());
                }
                teardown(shared, &mut guard, Ending::Unloaded, Some(forced))
            }
            None => {
                forced.abandoned = shared.roots.current_call(&shared.ctx_shared);
                // The call keeps the store; it drops it when it returns.
                teardown(shared, &mut None, Ending::Unloaded, Some(forced))
            }
        }
        return shared.report().expect("teardown keeps the report");
    }
    shared
        .wait_report(Duration::MAX)
        .expect("an unbounded wait ends with the report")
}

/// The store, waiting at most `grace` for the call in flight to return.
fn lock_within(shared: &DomainShared, grace: Duration) -> Option<Held<'_, Option<Loaded>>> {
    let until = crate::deadline::after(grace);
    loop {
        if let Some(guard) = shared.store.try_lock() {
            return Some(guard);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ends the domain: the unloading hook if it has not run (for an unload),
/// the instances dropped, the table drained (OS handles last), the state
/// made final, the report kept (read it with `DomainShared::report`: most
/// endings have nobody waiting for it, so it is not cloned to be returned)
/// and the `on_unloaded` callbacks run. The caller holds the store's lock,
/// so no guest code runs during or after
/// it (or, for an abandoned call, the store is dropped when it returns).
pub(crate) fn teardown(
    shared: &DomainShared,
    guard: &mut Option<Loaded>,
    ending: Ending,
    forced: Option<Forced>,
) {
    let mut report = UnloadReport {
        domain: shared.id,
        released: 0,
        failed: Vec::new(),
        deferred: 0,
        hooks: Vec::new(),
        forced,
        ledger: Ledger::default(),
    };
    if let Some(mut loaded) = guard.take() {
        if ending == Ending::Unloaded && shared.state().claim_event() {
            event_body(shared, Some(&mut loaded));
        }
        // Guest code is done and its instances go; the OS handles last.
        drop(loaded);
    }
    report.hooks = std::mem::take(&mut *super::lock(&shared.hooks));
    let drained = shared.table().drain();
    report.record(&drained);
    let (counter, state) = match ending {
        Ending::Unloaded => (
            &shared.ctx_shared.ledger.released_at_unload,
            DomainState::Unloaded,
        ),
        Ending::Recycled => (
            &shared.ctx_shared.ledger.released_at_recycle,
            DomainState::Recycled,
        ),
    };
    LedgerCounts::bump(counter, drained.released as u64);
    shared.ctx_shared.cancel.close();
    shared.state().finish(state);
    report.ledger = shared.ledger();
    shared.runtime.registry.retire(shared.id, report.ledger);
    tracing::info!(
        target: "custody::domain",
        parent: &shared.span,
        domain = shared.id,
        state = ?state,
        released = report.released,
        failed = report.failed.len(),
        deferred = report.deferred,
        forced = report.forced.is_some(),
        "ended"
    );
    if let Some(forced) = &report.forced {
        report_forced(shared, forced);
    }
    shared.complete(report);
    // Refs this domain held on others (`strong_ref_for`) go with it.
    let dependents = super::lock(&shared.owned_refs).take();
    for release in dependents.into_iter().flatten() {
        release();
    }
}

/// Fires `unloadBlocked`, once per unload.
fn report_blocked(shared: &DomainShared) {
    if shared
        .blocked_reported
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return;
    }
    let roots = shared.roots.list(&shared.ctx_shared, super::SAMPLE_WAIT);
    let domain = shared.id;
    let causes: Vec<String> = roots.iter().map(likely_cause).collect();
    tracing::warn!(target: "custody::domain", parent: &shared.span, domain, roots = roots.len(), "unload blocked");
    diagnostics::fire(Assistant::UnloadBlocked, || {
        let mut d = Diagnostic::new(
            Assistant::UnloadBlocked,
            format!(
                "domain {domain} has not finished unloading after {:?}: {}",
                shared.policy.unload_grace,
                describe(&roots)
            ),
        );
        d.domain = Some(domain);
        d.causes = causes;
        d.with_detail(serde_json::to_value(&roots).unwrap_or_default())
    });
}

/// A root's likely cause, in plain words.
fn likely_cause(root: &Root) -> String {
    use super::roots::RootKind;
    match root.kind {
        RootKind::Call => format!(
            "a call to {} is still running{} (it ends at its deadline, or force the unload)",
            root.label,
            root.detail
                .as_deref()
                .map(|d| format!(", {d}"))
                .unwrap_or_default()
        ),
        RootKind::Ref => format!("a DomainRef labelled {:?} was not dropped", root.label),
        RootKind::MemoryView => format!("a memory view labelled {:?} was not dropped", root.label),
        RootKind::Timer => format!(
            "a timer calling {} is still armed: the guest's custody_unloading should close it (armed at: {})",
            root.label,
            root.site
                .as_deref()
                .unwrap_or("?")
                .lines()
                .next()
                .unwrap_or("?")
        ),
        RootKind::PinnedHandle => format!(
            "a host thread pinned {} ({:?}) outside a call and has not dropped the guard",
            root.detail.as_deref().unwrap_or("a handle"),
            root.label
        ),
        RootKind::Dependent => format!(
            "domain {} holds a ref to this one ({:?}); it goes when that domain unloads",
            root.holder.unwrap_or_default(),
            root.label
        ),
    }
}

fn report_forced(shared: &DomainShared, forced: &Forced) {
    let domain = shared.id;
    diagnostics::fire(Assistant::UnloadForced, || {
        let mut d = Diagnostic::new(
            Assistant::UnloadForced,
            format!(
                "domain {domain}'s unload was forced ({}): {} root(s) cut{}",
                forced.why,
                forced.roots_cut.len(),
                forced
                    .abandoned
                    .as_ref()
                    .map(|c| format!("; abandoned {c}"))
                    .unwrap_or_default()
            ),
        );
        d.domain = Some(domain);
        d.causes = forced.roots_cut.clone();
        d
    });
}

fn report_leaked(shared: &DomainShared, unloading_for: Duration) {
    let domain = shared.id;
    let roots = shared.roots.list(&shared.ctx_shared, super::SAMPLE_WAIT);
    diagnostics::fire(Assistant::DomainLeaked, || {
        let mut d = Diagnostic::new(
            Assistant::DomainLeaked,
            format!(
                "domain {domain} has been unloading for {unloading_for:?} (escalation.unload_blocked = wait): {}",
                describe(&roots)
            ),
        );
        d.domain = Some(domain);
        d.causes = roots.iter().map(likely_cause).collect();
        d
    });
}

/// The unloading event's work, once claimed: the embedder's
/// `on_unloading` callbacks, then the guests' hooks (if the store is
/// there), whose outcome is kept for the report. The callbacks run with
/// the store locked: they must not call into the domain.
fn event_body(shared: &DomainShared, loaded: Option<&mut Loaded>) {
    let callbacks = std::mem::take(&mut *super::lock(&shared.on_unloading));
    for callback in callbacks {
        callback(shared.id);
    }
    // Most modules export no hook: then there is nothing to run or keep.
    if let Some(loaded) = loaded
        && loaded.modules.iter().any(|m| m.exports.unloading.is_some())
    {
        let hooks = run_unloading_hooks(loaded, shared.policy.unload_hook_timeout);
        *super::lock(&shared.hooks) = hooks;
    }
}

/// Runs every module's `custody_unloading` export in load order, bounded by
/// `limit` each; a hook that fails does not keep the next from running.
fn run_unloading_hooks(loaded: &mut Loaded, limit: Duration) -> Vec<ModuleHook> {
    let hooks: Vec<(String, Func)> = loaded
        .modules
        .iter()
        .filter_map(|m| {
            let export = m.exports.unloading?;
            let hook = m
                .instance
                .get_module_export(&mut loaded.store, &export)?
                .into_func()?;
            Some((m.name.clone(), hook))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(hooks.len());
    let domain = loaded.store.data().id;
    loaded.store.data_mut().in_unloading_hook = true;
    for (module, hook) in hooks {
        let started = Instant::now();
        let ty = hook.ty(&loaded.store);
        let result = call_func(
            &mut loaded.store,
            UNLOADING_EXPORT,
            hook,
            &ty,
            &[],
            Some(limit),
        );
        let outcome = match result {
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
        outcomes.push(ModuleHook { module, outcome });
    }
    loaded.store.data_mut().in_unloading_hook = false;
    outcomes
}
