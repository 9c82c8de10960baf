//! The official WASI preview 1 test suite (WebAssembly/wasi-testsuite's
//! prebuilt C, Rust and AssemblyScript programs), run whole through the
//! `custody` command line the way the suite's own runner runs each program
//! under wasmtime's CLI. Every program must pass.
//!
//! The suite stays out of the repository: the tarball's path comes from
//! `CUSTODY_WASI_TESTSUITE` (CI gives it the copy beside the clone). Without
//! it the build script sets `cfg(no_wasi_testsuite)` and the test is
//! ignored with the reason, never passed; with `CUSTODY_REQUIRE_GUESTS=1`
//! it runs and fails instead.
//!
//! Why here and not in `custody-guests`: the runner's contract is a command
//! line (`wasmtime run --dir ROOT::/ --env K=V NAME.wasm ARGS...`), and only
//! this crate's tests get the built CLI (`CARGO_BIN_EXE_custody`) without
//! building it themselves.
//!
//! How one program `NAME.wasm` runs (the suite's runner, as its README
//! gives it): `NAME.json` beside it may give `args`, `env`, `root` (a
//! directory beside the program, pre-opened as `/`), `dirs` (each pre-opened
//! under its own name), `exit_code` (default 0) and `stdout`; the working
//! directory is the program's, stdin is empty, and whatever ends in
//! `.cleanup` is removed before the next program. It passes when its exit
//! status is `exit_code` and its stdout starts with `stdout`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How many programs the suite's tarball holds (its README: 14 C, 46 Rust,
/// 12 AssemblyScript).
const PROGRAMS: usize = 72;

/// The most one program may take (a debug build compiles each module
/// first): past it the program is killed and fails, the suite goes on.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// What `NAME.json` asks of one run.
struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// `--dir` values.
    dirs: Vec<String>,
    exit_code: i32,
    stdout: String,
}

impl Spec {
    /// The spec beside `wasm` (the defaults without a JSON file).
    fn of(wasm: &Path) -> Result<Spec, String> {
        let mut spec = Spec {
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            exit_code: 0,
            stdout: String::new(),
        };
        let json = wasm.with_extension("json");
        if !json.exists() {
            return Ok(spec);
        }
        let text = std::fs::read_to_string(&json).map_err(|e| format!("{json:?}: {e}"))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
        let strings = |key: &str| -> Vec<String> {
            value[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        spec.args = strings("args");
        spec.dirs = strings("dirs");
        if let Some(root) = value["root"].as_str() {
            spec.dirs.push(format!("{root}::/"));
        }
        if let Some(env) = value["env"].as_object() {
            for (name, v) in env {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                spec.env.push((name.clone(), v));
            }
        }
        if let Some(code) = value["exit_code"].as_i64() {
            spec.exit_code = i32::try_from(code).map_err(|e| format!("exit_code: {e}"))?;
        }
        if let Some(stdout) = value["stdout"].as_str() {
            spec.stdout = stdout.to_owned();
        }
        Ok(spec)
    }
}

/// How one run ended and what it printed.
struct Run {
    status: Result<ExitStatus, String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `wasm` through `custody run` as the suite's runner would.
fn run(wasm: &Path, spec: &Spec, scratch: &Path) -> Result<Run, String> {
    let dir = wasm.parent().ok_or("a program with no directory")?;
    let name = wasm.file_name().ok_or("a program with no name")?;
    let (out, err) = (scratch.join("stdout"), scratch.join("stderr"));
    let file = |path: &Path| File::create(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_custody"));
    command.arg("run");
    for dir in &spec.dirs {
        command.arg("--dir").arg(dir);
    }
    for (name, value) in &spec.env {
        command.arg("--env").arg(format!("{name}={value}"));
    }
    command
        .arg(name)
        .arg("--")
        .args(&spec.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file(&out)?)
        .stderr(file(&err)?);
    let mut child = command.spawn().map_err(|e| format!("custody: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > TIME_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {TIME_LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for custody: {e}")),
        }
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok(Run {
        status,
        stdout: read(&out)?,
        stderr: read(&err)?,
    })
}

/// Why `run` fails `spec`, if it does.
fn verdict(spec: &Spec, run: &Run) -> Option<String> {
    let mut why = Vec::new();
    match &run.status {
        Err(e) => why.push(e.clone()),
        Ok(status) if status.code() != Some(spec.exit_code) => {
            why.push(format!("exit status {status}, expected {}", spec.exit_code));
        }
        Ok(_) => {}
    }
    if !run.stdout.starts_with(spec.stdout.as_bytes()) {
        why.push(format!(
            "stdout {:?} does not start with {:?}",
            tail(&run.stdout, 400),
            spec.stdout
        ));
    }
    if why.is_empty() {
        return None;
    }
    // A Rust program's panic message opens stderr, custody's error ends it.
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let head = lines
        .iter()
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" | ");
    why.push(format!("stderr head: {head:?}"));
    why.push(format!("stderr tail: {:?}", tail(&run.stderr, 300)));
    Some(why.join("; "))
}

/// The last `max` bytes of `bytes`, as text.
fn tail(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(max)..]).into_owned()
}

