//! The admin API's endpoints beyond the probes, the plugins and the
//! metrics: domains and their roots, requests in flight (one blocked in a
//! host call: a WAGI plugin reading the stdin its client never sends)
//! and their cancel, unload and force, reload, the recent diagnostics and
//! their event stream; fds back to their baseline after
//! (`admin_refusals` has their bad ids, methods and the token).

use std::time::{Duration, Instant};

use bytes::Bytes;
use custody_testkit::FdBaseline;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::reload::eventually;
use crate::support::*;

pub const TOKEN: &str = "admin-api-token";

/// WAT for `_start`: read stdin once (blocks until the body comes).
pub const READ_STDIN: &str = "(i32.store (i32.const 32) (i32.const 4096)) \
     (i32.store (i32.const 36) (i32.const 64)) \
     (drop (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 48)))";

/// A server with the admin API (a token) and `read` (blocks reading
/// stdin), `boom` (traps) and `hello`.
pub async fn server() -> TestServer {
    let toml = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
        [[plugin]]\nname = \"read\"\nroute = \"/read\"\nmodule = \"read.wat\"\nrequest_timeout = \"20s\"\n\n\
        [[plugin]]\nname = \"boom\"\nroute = \"/boom\"\nmodule = \"boom.wat\"\n\n\
        [[plugin]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"hello.wat\"\n";
    let read = guest(b"", READ_STDIN);
    let boom = guest(b"", "unreachable");
    let hello = guest(b"content-type: text/plain\n\nhello\n", "");
    let token = format!("{TOKEN}\n");
    let files = [
        ("read.wat", read.as_str()),
        ("boom.wat", boom.as_str()),
        ("hello.wat", hello.as_str()),
        ("admin.token", token.as_str()),
    ];
    TestServer::start(toml, &files).await
}

/// An admin call with the token; the body parsed as JSON (`Null` if it
/// is not).
pub async fn admin(
    server: &TestServer,
    client: &HttpClient,
    method: Method,
    path: &str,
) -> (StatusCode, Value, Answer) {
    let auth = format!("Bearer {TOKEN}");
    let answer = send(
        client,
        method,
        &server.admin_url(path),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await;
    let value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, value, answer)
}

/// A request to `/read` whose body never comes: its guest blocks reading
/// stdin. The connection, to read the answer from.
async fn stuck_request(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /read HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\
                Content-Length: 10\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The stuck request's answer: its head and its `Content-Length` body
/// (the server keeps the connection while the request's body may still
/// come; the client closes it here).
pub async fn answer_of(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let read_whole = async {
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = (head.lines())
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|n| n.trim().parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    return;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before the answer: {text}");
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_whole)
        .await
        .expect("the stuck request is answered");
    String::from_utf8_lossy(&answer).into_owned()
}

/// `/admin/requests` until one request is blocked in a host call: it.
pub async fn blocked_request(server: &TestServer, client: &HttpClient) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, listed, _) = admin(server, client, Method::GET, "/admin/requests").await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let requests = listed["requests"].as_array().unwrap();
        if let Some(blocked) = requests.iter().find(|r| r["blocked_in"].is_string()) {
            return blocked.clone();
        }
        assert!(Instant::now() < until, "never blocked: {listed}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request of each plugin, so their modules and the runtime's
/// threads exist before a baseline, through a client of its own that is
/// gone (with its connections, on both sides) when this returns: the
/// baseline then.
async fn baseline_after_warm_up(server: &TestServer) -> FdBaseline {
    let client = client();
    get(&client, &server.url("/hello")).await;
    get(&client, &server.url("/boom")).await;
    drop(client);
    let mut last = custody_testkit::open_fds();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = custody_testkit::open_fds();
        if now == last {
            return FdBaseline::now();
        }
        last = now;
    }
}

