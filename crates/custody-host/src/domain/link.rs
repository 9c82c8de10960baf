//! Import resolution and instantiation: an import `(module, name)` resolves
//! to a module already loaded in the domain under that name, else to a host
//! function of the catalogue (refused if the policy denies one of its
//! categories).

use wasmtime::{ExternType, Instance, Module};

use super::Loaded;
use crate::error::LoadError;
use crate::runtime::Runtime;

/// Instantiates `module` into `loaded`'s store and records its `memory`
/// export for the boundary's lookups.
pub(crate) fn instantiate(
    runtime: &Runtime,
    loaded: &mut Loaded,
    name: &str,
    module: &Module,
) -> Result<Instance, LoadError> {
    let store = &mut loaded.store;
    let mut imports = Vec::with_capacity(module.imports().len());
    for import in module.imports() {
        let (from, field) = (import.module(), import.name());
        let unresolved = || LoadError::UnresolvedImport {
            module: from.to_string(),
            name: field.to_string(),
        };
        let sibling = loaded.modules.iter().find(|m| m.name == from);
        let resolved = match sibling {
            Some(sibling) => sibling.instance.get_export(&mut *store, field),
            None => {
                let categories = runtime
                    .catalogue
                    .categories_of(from, field)
                    .ok_or_else(unresolved)?;
                let denied = &runtime.policy.denied;
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
    let instance =
        Instance::new(&mut *store, module, &imports).map_err(|e| LoadError::Instantiate {
            module: name.to_string(),
            message: format!("{e:#}"),
        })?;
    if let Some(ExternType::Memory(_)) = module.get_export("memory")
        && let Some(export) = module.get_export_index("memory")
    {
        store.data_mut().memories.push(export);
    }
    Ok(instance)
}
