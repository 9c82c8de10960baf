//! Errors keep their causes as errors, not only as text: each kind's
//! `std::error::Error::source()` chain reaches the original (the OS's
//! `io::Error`, wasmtime's or the text parser's error, the `wasmtime::Trap`,
//! the `Interrupt`, the failed call an escalation ended a domain for, the
//! policy's error), while its `Display` says what it said before. Every
//! test is serial: one counts the process's fds.

use std::error::Error;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use custody_handle::{Fd, HandleId};
use custody_host::{
    Action, CallError, DomainConfig, DomainState, EndCause, Escalation, HostError, Interrupt,
    LoadError, Manifest, ManifestError, NotRunning, PinError, Policy, PolicyError, RefError,
    UnloadError,
};
use custody_testkit::*;
use wasmtime::Trap;

const BOOM: &str = r#"(module
  (func (export "boom") unreachable)
  (func (export "spin") (loop $l (br $l))))"#;

/// Every error in `error`'s chain after itself, outermost first.
fn sources<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = error.source();
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    chain
}

/// The first error of type `E` in `error`'s chain (itself excluded).
fn find<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    sources(error)
        .into_iter()
        .find_map(|e| e.downcast_ref::<E>())
}

#[test]
fn a_missing_module_file_keeps_the_os_error() {
    let _serial = serial();
    let host = host();
    let error = host
        .compile_file("/nonexistent/custody/plugin.wasm")
        .unwrap_err();
    assert!(matches!(error, LoadError::Read { .. }), "{error}");
    let io = error
        .source()
        .and_then(|e| e.downcast_ref::<io::Error>())
        .expect("the io::Error is the source");
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        error.to_string(),
        format!("cannot read /nonexistent/custody/plugin.wasm: {io}")
    );
}

#[test]
fn a_malformed_module_keeps_the_parser_s_or_wasmtime_s_error() {
    let _serial = serial();
    let host = host();
    // Text that does not parse: the text parser's own error.
    let error = host.compile(b"(module (func").unwrap_err();
    let LoadError::Malformed { message, .. } = &error else {
        panic!("expected Malformed, got {error:?}");
    };
    let wat = error
        .source()
        .and_then(|e| e.downcast_ref::<wat::Error>())
        .expect("the wat::Error is the source");
    assert_eq!(message, &format!("{wat:#}"));
    assert_eq!(error.to_string(), format!("malformed module: {message}"));
    // A module that parses but does not validate: wasmtime's error.
    let error = host
        .compile(br#"(module (func (export "f") (result i32)))"#)
        .unwrap_err();
    let LoadError::Malformed { message, .. } = &error else {
        panic!("expected Malformed, got {error:?}");
    };
    let source = error.source().expect("wasmtime's error is the source");
    assert!(
        message.starts_with(&source.to_string()),
        "{message} / {source}"
    );
}

#[test]
fn a_trap_keeps_the_wasmtime_trap_and_an_abort_its_interrupt() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(50)),
        ..Policy::default()
    });
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain
        .load("main", &host.compile(BOOM.as_bytes()).unwrap())
        .unwrap();

    let error = domain.call("boom", &[]).unwrap_err();
    let CallError::Trap { message, .. } = &error else {
        panic!("expected Trap, got {error:?}");
    };
    let trap = error.source().and_then(|e| e.downcast_ref::<Trap>());
    assert_eq!(trap, Some(&Trap::UnreachableCodeReached));
    assert_eq!(message, &Trap::UnreachableCodeReached.to_string());
    assert_eq!(error.to_string(), format!("boom trapped: {message}"));

    let error = domain.call("spin", &[]).unwrap_err();
    let CallError::Aborted { reason, .. } = &error else {
        panic!("expected Aborted, got {error:?}");
    };
    let interrupt = error.source().and_then(|e| e.downcast_ref::<Interrupt>());
    assert_eq!(
        interrupt,
        Some(&Interrupt::Deadline(Duration::from_millis(50)))
    );
    assert_eq!(reason, "the deadline of 50ms passed");
    assert_eq!(error.to_string(), format!("spin was aborted: {reason}"));
}

