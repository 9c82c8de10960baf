//! Handle marshalling at the guest boundary (SPEC Part B), one rule per test,
//! plus a randomized run of thousands of ABI calls with hostile arguments.
//!
//! Every test takes `serial()`: they count the process's open fds.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use custody_handle::{CloseOutcome, Fd, HandleId, Mapping, SafeHandle};
use custody_host::abi::AbiError;
use custody_host::{CallError, DomainConfig, Policy};
use custody_testkit::*;
use wasmtime::{Linker, Module, Store};

fn e(error: AbiError) -> i32 {
    error.code()
}

fn raw_fd(domain: &custody_host::Domain, id: i32) -> i32 {
    domain
        .table()
        .get::<Fd>(HandleId::from_raw(id as u32))
        .unwrap()
        .raw()
}

/// Writes `bytes` into the pipe end `id` from the host side.
fn host_write(domain: &custody_host::Domain, id: i32, bytes: &[u8]) {
    let guard = domain
        .table()
        .get::<Fd>(HandleId::from_raw(id as u32))
        .unwrap();
    let mut file = File::from(guard.as_fd().try_clone_to_owned().unwrap());
    file.write_all(bytes).unwrap();
}

fn pipe(domain: &custody_host::Domain) -> (i32, i32) {
    assert_eq!(call(domain, "abi_pipe", &[0, 4]), 0);
    (call(domain, "load", &[0]), call(domain, "load", &[4]))
}

#[test]
fn a_handle_closed_during_a_blocking_read_stays_open_until_the_call_returns() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    let baseline = open_fds();
    let (r, w) = pipe(&domain);
    let raw = raw_fd(&domain, r);
    let reader = {
        let domain = domain.clone();
        thread::spawn(move || {
            let result = call(&domain, "abi_read", &[r, 4096, 64, 8]);
            (result, call(&domain, "load", &[8]))
        })
    };
    thread::sleep(Duration::from_millis(100)); // the guest is now blocked in read
    assert_eq!(
        domain.close_handle(HandleId::from_raw(r as u32)).unwrap(),
        CloseOutcome::Deferred
    );
    assert!(fd_is_open(raw), "pinned by the in-flight call");
    host_write(&domain, w, b"wake");
    let (result, n) = reader.join().unwrap();
    assert_eq!((result, n), (0, 4), "the read completed on the pinned fd");
    assert!(!fd_is_open(raw), "released right after the call returned");
    assert_eq!(
        call(&domain, "abi_read", &[r, 4096, 64, 8]),
        e(AbiError::Stale)
    );
    domain.unload().unwrap();
    assert_eq!(open_fds(), baseline);
}

#[test]
fn null_stale_closed_and_wrong_kind_handles_get_their_codes_and_run_nothing() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), &data(1024, "hello"));
    let baseline = open_fds();
    let (r, w) = pipe(&domain);
    call(&domain, "store", &[8, -77]); // a sentinel in the out slot
    assert_eq!(
        call(&domain, "abi_write", &[0, 1024, 5, 8]),
        e(AbiError::Null)
    );
    assert_eq!(call(&domain, "abi_dup", &[r, 12]), 0);
    let stale = call(&domain, "load", &[12]);
    assert_eq!(call(&domain, "abi_close", &[stale]), 0);
    assert_eq!(
        call(&domain, "abi_write", &[stale, 1024, 5, 8]),
        e(AbiError::Stale)
    );
    assert_eq!(
        call(&domain, "load", &[8]),
        -77,
        "no host code wrote the out slot"
    );

    // A handle the host shares, then closes from its side: E_CLOSED.
    let owned = SafeHandle::<Fd>::from(File::open("/dev/null").unwrap());
    let shared = domain.table().insert_handle(&owned).unwrap().raw() as i32;
    owned.dispose().unwrap();
    assert_eq!(
        call(&domain, "abi_write", &[shared, 1024, 5, 8]),
        e(AbiError::Closed)
    );
    assert_eq!(
        call(&domain, "abi_close", &[shared]),
        e(AbiError::Closed),
        "removed anyway"
    );
    assert_eq!(call(&domain, "abi_close", &[shared]), e(AbiError::Stale));

    // A handle of another kind (a mapping the embedder gave the guest).
    let mapping = domain
        .insert_handle(Mapping::anonymous(4096).unwrap())
        .unwrap()
        .raw() as i32;
    assert_eq!(
        call(&domain, "abi_read", &[mapping, 4096, 5, 8]),
        e(AbiError::Kind)
    );
    assert_eq!(call(&domain, "abi_dup", &[mapping, 8]), e(AbiError::Kind));
    call(&domain, "store", &[100, r]);
    call(&domain, "store", &[104, mapping]);
    let start = Instant::now();
    assert_eq!(
        call(&domain, "abi_poll", &[100, 2, 5000, 8]),
        e(AbiError::Kind)
    );
    assert!(start.elapsed() < Duration::from_secs(1), "nothing waited");
    assert_eq!(call(&domain, "load", &[8]), -77);

    // The writes above never reached the pipe.
    call(&domain, "store", &[100, r]);
    assert_eq!(
        call(&domain, "abi_poll", &[100, 1, 0, 8]),
        e(AbiError::TimedOut)
    );
    let _ = w;
    domain.unload().unwrap();
    assert_eq!(open_fds(), baseline);
}

