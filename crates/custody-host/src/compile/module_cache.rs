//! Compiled modules kept by content: compiling bytes the host has compiled
//! before (another domain, a reload, the same plugin twice) costs a SHA-256
//! of the bytes instead of a compilation. Bounded by the policy's
//! `module_cache_entries`; the oldest entry goes first. It counts its hits
//! and misses (compilations), for the embedder's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Module;

use super::bounded::BoundedMap;

/// The cache.
pub(crate) struct ModuleCache {
    modules: Mutex<BoundedMap<[u8; 32], Module>>,
    /// Compilations of bytes found in the cache.
    hits: AtomicU64,
    /// Compilations of bytes not found (compiled, or failed to compile).
    misses: AtomicU64,
}

impl ModuleCache {
    pub(crate) fn new(limit: usize) -> Self {
        ModuleCache {
            modules: Mutex::new(BoundedMap::new(limit)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The module compiled from `bytes`, compiling it with `compile` on a
    /// miss. A failed compilation is not cached.
    pub(crate) fn get_or_compile<E>(
        &self,
        bytes: &[u8],
        compile: impl FnOnce() -> Result<Module, E>,
    ) -> Result<Module, E> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(module) = self.lock().get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(module.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Compiled outside the lock: another thread may compile the same
        // bytes meanwhile; either result is the same module.
        let module = compile()?;
        self.lock().insert(key, module.clone());
        Ok(module)
    }

    /// The hits and misses so far.
    pub(crate) fn lookups(&self) -> (u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.hits), get(&self.misses))
    }

    /// How many modules are cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The cached modules.
    pub(crate) fn modules(&self) -> Vec<Module> {
        self.lock().values().cloned().collect()
    }

    /// Drops every cached module.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, BoundedMap<[u8; 32], Module>> {
        self.modules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
