//! Tells `tests/wasi_testsuite.rs` whether it has the official WASI
//! preview 1 test suite to run: the tarball's path comes from
//! `CUSTODY_WASI_TESTSUITE` (the suite is kept out of the repository).
//!
//! Without it the test is compiled with `cfg(no_wasi_testsuite)`, which
//! marks it `#[ignore]` with the reason, so `cargo test` lists it as
//! ignored, never as passed; with `CUSTODY_REQUIRE_GUESTS=1` (CI) the cfg
//! is not set and the test runs and fails, saying the variable is missing.
//!
//! Likewise `tests/chaos` needs `wrk` (the Debian package) on `PATH`:
//! without it, `cfg(no_wrk)` ignores the chaos run with the reason,
//! unless `CUSTODY_REQUIRE_GUESTS` is set (then it runs and fails).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_wasi_testsuite)");
    println!("cargo::rerun-if-env-changed=CUSTODY_WASI_TESTSUITE");
    println!("cargo::rerun-if-env-changed=CUSTODY_REQUIRE_GUESTS");
    let given = std::env::var_os("CUSTODY_WASI_TESTSUITE").is_some_and(|v| !v.is_empty());
    let required = std::env::var("CUSTODY_REQUIRE_GUESTS").is_ok_and(|v| !v.is_empty() && v != "0");
    if !given && !required {
        println!("cargo::rustc-cfg=no_wasi_testsuite");
    }
    println!("cargo::rustc-check-cfg=cfg(no_wrk)");
    println!("cargo::rerun-if-env-changed=PATH");
    if !on_path("wrk") && !required {
        println!("cargo::rustc-cfg=no_wrk");
    }
}

/// Whether an executable `name` is in one of `PATH`'s directories.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
