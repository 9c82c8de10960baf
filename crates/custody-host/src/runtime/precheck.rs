//! The structural check of a module's bytes before compiling them
//! ([`CompileLimits`]): one pass of wasmparser's reader, no validation (the
//! compiler validates), stopping at the first limit passed.

use wasmparser::{Operator, Parser, Payload};

use crate::config::CompileLimits;

/// `Err` names the first limit `wasm` (a binary module) passes. Bytes that
/// do not parse are left to the compiler, which says why.
pub(crate) fn check(wasm: &[u8], limits: &CompileLimits) -> Result<(), String> {
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
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return Ok(()) };
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
    Ok(())
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
        assert_eq!(check(&nested(1000), &limits), Ok(()));
        let error = check(&nested(5000), &limits).unwrap_err();
        assert!(
            error.contains("blocks nested in one function: 1025"),
            "{error}"
        );
        let few = CompileLimits {
            functions: 1,
            ..limits
        };
        let two = wat::parse_str("(module (func) (func))").unwrap();
        assert!(check(&two, &few).unwrap_err().starts_with("functions: 2"));
        let garbage = b"\0asm\x01\0\0\0\xff\xff";
        assert_eq!(check(garbage, &limits), Ok(()), "left to the compiler");
    }
}