#[test]
fn an_out_handle_that_cannot_be_delivered_is_never_made() {
    let _serial = serial();
    let dir = scratch("out-handle");
    std::fs::write(dir.join("f"), "x").unwrap();
    let host = host();
    let module = warmed_module(&host, &driver(&data(1024, "d/f")));
    // Before the domain: its pre-open's directory fd is released by unload too.
    let baseline = open_fds();
    let domain = host
        .create_domain(DomainConfig::new().preopen("d", &dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    let with_domain = open_fds();
    let end = 65536;
    assert_eq!(
        call(&domain, "abi_open", &[1024, 3, 1, end - 2]),
        e(AbiError::Fault)
    );
    assert_eq!(call(&domain, "abi_pipe", &[0, end]), e(AbiError::Fault));
    assert_eq!(call(&domain, "abi_pipe", &[end, 0]), e(AbiError::Fault));
    let (r, _w) = pipe(&domain);
    assert_eq!(call(&domain, "abi_dup", &[r, -4]), e(AbiError::Fault));
    assert_eq!(domain.table().len(), 2, "only the pipe is in the table");
    assert_eq!(open_fds(), with_domain + 2);
    let report = domain.unload().unwrap();
    let ledger = report.ledger;
    assert_eq!(
        (
            ledger.opened,
            ledger.closed_by_host,
            ledger.released_at_unload
        ),
        (2, 0, 2),
        "a handle that could not be delivered is never made: none is taken back"
    );
    assert_eq!(open_fds(), baseline);
}

#[test]
fn every_element_of_a_poll_array_is_pinned_for_the_call() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    let baseline = open_fds();
    let (r1, _w1) = pipe(&domain);
    let (r2, w2) = pipe(&domain);
    let (raw1, raw2) = (raw_fd(&domain, r1), raw_fd(&domain, r2));
    call(&domain, "store", &[100, r1]);
    call(&domain, "store", &[104, r2]);
    let poller = {
        let domain = domain.clone();
        thread::spawn(move || {
            (
                call(&domain, "abi_poll", &[100, 2, 5000, 8]),
                call(&domain, "load", &[8]),
            )
        })
    };
    thread::sleep(Duration::from_millis(100));
    for id in [r1, r2] {
        assert_eq!(
            domain.close_handle(HandleId::from_raw(id as u32)).unwrap(),
            CloseOutcome::Deferred
        );
    }
    assert!(
        fd_is_open(raw1) && fd_is_open(raw2),
        "both elements are pinned"
    );
    host_write(&domain, w2, b"!");
    assert_eq!(poller.join().unwrap(), (0, 1), "element 1 became readable");
    assert!(
        !fd_is_open(raw1) && !fd_is_open(raw2),
        "both released when the call ended"
    );
    domain.unload().unwrap();
    assert_eq!(open_fds(), baseline);
}

/// The driver with a shared memory, so a second guest thread can write the
/// poll array while the call blocks.
const SHARED_DRIVER: &str = r#"
(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "poll" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1 1 shared)
  (func (export "abi_pipe") (param i32 i32) (result i32) (call $pipe (local.get 0) (local.get 1)))
  (func (export "abi_poll") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "store") (param i32 i32) (i32.atomic.store (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32) (i32.atomic.load (local.get 0)))
)
"#;

