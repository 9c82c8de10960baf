//! `custody run` on WASI commands, as wasmtime runs them (SPEC W2): ARGS
//! are the program's, its stdio is custody's, its exit status is custody's.

use crate::common::*;

use std::path::PathBuf;

/// `fd_write(1, "text")` as WAT (the iovec at 0, the count at 8, the text
/// at 16).
fn write_stdout(text: &str) -> String {
    format!(
        r#"(i32.store (i32.const 0) (i32.const 16))
           (i32.store (i32.const 4) (i32.const {len}))
           (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))"#,
        len = text.len()
    )
}

/// A command whose `_start` writes `text` on stdout, then runs `then`.
fn command(name: &str, text: &str, then: &str) -> PathBuf {
    let escaped = text.replace('\n', "\\n");
    scratch_module(
        name,
        &format!(
            r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{escaped}")
  (func (export "_start") {write} {then}))"#,
            write = write_stdout(text)
        ),
    )
}

/// A command that prints its arguments, then its environment, one per
/// line (the NULs that end the strings turned into newlines).
const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $print (param $buf i32) (param $len i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (if (i32.eqz (i32.load8_u (i32.add (local.get $buf) (local.get $i))))
        (then (i32.store8 (i32.add (local.get $buf) (local.get $i)) (i32.const 10))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 0) (local.get $buf))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $args_sizes (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 4096)))
    (call $print (i32.const 4096) (i32.load (i32.const 20)))
    (drop (call $env_sizes (i32.const 16) (i32.const 20)))
    (drop (call $env_get (i32.const 1024) (i32.const 8192)))
    (call $print (i32.const 8192) (i32.load (i32.const 20)))))"#;