#[test]
fn a_request_blocked_in_a_host_call_is_listed_with_its_domain_and_cancelled() {
    serial_runtime(async {
        let server = server().await;
        let fds = baseline_after_warm_up(&server).await;
        let client = client();
        let stream = stuck_request(&server).await;
        let blocked = blocked_request(&server, &client).await;
        let id = blocked["id"].as_str().unwrap().to_string();
        let version = server.state.plugins()[0].current().id.clone();
        assert_eq!(blocked["plugin"], "read", "{blocked}");
        assert_eq!(blocked["version"], version.as_str(), "{blocked}");
        assert_eq!(blocked["blocked_in"], "fd_read", "{blocked}");
        assert_eq!(blocked["cancelled"], false);
        assert!(blocked["age_ms"].is_u64(), "{blocked}");
        let stack = blocked["stack"].as_str().unwrap();
        assert!(stack.contains("_start"), "the guest's frames: {stack}");
        assert_eq!(blocked["call"]["kind"], "Call", "{blocked}");
        let domain = blocked["domain"].as_u64().unwrap();

        // The domain: listed with what it serves, alone, and its roots.
        let (status, domains, _) = admin(&server, &client, Method::GET, "/admin/domains").await;
        assert_eq!(status, StatusCode::OK);
        let listed = (domains["domains"].as_array().unwrap().iter())
            .find(|d| d["id"] == domain)
            .unwrap_or_else(|| panic!("domain {domain} not listed: {domains}"))
            .clone();
        let (status, alone, _) = admin(
            &server,
            &client,
            Method::GET,
            &format!("/admin/domains/{domain}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{alone}");
        for view in [&listed, &alone] {
            assert_eq!(view["request"], id.as_str(), "{view}");
            assert_eq!(view["role"], "request", "{view}");
            assert_eq!(view["plugin"], "read", "{view}");
            assert_eq!(view["version"], version.as_str(), "{view}");
            assert_eq!(view["name"], format!("read@{version}"), "{view}");
            assert_eq!(view["state"], "Running", "{view}");
            assert_eq!(view["roots_by_kind"]["Call"], 1, "{view}");
            // stdin and stdout are WASI's handles, in the table.
            assert!(view["handles_by_type"].is_object(), "{view}");
            assert!(view["ledger"].is_object(), "{view}");
            assert!(view["modules"].is_array(), "{view}");
        }
        let roots_path = format!("/admin/domains/{domain}/roots");
        let (status, roots, _) = admin(&server, &client, Method::GET, &roots_path).await;
        assert_eq!(status, StatusCode::OK, "{roots}");
        let call = &roots["roots"][0];
        assert_eq!(
            (&call["kind"], &call["blocked_in"]),
            (&Value::from("Call"), &Value::from("fd_read")),
            "{roots}"
        );
        assert!(
            call["stack"].as_str().unwrap().contains("_start"),
            "{roots}"
        );

        // Cancelled: the client gets 503 with the id, as a fault.
        let cancel = format!("/admin/requests/{id}/cancel");
        let (status, cancelled, _) = admin(&server, &client, Method::POST, &cancel).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{cancelled}");
        assert_eq!(
            (
                &cancelled["id"],
                &cancelled["cancelled"],
                &cancelled["domain"]
            ),
            (
                &Value::from(id.as_str()),
                &Value::from(true),
                &Value::from(domain)
            )
        );
        let answer = answer_of(stream).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body, serde_json::json!({ "error": "cancelled", "id": id }));
        assert_eq!(
            server
                .state
                .faults()
                .get(custody_serve::FaultKind::Cancelled),
            1
        );
        // Gone: listed no more, its id and domain stale.
        let (_, listed, _) = admin(&server, &client, Method::GET, "/admin/requests").await;
        assert_eq!(listed["requests"], serde_json::json!([]), "{listed}");
        let (status, again, _) = admin(&server, &client, Method::POST, &cancel).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{again}");
        assert_eq!(again["error"], "no-such-request");
        let stale = format!("/admin/domains/{domain}");
        let (status, gone, _) = admin(&server, &client, Method::GET, &stale).await;
        assert_eq!(
            (status, &gone["error"]),
            (StatusCode::NOT_FOUND, &Value::from("no-such-domain"))
        );
        // The fault is among the recent diagnostics, with its id and domain.
        let (_, recent, _) = admin(&server, &client, Method::GET, "/admin/diagnostics").await;
        let fault = (recent["diagnostics"].as_array().unwrap().iter())
            .find(|d| d["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no diagnostic for {id}: {recent}"));
        assert_eq!(
            (
                &fault["source"],
                &fault["kind"],
                &fault["status"],
                &fault["domain"]
            ),
            (
                &Value::from("fault"),
                &Value::from("cancelled"),
                &Value::from(503),
                &Value::from(domain)
            )
        );
        drop(client);
        eventually(Duration::from_secs(5), || FdBaseline::now() == fds).await;
        fds.assert_back("after a request was blocked, listed and cancelled");
    });
}

