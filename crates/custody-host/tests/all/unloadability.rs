//! SPEC D7: the collectible-context test matrix, for domains. Cooperative
//! unloads complete when the last root goes (never polled); forced ones cut
//! what holds them; `roots()` says what holds a domain and where it came
//! from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use custody_host::{
    CallError, DomainConfig, DomainState, Host, LoadError, Policy, RootKind, UnloadReport, Val,
};
use custody_testkit::*;

/// Records the report `on_unloaded` was given.
fn watch(domain: &custody_host::Domain) -> Arc<Mutex<Option<UnloadReport>>> {
    let seen = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&seen);
    domain.on_unloaded(move |report| *sink.lock().unwrap() = Some(report.clone()));
    seen
}

#[test]
fn case_1_an_empty_domain_unloads_and_refuses_what_comes_after() {
    let _serial = serial();
    let host = host();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let weak = domain.downgrade();
    assert!(weak.upgrade().is_some());
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 0);
    assert_eq!(domain.state(), DomainState::Unloaded);
    let module = host.compile(b"(module)").unwrap();
    assert!(matches!(
        domain.load("late", &module),
        Err(LoadError::NotRunning(_))
    ));
    assert!(weak.upgrade().is_none(), "upgrade is None once unloaded");
    assert!(domain.unload().is_err(), "a second unload is an error");
}

#[test]
fn case_2_a_domain_dropped_without_unload_unloads_by_itself() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, &driver(""));
    let baseline = FdBaseline::now();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    call(&domain, "abi_pipe", &[0, 4]);
    let seen = watch(&domain);
    let weak = domain.downgrade();
    drop(domain);
    let report = seen.lock().unwrap().clone().expect("on_unloaded ran");
    assert_eq!(report.released, 2);
    assert!(weak.upgrade().is_none());
    assert_eq!(host.domains().len(), 0, "the registry forgot it");
    baseline.assert_back("an implicit unload");
}

#[test]
fn case_3_one_then_two_modules_unload_and_the_fds_come_back() {
    let _serial = serial();
    let host = host();
    let first = warmed_module(&host, &driver(""));
    let second = warmed_module(
        &host,
        r#"(module (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "two") (result i32) (call $pipe (i32.const 0) (i32.const 4))))"#,
    );
    let baseline = FdBaseline::now();
    for modules in [1, 2] {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("main", &first).unwrap();
        call(&domain, "abi_pipe", &[0, 4]);
        if modules == 2 {
            domain.load("second", &second).unwrap();
            assert_eq!(call(&domain, "two", &[]), 0);
        }
        let report = domain.unload().unwrap();
        assert_eq!(report.released, 2 * modules);
    }
    baseline.assert_back("one and two modules");
}

#[test]
fn case_4_a_strong_ref_blocks_completion_until_it_is_dropped() {
    let _serial = serial();
    let host = host();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let r = domain.strong_ref("cache entry").unwrap();
    let roots = domain.roots();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let ticket = domain.begin_unload().unwrap();
    assert!(domain.strong_ref("late").is_err(), "refused once unloading");
    let blocked = ticket.wait(Duration::from_millis(50)).unwrap_err();
    let root = &blocked.roots[0];
    assert_eq!(root.kind, RootKind::Ref);
    assert_eq!(root.label, "cache entry");
    let site = root.site.as_deref().unwrap();
    assert!(
        site.contains("unloadability.rs"),
        "the creation site: {site}"
    );
    assert!(blocked.to_string().contains("cache entry"), "{blocked}");
    let seen = watch(&domain);
    let dropped = Instant::now();
    drop(r);
    // Completed by the drop itself: no polling.
    assert!(seen.lock().unwrap().is_some(), "completed at the drop");
    assert!(dropped.elapsed() < Duration::from_millis(100));
    assert!(ticket.wait(Duration::ZERO).is_ok());
    assert_eq!(domain.state(), DomainState::Unloaded);
}