/// A command that prints the name of its first pre-open (fd 3), as
/// `fd_prestat_dir_name` announces it.
const PREOPEN_NAME: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $len i32)
    (if (call $prestat (i32.const 3) (i32.const 32)) (then (call $proc_exit (i32.const 9))))
    (local.set $len (i32.load (i32.const 36)))
    (if (call $dir_name (i32.const 3) (i32.const 64) (local.get $len))
      (then (call $proc_exit (i32.const 10))))
    (i32.store8 (i32.add (i32.const 64) (local.get $len)) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.add (local.get $len) (i32.const 1)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn a_command_prints_its_line_and_nothing_else() {
    let hello = command("hello.wat", "hello from a command\n", "");
    let output = custody(&["run", hello.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hello from a command\n");
    assert_eq!(stderr(&output), "", "nothing went wrong: nothing to say");
}

#[test]
fn proc_exit_is_the_exit_status() {
    for (code, status) in [(7, 7), (0, 0), (255, 255), (300, 255), (-1, 255)] {
        let name = format!("exit{}.wat", code.to_string().replace('-', "m"));
        let then = format!("(call $proc_exit (i32.const {code})) unreachable");
        let module = command(&name, "bye\n", &then);
        let output = custody(&["run", module.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(status), "{}", stderr(&output));
        assert_eq!(stdout(&output), "bye\n");
        assert_eq!(stderr(&output), "", "an exit is no error");
    }
}

#[test]
fn args_and_env_reach_the_guest() {
    let echo = scratch_module("echo.wat", ECHO);
    let module = echo.to_str().unwrap();
    let output = custody(&[
        "run",
        "--env",
        "GREETING=hello world",
        module,
        "first",
        "two words",
        "-5",
        "--env",
        "EMPTY=",
        "--",
        "--not-an-option",
        "-x",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "{module}\nfirst\ntwo words\n-5\n--not-an-option\n-x\nGREETING=hello world\nEMPTY=\n"
        ),
        "argv[0] is MODULE as given; custody's options may follow MODULE"
    );
}

#[test]
fn a_bad_env_is_a_usage_error() {
    let echo = scratch_module("echo-bad-env.wat", ECHO);
    for bad in ["NOEQUALS", "=value"] {
        let output = custody(&["run", echo.to_str().unwrap(), "--env", bad]);
        assert_fails_with(&output, 2, "--env");
        assert_eq!(stdout(&output), "");
    }
}

#[test]
fn dir_maps_a_guest_name() {
    let module = scratch_module("preopen-name.wat", PREOPEN_NAME);
    let module = module.to_str().unwrap();
    for (spec, name) in [
        ("examples/data::/sandbox", "/sandbox\n"),
        ("examples/data::.", ".\n"),
        ("examples/data", "examples/data\n"),
        ("data=examples/data", "data\n"),
    ] {
        let flag = if spec.contains('=') {
            "--preopen"
        } else {
            "--dir"
        };
        let output = custody(&["run", module, flag, spec]);
        assert_eq!(output.status.code(), Some(0), "{spec}: {}", stderr(&output));
        assert_eq!(stdout(&output), name, "{spec}");
    }
    // A custody-ABI guest opens `GUEST_DIR/rel/path`.
    let output = custody(&["run", "examples/demo.wat", "--dir", "examples/data::data"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("result: 34"),
        "{}",
        stdout(&output)
    );

    let output = custody(&["run", module, "--dir", "no/such/dir::x"]);
    assert_fails_with(&output, 2, "no such directory");
}

#[test]
fn json_capture_carries_the_exit_code_and_the_output() {
    let module = command(
        "json-exit.wat",
        "captured\n",
        "(call $proc_exit (i32.const 7))",
    );
    let output = custody(&["run", module.to_str().unwrap(), "--json", "--capture"]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["exit_code"], 7);
    assert_eq!(json["stdout"], "captured\n");
    assert_eq!(json["stderr"], "");
    assert_eq!(json["ledger"]["opened"], 0);
    assert!(json.get("result").is_none(), "{json}");

    // Without --capture the output is the program's own, and the object
    // follows it.
    let output = custody(&["run", module.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(7));
    let text = stdout(&output);
    let (printed, object) = text.split_once('\n').unwrap();
    assert_eq!(printed, "captured");
    let json: serde_json::Value = serde_json::from_str(object).unwrap();
    assert_eq!(json["exit_code"], 7);
    assert!(json.get("stdout").is_none(), "{json}");

    // --capture alone is a usage error.
    let output = custody(&["run", module.to_str().unwrap(), "--capture"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_command_that_leaves_handles_open_says_so_on_stderr() {
    let then = "(drop (call $pipe (i32.const 100) (i32.const 104)))";
    let module = command("leaky.wat", "leaking\n", then);
    let output = custody(&["run", module.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "leaking\n");
    assert_eq!(
        stderr(&output),
        "custody: the program left 2 handle(s) open; released at unload\n"
    );
}

#[test]
fn a_trapping_command_is_status_3_with_its_ledger_on_stderr() {
    let module = command("trapping.wat", "before\n", "unreachable");
    let output = custody(&["run", module.to_str().unwrap()]);
    assert_fails_with(&output, 3, "unreachable");
    assert_eq!(stdout(&output), "before\n");
    let stderr = stderr(&output);
    assert!(stderr.contains("ledger: opened 0"), "{stderr}");
}

#[test]
fn a_custody_abi_example_still_prints_result_and_ledger() {
    let output = custody(&["run", "examples/demo.wat", "--preopen", "examples/data"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "result: 34\nledger: opened 3, closed by the guest 2, closed by the host 0, \
         released at recycle 0, released at unload 1, release failures 0, recycles 0\n"
    );
    // --invoke on a command's module calls that export with parameters.
    let module = command("invoked.wat", "invoked\n", "");
    let output = custody(&["run", module.to_str().unwrap(), "--invoke", "_start"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("invoked\nresult: (none)\nledger:"));
}

/// A real `printf` program from Debian's clang and wasi-libc. Needs clang:
/// without it the test fails (it is part of W3's acceptance, not optional).
#[test]
fn a_c_program_prints_with_printf_and_exits_with_its_status() {
    let source = scratch_module(
        "printf.c",
        r#"#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("%d %s %s\n", argc, argc > 1 ? argv[1] : "-", getenv("WHO") ? getenv("WHO") : "nobody");
    return 3;
}
"#,
    );
    let wasm = source.with_extension("wasm");
    let built = std::process::Command::new("clang")
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o"])
        .arg(&wasm)
        .arg(&source)
        .output()
        .expect("clang (with wasi-libc) is needed for this test");
    assert!(built.status.success(), "{}", stderr(&built));
    let output = custody(&["run", wasm.to_str().unwrap(), "--env", "WHO=world", "arg"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(stdout(&output), "2 arg world\n");
    assert_eq!(stderr(&output), "");
}
