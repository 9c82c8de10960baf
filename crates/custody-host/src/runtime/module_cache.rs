//! Compiled modules kept by content: compiling bytes the host has compiled
//! before (another domain, a reload, the same plugin twice) costs a SHA-256
//! of the bytes instead of a compilation. Bounded by the policy's
//! `module_cache_entries`; the oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Module;

type Key = [u8; 32];

/// The cache.
pub(crate) struct ModuleCache {
    limit: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    modules: HashMap<Key, Module>,
    /// Insertion order, for eviction.
    order: VecDeque<Key>,
}

impl ModuleCache {
    pub(crate) fn new(limit: usize) -> Self {
        ModuleCache {
            limit,
            inner: Mutex::default(),
        }
    }

    /// The module compiled from `bytes`, compiling it with `compile` on a
    /// miss. A failed compilation is not cached.
    pub(crate) fn get_or_compile<E>(
        &self,
        bytes: &[u8],
        compile: impl FnOnce() -> Result<Module, E>,
    ) -> Result<Module, E> {
        if self.limit == 0 {
            return compile();
        }
        let key: Key = Sha256::digest(bytes).into();
        if let Some(module) = self.lock().modules.get(&key) {
            return Ok(module.clone());
        }
        // Compiled outside the lock: another thread may compile the same
        // bytes meanwhile; the first to finish is kept.
        let module = compile()?;
        let mut entries = self.lock();
        if let Some(existing) = entries.modules.get(&key) {
            return Ok(existing.clone());
        }
        while entries.order.len() >= self.limit {
            if let Some(old) = entries.order.pop_front() {
                entries.modules.remove(&old);
            }
        }
        entries.modules.insert(key, module.clone());
        entries.order.push_back(key);
        Ok(module)
    }

    /// How many modules are cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().modules.len()
    }

    /// Drops every cached module.
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        entries.modules.clear();
        entries.order.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
