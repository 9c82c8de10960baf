//! The `custody` ABI, function by function, from a WAT guest.
//!
//! Memory layout used by these tests: out slots at 0..64, paths at 1024..,
//! buffers at 4096...
//!
//! Every test takes `serial()`: they open fds, and some count them.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use custody_host::abi::AbiError;
use custody_host::{DomainConfig, Policy};
use custody_testkit::*;

const READ: i32 = 1;
const WRITE: i32 = 2;
const CREATE: i32 = 4;
const TRUNC: i32 = 8;

fn e(error: AbiError) -> i32 {
    error.code()
}

fn string_at(domain: &custody_host::Domain, at: i32, len: i32) -> String {
    (0..len)
        .map(|i| call(domain, "load8", &[at + i]) as u8 as char)
        .collect()
}

#[test]
fn files_open_read_write_and_close_under_a_preopen() {
    let _serial = serial();
    let dir = scratch("files");
    fs::write(dir.join("in.txt"), "hello").unwrap();
    let host = host();
    let paths = [data(1024, "data/in.txt"), data(1100, "data/out.txt")].concat();
    let (domain, _m) = driver_domain(&host, DomainConfig::new().preopen("data", &dir), &paths);

    assert_eq!(call(&domain, "abi_open", &[1024, 11, READ, 0]), 0);
    let input = call(&domain, "load", &[0]);
    assert!(input > 0);
    assert_eq!(call(&domain, "abi_read", &[input, 4096, 100, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 5);
    assert_eq!(string_at(&domain, 4096, 5), "hello");
    assert_eq!(call(&domain, "abi_read", &[input, 4096, 100, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 0, "end of file");

    assert_eq!(
        call(&domain, "abi_open", &[1100, 12, WRITE | CREATE | TRUNC, 16]),
        0
    );
    let output = call(&domain, "load", &[16]);
    assert_eq!(call(&domain, "abi_write", &[output, 4096, 5, 20]), 0);
    assert_eq!(call(&domain, "load", &[20]), 5);
    assert_eq!(call(&domain, "abi_close", &[input]), 0);
    assert_eq!(call(&domain, "abi_close", &[output]), 0);
    assert_eq!(
        call(&domain, "abi_close", &[output]),
        e(AbiError::Stale),
        "double close"
    );
    assert_eq!(fs::read_to_string(dir.join("out.txt")).unwrap(), "hello");

    let report = domain.unload().unwrap();
    assert_eq!(report.ledger.opened, 2);
    assert_eq!(report.ledger.closed_by_guest, 2);
    assert_eq!(report.ledger.released_at_unload, 0);
}

#[test]
fn paths_cannot_escape_the_preopen() {
    let _serial = serial();
    let root = scratch("escape");
    let dir = root.join("jail");
    fs::create_dir(&dir).unwrap();
    fs::write(root.join("secret.txt"), "secret").unwrap();
    fs::write(dir.join("in.txt"), "inside").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    symlink(&root, dir.join("out")).unwrap();
    symlink("in.txt", dir.join("alias")).unwrap();
    let paths = [
        data(1024, "data/../secret.txt"),        // 18
        data(1100, "data//etc/passwd"),          // 16
        data(1200, "data/out/secret.txt"),       // 19
        data(1300, "/etc/passwd"),               // 11
        data(1400, "other/in.txt"),              // 12
        data(1500, "data/alias"),                // 10
        data(1600, "data/sub/../../secret.txt"), // 25
    ]
    .concat();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new().preopen("data", &dir), &paths);
    for (at, len, what) in [
        (1024, 18, "`..`"),
        (1100, 16, "an absolute path"),
        (1200, 19, "a symlink out"),
        (1300, 11, "an absolute path with no pre-open"),
        (1400, 12, "an unknown pre-open"),
        (1600, 25, "a nested `..`"),
    ] {
        assert_eq!(
            call(&domain, "abi_open", &[at, len, READ, 0]),
            e(AbiError::Denied),
            "{what} must be denied"
        );
    }
    assert_eq!(domain.table().len(), 0, "nothing was opened");
    assert_eq!(
        call(&domain, "abi_open", &[1500, 10, READ, 0]),
        0,
        "a symlink inside is fine"
    );
    assert_eq!(
        call(
            &domain,
            "abi_read",
            &[call(&domain, "load", &[0]), 4096, 64, 8]
        ),
        0
    );
    assert_eq!(string_at(&domain, 4096, 6), "inside");
    domain.unload().unwrap();
}

#[test]
fn open_reports_bad_input_and_os_errors() {
    let _serial = serial();
    let dir = scratch("open-errors");
    let paths = [data(1024, "data/missing.txt"), data(1100, "data/\\ff\\fe")].concat();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new().preopen("data", &dir), &paths);
    assert_eq!(
        call(&domain, "abi_open", &[1024, 16, READ, 0]),
        e(AbiError::Io)
    );
    assert_eq!(call(&domain, "abi_last_error", &[]), 2, "ENOENT");
    assert_eq!(
        call(&domain, "abi_open", &[1024, 16, 0, 0]),
        e(AbiError::Inval),
        "no access"
    );
    assert_eq!(
        call(&domain, "abi_open", &[1024, 16, READ | CREATE, 0]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "abi_open", &[1024, 16, 64, 0]),
        e(AbiError::Inval),
        "unknown bit"
    );
    assert_eq!(
        call(&domain, "abi_open", &[1024, -1, READ, 0]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "abi_open", &[1100, 7, READ, 0]),
        e(AbiError::Inval),
        "not UTF-8"
    );
    assert_eq!(
        call(&domain, "abi_open", &[65530, 16, READ, 0]),
        e(AbiError::Fault)
    );
    assert_eq!(
        call(&domain, "abi_last_error", &[]),
        2,
        "only E_IO sets last_error"
    );
    domain.unload().unwrap();
}

#[test]
fn pipes_dup_and_poll() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), &data(1024, "hello"));
    assert_eq!(call(&domain, "abi_pipe", &[0, 4]), 0);
    let (r, w) = (call(&domain, "load", &[0]), call(&domain, "load", &[4]));
    assert_ne!(r, w);
    call(&domain, "store", &[100, r]);
    assert_eq!(
        call(&domain, "abi_poll", &[100, 1, 0, 8]),
        e(AbiError::TimedOut)
    );
    let start = Instant::now();
    assert_eq!(
        call(&domain, "abi_poll", &[100, 1, 50, 8]),
        e(AbiError::TimedOut)
    );
    assert!(start.elapsed() >= Duration::from_millis(45));
    assert_eq!(call(&domain, "abi_write", &[w, 1024, 5, 12]), 0);
    assert_eq!(call(&domain, "abi_poll", &[100, 1, 1000, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 0, "index 0 is ready");

    assert_eq!(call(&domain, "abi_dup", &[r, 16]), 0);
    let r2 = call(&domain, "load", &[16]);
    assert_ne!(r2, r);
    assert_eq!(call(&domain, "abi_close", &[r]), 0);
    assert_eq!(
        call(&domain, "abi_read", &[r2, 4096, 64, 20]),
        0,
        "the duplicate is independent"
    );
    assert_eq!(call(&domain, "load", &[20]), 5);
    assert_eq!(
        call(&domain, "abi_read", &[r, 4096, 64, 20]),
        e(AbiError::Stale)
    );

    // Reading the write end is the OS's EBADF.
    assert_eq!(
        call(&domain, "abi_read", &[w, 4096, 64, 20]),
        e(AbiError::Io)
    );
    assert_eq!(call(&domain, "abi_last_error", &[]), 9, "EBADF");
    // Closing every write end makes the read end readable (end of file).
    assert_eq!(call(&domain, "abi_close", &[w]), 0);
    call(&domain, "store", &[100, r2]);
    assert_eq!(call(&domain, "abi_poll", &[100, 1, 1000, 8]), 0);
    assert_eq!(call(&domain, "abi_read", &[r2, 4096, 64, 20]), 0);
    assert_eq!(call(&domain, "load", &[20]), 0);

    assert_eq!(
        call(&domain, "abi_pipe", &[0, 2]),
        e(AbiError::Inval),
        "overlapping slots"
    );
    assert_eq!(
        call(&domain, "abi_poll", &[100, 0, 0, 8]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "abi_poll", &[100, 65, 0, 8]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "abi_poll", &[100, 1, -2, 8]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "abi_poll", &[100, 1, -1, 8]),
        e(AbiError::Denied),
        "infinite"
    );
    assert_eq!(
        call(&domain, "abi_poll", &[100, 1, 10_001, 8]),
        e(AbiError::Denied),
        "over the cap"
    );
    let report = domain.unload().unwrap();
    assert_eq!(report.ledger.opened, 3);
    assert_eq!(report.released, 1, "r2 was left open");
}

#[test]
fn sleep_is_finite_and_capped() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    let start = Instant::now();
    assert_eq!(call(&domain, "abi_sleep", &[20]), 0);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(call(&domain, "abi_sleep", &[-1]), e(AbiError::Inval));
    assert_eq!(call(&domain, "abi_sleep", &[10_001]), e(AbiError::Denied));
}

