//! What the CLI tests share: running the built `custody` and reading its
//! output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn custody(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes `text` to a file `name` in a directory of its own: modules of
/// this binary run at once and some pick the same names.
pub fn scratch_module(name: &str, text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir()
        .join(format!("custody-cli-{}", std::process::id()))
        .join(N.fetch_add(1, Ordering::Relaxed).to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The error: one line, the last on stderr (guest log lines and diagnostic
/// reports such as `callAborted` may precede it).
pub fn error_line(output: &Output) -> String {
    let text = stderr(output);
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with("custody: "), "{text}");
    last.to_string()
}

/// Asserts that the run failed with exit `status` and that its error line
/// says `needle`.
pub fn assert_fails_with(output: &Output, status: i32, needle: &str) {
    assert_eq!(output.status.code(), Some(status), "{}", stderr(output));
    assert!(error_line(output).contains(needle), "{}", stderr(output));
}
