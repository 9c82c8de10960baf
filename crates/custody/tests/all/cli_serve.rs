//! `custody serve`: with no configuration it serves the bundled examples
//! and prints one line per route; each printed URL answers; a
//! configuration's error names the file and the key; SIGTERM follows the
//! termination contract (ready 503, the request in flight finishes, exit
//! 0) and a second one exits at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::http;
use crate::serve_process::{Server, exit_within, spawn_serve, spawn_serve_with_env, terminate};

#[test]
fn serve_without_arguments_answers_its_printed_urls() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(2)
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let urls: Vec<&str> = lines
        .iter()
        .map(|l| l.strip_prefix("GET ").unwrap())
        .collect();
    assert!(
        urls[0].ends_with("/hello") && urls[1].ends_with("/echo"),
        "{urls:?}"
    );
    assert!(
        !urls[0].contains(":0/"),
        "the chosen port is printed: {urls:?}"
    );
    let hello = http(urls[0], "GET", "");
    assert!(hello.starts_with("HTTP/1.0 200"), "{hello}");
    assert!(
        hello.contains("custody-plugin-version: ") && hello.contains("hello, world"),
        "{hello}"
    );
    let echo = http(urls[1], "POST", "the body");
    assert!(echo.starts_with("HTTP/1.0 200"), "{echo}");
    assert!(
        echo.contains("REQUEST_METHOD=POST") && echo.contains("QUERY_STRING=q=1"),
        "{echo}"
    );
    assert!(echo.contains("--- body ---\nthe body"), "{echo}");
}

#[test]
fn a_bad_configuration_is_a_usage_error_naming_the_file_and_key() {
    let dir = std::env::temp_dir().join(format!("custody-cli-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("custody.toml");
    std::fs::write(
        &file,
        "[[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wasm\"\ntypo = 1\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("custody.toml") && stderr.contains("typo"),
        "{stderr}"
    );
}

#[test]
fn the_host_policy_file_applies_to_every_plugin_and_a_bad_one_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("custody-cli-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let serve_with = |policy: &str| {
        let file = dir.join("policy.toml");
        std::fs::write(&file, policy).unwrap();
        // The bundled examples (WAGI plugins: they import WASI).
        let output = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(["serve", "--listen", "127.0.0.1:0", "--policy"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr, output.stdout)
    };
    let (code, stderr, _) = serve_with("typo = 1\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("policy.toml") && stderr.contains("typo"),
        "{stderr}"
    );
    // WASI refused host-wide: no bundled plugin loads.
    let (code, stderr, stdout) = serve_with("wasi = false\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("wasi_snapshot_preview1"), "{stderr}");
    assert!(stdout.is_empty(), "no route line for a failed load");
}

/// A WAGI plugin that writes its head and `first`, sleeps `ms` (WASI's
/// `poll_oneoff` on a relative clock), then writes `last`.
fn slow_plugin(ms: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "content-type: text/plain\n\nfirst\n")
  (data (i32.const 1100) "last\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 1024) (i32.const 32))
    ;; one clock subscription at 200: relative, {ms} ms
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const {nanos}))
    (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)))
    (call $write (i32.const 1100) (i32.const 5))))"#,
        nanos = ms * 1_000_000
    )
}

/// `custody serve` on a configuration with one plugin, `slow`.
fn serve_slow(dir: &std::path::Path, top: &str) -> (Server, String) {
    serve_plugin(dir, top, "slow", &slow_plugin(1500), &[])
}

/// `custody serve --listen 127.0.0.1:0 FLAGS` on a configuration (`top`,
/// then one plugin `name` at `/name`, its module `wat`) written in `dir`;
/// the URL its first line prints.
fn serve_plugin(
    dir: &std::path::Path,
    top: &str,
    name: &str,
    wat: &str,
    flags: &[&str],
) -> (Server, String) {
    let toml = format!(
        "{top}\n[[plugin]]\nname = \"{name}\"\nroute = \"/{name}\"\nmodule = \"{name}.wat\"\n"
    );
    let module = format!("{name}.wat");
    let (server, lines) = serve_files(dir, &toml, &[(&module, wat)], flags, 1);
    let url = lines[0].strip_prefix("GET ").unwrap().to_string();
    (server, url)
}

/// `custody serve --listen 127.0.0.1:0 --config DIR/custody.toml FLAGS`,
/// the configuration `toml` and `files` written in `dir`; the first
/// `lines` lines it prints (a route's `GET URL`, then `ADMIN URL`).
pub fn serve_files(
    dir: &std::path::Path,
    toml: &str,
    files: &[(&str, &str)],
    flags: &[&str],
    lines: usize,
) -> (Server, Vec<String>) {
    serve_files_with_env(dir, toml, files, flags, &[], lines)
}

