//! The registry of a host's live domains, for [`Host::domains`]: every
//! domain that is running or unloading, by id. A domain leaves it when it
//! ends (unload, a recycle not re-created) or when its last `Domain` value
//! is dropped; the registry holds domains weakly, so it never keeps one
//! alive.
//!
//! [`Host::domains`]: crate::Host::domains

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use serde::Serialize;

use crate::ledger::Ledger;

/// Where a domain is in its life.
///
/// ```text
/// Running --begin_unload--> Unloading --(no roots left)--> Unloaded
///                               \--force / unload_timeout--> Unloaded
/// Running --escalation--> Recycled (or re-created: Running)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum DomainState {
    /// Takes calls.
    Running,
    /// An unload was asked for: new calls and loads are refused; it
    /// completes when no root is left (or when forced).
    Unloading,
    /// Gone: every handle released, every instance dropped.
    Unloaded,
    /// Recycled after a failure and not re-created: every handle released,
    /// every instance dropped.
    Recycled,
}

impl DomainState {
    /// Whether the domain is gone for good.
    pub fn is_final(self) -> bool {
        matches!(self, DomainState::Unloaded | DomainState::Recycled)
    }
}

/// A live domain, as [`Host::domains`](crate::Host::domains) lists it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct DomainInfo {
    /// The domain's id.
    pub id: u64,
    /// Its state.
    pub state: DomainState,
    /// Handles its table holds.
    pub handles: usize,
    /// The same handles by resource type, by its short name (`Fd` for
    /// files and pipes, `Timer` for guest timers): a snapshot
    /// that may race with the guests' opens and closes (see
    /// [`HandleTable::count_by_kind`](custody_handle::HandleTable::count_by_kind)).
    pub handles_by_type: BTreeMap<String, usize>,
    /// Milliseconds since it was created.
    pub age_ms: u64,
    /// Its handle ledger.
    pub ledger: Ledger,
    /// How many roots hold it (calls in flight, refs, views, dependents).
    pub roots: u64,
    /// Milliseconds since an unload was asked for, if one was.
    pub unloading_ms: Option<u64>,
    /// Whether its unload was forced.
    pub forced: bool,
    /// The names of its loaded modules, in load order.
    pub modules: Vec<String>,
    /// Its roots by kind (`Call`, `Ref`, `MemoryView`, `Dependent`, `Timer`).
    pub roots_by_kind: BTreeMap<String, usize>,
    /// Bytes of linear memory and tables its instances hold (what the
    /// memory cap counts); `None` while a call holds the store.
    pub memory_bytes: Option<usize>,
}

/// What a host's module caches hold, as
/// [`Host::cache_stats`](crate::Host::cache_stats) reports it. Each compiled
/// module keeps its code mapped and, if it initializes memory, a memfd
/// holding wasmtime's copy-on-write image of it; a cache entry keeps its
/// module alive after every domain that loaded it is gone. Both caches are
/// bounded by [`Policy::module_cache_entries`](crate::Policy::module_cache_entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// The bound on each cache (the policy's `module_cache_entries`).
    pub limit: usize,
    /// Compiled modules kept by content (the module cache).
    pub modules: usize,
    /// Modules kept prepared for instantiation (the prepared-instance
    /// cache; its entries are modules of the module cache, or modules
    /// evicted from it since).
    pub prepared: usize,
    /// Distinct modules the two caches keep alive (a module in both counts
    /// once).
    pub distinct_modules: usize,
    /// Bytes of compiled code those modules keep mapped (wasmtime's
    /// `Module::image_range`), whether or not a domain also holds them.
    pub code_bytes: usize,
    /// wasmtime's memory image memfds open in the whole process, and below
    /// their bytes: every live module's, cached or loaded, of every host
    /// (wasmtime does not say which module holds which). `None` if
    /// `/proc/self/fd` cannot be read.
    pub process_memory_image_fds: Option<usize>,
    /// The bytes of those memfds.
    pub process_memory_image_bytes: Option<u64>,
}

/// What the registry can ask of a domain.
pub(crate) trait Listed: Send + Sync {
    fn info(&self) -> DomainInfo;
    /// The domain as `Any`, for the host to find its own type again (the
    /// registry never names the domain: it sits below it).
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// The registry.
pub(crate) struct Registry {
    domains: Mutex<BTreeMap<u64, Weak<dyn Listed>>>,
    next_id: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            domains: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Weak<dyn Listed>>> {
        self.domains.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new domain id.
    ///
    /// # Panics
    /// If 2^64 - 1 ids have been issued: ids are never reused, so the
    /// registry refuses to wrap (as wasmtime does for store ids).
    pub(crate) fn next_id(&self) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        assert!(
            id != u64::MAX,
            "domain ids exhausted: they are never reused"
        );
        id
    }

    pub(crate) fn register(&self, id: u64, domain: Weak<dyn Listed>) {
        self.lock().insert(id, domain);
    }

    pub(crate) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// How many domains are registered.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The registered domain `id`, if it is still alive.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<dyn Listed>> {
        self.lock().get(&id).and_then(Weak::upgrade)
    }

    /// Every registered domain, by id.
    pub(crate) fn list(&self) -> Vec<DomainInfo> {
        // Upgrade under the lock, ask outside it: dropping the last strong
        // reference runs the domain's drop, which forgets it (and so locks).
        let live: Vec<Arc<dyn Listed>> = self.lock().values().filter_map(Weak::upgrade).collect();
        live.iter().map(|d| d.info()).collect()
    }
}