#[test]
fn an_infinite_poll_is_allowed_only_when_the_policy_grants_it() {
    let _serial = serial();
    let (host, _) = host_with(Policy {
        allow_infinite_wait: true,
        ..Policy::default()
    });
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    call(&domain, "abi_pipe", &[0, 4]);
    let (r, w) = (call(&domain, "load", &[0]), call(&domain, "load", &[4]));
    call(&domain, "store", &[100, r]);
    call(&domain, "abi_close", &[w]); // end of file: readable at once
    assert_eq!(call(&domain, "abi_poll", &[100, 1, -1, 8]), 0);
}

#[test]
fn log_reaches_the_host_sink() {
    let _serial = serial();
    let (host, lines) = host_with(Policy::default());
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), &data(1024, "hello \\ff"));
    assert_eq!(call(&domain, "abi_log", &[2, 1024, 7]), 0);
    assert_eq!(call(&domain, "abi_log", &[5, 1024, 5]), e(AbiError::Inval));
    assert_eq!(call(&domain, "abi_log", &[2, 1024, -1]), e(AbiError::Inval));
    assert_eq!(call(&domain, "abi_log", &[2, 65535, 2]), e(AbiError::Fault));
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0],
        (domain.id(), 2, "hello \u{FFFD}".to_string()),
        "lossy UTF-8"
    );
}