/// A second guest, in its own store on its own thread, over the same memory.
const WRITER: &str = r#"
(module
  (import "env" "memory" (memory 1 1 shared))
  (func (export "poke") (param i32 i32) (i32.atomic.store (local.get 0) (local.get 1)))
)
"#;

#[test]
fn a_poll_array_changed_by_another_guest_thread_fails_with_notsup() {
    let _serial = serial();
    // Shared memories need the policy's threads (which allocate on demand:
    // the pooling allocator cannot hold them).
    let (host, _lines) = host_with(Policy {
        threads: true,
        ..Policy::default()
    });
    let module = warmed_module(&host, SHARED_DRIVER);
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    let (r1, w1) = pipe(&domain);
    let (r2, _w2) = pipe(&domain);
    call(&domain, "store", &[100, r1]);
    call(&domain, "store", &[104, r2]);

    // Unchanged array: the ready index is reported.
    host_write(&domain, w1, b"x");
    assert_eq!(call(&domain, "abi_poll", &[100, 2, 1000, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 0);

    // Changed while blocked: E_NOTSUP.
    let (r3, w3) = pipe(&domain);
    call(&domain, "store", &[100, r3]);
    call(&domain, "store", &[8, -77]);
    // Taken before the poll: it needs the store, which the blocked call holds.
    let memory = domain.shared_memory("main", "memory").unwrap();
    let poller = {
        let domain = domain.clone();
        thread::spawn(move || call(&domain, "abi_poll", &[100, 2, 5000, 8]))
    };
    thread::sleep(Duration::from_millis(100));
    let writer_module = Module::new(host.engine(), WRITER).unwrap();
    let writer = thread::spawn({
        let engine = host.engine().clone();
        move || {
            let mut store = Store::new(&engine, ());
            store.set_epoch_deadline(u64::MAX / 2);
            let mut linker = Linker::new(&engine);
            linker.define(&mut store, "env", "memory", memory).unwrap();
            let instance = linker.instantiate(&mut store, &writer_module).unwrap();
            let poke = instance
                .get_typed_func::<(i32, i32), ()>(&mut store, "poke")
                .unwrap();
            poke.call(&mut store, (104, r1)).unwrap(); // element 1: r2 -> r1
        }
    });
    writer.join().unwrap();
    host_write(&domain, w3, b"y"); // wake the poll on element 0
    assert_eq!(poller.join().unwrap(), e(AbiError::NotSup));
    assert_eq!(call(&domain, "load", &[8]), -77, "no index was reported");
    domain.unload().unwrap();
    assert_eq!(open_fds(), baseline);
    drop(module);
}

#[test]
fn out_of_bounds_pointers_and_lengths_are_faults() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    let baseline = open_fds();
    let (r, w) = pipe(&domain);
    let fault = e(AbiError::Fault);
    assert_eq!(call(&domain, "abi_read", &[r, 65530, 100, 8]), fault);
    assert_eq!(call(&domain, "abi_read", &[r, 0, 16, 65533]), fault);
    assert_eq!(call(&domain, "abi_write", &[w, 0, i32::MAX, 8]), fault);
    assert_eq!(call(&domain, "abi_write", &[w, -1, 4, 8]), fault);
    assert_eq!(call(&domain, "abi_poll", &[65534, 1, 0, 8]), fault);
    assert_eq!(call(&domain, "abi_log", &[0, i32::MIN, 10]), fault);
    assert_eq!(
        call(&domain, "abi_read", &[r, 0, -1, 8]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "abi_write", &[w, 0, -5, 8]),
        e(AbiError::Inval)
    );
    // A read whose count cannot be delivered consumes nothing.
    host_write(&domain, w, b"kept");
    assert_eq!(call(&domain, "abi_read", &[r, 0, 16, 65533]), fault);
    assert_eq!(call(&domain, "abi_read", &[r, 4096, 16, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 4, "the data was still there");
    domain.unload().unwrap();
    assert_eq!(open_fds(), baseline);
}

#[test]
fn thousands_of_hostile_abi_calls_never_panic_never_leak_and_only_return_documented_codes() {
    let _serial = serial();
    let dir = scratch("hostile");
    std::fs::write(dir.join("f"), "contents").unwrap();
    // Short waits, so reads of empty pipes time out quickly.
    let (host, _lines) = host_with(Policy {
        max_wait: Duration::from_millis(2),
        handle_quota: 32,
        ..Policy::default()
    });
    let module = warmed_module(&host, &driver(&data(1024, "d/f")));
    let baseline = open_fds();
    custody_handle::diagnostics::set_enabled(
        custody_handle::diagnostics::Assistant::StaleHandleUse,
        false,
    );
    let mut rng = Rng(0xC0FF_EE00_D15E_A5E5);
    let mut calls = 0;
    let mut codes = std::collections::BTreeMap::<i32, usize>::new();
    for _round in 0..8 {
        let domain = host
            .create_domain(DomainConfig::new().preopen("d", &dir))
            .unwrap();
        domain.load("main", &module).unwrap();
        let mut issued: Vec<i32> = Vec::new();
        for _ in 0..800 {
            let handle = match rng.next_u64() % 5 {
                0 => 0,
                1 | 2 if !issued.is_empty() => rng.pick(&issued),
                3 => rng.next_u64() as i32,
                _ => (rng.next_u64() % 64) as i32 | (1 << 20),
            };
            let pointer = rng.pick(&[
                0,
                8,
                1024,
                4096,
                65532,
                65535,
                65536,
                -1,
                i32::MIN,
                i32::MAX,
            ]);
            let length = rng.pick(&[0, 1, 3, 4, 64, 4096, 65536, -1, i32::MAX, i32::MIN]);
            let small = rng.pick(&[-2, -1, 0, 1, 2, 3, 5, 31, 64, 65, 1000, i32::MAX]);
            let (name, args): (&str, Vec<i32>) = match rng.next_u64() % 11 {
                0 => ("abi_log", vec![small, pointer, length]),
                1 => (
                    "abi_open",
                    vec![1024, rng.pick(&[3, length]), small, pointer],
                ),
                2 => (
                    "abi_read",
                    vec![handle, pointer, length, rng.pick(&[8, pointer])],
                ),
                3 => (
                    "abi_write",
                    vec![handle, pointer, length, rng.pick(&[8, pointer])],
                ),
                4 => ("abi_close", vec![handle]),
                5 => ("abi_dup", vec![handle, rng.pick(&[12, pointer])]),
                6 => (
                    "abi_pipe",
                    vec![rng.pick(&[16, pointer]), rng.pick(&[20, pointer])],
                ),
                7 => (
                    "abi_poll",
                    vec![pointer, small, rng.pick(&[0, 1, -1, small]), 8],
                ),
                8 => ("abi_sleep", vec![rng.pick(&[-1, 0, 1, 20_000])]),
                9 => ("abi_last_error", vec![]),
                _ => ("store", vec![rng.pick(&[100, 104, 108, 12, 16]), handle]),
            };
            let result = call(&domain, name, &args);
            calls += 1;
            assert!(
                result >= 0 || AbiError::from_code(result).is_some(),
                "{name}{args:?} returned the undocumented {result}"
            );
            if name != "abi_last_error" && name != "store" {
                *codes.entry(result.min(0)).or_default() += 1;
            }
            // Remember ids the guest was given, to reuse them (live or stale).
            for slot in [0, 4, 12, 16, 20] {
                let id = call(&domain, "load", &[slot]);
                if id > 0 && !issued.contains(&id) {
                    issued.push(id);
                }
            }
        }
        domain.unload().unwrap();
    }
    custody_handle::diagnostics::set_enabled(
        custody_handle::diagnostics::Assistant::StaleHandleUse,
        true,
    );
    assert!(calls >= 6000);
    assert_eq!(open_fds(), baseline, "no handle leaked");
    drop(module);
    for code in [
        0,
        e(AbiError::Stale),
        e(AbiError::Fault),
        e(AbiError::Inval),
    ] {
        assert!(
            codes.get(&code).copied().unwrap_or(0) > 0,
            "code {code} never came up: {codes:?}"
        );
    }
}

#[test]
fn a_call_that_traps_leaves_its_handles_to_the_unload() {
    let _serial = serial();
    let host = host();
    let (domain, _m) = driver_domain(&host, DomainConfig::new(), "");
    let baseline = open_fds();
    match domain.call("pipe_then_trap", &[]) {
        Err(CallError::Trap {
            message, backtrace, ..
        }) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                backtrace.contains("pipe_then_trap") || !backtrace.is_empty(),
                "{backtrace}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(domain.table().len(), 2);
    assert!(
        call(&domain, "load", &[0]) > 0,
        "the domain still works after a trap"
    );
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 2);
    assert_eq!(open_fds(), baseline);
}