#[test]
fn a_domain_with_a_blocked_request_is_unloaded_cooperatively_then_forced() {
    serial_runtime(async {
        let server = server().await;
        let fds = baseline_after_warm_up(&server).await;
        let client = client();
        let stream = stuck_request(&server).await;
        let blocked = blocked_request(&server, &client).await;
        let (id, domain) = (blocked["id"].clone(), blocked["domain"].as_u64().unwrap());
        // Cooperative: begun, but the blocked call holds it.
        let unload = format!("/admin/domains/{domain}/unload?wait_ms=50");
        let (status, held, _) = admin(&server, &client, Method::POST, &unload).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{held}");
        assert_eq!(
            (&held["unloaded"], &held["state"]),
            (&Value::from(false), &Value::from("Unloading"))
        );
        let roots = held["roots"].as_array().unwrap();
        assert!(
            roots
                .iter()
                .any(|r| r["kind"] == "Call" && r["blocked_in"] == "fd_read"),
            "{held}"
        );
        let (_, view, _) = admin(
            &server,
            &client,
            Method::GET,
            &format!("/admin/domains/{domain}"),
        )
        .await;
        assert_eq!(view["state"], "Unloading", "{view}");
        // Forced: the blocked call wakes, the request ends cancelled.
        let force = format!("/admin/domains/{domain}/force");
        let (status, forced, _) = admin(&server, &client, Method::POST, &force).await;
        assert_eq!(status, StatusCode::OK, "{forced}");
        assert_eq!(forced["cancelled"], serde_json::json!([id]), "{forced}");
        assert!(forced["report"]["forced"].is_object(), "{forced}");
        let answer = answer_of(stream).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"cancelled\""), "{answer}");
        // The domain is gone: each action on it is a 404.
        for path in [force, unload, format!("/admin/domains/{domain}/roots")] {
            let method = if path.ends_with("roots") {
                Method::GET
            } else {
                Method::POST
            };
            let (status, gone, _) = admin(&server, &client, method, &path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {gone}");
        }
        // The forced unload is a host diagnostic of that domain.
        let (_, recent, _) = admin(&server, &client, Method::GET, "/admin/diagnostics").await;
        assert!(
            (recent["diagnostics"].as_array().unwrap().iter()).any(|d| d["source"] == "host"
                && d["kind"] == "unloadForced"
                && d["domain"] == domain),
            "{recent}"
        );
        assert!(
            eventually(Duration::from_secs(5), || server
                .state
                .host()
                .domain_count()
                == 0)
            .await
        );
        drop(client);
        eventually(Duration::from_secs(5), || FdBaseline::now() == fds).await;
        fds.assert_back("after an unload and a force");
    });
}