const REGIONS: &str = r#"
(module
  (import "custody" "critical_enter" (func $enter (result i32)))
  (import "custody" "critical_exit" (func $exit (result i32)))
  ;; Two nested regions, balanced within the call: returns the four results
  ;; packed as decimal digits of their negations (0 = all succeeded).
  (func (export "nested") (result i32)
    (i32.add (i32.add (call $enter) (call $enter)) (i32.add (call $exit) (call $exit))))
  (func (export "unbalanced_exit") (result i32) (call $exit))
)
"#;

#[test]
fn critical_regions_nest_and_an_unbalanced_exit_is_inval() {
    let _serial = serial();
    let host = host();
    let module = host.compile(REGIONS.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("regions", &module).unwrap();
    assert_eq!(call(&domain, "nested", &[]), 0);
    assert_eq!(call(&domain, "unbalanced_exit", &[]), e(AbiError::Inval));
}

#[test]
fn last_error_starts_at_zero() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    assert_eq!(call(&domain, "abi_last_error", &[]), 0);
}

/// Data segments placing each path at its offset.
fn paths_at(paths: &[(i32, &str)]) -> String {
    paths.iter().map(|&(at, p)| data(at as u32, p)).collect()
}

/// `abi_open` of the path at `at` (see `paths_at`) with `flags`; the handle
/// goes to slot 0.
fn open_at(domain: &custody_host::Domain, paths: &[(i32, &str)], at: i32, flags: i32) -> i32 {
    let (_, path) = paths.iter().find(|(a, _)| *a == at).unwrap();
    call(domain, "abi_open", &[at, path.len() as i32, flags, 0])
}

