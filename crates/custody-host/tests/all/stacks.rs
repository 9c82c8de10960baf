//! Errors and guest stacks name things: a trap's message is its cause on
//! one line (the stack goes to the diagnostic), and every frame of a guest
//! stack is named by the name section, else by its export, else
//! `<wasm function N>`; a short name is never "demangled" into a C++ type.

use std::sync::{Arc, Mutex};

use custody_handle::diagnostics::{self, Assistant};
use custody_host::{CallError, DomainConfig, LoadError, RootKind};
use custody_testkit::*;

/// No name section at all: `arm` and `crash` are known only by their
/// exports; the helper they call has no name either.
const UNNAMED: &str = r#"(module
  (import "custody" "timer_set" (func (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "tick")
  (func (export "tick") (param i32))
  (func (drop (call 0 (i32.const 5000) (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 12))))
  (func (export "arm") (call 2))
  (func unreachable)
  (func (export "crash") (call 4))
)"#;

/// The diagnostics fired while `f` runs, rendered.
fn fired(f: impl FnOnce()) -> Vec<String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    let subscription = diagnostics::subscribe(move |d| keep.lock().unwrap().push(d.render()));
    f();
    drop(subscription);
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

fn stripped(wat: &str) -> Vec<u8> {
    let wasm = wat::parse_str(wat).unwrap();
    // wat writes no name section for a module without `$` names.
    assert!(!wasm.windows(4).any(|w| w == b"name"), "no name section");
    wasm
}

#[test]
fn a_timer_armed_by_an_unnamed_export_is_named_by_the_export() {
    let _serial = serial();
    let host = host();
    let module = host.compile(&stripped(UNNAMED)).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("plugin", &module).unwrap();
    assert_eq!(call(&domain, "arm", &[]), 0);
    let roots = domain.roots();
    let timer = roots.iter().find(|r| r.kind == RootKind::Timer).unwrap();
    let site = timer.site.clone().unwrap_or_default();
    assert!(site.contains("arm"), "the site names the export: {site}");
    assert!(
        site.contains("<wasm function 2>"),
        "an unexported, unnamed helper keeps its index: {site}"
    );
    domain.force_unload().unwrap();
}

#[test]
fn a_trap_is_its_cause_on_one_line_and_its_stack_goes_to_the_diagnostic() {
    let _serial = serial();
    let host = host();
    let module = host.compile(&stripped(UNNAMED)).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("plugin", &module).unwrap();
    let mut error = None;
    let reports = fired(|| error = Some(domain.call("crash", &[]).unwrap_err()));
    let error = error.unwrap();
    let CallError::Trap { backtrace, .. } = &error else {
        panic!("{error}")
    };
    let line = error.to_string();
    assert!(line.starts_with("crash trapped: wasm trap: "), "{line}");
    assert!(
        !line.contains('\n') && !line.contains("backtrace"),
        "{line}"
    );
    assert!(backtrace.contains("crash"), "{backtrace}");
    let report = reports
        .iter()
        .find(|r| r.contains(Assistant::CallAborted.name()))
        .expect("callAborted fired");
    assert!(report.contains("crash"), "{report}");
}

#[test]
fn a_start_function_that_traps_fails_the_load_with_its_cause_and_reports_its_stack() {
    let _serial = serial();
    let host = host();
    let wat = r#"(module (func $a unreachable) (func $s (call $a)) (start $s))"#;
    let module = host.compile(wat.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let mut error = None;
    let reports = fired(|| error = Some(domain.load("boot", &module).unwrap_err()));
    let error = error.unwrap();
    assert!(matches!(error, LoadError::Instantiate { .. }), "{error}");
    let line = error.to_string();
    assert_eq!(
        line,
        "instantiating boot failed: wasm trap: wasm `unreachable` instruction executed"
    );
    let report = reports
        .iter()
        .find(|r| r.contains(Assistant::CallAborted.name()))
        .expect("callAborted fired for the start function");
    // `a` and `s` are names, not Itanium manglings of `signed char` and
    // `short`.
    assert!(
        report.contains("0: 0x") && report.contains(" - a\n"),
        "{report}"
    );
    assert!(report.contains(" - s"), "{report}");
    assert!(
        !report.contains("signed char") && !report.contains("short"),
        "{report}"
    );
}
