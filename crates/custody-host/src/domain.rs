//! [`Domain`]: the isolation unit. Its modules' instances, its handle table,
//! its state; failures escalate by the policy; unload releases everything it
//! owned.
//!
//! # Layers
//! - [`Domain`] is the embedder's value: a cheap handle (`Arc`) on
//!   [`DomainShared`].
//! - `DomainShared` is what outlives a call and is shared with the host's
//!   registry (weakly): the id, the [state word](state) and the store it
//!   locks ([`store_lock`]: one word holds the roots and the store's lock,
//!   so a call takes and gives back both in one CAS each), the
//!   [`HandleTable`], the cancellation signal, the ledger counts.
//! - `Loaded` is the store and the instances in load order. It exists while
//!   the domain can run guest code; taking it out of the store's lock
//!   (unload, a recycle not re-created) ends guest code for good.
//! - `DomainCtx` (the store's data, in `boundary::ctx`) is what a host call
//!   sees.
//!
//! # The invariant
//! Guest code runs only with the store's lock held, so calls into one
//! domain are serialized, and whoever holds the lock with `Loaded` taken
//! out knows no guest code can run again. Every path that ends a domain goes
//! through [`unload::teardown`]: instances are dropped first, then the table
//! is drained (OS handles last), then the state becomes final.
//!
//! The submodules, lowest first (as docs/ARCHITECTURE.md lists them):
//! [`state`] (the state word), [`store_lock`] (the store, locked by two
//! bits of that word), [`guest_run`] (running guest code: one export, classifying
//! its failure), [`link`] (instantiation: each import bound to a module of
//! the domain or a host function), [`resolve`] (the resolution order:
//! loading on demand what the domain's resolver or a host library
//! supplies), [`roots`] (what holds a domain), [`report`] (the unload
//! report), [`unload`] (the one unload procedure), [`store_guard`] (the
//! store held, and what giving it back runs), [`refs`] (refs, weak
//! domains, memory views, pinned handles), [`timers`] (guest timers),
//! [`recycle`] (the escalation ladder applied), [`call`] (calls, and when
//! they escalate).

pub(crate) mod call;
pub(crate) mod guest_run;
pub(crate) mod link;
pub(crate) mod recycle;
pub(crate) mod refs;
pub(crate) mod report;
pub(crate) mod resolve;
pub(crate) mod roots;
pub(crate) mod state;
pub(crate) mod store_guard;
pub(crate) mod store_lock;
pub(crate) mod timers;
pub(crate) mod unload;

use std::any::Any;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use custody_handle::{CloseOutcome, HandleError, HandleId, HandleTable, ReleaseHandle};
use wasmtime::{
    Func, FuncType, Instance, Module, ResourceLimiter, SharedMemory, Store, UpdateDeadline,
    WasmBacktrace,
};

use self::report::{ModuleHook, UnloadReport};
use self::roots::Roots;
use self::state::{Admit, StateWord};
use self::store_lock::StoreLock;
use crate::boundary::cancel::Reason;
use crate::boundary::ctx::{CtxShared, DomainCtx};
use crate::boundary::extensions::Extensions;
use crate::boundary::preopen::Preopens;
use crate::boundary::stack;
use crate::compile::pre_cache::KnownExports;
use crate::config::Policy;
use crate::error::{LoadError, NotRunning, Refused};
use crate::ledger::Ledger;
use crate::registry::{self, DomainInfo, DomainState, Listed, Tally};
use crate::runtime::Runtime;

/// The embedder's resolver (`DomainConfig::resolver`): a module for an
/// import module name, or `None`. It is called with the domain's lock held,
/// so it must not call into the same domain.
pub(crate) type Resolver = Arc<dyn Fn(&str) -> Option<Module> + Send + Sync>;

/// One module loaded in a domain.
pub(crate) struct LoadedModule {
    pub(crate) name: String,
    pub(crate) module: Module,
    pub(crate) instance: Instance,
    /// The module's exports the domain looks up, by index.
    pub(crate) exports: KnownExports,
}

/// The store and its instances, while the domain can run guest code.
pub(crate) struct Loaded {
    pub(crate) store: Store<DomainCtx>,
    /// In load order, so a recycle re-creates them in the same order.
    pub(crate) modules: Vec<LoadedModule>,
    /// The last export called, resolved: calls repeat, and wasmtime's
    /// lookup by name (a hash of the name, a string-pool search) and its
    /// type query cost nearly half of an empty call. Belongs to `store`:
    /// cleared whenever the store is replaced.
    pub(crate) last_export: Option<(Arc<str>, Func, FuncType)>,
    /// The thread of the last call (`call::this_thread`'s number). With
    /// `last_export`, what the call's root was last described as: a call
    /// like the last one describes nothing again.
    pub(crate) last_thread: Option<u64>,
}

