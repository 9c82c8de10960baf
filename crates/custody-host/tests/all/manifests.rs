//! Domains from a manifest and per-domain policies (SPEC D5). Every test
//! takes `serial()`: one counts fds, and the others open files and module
//! images. The resolution order of imports is in `resolution.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use custody_host::{
    Allocation, CallError, Category, DomainConfig, HostError, LoadError, Manifest, ManifestError,
    OnMemoryLimit, Policy, Val,
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
        "[[module]]\nname = \"hungry\"\npath = \"hungry.wat\"\n[policy]\ndeadline_ms = 200\nmemory_limit = \"1MiB\"\non_memory_limit = \"abort\"",
        &dir,
    )
    .unwrap();
    assert_eq!(
        manifest.policy().keys(),
        ["deadline_ms", "memory_limit", "on_memory_limit"]
    );
    let domain = host.create_domain_from_manifest(&manifest).unwrap();
    let own = domain.policy();
    assert_eq!(own.deadline, Some(Duration::from_millis(200)));
    assert_eq!(own.memory_limit, Some(1 << 20));
    assert_eq!(
        own.on_memory_limit,
        OnMemoryLimit::Abort,
        "the domain's own"
    );
    assert_eq!(host.policy().on_memory_limit, OnMemoryLimit::FailGrow);
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
        ("pool_keep_resident = \"1MiB\"", "pool_keep_resident"),
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
