//! The chaos run's plugins: two well-behaved ones (the bundled WAGI hello
//! and custody-ABI hello, which wrk loads and the operator reloads and
//! canaries) beside hostile ones, each written here in WAT, and the
//! configuration that serves them all.

use std::path::{Path, PathBuf};

/// A hostile plugin: its name (and route, `/NAME`), its module, its
/// `[[plugin]]` keys beyond name, route and module, and how its clients
/// call it.
pub struct Hostile {
    pub name: &'static str,
    pub wat: &'static str,
    pub keys: &'static str,
    /// Client threads calling it at once.
    pub clients: usize,
    /// A `Content-Length` the client declares and never sends (0: none).
    pub withheld_body: usize,
}

/// Spins until its deadline stops it. At most one at a time: of the two
/// cores, it may take one, never both (its second client gets `overload`).
const SPIN: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))"#;

/// Grows its memory 1 MiB at a time until the domain's limit stops it
/// (`on_memory_limit = "abort"`, the server's default: the `memory` fault).
const MEMORY: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))"#;

/// Recurses without end: wasmtime's stack limit traps it.
const STACK: &str = r#"(module
  (memory (export "memory") 1)
  (func $deeper (param $n i32) (result i32)
    (i32.add (call $deeper (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "_start") (drop (call $deeper (i32.const 0)))))"#;

/// A custody-ABI plugin that makes 64 pipes (128 handles, OS pipes)
/// and closes none, then answers 200: its domain's unload must close them.
const LEAK_PIPES: &str = r#"(module
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody_http" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "content-type")
  (data (i32.const 80) "text/plain")
  (data (i32.const 96) "leaked\n")
  (func (export "handle") (param $request i32) (param $response i32) (result i32)
    (local $n i32)
    (loop $more
      (drop (call $pipe (i32.const 0) (i32.const 4)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $n) (i32.const 64))))
    (drop (call $set_header (i32.const 64) (i32.const 12) (i32.const 80) (i32.const 10)))
    (drop (call $write (local.get $response) (i32.const 96) (i32.const 7) (i32.const 8)))
    (i32.const 0)))"#;

/// A WAGI plugin that opens `/data/file.txt` 32 times (32 OS fds) and
/// closes none, then answers 200.
const LEAK_FILES: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open
    (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "file.txt")
  (data (i32.const 128) "content-type: text/plain\n\nleaked\n")
  (func (export "_start")
    (local $n i32)
    (loop $more
      ;; preopen 3 (/data), the path at 64, read rights (fd_read, 1 << 1)
      (drop (call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 8) (i32.const 0)
        (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $n) (i32.const 32))))
    (i32.store (i32.const 0) (i32.const 128))
    (i32.store (i32.const 4) (i32.const 33))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// A WAGI plugin that reads its stdin to the end: its client declares a
/// body and never sends it, so the guest blocks in `fd_read` until its
/// deadline or a cancel.
const READ_STDIN: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "content-type: text/plain\n\nread\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (loop $more
      (br_if $more (i32.and
        (i32.eqz (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.ne (i32.load (i32.const 8)) (i32.const 0)))))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 31))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// A WAGI plugin that sleeps 10 s in `poll_oneoff` (a relative clock):
/// its deadline or a cancel wakes it.
const SLEEP: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const 10000000000))
    (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)))))"#;

/// The hostile plugins. `max_concurrency` keeps the CPU-bound ones to
/// one call each, so together they cannot take both cores for long.
pub const HOSTILE: &[Hostile] = &[
    Hostile {
        name: "spin",
        wat: SPIN,
        // Throttled as an operator would a plugin they do not trust with
        // a core (docs/RELIABILITY.md): past 10 ms, 10 % of a core.
        keys: "max_concurrency = 1\nrequest_timeout = \"300ms\"\npolicy = { throttle_after_ms = 10, throttle_share = 10 }",
        clients: 2,
        withheld_body: 0,
    },
    Hostile {
        name: "memory",
        wat: MEMORY,
        keys: "max_concurrency = 1\nrequest_timeout = \"2s\"\npolicy = { memory_limit = \"16MiB\" }",
        clients: 1,
        withheld_body: 0,
    },
    Hostile {
        name: "stack",
        wat: STACK,
        keys: "max_concurrency = 1\nrequest_timeout = \"2s\"",
        clients: 1,
        withheld_body: 0,
    },
    Hostile {
        name: "leak-pipes",
        wat: LEAK_PIPES,
        keys: "interface = \"custody\"\nmax_concurrency = 2\nrequest_timeout = \"2s\"",
        clients: 1,
        withheld_body: 0,
    },
    Hostile {
        name: "leak-files",
        wat: LEAK_FILES,
        keys: "max_concurrency = 2\nrequest_timeout = \"2s\"\ndirs = { \"/data\" = \"data\" }",
        clients: 1,
        withheld_body: 0,
    },
    Hostile {
        name: "read-stdin",
        wat: READ_STDIN,
        keys: "max_concurrency = 4\nrequest_timeout = \"1500ms\"",
        clients: 3,
        withheld_body: 64,
    },
    Hostile {
        name: "sleep",
        wat: SLEEP,
        keys: "max_concurrency = 4\nrequest_timeout = \"1500ms\"",
        clients: 3,
        withheld_body: 0,
    },
];

/// The well-behaved plugins: (name, bundled module file, keys).
pub const GOOD: [(&str, &str, &str); 2] = [
    ("hello", "hello.wat", "max_concurrency = 1024"),
    (
        "hello-custody",
        "hello_custody.wat",
        "interface = \"custody\"\nmax_concurrency = 1024\ncanary = 50",
    ),
];

/// A module's text in one of two variants (a trailing comment apart):
/// two versions to reload between, so the module cache holds two
/// compiled modules however many reloads run.
pub fn variant(text: &str, b: bool) -> String {
    if b {
        format!("{text}\n;; variant b\n")
    } else {
        text.to_string()
    }
}

/// Writes the configuration and every module into `dir`; the
/// configuration file's path.
pub fn write_config(dir: &Path, repo: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/file.txt"), "data\n").unwrap();
    let mut toml = String::from(
        "shutdown_delay = \"10ms\"\ndrain_timeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let bundled = repo.join("crates/custody-serve/plugins");
    for (name, file, keys) in GOOD {
        let text = std::fs::read_to_string(bundled.join(file)).unwrap();
        std::fs::write(dir.join(format!("{name}.wat")), text).unwrap();
        toml.push_str(&plugin_table(name, keys));
    }
    for hostile in HOSTILE {
        std::fs::write(dir.join(format!("{}.wat", hostile.name)), hostile.wat).unwrap();
        toml.push_str(&plugin_table(hostile.name, hostile.keys));
    }
    let file = dir.join("custody.toml");
    std::fs::write(&file, toml).unwrap();
    file
}

fn plugin_table(name: &str, keys: &str) -> String {
    format!(
        "\n[[plugin]]\nname = \"{name}\"\nroute = \"/{name}\"\nmodule = \"{name}.wat\"\n{keys}\n"
    )
}