impl Loaded {
    /// Puts `fresh` in place of the store (a recycle) and forgets what
    /// belonged to the old one; the old store is returned to be dropped.
    pub(crate) fn replace_store(&mut self, fresh: Store<DomainCtx>) -> Store<DomainCtx> {
        self.last_export = None;
        std::mem::replace(&mut self.store, fresh)
    }
}

/// How long `roots()` waits for a running guest to reach an epoch check and
/// hand over its stack: two epoch ticks, and some slack.
pub(crate) const SAMPLE_WAIT: Duration = Duration::from_millis(20);

/// Callbacks run when an unload begins (with the domain's id).
type OnUnloading = Box<dyn FnOnce(u64) + Send>;
/// Callbacks run when an unload completes.
type OnUnloaded = Box<dyn FnOnce(&UnloadReport) + Send>;
/// Releases a ref this domain holds on another.
type ReleaseRef = Box<dyn FnOnce() + Send>;

/// Locks a mutex of the domain; a panic elsewhere does not stop an unload.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a domain shares between its `Domain` values, its `DomainRef`s and
/// the registry.
pub(crate) struct DomainShared {
    pub(crate) id: u64,
    /// Its guest timers: what its store arms them with, and their runner.
    pub(crate) timers: Arc<timers::DomainTimers>,
    /// Its handle table, the cancellation signal, the ledger's counts and
    /// the host locks held, shared with the store's data (one allocation).
    pub(crate) ctx_shared: Arc<CtxShared>,
    /// The state word and the store it locks (`None` once the domain has
    /// ended).
    pub(crate) store: StoreLock<Option<Loaded>>,
    pub(crate) runtime: Arc<Runtime>,
    /// The domain's policy: the host's, or the domain's own (validated, and
    /// the same as the host's in every engine-wide setting).
    pub(crate) policy: Arc<Policy>,
    /// The embedder's resolver, asked for imports no module of the domain
    /// satisfies.
    pub(crate) resolver: Option<Resolver>,
    created: Instant,
    /// The `tracing` span every event of this domain is recorded in (each
    /// call's span is its child).
    pub(crate) span: tracing::Span,
    /// What keeps the domain from completing an unload (their count is in
    /// the state word).
    pub(crate) roots: Roots,
    /// The report of the unload (or recycle) that ended the domain, once it
    /// has; `completed` wakes its waiters.
    completion: Mutex<Option<UnloadReport>>,
    completed: Condvar,
    /// Each module's unloading hook, between the event and the teardown.
    pub(crate) hooks: Mutex<Vec<ModuleHook>>,
    pub(crate) on_unloading: Mutex<Vec<OnUnloading>>,
    pub(crate) on_unloaded: Mutex<Vec<OnUnloaded>>,
    /// Refs this domain holds on others (`strong_ref_for`), released when
    /// its unload completes; `None` from then on, so a ref made as it
    /// completes is refused rather than kept forever.
    pub(crate) owned_refs: Mutex<Option<Vec<ReleaseRef>>>,
    /// When an unload was asked for.
    pub(crate) unload_requested: Mutex<Option<Instant>>,
    /// Whether `unloadBlocked` fired for this unload.
    pub(crate) blocked_reported: std::sync::atomic::AtomicBool,
    /// Why an escalation ended the domain (the failure that started it),
    /// for the errors of every later call, load and unload.
    pub(crate) ended_by: Mutex<Option<Arc<crate::error::EndCause>>>,
    /// What each extension shares with the embedder outside the store
    /// (WASI: its capture buffers), found by type
    /// ([`Domain::extension`]).
    shared_extensions: Vec<Arc<dyn Any + Send + Sync>>,
}

impl DomainShared {
    /// The domain's handle table.
    #[inline]
    pub(crate) fn table(&self) -> &HandleTable {
        &self.ctx_shared.table
    }

    /// The state word: the phase, the unload's progress, the roots, the
    /// store's lock.
    #[inline]
    pub(crate) fn state(&self) -> &StateWord {
        self.store.state()
    }

