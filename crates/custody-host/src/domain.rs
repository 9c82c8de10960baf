//! `Domain`: the isolation unit. Its modules' instances, its handle table,
//! its state; failures escalate by the policy; unload releases everything it
//! owned.

use std::cell::Cell;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use custody_handle::{
    CloseOutcome, DrainReport, HandleError, HandleId, HandleTable, ReleaseHandle, format_raw,
};
use serde::Serialize;
use wasmtime::{
    Func, Instance, Module, ResourceLimiter, SharedMemory, Store, Trap, UpdateDeadline, Val,
    ValType, WasmBacktrace,
};

use crate::abi::AbiError;
use crate::error::{CallError, LoadError, UnloadError};
use crate::host::HostShared;
use crate::policy::{Action, Policy};
use crate::sys::{self, Cancel, Wait};
use rustix::event::PollFlags;
use rustix::io::Errno;

/// Where a domain is in its life. Transitions only go forward, except that a
/// recycle re-created from its modules returns to `Running`:
/// `Running -> Unloading -> Unloaded`, `Running -> Recycled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DomainState {
    /// Takes calls.
    Running,
    /// Refuses calls; its unloading hook runs and its handles are released.
    Unloading,
    /// Gone: every handle released, every instance dropped.
    Unloaded,
    /// Recycled after a failure and not re-created: every handle released,
    /// every instance dropped.
    Recycled,
}

impl DomainState {
    fn from_u8(v: u8) -> DomainState {
        match v {
            0 => DomainState::Running,
            1 => DomainState::Unloading,
            2 => DomainState::Unloaded,
            _ => DomainState::Recycled,
        }
    }
}

/// The handle ledger of a domain: what its guests opened and what happened
/// to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Handles created for the guest (`open`, `dup`, each end of a `pipe`).
    pub opened: u64,
    /// Handles the guest closed itself.
    pub closed_by_guest: u64,
    /// Handles released by a recycle because the guest never closed them.
    pub released_at_recycle: u64,
    /// Handles released by unload because the guest never closed them.
    pub released_at_unload: u64,
    /// Releases that failed (each fired `releaseHandleFailed`).
    pub release_failures: u64,
    /// How many times the domain was recycled.
    pub recycles: u64,
}

/// A pre-opened directory: the only filesystem a domain can reach.
pub(crate) struct Preopen {
    pub(crate) name: String,
    pub(crate) dir: OwnedFd,
}

/// Why the guest was stopped: the error a stopped call carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Interrupt {
    #[error("the domain is unloading")]
    Unloading,
    #[error("aborted by the host")]
    HostAbort,
    #[error("the deadline of {0:?} passed")]
    Deadline(Duration),
    #[error("the memory limit of {0} bytes was reached")]
    MemoryLimit(usize),
}

/// The store data of a domain: what host functions see of it.
pub(crate) struct DomainCtx {
    pub(crate) id: u64,
    pub(crate) table: Arc<HandleTable>,
    pub(crate) cancel: Arc<Cancel>,
    pub(crate) preopens: Vec<Preopen>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) last_errno: Cell<i32>,
    pub(crate) ledger: Ledger,
    /// Open critical regions (and host locks held) in the current call.
    pub(crate) critical_depth: u32,
    /// When the current call must stop, if it has a deadline.
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// Running the `custody_unloading` export: aborted host calls return
    /// `E_ABORTED` to it instead of ending it.
    pub(crate) in_unloading_hook: bool,
    /// Linear memory of all the domain's instances, in bytes.
    memory_used: usize,
    /// Host locks the current call holds (embedder functions).
    pub(crate) host_locks: Arc<crate::embed::LockCount>,
    host: Arc<HostShared>,
}

impl DomainCtx {
    pub(crate) fn log_line(&self, level: u8, text: &str) {
        (self.host.log)(self.id, level, text);
    }

    /// Why the current call is being stopped.
    pub(crate) fn interrupt(&self) -> Interrupt {
        match (self.cancel.reason(), self.deadline) {
            (Cancel::UNLOAD, _) => Interrupt::Unloading,
            (Cancel::ABORT, _) | (_, None) => Interrupt::HostAbort,
            (_, Some((_, limit))) => Interrupt::Deadline(limit),
        }
    }

