//! docs/RELIABILITY.md names, for every resource a guest can consume, the
//! tests that prove its bound: each name must be a test that exists.

use std::path::Path;

use custody_testkit::layering::module_table;
use custody_testkit::serial;

#[test]
fn every_test_the_reliability_table_names_exists() {
    let _serial = serial();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/RELIABILITY.md")).unwrap();
    let table: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| resource |"))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    assert!(table.len() >= 12, "one row per resource: {}", table.len());
    let mut checked = 0;
    for row in &table {
        let proved_by = row.rsplit('|').nth(1).unwrap();
        assert!(proved_by.contains('`'), "a row names no test: {row}");
        for name in proved_by.split('`').skip(1).step_by(2) {
            // `file.rs` (every test in it) or `file.rs::test`, a module of
            // crates/custody-host/tests/all unless a path says otherwise.
            let (file, test) = name.split_once("::").unwrap_or((name, ""));
            let file = file.split_whitespace().next().unwrap();
            let path = if file.contains('/') {
                root.join(file)
            } else {
                root.join("crates/custody-host/tests/all").join(file)
            };
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", path.display()));
            if !test.is_empty() {
                assert!(
                    source.contains(&format!("fn {test}()")),
                    "{name}: no such test in {}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} names checked");
}

fn repo_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap()
}

#[test]
fn the_architecture_names_every_module_that_uses_unsafe_and_no_other() {
    let _serial = serial();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (used, _) = custody_testkit::layering::unsafe_modules(&src);
    let mut actual: Vec<String> = used
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
        .collect();
    actual.sort();
    let doc = repo_file("docs/ARCHITECTURE.md");
    let paragraph: String = doc
        .split("\n\n")
        .find(|p| p.starts_with("`unsafe` in custody-host lives in"))
        .expect("docs/ARCHITECTURE.md says where custody-host's unsafe lives")
        .to_string();
    let mut named: Vec<String> = paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    named.sort();
    assert_eq!(named, actual, "docs/ARCHITECTURE.md vs the code");
    let count = ["one", "two", "three", "four", "five", "six", "seven"][actual.len() - 1];
    assert!(
        paragraph.contains(&format!("lives in {count} places")),
        "{paragraph}"
    );
}

#[test]
fn the_crate_docs_and_the_architecture_list_the_modules_in_one_order() {
    let _serial = serial();
    let architecture = module_table(
        &repo_file("docs/ARCHITECTURE.md"),
        "## custody-host, bottom to top",
    );
    let mut lib = module_table(&repo_file("crates/custody-host/src/lib.rs"), "# Module map");
    lib.reverse();
    assert!(architecture.len() >= 12, "{architecture:?}");
    let (architecture, lib) = (architecture.concat(), lib.concat());
    assert_eq!(
        lib, architecture,
        "lib.rs (top to bottom, reversed) vs docs/ARCHITECTURE.md (bottom to top)"
    );
}

#[test]
fn custody_handle_docs_and_the_architecture_list_the_modules_in_one_order() {
    let _serial = serial();
    let architecture = module_table(
        &repo_file("docs/ARCHITECTURE.md"),
        "## custody-handle, bottom to top",
    );
    let lib = module_table(
        &repo_file("crates/custody-handle/src/lib.rs"),
        "# Module map",
    );
    assert!(architecture.len() >= 10, "{architecture:?}");
    assert_eq!(
        lib.concat(),
        architecture.concat(),
        "custody-handle's lib.rs vs docs/ARCHITECTURE.md (both bottom to top)"
    );
}
