//! Domains from a manifest, per-domain policies, and the resolution order of
//! imports: a module of the domain, the domain's resolver, the host's
//! libraries, the host's functions. Every test takes `serial()`: one counts
//! fds, and the others open files and module images.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custody_host::{
    Allocation, CallError, Category, DomainConfig, GuestCall, Host, HostError, LoadError, Manifest,
    ManifestError, Module, Policy, Val,
};
use custody_testkit::*;

/// The decoder the main module imports.
const PNG: &str = r#"(module
  (func (export "decode") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2))))"#;

/// The main module: imports `png`, and opens `data/pixels` through its
/// pre-open.
const THUMBNAILER: &str = r#"(module
  (import "png" "decode" (func $decode (param i32) (result i32)))
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "data/pixels")
  (func (export "run") (param i32) (result i32) (i32.add (call $decode (local.get 0)) (i32.const 1)))
  (func (export "open_pixels") (result i32)
    (local $code i32)
    (local.set $code (call $open (i32.const 0) (i32.const 11) (i32.const 1) (i32.const 64)))
    (if (i32.ne (local.get $code) (i32.const 0)) (then (return (local.get $code))))
    (call $close (i32.load (i32.const 64)))))"#;

/// A module that spins, and one that grows its memory by `pages`.
const HUNGRY: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "spin") (loop $l (br $l)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#;

const MANIFEST: &str = r#"
name = "thumbnailer"
[[module]]                 # imports png, listed after it
name = "main"
path = "thumbnailer.wat"
[[module]]
name = "png"
path = "lib/png.wat"
[preopen]
data = "data"
"#;

/// A scratch directory with the thumbnailer's files and `manifest.toml`
/// (with `extra` appended).
fn thumbnailer_dir(extra: &str) -> std::path::PathBuf {
    let dir = scratch("manifest");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/pixels"), "...").unwrap();
    std::fs::write(dir.join("thumbnailer.wat"), THUMBNAILER).unwrap();
    std::fs::write(dir.join("lib/png.wat"), PNG).unwrap();
    std::fs::write(dir.join("manifest.toml"), format!("{MANIFEST}{extra}")).unwrap();
    dir
}

fn error_of<T>(result: Result<T, ManifestError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_two_module_manifest_loads_main_with_its_import_from_png() {
    let _serial = serial();
    let host = host();
    let dir = thumbnailer_dir("");
    let manifest = Manifest::from_file(dir.join("manifest.toml")).unwrap();
    assert_eq!(manifest.name(), Some("thumbnailer"));
    let names: Vec<_> = manifest.modules().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["main", "png"], "as written");
    // Relative paths are the manifest's directory's, not the process's.
    assert_eq!(manifest.modules()[1].path, dir.join("lib/png.wat"));
    assert_eq!(
        manifest.preopens(),
        [("data".to_string(), dir.join("data"))]
    );
    let order: Vec<_> = host
        .compile_manifest(&manifest)
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(order, ["png", "main"], "what main imports loads first");

    // Once to warm wasmtime's module images up, then counted.
    host.create_domain_from_manifest(&manifest)
        .unwrap()
        .unload()
        .unwrap();
    let baseline = FdBaseline::now();
    let domain = host.create_domain_from_manifest(&manifest).unwrap();
    assert_eq!(call(&domain, "run", &[20]), 41);
    assert_eq!(call(&domain, "decode", &[5]), 10, "exports of every module");
    assert_eq!(
        call(&domain, "open_pixels", &[]),
        0,
        "the pre-open is there"
    );
    assert!(matches!(
        domain.load("png", &host.compile(PNG.as_bytes()).unwrap()),
        Err(LoadError::Duplicate(_))
    ));
    let report = domain.unload().unwrap();
    assert_eq!(report.ledger.opened, 1);
    assert_eq!(report.ledger.closed_by_guest, 1);
    baseline.assert_back("a manifest's domain unloaded");
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_the_file() {
    let _serial = serial();
    let dir = thumbnailer_dir("");
    let file = dir.join("bad.toml");
    for (text, needle) in [
        (
            "colour = \"blue\"\n[[module]]\nname = \"main\"\npath = \"thumbnailer.wat\"",
            "`colour`",
        ),
        (
            "[[module]]\nname = \"main\"\npth = \"thumbnailer.wat\"",
            "`pth`",
        ),
        (
            "[[module]]\nname = \"main\"\npath = \"thumbnailer.wat\"\n[policy]\ndeadline = 5",
            "`deadline`",
        ),
        (
            "[[module]]\nname = \"main\"\npath = \"thumbnailer.wat\"\n[policy.escalation]\nrecreat = true",
            "`recreat`",
        ),
        ("[[module]]\nname = \"main\"", "missing field `path`"),
        (
            "[[module]]\nname = \"main\"\npath = \"thumbnailer.wat\"\n[policy]\nmemory_limit = \"lots\"",
            "is not a size",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let error = error_of(Manifest::from_file(&file));
        assert!(error.contains(needle), "{text}: {error}");
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains(", line "), "{error}");
    }
    let error = error_of(Manifest::from_toml("name = 3", &dir));
    assert!(
        error.starts_with("manifest, line 1: invalid type"),
        "{error}"
    );
}

#[test]
fn a_missing_module_file_is_named() {
    let _serial = serial();
    let dir = thumbnailer_dir("");
    let error = error_of(Manifest::from_toml(
        "[[module]]\nname = \"main\"\npath = \"thumbnailer.wat\"\n[[module]]\nname = \"png\"\npath = \"lib/nope.wasm\"",
        &dir,
    ));
    assert!(error.contains("module \"png\""), "{error}");
    assert!(
        error.contains(&dir.join("lib/nope.wasm").display().to_string()),
        "{error}"
    );
    let missing = dir.join("absent.toml");
    let error = error_of(Manifest::from_file(&missing));
    assert!(error.contains("cannot read manifest"), "{error}");
    assert!(error.contains("absent.toml"), "{error}");
    for (text, needle) in [
        ("name = \"empty\"", "no [[module]]"),
        (
            "[[module]]\nname = \"a\"\npath = \"lib/png.wat\"\n[[module]]\nname = \"a\"\npath = \"lib/png.wat\"",
            "two [[module]]s are named \"a\"",
        ),
        (
            "[[module]]\nname = \"a\"\npath = \"lib/png.wat\"\n[preopen]\n\"x/y\" = \"data\"",
            "one path component",
        ),
    ] {
        let error = error_of(Manifest::from_toml(text, &dir));
        assert!(error.contains(needle), "{text}: {error}");
    }
    // A pre-open that is not a directory fails when the domain is created.
    let manifest = Manifest::from_toml(
        "[[module]]\nname = \"a\"\npath = \"lib/png.wat\"\n[preopen]\nx = \"nowhere\"",
        &dir,
    )
    .unwrap();
    let error = error_of(host().create_domain_from_manifest(&manifest));
    assert!(error.contains("cannot pre-open"), "{error}");
}

#[test]
fn a_failed_load_names_the_module_and_leaves_no_domain() {
    let _serial = serial();
    let host = host();
    let dir = thumbnailer_dir("");
    std::fs::write(
        dir.join("lib/png.wat"),
        r#"(module (func (export "encode") (param i32) (result i32) (local.get 0)))"#,
    )
    .unwrap();
    let manifest = Manifest::from_file(dir.join("manifest.toml")).unwrap();
    let error = host.create_domain_from_manifest(&manifest).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("module \"main\""), "{message}");
    assert!(
        message.contains("the module \"png\" in this domain has no export \"decode\""),
        "{message}"
    );
    assert!(matches!(
        error.load_error(),
        Some(LoadError::UnresolvedImport { .. })
    ));
    assert_eq!(host.domain_count(), 0, "the domain was unloaded");

    std::fs::write(dir.join("lib/png.wat"), "(module (func $f (result i32)))").unwrap();
    let manifest = Manifest::from_file(dir.join("manifest.toml")).unwrap();
    let error = error_of(host.create_domain_from_manifest(&manifest));
    assert!(
        error.contains("module \"png\": malformed module"),
        "{error}"
    );

    // Modules that import each other cannot be ordered.
    std::fs::write(
        dir.join("lib/png.wat"),
        r#"(module (import "main" "run" (func (param i32) (result i32))) (export "decode" (func 0)))"#,
    )
    .unwrap();
    let manifest = Manifest::from_file(dir.join("manifest.toml")).unwrap();
    let error = error_of(host.create_domain_from_manifest(&manifest));
    assert!(
        error.contains("import each other in a cycle: main -> png -> main"),
        "{error}"
    );
}

#[test]
fn a_domain_policy_overrides_the_hosts_key_by_key() {
    let _serial = serial();
    let host_policy = Policy {
        deadline: Some(Duration::from_secs(30)),
        max_wait: Duration::from_secs(3),
        handle_quota: 100,
        denied: vec![Category::UI],
        ..Policy::default()
    };
    let (host, _) = host_with(host_policy.clone());
    let dir = thumbnailer_dir("");
    std::fs::write(dir.join("hungry.wat"), HUNGRY).unwrap();
    let manifest = Manifest::from_toml(
        "[[module]]\nname = \"hungry\"\npath = \"hungry.wat\"\n[policy]\ndeadline_ms = 200\nmemory_limit = \"1MiB\"",
        &dir,
    )
    .unwrap();
    assert_eq!(manifest.policy().keys(), ["deadline_ms", "memory_limit"]);
    let domain = host.create_domain_from_manifest(&manifest).unwrap();
    let own = domain.policy();
    assert_eq!(own.deadline, Some(Duration::from_millis(200)));
    assert_eq!(own.memory_limit, Some(1 << 20));
    assert_eq!(own.max_wait, Duration::from_secs(3), "the host's");
    assert_eq!(own.handle_quota, 100, "the host's");
    assert_eq!(own.denied, [Category::UI], "the host's");

    let started = Instant::now();
    let error = domain.call("spin", &[]).unwrap_err();
    assert!(matches!(error, CallError::Aborted { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the domain's deadline"
    );
    // 1 MiB is 16 pages; the domain has 1.
    assert_eq!(call(&domain, "grow", &[15]), 1, "up to the cap");
    let error = domain.call("grow", &[Val::I32(1)]).unwrap_err();
    assert!(error.to_string().contains("memory limit"), "{error}");

    // Another domain of the same host has the host's.
    let module = host.compile(HUNGRY.as_bytes()).unwrap();
    let other = host.create_domain(DomainConfig::new()).unwrap();
    other.load("hungry", &module).unwrap();
    assert_eq!(other.policy().deadline, Some(Duration::from_secs(30)));
    assert_eq!(call(&other, "grow", &[40]), 1);
}

#[test]
fn quota_and_denied_categories_are_per_domain() {
    let _serial = serial();
    let host = host();
    let pipes = host
        .compile(
            br#"(module (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "pipe") (result i32) (call $pipe (i32.const 0) (i32.const 4))))"#,
        )
        .unwrap();
    let mut policy = host.policy().clone();
    policy.apply_toml("handle_quota = 3").unwrap();
    let small = host
        .create_domain(DomainConfig::new().policy(policy))
        .unwrap();
    small.load("pipes", &pipes).unwrap();
    assert_eq!(call(&small, "pipe", &[]), 0);
    assert_eq!(call(&small, "pipe", &[]), -6, "E_QUOTA past the domain's 3");
    small.unload().unwrap();

    let mut policy = host.policy().clone();
    policy.denied = vec![Category::MayLeakOnAbort];
    let denying = host
        .create_domain(DomainConfig::new().policy(policy))
        .unwrap();
    let error = denying.load("pipes", &pipes).unwrap_err();
    assert!(matches!(error, LoadError::Denied { .. }), "{error}");
    let (domain, _) = driver_domain(&host, DomainConfig::new(), "");
    assert_eq!(
        call(&domain, "abi_pipe", &[0, 4]),
        0,
        "the host denies nothing"
    );
}

#[test]
fn an_engine_wide_key_in_a_domain_policy_is_an_error() {
    let _serial = serial();
    let dir = thumbnailer_dir("");
    for (table, key) in [
        ("threads = true", "threads"),
        ("allocation = \"dense\"", "allocation"),
        ("stack_limit_bytes = 100000", "stack_limit_bytes"),
        (
            "[policy.compile_limits]\nlocals = 5",
            "compile_limits.locals",
        ),
    ] {
        let text =
            format!("{MANIFEST}[policy]\n{table}\n").replace("[policy]\n[policy.", "[policy.");
        let error = Manifest::from_toml(&text, &dir).unwrap_err();
        assert!(
            matches!(&error, ManifestError::EngineWide { key: k, .. } if k == key),
            "{table}: {error}"
        );
        assert!(error.to_string().contains("engine-wide"), "{error}");
    }

    // A whole policy given to a domain must keep the host's engine.
    let host = host();
    let mut policy = host.policy().clone();
    policy.pool_size = 7;
    let error = host
        .create_domain(DomainConfig::new().policy(policy))
        .unwrap_err();
    assert!(matches!(error, HostError::Policy(_)), "{error}");
    assert!(
        error.to_string().contains("pool_size is engine-wide"),
        "{error}"
    );
    let mut policy = host.policy().clone();
    policy.deadline = Some(Duration::ZERO);
    assert!(
        host.create_domain(DomainConfig::new().policy(policy))
            .is_err()
    );

    // Under the pooling allocator, the host's memory limit sized the slots.
    let (capped, _) = host_with(Policy {
        memory_limit: Some(1 << 20),
        ..Policy::default()
    });
    if capped.allocation() == Allocation::Pooling {
        let mut policy = capped.policy().clone();
        policy.memory_limit = Some(2 << 20);
        let error = capped
            .create_domain(DomainConfig::new().policy(policy.clone()))
            .unwrap_err();
        assert!(
            error.to_string().contains("may not exceed the host's"),
            "{error}"
        );
        policy.memory_limit = Some(1 << 19);
        capped
            .create_domain(DomainConfig::new().policy(policy))
            .unwrap();
    }
}

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
    assert!(matches!(error, LoadError::Limits(_)), "{error}");
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

#[test]
fn manifests_read_from_text_resolve_against_the_given_directory() {
    let _serial = serial();
    let dir = thumbnailer_dir("");
    let manifest = Manifest::from_toml(MANIFEST, &dir).unwrap();
    assert_eq!(manifest.file(), None);
    assert!(manifest.modules().iter().all(|m| m.path.starts_with(&dir)));
    let elsewhere = Path::new("/nonexistent-custody-dir");
    let error = error_of(Manifest::from_toml(MANIFEST, elsewhere));
    assert!(
        error.contains("/nonexistent-custody-dir/thumbnailer.wat"),
        "{error}"
    );
}
