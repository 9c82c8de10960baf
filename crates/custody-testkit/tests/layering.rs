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

#[test]
fn the_command_line_has_no_import_cycle() {
    custody_testkit::layering::assert_acyclic(&src_of("custody"));
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
        let (used, allowed) = custody_testkit::layering::unsafe_modules(&src);
        assert_eq!(
            used, allowed,
            "{krate}: modules using unsafe vs modules allowing it"
        );
    }
}
