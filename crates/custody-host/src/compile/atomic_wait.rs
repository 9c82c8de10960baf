//! With the policy's `threads`: every `memory.atomic.wait32/64` of a module
//! becomes a call to a host function that waits in bounded slices, so that
//! the deadline and the cancellation signal reach a guest waiting on a
//! shared memory (wasmtime's own wait parks the thread out of reach).
//!
//! The rewrite appends one function type per wait width, one import per
//! distinct (width, memory, offset) in module [`MODULE`], and shifts the
//! index of every defined function past the new imports. The import's name
//! carries what the host function needs: `wait32 OFFSET EXPORT`, where
//! `EXPORT` is the shared memory's export name in the waiting module (the
//! structural check made every defined shared memory exported; a module
//! waiting on an imported one must export it again).

use std::borrow::Cow;

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    EntityType, ImportSection, Instruction, Module as Encoded, SectionId, TypeSection, ValType,
};
use wasmparser::{ExternalKind, MemArg, Operator, Parser, Payload, TypeRef};

/// The import module of the wait functions.
pub(crate) const MODULE: &str = "custody:threads";

/// One wait function a module needs: which width, on which memory's export
/// name, at which static offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WaitImport {
    /// 32 or 64.
    pub(crate) width: u8,
    /// The memarg's offset, added to the address operand.
    pub(crate) offset: u64,
    /// The name the waiting module exports the shared memory under.
    pub(crate) memory: String,
}

impl WaitImport {
    /// The import name that carries this wait's parameters.
    pub(crate) fn name(&self) -> String {
        format!("wait{} {} {}", self.width, self.offset, self.memory)
    }

    /// Reads an import name made by [`WaitImport::name`].
    pub(crate) fn parse(name: &str) -> Option<WaitImport> {
        let mut parts = name.splitn(3, ' ');
        let width = match parts.next()? {
            "wait32" => 32,
            "wait64" => 64,
            _ => return None,
        };
        let offset = parts.next()?.parse().ok()?;
        let memory = parts.next()?.to_string();
        Some(WaitImport {
            width,
            offset,
            memory,
        })
    }
}

/// `wasm` with its atomic waits turned into calls, or the bytes as they are
/// if it has none. `Err` says why a wait cannot be bounded.
pub(crate) fn rewrite(wasm: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let scan = Scan::of(wasm)?;
    if scan.waits.is_empty() {
        return Ok(Cow::Borrowed(wasm));
    }
    let mut rewriter = Rewriter { scan };
    let mut module = Encoded::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| format!("rewriting its atomic waits: {e}"))?;
    Ok(Cow::Owned(module.finish()))
}

/// What the rewrite needs to know before writing anything.
#[derive(Default)]
struct Scan {
    types: u32,
    imported_functions: u32,
    has_import_section: bool,
    /// Name of each memory (export or import name), by index.
    memory_names: Vec<Option<String>>,
    memory64: Vec<bool>,
    /// The distinct waits, in order of first use; index = stub number.
    waits: Vec<WaitImport>,
}

