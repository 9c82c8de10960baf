//! The bounds on HTTP clients (slowloris, header count, connections),
//! the health endpoints, and leak-freedom: the fds are back to their
//! baseline after a burst of requests, faults included.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::support::*;

const HELLO: &str = include_str!("../../plugins/hello.wat");

#[test]
fn health_and_ready_answer_on_the_plugins_listener() {
    serial_runtime(async {
        let toml = "[[plugin]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"hello.wat\"\n";
        let server = TestServer::start(toml, &[("hello.wat", HELLO)]).await;
        let client = client();
        assert_eq!(
            get(&client, &server.url(custody_serve::HEALTH_PATH))
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            get(&client, &server.url(custody_serve::READY_PATH))
                .await
                .status,
            StatusCode::OK
        );
        server.state.set_ready(false);
        assert_eq!(
            get(&client, &server.url(custody_serve::READY_PATH))
                .await
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&client, &server.url("/nowhere")).await.status,
            StatusCode::NOT_FOUND
        );
        let answer = get(&client, &server.url("/hello")).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "hello, world\n")
        );
    });
}

/// A WAGI plugin whose `_routes` (called once at load) sleeps `ms`
/// (WASI's `poll_oneoff` on a relative clock) and declares no sub-route;
/// `_start` answers `started`.
fn slow_to_load(ms: u64) -> String {
    let head = "content-type: text/plain\n\nstarted\n";
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{escaped}")
  (func (export "_routes")
    ;; one clock subscription at 200: relative, {ms} ms
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const {nanos}))
    (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400))))
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        escaped = head.replace('\n', "\\n"),
        len = head.len(),
        nanos = ms * 1_000_000
    )
}

#[test]
fn ready_is_503_while_the_plugins_load_and_health_200_throughout() {
    serial_runtime(async {
        let toml = "[[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wat\"\n";
        let dir = write_files(&[("p.wat", &slow_to_load(400))]);
        let file = dir.join("custody.toml");
        std::fs::write(&file, toml).unwrap();
        let config = custody_serve::ServerConfig::from_file(&file).unwrap();
        let (server, loading) = TestServer::starting(config, &file, dir).await;
        let client = client();
        // Each poll: /ready, /health, the plugin's route, and whether the
        // load had finished before /ready was asked.
        let mut polls = Vec::new();
        let begun = Instant::now();
        loop {
            let loaded_before = loading.is_finished();
            let ready = get(&client, &server.url(custody_serve::READY_PATH)).await;
            let health = get(&client, &server.url(custody_serve::HEALTH_PATH)).await;
            let plugin = get(&client, &server.url("/p")).await;
            let done = ready.status == StatusCode::OK;
            polls.push((loaded_before, ready, health, plugin));
            if done || begun.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loading.await.unwrap().unwrap();
        let summary: Vec<_> = (polls.iter())
            .map(|(loaded, r, h, p)| (*loaded, r.status, h.status, p.status))
            .collect();
        let (first, last) = (&polls[0], &polls[polls.len() - 1]);
        assert!(
            !first.0,
            "the load was over before the first poll: {summary:?}"
        );
        assert_eq!(
            first.1.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{summary:?}"
        );
        assert_eq!(last.1.status, StatusCode::OK, "never ready: {summary:?}");
        assert!(
            (polls.iter()).all(|(_, _, health, _)| health.status == StatusCode::OK),
            "{summary:?}"
        );
        for (_, ready, _, plugin) in &polls {
            if ready.status == StatusCode::SERVICE_UNAVAILABLE {
                // Asked right after /ready: the load may have ended
                // between the two, so either answer, never a 404.
                assert!(
                    [StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK].contains(&plugin.status),
                    "{summary:?}"
                );
            }
        }
        let starting = (polls.iter())
            .find(|(_, _, _, plugin)| plugin.status == StatusCode::SERVICE_UNAVAILABLE)
            .map(|(_, _, _, plugin)| plugin)
            .expect("a request to the plugin while it loads");
        assert_eq!(starting.headers[hyper::header::RETRY_AFTER], "1");
        assert!(starting.body.starts_with("starting"), "{}", starting.body);
        let answer = &last.3;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "started\n")
        );
        // Ready only once every plugin had loaded (`_routes` slept 400 ms).
        assert!(
            begun.elapsed() >= Duration::from_millis(350),
            "{:?}",
            begun.elapsed()
        );
    });
}

