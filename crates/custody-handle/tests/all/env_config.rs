//! `CUSTODY_DIAGNOSTICS`, `CUSTODY_DIAGNOSTICS_FORMAT`,
//! `CUSTODY_DIAGNOSTICS_RATE` and `CUSTODY_TRACE_HANDLES`, end to end: this binary runs itself as a child
//! with the variables set (they are read once per process) and reads what the
//! child printed on stderr.

use std::process::Command;

use custody_handle::SafeHandle;
use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use custody_handle::testing::{Counted, serial};

/// The child: one failed release (and one clean handle dropped, for
/// `handleFinalized`).
#[test]
#[ignore = "run by the tests below as a child process"]
fn child() {
    let _serial = serial();
    let handle = SafeHandle::new(Counted::new().failing().with_raw(0xBEEF));
    let _ = handle.acquire().map(drop);
    let _ = handle.dispose();
}

/// The flooding child: 10 `callAborted` in a row, then a flush.
#[test]
#[ignore = "run by the tests below as a child process"]
fn flood_child() {
    let _serial = serial();
    for i in 0..10 {
        diagnostics::fire(Assistant::CallAborted, || {
            Diagnostic::new(Assistant::CallAborted, format!("flood {i}"))
        });
    }
    diagnostics::flush_suppressed();
}

fn run_child(vars: &[(&str, &str)]) -> String {
    run("child", vars)
}

fn run(child: &str, vars: &[(&str, &str)]) -> String {
    // The child is a test of this module: its name is the module path
    // without the crate's (`all::env_config::child` is listed as
    // `env_config::child`).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        &format!("{module}::{child}"),
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for var in [
        "CUSTODY_DIAGNOSTICS",
        "CUSTODY_DIAGNOSTICS_FORMAT",
        "CUSTODY_DIAGNOSTICS_RATE",
        "CUSTODY_TRACE_HANDLES",
    ] {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
    let output = command.output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_default_is_a_human_report_on_stderr() {
    let _serial = serial();
    let stderr = run_child(&[]);
    assert!(stderr.contains("custody: releaseHandleFailed:"), "{stderr}");
    assert!(stderr.contains("0x0000BEEF"), "{stderr}");
    assert!(
        stderr.contains("Run with CUSTODY_TRACE_HANDLES=1"),
        "{stderr}"
    );
}

#[test]
fn json_format_prints_one_object_per_line_with_the_history() {
    let _serial = serial();
    let stderr = run_child(&[
        ("CUSTODY_DIAGNOSTICS_FORMAT", "json"),
        ("CUSTODY_TRACE_HANDLES", "1"),
    ]);
    let objects: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 1, "{stderr}");
    let d = &objects[0];
    assert_eq!(d["assistant"], "releaseHandleFailed");
    assert_eq!(d["raw_hex"], "0x0000BEEF");
    assert_eq!(d["errno"], 9);
    let kinds: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["created", "add_ref", "release", "dispose", "release_failed"]
    );
}

#[test]
fn the_list_enables_and_disables_assistants() {
    let _serial = serial();
    let none = run_child(&[("CUSTODY_DIAGNOSTICS", "none")]);
    assert!(!none.contains("custody: releaseHandleFailed"), "{none}");
    let minus = run_child(&[("CUSTODY_DIAGNOSTICS", "all,-releaseHandleFailed")]);
    assert!(!minus.contains("releaseHandleFailed"), "{minus}");
    let bad = run_child(&[("CUSTODY_DIAGNOSTICS", "bogus")]);
    assert!(bad.contains("unknown diagnostic \"bogus\""), "{bad}");
    assert!(
        bad.contains("custody: releaseHandleFailed"),
        "the defaults stay: {bad}"
    );
}

/// What a flooding child printed: `(reports, suppressed per its summaries)`.
fn flood(vars: &[(&str, &str)]) -> (usize, u64, String) {
    let stderr = run("flood_child", vars);
    let reports = stderr
        .lines()
        .filter(|l| l.starts_with("custody: callAborted: flood "))
        .count();
    let summarized = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("custody: callAborted: "))
        .filter_map(|l| {
            l.strip_suffix(" more callAborted diagnostics suppressed (rate limit: 2 per second)")
        })
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    (reports, summarized, stderr)
}

#[test]
fn the_rate_is_a_number_per_second_or_off() {
    let _serial = serial();
    let (reports, summarized, stderr) = flood(&[("CUSTODY_DIAGNOSTICS_RATE", "2")]);
    // 2 and a summary of 8, unless the child stalled for a second mid-flood.
    assert!(reports < 10, "{stderr}");
    assert_eq!(reports as u64 + summarized, 10, "{stderr}");
    assert!(stderr.contains("  detail: {\"suppressed\":"), "{stderr}");

    let (reports, _, off) = flood(&[("CUSTODY_DIAGNOSTICS_RATE", "off")]);
    assert_eq!(reports, 10, "{off}");
    assert!(!off.contains("suppressed"), "{off}");

    let (reports, _, bad) = flood(&[("CUSTODY_DIAGNOSTICS_RATE", "lots")]);
    assert!(
        bad.contains("CUSTODY_DIAGNOSTICS_RATE: \"lots\" is not off or a number"),
        "{bad}"
    );
    assert!(bad.contains("using 100 per second"), "{bad}");
    assert_eq!(reports, 10, "the default, 100 per second: {bad}");
}