#[test]
fn case_5_a_dependent_domain_completes_after_its_holder() {
    let _serial = serial();
    let host = host();
    let a = host.create_domain(DomainConfig::new()).unwrap();
    let b = host.create_domain(DomainConfig::new()).unwrap();
    let forwarder = b.strong_ref_for(&a, "a forwards to b").unwrap();
    let b_ticket = b.begin_unload().unwrap();
    let blocked = b_ticket.wait(Duration::from_millis(20)).unwrap_err();
    assert_eq!(blocked.roots[0].kind, RootKind::Dependent);
    assert_eq!(blocked.roots[0].holder, Some(a.id()));
    a.unload().unwrap();
    let report = b_ticket
        .wait(Duration::from_secs(1))
        .expect("b completes after a");
    assert_eq!(report.domain, b.id());
    assert!(matches!(
        forwarder.call("anything", &[]),
        Err(CallError::NotRunning(_))
    ));
}

#[test]
fn case_6_a_memory_view_roots_the_domain_until_dropped() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, &driver(&data(64, "hello")));
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let view = domain.memory_view("thumbnail buffer").unwrap();
    assert_eq!(view.read(64, 5).as_deref(), Some(&b"hello"[..]));
    assert!(view.read(usize::MAX, 2).is_none(), "out of range");
    let ticket = domain.begin_unload().unwrap();
    let blocked = ticket.wait(Duration::from_millis(20)).unwrap_err();
    assert_eq!(blocked.roots[0].kind, RootKind::MemoryView);
    assert_eq!(blocked.roots[0].label, "thumbnail buffer");
    drop(view);
    assert!(ticket.wait(Duration::from_secs(1)).is_ok());
}

const SPINNER: &str = r#"(module
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $spin_here (loop $l (br $l)))
  (func (export "spin") (call $spin_here))
  (func (export "nap") (param i32) (result i32) (call $sleep (local.get 0))))"#;

#[test]
fn case_7_a_call_in_flight_finishes_under_a_cooperative_unload_and_is_cut_by_a_forced_one() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, SPINNER);
    // Cooperative: the call runs to its end, then the unload completes.
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let napping = {
        let domain = domain.clone();
        thread::spawn(move || domain.call("nap", &[Val::I32(300)]))
    };
    thread::sleep(Duration::from_millis(50));
    let ticket = domain.begin_unload().unwrap();
    assert!(
        ticket.wait(Duration::from_millis(50)).is_err(),
        "the call holds it"
    );
    assert_eq!(
        napping.join().unwrap().unwrap()[0].unwrap_i32(),
        0,
        "it finished"
    );
    assert!(ticket.wait(Duration::from_secs(1)).is_ok());

    // Forced: a spinning guest and a sleeping one are cut at once.
    for (export, args) in [("spin", vec![]), ("nap", vec![Val::I32(5000)])] {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("main", &module).unwrap();
        let running = {
            let domain = domain.clone();
            thread::spawn(move || domain.call(export, &args))
        };
        thread::sleep(Duration::from_millis(50));
        let roots = domain.roots();
        assert_eq!(roots[0].kind, RootKind::Call);
        if export == "spin" {
            let stack = roots[0].stack.as_deref().unwrap();
            assert!(stack.contains("spin_here"), "the live stack: {stack}");
        }
        let forced = Instant::now();
        let report = domain.force_unload().unwrap();
        let result = running.join().unwrap();
        assert!(forced.elapsed() < Duration::from_millis(500), "{export}");
        assert!(
            matches!(result, Err(CallError::Aborted { .. })),
            "{result:?}"
        );
        let cut = report.forced.expect("forced");
        assert!(cut.roots_cut[0].contains(export), "{cut:?}");
    }
}