impl Scan {
    fn of(wasm: &[u8]) -> Result<Scan, String> {
        let mut scan = Scan::default();
        let mut pending: Vec<(u8, MemArg)> = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            let Ok(payload) = payload else { break };
            match payload {
                Payload::TypeSection(s) => {
                    for group in s.into_iter().flatten() {
                        scan.types += group.types().len() as u32;
                    }
                }
                Payload::ImportSection(s) => {
                    scan.has_import_section = true;
                    for import in s.into_imports().flatten() {
                        match import.ty {
                            TypeRef::Func(_) => scan.imported_functions += 1,
                            TypeRef::Memory(ty) => {
                                // Reached only if this module exports it too.
                                scan.memory_names.push(None);
                                scan.memory64.push(ty.memory64);
                            }
                            _ => {}
                        }
                    }
                }
                Payload::MemorySection(s) => {
                    for ty in s.into_iter().flatten() {
                        scan.memory_names.push(None);
                        scan.memory64.push(ty.memory64);
                    }
                }
                Payload::ExportSection(s) => {
                    for export in s.into_iter().flatten() {
                        if export.kind == ExternalKind::Memory
                            && let Some(slot) = scan.memory_names.get_mut(export.index as usize)
                        {
                            *slot = Some(export.name.to_string());
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let Ok(mut operators) = body.get_operators_reader() else {
                        continue;
                    };
                    while !operators.eof() {
                        match operators.read() {
                            Ok(Operator::MemoryAtomicWait32 { memarg }) => {
                                pending.push((32, memarg))
                            }
                            Ok(Operator::MemoryAtomicWait64 { memarg }) => {
                                pending.push((64, memarg))
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
                _ => {}
            }
        }
        for (width, memarg) in pending {
            let wait = scan.wait_import(width, &memarg)?;
            if !scan.waits.contains(&wait) {
                scan.waits.push(wait);
            }
        }
        Ok(scan)
    }

    fn wait_import(&self, width: u8, memarg: &MemArg) -> Result<WaitImport, String> {
        let index = memarg.memory as usize;
        if self.memory64.get(index) == Some(&true) {
            return Err(format!(
                "memory {index} is 64-bit: custody bounds atomic waits on 32-bit shared memories only"
            ));
        }
        let memory = self
            .memory_names
            .get(index)
            .cloned()
            .flatten()
            .ok_or_else(|| {
                format!("memory {index} has an atomic wait but no export name to reach it by")
            })?;
        Ok(WaitImport {
            width,
            offset: memarg.offset,
            memory,
        })
    }

    fn stub_index(&self, width: u8, memarg: &MemArg) -> Option<u32> {
        let wait = self.wait_import(width, memarg).ok()?;
        let at = self.waits.iter().position(|w| *w == wait)?;
        Some(self.imported_functions + at as u32)
    }

    fn append_stubs(&self, imports: &mut ImportSection) {
        for wait in &self.waits {
            let ty = self.types + u32::from(wait.width == 64);
            imports.import(MODULE, &wait.name(), EntityType::Function(ty));
        }
    }
}

struct Rewriter {
    scan: Scan,
}

impl Reencode for Rewriter {
    type Error = String;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<String>> {
        let imported = self.scan.imported_functions;
        Ok(if func < imported {
            func
        } else {
            func + self.scan.waits.len() as u32
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        reencode::utils::parse_type_section(self, types, section)?;
        // (addr, expected, timeout) -> 0 woken, 1 not equal, 2 timed out.
        types
            .ty()
            .function([ValType::I32, ValType::I32, ValType::I64], [ValType::I32]);
        types
            .ty()
            .function([ValType::I32, ValType::I64, ValType::I64], [ValType::I32]);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        self.scan.append_stubs(imports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut Encoded,
        after: Option<SectionId>,
        _before: Option<SectionId>,
    ) -> Result<(), reencode::Error<String>> {
        // A module with no import section gets one right after its types.
        if after == Some(SectionId::Type) && !self.scan.has_import_section {
            let mut imports = ImportSection::new();
            self.scan.append_stubs(&mut imports);
            module.section(&imports);
        }
        Ok(())
    }

    fn instruction<'a>(
        &mut self,
        op: Operator<'a>,
    ) -> Result<Instruction<'a>, reencode::Error<String>> {
        let stub = match &op {
            Operator::MemoryAtomicWait32 { memarg } => self.scan.stub_index(32, memarg),
            Operator::MemoryAtomicWait64 { memarg } => self.scan.stub_index(64, memarg),
            _ => None,
        };
        match stub {
            Some(index) => Ok(Instruction::Call(index)),
            None => reencode::utils::instruction(self, op),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(wasm: &[u8]) -> Vec<u8> {
        let mut module = Encoded::new();
        reencode::RoundtripReencoder
            .parse_core_module(&mut module, Parser::new(0), wasm)
            .unwrap();
        module.finish()
    }

    /// The functions called in `wasm`'s code, in order.
    fn calls(wasm: &[u8]) -> Vec<u32> {
        let mut calls = Vec::new();
        for payload in Parser::new(0).parse_all(wasm).flatten() {
            if let Payload::CodeSectionEntry(body) = payload {
                for op in body.get_operators_reader().unwrap() {
                    match op.unwrap() {
                        Operator::Call { function_index } => calls.push(function_index),
                        Operator::MemoryAtomicWait32 { .. }
                        | Operator::MemoryAtomicWait64 { .. } => {
                            panic!("a wait is left")
                        }
                        _ => {}
                    }
                }
            }
        }
        calls
    }

    fn imports_of(wasm: &[u8]) -> Vec<(String, String)> {
        let module = wasmparser::Parser::new(0)
            .parse_all(wasm)
            .filter_map(Result::ok)
            .find_map(|p| match p {
                Payload::ImportSection(s) => Some(s),
                _ => None,
            });
        module
            .into_iter()
            .flat_map(|s| s.into_imports().flatten())
            .map(|i| (i.module.to_string(), i.name.to_string()))
            .collect()
    }

    #[test]
    fn waits_become_calls_and_indices_shift() {
        let wat = r#"(module
            (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
            (memory (export "mem") 1 1 shared)
            (func $helper (result i32) (i32.const 7))
            (func (export "wait") (result i32)
                (drop (call $helper))
                (memory.atomic.wait32 offset=8 (i32.const 0) (i32.const 0) (i64.const -1)))
            (func (export "wait64") (result i32)
                (memory.atomic.wait64 (i32.const 0) (i64.const 0) (i64.const 5)))
            (start $helper2)
            (func $helper2))"#;
        let wasm = wat::parse_str(wat).unwrap();
        let rewritten = rewrite(&wasm).unwrap().into_owned();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&rewritten)
            .unwrap();
        assert_eq!(
            imports_of(&rewritten),
            [
                ("custody".into(), "log".into()),
                (MODULE.into(), "wait32 8 mem".into()),
                (MODULE.into(), "wait64 0 mem".into()),
            ]
        );
        // $helper was 1: the two stubs come before it now.
        assert_eq!(calls(&rewritten), [3, 1, 2]);
        assert_eq!(
            WaitImport::parse("wait32 8 my mem"),
            Some(WaitImport {
                width: 32,
                offset: 8,
                memory: "my mem".into()
            })
        );
    }

    #[test]
    fn a_module_without_waits_is_untouched_and_one_without_imports_gets_them() {
        let plain = wat::parse_str("(module (func))").unwrap();
        assert!(matches!(rewrite(&plain).unwrap(), Cow::Borrowed(_)));
        let bare = wat::parse_str(
            r#"(module (memory (export "memory") 1 1 shared)
                (func (result i32) (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const 0))))"#,
        )
        .unwrap();
        let rewritten = rewrite(&bare).unwrap();
        assert_eq!(imports_of(&rewritten).len(), 1);
        assert_eq!(roundtrip(&plain), plain, "the encoder round-trips");
    }

    #[test]
    fn waits_that_cannot_be_bounded_are_named() {
        let hidden = wat::parse_str(
            "(module (memory 1 1 shared)
                (func (result i32) (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const 0))))",
        )
        .unwrap();
        assert!(rewrite(&hidden).unwrap_err().contains("no export name"));
    }
}
