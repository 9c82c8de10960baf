//! Hostile guests against the bounds of SPEC C1, one attack each: start
//! functions are calls (deadline, critical regions, their own memory, their
//! handles released on failure), a failed re-creation at a recycle releases
//! everything and keeps its cause, a `(ptr, len)` range is checked whole,
//! special files never block, guest text cannot forge a log line, and bad
//! modules and configurations are named errors. `doors.rs` runs each bound
//! through every door at once; `host_process.rs` covers the process.

use std::time::{Duration, Instant};

use custody_host::{AbiError, DomainConfig, LoadError, OnMemoryLimit, Policy};
use custody_testkit::*;

#[test]
fn a_spinning_start_function_is_stopped_by_the_deadline() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(100)),
        ..Policy::default()
    });
    let module = host
        .compile(br#"(module (func $spin (loop $l (br $l))) (start $spin))"#)
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let started = Instant::now();
    let error = domain.load("spin", &module).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the host waited"
    );
    assert!(matches!(error, LoadError::Instantiate { .. }), "{error}");
    assert!(error.to_string().contains("deadline"), "{error}");
    // The domain lives on and loads what behaves.
    let fine = host
        .compile(br#"(module (func (export "ok") (result i32) i32.const 1))"#)
        .unwrap();
    domain.load("fine", &fine).unwrap();
    assert_eq!(call(&domain, "ok", &[]), 1);
}

#[test]
fn a_sleeping_start_function_is_woken_by_the_deadline() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(100)),
        ..Policy::default()
    });
    let module = host
        .compile(
            br#"(module
              (import "custody" "sleep" (func $sleep (param i32) (result i32)))
              (func $nap (drop (call $sleep (i32.const 5000))))
              (start $nap))"#,
        )
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let started = Instant::now();
    let error = domain.load("nap", &module).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "slept {:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains("deadline"), "{error}");
}

#[test]
fn a_critical_region_left_open_by_a_start_function_is_a_load_error() {
    let _serial = serial();
    let host = host();
    let module = host
        .compile(
            br#"(module
              (import "custody" "critical_enter" (func $enter (result i32)))
              (func $start (drop (call $enter)))
              (start $start)
              (func (export "ok") (result i32) i32.const 7))"#,
        )
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let error = domain.load("leaky", &module).unwrap_err();
    assert!(error.to_string().contains("critical region"), "{error}");
    // The region is not charged to the next call: a module loaded after it
    // runs without escalating.
    let fine = host
        .compile(br#"(module (func (export "ok2") (result i32) i32.const 2))"#)
        .unwrap();
    domain.load("fine", &fine).unwrap();
    assert_eq!(call(&domain, "ok2", &[]), 2);
    assert_eq!(domain.ledger().recycles, 0);
}

#[test]
fn a_range_past_the_end_of_memory_is_a_fault_even_when_the_call_would_be_short() {
    let _serial = serial();
    let host = host();
    let (domain, _module) = driver_domain(&host, DomainConfig::new(), "");
    assert_eq!(call(&domain, "abi_pipe", &[0, 4]), 0);
    let (r, w) = (call(&domain, "load", &[0]), call(&domain, "load", &[4]));
    // 64 KiB of memory; a 2 MiB range from 1 KiB runs past its end although
    // one call moves at most 1 MiB.
    let fault = AbiError::Fault.code();
    assert_eq!(call(&domain, "abi_write", &[w, 1024, 2 << 20, 8]), fault);
    assert_eq!(call(&domain, "abi_read", &[r, 1024, 2 << 20, 8]), fault);
    assert_eq!(call(&domain, "abi_log", &[2, 1024, 2 << 20]), fault);
    domain.unload().unwrap();
}

#[test]
fn guest_log_text_cannot_forge_a_line_or_drive_the_terminal() {
    let _serial = serial();
    let (host, lines) = host_with(Policy::default());
    let text = "ok\\0acustody: domain 9: error: forged\\1b[31m";
    let (domain, _module) = driver_domain(&host, DomainConfig::new(), &data(1024, text));
    let len = "ok\ncustody: domain 9: error: forged\u{1b}[31m".len() as i32;
    assert_eq!(call(&domain, "abi_log", &[2, 1024, len]), 0);
    let logged = lines.lock().unwrap().last().cloned().unwrap();
    assert_eq!(logged.2, "ok\\ncustody: domain 9: error: forged\\u{1b}[31m");
    assert!(!logged.2.chars().any(char::is_control));
    domain.unload().unwrap();
}

