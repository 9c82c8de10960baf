//! The admin listener (`[admin]`): its bearer token, its refusal to bind
//! beyond loopback without one, `/admin/plugins` and `/metrics` after
//! real requests and faults (the metrics read by a strict OpenMetrics
//! reader), mutating calls logged with the caller, and its stop with the
//! server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use custody_serve::{AdminConfig, AdminListener, METRICS_CONTENT_TYPE, ServerConfig};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::openmetrics;
use crate::support::*;

pub const TOKEN: &str = "s3cret-admin-token";

/// The admin listener on loopback port 0 with `token`'s file (if any), and
/// three plugins: `hello` answers, `boom` traps, `spin` runs to its
/// 300 ms deadline.
pub async fn server(token: Option<&str>) -> TestServer {
    let token_key = if token.is_some() {
        "token_file = \"admin.token\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{token_key}\n\
         [[plugin]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"hello.wat\"\nmax_concurrency = 4\n\n\
         [[plugin]]\nname = \"boom\"\nroute = \"/boom/...\"\nmodule = \"boom.wat\"\n\n\
         [[plugin]]\nname = \"spin\"\nroute = \"/spin\"\nmodule = \"spin.wat\"\nrequest_timeout = \"300ms\"\n"
    );
    let hello = guest(b"content-type: text/plain\n\nhello\n", "");
    let boom = guest(b"", "unreachable");
    let spin = guest(b"", SPIN);
    let token_file = format!("{}\n", token.unwrap_or(""));
    let mut files = vec![
        ("hello.wat", hello.as_str()),
        ("boom.wat", boom.as_str()),
        ("spin.wat", spin.as_str()),
    ];
    if token.is_some() {
        files.push(("admin.token", token_file.as_str()));
    }
    TestServer::start(&toml, &files).await
}

async fn get_with(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(client, Method::GET, url, headers, Bytes::new()).await
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `/admin/plugins` as JSON.
async fn plugins_json(server: &TestServer, client: &HttpClient) -> serde_json::Value {
    let answer = get_with(
        client,
        &server.admin_url("/admin/plugins"),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
}

/// `/metrics`, read strictly.
async fn metrics(server: &TestServer, client: &HttpClient) -> openmetrics::Exposition {
    let answer = get_with(
        client,
        &server.admin_url("/metrics"),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], METRICS_CONTENT_TYPE);
    openmetrics::parse(&answer.body)
}

#[test]
fn the_admin_api_wants_its_token_but_probes_do_not() {
    serial_runtime(async {
        let server = server(Some(TOKEN)).await;
        let client = client();
        for path in ["/admin/plugins", "/metrics", "/admin/nothing-here"] {
            let url = server.admin_url(path);
            let none = get(&client, &url).await;
            assert_eq!(
                none.status,
                StatusCode::UNAUTHORIZED,
                "{path}: {}",
                none.body
            );
            assert_eq!(
                none.headers["www-authenticate"],
                "Bearer realm=\"custody admin\""
            );
            for wrong in [
                "Bearer wrong",
                "Bearer s3cret-admin-toke",
                "Bearer s3cret-admin-token2",
                "Basic czNjcmV0",
                TOKEN,
                "Bearer",
            ] {
                let answer = get_with(&client, &url, &[("authorization", wrong)]).await;
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path} {wrong:?}");
            }
        }
        for auth in [bearer(), format!("bearer {TOKEN}")] {
            let plugins = get_with(
                &client,
                &server.admin_url("/admin/plugins"),
                &[("authorization", &auth)],
            )
            .await;
            assert_eq!(plugins.status, StatusCode::OK, "{auth}: {}", plugins.body);
        }
        let metrics = get_with(
            &client,
            &server.admin_url("/metrics"),
            &[("authorization", &bearer())],
        )
        .await;
        assert_eq!(metrics.status, StatusCode::OK);
        let unknown = get_with(
            &client,
            &server.admin_url("/admin/nothing-here"),
            &[("authorization", &bearer())],
        )
        .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        // The probes answer without the token, as the plugins' pair does.
        let health = get(&client, &server.admin_url("/healthz")).await;
        assert_eq!(
            (health.status, health.body.as_str()),
            (StatusCode::OK, "ok\n")
        );
        let ready = get(&client, &server.admin_url("/readyz")).await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (StatusCode::OK, "ready\n")
        );
        // Two listeners, never sharing: no admin endpoint on the
        // plugins' one, no plugin on the admin one.
        let on_plugins = get_with(
            &client,
            &server.url("/admin/plugins"),
            &[("authorization", &bearer())],
        )
        .await;
        assert_eq!(on_plugins.status, StatusCode::NOT_FOUND);
        assert_ne!(server.admin, Some(server.addr));
        let on_admin = get_with(
            &client,
            &server.admin_url("/hello"),
            &[("authorization", &bearer())],
        )
        .await;
        assert_eq!(on_admin.status, StatusCode::NOT_FOUND);
        assert_eq!(server.state.faults().get(custody_serve::FaultKind::Trap), 0);
    });
}

