//! Imports in this crate point one way: no module imports one that imports
//! it back (docs/ARCHITECTURE.md draws the layers).

#[test]
fn the_crate_has_no_import_cycle() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    custody_testkit::layering::assert_acyclic(&src);
}
