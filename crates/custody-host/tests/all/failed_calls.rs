//! A call that fails has not acted (issue 16): every host function checks
//! its pointer ranges, its out slots and the room for the handles it gives
//! before it makes, opens, creates, truncates or consumes anything, so the
//! only failure after acting is the OS's own. Each test shows a failed call
//! left nothing behind: no file created or truncated, no connection taken,
//! no fd opened, and a ledger the host never had to correct
//! (`closed_by_host == 0`). (A module without a memory, where every out
//! slot faults, is in `abi.rs`.)
//!
//! Every test takes `serial()`: they count the process's open fds.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use custody_handle::{Fd, HandleError};
use custody_host::abi::{AbiError, MAX_IO};
use custody_host::{Domain, DomainConfig, Ledger, Policy, Val};
use custody_testkit::*;
use custody_wasi::WasiDomainConfig;

const WRITE: i32 = 2;
const CREATE: i32 = 4;
const TRUNC: i32 = 8;
/// The end of the driver's one page of memory.
const END: i32 = 65536;

fn e(error: AbiError) -> i32 {
    error.code()
}

/// A host whose domains hold at most `quota` handles.
fn host_with_quota(quota: usize) -> custody_host::Host {
    host_with(Policy {
        handle_quota: quota,
        ..Policy::default()
    })
    .0
}

/// A scratch directory with `keep` (whose content must survive) in it.
fn dir_with_kept_file(tag: &str) -> std::path::PathBuf {
    let dir = scratch(tag);
    std::fs::write(dir.join("keep"), "intact").unwrap();
    dir
}

/// The directory is as it was made: no `new`, `keep` untouched.
fn assert_untouched(dir: &Path) {
    assert!(!dir.join("new").exists(), "a failed open created the file");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep")).unwrap(),
        "intact",
        "a failed open truncated the file"
    );
}

fn assert_never_taken_back(ledger: Ledger) {
    assert_eq!(
        ledger.closed_by_host, 0,
        "a failed call made a handle the host had to close again: {ledger:?}"
    );
}

/// Paths for the driver: `d/new` at 1024, `d/keep` at 1100.
fn paths() -> String {
    data(1024, "d/new") + &data(1100, "d/keep")
}

#[test]
fn abi_calls_with_a_bad_out_slot_make_nothing() {
    let _serial = serial();
    let dir = dir_with_kept_file("bad-out-slot");
    let host = host();
    let (domain, _module) = driver_domain(&host, DomainConfig::new().preopen("d", &dir), &paths());
    let baseline = open_fds();
    let fault = e(AbiError::Fault);
    for out in [END - 2, END, -1] {
        assert_eq!(
            call(&domain, "abi_open", &[1024, 5, WRITE | CREATE, out]),
            fault
        );
        assert_eq!(
            call(&domain, "abi_open", &[1100, 6, WRITE | TRUNC, out]),
            fault
        );
        assert_eq!(call(&domain, "abi_pipe", &[0, out]), fault);
        assert_eq!(call(&domain, "abi_pipe", &[out, 0]), fault);
    }
    assert_untouched(&dir);
    assert_eq!(open_fds(), baseline, "no pipe or file was opened");
    assert_eq!(domain.ledger().opened, 0);

    assert_eq!(call(&domain, "abi_pipe", &[0, 4]), 0);
    let read_end = call(&domain, "load", &[0]);
    assert_eq!(call(&domain, "abi_dup", &[read_end, END - 3]), fault);
    assert_eq!(open_fds(), baseline + 2, "no duplicate was made");
    let ledger = domain.ledger();
    assert_eq!(ledger.opened, 2, "only the pipe: {ledger:?}");
    assert_never_taken_back(ledger);
    assert_never_taken_back(domain.unload().unwrap().ledger);
}

