//! Hosts and domains: loading several modules, calls, errors, ids, parallelism.

use std::thread;
use std::time::{Duration, Instant};

use custody_host::{
    CallError, Category, DomainConfig, DomainState, HostTotals, LoadError, NotRunning, Policy,
    UnloadError, Val,
};
use custody_testkit::*;

const LIB: &str = r#"
(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "add") (param i32 i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.add (local.get 0) (local.get 1)))
  (func (export "calls") (result i32) (global.get $calls))
)
"#;

const APP: &str = r#"
(module
  (import "lib" "add" (func $add (param i32 i32) (result i32)))
  (func (export "run") (param i32) (result i32)
    (call $add (local.get 0) (i32.const 100)))
)
"#;

#[test]
fn modules_in_one_domain_import_each_other() {
    let _serial = serial();
    let host = host();
    let lib = host.compile(LIB.as_bytes()).unwrap();
    let app = host.compile(APP.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("lib", &lib).unwrap();
    domain.load("app", &app).unwrap();
    assert_eq!(
        domain.call("run", &[Val::I32(23)]).unwrap()[0].unwrap_i32(),
        123
    );
    assert_eq!(
        domain.call("calls", &[]).unwrap()[0].unwrap_i32(),
        1,
        "one shared instance"
    );
    assert!(matches!(
        domain.load("lib", &lib),
        Err(LoadError::Duplicate(_))
    ));

    // The same modules in another domain are another instance.
    let other = host.create_domain(DomainConfig::new()).unwrap();
    other.load("lib", &lib).unwrap();
    assert_eq!(other.call("calls", &[]).unwrap()[0].unwrap_i32(), 0);

    // Loaded in the wrong order, the import names what is missing.
    let third = host.create_domain(DomainConfig::new()).unwrap();
    let error = third.load("app", &app).unwrap_err();
    assert!(
        matches!(&error, LoadError::UnresolvedImport { module, name, .. } if module == "lib" && name == "add")
    );
    assert!(error.to_string().contains("lib::add"), "{error}");
}

#[test]
fn domain_ids_are_never_reused() {
    let _serial = serial();
    let host = host();
    let mut last = 0;
    for _ in 0..20 {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        assert!(domain.id() > last);
        last = domain.id();
        assert!(host.domains().iter().any(|d| d.id == domain.id()));
        domain.unload().unwrap();
        assert_eq!(domain.state(), DomainState::Unloaded);
        assert!(
            host.domains().iter().all(|d| d.id != domain.id()),
            "unloaded domains are not listed"
        );
    }
}

#[test]
fn a_live_domain_is_found_by_its_id_and_a_finished_or_forged_one_is_not() {
    let _serial = serial();
    let host = host();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let found = host.domain(domain.id()).expect("a running domain is found");
    assert_eq!(found.id(), domain.id());
    // The found value acts on the same domain: its unload is the creator's.
    found.unload().unwrap();
    assert_eq!(domain.state(), DomainState::Unloaded);
    assert!(host.domain(domain.id()).is_none(), "an unloaded domain");
    assert!(host.domain(0).is_none(), "an id never issued");
    assert!(host.domain(u64::MAX).is_none(), "an id never issued");
    // Found, it is no root: the creator's unload completes while it is held.
    let other = host.create_domain(DomainConfig::new()).unwrap();
    let held = host.domain(other.id()).unwrap();
    other.unload().unwrap();
    assert_eq!(held.state(), DomainState::Unloaded);
}

#[test]
fn calls_into_different_domains_run_in_parallel() {
    let _serial = serial();
    let host = host();
    let domains: Vec<_> = (0..2)
        .map(|_| driver_domain(&host, DomainConfig::new(), "").0)
        .collect();
    let start = Instant::now();
    thread::scope(|s| {
        for domain in &domains {
            s.spawn(move || assert_eq!(call(domain, "abi_sleep", &[300]), 0));
        }
    });
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(300));
    assert!(
        elapsed < Duration::from_millis(550),
        "serialized: {elapsed:?}"
    );
}

