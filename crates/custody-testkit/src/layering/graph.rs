//! A crate's modules and what each one imports: paths made absolute
//! (`super::`, `self::`, a submodule's name, a name a `use` bound) and
//! followed through facades (a re-export, a glob re-export) to the module
//! that defines the name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::source::{self, UseItem};

/// How deep a chain of re-exports may go before it is taken for a loop.
const MAX_HOPS: usize = 32;

/// One module: its file and what its code says.
pub(super) struct Module {
    /// Its file, relative to `src`.
    pub(super) file: PathBuf,
    uses: Vec<UseItem>,
    inline: Vec<Vec<String>>,
    defines: BTreeSet<String>,
}

/// Every module of a crate, by path (`[]` is the root).
pub(super) struct Crate {
    pub(super) modules: BTreeMap<Vec<String>, Module>,
}

impl Crate {
    /// Reads the crate whose sources are under `src` (test files aside).
    pub(super) fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        super::collect(src, &mut files);
        let texts: BTreeMap<Vec<String>, (PathBuf, String)> = files
            .into_iter()
            .filter(|f| !source::is_test_file(f))
            .map(|f| {
                let code = source::code_of(&fs::read_to_string(&f).unwrap_or_default());
                (source::module_of(src, &f), (f, code))
            })
            .collect();
        let modules = texts
            .iter()
            .map(|(path, (file, code))| {
                let children: Vec<String> = texts
                    .keys()
                    .filter(|k| k.len() == path.len() + 1 && k.starts_with(path))
                    .map(|k| k[path.len()].clone())
                    .collect();
                let module = Module {
                    file: file.strip_prefix(src).unwrap_or(file).to_path_buf(),
                    uses: source::uses(code),
                    inline: source::inline_paths(&source::without_uses(code), &children),
                    defines: source::defined_names(code).into_iter().collect(),
                };
                (path.clone(), module)
            })
            .collect();
        Crate { modules }
    }

    /// The modules `module` imports (itself, its ancestors and the root
    /// aside: a facade and its submodules are one unit to the modules
    /// outside it). A facade re-exporting its own submodule's names does not
    /// import them.
    pub(super) fn imports_of(&self, module: &[String]) -> BTreeSet<Vec<String>> {
        let Some(info) = self.modules.get(module) else {
            return BTreeSet::new();
        };
        let from_uses = info.uses.iter().filter_map(|item| {
            let target = self.target(&self.absolute(module, &item.path, 0)?, 0)?;
            let facade_of_own = item.reexport && target.starts_with(module);
            (!facade_of_own).then_some(target)
        });
        let inline = info
            .inline
            .iter()
            .filter_map(|path| self.target(&self.absolute(module, path, 0)?, 0));
        from_uses
            .chain(inline)
            .filter(|target| !module.starts_with(target))
            .collect()
    }

    /// `path`, written in `module`, from the crate root; `None` if it names
    /// another crate.
    fn absolute(&self, module: &[String], path: &[String], hops: usize) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        let mut here = module.to_vec();
        match first.as_str() {
            "crate" | "$crate" => here.clear(),
            "self" => {}
            "super" => {
                here.pop();
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    here.pop();
                    rest = &rest[1..];
                }
                here.extend(rest.iter().cloned());
                return Some(here);
            }
            _ => {
                here.push(first.clone());
                if self.modules.contains_key(&here) {
                    here.extend(rest.iter().cloned());
                    return Some(here);
                }
                here.pop();
                let info = self.modules.get(module)?;
                if let Some(bound) = info.uses.iter().find(|u| u.name.as_ref() == Some(first))
                    && bound.path.first() != Some(first)
                    && hops < MAX_HOPS
                {
                    let mut target = self.absolute(module, &bound.path, hops + 1)?;
                    target.extend(rest.iter().cloned());
                    return Some(target);
                }
                if !info.defines.contains(first) {
                    return None;
                }
                here.push(first.clone());
            }
        }
        here.extend(rest.iter().cloned());
        Some(here)
    }

    /// The module an absolute path leads to: the module it names, or the
    /// one defining the item it names (through re-exports); `None` if a
    /// re-export leads out of the crate.
    fn target(&self, path: &[String], hops: usize) -> Option<Vec<String>> {
        let mut here: Vec<String> = Vec::new();
        for (at, name) in path.iter().enumerate() {
            here.push(name.clone());
            if self.modules.contains_key(&here) {
                continue;
            }
            here.pop();
            if hops >= MAX_HOPS {
                return Some(here);
            }
            let info = self.modules.get(&here)?;
            let rest = &path[at + 1..];
            if let Some(bound) = info.uses.iter().find(|u| u.name.as_ref() == Some(name)) {
                let mut next = self.absolute(&here, &bound.path, hops + 1)?;
                next.extend(rest.iter().cloned());
                return self.target(&next, hops + 1);
            }
            if info.defines.contains(name) {
                return Some(here);
            }
            for glob in info.uses.iter().filter(|u| u.name.is_none()) {
                let Some(from) = self.absolute(&here, &glob.path, hops + 1) else {
                    continue;
                };
                let offers = self.modules.get(&from).is_some_and(|m| {
                    m.defines.contains(name) || m.uses.iter().any(|u| u.name.as_ref() == Some(name))
                });
                if offers {
                    let mut next = from;
                    next.push(name.clone());
                    next.extend(rest.iter().cloned());
                    return self.target(&next, hops + 1);
                }
            }
            return Some(here);
        }
        Some(here)
    }
}

/// A module path as the graph names it: `a::b`, or `crate` for the root.
pub(super) fn display(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}
