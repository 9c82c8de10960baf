//! [`Domain`]: the isolation unit. Its modules' instances, its handle table,
//! its state; failures escalate by the policy; unload releases everything it
//! owned.
//!
//! # Layers
//! - [`Domain`] is the embedder's value: a cheap handle (`Arc`) on
//!   [`DomainShared`].
//! - `DomainShared` is what outlives a call and is shared with the host's
//!   registry (weakly): the id, the [state word](state), the
//!   [`HandleTable`], the cancellation signal, the ledger counts, and the
//!   store behind a mutex.
//! - `Loaded` is the store and the instances in load order. It exists while
//!   the domain can run guest code; taking it out of the mutex (unload, a
//!   recycle not re-created) ends guest code for good.
//! - `DomainCtx` (the store's data, in `boundary::ctx`) is what a host call
//!   sees.
//!
//! # The invariant
//! Guest code runs only with the `loaded` mutex held, so calls into one
//! domain are serialized, and whoever holds the mutex with `Loaded` taken
//! out knows no guest code can run again. Every path that ends a domain goes
//! through [`unload::teardown`]: instances are dropped first, then the table
//! is drained (OS handles last), then the state becomes final.
//!
//! The submodules, lowest first: [`state`] (the state word), [`link`]
//! (instantiation: each import bound to a module of the domain or a host
//! function), [`resolve`] (the resolution order: loading on demand what the
//! domain's resolver or a host library supplies), [`invoke`] (running one export, classifying its
//! failure), [`unload`] (the one unload procedure), [`recycle`] (the
//! escalation ladder applied), [`call`] (calls, and when they escalate).

pub(crate) mod call;
pub(crate) mod invoke;
pub(crate) mod link;
pub(crate) mod recycle;
pub(crate) mod resolve;
pub(crate) mod state;
pub(crate) mod unload;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use custody_handle::{CloseOutcome, HandleError, HandleId, HandleTable, ReleaseHandle};
use wasmtime::{Instance, Module, ResourceLimiter, SharedMemory, Store, UpdateDeadline};

use self::state::{DomainState, StateWord};
use crate::boundary::cancel::{Cancel, Interrupt, Reason};
use crate::boundary::ctx::DomainCtx;
use crate::boundary::preopen::Preopens;
use crate::config::Policy;
use crate::error::LoadError;
use crate::ledger::{Ledger, LedgerCounts};
use crate::registry::{DomainInfo, Listed};
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
}

/// The store and its instances, while the domain can run guest code.
pub(crate) struct Loaded {
    pub(crate) store: Store<DomainCtx>,
    /// In load order, so a recycle re-creates them in the same order.
    pub(crate) modules: Vec<LoadedModule>,
}

/// What a domain shares between its `Domain` values and the registry.
pub(crate) struct DomainShared {
    pub(crate) id: u64,
    pub(crate) state: StateWord,
    pub(crate) table: Arc<HandleTable>,
    pub(crate) cancel: Arc<Cancel>,
    pub(crate) ledger: Arc<LedgerCounts>,
    pub(crate) loaded: Mutex<Option<Loaded>>,
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
    /// The report of a recycle that ended the domain, for `unload` to
    /// return (a recycled domain has nothing left to unload).
    pub(crate) recycled: Mutex<Option<unload::UnloadReport>>,
    /// Why an escalation ended the domain (the failure that started it),
    /// for the errors of every later call, load and unload.
    pub(crate) ended_by: Mutex<Option<String>>,
}

impl DomainShared {
    /// Why an escalation ended the domain, if one did.
    pub(crate) fn ended_by(&self) -> Option<String> {
        self.ended_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The store, waiting for an in-flight call to return.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn ledger(&self) -> Ledger {
        self.ledger.snapshot(self.table.counters())
    }

    /// A fresh store for this domain, with `preopens`.
    pub(crate) fn new_store(&self, preopens: Preopens) -> Store<DomainCtx> {
        let runtime = &self.runtime;
        let ctx = DomainCtx::new(
            self.id,
            Arc::clone(&self.table),
            Arc::clone(&self.cancel),
            preopens,
            Arc::clone(&self.policy),
            Arc::clone(&self.ledger),
            Arc::clone(&runtime.log),
        );
        let mut store = Store::new(&runtime.engine, ctx);
        store.limiter(|ctx| ctx as &mut dyn ResourceLimiter);
        // The epoch ticker fires every few milliseconds; each time, a running
        // guest checks whether it must stop. (A guest blocked in a host call
        // is woken by the cancellation signal instead.)
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
}

impl Listed for DomainShared {
    fn info(&self) -> DomainInfo {
        DomainInfo {
            id: self.id,
            state: self.state.load(),
            handles: self.table.len(),
            age_ms: self.created.elapsed().as_millis() as u64,
            ledger: self.ledger(),
        }
    }
}

impl Drop for DomainShared {
    /// The last `Domain` went without `unload`: the store (and its
    /// instances) drop with this value and the table drains as it drops, so
    /// everything is released; the registry forgets the domain.
    fn drop(&mut self) {
        self.runtime.registry.forget(self.id);
        if !self.state.load().is_final() {
            tracing::debug!(target: "custody::domain", parent: &self.span, domain = self.id, "dropped without unload: released implicitly");
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
        policy: Arc<Policy>,
        resolver: Option<Resolver>,
    ) -> Domain {
        let table = Arc::new(HandleTable::with_limit(policy.handle_quota).for_domain(id));
        let shared = Arc::new(DomainShared {
            id,
            state: StateWord::new(),
            table,
            cancel: Arc::default(),
            ledger: Arc::default(),
            loaded: Mutex::new(None),
            runtime: Arc::clone(runtime),
            policy,
            resolver,
            created: Instant::now(),
            span: tracing::debug_span!(target: "custody::domain", "domain", id),
            recycled: Mutex::new(None),
            ended_by: Mutex::new(None),
        });
        let store = shared.new_store(preopens);
        *shared.lock() = Some(Loaded {
            store,
            modules: Vec::new(),
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
        self.shared.state.load()
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
        &self.shared.table
    }

    /// Gives the domain's guests a handle to `resource` (an embedder-provided
    /// resource); the guest sees the returned id. It counts in the ledger as
    /// opened, like a handle the guest opened itself.
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
    /// call ends with [`CallError::Aborted`](crate::CallError::Aborted) (or
    /// escalates, if the guest was in a critical region). An abort with no
    /// call in flight is dropped.
    pub fn abort(&self) {
        self.shared.cancel.raise(Reason::Abort);
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
        let not_running = |state| LoadError::NotRunning {
            domain: self.id(),
            state,
            cause: self.shared.ended_by(),
        };
        match self.state() {
            DomainState::Running => {}
            state => return Err(not_running(state)),
        }
        let mut guard = self.shared.lock();
        let loaded = guard.as_mut().ok_or_else(|| not_running(self.state()))?;
        if loaded.modules.iter().any(|m| m.name == name) {
            return Err(LoadError::Duplicate(name.to_string()));
        }
        resolve::load(&self.shared, loaded, name, module)
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
            .field("handles", &self.shared.table.len())
            .finish()
    }
}
