//! `Domain`: the isolation unit. Its modules' instances, its handle table,
//! its state; unload releases everything it owned.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use custody_handle::{CloseOutcome, HandleError, HandleId, HandleTable, ReleaseHandle, format_raw};
use serde::Serialize;
use wasmtime::{
    Extern, Func, Instance, Module, SharedMemory, Store, Trap, UpdateDeadline, Val, ValType,
    WasmBacktrace,
};

use crate::abi;
use crate::error::{CallError, LoadError, UnloadError};
use crate::host::HostShared;
use crate::policy::Policy;
use crate::sys::Cancel;

/// Where a domain is in its life. Transitions only go forward:
/// `Running -> Unloading -> Unloaded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DomainState {
    /// Takes calls.
    Running,
    /// Refuses calls; its unloading hook runs and its handles are released.
    Unloading,
    /// Gone: every handle released, every instance dropped.
    Unloaded,
}

impl DomainState {
    fn from_u8(v: u8) -> DomainState {
        match v {
            0 => DomainState::Running,
            1 => DomainState::Unloading,
            _ => DomainState::Unloaded,
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
    /// Handles released by unload because the guest never closed them.
    pub released_at_unload: u64,
    /// Releases that failed (each fired `releaseHandleFailed`).
    pub release_failures: u64,
}

/// A pre-opened directory: the only filesystem a domain can reach.
pub(crate) struct Preopen {
    pub(crate) name: String,
    pub(crate) dir: OwnedFd,
}

/// Why the guest was stopped, carried as the error of the epoch callback.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Interrupt {
    #[error("the domain is unloading")]
    Unloading,
    #[error("the deadline of {0:?} passed")]
    Deadline(Duration),
}

/// The store data of a domain: what host functions see of it.
pub(crate) struct DomainCtx {
    pub(crate) id: u64,
    pub(crate) table: Arc<HandleTable>,
    pub(crate) cancel: Arc<Cancel>,
    pub(crate) preopens: Vec<Preopen>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) last_errno: i32,
    pub(crate) ledger: Ledger,
    pub(crate) critical_depth: u32,
    /// When the current call must stop, if it has a deadline.
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// Running the `custody_unloading` export: aborted host calls return
    /// `E_ABORTED` to it instead of ending it.
    pub(crate) in_unloading_hook: bool,
    host: Arc<HostShared>,
}

impl DomainCtx {
    pub(crate) fn log_line(&self, level: u8, text: &str) {
        (self.host.log)(self.id, level, text);
    }

    /// Why the current call is being stopped.
    pub(crate) fn interrupt(&self) -> Interrupt {
        match self.deadline {
            Some((_, limit)) if !self.cancel.is_raised() => Interrupt::Deadline(limit),
            _ => Interrupt::Unloading,
        }
    }

    /// Bounds a host wait by the current call's deadline: the wait to use,
    /// and whether the deadline (not the guest's own timeout) is what
    /// shortened it. A guest blocked in the host never reaches an epoch
    /// check, so its waits must end by themselves at the deadline.
    pub(crate) fn bound(&self, wanted: Duration) -> (Duration, bool) {
        match self.deadline {
            Some((at, _)) => {
                let left = at.saturating_duration_since(Instant::now());
                if left < wanted {
                    (left, true)
                } else {
                    (wanted, false)
                }
            }
            None => (wanted, false),
        }
    }
}