    /// Why an escalation ended the domain, if one did.
    pub(crate) fn ended_by(&self) -> Option<Arc<crate::error::EndCause>> {
        lock(&self.ended_by).clone()
    }

    /// Why this domain refuses what was asked of it in `state`: the one
    /// `NotRunning` every refusal (load, call, ref, unload) is built from.
    pub(crate) fn not_running(&self, state: DomainState, refused: Refused) -> NotRunning {
        NotRunning::new(self.id, state, self.ended_by(), refused)
    }

    /// The report of the unload or recycle that ended the domain, if one
    /// has.
    pub(crate) fn report(&self) -> Option<UnloadReport> {
        lock(&self.completion).clone()
    }

    /// Whether the domain has ended (its report kept), without a clone.
    pub(crate) fn is_complete(&self) -> bool {
        lock(&self.completion).is_some()
    }

    /// Waits at most `timeout` for the domain to end; its report.
    pub(crate) fn wait_report(&self, timeout: Duration) -> Option<UnloadReport> {
        let mut done = lock(&self.completion);
        // The deadline only if there is a wait: most unloads are done by now.
        let mut until = None;
        loop {
            if let Some(report) = done.as_ref() {
                return Some(report.clone());
            }
            let until = *until.get_or_insert_with(|| crate::deadline::after(timeout));
            let wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return None;
            }
            done = self
                .completed
                .wait_timeout(done, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The domain ended with `report`: it is kept, its waiters wake, its
    /// `on_unloaded` callbacks run.
    pub(crate) fn complete(&self, report: UnloadReport) {
        // Kept before the callbacks are taken: one registered meanwhile
        // finds the report and runs at once (`Domain::on_unloaded`).
        *lock(&self.completion) = Some(report);
        self.completed.notify_all();
        let callbacks = std::mem::take(&mut *lock(&self.on_unloaded));
        // Most domains have none: the report is cloned only for callbacks.
        let report = (!callbacks.is_empty()).then(|| self.report()).flatten();
        for callback in callbacks {
            callback(report.as_ref().expect("kept above, never taken"));
        }
    }

    pub(crate) fn ledger(&self) -> Ledger {
        self.ctx_shared.ledger.snapshot(self.table().counters())
    }

    /// A fresh store for this domain, with `preopens` and each extension's
    /// slot.
    pub(crate) fn new_store(&self, preopens: Preopens, extensions: Extensions) -> Store<DomainCtx> {
        let runtime = &self.runtime;
        let ctx = DomainCtx::new(
            self.id,
            Arc::clone(&self.ctx_shared),
            preopens,
            Arc::clone(&self.policy),
            Arc::clone(&runtime.log),
        );
        let mut ctx = ctx;
        ctx.extensions = extensions;
        ctx.timers = Some(Arc::clone(&self.timers) as _);
        let mut store = Store::new(&runtime.engine, ctx);
        store.limiter(|ctx| ctx as &mut dyn ResourceLimiter);
        // The epoch ticker fires every few milliseconds; each time, a running
        // guest checks whether it must stop. (A guest blocked in a host call
        // is woken by the cancellation signal instead.)
        store.set_epoch_deadline(1);
        // Captures nothing: no allocation for the callback.
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data().shared.sample.wanted() {
                // `roots()` asked for this guest's stack: taken here, on
                // the guest's own thread, at its epoch check.
                let stack = stack::render(&WasmBacktrace::force_capture(&ctx));
                ctx.data().shared.sample.deliver(stack);
            }
            ctx.data_mut().at_epoch()?;
            Ok(UpdateDeadline::Continue(1))
        });
        store
    }
}

impl Listed for DomainShared {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn tally(&self) -> Tally {
        Tally::new(self.state().load(), self.table(), self.ledger())
    }

    fn info(&self) -> DomainInfo {
        // The modules are read only if the store is free: a view never
        // waits for a call.
        let (modules, memory_bytes) = match self.try_lock() {
            Some(guard) => match guard.as_ref() {
                Some(l) => (
                    l.modules.iter().map(|m| m.name.clone()).collect(),
                    Some(l.store.data().memory_used()),
                ),
                None => (Vec::new(), Some(0)),
            },
            None => (Vec::new(), None),
        };
        let tally = self.tally(); // one snapshot for both counts, so they agree
        DomainInfo {
            id: self.id,
            state: tally.state,
            handles: tally.by_kind.iter().map(|(_, count)| count).sum(),
            handles_by_type: registry::by_type_name(&tally.by_kind),
            age_ms: self.created.elapsed().as_millis() as u64,
            ledger: tally.ledger,
            roots: self.state().roots(),
            unloading_ms: lock(&self.unload_requested).map(|at| at.elapsed().as_millis() as u64),
            forced: self.state().is_forced(),
            modules,
            roots_by_kind: self.roots.count_by_kind(),
            memory_bytes,
        }
    }
}