#[test]
fn an_unloading_hook_stopped_by_its_memory_limit_keeps_that_cause() {
    let _serial = serial();
    // The hook traps if its grow fails: under fail-grow the -1 is its own
    // to handle, and it handles it by trapping.
    for (on_limit, cause) in [
        (OnMemoryLimit::Abort, "memory limit"),
        (OnMemoryLimit::FailGrow, "unreachable"),
    ] {
        let (host, _lines) = host_with(Policy {
            memory_limit: Some(4 << 16),
            on_memory_limit: on_limit,
            allocation: custody_host::Allocation::OnDemand,
            ..Policy::default()
        });
        let module = host
            .compile(
                br#"(module (memory 1)
                  (func (export "custody_unloading")
                    (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"#,
            )
            .unwrap();
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("greedy", &module).unwrap();
        match (on_limit, domain.unload().unwrap().hook()) {
            (OnMemoryLimit::Abort, custody_host::HookOutcome::Aborted(reason))
            | (OnMemoryLimit::FailGrow, custody_host::HookOutcome::Trapped(reason)) => {
                assert!(reason.contains(cause), "{on_limit:?}: {reason}")
            }
            (_, other) => panic!("{on_limit:?}: got {other:?}"),
        }
    }
}

#[test]
fn closing_a_stale_id_fires_stale_handle_use_once() {
    let _serial = serial();
    let host = host();
    let (domain, _module) = driver_domain(&host, DomainConfig::new(), "");
    let before =
        custody_handle::diagnostics::count(custody_handle::diagnostics::Assistant::StaleHandleUse);
    assert_eq!(
        call(&domain, "abi_close", &[(7 << 20) | 3]),
        AbiError::Stale.code()
    );
    let after =
        custody_handle::diagnostics::count(custody_handle::diagnostics::Assistant::StaleHandleUse);
    assert_eq!(after - before, 1);
}

#[test]
fn two_preopens_with_one_name_are_refused() {
    let _serial = serial();
    let host = host();
    let dir = scratch("dup");
    let error = host
        .create_domain(DomainConfig::new().preopen("d", &dir).preopen("d", &dir))
        .unwrap_err();
    assert!(
        matches!(error, custody_host::HostError::DuplicatePreopen(ref n) if n == "d"),
        "{error}"
    );
}

#[test]
fn tables_count_against_the_memory_cap() {
    let _serial = serial();
    for on_limit in [OnMemoryLimit::FailGrow, OnMemoryLimit::Abort] {
        let (host, _lines) = host_with(Policy {
            memory_limit: Some(1 << 20),
            on_memory_limit: on_limit,
            allocation: custody_host::Allocation::OnDemand,
            ..Policy::default()
        });
        // 100,000 elements are 800 KB of host memory: within a 1 MiB cap
        // alone, past it beside a page of memory and a second such table:
        // that module does not load, whatever on_memory_limit says.
        let one = host.compile(br#"(module (table 100000 funcref))"#).unwrap();
        let two = host
            .compile(br#"(module (memory 1) (table 100000 funcref) (table 100000 funcref))"#)
            .unwrap();
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("one", &one).unwrap();
        let error = host
            .create_domain(DomainConfig::new())
            .unwrap()
            .load("two", &two)
            .unwrap_err();
        assert!(error.to_string().contains("memory limit"), "{error}");
        // Growing a table past the cap at run time fails the grow (-1), or
        // aborts the call.
        let grower = host
            .compile(
                br#"(module (table 1 funcref)
                  (func (export "grow") (param i32) (result i32)
                    (table.grow (ref.null func) (local.get 0))))"#,
            )
            .unwrap();
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("grower", &grower).unwrap();
        assert_eq!(call(&domain, "grow", &[1000]), 1);
        let past = domain.call("grow", &[custody_host::Val::I32(1 << 20)]);
        match (on_limit, past) {
            (OnMemoryLimit::FailGrow, Ok(results)) => assert_eq!(results[0].unwrap_i32(), -1),
            (OnMemoryLimit::Abort, Err(custody_host::CallError::Aborted { reason, .. })) => {
                assert!(reason.contains("memory limit"), "{reason}")
            }
            (_, other) => panic!("{on_limit:?}: got {other:?}"),
        }
        assert_eq!(call(&domain, "grow", &[10]), 1001, "the domain goes on");
    }
}

#[test]
fn a_module_nested_too_deep_is_refused_before_it_is_compiled() {
    let _serial = serial();
    let host = host();
    // 100,000 nested blocks: compiling them took a process past 2.8 GiB.
    let depth = 100_000;
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // type section: one type () -> ()
    wasm.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
    // function section: one function of type 0
    wasm.extend_from_slice(&[3, 2, 1, 0]);
    // code section: `block` (0x02 0x40) `depth` times, `end` depth+1 times
    let mut body = vec![0u8]; // no locals
    for _ in 0..depth {
        body.extend_from_slice(&[0x02, 0x40]);
    }
    body.extend(std::iter::repeat_n(0x0b, depth + 1));
    let mut entry = leb(body.len() as u32);
    entry.extend_from_slice(&body);
    let mut code = vec![1u8];
    code.extend_from_slice(&entry);
    wasm.push(10);
    wasm.extend(leb(code.len() as u32));
    wasm.extend_from_slice(&code);
    let started = Instant::now();
    let error = host.compile(&wasm).unwrap_err();
    assert!(matches!(error, LoadError::Limits { .. }), "{error}");
    assert!(error.to_string().contains("blocks nested"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn leb(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn opening_and_reading_a_fifo_never_blocks_past_the_deadline() {
    let _serial = serial();
    let dir = scratch("fifo");
    let fifo = dir.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(200)),
        ..Policy::default()
    });
    let (domain, _module) = driver_domain(
        &host,
        DomainConfig::new().preopen("d", &dir),
        &data(1024, "d/pipe"),
    );
    let started = Instant::now();
    // Opening for writing with no reader fails at once (ENXIO) instead of
    // blocking until one comes.
    assert_eq!(
        call(&domain, "abi_open", &[1024, 6, 2, 4]),
        AbiError::Io.code()
    );
    assert_eq!(call(&domain, "abi_last_error", &[]), 6, "ENXIO");
    // No writer: a blocking open for reading would wait forever.
    assert_eq!(call(&domain, "abi_open", &[1024, 6, 1, 0]), 0);
    let fifo = call(&domain, "load", &[0]);
    // With no writer, a read is the end of the file at once.
    assert_eq!(call(&domain, "abi_read", &[fifo, 2048, 16, 8]), 0);
    assert_eq!(call(&domain, "load", &[8]), 0);
    // A writer that writes nothing: the read waits through the cancellable
    // wait and ends at the deadline.
    let writer = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc_o_nonblock())
            .open(dir.join("pipe"))
            .unwrap()
    };
    let read = domain.call("abi_read", &[fifo, 2048, 16, 8].map(custody_host::Val::I32));
    assert!(
        matches!(read, Err(custody_host::CallError::Aborted { .. })),
        "{read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(writer);
    domain.unload().unwrap();
    // The guest's fifo fd was released by the unload.
    let still_open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| target.starts_with(&dir));
    assert!(!still_open, "an fd on the fifo outlived the unload");
}

/// `O_NONBLOCK` on Linux.
fn libc_o_nonblock() -> i32 {
    0o4000
}

#[test]
fn an_unknown_custody_function_is_named_as_such() {
    let _serial = serial();
    let host = host();
    let module = host
        .compile(br#"(module (import "custody" "format_disk" (func (result i32))))"#)
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let error = domain.load("m", &module).unwrap_err();
    assert!(
        matches!(error, LoadError::UnknownHostFunction { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("unknown host function custody::format_disk"),
        "{error}"
    );
    let elsewhere = host
        .compile(br#"(module (import "nowhere" "f" (func)))"#)
        .unwrap();
    let error = domain.load("e", &elsewhere).unwrap_err();
    assert!(
        matches!(error, LoadError::UnresolvedImport { .. }),
        "{error}"
    );
}

/// A guest whose start function succeeds once: it creates `data/flag`, and
/// traps if the flag is already there. Its re-creation at a recycle fails.
const ONCE: &str = r#"(module
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "critical_enter" (func $enter (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "data/flag")
  (func $start
    (if (i32.ge_s (call $open (i32.const 0) (i32.const 9) (i32.const 1) (i32.const 64)) (i32.const 0))
      (then unreachable))
    (drop (call $open (i32.const 0) (i32.const 9) (i32.const 6) (i32.const 64)))
    (drop (call $close (i32.load (i32.const 64)))))
  (start $start)
  (func (export "pipes_then_trap_critical")
    (drop (call $pipe (i32.const 128) (i32.const 132)))
    (drop (call $enter))
    unreachable))"#;

#[test]
fn a_failed_re_creation_releases_everything_and_every_later_error_keeps_the_cause() {
    let _serial = serial();
    let host = host();
    // Warmed: wasmtime's memory image (a memfd) is made once per module.
    let module = warm(&host, host.compile(ONCE.as_bytes()).unwrap());
    let dir = scratch("hostile-once");
    let baseline = FdBaseline::now();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    domain.load("once", &module).unwrap();
    assert!(
        dir.join("flag").exists(),
        "the start function made its flag"
    );
    let error = domain.call("pipes_then_trap_critical", &[]).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("re-creating it failed"), "{text}");
    assert!(
        text.contains("unreachable"),
        "the re-creation's trap: {text}"
    );
    // The re-creation's failure is typed: a `LoadError` whose own source
    // is the start function's trap.
    match &error {
        custody_host::CallError::Escalated {
            outcome: custody_host::EscalationOutcome::RecreationFailed(load),
            ..
        } => assert!(
            matches!(**load, custody_host::LoadError::Instantiate { .. }),
            "{load:?}"
        ),
        other => panic!("expected a failed re-creation, got {other:?}"),
    }
    assert_eq!(domain.state(), custody_host::DomainState::Recycled);
    assert_eq!(domain.table().len(), 0, "the pipes are released");
    // Later errors say why the domain ended: the call's own trap.
    let later = domain.call("pipes_then_trap_critical", &[]).unwrap_err();
    let later = later.to_string();
    assert!(later.contains("pipes_then_trap_critical failed"), "{later}");
    assert!(later.contains("re-creating it failed"), "{later}");
    let load = domain.load("again", &module).unwrap_err().to_string();
    assert!(load.contains("pipes_then_trap_critical failed"), "{load}");
    domain.unload().expect("the recycle's report");
    drop(domain);
    baseline.assert_back("a failed re-creation");
}

#[test]
fn a_start_function_reaches_its_own_memory_not_an_earlier_module_s() {
    let _serial = serial();
    let host = host();
    let creator = |name: &str| {
        format!(
            r#"(module
              (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "data/{name}")
              (func $start (drop (call $open (i32.const 0) (i32.const 9) (i32.const 6) (i32.const 64))))
              (start $start))"#
        )
    };
    let dir = scratch("hostile-start-memory");
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    for name in ["aaaa", "bbbb"] {
        let module = host.compile(creator(name).as_bytes()).unwrap();
        std::fs::remove_file(dir.join("aaaa")).ok();
        domain.load(name, &module).unwrap();
        assert!(
            dir.join(name).exists(),
            "{name}'s start function used its own path"
        );
    }
    assert!(!dir.join("aaaa").exists(), "not the first module's memory");
    domain.unload().unwrap();
}

#[test]
fn a_start_function_that_fails_leaves_no_handle_behind() {
    let _serial = serial();
    let host = host();
    let keeper = warmed_module(
        &host,
        r#"(module
          (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "keep") (result i32) (call $pipe (i32.const 0) (i32.const 4))))"#,
    );
    let failing = host
        .compile(
            br#"(module
              (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
              (memory (export "memory") 1)
              (func $start
                (drop (call $pipe (i32.const 0) (i32.const 4)))
                (drop (call $pipe (i32.const 8) (i32.const 12)))
                unreachable)
              (start $start))"#,
        )
        .unwrap();
    let baseline = FdBaseline::now();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("keeper", &keeper).unwrap();
    assert_eq!(call(&domain, "keep", &[]), 0);
    assert_eq!(domain.table().len(), 2);
    let error = domain.load("failing", &failing).unwrap_err();
    assert!(error.to_string().contains("unreachable"), "{error}");
    assert_eq!(
        domain.table().len(),
        2,
        "the keeper's pipe stays, the start's went"
    );
    assert_eq!(domain.ledger().closed_by_host, 4);
    domain.unload().unwrap();
    drop(domain);
    baseline.assert_back("a failed start function");
}