/// custody.h's `..` rule: `openat2(RESOLVE_BENEATH)` resolves a `..` that
/// stays beneath the pre-open like any other component; one that steps
/// above it is `E_DENIED`, even if the path comes back inside. An absolute
/// symlink is denied even when it names a file inside.
#[test]
fn dot_dot_is_denied_only_when_it_steps_above_the_preopen() {
    let _serial = serial();
    let root = scratch("dotdot");
    let dir = root.join("jail");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("in.txt"), "inside").unwrap();
    symlink(dir.join("in.txt"), dir.join("absolute")).unwrap();
    symlink("sub/..", dir.join("up")).unwrap();
    let paths = [
        (1024, "data/sub/../in.txt"),
        (1100, "data/./sub/./../in.txt"),
        (1200, "data/up/in.txt"),
        (1300, "data/.."),
        (1400, "data/../jail/in.txt"),
        (1500, "data/sub/../../jail/in.txt"),
        (1600, "data/absolute"),
    ];
    let host = host();
    let module = warmed_module(&host, &driver(&paths_at(&paths)));
    let baseline = FdBaseline::now();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    for at in [1024, 1100, 1200] {
        assert_eq!(open_at(&domain, &paths, at, READ), 0, "{at}: stays inside");
        let h = call(&domain, "load", &[0]);
        assert_eq!(call(&domain, "abi_read", &[h, 4096, 64, 8]), 0);
        assert_eq!(string_at(&domain, 4096, 6), "inside");
        assert_eq!(call(&domain, "abi_close", &[h]), 0);
    }
    for at in [1300, 1400, 1500, 1600] {
        assert_eq!(
            open_at(&domain, &paths, at, READ),
            e(AbiError::Denied),
            "{at}: steps above the pre-open"
        );
    }
    assert_eq!(domain.unload().unwrap().ledger.opened, 3);
    baseline.assert_back("after unload");
}

/// A directory opens for reading (a read of it is `E_IO`, EISDIR); opening
/// one for writing is `E_IO` with EISDIR at once.
#[test]
fn a_directory_opens_for_reading_only_and_reads_as_eisdir() {
    let _serial = serial();
    const EISDIR: i32 = 21;
    let dir = scratch("isdir");
    fs::create_dir(dir.join("sub")).unwrap();
    let paths = [(1024, "data/sub"), (1100, "data")];
    let host = host();
    let module = warmed_module(&host, &driver(&paths_at(&paths)));
    let baseline = FdBaseline::now();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    for at in [1024, 1100] {
        for flags in [WRITE, READ | WRITE, WRITE | CREATE, WRITE | TRUNC] {
            assert_eq!(open_at(&domain, &paths, at, flags), e(AbiError::Io));
            assert_eq!(call(&domain, "abi_last_error", &[]), EISDIR);
        }
        assert_eq!(open_at(&domain, &paths, at, READ), 0, "{at}: read-only");
        let h = call(&domain, "load", &[0]);
        call(&domain, "abi_last_error", &[]);
        assert_eq!(
            call(&domain, "abi_read", &[h, 4096, 64, 8]),
            e(AbiError::Io)
        );
        assert_eq!(call(&domain, "abi_last_error", &[]), EISDIR);
        assert_eq!(call(&domain, "abi_close", &[h]), 0);
    }
    domain.unload().unwrap();
    baseline.assert_back("after unload");
}

/// A module that exports no `memory` loads; every host call that reads or
/// writes guest memory then fails with `E_FAULT` (an empty range is fine).
const NO_MEMORY: &str = r#"
(module
  (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (memory (export "mem") 1)
  (func (export "log_empty") (result i32) (call $log (i32.const 2) (i32.const 0) (i32.const 0)))
  (func (export "log_one") (result i32) (call $log (i32.const 2) (i32.const 0) (i32.const 1)))
  (func (export "pipe") (result i32) (call $pipe (i32.const 0) (i32.const 4)))
)
"#;

#[test]
fn a_module_without_a_memory_export_loads_and_every_access_faults() {
    let _serial = serial();
    let host = host();
    let module = warmed_module(&host, NO_MEMORY);
    let baseline = FdBaseline::now();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    assert_eq!(call(&domain, "log_empty", &[]), 0);
    assert_eq!(call(&domain, "log_one", &[]), e(AbiError::Fault));
    assert_eq!(call(&domain, "pipe", &[]), e(AbiError::Fault));
    let report = domain.unload().unwrap();
    assert_eq!(
        (report.ledger.opened, report.ledger.closed_by_host),
        (0, 0),
        "no pipe was made for a memory that cannot hold its ids"
    );
    assert_eq!(report.released, 0, "nothing left for the unload");
    baseline.assert_back("after unload");
}
