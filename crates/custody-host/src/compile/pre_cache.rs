//! Instantiation prepared once per module: for a module whose imports are
//! all host functions, the linker's `InstancePre` (imports resolved and
//! type-checked) and the host-protection categories its imports carry, so
//! loading it into another domain is one check and one instantiation.
//! Bounded by the policy's `module_cache_entries`, as the module cache is
//! (an entry keeps its module alive, so the two bound the same thing); the
//! oldest entry goes first.

use std::sync::{Mutex, MutexGuard, PoisonError};

use wasmtime::{InstancePre, Linker, Module};

use super::bounded::BoundedMap;
use crate::boundary::ctx::DomainCtx;
use crate::catalogue::Catalogue;
use crate::config::Category;

/// A module prepared for instantiation.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) pre: InstancePre<DomainCtx>,
    /// Every category some import of the module carries.
    pub(crate) categories: Vec<Category>,
}

/// The cache, keyed by the module's code address (unique while the module
/// lives, and the entry keeps it alive).
pub(crate) struct PreCache {
    entries: Mutex<BoundedMap<usize, (Module, Prepared)>>,
}

impl PreCache {
    pub(crate) fn new(limit: usize) -> Self {
        PreCache {
            entries: Mutex::new(BoundedMap::new(limit)),
        }
    }

    /// `module` prepared, if all its imports are host functions of
    /// `catalogue`; `None` if one is not (it imports a sibling module, or
    /// something unresolved: the caller resolves it import by import).
    pub(crate) fn get(
        &self,
        linker: &Linker<DomainCtx>,
        catalogue: &Catalogue,
        module: &Module,
    ) -> Option<Prepared> {
        let key = module.image_range().start as usize;
        let mut guard = self.lock();
        if let Some((cached, prepared)) = guard.get(&key)
            && Module::same(cached, module)
        {
            return Some(prepared.clone());
        }
        let mut categories = Vec::new();
        for import in module.imports() {
            for &category in catalogue.categories_of(import.module(), import.name())? {
                if !categories.contains(&category) {
                    categories.push(category);
                }
            }
        }
        let prepared = Prepared {
            pre: linker.instantiate_pre(module).ok()?,
            categories,
        };
        guard.insert(key, (module.clone(), prepared.clone()));
        Some(prepared)
    }
}

impl PreCache {
    fn lock(&self) -> MutexGuard<'_, BoundedMap<usize, (Module, Prepared)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The prepared modules.
    pub(crate) fn modules(&self) -> Vec<Module> {
        self.lock()
            .values()
            .map(|(module, _)| module.clone())
            .collect()
    }

    /// Drops every prepared module.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
