//! The catalogue is the one source of truth: `custody.h` and
//! docs/RELIABILITY.md must agree with it, function by function.

use super::*;

const HEADER: &str = include_str!("../../../../guest/include/custody.h");
const RELIABILITY: &str = include_str!("../../../../docs/RELIABILITY.md");

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
fn every_function_matches_its_header_declaration_and_no_other_is_declared() {
    crate::catalogue::assert_declared(FUNCTIONS, HEADER, "CUSTODY_IMPORT_", "custody_");
}

#[test]
fn the_documented_category_table_matches_the_functions() {
    crate::catalogue::assert_documented(FUNCTIONS, RELIABILITY);
}
