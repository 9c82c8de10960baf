//! The ledger `custody run` prints: every field of the library's `Ledger`
//! (text: one line; `--json`: every key, always), and it balances on every
//! way a run ends: `opened = closed_by_guest + closed_by_host +
//! released_at_recycle + released_at_unload`.

use crate::common::*;

use std::collections::BTreeMap;

/// Every field, in the order the text line gives them.
const FIELDS: [(&str, &str); 7] = [
    ("opened", "opened"),
    ("closed by the guest", "closed_by_guest"),
    ("closed by the host", "closed_by_host"),
    ("released at recycle", "released_at_recycle"),
    ("released at unload", "released_at_unload"),
    ("release failures", "release_failures"),
    ("recycles", "recycles"),
];

/// The ledger line of a text run, field by field (by its JSON key).
fn text_ledger(text: &str) -> BTreeMap<&'static str, u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ledger: "))
        .unwrap_or_else(|| panic!("no ledger line: {text}"));
    let parts: Vec<&str> = line.split(", ").collect();
    assert_eq!(
        parts.len(),
        FIELDS.len(),
        "every field, in one line: {line}"
    );
    FIELDS
        .iter()
        .zip(parts)
        .map(|((label, key), part)| {
            let (name, n) = part.rsplit_once(' ').unwrap();
            assert_eq!(name, *label, "{line}");
            (*key, n.parse().unwrap())
        })
        .collect()
}

/// The ledger of a `--json` run: every key present.
fn json_ledger(stdout: &[u8]) -> BTreeMap<&'static str, u64> {
    let object: serde_json::Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)));
    let ledger = object["ledger"].as_object().unwrap();
    assert_eq!(
        ledger.len(),
        FIELDS.len(),
        "every field, always: {ledger:?}"
    );
    FIELDS
        .iter()
        .map(|(_, key)| {
            let n = ledger[*key].as_u64();
            (*key, n.unwrap_or_else(|| panic!("{key}: {ledger:?}")))
        })
        .collect()
}

fn assert_balances(ledger: &BTreeMap<&'static str, u64>, what: &str) {
    assert_eq!(
        ledger["opened"],
        ledger["closed_by_guest"]
            + ledger["closed_by_host"]
            + ledger["released_at_recycle"]
            + ledger["released_at_unload"],
        "{what}: {ledger:?}"
    );
}

/// Runs `module` (a scratch WAT) with `args`, in text and in `--json`:
/// both end with `status`, print the same balanced ledger, and it is
/// returned. `text` is false for a WASI command, whose text output on
/// success is its own (no ledger line).
fn run(
    name: &str,
    wat: &str,
    args: &[&str],
    status: i32,
    text: bool,
) -> BTreeMap<&'static str, u64> {
    let module = scratch_module(name, wat);
    let mut argv = vec!["run", module.to_str().unwrap()];
    argv.extend(args);
    let json_output = custody(&[argv.as_slice(), &["--json"]].concat());
    assert_eq!(
        json_output.status.code(),
        Some(status),
        "{}",
        stderr(&json_output)
    );
    let ledger = json_ledger(&json_output.stdout);
    assert_balances(&ledger, name);
    if text {
        let output = custody(&argv);
        assert_eq!(output.status.code(), Some(status), "{}", stderr(&output));
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        assert_eq!(text_ledger(&shown), ledger, "text and json agree: {shown}");
    }
    ledger
}

const PIPE: &str = r#"(import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "critical_enter" (func $enter (result i32)))
  (memory (export "memory") 1)
  ;; two pipes; one end closed by the guest: three ends left open
  (func $pipes
    (drop (call $pipe (i32.const 0) (i32.const 4)))
    (drop (call $pipe (i32.const 8) (i32.const 12)))
    (drop (call $close (i32.load (i32.const 4)))))"#;

fn module(run: &str) -> String {
    format!("(module {PIPE}\n  (func (export \"run\") {run}))")
}

#[test]
fn the_text_ledger_is_one_line_of_every_field() {
    let output = custody(&["run", "examples/demo.wat", "--preopen", "examples/data"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains(
            "ledger: opened 3, closed by the guest 2, closed by the host 0, released at recycle 0, \
             released at unload 1, release failures 0, recycles 0\n"
        ),
        "{stdout}"
    );
    assert_balances(&text_ledger(&stdout), "the demo");
}

#[test]
fn a_run_that_returns_with_handles_left_balances() {
    let ledger = run("left.wat", &module("(call $pipes)"), &[], 0, true);
    assert_eq!(
        (
            ledger["opened"],
            ledger["closed_by_guest"],
            ledger["released_at_unload"]
        ),
        (4, 1, 3)
    );
}

#[test]
fn a_trap_balances() {
    let ledger = run(
        "trap.wat",
        &module("(call $pipes) unreachable"),
        &[],
        3,
        true,
    );
    assert_eq!((ledger["opened"], ledger["released_at_unload"]), (4, 3));
}

#[test]
fn a_call_stopped_at_its_deadline_balances() {
    let spin = module("(call $pipes) (loop $l (br $l))");
    let ledger = run("deadline.wat", &spin, &["--deadline", "100ms"], 3, true);
    assert_eq!((ledger["opened"], ledger["released_at_unload"]), (4, 3));
}

#[test]
fn an_escalation_to_a_recycle_balances() {
    // A trap inside a critical region recycles the domain (the default
    // ladder): its handles are released then, not at the unload.
    let inside = module("(drop (call $enter)) (call $pipes) unreachable");
    let ledger = run("recycle.wat", &inside, &[], 3, true);
    assert_eq!(
        (
            ledger["opened"],
            ledger["released_at_recycle"],
            ledger["recycles"]
        ),
        (4, 3, 1)
    );
    // A region left open (orphaned) recycles too.
    let orphan = module("(drop (call $enter)) (call $pipes)");
    let ledger = run("orphan.wat", &orphan, &[], 3, true);
    assert_eq!((ledger["released_at_recycle"], ledger["recycles"]), (3, 1));
}

#[test]
fn a_wasi_command_that_exits_balances() {
    let command = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  {PIPE}
  (func (export "_start") (call $pipes) (call $proc_exit (i32.const 7))))"#
    );
    let ledger = run("exits.wat", &command, &[], 7, false);
    assert_eq!(
        (
            ledger["opened"],
            ledger["closed_by_guest"],
            ledger["released_at_unload"]
        ),
        (4, 1, 3)
    );
}