/// Reads until the server closes the connection (or `limit` passes);
/// what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_slow_head_and_an_idle_connection_are_cut_and_bad_heads_refused() {
    serial_runtime(async {
        let toml = r#"
        [limits]
        header_read_timeout = "300ms"
        idle_timeout = "300ms"
        max_headers = 8
        [[plugin]]
        name = "hello"
        route = "/hello"
        module = "hello.wat"
    "#;
        let server = TestServer::start(toml, &[("hello.wat", HELLO)]).await;
        let addr = server.addr;
        tokio::task::spawn_blocking(move || {
            // Slowloris: a head that never ends.
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            let (_, after) = read_until_closed(&mut stream, Duration::from_secs(5));
            assert!(after < Duration::from_secs(3), "cut after {after:?}");
            // Idle after one request: closed too.
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let (got, after) = read_until_closed(&mut stream, Duration::from_secs(5));
            assert!(
                got.starts_with("HTTP/1.1 200") && got.contains("hello, world\n"),
                "{got}"
            );
            assert!(after < Duration::from_secs(3), "idle cut after {after:?}");
            // Too many headers, and a malformed request line.
            let mut stream = TcpStream::connect(addr).unwrap();
            let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
            stream
                .write_all(format!("GET /hello HTTP/1.1\r\n{many}\r\n").as_bytes())
                .unwrap();
            let (got, _) = read_until_closed(&mut stream, Duration::from_secs(5));
            assert!(got.starts_with("HTTP/1.1 431"), "{got}");
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
            let (got, _) = read_until_closed(&mut stream, Duration::from_secs(5));
            assert!(got.is_empty() || got.starts_with("HTTP/1.1 400"), "{got}");
        })
        .await
        .unwrap();
        // The server still serves.
        assert_eq!(
            get(&client(), &server.url("/hello")).await.status,
            StatusCode::OK
        );
    });
}

#[test]
fn connections_over_max_connections_are_closed() {
    serial_runtime(async {
        let toml = "[limits]\nmax_connections = 1\n[[plugin]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"hello.wat\"\n";
        let server = TestServer::start(toml, &[("hello.wat", HELLO)]).await;
        let addr = server.addr;
        tokio::task::spawn_blocking(move || {
            let mut first = TcpStream::connect(addr).unwrap();
            first
                .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 12];
            first.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            let mut second = TcpStream::connect(addr).unwrap();
            let _ = second.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
            let (got, _) = read_until_closed(&mut second, Duration::from_secs(5));
            assert!(got.is_empty(), "{got}");
        })
        .await
        .unwrap();
    });
}

#[test]
fn fds_are_back_to_the_baseline_after_a_burst_of_requests() {
    serial_runtime(async {
        let echo = include_str!("../../plugins/echo.wat");
        let toml = r#"
        [[plugin]]
        name = "echo"
        route = "/echo/..."
        module = "echo.wat"
        [[plugin]]
        name = "trap"
        route = "/trap"
        module = "trap.wat"
        [[plugin]]
        name = "spin"
        route = "/spin"
        module = "spin.wat"
        request_timeout = "200ms"
    "#;
        let server = TestServer::start(
            toml,
            &[
                ("echo.wat", echo),
                ("trap.wat", &guest(b"", "unreachable")),
                ("spin.wat", &guest(b"content-type: text/plain\n\n", SPIN)),
            ],
        )
        .await;
        // Warm: the first request of each plugin, then the baseline.
        {
            let client = client();
            for path in ["/echo", "/trap", "/spin"] {
                let request = hyper::Request::get(server.url(path))
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap();
                // The spinning one's body is cut: an error, expected.
                let response = client.request(request).await.unwrap();
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            }
        }
        settle().await;
        let baseline = custody_testkit::FdBaseline::now();
        {
            let client = client();
            let mut requests = Vec::new();
            for i in 0..60 {
                let (client, url) = (
                    client.clone(),
                    server.url(["/echo/x", "/trap", "/spin"][i % 3]),
                );
                requests.push(tokio::spawn(async move {
                    let request = hyper::Request::builder()
                        .method(Method::POST)
                        .uri(url)
                        .body(http_body_util::Full::new(Bytes::from(vec![b'b'; 100_000])))
                        .unwrap();
                    // A cut body is an error: either way the request ended.
                    if let Ok(response) = client.request(request).await {
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                    }
                }));
            }
            for request in requests {
                request.await.unwrap();
            }
        }
        // The client's connections close as it drops; the server's tasks see it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while custody_testkit::open_fds() != baseline.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        baseline.assert_back("after 60 requests (echo, trap, deadline)");
        // Each domain unloads just after its response left.
        let host = server.state.host();
        crate::reload::eventually(Duration::from_secs(5), || host.domain_count() == 0).await;
        assert_eq!(
            server.state.host().domain_count(),
            0,
            "every request's domain is unloaded"
        );
    });
}

/// Waits until the fd count stops changing (the warm-up's connections
/// closing).
async fn settle() {
    let mut last = custody_testkit::open_fds();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = custody_testkit::open_fds();
        if now == last {
            return;
        }
        last = now;
    }
}