/// A guest that arms a timer calling `tick` (which counts in memory at 0)
/// and, if `$close_in_hook`, closes it in its unloading hook.
fn ticker(close_in_hook: bool) -> String {
    let hook = if close_in_hook {
        "(drop (call $close (i32.load (i32.const 8))))"
    } else {
        ""
    };
    format!(
        r#"(module
          (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
          (import "custody" "close" (func $close (param i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "tick")
          (func $arm_here (param i32 i32) (result i32)
            (call $timer_set (local.get 0) (local.get 1) (i32.const 64) (i32.const 4) (i32.const 8)))
          (func (export "arm") (param i32 i32) (result i32) (call $arm_here (local.get 0) (local.get 1)))
          (func (export "tick") (param i32)
            (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
          (func (export "ticks") (result i32) (i32.load (i32.const 0)))
          (func (export "bad") (result i32)
            (call $timer_set (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 3) (i32.const 8)))
          (func (export "custody_unloading") {hook}))"#
    )
}

#[test]
fn case_8_a_timer_not_closed_by_the_hook_blocks_the_unload() {
    let _serial = serial();
    let host = host();
    let (leaky, tidy) = (
        warmed_module(&host, &ticker(false)),
        warmed_module(&host, &ticker(true)),
    );
    let baseline = FdBaseline::now();
    // A periodic timer calls its export, as an ordinary call.
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &leaky).unwrap();
    assert_eq!(
        call(&domain, "bad", &[]),
        custody_host::AbiError::Inval.code(),
        "no export `tic`"
    );
    assert_eq!(call(&domain, "arm", &[5, 5]), 0);
    let started = Instant::now();
    while call(&domain, "ticks", &[]) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the timer never fired"
        );
        thread::sleep(Duration::from_millis(5));
    }
    // Its hook does not close it: the timer holds the unload, and the
    // report names it with the guest stack that armed it.
    let ticket = domain.begin_unload().unwrap();
    let blocked = ticket.wait(Duration::from_millis(50)).unwrap_err();
    let timer = blocked
        .roots
        .iter()
        .find(|r| r.kind == RootKind::Timer)
        .expect("the timer is a root");
    assert_eq!(timer.label, "tick");
    let armed_at = timer.site.as_deref().unwrap();
    assert!(
        armed_at.contains("arm_here"),
        "the guest stack that armed it: {armed_at}"
    );
    // A forced unload disarms it.
    let report = ticket.force();
    assert!(report.forced.is_some());
    assert_eq!(domain.state(), DomainState::Unloaded);
    assert!(matches!(
        domain.call("ticks", &[]),
        Err(CallError::NotRunning(_))
    ));

    // A hook that closes its timer lets the unload complete by itself.
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &tidy).unwrap();
    assert_eq!(call(&domain, "arm", &[1000, 0]), 0);
    assert_eq!(domain.roots()[0].kind, RootKind::Timer);
    let report = domain.begin_unload().unwrap().wait(Duration::from_secs(1));
    assert!(report.is_ok(), "completed once the hook closed the timer");
    baseline.assert_back("timers");
}

#[test]
fn case_9_a_file_the_guest_opened_can_be_removed_after_unload() {
    let _serial = serial();
    let host = host();
    let dir = scratch("d7-file");
    std::fs::write(dir.join("in.txt"), "x").unwrap();
    let module = warmed_module(&host, &driver(&data(1024, "data/in.txt")));
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    assert_eq!(call(&domain, "abi_open", &[1024, 11, 1, 0]), 0);
    domain.unload().unwrap();
    let target = dir.join("in.txt").canonicalize().unwrap();
    let still_open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|link| link == target || link == dir);
    assert!(!still_open, "no fd left on the file or its directory");
    std::fs::remove_file(dir.join("in.txt")).unwrap();
    std::fs::remove_dir(&dir).unwrap();
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

#[test]
fn case_10_a_thousand_domains_come_and_go_without_a_trace() {
    let _serial = serial();
    let host = Host::new(Policy::default()).unwrap();
    let module = warmed_module(&host, &driver(""));
    let cycle = |host: &Host| {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("main", &module).unwrap();
        call(&domain, "abi_pipe", &[0, 4]);
        domain.unload().unwrap();
    };
    for _ in 0..300 {
        cycle(&host); // warm the allocator and the pool
    }
    let (baseline, resident) = (FdBaseline::now(), resident_bytes());
    let cached = host.cached_modules();
    for _ in 0..1000 {
        cycle(&host);
    }
    baseline.assert_back("1,000 domains");
    let grown = resident_bytes().saturating_sub(resident);
    assert!(grown < 1 << 20, "RSS grew by {grown} bytes");
    assert_eq!(host.domains().len(), 0, "the registry is empty");
    assert_eq!(
        host.cached_modules(),
        cached,
        "the module cache is unchanged"
    );
}

