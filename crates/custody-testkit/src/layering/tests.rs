use super::*;

fn crate_with(files: &[(&str, &str)]) -> PathBuf {
    let dir = crate::scratch("layering");
    for (name, text) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(ToString::to_string).collect()
}

#[test]
fn finds_a_cycle_through_groups_super_and_reexports() {
    let src = crate_with(&[
        ("lib.rs", "mod a;\nmod b;\npub use b::inner::Thing;\n"),
        ("a.rs", "use crate::{Thing, x::y};\n"),
        ("b.rs", "pub mod inner;\n"),
        ("b/inner.rs", "use super::super::a::f;\npub struct Thing;\n"),
    ]);
    let graph = module_graph(&src);
    assert_eq!(graph["a"], set(&["b::inner"]));
    assert_eq!(graph["b::inner"], set(&["a"]));
    let cycle = find_cycle(&graph).expect("a cycle");
    assert!(cycle.contains(&"a".to_string()), "{cycle:?}");
}

#[test]
fn comments_strings_and_test_items_are_not_imports() {
    let src = crate_with(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "use crate::b::g;\n// use crate::a::x;\nconst S: &str = \"crate::b\";\n",
        ),
        (
            "b.rs",
            "/// [`a`](crate::a)\npub fn g() {}\n/* crate::a::f() */\n\
             #[cfg(test)]\nfn helper() { crate::a::f(); }\n\
             pub fn h() -> char { '\"' }\n\
             #[cfg(test)]\nmod tests { use crate::a; }\n",
        ),
    ]);
    let graph = module_graph(&src);
    assert_eq!(graph["b"], BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn relative_paths_are_made_absolute() {
    let src = crate_with(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "mod low;\nmod high;\nfn f() { low::g(); }\n"),
        (
            "a/low.rs",
            "pub fn g() { super::high::h(); self::inner(); }\nfn inner() {}\n",
        ),
        (
            "a/high.rs",
            "pub fn h() { fn nested() { use crate::b::k; } }\n",
        ),
        ("b.rs", "use std::fmt;\npub fn k() {}\n"),
    ]);
    let graph = module_graph(&src);
    assert_eq!(graph["a"], set(&["a::low"]));
    assert_eq!(graph["a::low"], set(&["a::high"]));
    assert_eq!(graph["a::high"], set(&["b"]));
    assert_eq!(graph["b"], BTreeSet::new());
}

#[test]
fn facades_lead_to_the_module_that_defines_the_name() {
    let src = crate_with(&[
        ("lib.rs", "mod user;\nmod facade;\nmod globbed;\n"),
        (
            "user.rs",
            "use crate::facade::{Named, Renamed as R};\nuse crate::globbed::Deep;\n\
             fn f() -> crate::facade::Local { crate::facade::inner::make() }\n",
        ),
        (
            "facade.rs",
            "pub(crate) mod inner;\nmod other;\n\
             pub(crate) use inner::Named;\npub use self::other::{Renamed};\npub struct Local;\n",
        ),
        ("facade/inner.rs", "pub struct Named;\npub fn make() {}\n"),
        ("facade/other.rs", "pub struct Renamed;\n"),
        ("globbed.rs", "mod deep;\npub(crate) use deep::*;\n"),
        ("globbed/deep.rs", "pub enum Deep {}\n"),
    ]);
    let graph = module_graph(&src);
    assert_eq!(
        graph["user"],
        set(&["facade", "facade::inner", "facade::other", "globbed::deep"])
    );
    // Re-exporting its own submodules is no import of them.
    assert_eq!(graph["facade"], BTreeSet::new());
    assert_eq!(graph["globbed"], BTreeSet::new());
}

const ORDER: &[Layer] = &[
    Layer::of("low"),
    Layer::with("mid", &[Layer::of("first"), Layer::of("second")]),
    Layer::of("high"),
];

fn layered_crate(extra: &[(&str, &str)]) -> PathBuf {
    let mut files = vec![
        ("lib.rs", "mod low;\nmod mid;\nmod high;\n"),
        ("low.rs", "pub struct L;\n"),
        (
            "mid.rs",
            "mod first;\nmod second;\npub(crate) struct Shared;\n",
        ),
        ("mid/first.rs", "use crate::low::L;\nuse super::Shared;\n"),
        ("mid/second.rs", "use super::first;\n"),
        ("high.rs", "use crate::mid::Shared;\n"),
    ];
    for (name, text) in extra {
        files.retain(|(n, _)| n != name);
        files.push((name, text));
    }
    crate_with(&files)
}

#[test]
fn an_order_allows_imports_down_into_submodules_and_up_to_the_facade() {
    assert_eq!(check_layered(&layered_crate(&[]), ORDER), Ok(()));
}

#[test]
fn an_order_refuses_an_import_going_up_naming_file_module_and_positions() {
    let src = layered_crate(&[("mid/first.rs", "use super::second::X;\n")]);
    let violations = check_layered(&src, ORDER).unwrap_err();
    assert_eq!(
        violations,
        vec![Violation::Upward {
            file: PathBuf::from("mid/first.rs"),
            importer: "mid::first".to_string(),
            imported: "mid::second".to_string(),
            within: "mid".to_string(),
            importer_at: 1,
            imported_at: 2,
            of: 2,
        }]
    );
    let src = layered_crate(&[("low.rs", "pub struct L;\nfn f() { crate::high::g(); }\n")]);
    let message = check_layered(&src, ORDER).unwrap_err()[0].to_string();
    assert!(
        message.starts_with("low.rs (low) imports high"),
        "{message}"
    );
    assert!(
        message.contains("low is at 1 and high at 3 of 3"),
        "{message}"
    );
}

#[test]
fn an_order_names_modules_it_misses_and_names_it_lists_wrongly() {
    let src = layered_crate(&[
        ("lib.rs", "mod low;\nmod mid;\nmod high;\nmod extra;\n"),
        ("extra.rs", ""),
    ]);
    let order = &[Layer::of("low"), Layer::of("mid"), Layer::of("gone")];
    let violations = check_layered(&src, order).unwrap_err();
    let unlisted = |module: &str| Violation::Unlisted {
        module: module.to_string(),
        within: "crate".to_string(),
    };
    assert!(violations.contains(&unlisted("extra")), "{violations:?}");
    assert!(violations.contains(&unlisted("high")), "{violations:?}");
    assert!(violations.contains(&Violation::Unknown {
        name: "gone".to_string(),
        within: "crate".to_string(),
    }));
}

#[test]
#[should_panic(expected = "matches no upward import")]
fn an_exception_that_matches_nothing_fails() {
    assert_layered_except(&layered_crate(&[]), ORDER, &[("low", "high")]);
}

#[test]
fn this_workspace_has_the_edges_it_should() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("../custody-host/src");
    let graph = module_graph(&host);
    assert!(
        graph["domain::call"].contains("domain::recycle"),
        "{:?}",
        graph["domain::call"]
    );
    assert!(graph["boundary::marshal"].contains("boundary::ctx"));
    assert!(!graph["boundary::ctx"].contains("domain"));
}