/// [`serve_files`], with the environment variables `env` set for the
/// server.
pub fn serve_files_with_env(
    dir: &std::path::Path,
    toml: &str,
    files: &[(&str, &str)],
    flags: &[&str],
    env: &[(&str, &str)],
    lines: usize,
) -> (Server, Vec<String>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let file = dir.join("custody.toml");
    std::fs::write(&file, toml).unwrap();
    let mut server = spawn_serve_with_env(&file, flags, env);
    let printed: Vec<String> = BufReader::new(server.0.stdout.take().unwrap())
        .lines()
        .take(lines)
        .map(Result::unwrap)
        .collect();
    assert_eq!(printed.len(), lines, "the server printed {printed:?}");
    (server, printed)
}

/// The status line of `GET /.well-known/custody/ready`.
fn ready(url: &str) -> String {
    let host = url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    http(
        &format!("http://{host}/.well-known/custody/ready"),
        "GET",
        "",
    )
    .lines()
    .next()
    .unwrap_or("")
    .to_string()
}

#[test]
fn sigterm_turns_ready_503_finishes_the_slow_request_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("custody-cli-term-{}", std::process::id()));
    let (mut server, url) = serve_slow(&dir, "shutdown_delay = \"500ms\"\ndrain_timeout = \"10s\"");
    assert!(ready(&url).contains("200"));
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut slow = TcpStream::connect(host).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(slow, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    // The head and `first` are out: the guest sleeps now.
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("first") {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
    terminate(&server);
    let begun = std::time::Instant::now();
    while !ready(&url).contains("503") {
        assert!(begun.elapsed() < Duration::from_secs(2), "ready is not 503");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !String::from_utf8_lossy(&received).contains("last"),
        "the request was still in flight when ready turned 503"
    );
    slow.read_to_end(&mut received).unwrap();
    let response = String::from_utf8_lossy(&received);
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("\r\n\r\nfirst\nlast\n"), "{response}");
    assert_eq!(exit_within(&mut server, Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_sigterm_during_the_delay_exits_promptly() {
    let dir = std::env::temp_dir().join(format!("custody-cli-term2-{}", std::process::id()));
    let (mut server, url) = serve_slow(&dir, "shutdown_delay = \"30s\"");
    terminate(&server);
    let begun = std::time::Instant::now();
    while !ready(&url).contains("503") {
        assert!(begun.elapsed() < Duration::from_secs(2), "ready is not 503");
        std::thread::sleep(Duration::from_millis(5));
    }
    terminate(&server);
    let begun = std::time::Instant::now();
    assert_eq!(exit_within(&mut server, Duration::from_secs(3)), Some(0));
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "{:?}",
        begun.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WAGI plugin that writes `a line for the log` to stderr, then answers.
const LOGGING_PLUGIN: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "a line for the log\n")
  (data (i32.const 1100) "content-type: text/plain\n\nlogged\n")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 2) (i32.const 1024) (i32.const 19))
    (call $write (i32.const 1) (i32.const 1100) (i32.const 33))))"#;

/// Runs `custody serve --log-format json --log-level LEVEL` with the
/// logging plugin, sends it one request, stops it (SIGTERM, exit 0) and
/// returns every line it wrote on stderr, each parsed as JSON.
fn json_log_at(level: &str) -> Vec<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("custody-cli-log-{level}-{}", std::process::id()));
    let flags = ["--log-format", "json", "--log-level", level];
    let (mut server, url) = serve_plugin(
        &dir,
        "shutdown_delay = \"10ms\"",
        "logs",
        LOGGING_PLUGIN,
        &flags,
    );
    let answer = http(&url, "GET", "");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nlogged\n"), "{answer}");
    // The guest's stderr is logged by a task of its own, after the
    // response at the latest: give it time before the stop.
    std::thread::sleep(Duration::from_millis(300));
    terminate(&server);
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(exit_within(&mut server, Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
    stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stderr}"))
        })
        .collect()
}

/// The events of the guest's stderr among `events`.
fn guest_stderr_events(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    (events.iter())
        .filter(|event| event["target"] == "custody::serve::stderr")
        .collect()
}