#[test]
fn without_a_token_the_admin_listener_stays_on_loopback() {
    serial_runtime(async {
        let file = Path::new("custody.toml");
        let base = Path::new("/tmp");
        for listen in ["0.0.0.0:9090", "[::]:9090", "192.0.2.1:9090"] {
            let toml = format!("[admin]\nlisten = \"{listen}\"\n");
            let error = ServerConfig::from_toml(&toml, file, base).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains("admin.listen")
                    && message.contains("admin.token_file")
                    && message.contains("loopback"),
                "{message}"
            );
        }
        // Loopback without a token, and beyond it with one, are accepted.
        for toml in [
            "[admin]\nlisten = \"127.0.0.1:9090\"\n",
            "[admin]\nlisten = \"[::1]:9090\"\n",
            "[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"t\"\n",
        ] {
            let config = ServerConfig::from_toml(toml, file, base).unwrap();
            assert!(config.admin.is_some());
        }
        let unknown = ServerConfig::from_toml(
            "[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"x\"\n",
            file,
            base,
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("token"), "{unknown}");
        // The library's bind refuses too, for a configuration made in
        // code: nothing is bound.
        let open = AdminConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            token_file: None,
        };
        let error = AdminListener::bind(&open, file).await.unwrap_err();
        assert!(error.to_string().contains("admin.listen"), "{error}");
        // A token file that is missing, empty or not a token.
        let dir = write_files(&[("empty", "\n  \n"), ("spaced", "two words\n")]);
        for (name, expected) in [
            ("missing", "cannot read it"),
            ("empty", "no token"),
            ("spaced", "printable ASCII"),
        ] {
            let config = AdminConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                token_file: Some(dir.join(name)),
            };
            let error = AdminListener::bind(&config, file).await.unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains("admin.token_file") && message.contains(expected),
                "{name}: {message}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    });
}

