//! The C guest examples in `guest/examples/`, built with clang + lld by
//! `guest/build.sh` and run here.
//!
//! Without clang the tests are skipped with a note, so `cargo test` works on
//! a machine with only the Rust toolchain; CI installs clang and lld and sets
//! `CUSTODY_REQUIRE_GUESTS=1`, which turns a missing toolchain into a failure.
//!
//! Every test takes `serial()`: they open fds and some count them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use custody_host::{CallError, DomainConfig, HookOutcome, Module};
use custody_testkit::*;

/// Builds the examples once per test binary; `None` if clang is missing.
fn guests() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let out = std::env::temp_dir().join(format!("custody-guests-{}", std::process::id()));
            let status = Command::new("bash")
                .arg(root.join("guest/build.sh"))
                .env("CUSTODY_GUEST_OUT", &out)
                .status();
            match status {
                Ok(s) if s.success() => Some(out),
                _ if std::env::var_os("CUSTODY_REQUIRE_GUESTS").is_some() => {
                    panic!("CUSTODY_REQUIRE_GUESTS is set but guest/build.sh failed (clang and lld installed?)")
                }
                _ => {
                    eprintln!("skipped: guest/build.sh failed (install clang and lld to run the C examples)");
                    None
                }
            }
        })
        .as_deref()
}

fn load(host: &custody_host::Host, name: &str) -> Option<Module> {
    let path = guests()?.join(format!("{name}.wasm"));
    let module = host
        .compile_file(&path)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Some(warm(host, module))
}

#[test]
fn copy_copies_a_file_inside_its_preopen() {
    let _serial = serial();
    let host = host();
    let Some(module) = load(&host, "copy") else {
        return;
    };
    let dir = scratch("c-copy");
    let contents = "x".repeat(10_000);
    std::fs::write(dir.join("in.txt"), &contents).unwrap();
    let baseline = open_fds();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    domain.load("copy", &module).unwrap();
    assert_eq!(call(&domain, "copy", &[]), 10_000);
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        contents
    );
    let report = domain.unload().unwrap();
    assert_eq!(
        (report.ledger.opened, report.ledger.closed_by_guest),
        (2, 2)
    );
    assert_eq!(open_fds(), baseline);
}

#[test]
fn pipe_echo_round_trips_through_a_pipe() {
    let _serial = serial();
    let host = host();
    let Some(module) = load(&host, "pipe_echo") else {
        return;
    };
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("echo", &module).unwrap();
    for n in [0, 1, 100, 1024] {
        assert_eq!(call(&domain, "echo", &[n]), n);
    }
    assert_eq!(call(&domain, "echo", &[1025]), -11, "E_INVAL");
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 0, "echo closes what it opens");
}

#[test]
fn leaky_leaks_nothing_past_its_domain() {
    let _serial = serial();
    let (host, lines) = host_with(custody_host::Policy::default());
    let Some(module) = load(&host, "leaky") else {
        return;
    };
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("leaky", &module).unwrap();
    assert_eq!(call(&domain, "leak", &[5]), 5);
    assert_eq!(open_fds(), baseline + 10);
    let report = domain.unload().unwrap();
    assert_eq!(report.hook, HookOutcome::Completed);
    assert_eq!(report.released, 10);
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(d, _, _)| *d == domain.id()),
        "the hook logged"
    );
    assert_eq!(open_fds(), baseline);
}

#[test]
fn trap_aborts_the_call_and_the_unload_releases_its_pipe() {
    let _serial = serial();
    let host = host();
    let Some(module) = load(&host, "trap") else {
        return;
    };
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("trap", &module).unwrap();
    assert!(matches!(
        domain.call("open_then_trap", &[]),
        Err(CallError::Trap { .. })
    ));
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 2);
    assert_eq!(open_fds(), baseline);
}
