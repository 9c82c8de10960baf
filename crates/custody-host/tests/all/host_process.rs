//! What a guest could do to the host process itself, beyond its domain:
//! overflow the stack of the thread that calls it, kill the process with
//! SIGPIPE, or flood its output with log lines (SPEC C1, host threads and
//! output).

use custody_host::{AbiError, CallError, DomainConfig, Policy};
use custody_testkit::*;

#[test]
fn a_thread_with_too_small_a_stack_is_refused_before_guest_code_runs() {
    let _serial = serial();
    let host = host();
    let module = host
        .compile(
            br#"(module
              (func $deep (export "deep") (param i32) (result i32)
                (if (result i32) (i32.eqz (local.get 0))
                  (then (i32.const 0))
                  (else (i32.add (i32.const 1) (call $deep (i32.sub (local.get 0) (i32.const 1)))))))
              (func (export "custody_unloading")))"#,
        )
        .unwrap();
    let domain = std::sync::Arc::new(host.create_domain(DomainConfig::new()).unwrap());
    domain.load("deep", &module).unwrap();
    let on_small_stack = |work: Box<dyn FnOnce() -> String + Send>| {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(work)
            .unwrap()
            .join()
            .expect("the host thread survived")
    };
    // A call: refused with the numbers, the domain untouched.
    let d = std::sync::Arc::clone(&domain);
    let error = on_small_stack(Box::new(move || {
        let error = d
            .call("deep", &[custody_host::Val::I32(1_000_000)])
            .unwrap_err();
        assert!(matches!(error, CallError::HostStack { .. }), "{error}");
        error.to_string()
    }));
    assert!(error.contains("stack_limit of 524288"), "{error}");
    assert_eq!(call(&domain, "deep", &[3]), 3, "the domain goes on");
    // A load (start functions are guest code).
    let module2 = module.clone();
    let d = std::sync::Arc::clone(&domain);
    let error = on_small_stack(Box::new(move || {
        d.load("again", &module2).unwrap_err().to_string()
    }));
    assert!(error.contains("stack left"), "{error}");
    // The unloading hook: not run, and said so.
    let d = std::sync::Arc::clone(&domain);
    let hook = on_small_stack(Box::new(move || {
        format!("{:?}", d.unload().unwrap().hook())
    }));
    assert!(
        hook.contains("Aborted") && hook.contains("stack left"),
        "{hook}"
    );
}

#[test]
fn a_log_flood_is_cut_to_the_policy_s_rate_and_counted() {
    let _serial = serial();
    let (host, lines) = host_with(Policy {
        log_lines_per_second: 10,
        ..Policy::default()
    });
    let module = host
        .compile(
            br#"(module
              (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "spam")
              (func $flood (param i32)
                (loop $l
                  (drop (call $log (i32.const 2) (i32.const 0) (i32.const 4)))
                  (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))))
              (func (export "flood") (param i32) (call $flood (local.get 0)))
              (func (export "custody_unloading") (call $flood (i32.const 100000))))"#,
        )
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("spam", &module).unwrap();
    domain
        .call("flood", &[custody_host::Val::I32(100_000)])
        .unwrap();
    domain.unload().unwrap();
    let lines = lines.lock().unwrap();
    let spam = lines.iter().filter(|l| l.2 == "spam").count();
    // One window for the call (and maybe one more for the hook if a second
    // passed): the flood of 200,000 lines is cut to a few dozen.
    assert!((10..=40).contains(&spam), "{spam} lines went out");
    let said: u64 = lines
        .iter()
        .filter_map(|l| {
            l.2.strip_suffix(" more guest log line(s) suppressed (rate limit: 10 per second)")
        })
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(said + spam as u64, 200_000, "every line is counted once");
}

/// A guest writing to a pipe whose read end it closed: `write`'s result
/// times 1000, minus `last_error` (EPIPE is 32).
const BROKEN_PIPE: &str = r#"(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "custody" "last_error" (func $last_error (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (drop (call $pipe (i32.const 0) (i32.const 4)))
    (drop (call $close (i32.load (i32.const 0))))
    (i32.sub
      (i32.mul (call $write (i32.load (i32.const 4)) (i32.const 16) (i32.const 1) (i32.const 8)) (i32.const 1000))
      (call $last_error))))"#;

#[test]
fn a_broken_pipe_is_an_error_for_the_guest_never_a_signal_for_the_host() {
    let _serial = serial();
    const CHILD: &str = "CUSTODY_TEST_SIGPIPE_CHILD";
    // The child's exit status when its write failed with EPIPE: not 0, which
    // libtest also exits with when `--exact` matched no test at all.
    const CHILD_SAW_EPIPE: i32 = 17;
    if std::env::var_os(CHILD).is_some() {
        // The child: SIGPIPE at its default, as in a host whose main is not
        // Rust's. Creating the host must make the write fail with EPIPE.
        // SAFETY: restores the default disposition of SIGPIPE in this
        // single-purpose child process, before any thread writes anywhere.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let host = host();
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain
            .load("pipe", &host.compile(BROKEN_PIPE.as_bytes()).unwrap())
            .unwrap();
        let expected = AbiError::Io.code() * 1000 - 32;
        std::process::exit(if call(&domain, "run", &[]) == expected {
            CHILD_SAW_EPIPE
        } else {
            1
        });
    }
    // The child runs this one test of this binary: its name is the module
    // path without the crate's (`all::host_process::...` is listed as
    // `host_process::...`).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!(
                "{module}::a_broken_pipe_is_an_error_for_the_guest_never_a_signal_for_the_host"
            ),
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "the host died of a signal");
    assert_eq!(
        status.code(),
        Some(CHILD_SAW_EPIPE),
        "write did not fail with E_IO (EPIPE), or the child ran no test"
    );
}
