//! The three ways a case runs: through custody, through wasmtime-wasi's
//! preview 1 (the reference), and as the native build in a child process.
//! Each takes a fresh scratch directory from the case.

use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use custody_host::{CallError, DomainConfig, Host, Module, Policy};
use custody_wasi::{Stdio, Wasi, WasiDomain, WasiDomainConfig};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::{Case, Guests, Outcome, Status, corpus, go_guests};

/// The most a run may print on stdout or stderr: custody's default
/// `stdio_capture_limit`, and the size of wasmtime's capture pipes.
const CAPTURE_LIMIT: usize = 1 << 20;

/// A file holding `bytes`, for a run's stdin (outside the scratch
/// directory, which the programs list).
fn stdin_file(case: &Case, bytes: &[u8]) -> File {
    let dir = custody_testkit::scratch(&format!("wasi-{}-stdin", case.program));
    let path = dir.join("stdin");
    std::fs::write(&path, bytes).unwrap();
    let file = File::open(path).unwrap();
    // The open file outlives its name.
    clean(&dir);
    file
}

/// The host every custody run of a C program uses, and the corpus
/// compiled once.
fn custody() -> &'static (Host, Module) {
    static HOST: OnceLock<(Host, Module)> = OnceLock::new();
    HOST.get_or_init(|| {
        let host = custody_testkit::host();
        let module = host
            .compile_file(corpus())
            .unwrap_or_else(|e| panic!("corpus.wasm: {e}"));
        (host, module)
    })
}

/// The host every custody run of a Go guest uses, and the Go guests
/// compiled once. Go's runtime makes a 3 MB module, which a debug build of
/// wasmtime compiles in about a minute: the compile timeout is raised, and
/// the compiled code kept on disk beside the build (a later run loads it).
fn custody_go() -> &'static (Host, Module) {
    static HOST: OnceLock<(Host, Module)> = OnceLock::new();
    HOST.get_or_init(|| {
        let policy = Policy {
            compile_timeout: Duration::from_secs(600),
            ..Policy::default()
        };
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-guests-cache");
        let host = Host::builder(policy)
            .extension(Wasi)
            .disk_cache(cache)
            .build()
            .unwrap_or_else(|e| panic!("a host for the Go guests: {e}"));
        let module = host
            .compile_file(go_guests())
            .unwrap_or_else(|e| panic!("go/guests.wasm: {e}"));
        (host, module)
    })
}

/// Runs `case` in a custody domain: `_start` called once, stdout and stderr
/// captured.
pub fn custody_run(case: &Case) -> Outcome {
    let (host, module) = match case.guests {
        Guests::C => custody(),
        Guests::Go => custody_go(),
    };
    let dir = case.scratch("custody");
    let mut config = DomainConfig::new()
        .args(case.argv())
        .stdout(Stdio::Capture)
        .stderr(Stdio::Capture)
        .preopen(case.root(), &dir);
    for (guest, sub) in &case.preopens {
        config = config.preopen(*guest, dir.join(sub));
    }
    for (name, value) in &case.env {
        config = config.env(name, value);
    }
    if let Some(bytes) = &case.stdin {
        config = config.stdin(Stdio::File(stdin_file(case, bytes)));
    }
    let domain = host.create_domain(config).unwrap();
    domain
        .load(case.program, module)
        .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
    let status = match domain.call("_start", &[]) {
        Ok(_) => Status::Exit(0),
        Err(CallError::Exit(n)) => Status::Exit(n),
        Err(CallError::Trap { .. }) => Status::Trap,
        Err(e) => panic!("{}: custody: {e}", case.label()),
    };
    let outcome = Outcome {
        stdout: domain.take_stdout(),
        stderr: domain.take_stderr(),
        status,
    };
    domain.unload().unwrap();
    clean(&dir);
    outcome
}

/// The engine every wasmtime-wasi run uses, and the corpus compiled once.
fn wasmtime() -> &'static (wasmtime::Engine, wasmtime::Module) {
    static ENGINE: OnceLock<(wasmtime::Engine, wasmtime::Module)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // Unoptimised code compiles faster, and runs these programs the
        // same.
        let mut config = wasmtime::Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let module = wasmtime::Module::from_file(&engine, corpus()).unwrap();
        (engine, module)
    })
}

/// Runs `case` under wasmtime-wasi's preview 1, as its documentation shows
/// a command run: `_start` called once, `I32Exit` as the exit status.
/// The C corpus only: the Go guests are compared with their native build.
pub fn wasmtime_run(case: &Case) -> Outcome {
    assert_eq!(
        case.guests,
        Guests::C,
        "{}: wasmtime runs the C corpus",
        case.label()
    );
    let (engine, module) = wasmtime();
    let dir = case.scratch("wasmtime");
    let stdout = MemoryOutputPipe::new(CAPTURE_LIMIT);
    let stderr = MemoryOutputPipe::new(CAPTURE_LIMIT);
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(&case.argv())
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        // File system calls on this thread rather than tokio's blocking
        // pool: the same results, without a thread hop per call.
        .allow_blocking_current_thread(true);
    wasi.preopened_dir(&dir, ".", FsPerms::ReadWrite).unwrap();
    for (guest, sub) in &case.preopens {
        wasi.preopened_dir(dir.join(sub), guest, FsPerms::ReadWrite)
            .unwrap();
    }
    for (name, value) in &case.env {
        wasi.env(name, value);
    }
    if let Some(bytes) = &case.stdin {
        wasi.stdin(MemoryInputPipe::new(bytes.clone()));
    }
    let mut linker: wasmtime::Linker<WasiP1Ctx> = wasmtime::Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    let mut store = wasmtime::Store::new(engine, wasi.build_p1());
    let instance = linker.instantiate(&mut store, module).unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    let status = match start.call(&mut store, ()) {
        Ok(()) => Status::Exit(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Status::Exit(exit.0),
            None => Status::Trap,
        },
    };
    drop(store);
    clean(&dir);
    Outcome {
        stdout: stdout.contents().to_vec(),
        stderr: stderr.contents().to_vec(),
        status,
    }
}

/// Runs `case`'s native build as a child process in the scratch directory,
/// with only the case's environment.
pub fn native_run(case: &Case) -> Outcome {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = case.scratch("native");
    let stdin = match &case.stdin {
        Some(bytes) => std::process::Stdio::from(stdin_file(case, bytes)),
        None => std::process::Stdio::null(),
    };
    let output = std::process::Command::new(case.native())
        .arg0(case.program)
        .args(&case.args)
        .env_clear()
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&dir)
        .stdin(stdin)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", case.native().display()));
    let status = match (output.status.code(), output.status.signal()) {
        (Some(code), _) => Status::Exit(code),
        (None, Some(signal)) => Status::Signal(signal),
        (None, None) => unreachable!("a child ends with a code or a signal"),
    };
    clean(&dir);
    Outcome {
        stdout: output.stdout,
        stderr: output.stderr,
        status,
    }
}

/// Removes a run's scratch directory: the outcome holds all a test looks
/// at (largeio leaves 16 MiB).
fn clean(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