#[test]
fn abi_calls_with_no_room_for_their_handles_make_nothing() {
    let _serial = serial();
    let dir = dir_with_kept_file("no-room");
    let host = host_with_quota(2);
    let (domain, _module) = driver_domain(&host, DomainConfig::new().preopen("d", &dir), &paths());
    let baseline = open_fds();
    let quota = e(AbiError::Quota);
    assert_eq!(call(&domain, "abi_pipe", &[0, 4]), 0, "the quota is full");
    let (read_end, write_end) = (call(&domain, "load", &[0]), call(&domain, "load", &[4]));
    assert_eq!(
        call(&domain, "abi_open", &[1024, 5, WRITE | CREATE, 8]),
        quota
    );
    assert_eq!(
        call(&domain, "abi_open", &[1100, 6, WRITE | TRUNC, 8]),
        quota
    );
    assert_eq!(call(&domain, "abi_dup", &[read_end, 8]), quota);
    assert_untouched(&dir);
    // Room for one handle: a pipe needs two, and makes neither.
    assert_eq!(call(&domain, "abi_close", &[write_end]), 0);
    assert_eq!(call(&domain, "abi_pipe", &[16, 20]), quota);
    assert_eq!(open_fds(), baseline + 1, "the read end, and nothing else");
    let ledger = domain.ledger();
    assert_eq!(
        (ledger.opened, ledger.closed_by_guest),
        (2, 1),
        "{ledger:?}"
    );
    assert_never_taken_back(ledger);
    domain.unload().unwrap();
}

/// A module with 2 MiB of memory (larger than the most one call moves),
/// `out` created beneath the pre-open `d` by `open_out`.
const BIG_MEMORY: &str = r#"
(module
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 32)
  (data (i32.const 1024) "d/out")
  (func (export "open_out") (result i32)
    (drop (call $open (i32.const 1024) (i32.const 5) (i32.const 6) (i32.const 0)))
    (i32.load (i32.const 0)))
  (func (export "write") (param i32 i32 i32 i32) (result i32)
    (call $write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "log") (param i32 i32 i32) (result i32)
    (call $log (local.get 0) (local.get 1) (local.get 2)))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
)
"#;