#[test]
fn case_11_an_embedder_function_that_never_returns_is_abandoned() {
    let _serial = serial();
    let (release, wait) = mpsc::channel::<()>();
    let wait = Arc::new(Mutex::new(wait));
    let returned = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&returned);
    let host = Host::builder(Policy {
        unload_grace: Duration::from_millis(200),
        ..Policy::default()
    })
    .func_wrap(
        "env",
        "stuck",
        &[],
        move |_call: &mut custody_host::GuestCall<'_>| {
            // Waits outside custody: neither the deadline nor the signal reach it.
            let _ = wait.lock().unwrap().recv();
            flag.store(true, Ordering::SeqCst);
            Ok(0i32)
        },
    )
    .build()
    .unwrap();
    let module = host
        .compile(
            br#"(module (import "env" "stuck" (func $stuck (result i32)))
                 (func (export "run") (result i32) (call $stuck)))"#,
        )
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let stuck = {
        let domain = domain.clone();
        thread::spawn(move || domain.call("run", &[]))
    };
    thread::sleep(Duration::from_millis(50));
    let forced = Instant::now();
    let report = domain.force_unload().unwrap();
    assert!(forced.elapsed() < Duration::from_secs(2));
    let abandoned = report
        .forced
        .unwrap()
        .abandoned
        .expect("reported abandoned");
    assert!(abandoned.contains("run"), "{abandoned}");
    assert_eq!(domain.state(), DomainState::Unloaded);
    assert!(!returned.load(Ordering::SeqCst));
    release.send(()).unwrap();
    let _ = stuck.join().unwrap();
    assert!(returned.load(Ordering::SeqCst));
}

#[test]
fn views_show_the_roots_the_modules_and_the_memory_of_each_domain() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, &driver(""));
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let r = domain.strong_ref("view test").unwrap();
    let info = domain.info();
    assert_eq!(info.modules, ["main"]);
    assert_eq!(info.roots, 1);
    assert_eq!(info.roots_by_kind.get("Ref"), Some(&1));
    assert_eq!(info.memory_bytes, Some(64 * 1024), "one page");
    let listed = host.domains();
    assert_eq!(listed.len(), 1);
    let json = serde_json::to_value(&listed).unwrap();
    assert_eq!(json[0]["roots_by_kind"]["Ref"], 1, "{json}");
    drop(r);
    domain.unload().unwrap();
    assert!(host.domains().is_empty());
}

#[test]
fn an_unload_begun_while_the_store_is_busy_completes_when_it_is_given_back() {
    let _serial = serial();
    let host = Arc::new(host());
    // A load whose start function sleeps holds the store (and is a root).
    let slow = host
        .compile(
            br#"(module (import "custody" "sleep" (func $sleep (param i32) (result i32)))
                 (func $start (drop (call $sleep (i32.const 100)))) (start $start))"#,
        )
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let loading = {
        let (domain, slow) = (domain.clone(), slow.clone());
        thread::spawn(move || domain.load("slow", &slow))
    };
    thread::sleep(Duration::from_millis(30));
    let ticket = domain.begin_unload().unwrap();
    assert!(
        loading.join().unwrap().is_ok(),
        "the load in flight finishes"
    );
    assert!(
        ticket.wait(Duration::from_secs(2)).is_ok(),
        "then the unload completes"
    );
    assert!(matches!(
        domain.load("late", &slow),
        Err(LoadError::NotRunning(_))
    ));

    // Views of the domains hold their stores for a moment, over and over:
    // an unload begun meanwhile still completes.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (host, stop) = (Arc::clone(&host), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(host.domains());
            }
        })
    };
    for _ in 0..300 {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        let ticket = domain.begin_unload().unwrap();
        assert!(
            ticket.wait(Duration::from_secs(2)).is_ok(),
            "an event was lost"
        );
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
}

#[test]
fn timers_are_bounded_by_the_wait_cap_and_the_handle_quota() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        handle_quota: 3,
        ..Policy::default()
    });
    let module = warmed_module(&host, &ticker(true));
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let denied = custody_host::AbiError::Denied.code();
    assert_eq!(
        call(&domain, "arm", &[20_000, 0]),
        denied,
        "a delay past max_wait"
    );
    assert_eq!(
        call(&domain, "arm", &[0, 20_000]),
        denied,
        "a period past max_wait"
    );
    for _ in 0..3 {
        assert_eq!(call(&domain, "arm", &[5_000, 5_000]), 0);
    }
    assert_eq!(
        call(&domain, "arm", &[5_000, 5_000]),
        custody_host::AbiError::Quota.code(),
        "a timer is a handle: the quota holds"
    );
    assert_eq!(domain.roots().len(), 3, "one root a timer");
    domain.force_unload().unwrap();
}
