//! Builds the C guests (`guest/examples/*.c`) with `guest/build.sh` into
//! `OUT_DIR/guest` and tells the tests where they are
//! (`CUSTODY_GUEST_DIR`).
//!
//! - clang or wasm-ld missing (build.sh exits 69): the tests are compiled
//!   with `cfg(no_guest_toolchain)`, which marks each one `#[ignore]` with
//!   the reason, so `cargo test` lists them as ignored, never as passed.
//!   With `CUSTODY_REQUIRE_GUESTS=1` (CI) the build fails instead.
//! - any other failure (a C compile error): the build fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// build.sh's exit status when clang or wasm-ld is missing.
const TOOLCHAIN_MISSING: i32 = 69;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_guest_toolchain)");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guest = manifest.join("../../guest");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("guest");
    println!("cargo::rerun-if-changed={}", guest.display());
    for var in ["CLANG", "WASM_LD", "CUSTODY_REQUIRE_GUESTS"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-env=CUSTODY_GUEST_DIR={}", out.display());

    let output = Command::new("bash")
        .arg(guest.join("build.sh"))
        .env("CUSTODY_GUEST_OUT", &out)
        .output();
    let why = match output {
        Ok(o) if o.status.success() => return,
        Ok(o) if o.status.code() == Some(TOOLCHAIN_MISSING) => {
            String::from_utf8_lossy(&o.stderr).trim().to_string()
        }
        Ok(o) => fail(&format!(
            "guest/build.sh failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("cannot run bash: {e}"),
        Err(e) => fail(&format!("cannot run guest/build.sh: {e}")),
    };
    if required() {
        fail(&format!(
            "CUSTODY_REQUIRE_GUESTS is set, but the C guests cannot be built: {why}"
        ));
    }
    println!("cargo::warning=C guest tests ignored: {why}");
    println!("cargo::rustc-cfg=no_guest_toolchain");
    watch_path();
}

/// Fails the build with `message` (cargo shows the script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// Whether CI asked for the guests (`CUSTODY_REQUIRE_GUESTS` set, not `0`).
fn required() -> bool {
    std::env::var("CUSTODY_REQUIRE_GUESTS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Without a toolchain, look again when a directory on `PATH` changes
/// (installing clang adds files there), so the tests run once it is there.
fn watch_path() {
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.is_absolute() && Path::new(&dir).is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
}
