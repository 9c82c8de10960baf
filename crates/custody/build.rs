//! Tells the tests which external tools they have:
//!
//! - `tests/wasi_testsuite.rs`, the official WASI preview 1 test suite:
//!   the tarball's path comes from `CUSTODY_WASI_TESTSUITE` (the suite is
//!   kept out of the repository); without it, `cfg(no_wasi_testsuite)`.
//! - `tests/all/dashboard.rs`, the dashboard in headless Chromium:
//!   Debian's `chromium` (or the browser `CHROMIUM` names), found on
//!   `PATH` and passed on as `CUSTODY_CHROMIUM`; without it,
//!   `cfg(no_chromium)`.
//!
//! A cfg marks its test `#[ignore]` with the reason, so `cargo test`
//! lists it as ignored, never as passed; with `CUSTODY_REQUIRE_GUESTS=1`
//! (CI) no cfg is set and the test runs and fails, saying what is missing.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_wasi_testsuite)");
    println!("cargo::rustc-check-cfg=cfg(no_chromium)");
    println!("cargo::rerun-if-env-changed=CUSTODY_WASI_TESTSUITE");
    println!("cargo::rerun-if-env-changed=CUSTODY_REQUIRE_GUESTS");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    let required = std::env::var("CUSTODY_REQUIRE_GUESTS").is_ok_and(|v| !v.is_empty() && v != "0");
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

/// Without the browser, look again when a directory on `PATH` changes
/// (installing it adds a file there), so its test runs once it is there.
fn watch_path() {
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.is_absolute() && Path::new(&dir).is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
}
