//! Instantiation prepared once per module: for a module whose imports are
//! all host functions, the linker's `InstancePre` (imports resolved and
//! type-checked), the host-protection categories its imports carry and the
//! exports a domain looks up in every module ([`KnownExports`]), so loading
//! it into another domain is one check and one instantiation.
//! Bounded by the policy's `module_cache_entries`, as the module cache is
//! (an entry keeps its module alive, so the two bound the same thing); the
//! oldest entry goes first.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wasmtime::{ExternType, InstancePre, Linker, Module, ModuleExport};

use super::bounded::BoundedMap;
use crate::boundary::ctx::DomainCtx;
use crate::catalogue::Catalogue;
use crate::config::Category;

/// The name of the unloading hook a module may export (SPEC D1).
pub(crate) const UNLOADING_EXPORT: &str = "custody_unloading";

/// The exports a domain looks up in every module it loads, resolved once
/// per module to wasmtime's index handles: a lookup by name hashes the name
/// and searches the engine's string pool, which cost a fresh domain's
/// lifecycle more than a thousand instructions (docs/PERFORMANCE.md).
#[derive(Clone)]
pub(crate) struct KnownExports {
    /// `memory`, when it is a memory (the boundary's guest memory).
    pub(crate) memory: Option<ModuleExport>,
    /// `_initialize`, a WASI reactor's start function.
    pub(crate) initialize: Option<ModuleExport>,
    /// `custody_unloading`, the unloading hook.
    pub(crate) unloading: Option<ModuleExport>,
    /// The functions called by name so far (shared by every domain the
    /// module is loaded into).
    pub(crate) called: Arc<CalledExports>,
}

/// A module's functions called by name so far, resolved to index handles:
/// a server calls the same export (`handle`) of every request's fresh
/// domain, and wasmtime's lookup by name costs more than the rest of the
/// resolution. At most [`CalledExports::MAX`] names are kept (only names
/// the module exports: its export list bounds them too); past them, a
/// name is looked up each time.
#[derive(Default)]
pub(crate) struct CalledExports(Mutex<Vec<(Arc<str>, ModuleExport)>>);

impl CalledExports {
    const MAX: usize = 16;

    /// `name`'s export in `module` (whose list this is), with the name as
    /// a shared string.
    pub(crate) fn get(&self, module: &Module, name: &str) -> Option<(Arc<str>, ModuleExport)> {
        let mut called = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, export)) = called.iter().find(|(known, _)| **known == *name) {
            return Some((Arc::clone(known), *export));
        }
        let export = module.get_export_index(name)?;
        let name: Arc<str> = Arc::from(name);
        if called.len() < Self::MAX {
            called.push((Arc::clone(&name), export));
        }
        Some((name, export))
    }
}

impl KnownExports {
    /// `module`'s known exports. Only `memory`'s kind is checked here; a
    /// function export of another kind is found as no function when used.
    pub(crate) fn of(module: &Module) -> KnownExports {
        let memory = match module.get_export("memory") {
            Some(ExternType::Memory(_)) => module.get_export_index("memory"),
            _ => None,
        };
        KnownExports {
            memory,
            initialize: module.get_export_index("_initialize"),
            unloading: module.get_export_index(UNLOADING_EXPORT),
            called: Arc::default(),
        }
    }
}

/// A module prepared for instantiation.
pub(crate) struct Prepared {
    pub(crate) pre: InstancePre<DomainCtx>,
    /// Every category some import of the module carries.
    pub(crate) categories: Vec<Category>,
    /// The module names its imports come from, each once (an extension
    /// its domain's policy denies is found here, not import by import).
    pub(crate) import_modules: Vec<Box<str>>,
    /// Its exports a domain looks up.
    pub(crate) exports: KnownExports,
}

/// The cache, keyed by the module's code address (unique while the module
/// lives, and the entry keeps it alive).
pub(crate) struct PreCache {
    entries: Mutex<BoundedMap<usize, (Module, Arc<Prepared>)>>,
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
    ) -> Option<Arc<Prepared>> {
        let key = module.image_range().start as usize;
        let mut guard = self.lock();
        if let Some((cached, prepared)) = guard.get(&key)
            && Module::same(cached, module)
        {
            return Some(Arc::clone(prepared));
        }
        let mut categories = Vec::new();
        let mut import_modules: Vec<Box<str>> = Vec::new();
        for import in module.imports() {
            if !import_modules.iter().any(|m| **m == *import.module()) {
                import_modules.push(import.module().into());
            }
            for &category in catalogue.categories_of(import.module(), import.name())? {
                if !categories.contains(&category) {
                    categories.push(category);
                }
            }
        }
        let prepared = Arc::new(Prepared {
            pre: linker.instantiate_pre(module).ok()?,
            categories,
            import_modules,
            exports: KnownExports::of(module),
        });
        guard.insert(key, (module.clone(), Arc::clone(&prepared)));
        Some(prepared)
    }
}

impl PreCache {
    fn lock(&self) -> MutexGuard<'_, BoundedMap<usize, (Module, Arc<Prepared>)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_called_export_is_looked_up_once_and_its_name_shared() {
        let exports: String = (0..20)
            .map(|i| format!("(func (export \"f{i}\"))"))
            .collect();
        let module = Module::new(&wasmtime::Engine::default(), format!("(module {exports})"))
            .expect("compiles");
        let called = CalledExports::default();
        let (first, _) = called.get(&module, "f3").expect("exported");
        let (again, _) = called.get(&module, "f3").expect("exported");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the name is shared, not copied"
        );
        assert!(called.get(&module, "nope").is_none());
        for i in 0..20 {
            assert_eq!(
                &*called.get(&module, &format!("f{i}")).unwrap().0,
                format!("f{i}")
            );
        }
        let kept = called.0.lock().unwrap().len();
        assert_eq!(
            kept,
            CalledExports::MAX,
            "a name not exported is never kept; at most MAX are"
        );
    }
}
