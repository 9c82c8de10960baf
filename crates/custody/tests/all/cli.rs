//! The `custody` command line, end to end.

use crate::common::*;

use std::path::Path;
use std::process::Command;

#[test]
fn the_demo_runs_and_prints_the_ledger() {
    let output = custody(&["run", "examples/demo.wat", "--preopen", "examples/data"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(stdout.contains("result: 34"), "{stdout}");
    assert!(
        stdout.contains(
            "opened 3, closed by the guest 2, closed by the host 0, released at recycle 0, \
             released at unload 1, release failures 0, recycles 0"
        ),
        "{stdout}"
    );
    assert!(stderr(&output).contains("hello from inside a custody domain"));
}

#[test]
fn json_output_is_one_object() {
    let output = custody(&[
        "run",
        "examples/demo.wat",
        "--invoke",
        "run",
        "--preopen",
        "data=examples/data",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["result"], serde_json::json!([34]));
    assert_eq!(json["ledger"]["opened"], 3);
    assert_eq!(json["ledger"]["closed_by_guest"], 2);
    assert_eq!(json["ledger"]["released_at_unload"], 1);
    assert_eq!(json["ledger"]["release_failures"], 0);
    assert!(json["diagnostics"].is_array());
}

#[test]
fn arguments_are_parsed_by_the_parameter_types() {
    let module = scratch_module(
        "add.wat",
        r#"(module (func (export "add") (param i32 i64) (result i64) (i64.add (i64.extend_i32_s (local.get 0)) (local.get 1))))"#,
    );
    let output = custody(&[
        "run",
        module.to_str().unwrap(),
        "--invoke",
        "add",
        "-5",
        "7000000000",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["result"], serde_json::json!([6999999995i64]));
}

#[test]
fn errors_are_one_line_with_their_exit_status() {
    let malformed = scratch_module("bad.wat", "(module (func $f (result i32)))");
    let traps = scratch_module("trap.wat", r#"(module (func (export "run") unreachable))"#);
    let sleeper = scratch_module(
        "sleeper.wat",
        r#"(module (import "custody" "sleep" (func (param i32) (result i32))) (func (export "run")))"#,
    );
    let demo = "examples/demo.wat";
    for (args, status, needle) in [
        (
            vec!["run", malformed.to_str().unwrap()],
            2,
            "malformed module",
        ),
        (vec!["run", "/nonexistent.wasm"], 2, "cannot read"),
        (vec!["run", demo, "--invoke", "nope"], 2, "nope"),
        (
            vec!["run", demo, "--invoke", "run", "1"],
            2,
            "takes 0 argument(s), got 1",
        ),
        (vec!["run", traps.to_str().unwrap()], 3, "unreachable"),
        (
            vec![
                "run",
                sleeper.to_str().unwrap(),
                "--deny",
                "Synchronization",
            ],
            4,
            "custody::sleep",
        ),
        (
            vec!["run", sleeper.to_str().unwrap(), "--deny", "Bogus"],
            2,
            "unknown category",
        ),
    ] {
        let output = custody(&args);
        assert_eq!(
            output.status.code(),
            Some(status),
            "{args:?}: {}",
            stderr(&output)
        );
        let line = error_line(&output);
        assert!(line.contains(needle), "{args:?}: {line}");
        // No result on stdout; once a domain existed, its ledger.
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.is_empty() || (stdout.starts_with("ledger: ") && stdout.lines().count() == 1),
            "{args:?}: {stdout}"
        );
    }
}

#[test]
fn a_guest_without_its_preopen_is_denied() {
    let output = custody(&["run", "examples/demo.wat", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["result"], serde_json::json!([-8]), "E_DENIED");
    assert_eq!(json["ledger"]["opened"], 0);
}

#[test]
fn policy_flags_and_files_apply() {
    let spin = scratch_module(
        "spin.wat",
        r#"(module (func (export "run") (loop $l (br $l))))"#,
    );
    let grow = scratch_module(
        "grow.wat",
        r#"(module (memory 1) (func (export "run") (result i32) (memory.grow (i32.const 100))))"#,
    );
    let policy = scratch_module(
        "policy.toml",
        "deadline_ms = 50\nmemory_limit_bytes = 1048576\non_memory_limit = \"abort\"\n",
    );
    let abort = scratch_module("abort.toml", "on_memory_limit = \"abort\"\n");
    let typo = scratch_module("typo.toml", "deadline = 50\n");
    let spin = spin.to_str().unwrap();
    let grow = grow.to_str().unwrap();
    for (args, status, needle) in [
        (
            vec!["run", spin, "--deadline", "100ms"],
            3,
            "deadline of 100ms",
        ),
        (
            vec!["run", spin, "--deadline", "0.05s"],
            3,
            "deadline of 50ms",
        ),
        (
            vec!["run", spin, "--policy", policy.to_str().unwrap()],
            3,
            "deadline of 50ms",
        ),
        (
            vec![
                "run",
                grow,
                "--policy",
                abort.to_str().unwrap(),
                "--memory",
                "1M",
            ],
            3,
            "memory limit of 1048576 bytes",
        ),
        (
            vec!["run", grow, "--policy", policy.to_str().unwrap()],
            3,
            "memory limit",
        ),
        (
            vec!["run", spin, "--policy", typo.to_str().unwrap()],
            2,
            "unknown field `deadline`",
        ),
    ] {
        let output = custody(&args);
        assert_eq!(
            output.status.code(),
            Some(status),
            "{args:?}: {}",
            stderr(&output)
        );
        let line = error_line(&output);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    for bad in [
        ["--deadline", "soon"],
        ["--deadline", "-5"],
        ["--memory", "lots"],
    ] {
        let output = custody(&["run", spin, bad[0], bad[1]]);
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
    }
    // Within the cap, the same module runs.
    let output = custody(&["run", grow, "--memory", "16M", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Past it, by default, its grow returns -1 and the call goes on; a
    // diagnostic says the cap was reached.
    let output = custody(&["run", grow, "--memory", "1M"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("-1"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let err = stderr(&output);
    assert!(
        err.contains("memoryLimitReached") && err.contains("memory limit of 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_event() {
    let output = custody(&[
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "run",
        "examples/demo.wat",
        "--preopen",
        "examples/data",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let has = |target: &str, message: &str| {
        events
            .iter()
            .any(|e| e["target"] == target && e["fields"]["message"] == message)
    };
    assert!(has("custody::domain", "created"), "{events:?}");
    assert!(has("custody::domain", "ended"), "{events:?}");
    assert!(
        has("custody::guest", "hello from inside a custody domain"),
        "{events:?}"
    );
}

#[test]
fn compiled_modules_are_cached_on_disk_unless_told_not_to() {
    let dir = std::env::temp_dir().join(format!("custody-cli-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "examples/demo.wat", "--preopen", "examples/data"];
        args.extend_from_slice(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(&args)
            .current_dir(repo_root())
            .env("CUSTODY_CACHE_DIR", &dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    };
    let files = || {
        fn count(dir: &Path) -> usize {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        }
        count(&dir)
    };
    run(&["--no-cache"]);
    assert_eq!(files(), 0, "--no-cache writes nothing");
    run(&[]);
    assert!(
        files() > 0,
        "the compiled module is kept in {}",
        dir.display()
    );
    run(&[]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_deadline_out_of_range_is_a_usage_error_not_a_panic() {
    let output = custody(&["run", "examples/demo.wat", "--deadline", "1e300s"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("out of range"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_closed_stdout_does_not_kill_the_cli() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["run", "examples/demo.wat", "--preopen", "examples/data"])
        .current_dir(repo_root())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn a_missing_preopen_directory_is_named_as_such() {
    let output = custody(&["run", "examples/demo.wat", "--preopen", "no/such/dir"]);
    assert_fails_with(&output, 2, "no such directory");
}

#[test]
fn a_trap_still_prints_the_ledger_and_json_is_one_object_with_the_error() {
    let module = scratch_module(
        "trap_after_pipe.wat",
        r#"(module
          (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "run") (drop (call $pipe (i32.const 0) (i32.const 4))) unreachable))"#,
    );
    let module = module.to_str().unwrap();
    let text = custody(&["run", module]);
    assert_eq!(text.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(
            "ledger: opened 2, closed by the guest 0, closed by the host 0, released at recycle 0, \
             released at unload 2"
        ),
        "{stdout}"
    );
    assert!(
        error_line(&text).contains("unreachable"),
        "{}",
        stderr(&text)
    );

    let json = custody(&["run", module, "--json"]);
    assert_eq!(json.status.code(), Some(3));
    let object: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        object["error"].as_str().unwrap().contains("trapped"),
        "{object}"
    );
    assert_eq!(object["ledger"]["released_at_unload"], 2);
    assert_eq!(object["diagnostics"][0]["assistant"], "callAborted");
    assert!(object.get("result").is_none());
}

#[test]
fn an_escalation_exits_3() {
    let module = scratch_module(
        "orphan.wat",
        r#"(module
          (import "custody" "critical_enter" (func $enter (result i32)))
          (func (export "run") (drop (call $enter))))"#,
    );
    let output = custody(&["run", module.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        error_line(&output).contains("escalated"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_module_past_the_compile_limits_is_a_load_error_at_the_cli() {
    // 5,000 nested blocks, past the default nesting limit of 1,024.
    let depth = 5000;
    let text = format!(
        "(module (func (export \"run\") {} {}))",
        "(block ".repeat(depth),
        ")".repeat(depth)
    );
    let module = scratch_module("nested.wat", &text);
    let output = custody(&["run", module.to_str().unwrap(), "--no-cache"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        error_line(&output).contains("blocks nested in one function"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn error_codes_are_shown_with_their_names() {
    let output = custody(&["run", "examples/demo.wat", "--no-cache"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("result: -8 (E_DENIED)\n"), "{stdout}");
}

#[test]
fn guest_names_in_messages_are_escaped() {
    // An export whose name carries an escape sequence and a newline.
    let module = scratch_module(
        "names.wat",
        r#"(module (func (export "run\u{1b}[2J\0acustody: forged") unreachable))"#,
    );
    let output = custody(&["run", module.to_str().unwrap(), "--no-cache"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(text.contains("run\\u{1b}[2J"), "{text:?}");
}

#[test]
fn a_flood_of_stale_ids_is_cut_and_summed_up() {
    // 200,000 closes of a forged id: each fires staleHandleUse.
    let module = scratch_module(
        "stale.wat",
        r#"(module
          (import "custody" "close" (func $close (param i32) (result i32)))
          (func (export "run") (local i32)
            (local.set 0 (i32.const 200000))
            (loop $l
              (drop (call $close (i32.const 12345)))
              (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#,
    );
    for json in [false, true] {
        let mut args = vec!["run", module.to_str().unwrap(), "--no-cache"];
        if json {
            args.push("--json");
        }
        let output = custody(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        let all = format!(
            "{}{}",
            stderr(&output),
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(all.len() < 1 << 20, "{} bytes of output", all.len());
        let reported = all.matches("staleHandleUse").count();
        assert!(reported < 1000, "{reported} reports");
        assert!(
            all.contains("more staleHandleUse diagnostics suppressed"),
            "{}",
            &all[all.len().saturating_sub(2000)..]
        );
    }
}

#[test]
fn compile_bounds_and_threads_come_from_the_policy_file() {
    let dir = std::env::temp_dir().join(format!("custody-cli-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let body = "(i32.add (local.get 0) (i32.const 1))".repeat(2000);
    let big = scratch_module(
        "big.wat",
        &format!(
            r#"(module (func (export "run") (param i32) (result i32) (local.get 0) {body} (drop)))"#
        ),
    );
    let small_compiles = policy("compile.toml", "compile_memory_limit_bytes = 100000\n");
    let output = custody(&[
        "run",
        big.to_str().unwrap(),
        "--no-cache",
        "--policy",
        &small_compiles,
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        error_line(&output).contains("compile_memory_limit"),
        "{}",
        stderr(&output)
    );

    let waiter = scratch_module(
        "waiter.wat",
        r#"(module (memory (export "memory") 1 1 shared)
             (func (export "run") (result i32)
               (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))"#,
    );
    let output = custody(&["run", waiter.to_str().unwrap(), "--no-cache"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        error_line(&output).contains("threads = true"),
        "{}",
        stderr(&output)
    );

    let threads = policy(
        "threads.toml",
        "threads = true\nallow_infinite_wait = true\ndeadline_ms = 200\n",
    );
    let started = std::time::Instant::now();
    let output = custody(&[
        "run",
        waiter.to_str().unwrap(),
        "--no-cache",
        "--policy",
        &threads,
    ]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        error_line(&output).contains("deadline"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unload_blocked_by_a_timer_shows_the_timer_and_its_origin_then_forces() {
    let module = scratch_module(
        "leaky_timer.wat",
        r#"(module
          (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "tick")
          (func $arm_the_timer (result i32)
            (call $timer_set (i32.const 1000) (i32.const 1000) (i32.const 64) (i32.const 4) (i32.const 8)))
          (func (export "run") (result i32) (call $arm_the_timer))
          (func (export "tick") (param i32)))"#,
    );
    let started = std::time::Instant::now();
    let output = custody(&[
        "run",
        module.to_str().unwrap(),
        "--no-cache",
        "--unload-timeout",
        "300ms",
    ]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    let blocked = text
        .lines()
        .find(|l| l.starts_with("custody: unloadBlocked:"))
        .unwrap_or_else(|| panic!("no unloadBlocked report: {text}"));
    assert!(blocked.contains("Timer \"tick\""), "{blocked}");
    assert!(
        blocked.contains("arm_the_timer"),
        "the guest stack that armed it: {blocked}"
    );
    assert!(text.contains("custody: unloadForced:"), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("released at unload 1"),
        "the timer's handle: {stdout}"
    );
}
