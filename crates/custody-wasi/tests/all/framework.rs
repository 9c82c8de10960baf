//! WASI preview 1's framework (SPEC W1): the module links, stdout is
//! captured, arguments reach the guest, `proc_exit` is an exit status and
//! not a trap, fds that do not resolve are `EBADF`, and a policy can refuse
//! the whole module.

use custody_host::{CallError, DomainConfig, DomainState, LoadError, Policy, Val};
use custody_testkit::*;
use custody_wasi::{WasiDomain, WasiDomainConfig};

const EBADF: i32 = 8;

fn domain(config: DomainConfig) -> custody_host::Domain {
    wasi_domain(&host(), config, "")
}

#[test]
fn a_write_to_stdout_is_captured() {
    let _serial = serial();
    let domain = domain(DomainConfig::new());
    poke(&domain, 100, b"hello\n");
    iovec(&domain, 0, 100, 6);
    let errno = call(&domain, "w_fd_write", &[1, 0, 1, 16]);
    assert_eq!(errno, 0);
    assert_eq!(call(&domain, "load", &[16]), 6, "nwritten");
    assert_eq!(domain.take_stdout(), b"hello\n");
    assert_eq!(domain.take_stdout(), b"", "drained");
    assert_eq!(call(&domain, "w_fd_write", &[2, 0, 1, 16]), 0);
    assert_eq!(domain.take_stderr(), b"hello\n");
}

#[test]
fn the_arguments_reach_the_guest() {
    let _serial = serial();
    let domain = domain(DomainConfig::new().args(["prog", "one"]).env("K", "v"));
    assert_eq!(call(&domain, "w_args_sizes_get", &[0, 4]), 0);
    assert_eq!(call(&domain, "load", &[0]), 2, "argc");
    assert_eq!(call(&domain, "load", &[4]), 9, "bytes, NULs included");
    assert_eq!(call(&domain, "w_args_get", &[16, 64]), 0);
    assert_eq!(call(&domain, "load", &[16]), 64);
    assert_eq!(call(&domain, "load", &[20]), 69);
    assert_eq!(peek(&domain, 64, 9), b"prog\0one\0");
    assert_eq!(call(&domain, "w_environ_get", &[16, 64]), 0);
    assert_eq!(peek(&domain, 64, 4), b"K=v\0");
}

#[test]
fn proc_exit_is_an_exit_status_not_a_trap() {
    let _serial = serial();
    let domain = domain(DomainConfig::new());
    match domain.call("w_proc_exit", &[Val::I32(3)]) {
        Err(CallError::Exit(3)) => {}
        other => panic!("expected Exit(3), got {other:?}"),
    }
    assert_eq!(domain.state(), DomainState::Running);
    assert_eq!(call(&domain, "w_sched_yield", &[]), 0, "the domain goes on");
    assert!(matches!(
        domain.call("w_proc_exit", &[Val::I32(0)]),
        Err(CallError::Exit(0))
    ));
}

#[test]
fn a_stale_or_forged_fd_is_ebadf() {
    let _serial = serial();
    let domain = domain(DomainConfig::new());
    iovec(&domain, 0, 100, 1);
    // A pipe opened through the custody ABI is a WASI fd too.
    assert_eq!(call(&domain, "abi_pipe", &[200, 204]), 0);
    let (read_end, write_end) = (call(&domain, "load", &[200]), call(&domain, "load", &[204]));
    assert!(write_end >= 1 << 20, "a table id, above every small fd");
    assert_eq!(call(&domain, "w_fd_write", &[write_end, 0, 1, 16]), 0);
    assert_eq!(call(&domain, "w_fd_close", &[write_end]), 0);
    assert_eq!(
        call(&domain, "w_fd_write", &[write_end, 0, 1, 16]),
        EBADF,
        "stale"
    );
    assert_eq!(
        call(&domain, "w_fd_close", &[write_end]),
        EBADF,
        "closed twice"
    );
    assert_eq!(
        call(&domain, "w_fd_write", &[7, 0, 1, 16]),
        EBADF,
        "no such small fd"
    );
    assert_eq!(
        call(&domain, "w_fd_write", &[-5, 0, 1, 16]),
        EBADF,
        "forged"
    );
    assert_eq!(call(&domain, "w_fd_read", &[read_end, 0, 1, 16]), 0);
    assert_eq!(
        call(&domain, "load", &[16]),
        1,
        "the byte written before the close"
    );
    assert_eq!(call(&domain, "abi_close", &[read_end]), 0);
    assert_eq!(call(&domain, "w_fd_read", &[read_end, 0, 1, 16]), EBADF);
}

#[test]
fn a_policy_can_refuse_wasi_whole() {
    let _serial = serial();
    let (host, _) = host_with(Policy {
        wasi: false,
        ..Policy::default()
    });
    let module = host.compile(wasi_driver("").as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    match domain.load("main", &module) {
        Err(error @ LoadError::DeniedModule { .. }) => {
            assert!(
                error.to_string().contains("wasi_snapshot_preview1::"),
                "{error}"
            );
        }
        other => panic!("expected a denied import, got {other:?}"),
    }
    // Nothing of WASI is made for such a domain: streams that would be
    // duplicated host fds are not opened.
    let before = open_non_socket_fds();
    let domain = host
        .create_domain(
            DomainConfig::new()
                .stdout(custody_wasi::Stdio::Inherit)
                .stderr(custody_wasi::Stdio::Inherit),
        )
        .unwrap();
    assert_eq!(open_non_socket_fds(), before, "no stream opened");
    assert!(domain.take_stdout().is_empty());
    domain.close_pipes();
    domain.unload().unwrap();
}

#[test]
fn an_unknown_function_or_a_wrong_signature_names_the_import() {
    let _serial = serial();
    let host = host();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    let unknown = host
        .compile(br#"(module (import "wasi_snapshot_preview1" "fd_teleport" (func (param i32) (result i32))))"#)
        .unwrap();
    let error = domain.load("unknown", &unknown).unwrap_err();
    assert!(
        matches!(error, LoadError::UnknownHostFunction { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("fd_teleport"), "{error}");
    let wrong = host
        .compile(br#"(module (import "wasi_snapshot_preview1" "fd_close" (func (param i64) (result i32))))"#)
        .unwrap();
    let error = domain.load("wrong", &wrong).unwrap_err().to_string();
    assert!(error.contains("fd_close"), "{error}");
}
