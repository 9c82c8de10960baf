//! The structural check of a module's bytes before compiling them
//! ([`CompileLimits`], the compile memory estimate, shared memories): one
//! pass of wasmparser's reader, no validation (the compiler validates),
//! stopping at the first limit passed.

use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};

use crate::config::{CompileLimits, Policy};

/// Peak compiler memory per byte of one function body, measured: one flat
/// 3 MB body took cranelift to 661 MB (about 220 bytes a byte).
const COMPILE_BYTES_PER_BODY_BYTE: u64 = 256;
/// Memory kept per byte of code (the compiled module, its metadata):
/// 2,000 bodies of 1.5 KB peaked at 251 MB.
const COMPILE_BYTES_PER_CODE_BYTE: u64 = 64;

/// `Err` names the first limit `wasm` (a binary module) passes: the
/// structural limits, the policy's `compile_memory_limit` (estimated) and
/// its `threads` (shared memories). Bytes that do not parse are left to the
/// compiler, which says why.
pub(crate) fn check(wasm: &[u8], policy: &Policy) -> Result<(), String> {
    let shape = check_shape(wasm, &policy.compile_limits)?;
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let estimate = shape.compile_memory(parallel);
    if estimate > policy.compile_memory_limit as u64 {
        return Err(format!(
            "compiling it would take an estimated {estimate} bytes, above the policy's compile_memory_limit of {} bytes",
            policy.compile_memory_limit
        ));
    }
    if let Some(index) = shape.shared_memories.first() {
        if !policy.threads {
            return Err(format!(
                "memory {index} is shared, and the policy refuses shared memories (and their atomic waits) unless threads = true"
            ));
        }
        // An imported one was counted by the module that defines it.
        if let Some(index) = shape
            .shared_memories
            .iter()
            .find(|&&i| i >= shape.imported_memories && !shape.exported_memories.contains(&i))
        {
            return Err(format!(
                "shared memory {index} is not exported: custody counts a shared memory at its maximum through its export"
            ));
        }
    }
    Ok(())
}

/// What the compile memory estimate and the shared-memory rules need.
#[derive(Debug, Default)]
struct Shape {
    /// Every function body's size in bytes.
    bodies: Vec<u64>,
    /// Indices of shared memories (imported and defined).
    shared_memories: Vec<u32>,
    /// Indices of exported memories.
    exported_memories: Vec<u32>,
    /// How many memories are imported (they come first in the index space).
    imported_memories: u32,
    /// How many memories were seen so far (imported and defined).
    memories: u32,
}

impl Shape {
    /// One more memory in the index space, shared or not.
    fn note_memory(&mut self, shared: bool) {
        if shared {
            self.shared_memories.push(self.memories);
        }
        self.memories += 1;
    }

