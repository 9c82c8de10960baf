//! The resolution order of imports (SPEC D5): a module of the domain, the
//! domain's resolver, the host's libraries, the host's functions; an
//! unresolved import names every place tried; a resolver cycle is an
//! error; libraries are instantiated into each domain separately.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use custody_host::{
    CallError, DomainConfig, GuestCall, Host, HostError, LoadError, Module, Policy,
};
use custody_testkit::*;

/// A module named `png` that a resolver can hand out.
const PNG: &str = r#"(module
  (func (export "decode") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2))))"#;

/// `env.which`, answered by whoever supplies `env`.
fn which(answer: i32) -> String {
    format!(r#"(module (func (export "which") (result i32) i32.const {answer}))"#)
}

const ASKS_WHICH: &str = r#"(module
  (import "env" "which" (func $which (result i32)))
  (func (export "run") (result i32) (call $which)))"#;

/// A host with the host function `env.which` (answering 4) and, if
/// `library`, the library `env` (answering 3).
fn env_host(library: bool) -> Host {
    quiet();
    let host = Host::builder(Policy::default())
        .log(Arc::new(|_, _, _| {}))
        .func_wrap("env", "which", &[], |_: &mut GuestCall<'_>| Ok(4))
        .build()
        .unwrap();
    if library {
        let lib = host.compile(which(3).as_bytes()).unwrap();
        host.add_library("env", &lib).unwrap();
    }
    host
}

/// A resolver answering `env` with `module` (if any), counting its calls.
fn resolver(module: Option<Module>, asked: &Arc<AtomicUsize>) -> DomainConfig {
    let asked = Arc::clone(asked);
    DomainConfig::new().resolver(move |name| {
        asked.fetch_add(1, Ordering::Relaxed);
        (name == "env").then(|| module.clone()).flatten()
    })
}

#[test]
fn imports_resolve_sibling_then_resolver_then_library_then_host() {
    let _serial = serial();
    let host = env_host(true);
    let app = host.compile(ASKS_WHICH.as_bytes()).unwrap();
    let sibling = host.compile(which(1).as_bytes()).unwrap();
    let supplied = host.compile(which(2).as_bytes()).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));

    // 1. A module of the domain wins over the resolver.
    let domain = host
        .create_domain(resolver(Some(supplied.clone()), &asked))
        .unwrap();
    domain.load("env", &sibling).unwrap();
    domain.load("app", &app).unwrap();
    assert_eq!(call(&domain, "run", &[]), 1);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        0,
        "the resolver was not asked"
    );

    // 2. The resolver wins over the host's library.
    let domain = host
        .create_domain(resolver(Some(supplied), &asked))
        .unwrap();
    domain.load("app", &app).unwrap();
    assert_eq!(call(&domain, "run", &[]), 2);
    assert_eq!(asked.load(Ordering::Relaxed), 1);
    assert!(
        matches!(domain.load("env", &sibling), Err(LoadError::Duplicate(_))),
        "loaded into the domain under its name"
    );

    // 3. The library wins over the host function.
    let domain = host.create_domain(resolver(None, &asked)).unwrap();
    domain.load("app", &app).unwrap();
    assert_eq!(call(&domain, "run", &[]), 3);

    // 4. The host function, when nothing else has `env`.
    let plain = env_host(false);
    let domain = plain.create_domain(DomainConfig::new()).unwrap();
    domain
        .load("app", &plain.compile(ASKS_WHICH.as_bytes()).unwrap())
        .unwrap();
    assert_eq!(call(&domain, "run", &[]), 4);
}