#[test]
fn a_reload_answers_the_version_serving_or_the_refusal() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        let first = server.state.plugins()[2].current().id.clone();
        let (status, same, _) = admin(
            &server,
            &client,
            Method::POST,
            "/admin/plugins/hello/reload",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{same}");
        assert_eq!(
            same,
            serde_json::json!({"plugin": "hello", "outcome": "unchanged", "version": first})
        );
        let changed = guest(b"content-type: text/plain\n\nhello again\n", "");
        std::fs::write(server.dir.join("hello.wat"), &changed).unwrap();
        let (status, swapped, _) = admin(
            &server,
            &client,
            Method::POST,
            "/admin/plugins/hello/reload",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{swapped}");
        assert_eq!(
            (&swapped["outcome"], &swapped["previous"]),
            (&Value::from("swapped"), &Value::from(first))
        );
        let current = server.state.plugins()[2].current().id.clone();
        assert_eq!(swapped["version"], current.as_str());
        std::fs::write(server.dir.join("hello.wat"), "(module (func").unwrap();
        let (status, refused, _) = admin(
            &server,
            &client,
            Method::POST,
            "/admin/plugins/hello/reload",
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(
            (&refused["error"], &refused["id"]),
            (&Value::from("refused"), &Value::from("hello"))
        );
        assert!(
            refused["message"].as_str().unwrap().contains("hello.wat"),
            "the cause: {refused}"
        );
        assert_eq!(
            get(&client, &server.url("/hello")).await.body,
            "hello again\n"
        );
        let (_, recent, _) = admin(&server, &client, Method::GET, "/admin/diagnostics").await;
        assert!(
            (recent["diagnostics"].as_array().unwrap().iter())
                .any(|d| d["kind"] == "reload-refused"
                    && d["plugin"] == "hello"
                    && d["version"] == current.as_str()),
            "{recent}"
        );
        let (status, unknown, _) = admin(
            &server,
            &client,
            Method::POST,
            "/admin/plugins/nobody/reload",
        )
        .await;
        assert_eq!(
            (status, &unknown["error"]),
            (StatusCode::NOT_FOUND, &Value::from("no-such-plugin"))
        );
    });
}

#[test]
fn the_diagnostics_stream_sends_a_fault_and_ends_with_the_server() {
    serial_runtime(async {
        let mut server = server().await;
        let client = client();
        get(&client, &server.url("/hello")).await;
        let auth = format!("Bearer {TOKEN}");
        let follow = |path: &str| {
            let request = hyper::Request::get(server.admin_url(path))
                .header("authorization", auth.as_str())
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            client.request(request)
        };
        let response = follow("/admin/diagnostics?follow").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut events = response.into_body();
        let fault = send(
            &client,
            Method::GET,
            &server.url("/boom"),
            &[("accept", "application/json")],
            Bytes::new(),
        )
        .await;
        assert_eq!(fault.status, StatusCode::INTERNAL_SERVER_ERROR);
        let id: Value = serde_json::from_str::<Value>(&fault.body).unwrap()["id"].clone();
        // Events until the fault's: each an `id:` line and one `data:` line.
        let mut text = String::new();
        let event = loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), events.frame())
                .await
                .expect("the fault's event comes")
                .unwrap()
                .unwrap();
            text.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
            let found = (text.split("\n\n"))
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .filter_map(|data| serde_json::from_str::<Value>(data).ok())
                .find(|e| e["id"] == id);
            if let Some(event) = found {
                break event;
            }
        };
        assert_eq!(
            (&event["source"], &event["kind"], &event["plugin"]),
            (
                &Value::from("fault"),
                &Value::from("trap"),
                &Value::from("boom")
            )
        );
        assert!(text.starts_with("id: "), "{text}");
        // A second follower, still open when the server stops: its stream
        // ends (no task left behind, the stop not held up).
        let other = follow("/admin/diagnostics?follow=1")
            .await
            .unwrap()
            .into_body();
        drop(events);
        let stopping = Instant::now();
        let stopped = server.stop().await;
        let rest = tokio::time::timeout(Duration::from_secs(5), other.collect()).await;
        assert!(rest.is_ok(), "the stream ended with the server");
        assert!(
            stopping.elapsed() < Duration::from_secs(4),
            "{:?}",
            stopping.elapsed()
        );
        assert_eq!(stopped.domains_left, 0);
    });
}