/// Every `.wasm` program under `dir`, sorted (not inside the programs'
/// data directories, `*.dir`).
fn programs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.extension().is_none_or(|e| e != "dir") {
                programs(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "wasm") {
            found.push(path);
        }
    }
    found.sort();
}

/// Removes everything under `dir` whose name ends in `.cleanup`.
fn clean(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if entry.file_name().to_string_lossy().ends_with(".cleanup") {
            let _ = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        } else if is_dir {
            clean(&path);
        }
    }
}

/// The suite's tarball, from `CUSTODY_WASI_TESTSUITE` (a relative path is
/// taken from the current directory).
fn tarball() -> PathBuf {
    match std::env::var_os("CUSTODY_WASI_TESTSUITE").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "CUSTODY_REQUIRE_GUESTS is set but CUSTODY_WASI_TESTSUITE is not: give it the \
             path of wasi-testsuite-*-wasm32-wasip1.tar.xz"
        ),
    }
}

#[test]
#[cfg_attr(
    no_wasi_testsuite,
    ignore = "CUSTODY_WASI_TESTSUITE is not set (the path of the official WASI preview 1 \
              suite's tarball; see .ci/run)"
)]
fn the_official_wasi_preview1_suite_passes_whole() {
    let tarball = tarball();
    let root = std::env::temp_dir().join(format!("custody-wasi-testsuite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (suite, scratch) = (root.join("suite"), root.join("scratch"));
    for dir in [&suite, &scratch] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let untar = Command::new("tar")
        .arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(&suite)
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(
        untar.status.success(),
        "tar -xJf {}: {}\n{}",
        tarball.display(),
        untar.status,
        String::from_utf8_lossy(&untar.stderr)
    );
    let mut found = Vec::new();
    programs(&suite, &mut found);
    let mut failures = Vec::new();
    for wasm in &found {
        let label = wasm
            .strip_prefix(&suite)
            .unwrap_or(wasm)
            .display()
            .to_string();
        let outcome = Spec::of(wasm).and_then(|spec| {
            let run = run(wasm, &spec, &scratch)?;
            Ok(verdict(&spec, &run))
        });
        match outcome {
            Ok(None) => {}
            Ok(Some(why)) | Err(why) => failures.push(format!("FAIL {label}: {why}")),
        }
        clean(&suite);
    }
    let passed = found.len() - failures.len();
    for failure in &failures {
        println!("{failure}");
    }
    println!("{passed} passed, {} failed", failures.len());
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(found.len(), PROGRAMS, "programs in {}", tarball.display());
    assert!(
        failures.is_empty(),
        "{passed} of {PROGRAMS} passed:\n{}",
        failures.join("\n")
    );
}
