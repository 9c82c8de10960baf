//! What a user types or a guest returns never panics the CLI nor prints a
//! host address: durations up to the largest `--deadline` clap accepts
//! saturate, and reference results print by their type.

use crate::common::*;

const SEVEN: &str = r#"(module (func (export "run") (result i32) i32.const 7))"#;

#[test]
fn a_deadline_far_past_what_the_clock_holds_is_no_deadline() {
    let module = scratch_module("seven.wat", SEVEN);
    for flag in ["--deadline", "--unload-timeout"] {
        let output = custody(&[
            "run",
            module.to_str().unwrap(),
            "--invoke",
            "run",
            flag,
            "10000000000000000000s",
        ]);
        assert_eq!(output.status.code(), Some(0), "{flag}: {}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("result: 7"), "{flag}: {stdout}");
    }
}

#[test]
fn a_duration_out_of_range_is_a_usage_error() {
    let module = scratch_module("seven.wat", SEVEN);
    for value in ["1e300s", "-1s", "0", "soon"] {
        let output = custody(&["run", module.to_str().unwrap(), "--deadline", value]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{value}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}

/// (`externref` needs wasmtime's GC, which custody does not build: such a
/// module is refused at load.)
#[test]
fn references_print_by_type_never_by_address() {
    let module = scratch_module(
        "refs.wat",
        r#"(module
             (func $f)
             (elem declare func $f)
             (func (export "func") (result funcref) ref.func $f)
             (func (export "null") (result funcref) ref.null func))"#,
    );
    for (export, text, json) in [("func", "funcref", "\"funcref\""), ("null", "null", "null")] {
        let output = custody(&["run", module.to_str().unwrap(), "--invoke", export]);
        assert!(output.status.success(), "{}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&format!("result: {text}\n")), "{stdout}");
        assert!(
            !stdout.contains("0x") && !stdout.contains("StoreId"),
            "{stdout}"
        );
        let output = custody(&[
            "run",
            module.to_str().unwrap(),
            "--invoke",
            export,
            "--json",
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(value["result"][0].to_string(), json, "{stdout}");
    }
}
