//! Reading one source file: its code without comments, string literals and
//! test items, its `use` declarations, the paths its code names, and the
//! names it defines.

use std::path::Path;

/// One name a `use` declaration binds (or a glob it brings in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UseItem {
    /// The path as written (`super::x::Y`), `self` groups expanded.
    pub(super) path: Vec<String>,
    /// The name bound (the last segment, or the `as` alias); `None` for a
    /// glob (`x::*`).
    pub(super) name: Option<String>,
    /// A `pub`, `pub(crate)` or `pub(super)` use: a re-export.
    pub(super) reexport: bool,
}

/// Whether `file` holds only test code (`tests.rs`, `loom_models.rs`,
/// `*_tests.rs`).
pub(super) fn is_test_file(file: &Path) -> bool {
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name == "loom_models" || name.ends_with("_tests")
}

/// The module path of `file` under `src`: `[]` for the crate root,
/// `["a", "b"]` for `a/b.rs` or `a/b/mod.rs`.
pub(super) fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "lib" || only == "main" => Vec::new(),
        [init @ .., last] if last == "mod" => init.to_vec(),
        all => all.to_vec(),
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code of `text` without comments, the contents of string and char
/// literals, and items under `#[cfg(test)]` (or `#[cfg(all(test, ...))]`).
pub(super) fn code_of(text: &str) -> String {
    drop_test_items(&drop_comments_and_literals(text))
}

fn drop_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // `r` starts a raw string only as its own token (or after `b`).
        let prev_is_ident = i > 0
            && is_ident(chars[i - 1])
            && !(chars[i - 1] == 'b' && (i < 2 || !is_ident(chars[i - 2])));
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && !prev_is_ident && matches!(next, Some('"' | '#')) {
            // A raw string: `r"..."`, `r#"..."#` (also after `b`).
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                code.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            code.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            code.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: `'\n'`, `'\''`, `'\u{..}'`.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            code.push_str("' '");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            code.push_str("' '");
        } else {
            // Anything else, lifetimes (`'a`) included, is code.
            code.push(c);
            i += 1;
        }
    }
    code
}

/// Removes each item (or field, or argument) under a test-only `cfg`
/// ([`test_only`]): up to its `;` or `,`, or its closing brace.
fn drop_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(") {
        let predicate_end = rest[at..].find(")]").map_or(rest.len(), |e| at + e);
        if !test_only(&rest[at + 6..predicate_end]) {
            out.push_str(&rest[..at + 6]);
            rest = &rest[at + 6..];
            continue;
        }
        out.push_str(&rest[..at]);
        let (mut braces, mut nest) = (0usize, 0usize);
        let mut end = rest.len();
        for (i, c) in rest[at..].char_indices() {
            match c {
                '(' | '[' => nest += 1,
                ')' | ']' if nest == 0 => {
                    end = at + i;
                    break;
                }
                ')' | ']' => nest -= 1,
                _ if nest > 0 => {}
                '{' => braces += 1,
                '}' if braces == 0 => {
                    end = at + i;
                    break;
                }
                '}' => {
                    braces -= 1;
                    if braces == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                ';' | ',' if braces == 0 => {
                    end = at + i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a `cfg` predicate holds only in tests: `test`, `loom`, or an
/// `all(..)` that needs one of them.
fn test_only(predicate: &str) -> bool {
    let predicate: String = predicate.split_whitespace().collect();
    match predicate.strip_prefix("all(") {
        Some(args) => args
            .trim_end_matches(')')
            .split(',')
            .any(|a| a == "test" || a == "loom"),
        None => predicate == "test" || predicate == "loom",
    }
}

/// `code` with its `use` declarations blanked out.
pub(super) fn without_uses(code: &str) -> String {
    let mut out = code.to_string();
    for (at, end) in use_spans(code) {
        out.replace_range(at..end, &" ".repeat(end - at));
    }
    out
}

/// Where each `use` declaration is: from the keyword to its `;`.
fn use_spans(code: &str) -> Vec<(usize, usize)> {
    code.match_indices("use")
        .filter_map(|(at, _)| {
            let before = code[..at].chars().next_back();
            let after = code[at + 3..].chars().next();
            let keyword = !before.is_some_and(|c| is_ident(c) || c == ':' || c == '$')
                && after.is_some_and(char::is_whitespace);
            Some((at, at + code[at..].find(';')?)).filter(|_| keyword)
        })
        .collect()
}

/// Every `use` declaration in `code` (in any block), expanded.
pub(super) fn uses(code: &str) -> Vec<UseItem> {
    let mut out = Vec::new();
    for (at, end) in use_spans(code) {
        let head = code[..at].trim_end();
        let reexport = head.ends_with("pub") || (head.ends_with(')') && is_visibility(head));
        let body = &code[at + 3..end];
        expand(body, &[], reexport, &mut out);
    }
    out
}

/// Whether `head` ends with a `pub(...)` visibility.
fn is_visibility(head: &str) -> bool {
    head.rfind("pub(")
        .is_some_and(|at| !head[at + 4..].contains(['(', ';', '{', '}']))
}

/// Expands a use tree (`a::b::{c, d::{self, e as f}}`) under `prefix`.
fn expand(tree: &str, prefix: &[String], reexport: bool, out: &mut Vec<UseItem>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut head = prefix.to_vec();
        head.extend(segments(tree[..open].trim().trim_end_matches("::")));
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close.max(open + 1)];
        let (mut depth, mut start) = (0usize, 0);
        let mut items = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    items.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[start..]);
        for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
            expand(item, &head, reexport, out);
        }
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((path, alias)) => (path, Some(alias.trim().to_string())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    let written = segments(path);
    let is_self = written == ["self"];
    if !is_self {
        full.extend(written);
    }
    if full.is_empty() {
        return;
    }
    let name = if full.last().is_some_and(|s| s == "*") {
        full.pop();
        None
    } else {
        Some(alias.unwrap_or_else(|| full.last().cloned().unwrap_or_default()))
    };
    out.push(UseItem {
        path: full,
        name,
        reexport,
    });
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every path in `code` that starts with `crate`, `self`, `super` or one of
/// `children` (the module's own submodules), e.g. `super::x::f(...)`.
pub(super) fn inline_paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    for (n, &(at, c)) in chars.iter().enumerate() {
        let starts_word = is_ident(c)
            && !chars
                .get(n.wrapping_sub(1))
                .is_some_and(|&(_, p)| is_ident(p) || p == ':');
        if !starts_word {
            continue;
        }
        let path: Vec<String> = code[at..]
            .split(|c: char| !(is_ident(c) || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .take_while(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let Some(first) = path.first() else {
            continue;
        };
        let relative = matches!(first.as_str(), "crate" | "self" | "super");
        if path.len() > 1 && (relative || children.contains(first)) {
            out.push(path);
        }
    }
    out
}

/// The names `code` defines (functions, types, traits, constants, statics,
/// modules, macros), at any depth: enough to find which module a glob
/// re-export takes a name from.
pub(super) fn defined_names(code: &str) -> Vec<String> {
    const KEYWORDS: [&str; 10] = [
        "fn",
        "struct",
        "enum",
        "union",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "macro_rules!",
    ];
    let words: Vec<&str> = code
        .split(|c: char| !(is_ident(c) || c == '!'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|pair| KEYWORDS.contains(&pair[0]))
        .map(|pair| pair[1].trim_end_matches('!').to_string())
        .collect()
}