#[test]
fn an_unresolved_import_names_every_place_tried() {
    let _serial = serial();
    let host = env_host(false);
    let asked = Arc::new(AtomicUsize::new(0));
    let app = host
        .compile(br#"(module (import "png" "decode" (func (param i32) (result i32))))"#)
        .unwrap();
    let domain = host.create_domain(resolver(None, &asked)).unwrap();
    let error = domain.load("main", &app).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unresolved import png::decode: not a module in this domain, not found by the domain's resolver, no host library named \"png\", not a host function"
    );
    assert!(matches!(
        &error,
        LoadError::UnresolvedImport { module, name, tried, .. }
            if module == "png" && name == "decode" && tried.len() == 4
    ));
    let bare = host.create_domain(DomainConfig::new()).unwrap();
    let error = bare.load("main", &app).unwrap_err().to_string();
    assert!(error.contains("no resolver in this domain"), "{error}");

    // A host module without the function keeps its own error.
    let typo = host
        .compile(br#"(module (import "env" "whihc" (func (result i32))))"#)
        .unwrap();
    let error = bare.load("typo", &typo).unwrap_err();
    assert!(
        matches!(error, LoadError::UnknownHostFunction { .. }),
        "{error}"
    );
}

/// A module importing `f` from each of `imports`, exporting `f` itself.
fn importing(imports: &[&str]) -> String {
    let imports: String = imports
        .iter()
        .map(|m| format!(r#"(import "{m}" "f" (func))"#))
        .collect();
    format!(r#"(module {imports} (func (export "f")))"#)
}

#[test]
fn a_resolver_cycle_is_an_error_not_a_hang() {
    let _serial = serial();
    let host = host();
    let a = host.compile(importing(&["b"]).as_bytes()).unwrap();
    let b = host.compile(importing(&["a"]).as_bytes()).unwrap();
    let main = host.compile(importing(&["a"]).as_bytes()).unwrap();
    let (ra, rb, rmain) = (a.clone(), b.clone(), main.clone());
    let config = DomainConfig::new().resolver(move |name| match name {
        "a" => Some(ra.clone()),
        "b" => Some(rb.clone()),
        "main" => Some(rmain.clone()),
        _ => None,
    });
    let domain = host.create_domain(config).unwrap();
    let error = domain.load("main", &main).unwrap_err();
    assert!(
        matches!(&error, LoadError::ImportCycle { cycle } if cycle == &["a", "b", "a"]),
        "{error}"
    );
    assert_eq!(error.to_string(), "import cycle: a -> b -> a");
    // A module importing itself by name, which the resolver supplies.
    let selfish = host.compile(importing(&["main"]).as_bytes()).unwrap();
    let error = domain.load("main", &selfish).unwrap_err();
    assert_eq!(error.to_string(), "import cycle: main -> main");
    // The domain goes on.
    domain
        .load("c", &host.compile(importing(&[]).as_bytes()).unwrap())
        .unwrap();

    // A resolver inventing a new module for every name is cut off.
    let engine_host = Arc::new(host);
    let inventing = Arc::clone(&engine_host);
    let config = DomainConfig::new().resolver(move |name| {
        let next = format!("{name}x");
        Some(inventing.compile(importing(&[&next]).as_bytes()).unwrap())
    });
    let domain = engine_host.create_domain(config).unwrap();
    let start = engine_host.compile(importing(&["x"]).as_bytes()).unwrap();
    let error = domain.load("start", &start).unwrap_err();
    assert!(matches!(error, LoadError::Limits { .. }), "{error}");
    assert!(error.to_string().contains("at most 64"), "{error}");
}

/// A library with state: `bump` counts its calls.
const COUNTER: &str = r#"(module
  (global $n (mut i32) (i32.const 0))
  (func (export "bump") (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (global.get $n)))"#;

const BUMPS: &str = r#"(module
  (import "counter" "bump" (func $bump (result i32)))
  (func (export "run") (result i32) (call $bump)))"#;

#[test]
fn a_library_is_instantiated_into_each_domain_separately() {
    let _serial = serial();
    let host = host();
    let counter = host.compile(COUNTER.as_bytes()).unwrap();
    host.add_library("counter", &counter).unwrap();
    let error = host.add_library("counter", &counter).unwrap_err();
    assert!(matches!(error, HostError::Library { .. }), "{error}");
    let other = custody_testkit::host();
    let foreign = other.compile(COUNTER.as_bytes()).unwrap();
    let error = host.add_library("foreign", &foreign).unwrap_err();
    assert!(error.to_string().contains("another host"), "{error}");

    let app = host.compile(BUMPS.as_bytes()).unwrap();
    let first = host.create_domain(DomainConfig::new()).unwrap();
    let second = host.create_domain(DomainConfig::new()).unwrap();
    first.load("app", &app).unwrap();
    second.load("app", &app).unwrap();
    assert_eq!(call(&first, "run", &[]), 1);
    assert_eq!(call(&first, "run", &[]), 2);
    assert_eq!(call(&second, "run", &[]), 1, "not shared with the first");
    // One instance per domain, whoever imports it.
    let again = host
        .compile(BUMPS.replace("run", "run2").as_bytes())
        .unwrap();
    first.load("app2", &again).unwrap();
    assert_eq!(call(&first, "run2", &[]), 3);
    assert_eq!(
        call(&first, "bump", &[]),
        4,
        "the library's exports are the domain's"
    );
}

#[test]
fn a_recycle_recreates_modules_loaded_on_demand_without_asking_again() {
    let _serial = serial();
    let host = host();
    let png = host.compile(PNG.as_bytes()).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let config = DomainConfig::new().resolver(move |name| {
        counted.fetch_add(1, Ordering::Relaxed);
        (name == "png").then(|| png.clone())
    });
    let main = host
        .compile(
            br#"(module
              (import "png" "decode" (func $decode (param i32) (result i32)))
              (import "custody" "critical_enter" (func $enter (result i32)))
              (func (export "run") (param i32) (result i32) (call $decode (local.get 0)))
              (func (export "fail") (drop (call $enter)) unreachable))"#,
        )
        .unwrap();
    let domain = host.create_domain(config).unwrap();
    domain.load("main", &main).unwrap();
    let after_load = asked.load(Ordering::Relaxed);
    assert_eq!(after_load, 2, "asked for png and custody, once each");
    let error = domain.call("fail", &[]).unwrap_err();
    assert!(matches!(error, CallError::Escalated { .. }), "{error}");
    assert_eq!(call(&domain, "run", &[21]), 42, "re-created in load order");
    assert_eq!(asked.load(Ordering::Relaxed), after_load, "not asked again");
}
