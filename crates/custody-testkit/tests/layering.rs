//! Imports in each library crate point one way: no module imports one that
//! imports it back (docs/ARCHITECTURE.md draws the layers). The check lives
//! here, not in the crates, so that custody-handle's tests need no
//! dependency on the host (its loom build stays small).

use std::path::{Path, PathBuf};

fn src_of(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

#[test]
fn custody_handle_has_no_import_cycle() {
    custody_testkit::layering::assert_acyclic(&src_of("custody-handle"));
}

#[test]
fn custody_host_has_no_import_cycle() {
    custody_testkit::layering::assert_acyclic(&src_of("custody-host"));
}

/// The `.rs` files under `dir` whose code (comments aside) uses `unsafe`,
/// and those that allow it (`#![allow(unsafe_code)]`).
fn unsafe_use(dir: &Path, used: &mut Vec<PathBuf>, allowed: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            unsafe_use(&path, used, allowed);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = |line: &str| line.split("//").next().unwrap_or_default().to_string();
            if text.lines().map(code).any(|c| {
                c.contains("unsafe {") || c.contains("unsafe impl") || c.contains("unsafe fn")
            }) {
                used.push(path.clone());
            }
            if text.lines().any(|l| l.trim() == "#![allow(unsafe_code)]") {
                allowed.push(path);
            }
        }
    }
}

/// Each crate denies `unsafe_code` at its root, and a module that uses
/// `unsafe` allows it for itself, visibly; no module allows it without
/// using it.
#[test]
fn unsafe_is_denied_by_each_crate_and_allowed_only_where_it_is_used() {
    for (krate, root) in [
        ("custody-handle", "lib.rs"),
        ("custody-host", "lib.rs"),
        ("custody-testkit", "lib.rs"),
        ("custody", "main.rs"),
    ] {
        let src = src_of(krate);
        let root_text = std::fs::read_to_string(src.join(root)).unwrap();
        assert!(
            root_text.contains("#![deny(unsafe_code)]")
                || root_text.contains("#![forbid(unsafe_code)]"),
            "{krate}: its root does not deny unsafe_code"
        );
        let (mut used, mut allowed) = (Vec::new(), Vec::new());
        unsafe_use(&src, &mut used, &mut allowed);
        used.sort();
        allowed.sort();
        assert_eq!(
            used, allowed,
            "{krate}: modules using unsafe vs modules allowing it"
        );
    }
}
