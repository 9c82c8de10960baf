//! Instantiation: each import `(module, name)` bound to the module loaded in
//! the domain under that name, else to a host function of the catalogue
//! (refused if the domain's policy denies one of its categories). What the
//! domain's resolver or a host library supplies was loaded into the domain
//! first ([`resolve`](super::resolve)). A module that imports only host
//! functions is prepared once per host (`compile/pre_cache.rs`, the `InstancePre` cache) and
//! instantiated from that.

use std::sync::Arc;

use custody_handle::HandleId;
use wasmtime::{Extern, ExternType, Instance, Module};

use super::guest_run::report_aborted;
use super::{DomainShared, Loaded};
use crate::boundary::{atomic_wait, stack};
use crate::compile::atomic_wait::{MODULE as REWRITTEN_WAITS, WaitImport};
use crate::compile::pre_cache::{KnownExports, Prepared};
use crate::config::Category;
use crate::error::{LoadError, wasmtime_source};
use crate::runtime::Runtime;

/// Instantiates `module` into `loaded`'s store and records its `memory`
/// export for the boundary's lookups; returns the instance and the
/// module's [`KnownExports`]. The module's start function runs as
/// a call does: under the domain's deadline (and the cancellation signal),
/// and a critical region it leaves open is an error, not the first call's.
pub(crate) fn instantiate(
    shared: &DomainShared,
    loaded: &mut Loaded,
    name: &str,
    module: &Module,
) -> Result<(Instance, KnownExports), LoadError> {
    let policy = &shared.policy;
    // The start function is guest code: the same stack rule as a call.
    super::guest_run::check_host_stack(policy.stack_limit).map_err(|message| {
        LoadError::Instantiate {
            module: name.to_string(),
            message,
            source: None,
        }
    })?;
    // Only with threads can a module have a shared memory (the structural
    // check refuses it otherwise); reading export types costs type lookups.
    let growth = if policy.threads {
        shared_memory_growth(module)
    } else {
        0
    };
    loaded
        .store
        .data_mut()
        .reserve_memory(growth)
        .map_err(|limit| {
            LoadError::Limits {
                message: format!(
                    "{name}'s shared memories may grow by {growth} bytes, past the policy's memory_limit of {limit} bytes (a shared memory counts at its maximum)"
                ),
                source: None,
            }
        })?;
    let deadline = policy.deadline;
    let prepared = prepared(shared, loaded, module);
    let exports = prepared
        .as_ref()
        .map_or_else(|| KnownExports::of(module), |p| p.exports.clone());
    let ctx = loaded.store.data_mut();
    // What the domain held before: a start function that fails leaves
    // nothing behind, so what it opened is closed again. A list, sorted
    // only if it is searched (a load rarely fails, and most domains hold
    // nothing yet).
    let mut held: Vec<HandleId> = ctx.table().live_ids();
    ctx.deadline = deadline.map(|d| (crate::deadline::after(d), d));
    ctx.instantiating = true;
    ctx.begin_call();
    ctx.expect_creations(module);
    ctx.starting_memory = exports.memory;
    let instance = bind_and_instantiate(shared, loaded, name, module, prepared.as_deref());
    // Every memory and table the module defines is created by now.
    loaded.store.data_mut().end_creations();
    let instance = instance.and_then(|instance| {
        record_memory(loaded, &exports, instance);
        initialize(loaded, name, instance, &exports, deadline)
    });
    let ctx = loaded.store.data_mut();
    ctx.deadline = None;
    ctx.instantiating = false;
    ctx.starting_memory = None;
    let regions = std::mem::take(&mut ctx.critical_depth);
    let failed = match instance {
        Ok(instance) if regions == 0 => return Ok((instance, exports)),
        Ok(_) => LoadError::Instantiate {
            module: name.to_string(),
            message: format!(
                "its start function returned with {regions} critical region(s) still open"
            ),
            source: None,
        },
        Err(error) => {
            ctx.unreserve_memory(growth);
            error
        }
    };
    held.sort_unstable();
    for id in ctx.table().live_ids() {
        if held.binary_search(&id).is_err() {
            let _ = ctx.table().close(id);
        }
    }
    Err(failed)
}