#[test]
fn a_domain_an_escalation_ended_keeps_the_failed_call_as_the_cause() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        escalation: Escalation {
            outside_critical: Action::UnloadDomain,
            inside_critical: Action::UnloadDomain,
            orphaned_critical: Action::UnloadDomain,
            ..Escalation::default()
        },
        ..Policy::default()
    });
    let module = warm(&host, host.compile(BOOM.as_bytes()).unwrap());
    let baseline = FdBaseline::now();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let id = domain.id();

    let escalated = domain.call("boom", &[]).unwrap_err();
    assert!(
        matches!(escalated, CallError::Escalated { .. }),
        "{escalated}"
    );
    let failure = escalated
        .source()
        .and_then(|e| e.downcast_ref::<Arc<CallError>>())
        .expect("the failed call is the source");
    assert!(matches!(**failure, CallError::Trap { .. }), "{failure}");
    assert_eq!(
        find::<Trap>(&escalated),
        Some(&Trap::UnreachableCodeReached)
    );
    assert_eq!(domain.state(), DomainState::Unloaded);

    // Every later call, load and unload says why, as text and as a source.
    let trap_text = Trap::UnreachableCodeReached.to_string();
    let cause = format!("unloaded: its call to boom failed: {trap_text}");
    let later = domain.call("boom", &[]).unwrap_err();
    let CallError::NotRunning(not_running) = &later else {
        panic!("expected NotRunning, got {later:?}");
    };
    assert_eq!(not_running.state, DomainState::Unloaded);
    assert_eq!(
        later.to_string(),
        format!("domain {id} is Unloaded: it takes no calls ({cause})")
    );
    let end = later
        .source()
        .and_then(|e| e.downcast_ref::<EndCause>())
        .expect("the EndCause is the source");
    assert_eq!(end.description(), cause);
    assert!(
        matches!(end.failure(), Some(CallError::Trap { .. })),
        "{end}"
    );
    assert_eq!(find::<Trap>(&later), Some(&Trap::UnreachableCodeReached));

    let load = domain.load("again", &module).unwrap_err();
    assert!(matches!(load, LoadError::NotRunning(_)), "{load}");
    assert_eq!(
        load.to_string(),
        format!("domain {id} is Unloaded ({cause})")
    );
    assert_eq!(find::<Trap>(&load), Some(&Trap::UnreachableCodeReached));

    let unload = domain.unload().unwrap_err();
    assert!(matches!(unload, UnloadError::NotRunning(_)), "{unload}");
    assert_eq!(
        unload.to_string(),
        format!("domain {id} is already Unloaded ({cause})")
    );
    assert!(find::<EndCause>(&unload).is_some(), "{unload}");
    drop(domain);
    baseline.assert_back("an escalation's errors");
}

#[test]
fn refs_views_and_pins_of_a_domain_that_no_longer_runs_are_their_own_errors() {
    let _serial = serial();
    let host = host();
    let (holder, _) = driver_domain(&host, DomainConfig::new(), "");
    let baseline = FdBaseline::now();
    let (domain, _module) = driver_domain(&host, DomainConfig::new(), "");
    let (read, write) = io::pipe().unwrap();
    let id = domain
        .insert_handle(Fd::from(std::os::fd::OwnedFd::from(read)))
        .unwrap();
    drop(write);
    holder.unload().unwrap();
    let error = domain.strong_ref_for(&holder, "dependent").unwrap_err();
    assert!(
        matches!(error, RefError::HolderNotRunning { holder: h, state: DomainState::Unloaded } if h == holder.id()),
        "{error}"
    );
    // A ref holds the domain `Unloading`: its handles are still there.
    let held = domain.strong_ref("held").unwrap();
    let ticket = domain.begin_unload().unwrap();
    let domain_id = domain.id();
    for error in [
        domain.strong_ref("ref").map(drop).unwrap_err(),
        domain.memory_view("view").map(drop).unwrap_err(),
    ] {
        let RefError::NotRunning(NotRunning { domain, state, .. }) = &error else {
            panic!("expected NotRunning, got {error:?}");
        };
        assert_eq!((*domain, *state), (domain_id, DomainState::Unloading));
        assert_eq!(
            error.to_string(),
            format!("domain {domain_id} is Unloading: it takes no new refs")
        );
        assert!(error.source().is_none(), "no escalation ended it");
    }
    let error = domain.pin_handle::<Fd>(id, "late").map(drop).unwrap_err();
    assert!(
        matches!(
            &error,
            PinError::NotRunning(NotRunning {
                state: DomainState::Unloading,
                ..
            })
        ),
        "{error}"
    );
    let error = domain
        .pin_handle::<Fd>(HandleId::NULL, "null")
        .map(drop)
        .unwrap_err();
    assert!(matches!(error, PinError::Handle(_)), "{error}");
    drop(held);
    ticket.wait(Duration::from_secs(5)).unwrap();
    drop(domain);
    baseline.assert_back("refs refused");
}

