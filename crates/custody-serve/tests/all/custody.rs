//! Plugins on the custody ABI (`interface = "custody"`): `handle(request,
//! response)` reads the request head and shapes its response head through
//! `custody_http`, and streams both bodies through its two handles, which
//! are released whatever the guest did (returned, trapped, spun to the
//! deadline, leaked them). The two bodies are in-process pipes: a request
//! makes no fd, and a client gone mid-body stops the guest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use custody_serve::FaultKind;
use hyper::{Method, StatusCode};

use crate::support::*;

/// A custody-ABI plugin: `handle` sets 201 and `x-method: METHOD`, writes
/// "URI\n", then copies the request body; the export `then` runs after.
pub(crate) fn plugin(then: &str) -> String {
    format!(
        r#"(module
  (import "custody_http" "method" (func $method (param i32 i32 i32) (result i32)))
  (import "custody_http" "uri" (func $uri (param i32 i32 i32) (result i32)))
  (import "custody_http" "set_status" (func $set_status (param i32) (result i32)))
  (import "custody_http" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "x-method")
  (func $write_all (param $h i32) (param $ptr i32) (param $len i32)
    (block $done (loop $more
      (br_if $done (i32.eqz (local.get $len)))
      (br_if $done (call $write (local.get $h) (local.get $ptr) (local.get $len) (i32.const 16)))
      (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 16))))
      (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 16))))
      (br $more))))
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (local $n i32)
    (drop (call $set_status (i32.const 201)))
    (drop (call $method (i32.const 200) (i32.const 16) (i32.const 20)))
    (drop (call $set_header (i32.const 100) (i32.const 8) (i32.const 200) (i32.load (i32.const 20))))
    (drop (call $uri (i32.const 300) (i32.const 200) (i32.const 24)))
    (i32.store8 (i32.add (i32.const 300) (i32.load (i32.const 24))) (i32.const 10))
    (call $write_all (local.get $resp) (i32.const 300) (i32.add (i32.load (i32.const 24)) (i32.const 1)))
    (block $eof (loop $more
      (br_if $eof (call $read (local.get $req) (i32.const 1024) (i32.const 4096) (i32.const 28)))
      (local.set $n (i32.load (i32.const 28)))
      (br_if $eof (i32.eqz (local.get $n)))
      (call $write_all (local.get $resp) (i32.const 1024) (local.get $n))
      (br $more)))
    {then}
    (i32.const 0))
)"#
    )
}

/// A plugin whose `handle` does only `body` (and returns 0).
fn bare(body: &str) -> String {
    format!(
        r#"(module
  (import "custody_http" "set_status" (func $set_status (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    {body}
    (i32.const 0)))"#
    )
}

async fn server() -> TestServer {
    let mut toml = String::new();
    let cases = [
        ("echo", plugin("")),
        ("trap_after", plugin("unreachable")),
        ("trap", bare("unreachable")),
        ("spin", bare(SPIN)),
        ("empty", bare("(drop (call $set_status (i32.const 204)))")),
    ];
    for (name, _) in &cases {
        toml += &format!(
            "[[plugin]]\nname = \"{name}\"\nroute = \"/{name}/...\"\nmodule = \"{name}.wat\"\n\
             interface = \"custody\"\nrequest_timeout = \"300ms\"\n"
        );
    }
    let files: Vec<(String, String)> = cases
        .iter()
        .map(|(name, wat)| (format!("{name}.wat"), wat.clone()))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    TestServer::start(&toml, &files).await
}

#[test]
fn handle_reads_the_head_shapes_its_own_and_streams_both_bodies() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        let answer = send(
            &client,
            Method::POST,
            &server.url("/echo/x?y=1"),
            &[],
            Bytes::from(vec![b'z'; 100_000]),
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.headers["x-method"], "POST");
        assert!(answer.headers.contains_key("custody-plugin-version"));
        let (uri, body) = answer.body.split_once('\n').unwrap();
        assert_eq!(uri, "/echo/x?y=1");
        assert_eq!(body.len(), 100_000);
        assert!(body.bytes().all(|b| b == b'z'));
        // No body at all: the head goes when handle returns.
        let answer = get(&client, &server.url("/empty")).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        assert_eq!(answer.body, "");
    });
}