struct Loaded {
    store: Store<DomainCtx>,
    /// Loaded modules in load order: (name, instance).
    instances: Vec<(String, Instance)>,
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
/// Unloading releases every handle the domain's guests still hold (also what
/// happens if the last `Domain` is dropped without `unload`). Domain ids are
/// never reused.
#[derive(Clone)]
pub struct Domain {
    shared: Arc<DomainShared>,
}

fn lock(loaded: &Mutex<Option<Loaded>>) -> MutexGuard<'_, Option<Loaded>> {
    loaded.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Domain {
    pub(crate) fn new(host: &Arc<HostShared>, id: u64, preopens: Vec<Preopen>) -> Domain {
        let policy = Arc::clone(&host.policy);
        let table = Arc::new(HandleTable::with_limit(policy.handle_quota).for_domain(id));
        let cancel = Arc::new(Cancel::default());
        let ctx = DomainCtx {
            id,
            table: Arc::clone(&table),
            cancel: Arc::clone(&cancel),
            preopens,
            policy,
            last_errno: 0,
            ledger: Ledger::default(),
            critical_depth: 0,
            deadline: None,
            in_unloading_hook: false,
            host: Arc::clone(host),
        };
        let mut store = Store::new(&host.engine, ctx);
        // The epoch ticker fires every few milliseconds; each time, a running
        // guest checks whether it must stop. (A guest blocked in a host call
        // is woken by the cancellation signal instead.)
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let data = ctx.data();
            if data.cancel.is_raised() {
                return Err(Interrupt::Unloading.into());
            }
            if let Some((at, limit)) = data.deadline
                && Instant::now() >= at
            {
                return Err(Interrupt::Deadline(limit).into());
            }
            Ok(UpdateDeadline::Continue(1))
        });
        Domain {
            shared: Arc::new(DomainShared {
                id,
                state: AtomicU8::new(DomainState::Running as u8),
                table,
                cancel,
                loaded: Mutex::new(Some(Loaded {
                    store,
                    instances: Vec::new(),
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
        let loaded = guard
            .as_mut()
            .ok_or_else(|| not_running(DomainState::Unloaded))?;
        if loaded.instances.iter().any(|(n, _)| n == name) {
            return Err(LoadError::Duplicate(name.to_string()));
        }
        let imports = self.resolve_imports(loaded, module)?;
        let instance = Instance::new(&mut loaded.store, module, &imports).map_err(|e| {
            LoadError::Instantiate {
                module: name.to_string(),
                message: format!("{e:#}"),
            }
        })?;
        loaded.instances.push((name.to_string(), instance));
        Ok(())
    }

    fn resolve_imports(
        &self,
        loaded: &mut Loaded,
        module: &Module,
    ) -> Result<Vec<Extern>, LoadError> {
        let host = &self.shared.host;
        let mut imports = Vec::new();
        for import in module.imports() {
            let (from, name) = (import.module(), import.name());
            let unresolved = || LoadError::UnresolvedImport {
                module: from.to_string(),
                name: name.to_string(),
            };
            let sibling = loaded
                .instances
                .iter()
                .find(|(n, _)| n == from)
                .map(|(_, instance)| *instance);
            let resolved = match sibling {
                Some(instance) => instance.get_export(&mut loaded.store, name),
                None if from == abi::MODULE => {
                    let function = abi::function(name).ok_or_else(unresolved)?;
                    if let Some(&category) = function
                        .categories
                        .iter()
                        .find(|c| host.policy.denied.contains(c))
                    {
                        return Err(LoadError::Denied {
                            module: from.to_string(),
                            name: name.to_string(),
                            category,
                        });
                    }
                    host.linker.get(&mut loaded.store, from, name).ok()
                }
                None => None,
            };
            imports.push(resolved.ok_or_else(unresolved)?);
        }
        Ok(imports)
    }

    /// Calls an exported function (the first loaded module exporting `name`).
    ///
    /// # Errors
    /// See [`CallError`]. A trap or abort ends the call; the domain goes on.
    pub fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, CallError> {
        let not_running = |state| CallError::NotRunning {
            domain: self.id(),
            state,
        };
        self.check_running().map_err(not_running)?;
        let mut guard = lock(&self.shared.loaded);
        let loaded = guard
            .as_mut()
            .ok_or_else(|| not_running(DomainState::Unloaded))?;
        let func = loaded
            .instances
            .iter()
            .find_map(|(_, instance)| instance.get_func(&mut loaded.store, name))
            .ok_or_else(|| CallError::NoSuchExport(name.to_string()))?;
        call_func(&mut loaded.store, name, func, args, None)
    }

    /// The shared memory a loaded module exports under `export`, if any (for
    /// embedders and tests running a second guest thread over it).
    pub fn shared_memory(&self, module: &str, export: &str) -> Option<SharedMemory> {
        let mut guard = lock(&self.shared.loaded);
        let loaded = guard.as_mut()?;
        let instance = loaded
            .instances
            .iter()
            .find(|(n, _)| n == module)
            .map(|(_, i)| *i)?;
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
    /// [`UnloadError::NotRunning`] if an unload already happened or is
    /// happening.
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
        // Wake a call blocked in the host and stop one running guest code;
        // then wait for it to give the store back.
        shared.cancel.raise();
        let mut guard = lock(&shared.loaded);
        shared.cancel.lower();
        let mut hook = HookOutcome::Absent;
        let mut ledger = Ledger::default();
        if let Some(mut loaded) = guard.take() {
            hook = run_unloading_hook(&mut loaded, shared.host.policy.unload_hook_timeout);
            ledger = loaded.store.data().ledger;
            // Guest code is done; now the OS handles, last.
            let drained = shared.table.drain();
            ledger.released_at_unload = drained.released as u64;
            ledger.release_failures += drained.failed.len() as u64;
            let failed = drained
                .failed
                .iter()
                .map(|f| FailedRelease {
                    handle: f.id.raw(),
                    handle_type: f.handle_type.to_string(),
                    raw_hex: format_raw(f.raw_value),
                    error: f.error.to_string(),
                })
                .collect();
            drop(loaded);
            shared.cancel.close();
            shared
                .state
                .store(DomainState::Unloaded as u8, Ordering::Release);
            shared.host.forget(shared.id);
            return Ok(UnloadReport {
                domain: shared.id,
                released: drained.released,
                failed,
                deferred: drained.deferred,
                hook,
                ledger,
            });
        }
        shared
            .state
            .store(DomainState::Unloaded as u8, Ordering::Release);
        Ok(UnloadReport {
            domain: shared.id,
            released: 0,
            failed: Vec::new(),
            deferred: 0,
            hook,
            ledger,
        })
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
        Err(error) => Err(call_error(export, error)),
    }
}

fn call_error(export: &str, error: wasmtime::Error) -> CallError {
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string())
        .unwrap_or_default();
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return CallError::Aborted {
            export: export.to_string(),
            reason: interrupt.to_string(),
            backtrace,
        };
    }
    let message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    CallError::Trap {
        export: export.to_string(),
        message,
        backtrace,
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
        .instances
        .iter()
        .filter_map(|(_, instance)| instance.get_func(&mut loaded.store, UNLOADING_EXPORT))
        .collect();
    let mut outcome = HookOutcome::Absent;
    loaded.store.data_mut().in_unloading_hook = true;
    for hook in hooks {
        outcome = match call_func(&mut loaded.store, UNLOADING_EXPORT, hook, &[], Some(limit)) {
            Ok(_) => HookOutcome::Completed,
            Err(CallError::Aborted { .. }) => HookOutcome::TimedOut,
            Err(e) => HookOutcome::Trapped(e.to_string()),
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