#[test]
fn log_format_json_carries_the_guest_s_stderr_with_plugin_and_request_id() {
    let events = json_log_at("info");
    let logged = guest_stderr_events(&events);
    assert_eq!(logged.len(), 1, "{events:#?}");
    let event = logged[0];
    assert_eq!(event["level"], "INFO", "{event}");
    let fields = &event["fields"];
    assert_eq!(fields["message"], "a line for the log", "{event}");
    assert_eq!(fields["plugin"], "logs", "{event}");
    // A request id: the process's prefix (hex), `-`, the request's number.
    let id = fields["id"].as_str().unwrap_or_else(|| panic!("{event}"));
    let (prefix, number) = id.split_once('-').unwrap_or_else(|| panic!("{id}"));
    assert!(
        !prefix.is_empty()
            && prefix.chars().all(|c| c.is_ascii_hexdigit())
            && number.parse::<u64>().is_ok(),
        "{id}"
    );
    // The server's own lifecycle events are JSON too.
    assert!(
        (events.iter()).any(|e| e["target"] == "custody::serve"
            && (e["fields"]["message"].as_str()).is_some_and(|m| m.starts_with("stopped"))),
        "{events:#?}"
    );
}

#[test]
fn log_level_error_hides_the_info_level_stderr_event() {
    let events = json_log_at("error");
    assert!(guest_stderr_events(&events).is_empty(), "{events:#?}");
    assert!(events.iter().all(|e| e["level"] == "ERROR"), "{events:#?}");
}

#[test]
fn a_plugin_that_does_not_load_fails_the_process_with_exit_2_naming_it() {
    let dir = std::env::temp_dir().join(format!("custody-cli-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.wat"),
        "(module (func (export \"_start\") i32.add))",
    )
    .unwrap();
    let file = dir.join("custody.toml");
    std::fs::write(
        &file,
        "[[plugin]]\nname = \"bad\"\nroute = \"/bad\"\nmodule = \"bad.wat\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("custody.toml") && stderr.contains("plugin \"bad\""),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no route line for a failed load");
}

#[test]
fn admin_listener_is_printed_and_wants_its_token() {
    let dir = std::env::temp_dir().join(format!("custody-cli-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin.token"), "t0ken\n").unwrap();
    let file = dir.join("custody.toml");
    std::fs::write(
        &file,
        "shutdown_delay = \"100ms\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
         [[plugin]]\nname = \"slow\"\nroute = \"/slow\"\nmodule = \"slow.wat\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("slow.wat"), slow_plugin(10)).unwrap();
    let mut server = spawn_serve(&file, &[]);
    let stdout = server.0.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(2)
        .map(Result::unwrap)
        .collect();
    let route = lines[0].strip_prefix("GET ").unwrap();
    let admin = lines[1].strip_prefix("ADMIN ").expect(&lines[1]);
    assert_ne!(
        route.split('/').nth(2),
        admin.split('/').nth(2),
        "{lines:?}"
    );
    assert!(http(route, "GET", "").starts_with("HTTP/1.0 200"));
    let refused = http(&format!("{admin}/metrics"), "GET", "");
    assert!(refused.starts_with("HTTP/1.0 401"), "{refused}");
    let host = admin.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer t0ken\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).unwrap();
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert!(
        metrics.contains("custody_serve_requests_total{plugin=\"slow\",")
            && metrics.ends_with("# EOF\n"),
        "{metrics}"
    );
    terminate(&server);
    assert_eq!(exit_within(&mut server, Duration::from_secs(15)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_while_the_plugins_load_exits_0_at_once_without_serving() {
    let dir = std::env::temp_dir().join(format!("custody-cli-serve-early-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // `_routes`, called once at load, sleeps 5 s.
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_routes")
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const 5000000000))
    (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400))))
  (func (export "_start")))"#;
    std::fs::write(dir.join("late.wat"), wat).unwrap();
    let file = dir.join("custody.toml");
    std::fs::write(
        &file,
        "[[plugin]]\nname = \"late\"\nroute = \"/late\"\nmodule = \"late.wat\"\n",
    )
    .unwrap();
    let mut server = spawn_serve(&file, &["--log-level", "info"]);
    let mut stderr = BufReader::new(server.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
    }
    terminate(&server);
    let mut log = String::new();
    // Never ready, so no shutdown_delay (5 s by default), and the 5 s load
    // is not waited for.
    assert_eq!(exit_within(&mut server, Duration::from_secs(3)), Some(0));
    let mut stdout = String::new();
    server
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(!stdout.contains("GET "), "no route was served: {stdout}");
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("stopped while the plugins loaded"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
