//! The catalogue is the one source of truth: `custody.h` and
//! docs/RELIABILITY.md must agree with it, function by function.

use super::*;

const HEADER: &str = include_str!("../../../../guest/include/custody.h");
const RELIABILITY: &str = include_str!("../../../../docs/RELIABILITY.md");

/// The comment block and prototype the header gives `name`.
fn declaration(name: &str) -> (&'static str, &'static str) {
    let marker = format!("CUSTODY_IMPORT_({name})");
    let at = HEADER
        .find(&format!("\n{marker}"))
        .unwrap_or_else(|| panic!("{name} is missing from custody.h"));
    let comment_start = HEADER[..at]
        .rfind("/*")
        .expect("a comment before each import");
    let comment = &HEADER[comment_start..at];
    let after = &HEADER[at + 1 + marker.len()..];
    let prototype = &after[..after.find(';').expect("a prototype after each import")];
    (comment, prototype.trim())
}

/// The parameter names of a C prototype (`void` is none).
fn parameters(prototype: &str) -> Vec<String> {
    let open = prototype.find('(').unwrap();
    let inside = &prototype[open + 1..prototype.rfind(')').unwrap()];
    if inside.trim() == "void" {
        return Vec::new();
    }
    inside
        .split(',')
        .map(|p| p.split_whitespace().last().unwrap().to_string())
        .collect()
}

#[test]
fn error_codes_match_the_header() {
    for e in AbiError::ALL {
        let line = format!("#define CUSTODY_{}", e.name());
        let defined = HEADER
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("{} missing from custody.h", e.name()));
        assert!(defined.contains(&format!("({})", e.code())), "{defined}");
    }
}

#[test]
fn every_function_matches_its_header_declaration() {
    for f in FUNCTIONS {
        let (comment, prototype) = declaration(f.name);
        assert!(
            prototype.starts_with(&format!("int32_t custody_{}(", f.name)),
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
}

#[test]
fn the_header_declares_nothing_the_catalogue_lacks() {
    for line in HEADER.lines() {
        if let Some(rest) = line.strip_prefix("CUSTODY_IMPORT_(") {
            let name = rest.trim_end_matches(')');
            assert!(
                function(name).is_some(),
                "custody.h declares {name}, the catalogue does not"
            );
        }
    }
}

#[test]
fn the_documented_category_table_matches_the_functions() {
    crate::catalogue::assert_documented(FUNCTIONS, RELIABILITY);
}
