//! A crate's declared order of modules, bottom to top, and the imports
//! that break it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use super::graph::{Crate, display};

/// One module in a declared order, with the order of its own submodules
/// (bottom to top) if it declares one.
#[derive(Clone, Copy, Debug)]
pub struct Layer {
    /// The module's name in its parent (`boundary`, not `crate::boundary`).
    pub name: &'static str,
    /// Its submodules, bottom to top; empty if it declares no order (its
    /// submodules' imports of each other are then checked for cycles only).
    pub inner: &'static [Layer],
}

impl Layer {
    /// A module whose submodules, if any, declare no order.
    pub const fn of(name: &'static str) -> Layer {
        Layer { name, inner: &[] }
    }

    /// A module and the order of its submodules, bottom to top.
    pub const fn with(name: &'static str, inner: &'static [Layer]) -> Layer {
        Layer { name, inner }
    }
}

/// What breaks a declared order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `importer` (in `file`) imports `imported`, which is not below it:
    /// under `within`, the importer's branch is at `importer_at` and the
    /// imported one at `imported_at` (from 1, bottom to top, of `of`).
    Upward {
        /// The importing file, relative to `src`.
        file: PathBuf,
        /// The importing module (`a::b`).
        importer: String,
        /// The imported module.
        imported: String,
        /// The module whose order decides (`crate` for the top level).
        within: String,
        /// The importer's position there.
        importer_at: usize,
        /// The imported module's position there.
        imported_at: usize,
        /// How many modules that order lists.
        of: usize,
    },
    /// `module` exists but the order of `within` does not list it.
    Unlisted {
        /// The module (`a::b`).
        module: String,
        /// The module whose order should list it.
        within: String,
    },
    /// The order of `within` lists `name`, which is no module there.
    Unknown {
        /// The name listed.
        name: String,
        /// The module whose order lists it.
        within: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Upward {
                file,
                importer,
                imported,
                within,
                importer_at,
                imported_at,
                of,
            } => write!(
                f,
                "{} ({importer}) imports {imported}, which is above it: in {}'s order \
                 (bottom to top), {importer} is at {importer_at} and {imported} at \
                 {imported_at} of {of}",
                file.display(),
                owner(within)
            ),
            Violation::Unlisted { module, within } => {
                write!(f, "{module} is not in {}'s declared order", owner(within))
            }
            Violation::Unknown { name, within } => {
                write!(
                    f,
                    "{}'s declared order lists {name}, which is no module",
                    owner(within)
                )
            }
        }
    }
}

/// Whose order it is: a module's, or the crate's (its top level).
fn owner(within: &str) -> &str {
    if within == "crate" {
        "the crate"
    } else {
        within
    }
}

/// The declared order for the children of `parent`, if it declares one.
fn order_for<'a>(top: &'a [Layer], parent: &[String]) -> Option<&'a [Layer]> {
    let mut order = top;
    for name in parent {
        order = order.iter().find(|l| l.name == name)?.inner;
    }
    (!order.is_empty()).then_some(order)
}

/// Every module listed where it should be, and nothing else.
pub(super) fn listing(krate: &Crate, top: &[Layer]) -> Vec<Violation> {
    let mut found = Vec::new();
    let parents: BTreeSet<&[String]> = krate
        .modules
        .keys()
        .filter_map(|m| m.split_last().map(|(_, parent)| parent))
        .collect();
    for parent in parents {
        let Some(order) = order_for(top, parent) else {
            continue;
        };
        let children: BTreeSet<&String> = krate
            .modules
            .keys()
            .filter(|m| m.len() == parent.len() + 1 && m.starts_with(parent))
            .map(|m| &m[parent.len()])
            .collect();
        let within = display(parent);
        for child in &children {
            if !order.iter().any(|l| l.name == child.as_str()) {
                let mut module = parent.to_vec();
                module.push((*child).clone());
                found.push(Violation::Unlisted {
                    module: display(&module),
                    within: within.clone(),
                });
            }
        }
        for layer in order {
            if !children.iter().any(|c| c.as_str() == layer.name) {
                found.push(Violation::Unknown {
                    name: layer.name.to_string(),
                    within: within.clone(),
                });
            }
        }
    }
    found
}

/// The import of `imported` by `importer`, if the order forbids it. A
/// module may import its ancestors (the facade it belongs to: the cycle
/// check keeps that one way) and its own submodules; between two branches
/// of a module with a declared order, only the lower may be imported.
pub(super) fn upward(
    krate: &Crate,
    top: &[Layer],
    importer: &[String],
    imported: &[String],
) -> Option<Violation> {
    if importer.starts_with(imported) || imported.starts_with(importer) {
        return None;
    }
    let shared = importer
        .iter()
        .zip(imported)
        .take_while(|(a, b)| a == b)
        .count();
    let parent = &importer[..shared];
    let order = order_for(top, parent)?;
    let position = |name: &String| order.iter().position(|l| l.name == name.as_str());
    let importer_at = position(&importer[shared])?;
    let imported_at = position(&imported[shared])?;
    (imported_at > importer_at).then(|| {
        let file = &krate.modules[importer].file;
        Violation::Upward {
            file: file.clone(),
            importer: display(importer),
            imported: display(imported),
            within: display(parent),
            importer_at: importer_at + 1,
            imported_at: imported_at + 1,
            of: order.len(),
        }
    })
}
