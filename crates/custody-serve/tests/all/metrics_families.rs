//! The `/metrics` families read from the host and the pools when scraped
//! (`metrics/host.rs`), each against a real server, read by the strict
//! OpenMetrics reader (`openmetrics`), and each seen moving when its event
//! happens: a request blocked in its domain (domains running, handles open
//! by type), its end (the ledger, balanced), a trap (aborted calls), a
//! timer left armed (an unload blocked, then forced), a pooled plugin's
//! requests (idle and in use), a reload (a module cache hit; the old
//! version's idle domains unloaded).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::openmetrics::{self, Exposition};
use crate::support::*;

/// A custody-ABI plugin whose `handle` reads its request body once (a GET
/// returns at once; a POST whose body is late waits for it), then answers
/// `MARK`.
const POOLED: &str = r#"(module
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "MARK")
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $read (local.get $req) (i32.const 1024) (i32.const 64) (i32.const 16)))
    (drop (call $write (local.get $resp) (i32.const 100) (i32.const 4) (i32.const 16)))
    (i32.const 0)))"#;

/// A custody-ABI plugin whose `handle` arms a 5 s timer and never
/// closes it (it exports no `custody_unloading`): the timer holds the
/// request's domain, whose unload is blocked, then forced.
const TIMER: &str = r#"(module
  (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 80) "tick")
  (func (export "tick") (param i32))
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $timer_set (i32.const 5000) (i32.const 0) (i32.const 80) (i32.const 4) (i32.const 12)))
    (i32.const 0)))"#;

/// The admin listener (loopback, no token) and `hold` (`POOLED`, a
/// domain per request: its two handles are in its table), `boom` (traps),
/// `wait` (pooled, `POOLED`) and `timer`
/// (`TIMER`, its unload blocked after 50 ms and forced after 300).
async fn server() -> TestServer {
    let toml = "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
        [[plugin]]\nname = \"hold\"\nroute = \"/hold\"\nmodule = \"wait.wat\"\ninterface = \"custody\"\n\
        request_timeout = \"20s\"\n\n\
        [[plugin]]\nname = \"boom\"\nroute = \"/boom\"\nmodule = \"boom.wat\"\n\n\
        [[plugin]]\nname = \"wait\"\nroute = \"/wait\"\nmodule = \"wait.wat\"\ninterface = \"custody\"\n\
        instances = \"pooled\"\npool = 2\nrequest_timeout = \"20s\"\n\n\
        [[plugin]]\nname = \"timer\"\nroute = \"/timer\"\nmodule = \"timer.wat\"\ninterface = \"custody\"\n\
        policy = { unload_grace_ms = 50, unload_timeout_ms = 300 }\n";
    let boom = guest(b"", "unreachable");
    let files = [
        ("boom.wat", boom.as_str()),
        ("wait.wat", POOLED),
        ("timer.wat", TIMER),
    ];
    TestServer::start(toml, &files).await
}

