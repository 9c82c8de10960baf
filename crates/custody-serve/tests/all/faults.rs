//! Each fault kind: its status, its body (JSON or text) with the
//! request's id, one log event with the same id, its counter; and hostile
//! guests (endless output, no header block, bad headers, no stdin reads).

use std::time::Duration;

use bytes::Bytes;
use custody_serve::FaultKind;
use hyper::{Method, StatusCode};

use crate::support::*;

const HEAD: &[u8] = b"content-type: text/plain\n\n";

/// A server with one plugin per `(name, module, extra keys)`.
async fn plugins(cases: &[(&str, String, &str)]) -> TestServer {
    let mut toml = String::new();
    let mut files = Vec::new();
    for (name, module, extra) in cases {
        let timeout = if extra.contains("request_timeout") {
            ""
        } else {
            "request_timeout = \"500ms\"\n"
        };
        toml += &format!(
            "[[plugin]]\nname = \"{name}\"\nroute = \"/{name}\"\nmodule = \"{name}.wat\"\n{timeout}{extra}\n"
        );
        files.push((format!("{name}.wat"), module.clone()));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    TestServer::start(&toml, &files).await
}

/// Asks for JSON; checks the status, the body's kind and id, the log
/// event and the counter; the id.
async fn assert_fault(
    server: &TestServer,
    client: &HttpClient,
    path: &str,
    kind: FaultKind,
) -> String {
    assert_fault_with(server, client, path, kind, Vec::new()).await
}

/// As `assert_fault`, POSTing `body` when there is one.
async fn assert_fault_with(
    server: &TestServer,
    client: &HttpClient,
    path: &str,
    kind: FaultKind,
    body: Vec<u8>,
) -> String {
    let before = server.state.faults().get(kind);
    let method = if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    };
    let answer = send(
        client,
        method,
        &server.url(path),
        &[("accept", "application/json")],
        body,
    )
    .await;
    assert_eq!(answer.status, kind.status(), "{path}: {}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(json["error"], kind.name(), "{path}");
    let id = json["id"].as_str().unwrap().to_string();
    let events = logged(&id);
    let fault_events: Vec<_> = events
        .iter()
        .filter(|l| l.contains("custody::serve::fault"))
        .collect();
    assert_eq!(fault_events.len(), 1, "{path}: {events:#?}");
    let event = fault_events[0];
    assert!(
        event.contains(&format!("kind=\"{}\"", kind.name()))
            || event.contains(&format!("kind={}", kind.name())),
        "{event}"
    );
    assert!(
        event.contains(&format!("plugin=\"{}\"", &path[1..]))
            || event.contains(&format!("plugin={}", &path[1..])),
        "{event}"
    );
    assert!(event.contains("route="), "{event}");
    assert_eq!(server.state.faults().get(kind), before + 1, "{path}");
    assert!(answer.headers.contains_key("custody-plugin-version"));
    id
}

#[test]
fn each_fault_kind_has_its_status_body_id_log_event_and_counter() {
    serial_runtime(async {
        let grow = "(block $full (loop $more (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) (br $more))) unreachable";
        let server = plugins(&[
            ("trap", trapping_guest(), ""),
            ("deadline", guest(b"", SPIN), ""),
            (
                "memory",
                guest(b"", grow),
                "policy = { memory_limit = \"4MiB\" }",
            ),
            ("exit", guest(b"", "(call $exit (i32.const 3))"), ""),
            ("nohead", guest(b"just text, no header block", ""), ""),
            ("badname", guest(b"bad name: x\n\n", ""), ""),
            ("badstatus", guest(b"status: two hundred\n\n", ""), ""),
            (
                "endless",
                guest(
                    b"x-header: ",
                    "(loop $l (call $write_all (i32.const 1024) (i32.const 10)) (br $l))",
                ),
                "",
            ),
        ])
        .await;
        let client = client();
        let id = assert_fault(&server, &client, "/trap", FaultKind::Trap).await;
        // The trap's event carries the guest's backtrace with function names.
        let event = logged(&id).join("\n");
        assert!(event.contains("deep"), "{event}");
        assert_fault(&server, &client, "/deadline", FaultKind::Deadline).await;
        assert_fault(&server, &client, "/memory", FaultKind::Memory).await;
        assert_fault(&server, &client, "/exit", FaultKind::Exit).await;
        for bad in ["/nohead", "/badname", "/badstatus", "/endless"] {
            assert_fault(&server, &client, bad, FaultKind::BadResponse).await;
        }
        // Text unless the client asks for JSON.
        let answer = get(&client, &server.url("/trap")).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            answer.body.starts_with("trap: ") && answer.body.contains("(id "),
            "{}",
            answer.body
        );
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    });
}

/// A guest function `$deep` that traps, so the backtrace has a name.
fn trapping_guest() -> String {
    guest_with(
        &[("_start", b"", "(call $deep)")],
        "(func $deep unreachable)",
    )
}