#[test]
fn faults_before_the_body_have_their_status_and_after_it_cut_the_body() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        for (path, status, kind) in [
            ("/trap", StatusCode::INTERNAL_SERVER_ERROR, FaultKind::Trap),
            ("/spin", StatusCode::GATEWAY_TIMEOUT, FaultKind::Deadline),
        ] {
            let before = server.state.faults().get(kind);
            let answer = get(&client, &server.url(path)).await;
            assert_eq!(answer.status, status, "{path}: {}", answer.body);
            assert!(answer.body.contains(kind.name()), "{path}: {}", answer.body);
            assert_eq!(server.state.faults().get(kind), before + 1, "{path}");
        }
        // A trap after the body began: the head stands, the body is cut.
        let before = server.state.faults().get(FaultKind::Trap);
        let request = hyper::Request::get(server.url("/trap_after/x"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        assert!(body.is_err(), "the cut body is an error to the client");
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.state.faults().get(FaultKind::Trap) == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.state.faults().get(FaultKind::Trap), before + 1);
    });
}

#[test]
fn the_request_s_handles_are_released_whatever_the_guest_did() {
    serial_runtime(async {
        let server = server().await;
        {
            let warm = client();
            for path in ["/echo/w", "/trap", "/spin", "/trap_after/w", "/empty"] {
                let request = hyper::Request::get(server.url(path))
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap();
                if let Ok(response) = warm.request(request).await {
                    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline = custody_testkit::FdBaseline::now();
        {
            let client = client();
            let mut requests = Vec::new();
            for i in 0..40 {
                let (client, url) = (
                    client.clone(),
                    server.url(["/echo/x", "/trap", "/spin", "/trap_after/x"][i % 4]),
                );
                requests.push(tokio::spawn(async move {
                    let request = hyper::Request::builder()
                        .method(Method::POST)
                        .uri(url)
                        .body(http_body_util::Full::new(Bytes::from(vec![b'b'; 50_000])))
                        .unwrap();
                    if let Ok(response) = client.request(request).await {
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                    }
                }));
            }
            for request in requests {
                request.await.unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while custody_testkit::open_fds() != baseline.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        baseline.assert_back(
            "after 40 custody-ABI requests (echo, trap, deadline, trap after the body)",
        );
        // Each domain unloads just after its response left.
        let host = server.state.host();
        crate::reload::eventually(Duration::from_secs(5), || host.domain_count() == 0).await;
        assert_eq!(host.domain_count(), 0);
    });
}

/// A pooled plugin: `handle` counts its calls in a global and answers the
/// count as one letter (`b` for the first call of an instance, `c` for the
/// second...); DELETE traps; PUT duplicates the response handle and keeps
/// the copy (a handle left behind).
const COUNTER: &str = r#"(module
  (import "custody_http" "method" (func $method (param i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "custody" "dup" (func $dup (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (drop (call $method (i32.const 200) (i32.const 16) (i32.const 20)))
    (if (i32.eq (i32.load8_u (i32.const 200)) (i32.const 68)) (then unreachable))
    (if (i32.eq (i32.load8_u (i32.const 201)) (i32.const 85))
      (then (drop (call $dup (local.get $resp) (i32.const 24)))))
    (i32.store8 (i32.const 100) (i32.add (i32.const 97) (global.get $calls)))
    (drop (call $write (local.get $resp) (i32.const 100) (i32.const 1) (i32.const 16)))
    (i32.const 0)))"#;

#[test]
fn pooled_domains_serve_one_request_at_a_time_and_retire_after_their_count_a_trap_or_a_leak() {
    serial_runtime(async {
        let toml = "[[plugin]]\nname = \"count\"\nroute = \"/count\"\nmodule = \"count.wat\"\n\
                    instances = \"pooled\"\npool = 2\nrecycle_after = \"3..4\"\n";
        let server = TestServer::start(toml, &[("count.wat", COUNTER)]).await;
        let client = client();
        let mut bodies = String::new();
        for _ in 0..7 {
            bodies += &get(&client, &server.url("/count")).await.body;
        }
        // Three requests per domain, then a fresh one.
        assert_eq!(bodies, "bcdbcdb");
        assert!(
            server.state.host().domain_count() <= 2,
            "at most the pool is kept"
        );
        // A trap retires the domain: the next request meets a fresh one.
        let trapped = send(
            &client,
            Method::DELETE,
            &server.url("/count"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(get(&client, &server.url("/count")).await.body, "b");
        // A handle left behind retires it too, and the request still ends.
        let leaked = send(
            &client,
            Method::PUT,
            &server.url("/count"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(leaked.body, "c");
        assert_eq!(get(&client, &server.url("/count")).await.body, "b");
    });
}

/// The request and response bodies are in-process pipes: no fd is made
/// for a request (OS pipes made four), so the server's count of fds other
/// than sockets (connections may come and go) never moves while a batch is
/// served, sampled as fast as `/proc/self/fd` is read.
#[test]
fn a_custody_abi_request_makes_no_fd() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        for _ in 0..5 {
            let answer = get(&client, &server.url("/echo/w")).await;
            assert_eq!(answer.status, StatusCode::CREATED);
        }
        let baseline = custody_testkit::open_non_socket_fds();
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = Arc::clone(&sampling);
            std::thread::spawn(move || {
                let (mut most, mut samples) = (0, 0u64);
                while sampling.load(Ordering::Relaxed) {
                    most = most.max(custody_testkit::open_non_socket_fds());
                    samples += 1;
                }
                (most, samples)
            })
        };
        for i in 0..200 {
            let answer = get(&client, &server.url(&format!("/echo/{i}"))).await;
            assert_eq!(answer.status, StatusCode::CREATED);
            assert_eq!(answer.body, format!("/echo/{i}\n"));
        }
        sampling.store(false, Ordering::Relaxed);
        let (most, samples) = sampler.join().unwrap();
        assert!(samples > 100, "the sampler ran ({samples} samples)");
        assert_eq!(
            most, baseline,
            "the most fds (sockets aside) open while 200 requests were served, \
             {samples} samples"
        );
        assert_eq!(custody_testkit::open_non_socket_fds(), baseline);
    });
}

/// A client that goes away while the body streams stops the guest (as for
/// WAGI): its domain is gone long before the request's deadline.
#[test]
fn a_client_that_goes_away_mid_body_stops_the_guest() {
    serial_runtime(async {
        let flood = r#"(module
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (loop $forever
      (drop (call $write (local.get $resp) (i32.const 1024) (i32.const 4096) (i32.const 16)))
      (br $forever))
    (i32.const 0)))"#;
        let toml = "[[plugin]]\nname = \"flood\"\nroute = \"/flood\"\nmodule = \"flood.wat\"\n\
                    interface = \"custody\"\nrequest_timeout = \"60s\"\n";
        let server = TestServer::start(toml, &[("flood.wat", flood)]).await;
        let client = client();
        let started = Instant::now();
        let request = hyper::Request::get(server.url("/flood"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let frame = http_body_util::BodyExt::frame(&mut body).await;
        assert!(matches!(frame, Some(Ok(_))), "the body streams");
        assert_eq!(server.state.host().domain_count(), 1, "the guest runs");
        drop(body);
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.state.host().domain_count() != 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            server.state.host().domain_count(),
            0,
            "the guest was stopped"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stopped, not at its deadline"
        );
    });
}

/// A pooled domain's exchange serves its next request once the call ends:
/// a short response (sent whole when `handle` returns) and one without a
/// body still carry the head the plugin set.
#[test]
fn a_pooled_plugin_s_short_response_keeps_its_head() {
    serial_runtime(async {
        let mut toml = String::new();
        for name in ["echo", "empty"] {
            toml += &format!(
                "[[plugin]]\nname = \"{name}\"\nroute = \"/{name}/...\"\nmodule = \"{name}.wat\"\n\
                 interface = \"custody\"\ninstances = \"pooled\"\npool = 1\n"
            );
        }
        let (echo, empty) = (
            plugin(""),
            bare("(drop (call $set_status (i32.const 204)))"),
        );
        let files = [("echo.wat", echo.as_str()), ("empty.wat", empty.as_str())];
        let server = TestServer::start(&toml, &files).await;
        let client = client();
        for round in 0..3 {
            let answer = get(&client, &server.url("/echo/p")).await;
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "round {round}: {:?} {}",
                answer.headers,
                answer.body
            );
            assert_eq!(answer.headers["x-method"], "GET", "round {round}");
            assert_eq!(answer.body, "/echo/p\n");
            assert_eq!(answer.headers["content-length"], "8", "sent whole");
            let answer = get(&client, &server.url("/empty")).await;
            assert_eq!(answer.status, StatusCode::NO_CONTENT, "round {round}");
        }
    });
}

/// A custody-ABI plugin that imports WASI gets it (its stderr is logged
/// with its plugin and request id); one that imports none runs with the
/// policy's `wasi` off, in domains made without WASI state.
#[test]
fn wasi_is_there_for_a_plugin_that_imports_it_and_only_then() {
    serial_runtime(async {
        let noisy = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "from the custody ABI\n")
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (i32.store (i32.const 32) (i32.const 64))
    (i32.store (i32.const 36) (i32.const 21))
    (drop (call $fd_write (i32.const 2) (i32.const 32) (i32.const 1) (i32.const 40)))
    (i32.const 0)))"#;
        let plain = bare("(drop (call $set_status (i32.const 204)))");
        let mut toml = String::new();
        for name in ["abi_stderr", "plain"] {
            toml += &format!(
                "[[plugin]]\nname = \"{name}\"\nroute = \"/{name}\"\nmodule = \"{name}.wat\"\n\
                 interface = \"custody\"\n"
            );
        }
        let server =
            TestServer::start(&toml, &[("abi_stderr.wat", noisy), ("plain.wat", &plain)]).await;
        let wasi: Vec<(String, bool)> = (server.state.plugins().iter())
            .map(|p| (p.config.name.clone(), p.current().policy.wasi))
            .collect();
        assert_eq!(
            wasi,
            [
                ("abi_stderr".to_string(), true),
                ("plain".to_string(), false)
            ]
        );
        let client = client();
        assert_eq!(
            get(&client, &server.url("/plain")).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            get(&client, &server.url("/abi_stderr")).await.status,
            StatusCode::OK
        );
        let lines = logged_eventually("custody::serve::stderr", "from the custody ABI").await;
        assert!(
            lines.iter().any(|l| l.contains("from the custody ABI")
                && l.contains("abi_stderr")
                && l.contains("id=")),
            "{lines:#?}"
        );
    });
}

#[test]
fn a_quota_without_room_for_the_request_s_two_handles_is_a_500_that_names_it() {
    serial_runtime(async {
        // Room for one handle: the request's two are given together or not
        // at all, so `handle` is never called with half of them.
        let toml = "[[plugin]]\nname = \"cramped\"\nroute = \"/cramped\"\n\
                    module = \"cramped.wat\"\ninterface = \"custody\"\n\
                    policy = { handle_quota = 1 }\n";
        let wat = bare("(drop (call $set_status (i32.const 204)))");
        let server = TestServer::start(toml, &[("cramped.wat", &wat)]).await;
        let client = client();
        for _ in 0..3 {
            let answer = get(&client, &server.url("/cramped")).await;
            assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(
                answer.body.contains("the request's handles")
                    && answer.body.contains("the handle table is full"),
                "{}",
                answer.body
            );
        }
    });
}
