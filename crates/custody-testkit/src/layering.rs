//! The layering check: imports in a crate point one way, bottom to top of
//! an order the crate declares.
//!
//! Every source file is a module; a `use` of (or a path into) another
//! module is an edge. Paths are made absolute (`super::`, `self::`, a
//! submodule's own name, a name another `use` bound) and followed through
//! facades: a path through a module that re-exports a name (`pub use`,
//! `pub(crate) use`, a glob) leads to the module that defines it, and a
//! path naming a module leads to that module. A facade re-exporting its
//! own submodules does not import them.
//!
//! Two checks: no cycle ([`find_cycle`], [`assert_acyclic`]), and no import
//! going up a declared order ([`check_layered`], [`assert_layered`]). An
//! order lists a crate's top-level modules bottom to top ([`Layer`]), each
//! with the order of its own submodules where it declares one. A module may
//! import one below it, its own submodules, and its ancestors: a facade
//! (`domain.rs`, the crate root) and its submodules are one unit to the
//! modules outside it, so an import of a facade's own items from inside is
//! no edge. Under a module whose submodules declare no order, only cycles
//! are checked.
//!
//! Test code (files named `tests.rs`, `loom_models.rs` or `*_tests.rs`,
//! items under `#[cfg(test)]`), comments and string literals are not
//! imports.

mod graph;
mod order;
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

pub use order::{Layer, Violation};

use graph::{Crate, display};

/// The module graph of the crate whose `src` directory is `src`: each
/// module (`a::b`, the root is `crate`) and the modules it imports.
pub fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let krate = Crate::read(src);
    krate
        .modules
        .keys()
        .map(|module| {
            let imports = krate
                .imports_of(module)
                .iter()
                .map(|m| display(m))
                .collect();
            (display(module), imports)
        })
        .collect()
}

/// Every import in the crate at `src` that goes up `order` (the crate's
/// top-level modules, bottom to top), and every module the order misses or
/// names wrongly.
///
/// # Errors
/// The violations, importers in module order.
pub fn check_layered(src: &Path, order: &[Layer]) -> Result<(), Vec<Violation>> {
    let krate = Crate::read(src);
    let mut found = order::listing(&krate, order);
    for module in krate.modules.keys() {
        for imported in krate.imports_of(module) {
            found.extend(order::upward(&krate, order, module, &imported));
        }
    }
    if found.is_empty() { Ok(()) } else { Err(found) }
}

/// Panics, naming each violation, if the crate at `src` breaks `order`.
#[track_caller]
pub fn assert_layered(src: &Path, order: &[Layer]) {
    assert_layered_except(src, order, &[]);
}

/// [`assert_layered`], but tolerating the upward imports `except` lists as
/// (importer, imported) module pairs (`("a::b", "c")`). It panics too on a
/// pair that matches no violation, so the list only shrinks.
#[track_caller]
pub fn assert_layered_except(src: &Path, order: &[Layer], except: &[(&str, &str)]) {
    assert!(
        Crate::read(src).modules.len() > 1,
        "no modules found under {}",
        src.display()
    );
    let violations = check_layered(src, order).err().unwrap_or_default();
    let excepted = |v: &Violation| {
        matches!(v, Violation::Upward { importer, imported, .. }
            if except.contains(&(importer.as_str(), imported.as_str())))
    };
    let mut problems: Vec<String> = violations
        .iter()
        .filter(|v| !excepted(v))
        .map(ToString::to_string)
        .collect();
    for (importer, imported) in except {
        let matched = violations.iter().any(|v| {
            matches!(v, Violation::Upward { importer: i, imported: m, .. }
                if i == importer && m == imported)
        });
        if !matched {
            problems.push(format!(
                "the exception ({importer}, {imported}) matches no upward import: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} breaks its declared order:\n{}",
        src.display(),
        problems.join("\n")
    );
}

/// The modules each row of the markdown table after `heading` in `text`
/// names in its first cell, in the table's order (`a`, `b` names two;
/// `a` + `a/x.rs` one). Rows may sit in a doc comment (`//! | ... |`).
pub fn module_table(text: &str, heading: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .skip_while(|l| !l.starts_with(heading))
        .skip_while(|l| !l.starts_with("| module |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cell = row.split('|').nth(1).unwrap_or_default();
            let names = cell.split(" + ").next().unwrap_or_default();
            names
                .split(',')
                .map(|n| {
                    n.trim()
                        .trim_matches(['[', ']', '`'])
                        .trim_end_matches('/')
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// The names `order` lists, bottom to top (its top level only).
pub fn names(order: &[Layer]) -> Vec<String> {
    order.iter().map(|l| l.name.to_string()).collect()
}

/// Where a crate uses `unsafe`: the `.rs` files under `src` whose code
/// (comments aside) has an `unsafe` block, impl or fn, and the files that
/// allow it (`#![allow(unsafe_code)]`), each sorted.
pub fn unsafe_modules(src: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    // Spelled apart, so that this file does not find itself.
    const UNSAFE: [&str; 3] = [
        concat!("unsafe", " {"),
        concat!("unsafe", " impl"),
        concat!("unsafe", " fn"),
    ];
    let mut files = Vec::new();
    collect(src, &mut files);
    let (mut used, mut allowed) = (Vec::new(), Vec::new());
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let uses = text.lines().any(|line| {
            let code = line.split("//").next().unwrap_or_default();
            UNSAFE.iter().any(|marker| code.contains(marker))
        });
        if uses {
            used.push(file.clone());
        }
        if text.lines().any(|l| l.trim() == "#![allow(unsafe_code)]") {
            allowed.push(file);
        }
    }
    used.sort();
    allowed.sort();
    (used, allowed)
}

/// The first import cycle found, as a list of modules, if any.
pub fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Panics with the cycle if the crate at `src` has one.
#[track_caller]
pub fn assert_acyclic(src: &Path) {
    let graph = module_graph(src);
    assert!(graph.len() > 1, "no modules found under {}", src.display());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests;
