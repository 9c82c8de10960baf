//! The resolution order of an import `(module, name)` (.NET: the load
//! context's own `Load`, then its `Resolving` event, then the default
//! context):
//!
//! 1. a module loaded in this domain under that name;
//! 2. the embedder's resolver (`DomainConfig::resolver`): the module it
//!    returns is loaded into the domain under that name, on demand;
//! 3. the host's library of that name (`Host::add_library`): instantiated
//!    into the domain under that name, once per domain;
//! 4. the host functions (the `custody` ABI, the embedder's functions).
//!
//! Steps 2 and 3 happen here, before the importing module is instantiated:
//! what they supply is loaded (its own imports resolved the same way) and
//! becomes a module of the domain, so [`link`](super::link) binds every
//! import to a module of the domain or to a host function. A supplied
//! module whose name is still being loaded closes a cycle: an error, not a
//! recursion without end.

use wasmtime::{Engine, Module};

use super::{DomainShared, Loaded, LoadedModule, link};
use crate::compile::atomic_wait;
use crate::error::LoadError;

/// How deep loads on demand may nest (a resolver inventing a new module
/// for every name would otherwise never end).
const MAX_DEPTH: usize = 64;

/// Where a module loaded on demand came from.
#[derive(Clone, Copy)]
enum Origin {
    Resolver,
    Library,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Resolver => "the domain's resolver",
            Origin::Library => "a host library",
        }
    }
}

/// Loads `module` into the domain under `name`: the modules its imports
/// need are supplied first (steps 2 and 3), then it is instantiated and
/// recorded. The caller checked that no module has that name yet.
pub(crate) fn load(
    shared: &DomainShared,
    loaded: &mut Loaded,
    name: &str,
    module: &Module,
) -> Result<(), LoadError> {
    load_nested(shared, loaded, name, module, &mut Vec::new(), None)
}

/// [`load`] with the names being loaded (outermost first).
fn load_nested(
    shared: &DomainShared,
    loaded: &mut Loaded,
    name: &str,
    module: &Module,
    loading: &mut Vec<String>,
    origin: Option<Origin>,
) -> Result<(), LoadError> {
    if loading.len() >= MAX_DEPTH {
        return Err(LoadError::Limits {
            message: format!(
                "loading {name} on demand would nest {} loads deep (at most {MAX_DEPTH}): {}",
                loading.len() + 1,
                loading.join(" -> ")
            ),
            source: None,
        });
    }
    loading.push(name.to_string());
    let instance = supply(shared, loaded, module, loading)
        .and_then(|()| link::instantiate(shared, loaded, name, module));
    loading.pop();
    let (instance, exports) = instance?;
    loaded.modules.push(LoadedModule {
        name: name.to_string(),
        module: module.clone(),
        instance,
        exports,
    });
    let from = origin.map(Origin::name);
    tracing::debug!(target: "custody::domain", parent: &shared.span, domain = shared.id, module = name, on_demand_from = from, "loaded");
    Ok(())
}

/// Loads what the resolver or a host library supplies for each import
/// module name of `module` that no module of the domain has.
fn supply(
    shared: &DomainShared,
    loaded: &mut Loaded,
    module: &Module,
    loading: &mut Vec<String>,
) -> Result<(), LoadError> {
    let mut asked: Vec<&str> = Vec::new();
    for import in module.imports() {
        let from = import.module();
        // The host's own rewriting of atomic waits is never shadowed.
        if asked.contains(&from)
            || from == atomic_wait::MODULE
            || loaded.modules.iter().any(|m| m.name == from)
        {
            continue;
        }
        asked.push(from);
        let supplied = shared
            .resolver
            .as_ref()
            .and_then(|resolve| resolve(from))
            .map(|m| (m, Origin::Resolver))
            .or_else(|| shared.runtime.library(from).map(|m| (m, Origin::Library)));
        let Some((supplied, origin)) = supplied else {
            continue; // the host's functions, or unresolved
        };
        if let Some(at) = loading.iter().position(|n| n == from) {
            let mut cycle = loading[at..].to_vec();
            cycle.push(from.to_string());
            return Err(LoadError::ImportCycle { cycle });
        }
        if !Engine::same(supplied.engine(), &shared.runtime.engine) {
            return Err(LoadError::Instantiate {
                module: from.to_string(),
                message: format!(
                    "{} supplied a module compiled by another host's engine",
                    origin.name()
                ),
                source: None,
            });
        }
        load_nested(shared, loaded, from, &supplied, loading, Some(origin))?;
    }
    Ok(())
}
