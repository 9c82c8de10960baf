//! The host-function catalogue: every function a guest may import from the
//! host, declared once.
//!
//! A built-in ABI declares each of its functions as a [`HostFunction`]:
//! import module and name, signature, host-protection categories, the error
//! codes it may return, a one-line summary and its handler (the `link`
//! step). Everything else derives from those lists: linking, denial at load
//! ([`Catalogue::categories_of`]), the category table in
//! docs/RELIABILITY.md and the check of `guest/include/custody.h` (both
//! kept in sync by tests). Embedder functions join the same catalogue when
//! the host is built, with their own categories.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use wasmtime::Linker;

use crate::boundary::ctx::DomainCtx;
use crate::boundary::embed::EmbedderFunction;
use crate::boundary::errno::AbiError;
use crate::config::Category;

/// A value type in a host function's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiType {
    /// A 32-bit integer (C `int32_t`): handles, pointers, lengths, codes.
    I32,
    /// A 64-bit integer (C `int64_t`).
    I64,
}

impl fmt::Display for AbiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbiType::I32 => "i32",
            AbiType::I64 => "i64",
        })
    }
}

/// One function of a built-in ABI, declared once.
#[derive(Clone, Copy)]
pub struct HostFunction {
    /// The import module (`custody`).
    pub module: &'static str,
    /// The import name.
    pub name: &'static str,
    /// Parameter names (as in the C header) and types.
    pub params: &'static [(&'static str, AbiType)],
    /// Result types.
    pub results: &'static [AbiType],
    /// What it touches, for host protection (SPEC Part C).
    pub categories: &'static [Category],
    /// The error codes it may return to the guest (the `custody` ABI's;
    /// empty for WASI functions, which return WASI errnos).
    pub errors: &'static [AbiError],
    /// One line on what it does.
    pub summary: &'static str,
    /// Defines it in a linker (the host's, once, when the host is built).
    pub link: fn(&mut Linker<DomainCtx>) -> wasmtime::Result<()>,
}

impl fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFunction")
            .field("module", &self.module)
            .field("name", &self.name)
            .field("params", &self.params)
            .field("results", &self.results)
            .field("categories", &self.categories)
            .finish_non_exhaustive()
    }
}

/// Why the catalogue could not be linked: a function defined twice or in a
/// module reserved for a built-in ABI (`source` is `None`), or refused by
/// wasmtime's linker (`source` is its error).
#[derive(Debug)]
pub(crate) struct LinkError {
    pub(crate) message: String,
    pub(crate) source: Option<wasmtime::Error>,
}

impl LinkError {
    fn linker(function: String, error: wasmtime::Error) -> LinkError {
        LinkError {
            message: function,
            source: Some(error),
        }
    }
}

impl From<String> for LinkError {
    fn from(message: String) -> LinkError {
        LinkError {
            message,
            source: None,
        }
    }
}

/// The host functions of one import module, by name, with their categories.
type ModuleFunctions = HashMap<Cow<'static, str>, Cow<'static, [Category]>>;

/// Every host function a host's guests may import, with its categories.
#[derive(Debug, Default)]
pub(crate) struct Catalogue {
    /// module -> name -> categories.
    categories: HashMap<Cow<'static, str>, ModuleFunctions>,
}

