//! Tells the CLI's tests which external programs they have.
//!
//! - `tests/wasi_testsuite.rs` needs the official WASI preview 1 test
//!   suite: the tarball's path comes from `CUSTODY_WASI_TESTSUITE`.
//!   Without it the test is compiled with `cfg(no_wasi_testsuite)`; with
//!   `CUSTODY_REQUIRE_GUESTS=1` (CI) the cfg is not set and the test runs
//!   and fails, saying the variable is missing.
//! - `tests/all/dashboard.rs`, the dashboard in headless Chromium:
//!   Debian's `chromium` (or the browser `CHROMIUM` names), found on
//!   `PATH` and passed on as `CUSTODY_CHROMIUM`; without it,
//!   `cfg(no_chromium)`, unless `CUSTODY_REQUIRE_GUESTS=1` (CI): then the
//!   test runs and fails, saying what is missing.
//! - `tests/all/replicas.rs` needs HAProxy and wrk (Debian's `haproxy` and
//!   `wrk`) on `PATH`. Without them it is compiled with
//!   `cfg(no_replica_tools)`; with `CUSTODY_REQUIRE_TOOLS=1` (CI) the build
//!   fails instead, naming the missing program.
//! - `tests/chaos` needs `wrk` (the Debian package) on `PATH`: without it,
//!   `cfg(no_wrk)` ignores the chaos run with the reason, unless
//!   `CUSTODY_REQUIRE_GUESTS=1` (then it runs and fails).
//!
//! Each cfg marks its tests `#[ignore]` with the reason, so `cargo test`
//! lists them as ignored, never as passed.

use std::path::{Path, PathBuf};

/// The programs the replicas test runs.
const REPLICA_TOOLS: [&str; 2] = ["haproxy", "wrk"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_wasi_testsuite)");
    println!("cargo::rustc-check-cfg=cfg(no_chromium)");
    println!("cargo::rustc-check-cfg=cfg(no_replica_tools)");
    println!("cargo::rustc-check-cfg=cfg(no_wrk)");
    println!("cargo::rerun-if-env-changed=CUSTODY_WASI_TESTSUITE");
    println!("cargo::rerun-if-env-changed=CUSTODY_REQUIRE_GUESTS");
    println!("cargo::rerun-if-env-changed=CUSTODY_REQUIRE_TOOLS");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    // Whether the programs are found depends on it, either way.
    println!("cargo::rerun-if-env-changed=PATH");
    let required = asked("CUSTODY_REQUIRE_GUESTS");
    let given = std::env::var_os("CUSTODY_WASI_TESTSUITE").is_some_and(|v| !v.is_empty());
    if !given && !required {
        println!("cargo::rustc-cfg=no_wasi_testsuite");
    }

    match chromium() {
        Some(path) => println!("cargo::rustc-env=CUSTODY_CHROMIUM={}", path.display()),
        None => {
            watch_path();
            if !required {
                println!("cargo::rustc-cfg=no_chromium");
            }
        }
    }

    if !on_path("wrk") && !required {
        println!("cargo::rustc-cfg=no_wrk");
        watch_path();
    }

    let missing: Vec<&str> = (REPLICA_TOOLS.into_iter())
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        let why = format!(
            "{} not on PATH (Debian's packages: apt-get install haproxy wrk)",
            missing.join(" and ")
        );
        if asked("CUSTODY_REQUIRE_TOOLS") {
            eprintln!("error: CUSTODY_REQUIRE_TOOLS is set, but {why}");
            std::process::exit(1);
        }
        println!("cargo::warning=the replicas test is ignored: {why}");
        println!("cargo::rustc-cfg=no_replica_tools");
        watch_path();
    }
}

/// Whether `var` is set and not `0`.
fn asked(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The browser: `CHROMIUM` if set, else `chromium` on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// Whether an executable file `name` is in a directory of `PATH`.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Without a program, look again when a directory on `PATH` changes
/// (installing a package adds files there), so its test runs once it is
/// there.
fn watch_path() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.is_absolute() && Path::new(&dir).is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
}