    /// Ends every host call the same way: `E_ABORTED` ends the guest's
    /// call at once, as a trap carrying the reason, except in the unloading
    /// hook, which can still observe it; any other code goes to the guest.
    pub(crate) fn deliver(&self, error: AbiError) -> Result<AbiError, Interrupt> {
        if error == AbiError::Aborted && !self.in_unloading_hook {
            Err(self.interrupt())
        } else {
            Ok(error)
        }
    }

    /// Records an OS error as the domain's `last_error`; returns `E_IO`.
    pub(crate) fn os_error(&self, errno: i32) -> AbiError {
        self.last_errno.set(errno);
        AbiError::Io
    }

    /// Records an I/O error's errno (EIO if it has none); returns `E_IO`.
    pub(crate) fn io_error(&self, error: &std::io::Error) -> AbiError {
        self.os_error(error.raw_os_error().unwrap_or(Errno::IO.raw_os_error()))
    }

    /// The one way a host call waits: on `fds` (or only on time) for at most
    /// `wanted`, cut at the call's deadline, and woken at once by the
    /// cancellation signal. A guest blocked in the host never reaches an
    /// epoch check, so the wait itself must end at the deadline.
    ///
    /// `Ok` is `Ready` or the guest's own timeout (`TimedOut`); a
    /// cancellation or the deadline is `E_ABORTED`; an OS error is `E_IO`.
    pub(crate) fn wait(
        &self,
        fds: &[BorrowedFd<'_>],
        interest: PollFlags,
        wanted: Duration,
    ) -> Result<Wait, AbiError> {
        let (timeout, cut_by_deadline) = match self.deadline {
            Some((at, _)) => {
                let left = at.saturating_duration_since(Instant::now());
                (left.min(wanted), left < wanted)
            }
            None => (wanted, false),
        };
        match sys::wait(fds, interest, &self.cancel, timeout) {
            Ok(Wait::Cancelled) => Err(AbiError::Aborted),
            Ok(Wait::TimedOut) if cut_by_deadline => Err(AbiError::Aborted),
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(self.io_error(&e)),
        }
    }
}

impl ResourceLimiter for DomainCtx {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.memory_used + (desired - current);
        if let Some(limit) = self.policy.memory_limit
            && grown > limit
        {
            // An error, not `Ok(false)`: growth past the cap aborts the call
            // rather than handing the guest a -1 it may ignore.
            return Err(Interrupt::MemoryLimit(limit).into());
        }
        self.memory_used = grown;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

struct LoadedModule {
    name: String,
    module: Module,
    instance: Instance,
}

struct Loaded {
    store: Store<DomainCtx>,
    /// In load order, so a recycle re-creates them in the same order.
    modules: Vec<LoadedModule>,
}

pub(crate) struct DomainShared {
    pub(crate) id: u64,
    state: AtomicU8,
    table: Arc<HandleTable>,
    cancel: Arc<Cancel>,
    loaded: Mutex<Option<Loaded>>,
    host: Arc<HostShared>,
}

impl DomainShared {
    pub(crate) fn state(&self) -> DomainState {
        DomainState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, state: DomainState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn handle_count(&self) -> usize {
        self.table.len()
    }
}

/// An isolation unit: WebAssembly modules, their handles and their fate.
///
/// .NET: an `AppDomain` / a collectible `AssemblyLoadContext`. Several
/// modules can be loaded into one domain; imports between them resolve
/// inside the domain first, then to the host's `custody` ABI. Calls into one
/// domain are serialized; calls into different domains run in parallel.
/// A failed call escalates by the host's [`Policy`]; unloading releases
/// every handle the domain's guests still hold (also what happens if the
/// last `Domain` is dropped without `unload`). Domain ids are never reused.
#[derive(Clone)]
pub struct Domain {
    shared: Arc<DomainShared>,
}

fn lock(loaded: &Mutex<Option<Loaded>>) -> MutexGuard<'_, Option<Loaded>> {
    loaded.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_store(
    host: &Arc<HostShared>,
    id: u64,
    table: &Arc<HandleTable>,
    cancel: &Arc<Cancel>,
    preopens: Vec<Preopen>,
    ledger: Ledger,
) -> Store<DomainCtx> {
    let ctx = DomainCtx {
        id,
        table: Arc::clone(table),
        cancel: Arc::clone(cancel),
        preopens,
        policy: Arc::clone(&host.policy),
        last_errno: Cell::new(0),
        ledger,
        critical_depth: 0,
        deadline: None,
        in_unloading_hook: false,
        memory_used: 0,
        host_locks: Arc::default(),
        host: Arc::clone(host),
    };
    let mut store = Store::new(&host.engine, ctx);
    store.limiter(|ctx| ctx as &mut dyn ResourceLimiter);
    // The epoch ticker fires every few milliseconds; each time, a running
    // guest checks whether it must stop. (A guest blocked in a host call is
    // woken by the cancellation signal instead.)
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        let data = ctx.data();
        if data.cancel.is_raised() {
            return Err(data.interrupt().into());
        }
        if let Some((at, limit)) = data.deadline
            && Instant::now() >= at
        {
            return Err(Interrupt::Deadline(limit).into());
        }
        Ok(UpdateDeadline::Continue(1))
    });
    store
}

/// Instantiates `module`, resolving its imports against `siblings` (modules
/// already in the domain) and then the `custody` ABI.
fn instantiate(
    host: &HostShared,
    store: &mut Store<DomainCtx>,
    siblings: &[LoadedModule],
    name: &str,
    module: &Module,
) -> Result<Instance, LoadError> {
    let mut imports = Vec::new();
    for import in module.imports() {
        let (from, field) = (import.module(), import.name());
        let unresolved = || LoadError::UnresolvedImport {
            module: from.to_string(),
            name: field.to_string(),
        };
        let sibling = siblings.iter().find(|m| m.name == from).map(|m| m.instance);
        let resolved = match sibling {
            Some(instance) => instance.get_export(&mut *store, field),
            None => {
                let categories = host.categories_of(from, field).ok_or_else(unresolved)?;
                if let Some(&category) = categories.iter().find(|c| host.policy.denied.contains(c))
                {
                    return Err(LoadError::Denied {
                        module: from.to_string(),
                        name: field.to_string(),
                        category,
                    });
                }
                host.linker.get(&mut *store, from, field).ok()
            }
        };
        imports.push(resolved.ok_or_else(unresolved)?);
    }
    Instance::new(&mut *store, module, &imports).map_err(|e| LoadError::Instantiate {
        module: name.to_string(),
        message: format!("{e:#}"),
    })
}

impl Domain {
    pub(crate) fn new(host: &Arc<HostShared>, id: u64, preopens: Vec<Preopen>) -> Domain {
        let table = Arc::new(HandleTable::with_limit(host.policy.handle_quota).for_domain(id));
        let cancel = Arc::new(Cancel::default());
        let store = new_store(host, id, &table, &cancel, preopens, Ledger::default());
        Domain {
            shared: Arc::new(DomainShared {
                id,
                state: AtomicU8::new(DomainState::Running as u8),
                table,
                cancel,
                loaded: Mutex::new(Some(Loaded {
                    store,
                    modules: Vec::new(),
                })),
                host: Arc::clone(host),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<DomainShared> {
        &self.shared
    }

    /// The domain's id (never reused in this process).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Where the domain is in its life.
    pub fn state(&self) -> DomainState {
        self.shared.state()
    }

    /// The domain's handle table (what its guests' handle ids name).
    pub fn table(&self) -> &HandleTable {
        &self.shared.table
    }

    /// Gives the domain's guests a handle to `resource` (an embedder-provided
    /// resource); the guest sees the returned id.
    ///
    /// # Errors
    /// [`HandleError::QuotaExceeded`] when the domain's quota is used up (the
    /// resource is then released).
    pub fn insert_handle<T: ReleaseHandle>(&self, resource: T) -> Result<HandleId, HandleError> {
        self.shared.table.insert(resource)
    }

    /// Closes a guest's handle from the host side: the id is stale at once;
    /// if a call is using the handle, the release waits for it to return.
    ///
    /// # Errors
    /// As [`HandleTable::close`].
    pub fn close_handle(&self, id: HandleId) -> Result<CloseOutcome, HandleError> {
        self.shared.table.close(id)
    }

    /// Aborts the call in flight, if any: running guest code stops at its
    /// next epoch check, a host call blocked in a wait wakes at once, and the
    /// call ends with [`CallError::Aborted`] (or escalates, if the guest was
    /// in a critical region). An abort with no call in flight is dropped.
    pub fn abort(&self) {
        self.shared.cancel.raise(Cancel::ABORT);
    }

    fn check_running(&self) -> Result<(), DomainState> {
        match self.state() {
            DomainState::Running => Ok(()),
            state => Err(state),
        }
    }

    /// Loads a compiled module into the domain under `name`, resolving its
    /// imports against modules already in the domain, then the `custody`
    /// ABI (subject to the policy's denied categories).
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load(&self, name: &str, module: &Module) -> Result<(), LoadError> {
        let not_running = |state| LoadError::NotRunning {
            domain: self.id(),
            state,
        };
        self.check_running().map_err(not_running)?;
        let mut guard = lock(&self.shared.loaded);
        let loaded = guard.as_mut().ok_or_else(|| not_running(self.state()))?;
        if loaded.modules.iter().any(|m| m.name == name) {
            return Err(LoadError::Duplicate(name.to_string()));
        }
        let instance = instantiate(
            &self.shared.host,
            &mut loaded.store,
            &loaded.modules,
            name,
            module,
        )?;
        loaded.modules.push(LoadedModule {
            name: name.to_string(),
            module: module.clone(),
            instance,
        });
        Ok(())
    }

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
        self.check_running().map_err(not_running)?;
        let mut guard = lock(&self.shared.loaded);
        let loaded = guard.as_mut().ok_or_else(|| not_running(self.state()))?;
        let func = loaded
            .modules
            .iter()
            .find_map(|m| m.instance.get_func(&mut loaded.store, name))
            .ok_or_else(|| CallError::NoSuchExport(name.to_string()))?;
        // An abort raised while no call was in flight is not for this one.
        self.shared.cancel.lower(Cancel::ABORT);
        let policy = Arc::clone(&self.shared.host.policy);
        let outcome = call_func(&mut loaded.store, name, func, args, policy.deadline);
        self.shared.cancel.lower(Cancel::ABORT);
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
        if self.shared.cancel.reason() == Cancel::UNLOAD {
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
        let released = self.escalate(&mut guard, action, name, &reason, &backtrace);
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
fn report_aborted(
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

impl Domain {
    /// Recycles or unloads the domain after a failed call; returns how many
    /// handles were released.
    fn escalate(
        &self,
        guard: &mut Option<Loaded>,
        action: Action,
        function: &str,
        reason: &str,
        backtrace: &str,
    ) -> usize {
        let shared = &self.shared;
        let Some(loaded) = guard.as_mut() else {
            return 0;
        };
        let host = &shared.host;
        let mut ledger = loaded.store.data().ledger;
        let preopens = std::mem::take(&mut loaded.store.data_mut().preopens);
        let recreate = action == Action::RecycleDomain && host.policy.escalation.recreate;
        // Guest instances and memories go first, the OS handles last.
        let fresh = new_store(
            host,
            shared.id,
            &shared.table,
            &shared.cancel,
            preopens,
            Ledger::default(),
        );
        drop(std::mem::replace(&mut loaded.store, fresh));
        let drained = shared.table.drain();
        ledger.release_failures += drained.failed.len() as u64;
        if action == Action::RecycleDomain {
            ledger.released_at_recycle += drained.released as u64;
            ledger.recycles += 1;
        } else {
            ledger.released_at_unload += drained.released as u64;
        }
        loaded.store.data_mut().ledger = ledger;
        let mut recreated = false;
        if recreate {
            let modules = std::mem::take(&mut loaded.modules);
            recreated = true;
            for old in modules {
                match instantiate(
                    host,
                    &mut loaded.store,
                    &loaded.modules,
                    &old.name,
                    &old.module,
                ) {
                    Ok(instance) => loaded.modules.push(LoadedModule { instance, ..old }),
                    Err(_) => {
                        recreated = false;
                        break;
                    }
                }
            }
        }
        if !recreated {
            *guard = None;
            shared.cancel.close();
            shared.set_state(if action == Action::UnloadDomain {
                DomainState::Unloaded
            } else {
                DomainState::Recycled
            });
            host.forget(shared.id);
        }
        let domain = shared.id;
        let outcome = match (action, recreated) {
            (Action::UnloadDomain, _) => "unloaded".to_string(),
            (_, true) => "recycled and re-created from its modules".to_string(),
            (_, false) => "recycled (not re-created)".to_string(),
        };
        diagnostics::fire(Assistant::DomainRecycled, || {
            Diagnostic::new(
                Assistant::DomainRecycled,
                format!(
                    "domain {domain} was {outcome} because its call to {function} failed ({reason}): {} handle(s) released, {} release failure(s)",
                    drained.released,
                    drained.failed.len()
                ),
            )
            .with_call(domain, function, reason)
            .with_backtrace(backtrace)
        });
        drained.released
    }

    /// The shared memory a loaded module exports under `export`, if any (for
    /// embedders and tests running a second guest thread over it).
    pub fn shared_memory(&self, module: &str, export: &str) -> Option<SharedMemory> {
        let mut guard = lock(&self.shared.loaded);
        let loaded = guard.as_mut()?;
        let instance = loaded
            .modules
            .iter()
            .find(|m| m.name == module)
            .map(|m| m.instance)?;
        instance.get_shared_memory(&mut loaded.store, export)
    }

    /// The handle ledger so far (waits for an in-flight call to return).
    pub fn ledger(&self) -> Ledger {
        lock(&self.shared.loaded)
            .as_ref()
            .map(|l| l.store.data().ledger)
            .unwrap_or_default()
    }

    /// Unloads the domain: refuses new calls, stops an in-flight call
    /// (waking it if it is blocked in the host), runs the guest's
    /// `custody_unloading` export if it has one (bounded by the policy's
    /// `unload_hook_timeout`), releases every handle still in the table
    /// (OS handles last, after all guest code), and drops the instances.
    ///
    /// # Errors
    /// [`UnloadError::NotRunning`] if the domain is already unloading,
    /// unloaded or recycled.
    pub fn unload(&self) -> Result<UnloadReport, UnloadError> {
        let shared = &self.shared;
        if let Err(actual) = shared.state.compare_exchange(
            DomainState::Running as u8,
            DomainState::Unloading as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(UnloadError::NotRunning {
                domain: shared.id,
                state: DomainState::from_u8(actual),
            });
        }
        // Wake a call blocked in the host and stop running guest code; then
        // wait for it to give the store back.
        shared.cancel.raise(Cancel::UNLOAD);
        let mut guard = lock(&shared.loaded);
        shared.cancel.lower(Cancel::UNLOAD);
        let mut report = UnloadReport {
            domain: shared.id,
            released: 0,
            failed: Vec::new(),
            deferred: 0,
            hook: HookOutcome::Absent,
            ledger: Ledger::default(),
        };
        if let Some(mut loaded) = guard.take() {
            report.hook = run_unloading_hook(&mut loaded, shared.host.policy.unload_hook_timeout);
            report.ledger = loaded.store.data().ledger;
            // Guest code is done and its instances go; the OS handles last.
            drop(loaded);
            let drained = shared.table.drain();
            report.record(&drained);
        }
        shared.cancel.close();
        shared.set_state(DomainState::Unloaded);
        shared.host.forget(shared.id);
        Ok(report)
    }
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("id", &self.id())
            .field("state", &self.state())
            .field("handles", &self.shared.table.len())
            .finish()
    }
}

fn describe(types: impl Iterator<Item = ValType>) -> String {
    let names: Vec<String> = types.map(|t| t.to_string()).collect();
    format!("({})", names.join(", "))
}

fn call_func(
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

/// How the guest's `custody_unloading` export went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum HookOutcome {
    /// No loaded module exports it.
    Absent,
    /// It ran to completion.
    Completed,
    /// It trapped (the unload went on).
    Trapped(String),
    /// It ran past the policy's `unload_hook_timeout` and was stopped.
    TimedOut,
}

const UNLOADING_EXPORT: &str = "custody_unloading";

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
        let result = call_func(&mut loaded.store, UNLOADING_EXPORT, hook, &[], Some(limit));
        outcome = match result {
            Ok(_) => HookOutcome::Completed,
            Err(CallError::Aborted {
                reason, backtrace, ..
            }) => {
                report_aborted(domain, UNLOADING_EXPORT, &reason, &backtrace, None);
                HookOutcome::TimedOut
            }
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
        self.ledger.released_at_unload += drained.released as u64;
        self.ledger.release_failures += drained.failed.len() as u64;
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