impl Drop for DomainShared {
    /// The last `Domain`, `DomainRef` and ticket went without an unload
    /// completing: the domain unloads by itself (its unloading event runs,
    /// then everything is released), and the registry forgets it (as
    /// every ending does: `teardown` retires the domain as it makes the
    /// state final, so a domain that ended is not looked up again here).
    fn drop(&mut self) {
        if !self.state().load().is_final() {
            tracing::debug!(target: "custody::domain", parent: &self.span, domain = self.id, "dropped without unload: unloading implicitly");
            let _ = self.state().begin_unload();
            let mut loaded = self.store.get_mut().take();
            unload::teardown(self, &mut loaded, unload::Ending::Unloaded, None);
        }
    }
}

/// An isolation unit: WebAssembly modules, their handles and their fate.
///
/// .NET: an `AppDomain` / a collectible `AssemblyLoadContext`. Several
/// modules can be loaded into one domain; an import resolves to a module of
/// the domain, else to one the domain's resolver or a host library supplies
/// (loaded into the domain on demand), else to a host function (see
/// [`Domain::load`]). Calls into one domain are serialized; calls into
/// different domains run in parallel. A failed call escalates by the
/// domain's [`Policy`] (the host's, unless
/// [`DomainConfig::policy`](crate::DomainConfig::policy) gave it its own);
/// unloading releases every handle the domain's guests still hold (also
/// what happens if the last `Domain` is dropped without `unload`). Domain
/// ids are never reused.
#[derive(Clone)]
pub struct Domain {
    pub(crate) shared: Arc<DomainShared>,
}

impl Domain {
    pub(crate) fn new(
        runtime: &Arc<Runtime>,
        id: u64,
        preopens: Preopens,
        slots: Extensions,
        shared_extensions: Vec<Arc<dyn Any + Send + Sync>>,
        policy: Arc<Policy>,
        resolver: Option<Resolver>,
    ) -> Domain {
        let table = HandleTable::with_limit(policy.handle_quota).for_domain(id);
        let shared = Arc::new_cyclic(|me| DomainShared {
            id,
            timers: timers::DomainTimers::new(me.clone(), Arc::clone(&runtime.timers)),
            ctx_shared: Arc::new(CtxShared::new(table)),
            store: StoreLock::new(None),
            runtime: Arc::clone(runtime),
            policy,
            resolver,
            created: Instant::now(),
            span: tracing::debug_span!(target: "custody::domain", "domain", id),
            roots: Roots::default(),
            completion: Mutex::new(None),
            completed: Condvar::new(),
            hooks: Mutex::default(),
            on_unloading: Mutex::default(),
            on_unloaded: Mutex::default(),
            owned_refs: Mutex::new(Some(Vec::new())),
            unload_requested: Mutex::new(None),
            blocked_reported: Default::default(),
            ended_by: Mutex::new(None),
            shared_extensions,
        });
        let store = shared.new_store(preopens, slots);
        *shared.lock() = Some(Loaded {
            store,
            // Room for the one module most domains load.
            modules: Vec::with_capacity(1),
            last_export: None,
            last_thread: None,
        });
        tracing::debug!(target: "custody::domain", parent: &shared.span, domain = id, "created");
        Domain { shared }
    }

    /// The domain's id (never reused).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Its state.
    pub fn state(&self) -> DomainState {
        self.shared.state().load()
    }

    /// The policy the domain runs under: the host's, or its own
    /// ([`DomainConfig::policy`](crate::DomainConfig::policy)).
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The domain as [`Host::domains`](crate::Host::domains) lists it.
    pub fn info(&self) -> DomainInfo {
        self.shared.info()
    }

    /// The domain's handle table (what its guests' handle ids name).
    pub fn table(&self) -> &HandleTable {
        self.shared.table()
    }

