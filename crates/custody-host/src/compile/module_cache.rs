//! Compiled modules kept by content: compiling bytes the host has compiled
//! before (another domain, a reload, the same plugin twice) costs a SHA-256
//! of the bytes instead of a compilation. Bounded by the policy's
//! `module_cache_entries`; the oldest entry goes first.

use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Module;

use super::bounded::BoundedMap;

/// The cache.
pub(crate) struct ModuleCache {
    modules: Mutex<BoundedMap<[u8; 32], Module>>,
}

impl ModuleCache {
    pub(crate) fn new(limit: usize) -> Self {
        ModuleCache {
            modules: Mutex::new(BoundedMap::new(limit)),
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
            return Ok(module.clone());
        }
        // Compiled outside the lock: another thread may compile the same
        // bytes meanwhile; either result is the same module.
        let module = compile()?;
        self.lock().insert(key, module.clone());
        Ok(module)
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
