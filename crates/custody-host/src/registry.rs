//! The registry of a host's live domains, for [`Host::domains`]: every
//! domain that is running or unloading, by id. A domain leaves it when it
//! ends (unload, a recycle not re-created) or when its last `Domain` value
//! is dropped; the registry holds domains weakly, so it never keeps one
//! alive.
//!
//! [`Host::domains`]: crate::Host::domains

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use custody_handle::HandleTable;
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
    /// Compilations (`Host::compile`, a manifest's modules) answered from
    /// the module cache, since the host was built.
    pub hits: u64,
    /// Compilations the module cache could not answer (each compiled the
    /// bytes, or failed to).
    pub misses: u64,
}

/// A host's domains added up, as [`Host::totals`](crate::Host::totals)
/// reports them: cheaper than [`Host::domains`](crate::Host::domains) (no
/// memory, roots or modules), for a metrics scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HostTotals {
    /// Domains that take calls.
    pub running: usize,
    /// Domains whose unload has begun and not completed.
    pub unloading: usize,
    /// The handles those domains' tables hold, by resource type (as
    /// [`DomainInfo::handles_by_type`] names them).
    pub handles_by_type: BTreeMap<String, usize>,
    /// Every domain's ledger added up since the host was built, the ended
    /// domains' included: each count only grows from one call to the next
    /// (a domain caught mid-teardown, counted in neither the live nor the
    /// ended ones, cannot make a count go back).
    pub ledger: Ledger,
}

/// What [`HostTotals`] asks of one domain.
pub(crate) struct Tally {
    pub(crate) state: DomainState,
    /// Its table's handles by resource type (full type names).
    pub(crate) by_kind: Vec<(&'static str, usize)>,
    pub(crate) ledger: Ledger,
}

impl Tally {
    pub(crate) fn new(state: DomainState, table: &HandleTable, ledger: Ledger) -> Tally {
        let by_kind = table.count_by_kind();
        Tally {
            state,
            by_kind,
            ledger,
        }
    }
}

/// Handles by full type name, counted by short name (`Fd`, `Timer`).
pub(crate) fn by_type_name(by_kind: &[(&'static str, usize)]) -> BTreeMap<String, usize> {
    let mut by_name = BTreeMap::new();
    for &(kind, count) in by_kind {
        *by_name
            .entry(custody_handle::short_type_name(kind))
            .or_default() += count;
    }
    by_name
}

/// What the registry can ask of a domain.
pub(crate) trait Listed: Send + Sync {
    fn info(&self) -> DomainInfo;
    /// Its state, handles and ledger, without waiting for anything.
    fn tally(&self) -> Tally;
    /// The domain as `Any`, for the host to find its own type again (the
    /// registry never names the domain: it sits below it).
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// Hashes a domain id: ids are unique and handed out in order, so one
/// multiplication spreads them (Fibonacci hashing) where SipHash would
/// cost more than the rest of an insert.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; any other input still hashes.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The live domains by id. A hash map, not a `BTreeMap`: it keeps its
/// table when it empties, where a `BTreeMap` holding one domain at a time
/// allocates a node for each new one and frees it when it goes.
type Domains = HashMap<u64, Weak<dyn Listed>, BuildHasherDefault<IdHasher>>;

/// The registry.
pub(crate) struct Registry {
    domains: Mutex<Domains>,
    next_id: AtomicU64,
    /// The ended domains' ledgers added up. Changed only under `domains`'
    /// lock, as a domain leaves the map, so a domain is counted either
    /// there or here.
    ended: Mutex<Ledger>,
    /// The highest of each count [`Registry::totals`] has reported.
    reported: Mutex<Ledger>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            domains: Mutex::default(),
            next_id: AtomicU64::new(1),
            ended: Mutex::default(),
            reported: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Domains> {
        lock(&self.domains)
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

    /// Forgets the domain `id`, which ended with `ledger`, and adds its
    /// ledger to the ended domains' (once: a domain already forgotten
    /// adds nothing).
    pub(crate) fn retire(&self, id: u64, ledger: Ledger) {
        let mut domains = self.lock();
        if domains.remove(&id).is_some() {
            let mut ended = lock(&self.ended);
            *ended = ended.zip(ledger, u64::saturating_add);
        }
    }

    /// The domains added up (see [`HostTotals`]).
    pub(crate) fn totals(&self) -> HostTotals {
        // The live domains and the ended ones' sum read under the one lock
        // (a domain retires under it); the live ones asked outside it, as
        // in `list`.
        let (live, ended) = {
            let domains = self.lock();
            let live: Vec<Arc<dyn Listed>> = domains.values().filter_map(Weak::upgrade).collect();
            (live, *lock(&self.ended))
        };
        let mut totals = HostTotals {
            ledger: ended,
            ..HostTotals::default()
        };
        let mut by_kind = BTreeMap::<&'static str, usize>::new();
        for tally in live.iter().map(|d| d.tally()) {
            match tally.state {
                DomainState::Running => totals.running += 1,
                DomainState::Unloading => totals.unloading += 1,
                // Ended: retiring meanwhile, its ledger counted below.
                _ => {}
            }
            for (kind, count) in tally.by_kind {
                *by_kind.entry(kind).or_default() += count;
            }
            totals.ledger = totals.ledger.zip(tally.ledger, u64::saturating_add);
        }
        drop(live);
        let by_kind: Vec<_> = by_kind.into_iter().collect();
        totals.handles_by_type = by_type_name(&by_kind);
        // A domain whose last `Domain` is being dropped cannot be upgraded
        // before it retires: counted in neither, its counts would dip.
        let mut reported = lock(&self.reported);
        *reported = reported.zip(totals.ledger, u64::max);
        totals.ledger = *reported;
        totals
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
        let mut live: Vec<(u64, Arc<dyn Listed>)> = self
            .lock()
            .iter()
            .filter_map(|(&id, domain)| Some((id, domain.upgrade()?)))
            .collect();
        live.sort_unstable_by_key(|(id, _)| *id);
        live.iter().map(|(_, d)| d.info()).collect()
    }
}