    /// Gives the domain's guests a handle to `resource` (an embedder-provided
    /// resource); the guest sees the returned id. It counts in the ledger as
    /// opened, like a handle the guest opened itself.
    ///
    /// # Errors
    /// [`HandleError::QuotaExceeded`] when the domain's quota is used up (the
    /// resource is then released).
    pub fn insert_handle<T: ReleaseHandle>(&self, resource: T) -> Result<HandleId, HandleError> {
        self.shared.table().insert(resource)
    }

    /// Gives the domain's guests handles to `resources` together, as
    /// [`insert_handle`](Self::insert_handle) does for one: each gets an id,
    /// or none does.
    ///
    /// # Errors
    /// [`HandleError::QuotaExceeded`] when the domain's quota has no room
    /// for all of them (every resource is then released).
    pub fn insert_handles<T: ReleaseHandle, const N: usize>(
        &self,
        resources: [T; N],
    ) -> Result<[HandleId; N], HandleError> {
        self.shared.table().insert_all(resources)
    }

    /// Closes a guest's handle from the host side: the id is stale at once;
    /// if a call is using the handle, the release waits for it to return.
    ///
    /// # Errors
    /// As [`HandleTable::close`].
    pub fn close_handle(&self, id: HandleId) -> Result<CloseOutcome, HandleError> {
        self.shared.table().close(id)
    }

    /// What an extension shares with the embedder for this domain, by
    /// type (custody-wasi reads its capture buffers this way), if the
    /// host's extensions gave it one
    /// ([`ExtensionState::with_shared`](crate::extension::ExtensionState::with_shared)).
    /// The embedder may keep it past the domain (a server answering a
    /// request after the domain's call ended).
    pub fn extension<S: Any + Send + Sync>(&self) -> Option<Arc<S>> {
        self.shared
            .shared_extensions
            .iter()
            .find_map(|shared| Arc::clone(shared).downcast::<S>().ok())
    }

    /// Aborts the call in flight, if any: running guest code stops at its
    /// next epoch check, a host call blocked in a wait wakes at once, and the
    /// call ends with [`CallError::Aborted`](crate::CallError::Aborted) (or
    /// escalates, if the guest was in a critical region). An abort with no
    /// call in flight is dropped.
    pub fn abort(&self) {
        self.shared.ctx_shared.cancel.raise(Reason::Abort);
    }

    /// The handle ledger so far.
    pub fn ledger(&self) -> Ledger {
        self.shared.ledger()
    }

    /// Loads a compiled module into the domain under `name` and runs its
    /// start function (under the domain's deadline). Each import
    /// `(module, name)` resolves, in this order, to:
    ///
    /// 1. the module loaded in this domain under that name;
    /// 2. the module the domain's resolver
    ///    ([`DomainConfig::resolver`](crate::DomainConfig::resolver))
    ///    returns for that name, loaded into the domain under it first;
    /// 3. the host's library of that name
    ///    ([`Host::add_library`](crate::Host::add_library)), instantiated
    ///    into the domain under it first;
    /// 4. the host's function (the `custody` ABI, the embedder's functions),
    ///    refused if the domain's policy denies one of its categories.
    ///
    /// The first place that has a module of that name must export the
    /// import. A module loaded on demand stays in the domain even if the
    /// module that needed it then fails to load.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load(&self, name: &str, module: &Module) -> Result<(), LoadError> {
        let not_running = |state| LoadError::from(self.shared.not_running(state, Refused::Load));
        // A load runs guest code (start functions): it is a root, like a
        // call, so an unload begun meanwhile waits for it and later loads
        // are refused.
        let shared = &self.shared;
        let mut guard = shared.lock_rooted(Admit::Running).map_err(not_running)?;
        let result = match guard.as_mut() {
            None => Err(not_running(self.state())),
            Some(loaded) if loaded.modules.iter().any(|m| m.name == name) => {
                Err(LoadError::Duplicate(name.to_string()))
            }
            Some(loaded) => resolve::load(shared, loaded, name, module),
        };
        guard.end_rooted();
        result
    }

    /// The shared memory a loaded module exports under `export`, if any (for
    /// embedders and tests running a second guest thread over it).
    pub fn shared_memory(&self, module: &str, export: &str) -> Option<SharedMemory> {
        let mut guard = self.shared.lock();
        let loaded = guard.as_mut()?;
        let instance = loaded
            .modules
            .iter()
            .find(|m| m.name == module)
            .map(|m| m.instance)?;
        instance.get_shared_memory(&mut loaded.store, export)
    }
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("id", &self.id())
            .field("state", &self.state())
            .field("handles", &self.shared.table().len())
            .finish()
    }
}