/// `/metrics`, read strictly.
async fn metrics(server: &TestServer, client: &HttpClient) -> Exposition {
    let answer = get(client, &server.admin_url("/metrics")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    openmetrics::parse(&answer.body)
}

/// Scrapes until `check` holds (10 s at most): that scrape.
async fn metrics_until(
    server: &TestServer,
    client: &HttpClient,
    what: &str,
    check: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = metrics(server, client).await;
        if check(&scraped) {
            return scraped;
        }
        let shown: Vec<_> = (scraped.samples.iter())
            .filter(|s| !s.name.contains("request"))
            .collect();
        assert!(Instant::now() < until, "never {what}: {shown:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A POST to `path` whose 10-byte body is not sent yet: the connection,
/// to send it on.
async fn request_without_its_body(server: &TestServer, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The sum of every sample of `name`.
fn sum(scraped: &Exposition, name: &str) -> f64 {
    (scraped.samples.iter())
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Handles still open by the ledger: opened less every way one goes.
fn ledger_open(m: &Exposition) -> f64 {
    let value = |labels: &[(&str, &str)], name: &str| m.value(name, labels);
    value(&[], "custody_serve_handles_opened_total")
        - value(&[("by", "guest")], "custody_serve_handles_closed_total")
        - value(&[("by", "host")], "custody_serve_handles_closed_total")
        - value(&[("at", "recycle")], "custody_serve_handles_released_total")
        - value(&[("at", "unload")], "custody_serve_handles_released_total")
}

#[test]
fn every_scraped_family_is_there_with_its_type() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        let scraped = metrics(&server, &client).await;
        for (family, kind) in [
            ("custody_serve_domains", "gauge"),
            ("custody_serve_handles_open", "gauge"),
            ("custody_serve_pool_domains", "gauge"),
            ("custody_serve_handles_opened", "counter"),
            ("custody_serve_handles_closed", "counter"),
            ("custody_serve_handles_released", "counter"),
            ("custody_serve_handle_release_failures", "counter"),
            ("custody_serve_domain_recycles", "counter"),
            ("custody_serve_calls_aborted", "counter"),
            ("custody_serve_unloads_blocked", "counter"),
            ("custody_serve_unloads_forced", "counter"),
            ("custody_serve_domains_leaked", "counter"),
            ("custody_serve_module_cache_hits", "counter"),
            ("custody_serve_module_cache_misses", "counter"),
        ] {
            assert_eq!(scraped.types.get(family).map(String::as_str), Some(kind));
        }
        // Every state and pool series exists before anything happens; the
        // plugins' trial domains are gone.
        assert_eq!(
            scraped.value("custody_serve_domains", &[("state", "running")]),
            0.0
        );
        let names: Vec<&str> = scraped.samples.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"custody_serve_pool_domains"), "{names:?}");
        let state_series = (scraped.samples.iter())
            .filter(|s| s.name == "custody_serve_domains")
            .count();
        assert_eq!(state_series, 2);
        // Four plugins, three modules: `hold` and `wait` share theirs,
        // compiled once and then found in the host's module cache.
        assert_eq!(
            scraped.value("custody_serve_module_cache_misses_total", &[]),
            3.0
        );
        assert_eq!(
            scraped.value("custody_serve_module_cache_hits_total", &[]),
            1.0
        );
        assert_eq!(ledger_open(&scraped), 0.0, "the trial domains balance");
    });
}

#[test]
fn a_blocked_request_s_domain_runs_with_its_handles_then_the_ledger_balances() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        let before = metrics(&server, &client).await;
        let mut stream = request_without_its_body(&server, "/hold").await;
        let during = metrics_until(&server, &client, "running with handles", |m| {
            m.value("custody_serve_domains", &[("state", "running")]) >= 1.0
                && sum(m, "custody_serve_handles_open") >= 1.0
        })
        .await;
        // Its request's two: each handle open is one the ledger has not
        // seen go.
        assert_eq!(
            sum(&during, "custody_serve_handles_open"),
            ledger_open(&during)
        );
        let opened = |m: &Exposition| m.value("custody_serve_handles_opened_total", &[]);
        assert!(opened(&during) > opened(&before));
        stream.write_all(b"0123456789").await.unwrap();
        // The domain leaves the live list, then its final ledger joins the
        // host's sum: a scrape between the two may see its handles open.
        let after = metrics_until(&server, &client, "its domain gone, its ledger kept", |m| {
            m.value("custody_serve_domains", &[("state", "running")]) == 0.0
                && ledger_open(m) == 0.0
        })
        .await;
        assert_eq!(sum(&after, "custody_serve_handles_open"), 0.0);
        let types = (after.samples.iter()).filter(|s| s.name == "custody_serve_handles_open");
        assert!(types.count() >= 1, "a type seen keeps its series at 0");
        assert_eq!(ledger_open(&after), 0.0, "every handle opened went");
        assert!(opened(&after) >= opened(&during));

        // A trap is an aborted call.
        let aborted = |m: &Exposition| m.value("custody_serve_calls_aborted_total", &[]);
        let boom = get(&client, &server.url("/boom")).await;
        assert_eq!(boom.status, StatusCode::INTERNAL_SERVER_ERROR);
        let trapped = metrics(&server, &client).await;
        assert_eq!(aborted(&trapped), aborted(&after) + 1.0);
    });
}