#[test]
fn admin_plugins_lists_each_plugin_with_its_requests_and_faults() {
    serial_runtime(async {
        let server = server(None).await;
        let client = client();
        let mut version = String::new();
        for _ in 0..3 {
            let hello = get(&client, &server.url("/hello")).await;
            assert_eq!(hello.status, StatusCode::OK);
            version = hello.headers["custody-plugin-version"]
                .to_str()
                .unwrap()
                .to_string();
        }
        for _ in 0..2 {
            let boom = get(&client, &server.url("/boom/x")).await;
            assert_eq!(boom.status, StatusCode::INTERNAL_SERVER_ERROR);
        }
        // A request in flight: `spin` runs until its deadline.
        let spinning = {
            let (client, url) = (client.clone(), server.url("/spin"));
            tokio::spawn(async move { get(&client, &url).await })
        };
        let until = Instant::now() + Duration::from_secs(5);
        let during = loop {
            let json = plugins_json(&server, &client).await;
            if json["plugins"][2]["in_flight"] == 1 || Instant::now() > until {
                break json;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(during["plugins"][2]["in_flight"], 1, "{during:#}");
        assert_eq!(spinning.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);

        let json = plugins_json(&server, &client).await;
        assert_eq!(json["loaded"], true);
        let plugins = json["plugins"].as_array().unwrap();
        let names: Vec<&str> = plugins
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["hello", "boom", "spin"]);
        let hello = &plugins[0];
        assert_eq!(
            hello["routes"],
            serde_json::json!([{ "route": "/hello", "export": "_start" }])
        );
        assert_eq!(hello["interface"], "wagi");
        assert_eq!(hello["instances"], "per-request");
        assert_eq!(hello["version"], version.as_str());
        assert_eq!(hello["max_concurrency"], 4);
        assert_eq!(plugins[1]["max_concurrency"], 64);
        assert_eq!(plugins[1]["routes"][0]["route"], "/boom/...");
        // Each plugin's own counters, every kind listed; the server's
        // counters are their sum.
        for (plugin, kind, count) in [
            (0, "trap", 0),
            (1, "trap", 2),
            (1, "deadline", 0),
            (2, "deadline", 1),
            (2, "trap", 0),
        ] {
            assert_eq!(
                plugins[plugin]["faults"][kind], count,
                "{plugin} {kind}: {json:#}"
            );
        }
        for plugin in plugins {
            assert_eq!(plugin["in_flight"], 0, "{json:#}");
            assert_eq!(plugin["faults"].as_object().unwrap().len(), 9, "{json:#}");
        }
        assert_eq!(server.state.faults().get(custody_serve::FaultKind::Trap), 2);
        assert_eq!(
            server
                .state
                .faults()
                .get(custody_serve::FaultKind::Deadline),
            1
        );
    });
}

#[test]
fn metrics_count_requests_latency_faults_in_flight_and_reloads() {
    serial_runtime(async {
        let server = server(Some(TOKEN)).await;
        let client = client();
        let before = metrics(&server, &client).await;
        for kind in [
            "trap",
            "deadline",
            "overload",
            "body",
            "bad-response",
            "memory",
            "exit",
            "internal",
        ] {
            assert_eq!(
                before.value("custody_serve_faults_total", &[("kind", kind)]),
                0.0,
                "{kind}"
            );
        }
        assert_eq!(before.types["custody_serve_faults"], "counter");
        assert_eq!(
            before.value("custody_serve_requests_in_flight", &[("plugin", "hello")]),
            0.0
        );

        let mut version = String::new();
        for _ in 0..3 {
            let hello = get(&client, &server.url("/hello")).await;
            version = hello.headers["custody-plugin-version"]
                .to_str()
                .unwrap()
                .to_string();
        }
        for _ in 0..2 {
            get(&client, &server.url("/boom")).await;
        }
        let spinning = {
            let (client, url) = (client.clone(), server.url("/spin"));
            tokio::spawn(async move { get(&client, &url).await })
        };
        let until = Instant::now() + Duration::from_secs(5);
        let during = loop {
            let during = metrics(&server, &client).await;
            let spin = during.value("custody_serve_requests_in_flight", &[("plugin", "spin")]);
            if spin == 1.0 || Instant::now() > until {
                break during;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(
            during.value("custody_serve_requests_in_flight", &[("plugin", "spin")]),
            1.0
        );
        assert_eq!(spinning.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
        let reloaded = server.state.reload("hello").await.unwrap();
        assert_eq!(reloaded.version(), version);

        let after = metrics(&server, &client).await;
        assert_eq!(after.types["custody_serve_requests"], "counter");
        assert_eq!(
            after.types["custody_serve_request_duration_seconds"],
            "histogram"
        );
        assert_eq!(after.types["custody_serve_requests_in_flight"], "gauge");
        assert_eq!(after.types["custody_serve_plugin_reloads"], "counter");
        let hello = [("plugin", "hello"), ("version", version.as_str())];
        let ok = [hello[0], hello[1], ("status", "200")];
        assert_eq!(after.value("custody_serve_requests_total", &ok), 3.0);
        assert_eq!(
            after.value(
                "custody_serve_requests_total",
                &[("plugin", "boom"), ("status", "500")]
            ),
            2.0
        );
        assert_eq!(
            after.value(
                "custody_serve_requests_total",
                &[("plugin", "spin"), ("status", "504")]
            ),
            1.0
        );
        assert_eq!(
            after.value("custody_serve_request_duration_seconds_count", &hello),
            3.0
        );
        let spin_seconds = after.value(
            "custody_serve_request_duration_seconds_sum",
            &[("plugin", "spin")],
        );
        assert!((0.3..10.0).contains(&spin_seconds), "{spin_seconds}");
        // The spinning request waited 300 ms at least: in no bucket under.
        assert_eq!(
            after.value(
                "custody_serve_request_duration_seconds_bucket",
                &[("plugin", "spin"), ("le", "0.25")]
            ),
            0.0
        );
        assert_eq!(
            after.value("custody_serve_faults_total", &[("kind", "trap")]),
            2.0
        );
        assert_eq!(
            after.value("custody_serve_faults_total", &[("kind", "deadline")]),
            1.0
        );
        assert_eq!(
            after.value("custody_serve_faults_total", &[("kind", "overload")]),
            0.0
        );
        assert_eq!(
            after.value("custody_serve_requests_in_flight", &[("plugin", "spin")]),
            0.0
        );
        assert_eq!(
            after.value(
                "custody_serve_plugin_reloads_total",
                &[("plugin", "hello"), ("outcome", "unchanged")]
            ),
            1.0
        );
    });
}

#[test]
fn a_mutating_call_is_logged_with_its_caller() {
    serial_runtime(async {
        let server = server(Some(TOKEN)).await;
        let admin = server.admin.unwrap();
        let exchange = |request: String| async move {
            let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
            let caller = stream.local_addr().unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            tokio::time::timeout(
                Duration::from_secs(10),
                stream.read_to_string(&mut response),
            )
            .await
            .unwrap()
            .unwrap();
            (caller, response)
        };
        let call = |path: &str, auth: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
        };
        let authorized = format!("Authorization: {}\r\n", bearer());
        let (caller, response) = exchange(call("/admin/plugins/nothing/reload", &authorized)).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let lines = logged(&format!("remote={caller}"));
        assert!(
            lines.iter().any(|l| l.contains("admin call")
                && l.contains("method=POST")
                && l.contains("/admin/plugins/nothing/reload")),
            "{lines:#?}"
        );
        // A known path answers 405 to anything but a read, logged too.
        let (caller, response) = exchange(call("/metrics", &authorized)).await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        assert!(
            response.to_ascii_lowercase().contains("allow: get, head"),
            "{response}"
        );
        assert_eq!(logged(&format!("remote={caller}")).len(), 1);
        // An unauthorized call is refused before it is a call: not logged.
        let (caller, response) = exchange(call("/admin/plugins/hello/reload", "")).await;
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
        assert!(logged(&format!("remote={caller}")).is_empty());
    });
}

#[test]
fn the_admin_listener_stops_with_the_server() {
    serial_runtime(async {
        let mut server = server(Some(TOKEN)).await;
        let client = client();
        let admin = server.admin.unwrap();
        assert_eq!(
            get(&client, &server.admin_url("/healthz")).await.status,
            StatusCode::OK
        );
        // Shutting down: /readyz turns 503 with /ready, the admin API
        // still answers (an operator watches the drain through it).
        server.state.set_ready(false);
        let ready = get(&client, &server.admin_url("/readyz")).await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        let plugins_ready = get(&client, &server.url(custody_serve::READY_PATH)).await;
        assert_eq!(plugins_ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(plugins_json(&server, &client).await["loaded"], true);
        drop(client);
        let stopped = server.stop().await;
        assert_eq!((stopped.forced, stopped.domains_left), (false, 0));
        // Both listeners are closed once `serve` returns.
        for addr in [admin, server.addr] {
            let refused = tokio::net::TcpStream::connect(addr).await;
            assert!(refused.is_err(), "{addr} still accepts");
        }
        assert!(!logged("the admin listener stopped").is_empty());
    });
}
