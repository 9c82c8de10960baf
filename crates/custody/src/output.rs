//! What `custody run` prints once the domain is unloaded: the result or
//! the exit status, the ledger and (with `--json`) the diagnostics and the
//! captured stdio.

use std::io::Write as _;

use custody_handle::diagnostics::{Collector, Diagnostic};
use custody_host::{AbiError, Ledger, Val};
use serde::Serialize;

use crate::outcome::{Called, Failure};

/// The most diagnostics `--json` output keeps (the most recent).
pub(crate) const MAX_DIAGNOSTICS: usize = 1000;

/// How a run ended, and what it leaves to print.
pub(crate) struct Report {
    pub(crate) outcome: Result<Called, Failure>,
    pub(crate) ledger: Ledger,
    /// Whether a module imports the custody ABI: its error codes are then
    /// shown by name.
    pub(crate) codes: bool,
    /// Whether the guest ran as a WASI command: its stdout is its own.
    pub(crate) command: bool,
    /// The guest's stdout and stderr, with `--capture`.
    pub(crate) captured: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Serialize)]
struct JsonOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr: Option<String>,
    /// Every field of the library's ledger, always.
    ledger: Ledger,
    diagnostics: Vec<Diagnostic>,
    /// Diagnostics past the first `MAX_DIAGNOSTICS` kept, not shown.
    #[serde(skip_serializing_if = "is_zero")]
    diagnostics_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn json_value(value: &Val) -> serde_json::Value {
    match value {
        Val::I32(v) => (*v).into(),
        Val::I64(v) => (*v).into(),
        Val::F32(bits) => f64::from(f32::from_bits(*bits)).into(),
        Val::F64(bits) => f64::from_bits(*bits).into(),
        Val::V128(v) => format!("{:#034x}", v.as_u128()).into(),
        // A reference is shown by its type, never by what it points at: a
        // host address is nobody's business outside the process.
        Val::FuncRef(r) => reference("funcref", r.is_some()),
        Val::ExternRef(r) => reference("externref", r.is_some()),
        Val::AnyRef(r) => reference("anyref", r.is_some()),
        Val::ExnRef(r) => reference("exnref", r.is_some()),
        Val::ContRef(r) => reference("contref", r.is_some()),
    }
}

/// A reference result: its type's name, or `null`.
fn reference(kind: &str, non_null: bool) -> serde_json::Value {
    if non_null {
        kind.into()
    } else {
        serde_json::Value::Null
    }
}

/// A result as text. From a guest of the custody ABI, a negative `i32`
/// that is one of its error codes is shown with its name: `-8 (E_DENIED)`.
fn shown(value: &Val, codes: bool) -> String {
    match value {
        Val::I32(n) if codes => match AbiError::from_code(*n) {
            Some(error) => error.to_string(),
            None => n.to_string(),
        },
        other => match json_value(other) {
            serde_json::Value::String(text) => text,
            value => value.to_string(),
        },
    }
}

/// The ledger on one line, every field: what was opened, then where each
/// handle went (closed by the guest or the host, released by a recycle or
/// the unload), which sums to it, then the failed releases and recycles.
fn ledger_line(ledger: &Ledger) -> String {
    let Ledger {
        opened,
        closed_by_guest,
        closed_by_host,
        released_at_recycle,
        released_at_unload,
        release_failures,
        recycles,
    } = *ledger;
    format!(
        "ledger: opened {opened}, closed by the guest {closed_by_guest}, closed by the host \
         {closed_by_host}, released at recycle {released_at_recycle}, released at unload \
         {released_at_unload}, release failures {release_failures}, recycles {recycles}\n"
    )
}

/// For a command that ended well: one line on stderr if it left handles
/// open or a release failed, else nothing (its output is its own).
fn command_note(ledger: &Ledger) -> Option<String> {
    let mut parts = Vec::new();
    if ledger.released_at_unload > 0 {
        parts.push(format!(
            "the program left {} handle(s) open; released at unload",
            ledger.released_at_unload
        ));
    }
    if ledger.release_failures > 0 {
        parts.push(format!("{} release(s) failed", ledger.release_failures));
    }
    (!parts.is_empty()).then(|| format!("custody: {}\n", parts.join("; ")))
}

fn json(report: &Report, collector: &Collector) -> String {
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let output = JsonOutput {
        result: match &report.outcome {
            Ok(Called::Results(results)) => Some(results.iter().map(json_value).collect()),
            _ => None,
        },
        exit_code: match &report.outcome {
            Ok(Called::Exited(code)) => Some(*code),
            _ => None,
        },
        error: (report.outcome.as_ref().err()).map(|f| f.message.replace('\n', " ")),
        stdout: report.captured.as_ref().map(|(out, _)| lossy(out)),
        stderr: report.captured.as_ref().map(|(_, err)| lossy(err)),
        ledger: report.ledger,
        diagnostics: collector.take(),
        diagnostics_dropped: collector.dropped(),
    };
    serde_json::to_string(&output).expect("serializable") + "\n"
}

/// Prints the outcome: with `--json`, one object on stdout; for a command,
/// only what went wrong, on stderr; otherwise the result (or the exit
/// status) and the ledger on stdout. The error itself is printed by `main`,
/// as the last line on stderr. A closed stdout (a reader that went away:
/// `EPIPE`, since Rust ignores SIGPIPE) ends the output quietly instead of
/// panicking as `println!` would.
pub(crate) fn print(report: &Report, json_form: bool, collector: &Collector) {
    let (text, to_stderr) = if json_form {
        (json(report, collector), false)
    } else if report.command {
        match &report.outcome {
            Ok(_) => (command_note(&report.ledger).unwrap_or_default(), true),
            // The contract of every failure: the ledger is still shown.
            Err(_) => (ledger_line(&report.ledger), true),
        }
    } else {
        let ledger = ledger_line(&report.ledger);
        let text = match &report.outcome {
            Ok(Called::Results(results)) => {
                let shown: Vec<String> = results.iter().map(|v| shown(v, report.codes)).collect();
                let shown = if shown.is_empty() {
                    "(none)".to_string()
                } else {
                    shown.join(" ")
                };
                format!("result: {shown}\n{ledger}")
            }
            Ok(Called::Exited(code)) => format!("exit status: {code}\n{ledger}"),
            Err(_) => ledger,
        };
        (text, false)
    };
    if text.is_empty() {
        return;
    }
    let written = if to_stderr {
        let mut stderr = std::io::stderr().lock();
        stderr
            .write_all(text.as_bytes())
            .and_then(|()| stderr.flush())
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
    };
    drop(written);
}