#[test]
fn overload_is_a_503_with_retry_after_and_a_body_over_max_body_a_413() {
    serial_runtime(async {
        let server = plugins(&[
            (
                "busy",
                guest(HEAD, SPIN),
                "max_concurrency = 1\nrequest_timeout = \"2s\"",
            ),
            ("small", guest(HEAD, ""), "max_body = \"1KiB\""),
        ])
        .await;
        let client = client();
        let slow = tokio::spawn({
            let (client, url) = (client.clone(), server.url("/busy"));
            async move {
                let request = hyper::Request::get(url)
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap();
                // Kept (unread) until the 503 below: a client that drops
                // the body goes away, and its guest is stopped then.
                client.request(request).await.unwrap()
            }
        });
        // Wait until the first request holds the plugin's one permit.
        let busy = server
            .state
            .plugins()
            .iter()
            .find(|p| p.config.name == "busy")
            .unwrap()
            .clone();
        for _ in 0..200 {
            if busy.permits.available_permits() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answer = send(
            &client,
            Method::GET,
            &server.url("/busy"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        assert_eq!(answer.headers["retry-after"], "1");
        assert_eq!(
            slow.await.unwrap().status(),
            StatusCode::OK,
            "the first one streams until its deadline"
        );
        assert_fault_with(
            &server,
            &client,
            "/small",
            FaultKind::Body,
            vec![b'x'; 2048],
        )
        .await;
        let fits = send(
            &client,
            Method::POST,
            &server.url("/small"),
            &[],
            vec![b'x'; 1024],
        )
        .await;
        assert_eq!(fits.status, StatusCode::OK);
    });
}

#[test]
fn hostile_output_ends_with_a_clear_status() {
    serial_runtime(async {
        let endless = "(loop $l (call $write_all (i32.const 1024) (i32.const 26)) (br $l))";
        let server = plugins(&[
        // An endless body: cut at max_response.
        ("flood", guest(HEAD, endless), "max_response = \"256KiB\"\nrequest_timeout = \"5s\""),
        // Over max_response before the head ends: 502.
        ("tiny", guest(b"content-type: text/plain\nx-long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n", ""), "max_response = 32"),
        // Never reads stdin, answers at once.
        ("deaf", guest(b"content-type: text/plain\n\ndone", ""), ""),
        // Exits nonzero after a complete response: it stands.
        ("late", guest(b"content-type: text/plain\n\nanswered", "(call $exit (i32.const 7))"), ""),
    ])
    .await;
        let client = client();
        let request = hyper::Request::get(server.url("/flood"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let before = server.state.faults().get(FaultKind::BadResponse);
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        assert!(body.is_err(), "the body is cut");
        assert_eq!(
            server.state.faults().get(FaultKind::BadResponse),
            before + 1
        );
        let answer = get(&client, &server.url("/tiny")).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
        let upload = vec![b'u'; 4 << 20];
        let answer = send(&client, Method::POST, &server.url("/deaf"), &[], upload).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "done")
        );
        let answer = get(&client, &server.url("/late")).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "answered")
        );
    });
}

#[test]
fn stderr_is_logged_a_line_at_a_time_with_plugin_and_request_id() {
    serial_runtime(async {
        let module = guest_with(
            &[(
                "_start",
                HEAD,
                "(call $stderr (i32.const 1024) (i32.const 0))",
            )],
            r#"(data (i32.const 4096) "first line\nsecond \1b[31mline\n")
           (func $stderr (param i32 i32)
             (i32.store (i32.const 32) (i32.const 4096))
             (i32.store (i32.const 36) (i32.const 28))
             (drop (call $fd_write (i32.const 2) (i32.const 32) (i32.const 1) (i32.const 40))))"#,
        );
        let server = plugins(&[("noisy", module, "")]).await;
        let answer = get(&client(), &server.url("/noisy")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let lines = logged_eventually("custody::serve::stderr", "second").await;
        let ours: Vec<_> = lines.iter().filter(|l| l.contains("noisy")).collect();
        assert_eq!(ours.len(), 2, "{lines:#?}");
        assert!(
            ours[0].contains("first line") && ours[0].contains("id="),
            "{}",
            ours[0]
        );
        assert!(
            !ours[1].contains('\u{1b}'),
            "control characters are escaped: {}",
            ours[1]
        );
    });
}

#[test]
fn a_client_that_goes_away_mid_body_stops_its_guest_at_once() {
    serial_runtime(async {
        let server = plugins(&[(
            "spin",
            guest(HEAD, SPIN),
            "max_concurrency = 1\nrequest_timeout = \"60s\"",
        )])
        .await;
        let plugin = server.state.plugins()[0].clone();
        let request = hyper::Request::get(server.url("/spin"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the head left");
        assert_eq!(plugin.permits.available_permits(), 0, "the guest spins");
        drop(response);
        // The server sees the connection close when the body is dropped
        // unread: the guest is stopped, long before its deadline.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while plugin.permits.available_permits() == 0 {
            assert!(std::time::Instant::now() < until, "the guest still runs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn a_short_call_is_one_response_with_its_length_and_a_trap_after_its_head_its_fault() {
    serial_runtime(async {
        let server = plugins(&[
            ("short", guest(b"content-type: text/plain\n\nhello", ""), ""),
            (
                "late_trap",
                guest(b"content-type: text/plain\n\npartial", "unreachable"),
                "",
            ),
        ])
        .await;
        let client = client();
        // The call ends within FLUSH_DELAY: its output is one response,
        // with its length, not a chunked stream.
        let answer = get(&client, &server.url("/short")).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "hello")
        );
        assert_eq!(
            answer
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .map(|v| v.as_bytes()),
            Some(&b"5"[..]),
            "{:?}",
            answer.headers
        );
        assert!(
            !answer
                .headers
                .contains_key(hyper::header::TRANSFER_ENCODING)
        );
        // Nothing had left when it trapped: the trap's status, not a cut body.
        let before = server.state.faults().get(FaultKind::Trap);
        let answer = get(&client, &server.url("/late_trap")).await;
        assert_eq!(
            answer.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            answer.body
        );
        assert!(answer.body.contains("trap"), "{}", answer.body);
        assert_eq!(server.state.faults().get(FaultKind::Trap), before + 1);
    });
}
