//! The admin API's commands against a real `custody serve` with a token:
//! `ps` lists the plugin and a domain, `requests` a request stuck in a
//! host call, `roots` of an unloading domain that call, `cancel` makes
//! its client get 503, `unload` (waited for, and what holds it) and
//! `unload --force`, `reload` the version, `promote` and `rollback` the
//! server's own answer; a bad or missing token (exit 4 with the 401), an
//! unreachable admin API (exit 3) and an unknown id (exit 2).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli_serve::serve_files;
use crate::common::{Server, request};

pub const TOKEN: &str = "cli-admin-t0ken";

/// WAGI `_start` that reads stdin once: it blocks in `fd_read` until the
/// request's body comes.
const READ_STDIN: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 32) (i32.const 4096))
    (i32.store (i32.const 36) (i32.const 64))
    (drop (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 48)))))"#;

/// A running server with the admin API: `plugins` is where requests go
/// (`http://ADDR`), `admin` the admin listener's URL.
pub struct AdminServer {
    _server: Server,
    pub plugins: String,
    pub admin: String,
    pub dir: std::path::PathBuf,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `custody serve` with a token and one plugin, `read` (blocks reading
/// its stdin), in a directory named after `test`.
pub fn admin_server(test: &str) -> AdminServer {
    let dir = std::env::temp_dir().join(format!("custody-cli-{test}-{}", std::process::id()));
    let toml = "shutdown_delay = \"10ms\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                token_file = \"admin.token\"\n\n\
                [[plugin]]\nname = \"read\"\nroute = \"/read\"\nmodule = \"read.wat\"\n\
                request_timeout = \"30s\"\n";
    let token = format!("{TOKEN}\n");
    let files = [("read.wat", READ_STDIN), ("admin.token", token.as_str())];
    let (server, lines) = serve_files(&dir, toml, &files, &[], 2);
    let route = lines[0].strip_prefix("GET ").unwrap();
    let plugins = route.strip_suffix("/read").unwrap().to_string();
    let admin = lines[1].strip_prefix("ADMIN ").unwrap().to_string();
    AdminServer {
        _server: server,
        plugins,
        admin,
        dir,
    }
}

/// A request to `/read` whose body never comes (until the test sends
/// it): its guest blocks in `fd_read`. The connection.
pub fn stuck_request(server: &AdminServer) -> TcpStream {
    let host = server.plugins.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "POST /read HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\
         Content-Length: 10\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

/// The stuck request's answer, whole (the server closes after it).
pub fn answer_of(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `custody ARGS --admin URL` with the token `token` (none: the variable
/// unset).
pub fn admin_cli(server: &AdminServer, args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custody"));
    command.args(args).args(["--admin", &server.admin]);
    command.env_remove("CUSTODY_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("CUSTODY_ADMIN_TOKEN", token);
    }
    command.output().unwrap()
}

/// `custody ARGS` with the right token, which must succeed: its stdout.
pub fn admin_ok(server: &AdminServer, args: &[&str]) -> String {
    let output = admin_cli(server, args, Some(TOKEN));
    assert_eq!(
        output.status.code(),
        Some(0),
        "custody {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `custody requests --json` until `n` requests are blocked in a host
/// call: each one's id and domain, oldest first.
pub fn blocked_requests(server: &AdminServer, n: usize) -> Vec<(String, u64)> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Value =
            serde_json::from_str(&admin_ok(server, &["requests", "--json"])).unwrap();
        let blocked: Vec<(String, u64)> = (listed["requests"].as_array().unwrap().iter())
            .filter(|r| r["blocked_in"] == "fd_read")
            .map(|r| {
                let id = r["id"].as_str().unwrap().to_string();
                (id, r["domain"].as_u64().unwrap())
            })
            .collect();
        if blocked.len() >= n {
            return blocked;
        }
        assert!(Instant::now() < until, "never {n} blocked: {listed}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The failure's exit status and its one line on stderr.
fn failed(output: &Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().unwrap_or_default().to_string();
    (output.status.code(), line)
}

#[test]
fn ps_lists_the_plugin_and_its_domain_and_requests_the_stuck_one() {
    let server = admin_server("ps");
    let _stuck = stuck_request(&server);
    let blocked = blocked_requests(&server, 1);
    let (id, domain) = &blocked[0];
    let ps = admin_ok(&server, &["ps"]);
    let mut lines = ps.lines();
    let plugins_head = lines.next().unwrap();
    assert!(
        plugins_head.starts_with("PLUGIN") && plugins_head.contains("VERSION"),
        "{ps}"
    );
    let plugin = lines.next().unwrap();
    assert!(
        plugin.starts_with("read ") && plugin.contains("/read"),
        "{ps}"
    );
    let row = (ps.lines())
        .find(|l| l.starts_with(&format!("{domain} ")))
        .unwrap_or_else(|| panic!("no row for domain {domain}: {ps}"));
    assert!(row.contains("running") && row.contains(id.as_str()), "{ps}");
    let json: Value = serde_json::from_str(&admin_ok(&server, &["ps", "--json"])).unwrap();
    assert_eq!(json["plugins"][0]["name"], "read", "{json}");
    assert!(
        (json["domains"].as_array().unwrap().iter()).any(|d| d["id"] == *domain),
        "{json}"
    );
    let requests = admin_ok(&server, &["requests"]);
    let row = (requests.lines())
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("{requests}"));
    assert!(
        row.contains("read")
            && row.contains(&domain.to_string())
            && row.ends_with("blocked in fd_read"),
        "{requests}"
    );
}

#[test]
fn roots_of_an_unloading_domain_name_the_host_call_and_force_ends_it() {
    let server = admin_server("roots");
    let stuck = stuck_request(&server);
    let (id, domain) = blocked_requests(&server, 1).remove(0);
    let domain = domain.to_string();
    let unloading = admin_ok(&server, &["unload", &domain, "--wait", "100ms"]);
    assert!(
        unloading.starts_with(&format!("domain {domain} is unloading; 1 root(s) hold it"))
            && unloading.contains("Call \"_start\"  blocked in fd_read"),
        "{unloading}"
    );
    let roots = admin_ok(&server, &["roots", &domain]);
    assert!(
        roots.starts_with(&format!("domain {domain} (unloading): 1 root(s)\n")),
        "{roots}"
    );
    assert!(
        roots.contains("blocked in fd_read")
            && roots.contains("stack:")
            && roots.contains("_start"),
        "{roots}"
    );
    let json: Value =
        serde_json::from_str(&admin_ok(&server, &["roots", &domain, "--json"])).unwrap();
    assert_eq!(json["roots"][0]["blocked_in"], "fd_read", "{json}");

    let forced = admin_ok(&server, &["unload", &domain, "--force"]);
    assert!(
        forced.starts_with(&format!("domain {domain} unloaded (forced)"))
            && forced.contains(&format!("cancelled: {id}")),
        "{forced}"
    );
    let answer = answer_of(stuck);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains(&id),
        "{answer}"
    );
    // Gone now: an id no live domain has is the server's 404, exit 2.
    let (status, line) = failed(&admin_cli(&server, &["roots", &domain], Some(TOKEN)));
    assert_eq!(status, Some(2), "{line}");
    assert!(
        line.contains("404 Not Found: no-such-domain: no live domain"),
        "{line}"
    );
}

#[test]
fn unload_waits_for_the_domain_to_complete_once_its_request_ends() {
    let server = admin_server("unload");
    let mut stuck = stuck_request(&server);
    let (_, domain) = blocked_requests(&server, 1).remove(0);
    let domain = domain.to_string();
    let waiting = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["unload", &domain, "--wait", "10s", "--admin", &server.admin])
        .env("CUSTODY_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the unload began, the body comes: the call returns, its root
    // goes and the unload completes.
    let until = Instant::now() + Duration::from_secs(10);
    while !admin_ok(&server, &["ps"]).contains("unloading") {
        assert!(Instant::now() < until, "the unload never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    stuck.write_all(b"0123456789").unwrap();
    let output = waiting.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!("domain {domain} unloaded: ")),
        "{stdout}"
    );
    assert!(
        !admin_ok(&server, &["ps"]).contains(&format!("\n{domain} ")),
        "the domain is gone"
    );
}

#[test]
fn cancel_makes_the_stuck_client_get_503_with_its_id() {
    let server = admin_server("cancel");
    let stuck = stuck_request(&server);
    let (id, domain) = blocked_requests(&server, 1).remove(0);
    let cancelled = admin_ok(&server, &["cancel", &id]);
    assert_eq!(
        cancelled,
        format!("request {id} cancelled (plugin read, domain {domain}): its client gets 503\n")
    );
    let answer = answer_of(stuck);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("\"error\":\"cancelled\"") && answer.contains(&id),
        "{answer}"
    );
    // Ended: the server's 404 for it, exit 2; `--json` prints its error.
    let output = admin_cli(&server, &["cancel", &id, "--json"], Some(TOKEN));
    let (status, line) = failed(&output);
    assert_eq!(status, Some(2), "{line}");
    assert!(line.contains("no-such-request"), "{line}");
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"], "no-such-request", "{error}");
}

#[test]
fn reload_answers_the_version_and_promote_and_rollback_the_server_s_word() {
    let server = admin_server("reload");
    let ps: Value = serde_json::from_str(&admin_ok(&server, &["ps", "--json"])).unwrap();
    let version = ps["plugins"][0]["version"].as_str().unwrap().to_string();
    assert_eq!(
        admin_ok(&server, &["reload", "read"]),
        format!("read: reload: unchanged: version {version} serves\n")
    );
    // A new module: a new version swapped in.
    let changed = READ_STDIN.replace("(i32.const 64)", "(i32.const 65)");
    std::fs::write(server.dir.join("read.wat"), changed).unwrap();
    let swapped = admin_ok(&server, &["reload", "read"]);
    assert!(
        swapped.starts_with("read: reload: swapped: version ")
            && swapped.ends_with(&format!(" serves (was {version})\n")),
        "{swapped}"
    );
    let (status, line) = failed(&admin_cli(&server, &["reload", "nope"], Some(TOKEN)));
    assert_eq!(status, Some(2), "{line}");
    assert!(line.contains("404 Not Found: no-such-plugin"), "{line}");
    // `read` has no canary: whatever the server answers promote and
    // rollback with (a 4xx), the command says it and fails.
    for action in ["promote", "rollback"] {
        let path = format!("/admin/plugins/read/{action}");
        let raw = request(
            &format!("{}{path}", server.admin),
            "POST",
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            "",
        );
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status_line = head.lines().next().unwrap();
        assert!(status_line.starts_with("HTTP/1.0 4"), "{raw}");
        let said = match serde_json::from_str::<Value>(body) {
            Ok(error) => format!(
                "{}: {}",
                error["error"].as_str().unwrap(),
                error["message"].as_str().unwrap()
            ),
            Err(_) => body.trim().to_string(),
        };
        let (status, line) = failed(&admin_cli(&server, &[action, "read"], Some(TOKEN)));
        assert_eq!(status, Some(2), "{line}");
        assert!(
            line.starts_with(&format!("custody: POST {path} on ")) && line.contains(&said),
            "{line}\nthe server said: {raw}"
        );
    }
}

#[test]
fn a_missing_or_wrong_token_is_exit_4_with_the_401() {
    let server = admin_server("token");
    for (token, hint) in [
        (None, "set CUSTODY_ADMIN_TOKEN"),
        (
            Some("not-it"),
            "the token in CUSTODY_ADMIN_TOKEN was refused",
        ),
    ] {
        let (status, line) = failed(&admin_cli(&server, &["ps"], token));
        assert_eq!(status, Some(4), "{line}");
        assert!(
            line.contains("401 Unauthorized: unauthorized: send Authorization: Bearer TOKEN")
                && line.contains(hint),
            "{line}"
        );
    }
}

#[test]
fn an_unreachable_admin_api_is_exit_3_naming_it() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["ps", "--admin", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let (status, line) = failed(&output);
    assert_eq!(status, Some(3), "{line}");
    assert!(
        line.starts_with(&format!(
            "custody: cannot reach the admin API at 127.0.0.1:{port}: "
        )) && line.contains("refused"),
        "{line}"
    );
    assert!(output.stdout.is_empty());
    let output = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["ps", "--admin", "https://127.0.0.1:1"])
        .output()
        .unwrap();
    let (status, line) = failed(&output);
    assert_eq!(status, Some(2), "{line}");
    assert!(line.contains("only http://"), "{line}");
}
