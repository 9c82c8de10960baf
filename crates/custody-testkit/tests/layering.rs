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