#[test]
fn a_manifest_error_keeps_the_policy_s_and_the_os_s_error() {
    let _serial = serial();
    let host = host();
    let error = Manifest::from_file("/nonexistent/custody/manifest.toml").unwrap_err();
    assert!(matches!(error, ManifestError::Read { .. }), "{error}");
    let io = find::<io::Error>(&error).expect("the io::Error is the source");
    assert_eq!(io.kind(), io::ErrorKind::NotFound);

    let dir = scratch("error-sources-manifest");
    std::fs::write(dir.join("main.wat"), BOOM).unwrap();
    let manifest = Manifest::from_toml(
        "[[module]]\nname = \"main\"\npath = \"main.wat\"\n[policy]\ndeadline_ms = 0",
        &dir,
    )
    .unwrap();
    let error = host.create_domain_from_manifest(&manifest).unwrap_err();
    assert!(matches!(error, ManifestError::Policy { .. }), "{error}");
    let policy = find::<PolicyError>(&error).expect("the PolicyError is the source");
    assert_eq!(error.to_string(), format!("manifest: [policy]: {policy}"));

    // A module that does not compile: manifest -> load -> parser.
    std::fs::write(dir.join("main.wat"), "(module (func").unwrap();
    let manifest =
        Manifest::from_toml("[[module]]\nname = \"main\"\npath = \"main.wat\"", &dir).unwrap();
    let error = host.create_domain_from_manifest(&manifest).unwrap_err();
    let load = error
        .source()
        .and_then(|e| e.downcast_ref::<LoadError>())
        .expect("the LoadError is the source");
    assert!(matches!(load, LoadError::Malformed { .. }), "{load}");
    assert!(find::<wat::Error>(&error).is_some(), "{error}");

    // A TOML error keeps the parser's.
    let error = Manifest::from_toml("[[module]\n", &dir).unwrap_err();
    assert!(matches!(error, ManifestError::Parse { .. }), "{error}");
    assert!(find::<toml::de::Error>(&error).is_some(), "{error}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An extension whose state cannot be made for a domain.
struct Refusing;

impl custody_host::extension::Extension for Refusing {
    fn module(&self) -> &'static str {
        "refusing"
    }
    fn functions(&self) -> &'static [custody_host::HostFunction] {
        &[]
    }
    fn new_domain(
        &self,
        _setup: &custody_host::extension::DomainSetup<'_>,
    ) -> Result<custody_host::extension::ExtensionState, Box<dyn Error + Send + Sync>> {
        Err(Box::new(io::Error::from(io::ErrorKind::PermissionDenied)))
    }
}

#[test]
fn an_extension_that_cannot_serve_a_domain_keeps_its_error() {
    let _serial = serial();
    quiet();
    let host = custody_host::Host::builder(custody_host::Policy::default())
        .extension(Refusing)
        .build()
        .unwrap();
    let error = host.create_domain(DomainConfig::new()).unwrap_err();
    assert!(
        matches!(
            error,
            HostError::Extension {
                module: "refusing",
                ..
            }
        ),
        "{error}"
    );
    let io = find::<io::Error>(&error).expect("the extension's error is the source");
    assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn a_host_function_defined_twice_is_an_engine_error_naming_it() {
    let _serial = serial();
    quiet();
    let body =
        |_: &mut custody_host::GuestCall<'_>| -> Result<(), custody_host::AbiError> { Ok(()) };
    let error = custody_host::Host::builder(custody_host::Policy::default())
        .func_wrap("env", "twice", &[], body)
        .func_wrap("env", "twice", &[], body)
        .build()
        .err()
        .expect("a name defined twice is refused");
    assert!(
        matches!(&error, HostError::Engine { message, source: None } if message.contains("env::twice")),
        "{error}"
    );
}

#[test]
fn a_host_error_keeps_the_os_error() {
    let _serial = serial();
    let host = host();
    let error = host
        .create_domain(DomainConfig::new().preopen("x", "/nonexistent/custody/dir"))
        .unwrap_err();
    assert!(matches!(error, HostError::Preopen { .. }), "{error}");
    let io = find::<io::Error>(&error).expect("the io::Error is the source");
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
}
