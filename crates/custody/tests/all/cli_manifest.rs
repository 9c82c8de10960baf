//! `custody run --manifest`: domains from a manifest at the command line.

use crate::common::*;

use std::path::PathBuf;

/// A fresh directory for one test's manifest and modules.
fn scratch_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("custody-cli-manifest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    dir
}

/// `main` imports `png` (listed after it) and reads `data/pixels` through
/// its pre-open; paths are relative to the manifest.
const MANIFEST: &str = r#"
name = "thumbnailer"
[[module]]
name = "main"
path = "thumbnailer.wat"
[[module]]
name = "png"
path = "lib/png.wat"
[preopen]
data = "data"
"#;

const THUMBNAILER: &str = r#"(module
  (import "png" "decode" (func $decode (param i32) (result i32)))
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "data/pixels")
  (func (export "run") (param i32) (result i32) (i32.add (call $decode (local.get 0)) (i32.const 1)))
  (func (export "open_pixels") (result i32)
    (call $open (i32.const 0) (i32.const 11) (i32.const 1) (i32.const 64))))"#;

const PNG: &str = r#"(module
  (func (export "decode") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2))))"#;

/// The thumbnailer's directory, with `policy` appended to its manifest.
fn thumbnailer(tag: &str, policy: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    std::fs::write(dir.join("thumbnailer.wat"), THUMBNAILER).unwrap();
    std::fs::write(dir.join("lib/png.wat"), PNG).unwrap();
    std::fs::write(dir.join("data/pixels"), "...").unwrap();
    std::fs::write(dir.join("manifest.toml"), format!("{MANIFEST}{policy}")).unwrap();
    dir.join("manifest.toml")
}

#[test]
fn a_manifest_runs_its_modules_across_their_imports() {
    let manifest = thumbnailer("run", "");
    let manifest = manifest.to_str().unwrap();
    // The working directory is the repository: paths are the manifest's.
    let output = custody(&["run", "--manifest", manifest, "--invoke", "run", "20"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("result: 41"), "{stdout}");
    assert!(stdout.contains("ledger: opened 0"), "{stdout}");

    // A negative first argument, an export of the other module, JSON.
    let output = custody(&[
        "run",
        "--manifest",
        manifest,
        "--invoke",
        "decode",
        "-5",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["result"], serde_json::json!([-10]));

    // The pre-open is the manifest's; the handle is released at unload.
    let output = custody(&["run", "--manifest", manifest, "--invoke", "open_pixels"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("result: 0"), "{stdout}");
    assert!(
        stdout.contains(
            "opened 1, closed by the guest 0, closed by the host 0, released at recycle 0, \
             released at unload 1"
        ),
        "{stdout}"
    );
}

#[test]
fn a_manifest_policy_applies_and_the_flags_apply_over_it() {
    let manifest = thumbnailer(
        "policy",
        "[policy]\ndeadline_ms = 50\nmemory_limit = \"1MiB\"\non_memory_limit = \"abort\"\n",
    );
    let dir = manifest.parent().unwrap();
    std::fs::write(
        dir.join("thumbnailer.wat"),
        r#"(module (import "png" "decode" (func (param i32) (result i32)))
          (memory 1)
          (func (export "spin") (loop $l (br $l)))
          (func (export "grow") (result i32) (memory.grow (i32.const 100))))"#,
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    for (args, needle) in [
        (vec!["--invoke", "spin"], "deadline of 50ms"),
        (
            vec!["--invoke", "spin", "--deadline", "100ms"],
            "deadline of 100ms",
        ),
        (vec!["--invoke", "grow"], "memory limit of 1048576 bytes"),
        (
            vec!["--invoke", "grow", "--memory", "2MiB"],
            "memory limit of 2097152 bytes",
        ),
    ] {
        let mut all = vec!["run", "--manifest", manifest];
        all.extend(&args);
        let output = custody(&all);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&output)
        );
        let line = error_line(&output);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

#[test]
fn manifest_errors_are_usage_or_load_errors_and_load_errors_print_the_ledger() {
    let module = scratch_module("lone.wat", r#"(module (func (export "run")))"#);
    let module = module.to_str().unwrap();
    let manifest = thumbnailer("errors", "");
    let manifest_path = manifest.to_str().unwrap();
    let dir = manifest.parent().unwrap();
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "colour = 1\n").unwrap();
    let missing = dir.join("missing.toml");
    std::fs::write(
        &missing,
        "[[module]]\nname = \"main\"\npath = \"nope.wasm\"\n",
    )
    .unwrap();
    let engine = dir.join("engine.toml");
    std::fs::write(&engine, format!("{MANIFEST}[policy]\nthreads = true\n")).unwrap();
    for (args, needle) in [
        (vec!["run"], "give a MODULE to run, or --manifest FILE"),
        (vec!["run", module, "--manifest", manifest_path], "not both"),
        (
            vec!["run", "--manifest", unknown.to_str().unwrap()],
            "unknown field `colour`",
        ),
        (
            vec!["run", "--manifest", missing.to_str().unwrap()],
            "nope.wasm",
        ),
        (
            vec!["run", "--manifest", engine.to_str().unwrap()],
            "threads is engine-wide",
        ),
        (
            vec!["run", "--manifest", "/nonexistent/manifest.toml"],
            "cannot read manifest",
        ),
    ] {
        let output = custody(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let line = error_line(&output);
        assert!(line.contains(needle), "{args:?}: {line}");
    }

    // A load error after png's start function opened a pipe: exit 2, and
    // the ledger shows the pipe released at unload.
    std::fs::write(
        dir.join("lib/png.wat"),
        r#"(module
          (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func $start (drop (call $pipe (i32.const 0) (i32.const 4))))
          (start $start))"#,
    )
    .unwrap();
    let output = custody(&["run", "--manifest", manifest_path, "--json"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("module \"main\": unresolved import png::decode"),
        "{error}"
    );
    assert_eq!(json["ledger"]["opened"], 2);
    assert_eq!(json["ledger"]["released_at_unload"], 2);

    // A denied import in a manifest's module exits 4.
    std::fs::write(dir.join("lib/png.wat"), PNG).unwrap();
    std::fs::write(
        &manifest,
        format!("{MANIFEST}[policy]\ndeny = [\"MayLeakOnAbort\"]\n"),
    )
    .unwrap();
    let output = custody(&["run", "--manifest", manifest_path, "--invoke", "run", "1"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        error_line(&output).contains("MayLeakOnAbort"),
        "{}",
        stderr(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ledger: opened 0"));
}
