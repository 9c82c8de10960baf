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

/// The names being loaded, as a chain on the stack (innermost first): a
/// load that supplies nothing on demand allocates nothing for it.
struct Loading<'a> {
    name: &'a str,
    outer: Option<&'a Loading<'a>>,
}

impl Loading<'_> {
    /// The names, outermost first.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = std::iter::successors(Some(self), |l| l.outer)
            .map(|l| l.name)
            .collect();
        names.reverse();
        names
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
    load_nested(shared, loaded, name, module, None, None)
}

/// [`load`] inside the loads of `outer`.
fn load_nested(
    shared: &DomainShared,
    loaded: &mut Loaded,
    name: &str,
    module: &Module,
    outer: Option<&Loading<'_>>,
    origin: Option<Origin>,
) -> Result<(), LoadError> {
    let outer_names = outer.map(Loading::names).unwrap_or_default();
    if outer_names.len() >= MAX_DEPTH {
        return Err(LoadError::Limits {
            message: format!(
                "loading {name} on demand would nest {} loads deep (at most {MAX_DEPTH}): {}",
                outer_names.len() + 1,
                outer_names.join(" -> ")
            ),
            source: None,
        });
    }
    let loading = Loading { name, outer };
    let (instance, exports) = supply(shared, loaded, module, &loading)
        .and_then(|()| link::instantiate(shared, loaded, name, module))?;
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
    loading: &Loading<'_>,
) -> Result<(), LoadError> {
    if shared.resolver.is_none() && !shared.runtime.has_libraries() {
        // Nothing can be supplied on demand (the usual domain): no walk
        // of the module's imports.
        return Ok(());
    }
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
        let names = loading.names();
        if let Some(at) = names.iter().position(|n| *n == from) {
            let mut cycle: Vec<String> = names[at..].iter().map(|n| n.to_string()).collect();
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
        load_nested(shared, loaded, from, &supplied, Some(loading), Some(origin))?;
    }
    Ok(())
}
