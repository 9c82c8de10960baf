//! Leak-freedom for WASI guests (SPEC W3): a wasi-libc program that opens
//! files and directories and exits without closing them, returns without
//! closing them, traps holding them, or is aborted while blocked in
//! `fd_read` leaves the process's fd count at its baseline once its domain
//! is unloaded.
//!
//! Every test takes `serial()`: they count fds. Without clang, lld,
//! wasi-libc or a C compiler every test here is ignored with the reason.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use custody_host::{CallError, DomainConfig, Host, Module};
use custody_testkit::*;
use custody_wasi::{Stdio, WasiDomain, WasiDomainConfig};

/// Where the build script put the guests.
const GUESTS: &str = env!("CUSTODY_GUEST_DIR");

/// What leak.c holds when it ends: 10 files, 5 `opendir`s, 5 `open`s of a
/// directory.
const HELD: usize = 20;

/// The host every test uses, and the corpus (every program of
/// `guest/wasi/`, run by argv[0]) compiled once, in a debug build seconds,
/// and warmed up (so its memory image exists before a test takes its fd
/// baseline).
fn corpus() -> &'static (Host, Module) {
    static CORPUS: OnceLock<(Host, Module)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let host = host();
        let path = Path::new(GUESTS).join("wasi/corpus.wasm");
        let module = host
            .compile_file(&path)
            .unwrap_or_else(|e| panic!("corpus.wasm: {e}"));
        let module = warm(&host, module);
        (host, module)
    })
}

/// Runs leak.c ending `how` in a fresh domain; asserts it held `HELD` fds
/// when it ended, and that they are gone after the unload.
fn leaves_nothing(how: &str, ended: fn(&Result<Vec<custody_host::Val>, CallError>) -> bool) {
    let _serial = serial();
    let (host, module) = corpus();
    let dir = scratch("wasi-leak");
    let baseline = FdBaseline::now();
    let domain = host
        .create_domain(DomainConfig::new().args(["leak", how]).preopen(".", &dir))
        .unwrap();
    domain.load("leak", module).unwrap();
    let result = domain.call("_start", &[]);
    assert!(ended(&result), "{how}: {result:?}");
    assert_eq!(
        String::from_utf8_lossy(&domain.take_stdout()),
        format!("holding {HELD}\n"),
        "{how}"
    );
    assert!(
        open_fds() >= baseline.0 + HELD,
        "{how}: the guest's files are open until the unload"
    );
    let report = domain.unload().unwrap();
    assert!(
        report.released >= HELD,
        "{how}: released {}",
        report.released
    );
    baseline.assert_back(how);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
#[cfg_attr(
    no_wasi_toolchain,
    ignore = "clang, lld, wasi-libc or cc missing: see guest/wasi/README.md"
)]
fn exiting_without_closing_leaks_nothing() {
    leaves_nothing("exit", |r| matches!(r, Err(CallError::Exit(3))));
}

#[test]
#[cfg_attr(
    no_wasi_toolchain,
    ignore = "clang, lld, wasi-libc or cc missing: see guest/wasi/README.md"
)]
fn returning_without_closing_leaks_nothing() {
    leaves_nothing("return", |r| r.is_ok());
}

#[test]
#[cfg_attr(
    no_wasi_toolchain,
    ignore = "clang, lld, wasi-libc or cc missing: see guest/wasi/README.md"
)]
fn trapping_while_holding_leaks_nothing() {
    leaves_nothing("trap", |r| matches!(r, Err(CallError::Trap { .. })));
}

/// stdio.c reads stdin to its end; here stdin is a pipe whose write end
/// the test holds open, so the guest blocks in `fd_read` until the abort
/// wakes it.
#[test]
#[cfg_attr(
    no_wasi_toolchain,
    ignore = "clang, lld, wasi-libc or cc missing: see guest/wasi/README.md"
)]
fn aborted_mid_fd_read_leaks_nothing() {
    let _serial = serial();
    let (host, module) = corpus();
    let baseline = FdBaseline::now();
    let (reader, writer) = std::io::pipe().unwrap();
    let stdin = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
    let domain = host
        .create_domain(
            DomainConfig::new()
                .args(["stdio"])
                .stdin(Stdio::File(stdin)),
        )
        .unwrap();
    domain.load("stdio", module).unwrap();
    let call = {
        let domain = domain.clone();
        std::thread::spawn(move || domain.call("_start", &[]))
    };
    // stdio.c prints about 5 KB before it reads stdin: long enough to be
    // blocked in the read after this.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!call.is_finished(), "the guest waits for stdin");
    domain.abort();
    let result = call.join().unwrap();
    assert!(
        matches!(result, Err(CallError::Aborted { .. })),
        "{result:?}"
    );
    assert!(domain.take_stdout().starts_with(b"hello from stdio\n"));
    domain.unload().unwrap();
    drop(writer);
    baseline.assert_back("aborted mid-fd_read");
}