impl Catalogue {
    /// Links the built-in `functions` and then the embedder's into `linker`,
    /// and records every one. A name defined twice is an error.
    pub(crate) fn link(
        linker: &mut Linker<DomainCtx>,
        functions: &[&'static [HostFunction]],
        embedder: Vec<EmbedderFunction>,
    ) -> Result<Catalogue, LinkError> {
        let mut catalogue = Catalogue::default();
        for f in functions.iter().flat_map(|list| list.iter()) {
            catalogue.add(
                Cow::Borrowed(f.module),
                Cow::Borrowed(f.name),
                Cow::Borrowed(f.categories),
            )?;
            (f.link)(linker)
                .map_err(|e| LinkError::linker(format!("{}::{}", f.module, f.name), e))?;
        }
        for f in embedder {
            if functions
                .iter()
                .any(|list| list.iter().any(|b| b.module == f.module))
            {
                return Err(format!(
                    "{}::{}: the {} module is reserved for a built-in ABI",
                    f.module, f.name, f.module
                )
                .into());
            }
            let label = format!("{}::{}", f.module, f.name);
            catalogue.add(
                Cow::Owned(f.module),
                Cow::Owned(f.name),
                Cow::Owned(f.categories),
            )?;
            (f.link)(linker).map_err(|e| LinkError::linker(label, e))?;
        }
        Ok(catalogue)
    }

    fn add(
        &mut self,
        module: Cow<'static, str>,
        name: Cow<'static, str>,
        categories: Cow<'static, [Category]>,
    ) -> Result<(), String> {
        let label = format!("{module}::{name}");
        match self
            .categories
            .entry(module)
            .or_default()
            .insert(name, categories)
        {
            None => Ok(()),
            Some(_) => Err(format!("{label} is defined twice")),
        }
    }

    /// The host-protection categories of a host function guests may import,
    /// or `None` if the host defines no such function.
    pub(crate) fn categories_of(&self, module: &str, name: &str) -> Option<&[Category]> {
        self.categories.get(module)?.get(name).map(|c| &**c)
    }

    /// Whether `module` is a host module (some function lives in it).
    pub(crate) fn has_module(&self, module: &str) -> bool {
        self.categories.contains_key(module)
    }
}

/// Checks that the C header `header` declares each of `functions` as the
/// catalogue does, and nothing else under `import_macro`: each declaration
/// is `import_macro(name)` followed by `int32_t {c_prefix}{name}(...)`
/// with the catalogue's parameter names, after a comment whose "Errors"
/// part lists exactly the function's error codes. For the tests of each
/// ABI that C guests use (`guest/include/custody.h`).
///
/// # Panics
/// On the first function that does not match, or a declaration the
/// catalogue lacks.
#[doc(hidden)]
pub fn assert_declared(
    functions: &[HostFunction],
    header: &str,
    import_macro: &str,
    c_prefix: &str,
) {
    for f in functions {
        let (comment, prototype) = declaration(header, import_macro, f.name);
        assert!(
            prototype.starts_with(&format!("int32_t {c_prefix}{}(", f.name)),
            "{}: the header declares {prototype}",
            f.name
        );
        let names: Vec<&str> = f.params.iter().map(|(n, _)| *n).collect();
        assert_eq!(parameters(prototype), names, "{}: parameters", f.name);
        assert!(f.params.iter().all(|(_, t)| *t == AbiType::I32));
        assert_eq!(f.results, &[AbiType::I32]);
        // The codes the comment lists after "Errors" are the ones declared.
        let listed = comment.split_once("Errors").map_or("", |(_, e)| e);
        let mut documented: Vec<&str> = listed
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.starts_with("E_") && w.len() > 2)
            .collect();
        documented.sort_unstable();
        documented.dedup();
        let mut declared: Vec<&str> = f.errors.iter().map(|e| e.name()).collect();
        declared.sort_unstable();
        assert_eq!(documented, declared, "{}: error codes", f.name);
    }
    let prefix = format!("{import_macro}(");
    for line in header.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            let name = rest.trim_end_matches(')');
            assert!(
                functions.iter().any(|f| f.name == name),
                "the header declares {name}, the catalogue does not"
            );
        }
    }
}

/// The comment block and prototype `header` gives `name`.
fn declaration<'h>(header: &'h str, import_macro: &str, name: &str) -> (&'h str, &'h str) {
    let marker = format!("{import_macro}({name})");
    let at = header
        .find(&format!("\n{marker}"))
        .unwrap_or_else(|| panic!("{name} is missing from the header"));
    let comment_start = header[..at]
        .rfind("/*")
        .expect("a comment before each import");
    let comment = &header[comment_start..at];
    let after = &header[at + 1 + marker.len()..];
    let prototype = &after[..after.find(';').expect("a prototype after each import")];
    (comment, prototype.trim())
}

/// The parameter names of a C prototype (`void` is none).
fn parameters(prototype: &str) -> Vec<String> {
    let open = prototype.find('(').unwrap_or(0);
    let close = prototype.rfind(')').unwrap_or(prototype.len());
    let inside = &prototype[(open + 1).min(close)..close];
    if inside.trim() == "void" {
        return Vec::new();
    }
    inside
        .split(',')
        .filter_map(|p| p.split_whitespace().last())
        .map(str::to_string)
        .collect()
}

/// Checks that `doc` (docs/RELIABILITY.md) has a row `| `name` | categories |`
/// for each of `functions`, naming exactly its categories: for the tests
/// of each extension's catalogue.
///
/// # Panics
/// On the first function missing from `doc` or documented with other
/// categories.
#[doc(hidden)]
pub fn assert_documented(functions: &[HostFunction], doc: &str) {
    for f in functions {
        let prefix = format!("| `{}` |", f.name);
        let row = doc
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{} missing from docs/RELIABILITY.md", f.name));
        let mut documented: Vec<&str> = row[prefix.len()..]
            .trim_end_matches('|')
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let mut actual: Vec<&str> = f.categories.iter().map(|c| c.name()).collect();
        actual.sort_unstable();
        documented.sort_unstable();
        assert_eq!(documented, actual, "{}", f.name);
    }
}