    /// Notes what `payload` tells of the module's memories and code.
    fn record(&mut self, payload: &Payload<'_>) {
        match payload {
            Payload::ImportSection(s) => {
                for import in s.clone().into_imports().flatten() {
                    if let TypeRef::Memory(ty) = import.ty {
                        self.note_memory(ty.shared);
                        self.imported_memories += 1;
                    }
                }
            }
            Payload::MemorySection(s) => {
                for ty in s.clone().into_iter().flatten() {
                    self.note_memory(ty.shared);
                }
            }
            Payload::ExportSection(s) => {
                for export in s.clone().into_iter().flatten() {
                    if export.kind == ExternalKind::Memory {
                        self.exported_memories.push(export.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => self.bodies.push(body.range().len() as u64),
            _ => {}
        }
    }

    /// The estimated peak memory of compiling the module with `parallel`
    /// threads: the largest bodies at once, plus what the code keeps.
    fn compile_memory(&self, parallel: usize) -> u64 {
        let mut largest = self.bodies.clone();
        largest.sort_unstable_by(|a, b| b.cmp(a));
        let at_once: u64 = largest.iter().take(parallel).sum();
        let total: u64 = self.bodies.iter().sum();
        at_once * COMPILE_BYTES_PER_BODY_BYTE + total * COMPILE_BYTES_PER_CODE_BYTE
    }
}

/// Checks the structural limits in one pass over `wasm`, and returns what
/// the pass saw of its shape.
fn check_shape(wasm: &[u8], limits: &CompileLimits) -> Result<Shape, String> {
    let over = |what: &str, count: u64, limit: u64| {
        if count > limit {
            Err(format!("{what}: {count}, above the limit of {limit}"))
        } else {
            Ok(())
        }
    };
    over(
        "module size in bytes",
        wasm.len() as u64,
        limits.module_bytes as u64,
    )?;
    let mut imports_and_exports = 0u64;
    let mut shape = Shape::default();
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(shape);
        };
        shape.record(&payload);
        match payload {
            Payload::ImportSection(s) => imports_and_exports += u64::from(s.count()),
            Payload::ExportSection(s) => imports_and_exports += u64::from(s.count()),
            Payload::TableSection(s) => over("tables", s.count().into(), limits.tables.into())?,
            Payload::DataSection(s) => over(
                "data segments",
                s.count().into(),
                limits.data_segments.into(),
            )?,
            Payload::ElementSection(s) => over(
                "element segments",
                s.count().into(),
                limits.element_segments.into(),
            )?,
            Payload::FunctionSection(s) => {
                over("functions", s.count().into(), limits.functions.into())?
            }
            Payload::CodeSectionEntry(body) => check_body(&body, limits, &over)?,
            _ => {}
        }
        over(
            "imports and exports",
            imports_and_exports,
            limits.imports_and_exports.into(),
        )?;
    }
    Ok(shape)
}

fn check_body(
    body: &wasmparser::FunctionBody<'_>,
    limits: &CompileLimits,
    over: &dyn Fn(&str, u64, u64) -> Result<(), String>,
) -> Result<(), String> {
    over(
        "bytes of one function body",
        body.range().len() as u64,
        limits.function_body_bytes as u64,
    )?;
    let mut locals = 0u64;
    if let Ok(reader) = body.get_locals_reader() {
        for group in reader.into_iter().flatten() {
            locals += u64::from(group.0);
        }
    }
    over("locals of one function", locals, limits.locals.into())?;
    let Ok(mut operators) = body.get_operators_reader() else {
        return Ok(());
    };
    let mut depth = 0u64;
    while !operators.eof() {
        let Ok(operator) = operators.read() else {
            return Ok(());
        };
        match operator {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                over(
                    "blocks nested in one function",
                    depth,
                    limits.nesting_depth.into(),
                )?;
            }
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Vec<u8> {
        let wat = format!(
            "(module (func {} {}))",
            "(block ".repeat(depth),
            ")".repeat(depth)
        );
        wat::parse_str(wat).unwrap()
    }

    #[test]
    fn names_the_first_limit_passed() {
        let limits = CompileLimits::default();
        assert!(check_shape(&nested(1000), &limits).is_ok());
        let error = check_shape(&nested(5000), &limits).unwrap_err();
        assert!(
            error.contains("blocks nested in one function: 1025"),
            "{error}"
        );
        let few = CompileLimits {
            functions: 1,
            ..limits
        };
        let two = wat::parse_str("(module (func) (func))").unwrap();
        assert!(
            check_shape(&two, &few)
                .unwrap_err()
                .starts_with("functions: 2")
        );
        let garbage = b"\0asm\x01\0\0\0\xff\xff";
        assert_eq!(
            check(garbage, &Policy::default()),
            Ok(()),
            "left to the compiler"
        );
    }

    #[test]
    fn compile_memory_is_estimated_from_the_largest_bodies() {
        let flat = |n: usize| {
            let body = "(local.get 0) (i32.add)".repeat(n);
            wat::parse_str(format!(
                "(module (func (param i32) (result i32) (local.get 0) {body}))"
            ))
            .unwrap()
        };
        let policy = Policy {
            compile_memory_limit: 10 << 20,
            ..Policy::default()
        };
        assert_eq!(check(&flat(1000), &policy), Ok(()));
        let error = check(&flat(100_000), &policy).unwrap_err();
        assert!(
            error.contains("compile_memory_limit of 10485760"),
            "{error}"
        );
        let shape = Shape {
            bodies: vec![10, 1000, 100],
            ..Shape::default()
        };
        assert_eq!(
            shape.compile_memory(2),
            1100 * COMPILE_BYTES_PER_BODY_BYTE + 1110 * COMPILE_BYTES_PER_CODE_BYTE
        );
    }

    #[test]
    fn shared_memories_need_threads_and_an_export() {
        let shared = wat::parse_str(r#"(module (memory (export "memory") 1 2 shared))"#).unwrap();
        let error = check(&shared, &Policy::default()).unwrap_err();
        assert!(error.contains("unless threads = true"), "{error}");
        let threads = Policy {
            threads: true,
            ..Policy::default()
        };
        assert_eq!(check(&shared, &threads), Ok(()));
        let hidden = wat::parse_str("(module (memory 1 2 shared))").unwrap();
        let error = check(&hidden, &threads).unwrap_err();
        assert!(error.contains("shared memory 0 is not exported"), "{error}");
        let imported =
            wat::parse_str(r#"(module (import "m" "mem" (memory 1 2 shared)))"#).unwrap();
        assert!(check(&imported, &Policy::default()).is_err());
        assert_eq!(check(&imported, &threads), Ok(()), "counted where defined");
    }
}
