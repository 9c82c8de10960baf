//! The layering check: imports in a crate point one way. Every source file
//! is a module; a `use` of (or a path into) another module is an edge; the
//! check fails on any cycle and names it.
//!
//! Test code (files named `tests.rs`, `loom_models.rs` or `*_tests.rs`, and
//! inline `#[cfg(test)]` modules, which by convention close their file) and
//! comments are not imports. The crate root is a facade of re-exports: a
//! path through it (`crate::Policy`) counts as an edge to the module that
//! defines the name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The module graph of the crate whose `src` directory is `src`: each
/// module (`a::b`, the root is `crate`) and the modules it imports.
pub fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let reexports = reexports(&modules);
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = fs::read_to_string(file).unwrap_or_default();
        let mut edges = BTreeSet::new();
        for path in paths(&strip(&text)) {
            let absolute = absolutize(module, &path);
            if let Some(target) = resolve(&modules, &reexports, &absolute)
                && &target != module
                && target != "crate"
            {
                edges.insert(target);
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
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

fn is_test_file(file: &Path) -> bool {
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name == "loom_models" || name.ends_with("_tests")
}

fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "lib" || only == "main" => "crate".to_string(),
        [init @ .., last] if last == "mod" => init.join("::"),
        all => all.join("::"),
    }
}

/// The code without comments and without the trailing inline test module.
fn strip(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(all(test") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line.split(" // ").next().unwrap_or(line));
        code.push('\n');
    }
    code
}

/// Every path starting with `crate::`, `super::` or `self::` in `use`
/// statements (brace groups expanded) and in code.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let body = statement
            .strip_prefix("pub(crate) use ")
            .or_else(|| statement.strip_prefix("pub use "))
            .or_else(|| statement.strip_prefix("use "));
        if let Some(body) = body.or_else(|| statement.rsplit_once("\nuse ").map(|(_, b)| b)) {
            expand(body, &mut out);
        }
    }
    // Paths used inline, e.g. `crate::sys::open_dir(...)`.
    for (at, _) in code.match_indices("crate::") {
        let preceded_by_ident = code[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if preceded_by_ident {
            continue;
        }
        let path: Vec<String> = code[at..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        out.push(path);
    }
    out
}

/// Expands `a::b::{c, d::{e, f}}` into `a::b::c`, `a::b::d::e`, ...
fn expand(body: &str, out: &mut Vec<Vec<String>>) {
    let body: String = body.split_whitespace().collect();
    let Some(open) = body.find('{') else {
        let path: Vec<String> = body
            .split(" as ")
            .next()
            .unwrap_or("")
            .split("::")
            .map(str::to_string)
            .collect();
        out.push(path);
        return;
    };
    let prefix = body[..open].trim_end_matches("::");
    let inner = &body[open + 1..body.rfind('}').unwrap_or(body.len())];
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        let joined = if item == "self" {
            prefix.to_string()
        } else {
            format!("{prefix}::{item}")
        };
        expand(&joined, out);
    }
}

/// `path` from inside `module`, as an absolute path from `crate`, or `None`
/// if it names another crate.
fn absolutize(module: &str, path: &[String]) -> Vec<String> {
    let mut here: Vec<String> = if module == "crate" {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            here.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                here.pop();
                rest = &rest[1..];
            }
        }
        // In the crate root, a path may start at one of its modules.
        Some(_) if module == "crate" => {}
        _ => return Vec::new(),
    }
    here.extend(rest.iter().cloned());
    here
}

/// The longest module the absolute `path` names (through a root re-export
/// if it starts with one).
fn resolve(
    modules: &BTreeMap<String, PathBuf>,
    reexports: &BTreeMap<String, String>,
    path: &[String],
) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    if let Some(target) = reexports.get(&path[0]) {
        return Some(target.clone());
    }
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

/// Names the root re-exports (`pub use a::b::Name;` in lib.rs), mapped to
/// the module that defines them.
fn reexports(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let Some(root) = modules.get("crate") else {
        return names;
    };
    let text = fs::read_to_string(root).unwrap_or_default();
    for path in paths(&strip(&text)) {
        let absolute = absolutize("crate", &path);
        let Some(name) = absolute.last() else {
            continue;
        };
        if absolute.len() > 1
            && let Some(module) =
                resolve(modules, &BTreeMap::new(), &absolute[..absolute.len() - 1])
        {
            names.insert(name.clone(), module);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> PathBuf {
        let dir = crate::scratch("layering");
        for (name, text) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn finds_a_cycle_through_groups_super_and_reexports() {
        let src = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\npub use b::inner::Thing;\n"),
            ("a.rs", "use crate::{Thing, x::y};\n"),
            ("b.rs", "pub mod inner;\n"),
            ("b/inner.rs", "use super::super::a::f;\npub struct Thing;\n"),
        ]);
        let graph = module_graph(&src);
        assert_eq!(graph["a"], BTreeSet::from(["b::inner".to_string()]));
        assert_eq!(graph["b::inner"], BTreeSet::from(["a".to_string()]));
        let cycle = find_cycle(&graph).expect("a cycle");
        assert!(cycle.contains(&"a".to_string()), "{cycle:?}");
    }

    #[test]
    fn comments_and_test_modules_are_not_imports() {
        let src = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::g;\n// use crate::a::x;\n"),
            (
                "b.rs",
                "/// [`a`](crate::a)\npub fn g() {}\n#[cfg(test)]\nmod tests { use crate::a; }\n",
            ),
        ]);
        assert_eq!(find_cycle(&module_graph(&src)), None);
    }

    #[test]
    fn this_workspace_has_the_edges_it_should() {
        let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("../custody-host/src");
        let graph = module_graph(&host);
        assert!(
            graph["domain::call"].contains("domain::recycle"),
            "{:?}",
            graph["domain::call"]
        );
        assert!(graph["boundary::marshal"].contains("boundary::ctx"));
        assert!(!graph["boundary::ctx"].contains("domain"));
    }
}