#[test]
fn bad_modules_and_bad_calls_are_clear_errors() {
    let _serial = serial();
    let host = host();
    for bytes in [
        &b"\0asm\x01\0\0\0\xff"[..],
        b"(module (func $f (result i32)))",
        b"not wasm at all",
        b"",
    ] {
        let error = host.compile(bytes).unwrap_err();
        assert!(matches!(error, LoadError::Malformed { .. }), "{error}");
        assert!(error.to_string().starts_with("malformed module"), "{error}");
    }
    let missing = host.compile_file("/nonexistent/module.wasm").unwrap_err();
    assert!(matches!(missing, LoadError::Read { .. }), "{missing}");

    let unknown_abi = host
        .compile(br#"(module (import "custody" "fork" (func)))"#)
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let error = domain.load("m", &unknown_abi).unwrap_err();
    assert!(error.to_string().contains("custody::fork"), "{error}");

    let wrong_type = host
        .compile(br#"(module (import "custody" "close" (func (param i64))))"#)
        .unwrap();
    let error = domain.load("m", &wrong_type).unwrap_err();
    assert!(matches!(error, LoadError::Instantiate { .. }), "{error}");

    let lib = host.compile(LIB.as_bytes()).unwrap();
    domain.load("lib", &lib).unwrap();
    assert!(matches!(
        domain.call("nope", &[]),
        Err(CallError::NoSuchExport(_))
    ));
    let arity = domain.call("add", &[Val::I32(1)]).unwrap_err();
    assert!(matches!(arity, CallError::Signature { .. }), "{arity}");
    assert!(arity.to_string().contains("(i32, i32)"), "{arity}");
    let types = domain.call("add", &[Val::I64(1), Val::I32(2)]).unwrap_err();
    assert!(matches!(types, CallError::Signature { .. }), "{types}");
}

#[test]
fn an_import_of_a_denied_category_fails_the_load_naming_both() {
    let _serial = serial();
    let (host, _) = host_with(Policy {
        denied: vec![Category::Synchronization],
        ..Policy::default()
    });
    let sleeper = host
        .compile(br#"(module (import "custody" "sleep" (func (param i32) (result i32))))"#)
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let error = domain.load("sleeper", &sleeper).unwrap_err();
    match &error {
        LoadError::Denied {
            module,
            name,
            category,
        } => {
            assert_eq!((module.as_str(), name.as_str()), ("custody", "sleep"));
            assert_eq!(*category, Category::Synchronization);
        }
        other => panic!("expected Denied, got {other}"),
    }
    assert!(error.to_string().contains("custody::sleep"));
    assert!(error.to_string().contains("Synchronization"));
    // A module that imports nothing denied still loads.
    let log = host
        .compile(br#"(module (import "custody" "log" (func (param i32 i32 i32) (result i32))))"#)
        .unwrap();
    domain.load("log", &log).unwrap();
}

#[test]
fn an_unloaded_domain_takes_no_calls_and_unloads_once() {
    let _serial = serial();
    let host = host();
    let (domain, module) = driver_domain(&host, DomainConfig::new(), "");
    domain.unload().unwrap();
    assert!(matches!(
        domain.call("abi_last_error", &[]),
        Err(CallError::NotRunning(NotRunning {
            state: DomainState::Unloaded,
            ..
        }))
    ));
    assert!(matches!(
        domain.load("again", &module),
        Err(LoadError::NotRunning(_))
    ));
    assert!(matches!(domain.unload(), Err(UnloadError::NotRunning(_))));
}

#[test]
fn a_missing_preopen_directory_is_an_error() {
    let _serial = serial();
    let host = host();
    let error = host
        .create_domain(DomainConfig::new().preopen("x", "/nonexistent/dir"))
        .unwrap_err();
    assert!(error.to_string().contains("/nonexistent/dir"), "{error}");
}

#[test]
fn the_ledger_counts_every_handle_of_the_table_whoever_inserted_it() {
    let _serial = serial();
    let host = host();
    let (domain, _module) = driver_domain(&host, DomainConfig::new(), "");
    let fds = FdBaseline::now();
    // Two handles from the embedder, two (a pipe) from the guest.
    let (r, w) = std::io::pipe().unwrap();
    let embedder_r = domain
        .insert_handle(custody_handle::Fd::from(std::os::fd::OwnedFd::from(r)))
        .unwrap();
    domain
        .insert_handle(custody_handle::Fd::from(std::os::fd::OwnedFd::from(w)))
        .unwrap();
    assert_eq!(call(&domain, "abi_pipe", &[0, 4]), 0);
    let guest_r = call(&domain, "load", &[0]);
    assert_eq!(domain.ledger().opened, 4, "embedder-inserted handles count");
    assert_eq!(call(&domain, "abi_close", &[guest_r]), 0);
    domain.close_handle(embedder_r).unwrap();
    let ledger = domain.unload().unwrap().ledger;
    assert_eq!(
        (
            ledger.opened,
            ledger.closed_by_guest,
            ledger.closed_by_host,
            ledger.released_at_unload
        ),
        (4, 1, 1, 2),
        "{ledger:?}"
    );
    fds.assert_back("after unload");
}

/// Opens a file, a pipe and a timer; `close_read` closes the pipe's read
/// end.
const OPENER: &str = r#"
(module
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "d/f")
  (data (i32.const 80) "tick")
  (func (export "tick") (param i32))
  (func (export "open_all") (result i32)
    (i32.or
      (i32.or (call $open (i32.const 64) (i32.const 3) (i32.const 1) (i32.const 0))
              (call $pipe (i32.const 4) (i32.const 8)))
      (call $timer_set (i32.const 5000) (i32.const 0) (i32.const 80) (i32.const 4) (i32.const 12))))
  (func (export "close_read") (result i32) (call $close (i32.load (i32.const 4))))
)
"#;

#[test]
fn domain_info_counts_handles_by_resource_type() {
    let _serial = serial();
    let dir = scratch("by-type");
    std::fs::write(dir.join("f"), "data").unwrap();
    let host = host();
    let module = warmed_module(&host, OPENER);
    let fds = FdBaseline::now();
    let domain = host
        .create_domain(DomainConfig::new().preopen("d", &dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    assert!(domain.info().handles_by_type.is_empty());
    assert_eq!(call(&domain, "open_all", &[]), 0);
    let by_type = |info: &custody_host::DomainInfo| {
        let counts: Vec<(String, usize)> = info
            .handles_by_type
            .iter()
            .map(|(kind, n)| (kind.clone(), *n))
            .collect();
        counts
    };
    let info = domain.info();
    assert_eq!(by_type(&info), [("Fd".into(), 3), ("Timer".into(), 1)]);
    assert_eq!(info.handles, 4);
    let listed = host.domains();
    assert_eq!(by_type(&listed[0]), by_type(&info), "Host::domains agrees");
    assert_eq!(
        serde_json::to_value(&info).unwrap()["handles_by_type"],
        serde_json::json!({"Fd": 3, "Timer": 1})
    );
    assert_eq!(call(&domain, "close_read", &[]), 0);
    assert_eq!(
        by_type(&domain.info()),
        [("Fd".into(), 2), ("Timer".into(), 1)]
    );
    // The armed timer holds a cooperative unload: force it.
    let report = domain.force_unload().unwrap();
    assert_eq!(report.released, 3);
    fds.assert_back("after unload");
}

#[test]
fn the_registry_forgets_domains_unloaded_or_dropped() {
    let _serial = serial();
    let host = host();
    let unloaded = host.create_domain(DomainConfig::new()).unwrap();
    let dropped = host.create_domain(DomainConfig::new()).unwrap();
    let kept = host.create_domain(DomainConfig::new()).unwrap();
    assert_eq!(host.domain_count(), 3);
    unloaded.unload().unwrap();
    drop(dropped);
    let listed: Vec<u64> = host.domains().iter().map(|d| d.id).collect();
    assert_eq!(listed, vec![kept.id()]);
    assert_eq!(kept.info().state, DomainState::Running);
}

#[test]
fn a_pool_too_large_to_reserve_falls_back_to_on_demand_allocation() {
    let _serial = serial();
    quiet();
    // 4 million slots of 4 GiB each: more address space than the machine has.
    let host = custody_host::Host::with_log(
        Policy {
            pool_size: 4_000_000,
            ..Policy::default()
        },
        std::sync::Arc::new(|_, _, _| {}),
    )
    .unwrap();
    assert_eq!(host.allocation(), custody_host::Allocation::OnDemand);
    let module = host.compile(LIB.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("lib", &module).unwrap();
    let sum = domain.call("add", &[Val::I32(2), Val::I32(3)]).unwrap();
    assert!(matches!(sum[..], [Val::I32(5)]));
}

/// Writes a byte in the first page of memory, at the page's last byte, in
/// the fourth page, and a function into the table; `peek` is non-zero if
/// any of them is there.
const SCRIBBLER: &str = r#"(module
  (memory (export "memory") 4)
  (table 4 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "scribble")
    (i32.store8 (i32.const 0) (i32.const 0xab))
    (i32.store8 (i32.const 65535) (i32.const 0xab))
    (i32.store8 (i32.const 196708) (i32.const 0xab))
    (table.set (i32.const 3) (ref.func $f)))
  (func (export "peek") (result i32)
    (i32.or
      (i32.or (i32.load8_u (i32.const 0)) (i32.load8_u (i32.const 65535)))
      (i32.or (i32.load8_u (i32.const 196708))
        (i32.eqz (ref.is_null (table.get (i32.const 3))))))))"#;

/// A pool slot passes from domain to domain: whatever part of its memory
/// and table the pool keeps resident (zeroed in place) and whatever it
/// hands back to the kernel, the next domain finds none of what the last
/// one wrote.
#[test]
fn a_reused_pool_slot_keeps_nothing_of_the_domain_before() {
    let _serial = serial();
    quiet();
    for keep in [0, 64 << 10, 1 << 20] {
        let host = custody_host::Host::with_log(
            Policy {
                // One slot: every domain gets the one the last one had.
                pool_size: 1,
                pool_keep_resident: keep,
                memory_limit: Some(1 << 20),
                ..Policy::default()
            },
            std::sync::Arc::new(|_, _, _| {}),
        )
        .unwrap();
        assert_eq!(host.allocation(), custody_host::Allocation::Pooling);
        let module = host.compile(SCRIBBLER.as_bytes()).unwrap();
        for round in 0..3 {
            let domain = host.create_domain(DomainConfig::new()).unwrap();
            domain.load("scribbler", &module).unwrap();
            let seen = domain.call("peek", &[]).unwrap();
            assert!(
                matches!(seen[..], [Val::I32(0)]),
                "pool_keep_resident = {keep}, domain {round}: {seen:?}"
            );
            domain.call("scribble", &[]).unwrap();
            domain.unload().unwrap();
        }
    }
}

#[test]
fn compiling_the_same_bytes_again_comes_from_the_cache() {
    let _serial = serial();
    let host = host();
    let first = host.compile(LIB.as_bytes()).unwrap();
    let again = host.compile(LIB.as_bytes()).unwrap();
    assert!(custody_host::Module::same(&first, &again));
    assert_eq!(host.cached_modules(), 1);
    host.clear_module_cache();
    let fresh = host.compile(LIB.as_bytes()).unwrap();
    assert!(!custody_host::Module::same(&first, &fresh));
}

/// `Host::totals`: domains by state, their handles by type, and the
/// ledgers added up, an ended domain's kept.
#[test]
fn totals_count_domains_by_state_their_handles_and_every_ledger() {
    let _serial = serial();
    let host = host();
    assert_eq!(host.totals(), HostTotals::default());
    let (one, module) = driver_domain(&host, DomainConfig::new(), "");
    let two = host.create_domain(DomainConfig::new()).unwrap();
    two.load("main", &module).unwrap();
    // Two pipes in `one` (four handles, one closed by the guest), one in
    // `two`.
    for domain in [&one, &one, &two] {
        assert_eq!(call(domain, "abi_pipe", &[0, 4]), 0);
    }
    let read_end = call(&one, "load", &[0]);
    assert_eq!(call(&one, "abi_close", &[read_end]), 0);
    let totals = host.totals();
    assert_eq!((totals.running, totals.unloading), (2, 0));
    assert_eq!(totals.handles_by_type.values().sum::<usize>(), 5);
    assert_eq!(totals.ledger.opened, 6);
    assert_eq!(totals.ledger.closed_by_guest, 1);
    // `one` ends: its ledger stays in the totals, its handles leave them.
    one.unload().unwrap();
    let totals = host.totals();
    assert_eq!((totals.running, totals.unloading), (1, 0));
    assert_eq!(totals.handles_by_type.values().sum::<usize>(), 2);
    assert_eq!(totals.ledger.opened, 6);
    assert_eq!(totals.ledger.released_at_unload, 3);
    // Dropped, not unloaded: the same.
    drop(two);
    let totals = host.totals();
    assert_eq!((totals.running, totals.handles_by_type.len()), (0, 0));
    assert_eq!(totals.ledger.released_at_unload, 5);
    assert_eq!(
        totals.ledger.opened,
        totals.ledger.closed_by_guest + totals.ledger.released_at_unload
    );
}
