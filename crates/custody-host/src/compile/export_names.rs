//! Names for exported functions that have none.
//!
//! A guest stack (a trap's backtrace, a root's stack, `unloadBlocked`,
//! `callAborted`) names each frame by the module's name section. A module
//! without one, or whose name section leaves an exported function unnamed
//! (a WAT function with no `$id`, a stripped binary), would show only
//! `<wasm function N>`, which tells an operator nothing. So before
//! compiling, every exported function without a name gets its (first)
//! export's name in the name section; names the module has are kept, and
//! a module that names all its exports is compiled as it came.
//!
//! The new name section takes the old one's place (or goes at the end), so
//! no byte before it moves: code offsets in backtraces stay the module's.

use std::borrow::Cow;
use std::collections::BTreeMap;

use wasm_encoder::{Encode, NameMap, NameSection};
use wasmparser::{BinaryReader, ExternalKind, Parser, Payload};

/// The `name` custom section's function-names subsection id.
const FUNCTION_NAMES: u8 = 1;

/// A subsection of a name section: its id and its bytes.
type Subsection<'a> = (u8, &'a [u8]);

/// `wasm` with a name for every exported function (borrowed when it has
/// them all). A module that does not parse is returned as it is: the
/// compiler reports it.
pub(crate) fn with_export_names(wasm: &[u8]) -> Cow<'_, [u8]> {
    match plan(wasm) {
        Ok(Some(plan)) => Cow::Owned(plan.apply(wasm)),
        Ok(None) | Err(_) => Cow::Borrowed(wasm),
    }
}

/// What the rewrite does: the byte span of the old name section (empty at
/// the end if there is none) and the name section that replaces it.
struct Plan {
    span: std::ops::Range<usize>,
    names: NameSection,
}

impl Plan {
    fn apply(&self, wasm: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(wasm.len() + 64);
        out.extend_from_slice(&wasm[..self.span.start]);
        out.push(0); // a custom section
        self.names.as_custom().encode(&mut out);
        out.extend_from_slice(&wasm[self.span.end..]);
        out
    }
}

fn plan(wasm: &[u8]) -> wasmparser::Result<Option<Plan>> {
    let mut exported: BTreeMap<u32, &str> = BTreeMap::new();
    // The old name section: its whole span and its subsections (id, bytes).
    let mut old: Option<(std::ops::Range<usize>, Vec<Subsection<'_>>)> = None;
    // Sections are contiguous: one begins where the one before it ended.
    let mut section_start = 8;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        match &payload {
            Payload::ExportSection(exports) => {
                for export in exports.clone() {
                    let export = export?;
                    if export.kind == ExternalKind::Func {
                        exported.entry(export.index).or_insert(export.name);
                    }
                }
            }
            Payload::CustomSection(custom) if custom.name() == "name" => {
                let end = custom.range().end;
                old = Some((section_start..end, subsections(custom.data())?));
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => return Ok(None),
            _ => {}
        }
        if let Some((_, range)) = payload.as_section() {
            section_start = range.end;
        }
    }
    let (span, kept) = old.unwrap_or((wasm.len()..wasm.len(), Vec::new()));
    let mut functions: BTreeMap<u32, &str> = BTreeMap::new();
    for (id, bytes) in &kept {
        if *id == FUNCTION_NAMES {
            for naming in wasmparser::NameMap::new(BinaryReader::new(bytes, 0))? {
                let naming = naming?;
                functions.insert(naming.index, naming.name);
            }
        }
    }
    let before = functions.len();
    for (index, name) in exported {
        functions.entry(index).or_insert(name);
    }
    if functions.len() == before {
        return Ok(None);
    }
    let mut map = NameMap::new();
    for (index, name) in functions {
        map.append(index, name);
    }
    // Subsections stay in id order, the function names in their place.
    let mut names = NameSection::new();
    let mut placed = false;
    for (id, bytes) in kept {
        if !placed && id >= FUNCTION_NAMES {
            names.functions(&map);
            placed = true;
        }
        if id != FUNCTION_NAMES {
            names.raw(id, bytes);
        }
    }
    if !placed {
        names.functions(&map);
    }
    Ok(Some(Plan { span, names }))
}

/// The subsections of a name section's contents: (id, bytes).
fn subsections(data: &[u8]) -> wasmparser::Result<Vec<Subsection<'_>>> {
    let mut reader = BinaryReader::new(data, 0);
    let mut found = Vec::new();
    while !reader.eof() {
        let id = reader.read_u8()?;
        let len = reader.read_var_u32()?;
        found.push((id, reader.read_bytes(len as usize)?));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function_names(wasm: &[u8]) -> BTreeMap<u32, String> {
        let mut names = BTreeMap::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let Payload::CustomSection(custom) = payload.unwrap()
                && custom.name() == "name"
            {
                for (id, bytes) in subsections(custom.data()).unwrap() {
                    if id == FUNCTION_NAMES {
                        for n in wasmparser::NameMap::new(BinaryReader::new(bytes, 0)).unwrap() {
                            let n = n.unwrap();
                            names.insert(n.index, n.name.to_string());
                        }
                    }
                }
            }
        }
        names
    }

    #[test]
    fn unnamed_exports_get_their_export_names_and_named_ones_keep_theirs() {
        let wasm = wat::parse_str(
            r#"(module $m
                 (func $inner (local $x i32))
                 (func (export "arm") (call $inner))
                 (func $named (export "other"))
                 (func (export "first") (export "second"))
                 (data $d ""))"#,
        )
        .unwrap();
        let named = with_export_names(&wasm);
        wasmparser::validate(&named).unwrap();
        let names = function_names(&named);
        assert_eq!(names[&0], "inner");
        assert_eq!(names[&1], "arm");
        assert_eq!(names[&2], "named");
        assert_eq!(names[&3], "first");
        // The other subsections (module, locals, data) are kept.
        let old = subsections_of(&wasm);
        let new = subsections_of(&named);
        assert_eq!(
            old.iter().map(|s| s.0).collect::<Vec<_>>(),
            new.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    }

    fn subsections_of(wasm: &[u8]) -> Vec<(u8, Vec<u8>)> {
        for payload in Parser::new(0).parse_all(wasm) {
            if let Payload::CustomSection(custom) = payload.unwrap()
                && custom.name() == "name"
            {
                return subsections(custom.data())
                    .unwrap()
                    .into_iter()
                    .map(|(id, b)| (id, b.to_vec()))
                    .collect();
            }
        }
        Vec::new()
    }

    #[test]
    fn a_module_without_a_name_section_gets_one_and_code_does_not_move() {
        let text = r#"(module (func (export "run") unreachable) (func))"#;
        let wasm = wat::parse_str(text).unwrap();
        assert!(function_names(&wasm).is_empty(), "nothing is named");
        let named = with_export_names(&wasm).into_owned();
        wasmparser::validate(&named).unwrap();
        assert_eq!(function_names(&named)[&0], "run");
        assert_eq!(&named[..wasm.len()], &wasm[..], "appended at the end");
    }

    #[test]
    fn a_module_that_names_every_export_is_left_as_it_came() {
        let wasm = wat::parse_str(r#"(module (func $run (export "run")))"#).unwrap();
        assert!(matches!(with_export_names(&wasm), Cow::Borrowed(_)));
        let none = wat::parse_str("(module)").unwrap();
        assert!(matches!(with_export_names(&none), Cow::Borrowed(_)));
        assert!(matches!(with_export_names(b"not wasm"), Cow::Borrowed(_)));
    }
}