#[test]
fn a_timer_left_armed_blocks_the_unload_which_is_then_forced() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        let before = metrics(&server, &client).await;
        let answer = get(&client, &server.url("/timer")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let blocked = |m: &Exposition| m.value("custody_serve_unloads_blocked_total", &[]);
        let forced = |m: &Exposition| m.value("custody_serve_unloads_forced_total", &[]);
        let released =
            |m: &Exposition| m.value("custody_serve_handles_released_total", &[("at", "unload")]);
        // The forced unload is counted as it is forced, and the timer's
        // release a moment later, as the unload's teardown drains the
        // table: a scrape between the two sees only the first.
        let after = metrics_until(&server, &client, "forced and released", |m| {
            forced(m) > forced(&before) && released(m) > released(&before)
        })
        .await;
        assert_eq!(blocked(&after), blocked(&before) + 1.0);
        assert_eq!(forced(&after), forced(&before) + 1.0);
        // The two handles of the request, which the guest never closed,
        // were closed by the server as the call ended; the timer was
        // released by the unload.
        let closed =
            |m: &Exposition| m.value("custody_serve_handles_closed_total", &[("by", "host")]);
        assert_eq!(closed(&after), closed(&before) + 2.0);
        assert_eq!(released(&after), released(&before) + 1.0);
        assert!(
            after.value("custody_serve_handles_open", &[("type", "Timer")]) == 0.0,
            "{after:?}"
        );
        assert_eq!(ledger_open(&after), 0.0);
    });
}

#[test]
fn a_pooled_plugin_s_domains_count_idle_and_in_use_and_a_reload_unloads_them() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        let pool = |m: &Exposition, state: &str| {
            m.value(
                "custody_serve_pool_domains",
                &[("plugin", "wait"), ("state", state)],
            )
        };
        let before = metrics(&server, &client).await;
        assert_eq!((pool(&before, "idle"), pool(&before, "in_use")), (0.0, 0.0));
        assert_eq!(get(&client, &server.url("/wait")).await.body, "MARK");
        let served = metrics(&server, &client).await;
        assert_eq!((pool(&served, "idle"), pool(&served, "in_use")), (1.0, 0.0));
        // A request that waits for its body holds the idle domain.
        let mut stream = request_without_its_body(&server, "/wait").await;
        let lent = metrics_until(&server, &client, "lent", |m| pool(m, "in_use") == 1.0).await;
        assert_eq!(pool(&lent, "idle"), 0.0);
        stream.write_all(b"0123456789").await.unwrap();
        let back = metrics_until(&server, &client, "given back", |m| {
            pool(m, "in_use") == 0.0 && pool(m, "idle") == 1.0
        })
        .await;
        assert_eq!(
            back.value("custody_serve_domains", &[("state", "running")]),
            1.0,
            "the idle domain lives on"
        );

        // Compiling the same bytes again is a hit of the module cache.
        let hits = |m: &Exposition| m.value("custody_serve_module_cache_hits_total", &[]);
        let misses = |m: &Exposition| m.value("custody_serve_module_cache_misses_total", &[]);
        server.state.reload("wait").await.unwrap();
        let unchanged = metrics(&server, &client).await;
        assert_eq!(hits(&unchanged), hits(&back) + 1.0);
        assert_eq!(misses(&unchanged), misses(&back));
        assert_eq!(
            pool(&unchanged, "idle"),
            1.0,
            "an unchanged reload drains none"
        );

        // A new version: the old one's idle domain is unloaded.
        let changed = POOLED.replace("MARK", "NEXT");
        std::fs::write(server.dir.join("wait.wat"), changed).unwrap();
        server.state.reload("wait").await.unwrap();
        let swapped = metrics_until(&server, &client, "the old pool drained", |m| {
            pool(m, "idle") == 0.0
                && m.value("custody_serve_domains", &[("state", "running")]) == 0.0
        })
        .await;
        assert_eq!(misses(&swapped), misses(&back) + 1.0);
        assert_eq!(pool(&swapped, "in_use"), 0.0);
        let answer = send(
            &client,
            Method::GET,
            &server.url("/wait"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.body, "NEXT");
        let new = metrics(&server, &client).await;
        assert_eq!((pool(&new, "idle"), pool(&new, "in_use")), (1.0, 0.0));
        assert_eq!(ledger_open(&new), 0.0);
    });
}
