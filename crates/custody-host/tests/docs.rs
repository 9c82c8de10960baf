//! docs/RELIABILITY.md names, for every resource a guest can consume, the
//! tests that prove its bound: each name must be a test that exists.

use std::path::Path;

#[test]
fn every_test_the_reliability_table_names_exists() {
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
            // `file.rs` (every test in it) or `file.rs::test`, in
            // crates/custody-host/tests unless a path says otherwise.
            let (file, test) = name.split_once("::").unwrap_or((name, ""));
            let file = file.split_whitespace().next().unwrap();
            let path = if file.contains('/') {
                root.join(file)
            } else {
                root.join("crates/custody-host/tests").join(file)
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
