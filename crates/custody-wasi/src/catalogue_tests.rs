//! The WASI catalogue: the whole of `wasi_snapshot_preview1`, and
//! docs/RELIABILITY.md agrees with it.

use crate::*;

const RELIABILITY: &str = include_str!("../../../docs/RELIABILITY.md");

#[test]
fn every_function_of_the_module_is_declared_once() {
    // The 45 of the original witx, and `sock_accept`, added to it since.
    assert_eq!(FUNCTIONS.len(), 46);
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FUNCTIONS.len(), "a name declared twice");
    for f in FUNCTIONS {
        assert_eq!(f.module, MODULE);
        let expected: &[AbiType] = if f.name == "proc_exit" {
            &[]
        } else {
            &[AbiType::I32]
        };
        assert_eq!(f.results, expected, "{}", f.name);
    }
    let params = |name| {
        function(name)
            .unwrap()
            .params
            .iter()
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
    };
    use AbiType::{I32, I64};
    assert_eq!(
        params("path_open"),
        [I32, I32, I32, I32, I32, I64, I64, I32, I32]
    );
    assert_eq!(params("fd_seek"), [I32, I64, I32, I32]);
    assert_eq!(params("clock_time_get"), [I32, I64, I32]);
    assert_eq!(
        function("proc_exit").unwrap().categories,
        [Category::SelfAffectingProcessMgmt]
    );
    assert_eq!(
        function("sched_yield").unwrap().categories,
        [Category::SelfAffectingThreading]
    );
}

#[test]
fn the_documented_category_table_matches_the_functions() {
    custody_host::extension::assert_documented(FUNCTIONS, RELIABILITY);
}