#[test]
fn a_length_past_the_end_of_memory_is_a_fault_before_any_cut() {
    let _serial = serial();
    let dir = scratch("past-the-end");
    let (host, lines) = host_with(Policy::default());
    let module = host.compile(BIG_MEMORY.as_bytes()).unwrap();
    let domain = host
        .create_domain(DomainConfig::new().preopen("d", &dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    let memory = 32 * 65536;
    let file = call(&domain, "open_out", &[]);
    assert!(file > 0, "opened: {file}");
    let fault = e(AbiError::Fault);
    for len in [i32::MAX, memory - 64 + 1] {
        assert_eq!(call(&domain, "write", &[file, 64, len, 8]), fault, "{len}");
        assert_eq!(call(&domain, "log", &[2, 64, len]), fault, "{len}");
    }
    assert_eq!(
        std::fs::metadata(dir.join("out")).unwrap().len(),
        0,
        "nothing was written"
    );
    assert!(lines.lock().unwrap().is_empty(), "nothing was logged");
    // Up to the end is a range inside memory: a short write, as the ABI allows.
    assert_eq!(call(&domain, "write", &[file, 64, memory - 64, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), MAX_IO as i32);
    assert_never_taken_back(domain.unload().unwrap().ledger);
}

const EFAULT: i32 = 21;
const EMFILE: i32 = 33;
const CREAT: i32 = 1;
const OTRUNC: i32 = 8;
const FD_WRITE: i64 = 1 << 6;
const PATH: i32 = 2000;
const OUT: i32 = 4000;

/// WASI's `path_open` of `path` beneath the pre-open (fd 3), its new fd
/// written at `opened`: the errno.
fn path_open(domain: &Domain, path: &str, oflags: i32, opened: i32) -> i32 {
    poke(domain, PATH, path.as_bytes());
    let args = [
        Val::I32(3),
        Val::I32(1),
        Val::I32(PATH),
        Val::I32(path.len() as i32),
        Val::I32(oflags),
        Val::I64(FD_WRITE),
        Val::I64(0),
        Val::I32(0),
        Val::I32(opened),
    ];
    wcall(domain, "w_path_open", &args)
}

#[test]
fn wasi_path_open_that_fails_creates_and_truncates_nothing() {
    let _serial = serial();
    let dir = dir_with_kept_file("wasi-open");
    let host = host_with_quota(1);
    let domain = wasi_domain(&host, DomainConfig::new().preopen("data", &dir), "");
    let baseline = open_fds();
    for opened in [END - 3, END, -1] {
        assert_eq!(path_open(&domain, "new", CREAT, opened), EFAULT);
        assert_eq!(path_open(&domain, "keep", OTRUNC, opened), EFAULT);
    }
    assert_untouched(&dir);
    // The quota full (a handle the embedder gave): no room for the new fd.
    domain
        .insert_handle(Fd::from(std::fs::File::open("/dev/null").unwrap()))
        .unwrap();
    assert_eq!(path_open(&domain, "new", CREAT, OUT), EMFILE);
    assert_eq!(path_open(&domain, "keep", OTRUNC, OUT), EMFILE);
    assert_untouched(&dir);
    assert_eq!(open_fds(), baseline + 1, "the embedder's handle only");
    let ledger = domain.unload().unwrap().ledger;
    assert_eq!(ledger.opened, 1, "the embedder's handle only: {ledger:?}");
    assert_never_taken_back(ledger);
}

#[test]
fn wasi_sock_accept_that_fails_leaves_the_connection_pending() {
    let _serial = serial();
    let dir = scratch("wasi-accept");
    let host = host_with_quota(1);
    let domain = wasi_domain(&host, DomainConfig::new(), "");
    let listener = UnixListener::bind(dir.join("socket")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let host_side = listener.try_clone().unwrap();
    let socket = domain
        .insert_handle(Fd::from(std::os::fd::OwnedFd::from(listener)))
        .unwrap()
        .raw() as i32;
    let _client = UnixStream::connect(dir.join("socket")).unwrap();
    let baseline = open_fds();
    for accepted in [END - 3, END, -1] {
        assert_eq!(
            call(&domain, "w_sock_accept", &[socket, 0, accepted]),
            EFAULT
        );
    }
    assert_eq!(
        call(&domain, "w_sock_accept", &[socket, 0, OUT]),
        EMFILE,
        "the listener fills the quota"
    );
    assert_eq!(open_fds(), baseline, "no connection was taken");
    match host_side.accept() {
        Ok((connection, _)) => drop(connection),
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            panic!("a failed sock_accept consumed the connection")
        }
        Err(error) => panic!("accept: {error}"),
    }
    let ledger = domain.unload().unwrap().ledger;
    assert_eq!(ledger.opened, 1, "the listener only: {ledger:?}");
    assert_never_taken_back(ledger);
}

#[test]
fn wasi_args_get_that_faults_writes_nothing() {
    let _serial = serial();
    let host = host();
    let config = DomainConfig::new().args(["a", "bc"]).env("A", "");
    let domain = wasi_domain(&host, config, "");
    // The strings take 5 and 3 bytes; 2 are left before the end of memory.
    for name in ["w_args_get", "w_environ_get"] {
        poke(&domain, 100, &[0xAA; 8]);
        poke(&domain, END - 2, &[0xAA; 2]);
        assert_eq!(call(&domain, name, &[100, END - 2]), EFAULT, "{name}");
        assert_eq!(call(&domain, name, &[END - 2, 200]), EFAULT, "{name}");
        assert_eq!(
            peek(&domain, 100, 8),
            [0xAA; 8],
            "{name}: no pointer written"
        );
        assert_eq!(
            peek(&domain, END - 2, 2),
            [0xAA; 2],
            "{name}: no string written"
        );
    }
    assert_never_taken_back(domain.unload().unwrap().ledger);
}

#[test]
fn handles_the_embedder_gives_together_are_all_given_or_none() {
    let _serial = serial();
    let host = host_with_quota(1);
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let baseline = open_fds();
    let (read, write) = std::io::pipe().unwrap();
    let ends = [
        Fd::from(OwnedFd::from(read)),
        Fd::from(OwnedFd::from(write)),
    ];
    // Room for one: neither end gets an id, and both are released.
    assert!(matches!(
        domain.insert_handles(ends),
        Err(HandleError::QuotaExceeded { limit: 1 })
    ));
    assert_eq!(domain.table().live_ids(), []);
    assert_eq!(open_fds(), baseline, "a refused end was kept open");
    // With room, both get ids the guest can use.
    let host = host_with_quota(2);
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let (read, write) = std::io::pipe().unwrap();
    let ids = domain
        .insert_handles([
            Fd::from(OwnedFd::from(read)),
            Fd::from(OwnedFd::from(write)),
        ])
        .unwrap();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(domain.table().live_ids().len(), 2);
    domain.unload().unwrap();
    assert_eq!(open_fds(), baseline);
}