/// Runs a WASI reactor's `_initialize` export, once, as its start
/// function: under its own deadline, and a failure fails the load.
fn initialize(
    loaded: &mut Loaded,
    name: &str,
    instance: Instance,
    exports: &KnownExports,
    deadline: Option<std::time::Duration>,
) -> Result<Instance, LoadError> {
    let Some(func) = exports
        .initialize
        .and_then(|export| instance.get_module_export(&mut loaded.store, &export))
        .and_then(Extern::into_func)
    else {
        return Ok(instance);
    };
    let ty = func.ty(&loaded.store);
    super::guest_run::call_func(&mut loaded.store, "_initialize", func, &ty, &[], deadline)
        .map_err(|error| LoadError::Instantiate {
            module: name.to_string(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        })?;
    Ok(instance)
}

/// How far the shared memories `module` exports may grow past their
/// initial size, in bytes. wasmtime tells the limiter of a shared memory's
/// creation but not of its growth, so the cap counts the whole range up
/// front (the structural check made every shared memory exported).
fn shared_memory_growth(module: &Module) -> usize {
    module
        .exports()
        .filter_map(|export| match export.ty() {
            ExternType::Memory(ty) if ty.is_shared() => {
                let pages = ty.maximum().unwrap_or(ty.minimum()) - ty.minimum();
                Some(pages.saturating_mul(ty.page_size()))
            }
            _ => None,
        })
        .fold(0u64, u64::saturating_add)
        .try_into()
        .unwrap_or(usize::MAX)
}

/// `module` prepared once per host, if it imports only host functions (a
/// module importing a sibling of this domain is linked import by import).
fn prepared(shared: &DomainShared, loaded: &Loaded, module: &Module) -> Option<Arc<Prepared>> {
    // (The imports are walked only if the domain has modules.)
    let importing_a_sibling = !loaded.modules.is_empty()
        && module
            .imports()
            .any(|i| loaded.modules.iter().any(|m| m.name == i.module()));
    if importing_a_sibling {
        return None;
    }
    let runtime = &*shared.runtime;
    runtime
        .compiler
        .prepared
        .get(&runtime.linker, &runtime.catalogue, module)
}

fn bind_and_instantiate(
    shared: &DomainShared,
    loaded: &mut Loaded,
    name: &str,
    module: &Module,
    prepared: Option<&Prepared>,
) -> Result<Instance, LoadError> {
    let (runtime, policy) = (&*shared.runtime, &*shared.policy);
    for extension in &runtime.extensions {
        // A prepared module's import modules are listed: most loads walk
        // no imports here and make no refusal's message.
        let imports_it =
            prepared.is_none_or(|p| p.import_modules.iter().any(|m| **m == *extension.module()));
        if imports_it
            && let Some(reason) = extension.denied_by(policy)
            && let Some(import) = module.imports().find(|i| i.module() == extension.module())
        {
            return Err(LoadError::DeniedModule {
                module: import.module().to_string(),
                name: import.name().to_string(),
                reason: reason.into_boxed_str(),
            });
        }
    }
    let store = &mut loaded.store;
    // A module importing only host functions: prepared once per host.
    if let Some(prepared) = prepared {
        let denied = &policy.denied;
        if let Some(&category) = prepared.categories.iter().find(|c| denied.contains(c)) {
            // Name the import that carries it.
            return Err(denied_import(runtime, module, category));
        }
        return prepared
            .pre
            .instantiate(&mut *store)
            .map_err(|e| instantiate_error(shared.id, name, e));
    }
    let mut imports = Vec::with_capacity(module.imports().len());
    for import in module.imports() {
        let (from, field) = (import.module(), import.name());
        let sibling = loaded.modules.iter().find(|m| m.name == from);
        let unresolved = || unresolved_import(shared, from, field, sibling.is_some());
        let resolved = match sibling {
            Some(sibling) => sibling.instance.get_export(&mut *store, field),
            None if from == REWRITTEN_WAITS && policy.threads => {
                let wait = WaitImport::parse(field).ok_or_else(unresolved)?;
                let func = atomic_wait::function(&mut *store, wait.width, wait.offset, wait.memory);
                Some(func.into())
            }
            None => {
                let categories = runtime
                    .catalogue
                    .categories_of(from, field)
                    .ok_or_else(unresolved)?;
                let denied = &policy.denied;
                if let Some(&category) = categories.iter().find(|c| denied.contains(c)) {
                    return Err(LoadError::Denied {
                        module: from.to_string(),
                        name: field.to_string(),
                        category,
                    });
                }
                runtime.linker.get(&mut *store, from, field).ok()
            }
        };
        imports.push(resolved.ok_or_else(unresolved)?);
    }
    Instance::new(&mut *store, module, &imports).map_err(|e| instantiate_error(shared.id, name, e))
}

/// The error for an import `from::field` that nothing binds: the domain's
/// module `from` lacks the export, or (with no such module) every place
/// was tried in turn. A host module without the function is
/// [`LoadError::UnknownHostFunction`].
fn unresolved_import(shared: &DomainShared, from: &str, field: &str, in_domain: bool) -> LoadError {
    let (module, name) = (from.to_string(), field.to_string());
    if in_domain {
        let tried = vec![format!(
            "the module {from:?} in this domain has no export {field:?}"
        )];
        return LoadError::UnresolvedImport {
            module,
            name,
            tried,
        };
    }
    if shared.runtime.catalogue.has_module(from) {
        return LoadError::UnknownHostFunction { module, name };
    }
    let resolver = match shared.resolver {
        Some(_) => "not found by the domain's resolver",
        None => "no resolver in this domain",
    };
    let tried = vec![
        "not a module in this domain".to_string(),
        resolver.to_string(),
        format!("no host library named {from:?}"),
        "not a host function".to_string(),
    ];
    LoadError::UnresolvedImport {
        module,
        name,
        tried,
    }
}

/// A failed instantiation: its cause on one line; if its start function
/// failed, the guest's stack goes to `callAborted`, as a call's does.
fn instantiate_error(domain: u64, name: &str, error: wasmtime::Error) -> LoadError {
    let (cause, stack) = stack::cause_and_stack(&error);
    if !stack.is_empty() {
        let context = format!("while instantiating {name}");
        report_aborted(domain, "start", &cause, &stack, Some(&context));
    }
    LoadError::Instantiate {
        module: name.to_string(),
        message: cause,
        source: Some(wasmtime_source(error)),
    }
}

/// The first import of `module` that carries the denied `category`.
fn denied_import(runtime: &Runtime, module: &Module, category: Category) -> LoadError {
    let import = module.imports().find(|i| {
        runtime
            .catalogue
            .categories_of(i.module(), i.name())
            .is_some_and(|c| c.contains(&category))
    });
    let (from, field) = import.map_or(("?", "?"), |i| (i.module(), i.name()));
    LoadError::Denied {
        module: from.to_string(),
        name: field.to_string(),
        category,
    }
}

/// Records the new instance and its `memory` export in the store's data,
/// for the boundary's lookups.
fn record_memory(loaded: &mut Loaded, exports: &KnownExports, instance: Instance) {
    let store = &mut loaded.store;
    let memory = exports
        .memory
        .and_then(|export| Some((export, instance.get_module_export(&mut *store, &export)?)));
    store.data_mut().add_instance(memory);
}
