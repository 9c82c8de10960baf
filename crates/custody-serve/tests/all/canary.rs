//! Canaries: with `canary = 25`, a reload's new version answers exactly
//! 25 of every 100 new requests (the split is a counter), named by
//! `custody-plugin-version` and counted under its version (the admin
//! view, the metrics), faults included; promote sends everything to it,
//! rollback drains it (cooperative, then stopped past `drain_timeout`)
//! and leaves nothing behind; promote and rollback without a canary are
//! 409; reloads, promotes and rollbacks under a load without pause lose
//! no request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use custody_serve::content_id;
use custody_testkit::FdBaseline;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::admin_api::{READ_STDIN, TOKEN, admin, answer_of, blocked_request};
use crate::openmetrics;
use crate::reload::{answering, eventually, version_of};
use crate::support::*;

/// A server with the admin API, `p` (`canary = 25`, answering `p_wat`'s
/// version) and `flaky` (`canary = 50`, answering `ok`), a drain stopping
/// what is left after 1 s.
async fn server(p_wat: &str) -> TestServer {
    let toml = "drain_timeout = \"1s\"\n\n\
        [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
        [[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wat\"\ncanary = 25\nrequest_timeout = \"20s\"\n\n\
        [[plugin]]\nname = \"flaky\"\nroute = \"/flaky\"\nmodule = \"flaky.wat\"\ncanary = 50\n";
    let token = format!("{TOKEN}\n");
    let ok = answering("ok");
    let files = [
        ("p.wat", p_wat),
        ("flaky.wat", ok.as_str()),
        ("admin.token", token.as_str()),
    ];
    TestServer::start(toml, &files).await
}

/// A WAGI guest that reads its stdin once (blocking until the body comes)
/// and then answers `text`.
fn reading_then_answering(text: &str) -> String {
    let output = format!("content-type: text/plain\n\n{text}\n");
    let then = format!(
        "{READ_STDIN} (call $write_all (i32.const 8192) (i32.const {}))",
        output.len()
    );
    let data = format!(
        "(data (i32.const 8192) \"{}\")",
        output.replace('\n', "\\n")
    );
    guest_with(&[("_start", b"", &then)], &data)
}

/// Rewrites `p`'s module and reloads it through the admin API: the answer.
async fn reload_p(server: &TestServer, client: &HttpClient, wat: &str) -> Value {
    std::fs::write(server.dir.join("p.wat"), wat).unwrap();
    let path = "/admin/plugins/p/reload";
    let (status, reloaded, _) = admin(server, client, Method::POST, path).await;
    assert_eq!(status, StatusCode::OK, "{reloaded}");
    reloaded
}

/// `n` sequential GETs of `/p`: how many each version answered, each
/// answer checked against its version's body (`bodies`, by id).
async fn tally(
    server: &TestServer,
    client: &HttpClient,
    n: usize,
    bodies: &HashMap<String, &str>,
) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        let answer = get(client, &server.url("/p")).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {i}: {}",
            answer.body
        );
        let version = version_of(&answer);
        assert_eq!(
            Some(&answer.body.as_str()),
            bodies.get(&version),
            "request {i}: version {version}"
        );
        *seen.entry(version).or_insert(0) += 1;
    }
    seen
}

/// `/admin/plugins`' entry for `name`.
async fn plugin_view(server: &TestServer, client: &HttpClient, name: &str) -> Value {
    let (status, plugins, _) = admin(server, client, Method::GET, "/admin/plugins").await;
    assert_eq!(status, StatusCode::OK, "{plugins}");
    (plugins["plugins"].as_array().unwrap().iter())
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {plugins}"))
        .clone()
}

/// Each listed version's (id, role, served).
fn versions(view: &Value) -> Vec<(String, String, u64)> {
    (view["versions"].as_array().unwrap().iter())
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_string(),
                v["role"].as_str().unwrap().to_string(),
                v["served"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn metrics(server: &TestServer, client: &HttpClient) -> openmetrics::Exposition {
    let (status, _, answer) = admin(server, client, Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{}", answer.body);
    openmetrics::parse(&answer.body)
}

#[test]
fn a_canary_answers_its_share_is_replaced_by_the_next_reload_and_is_promoted() {
    serial_runtime(async {
        let texts = ["version A", "version B", "version C"];
        let wats: Vec<String> = texts.iter().map(|t| answering(t)).collect();
        let ids: Vec<String> = wats.iter().map(|w| content_id(&[w.as_bytes()])).collect();
        let bodies: HashMap<String, String> = (ids.iter().zip(texts))
            .map(|(id, text)| (id.clone(), format!("{text}\n")))
            .collect();
        let bodies: HashMap<String, &str> = bodies
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str()))
            .collect();
        let server = server(&wats[0]).await;
        let client = client();
        let before = tally(&server, &client, 3, &bodies).await;
        assert_eq!(before, HashMap::from([(ids[0].clone(), 3)]));

        let reloaded = reload_p(&server, &client, &wats[1]).await;
        assert_eq!(
            reloaded,
            json!({"plugin": "p", "outcome": "canary", "version": ids[1], "stable": ids[0],
                   "percent": 25, "replaced": null})
        );
        // The files hold the canary: a reload changes nothing.
        let again = reload_p(&server, &client, &wats[1]).await;
        assert_eq!(
            again,
            json!({"plugin": "p", "outcome": "unchanged", "version": ids[1]})
        );
        let seen = tally(&server, &client, 100, &bodies).await;
        assert_eq!(
            seen,
            HashMap::from([(ids[0].clone(), 75), (ids[1].clone(), 25)])
        );
        let view = plugin_view(&server, &client, "p").await;
        assert_eq!(view["version"], ids[0].as_str(), "{view}");
        assert_eq!(
            view["canary"],
            json!({"version": ids[1], "percent": 25}),
            "{view}"
        );
        assert_eq!(
            versions(&view),
            [
                (ids[0].clone(), "stable".into(), 78),
                (ids[1].clone(), "canary".into(), 25)
            ]
        );
        let scraped = metrics(&server, &client).await;
        for (id, count) in [(&ids[0], 78.0), (&ids[1], 25.0)] {
            let labels = [("plugin", "p"), ("version", id.as_str()), ("status", "200")];
            assert_eq!(
                scraped.value("custody_serve_requests_total", &labels),
                count
            );
        }

        // A further reload replaces the canary (its counter from 0: C, A,
        // A, A, C, ...); the replaced one drains.
        let replaced = reload_p(&server, &client, &wats[2]).await;
        assert_eq!(
            (&replaced["version"], &replaced["replaced"]),
            (&json!(ids[2]), &json!(ids[1])),
            "{replaced}"
        );
        let mut order = Vec::new();
        for _ in 0..8 {
            order.push(version_of(&get(&client, &server.url("/p")).await));
        }
        let (a, c) = (ids[0].clone(), ids[2].clone());
        assert_eq!(
            order,
            [&c, &a, &a, &a, &c, &a, &a, &a].map(String::clone).to_vec()
        );

        let (status, promoted, _) =
            admin(&server, &client, Method::POST, "/admin/plugins/p/promote").await;
        assert_eq!(status, StatusCode::OK, "{promoted}");
        assert_eq!(
            promoted,
            json!({"plugin": "p", "outcome": "promoted", "version": ids[2], "left": ids[0]})
        );
        let after = tally(&server, &client, 20, &bodies).await;
        assert_eq!(after, HashMap::from([(ids[2].clone(), 20)]));
        let view = plugin_view(&server, &client, "p").await;
        assert_eq!(
            (&view["version"], &view["canary"]),
            (&json!(ids[2]), &Value::Null),
            "{view}"
        );
        assert_eq!(versions(&view)[0], (ids[2].clone(), "stable".into(), 22));
        assert!(
            logged("canary promoted")
                .iter()
                .any(|l| l.contains(&ids[2])),
            "the promote is logged"
        );
    });
}

#[test]
fn promote_and_rollback_without_a_canary_are_conflicts_and_an_unknown_plugin_is_not_found() {
    serial_runtime(async {
        let server = server(&answering("version A")).await;
        let client = client();
        let stable = server.state.plugins()[0].current().id.clone();
        for action in ["promote", "rollback"] {
            let path = format!("/admin/plugins/p/{action}");
            let (status, refused, _) = admin(&server, &client, Method::POST, &path).await;
            assert_eq!(status, StatusCode::CONFLICT, "{refused}");
            assert_eq!(
                (&refused["error"], &refused["id"]),
                (&json!("no-canary"), &json!("p")),
                "{refused}"
            );
            let message = refused["message"].as_str().unwrap();
            assert!(
                message.contains("runs no canary") && message.contains(&stable),
                "{message}"
            );
            let path = format!("/admin/plugins/nobody/{action}");
            let (status, unknown, _) = admin(&server, &client, Method::POST, &path).await;
            assert_eq!(
                (status, &unknown["error"]),
                (StatusCode::NOT_FOUND, &json!("no-such-plugin")),
                "{unknown}"
            );
            let path = format!("/admin/plugins/p/{action}");
            let (status, _, answer) = admin(&server, &client, Method::GET, &path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(answer.headers["allow"], "POST");
            // Each POST was logged with its caller by the admin door.
            assert!(
                !logged(&format!("path=\"/admin/plugins/p/{action}\"")).is_empty()
                    || !logged(&format!("path=/admin/plugins/p/{action}")).is_empty(),
                "the call is logged"
            );
        }
        assert_eq!(server.state.plugins()[0].current().id, stable);
    });
}

#[test]
fn a_canary_fault_carries_the_canary_version() {
    serial_runtime(async {
        let server = server(&answering("version A")).await;
        let client = client();
        let stable = server.state.plugins()[1].current().id.clone();
        let trap = guest(b"", "unreachable");
        let trap_id = content_id(&[trap.as_bytes()]);
        std::fs::write(server.dir.join("flaky.wat"), &trap).unwrap();
        let path = "/admin/plugins/flaky/reload";
        let (status, reloaded, _) = admin(&server, &client, Method::POST, path).await;
        assert_eq!(status, StatusCode::OK, "{reloaded}");
        assert_eq!(reloaded["outcome"], "canary");
        // 50%: the canary first, then the stable version, alternately.
        let mut fault_ids = Vec::new();
        for i in 0..4 {
            let answer = send(
                &client,
                Method::GET,
                &server.url("/flaky"),
                &[("accept", "application/json")],
                Bytes::new(),
            )
            .await;
            if i % 2 == 0 {
                assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
                assert_eq!(version_of(&answer), trap_id);
                let body: Value = serde_json::from_str(&answer.body).unwrap();
                assert_eq!(body["error"], "trap", "{body}");
                fault_ids.push(body["id"].clone());
            } else {
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                assert_eq!(version_of(&answer), stable);
            }
        }
        let (_, recent, _) = admin(&server, &client, Method::GET, "/admin/diagnostics").await;
        for id in &fault_ids {
            let fault = (recent["diagnostics"].as_array().unwrap().iter())
                .find(|d| d["id"] == *id)
                .unwrap_or_else(|| panic!("no diagnostic for {id}: {recent}"));
            assert_eq!(fault["version"], trap_id.as_str(), "{fault}");
        }
        let scraped = metrics(&server, &client).await;
        let labels = [
            ("plugin", "flaky"),
            ("version", trap_id.as_str()),
            ("status", "500"),
        ];
        assert_eq!(scraped.value("custody_serve_requests_total", &labels), 2.0);
        let view = plugin_view(&server, &client, "flaky").await;
        assert_eq!(
            versions(&view),
            [(stable, "stable".into(), 2), (trap_id, "canary".into(), 2)]
        );
    });
}

/// A POST to `/p` whose 10-byte body never comes: the connection, to
/// read its answer from.
async fn stuck_request(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /p HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\
                Content-Length: 10\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Whether `/admin/domains` lists a domain of `version`.
async fn domains_of(server: &TestServer, client: &HttpClient, version: &str) -> usize {
    let (_, domains, _) = admin(server, client, Method::GET, "/admin/domains").await;
    (domains["domains"].as_array().unwrap().iter())
        .filter(|d| d["version"] == version)
        .count()
}

#[test]
fn a_rollback_drains_the_canary_and_leaves_nothing_behind() {
    serial_runtime(async {
        let a = answering("version A");
        let b = reading_then_answering("version B");
        let (id_a, id_b) = (content_id(&[a.as_bytes()]), content_id(&[b.as_bytes()]));
        let server = server(&a).await;
        // Both versions compiled and run once, and a rollback's drain done,
        // before the baseline (its first request goes to the canary).
        {
            let client = client();
            std::fs::write(server.dir.join("p.wat"), &b).unwrap();
            server.state.reload("p").await.unwrap();
            let answer = send(&client, Method::POST, &server.url("/p"), &[], "0123456789").await;
            assert_eq!(
                (answer.body.as_str(), version_of(&answer)),
                ("version B\n", id_b.clone())
            );
            get(&client, &server.url("/flaky")).await;
            let ended = server.state.rollback("p").await.unwrap();
            ended.drain.await.unwrap();
        }
        let fds = loop {
            let last = custody_testkit::open_fds();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if custody_testkit::open_fds() == last {
                break FdBaseline::now();
            }
        };
        let client = client();
        let reloaded = reload_p(&server, &client, &b).await;
        assert_eq!(
            (&reloaded["outcome"], &reloaded["version"]),
            (&json!("canary"), &json!(id_b))
        );
        // The first request after the reload is the canary's: it blocks.
        let stream = stuck_request(&server).await;
        let blocked = blocked_request(&server, &client).await;
        assert_eq!(blocked["version"], id_b.as_str(), "{blocked}");
        assert_eq!(domains_of(&server, &client, &id_b).await, 1);

        let path = "/admin/plugins/p/rollback";
        let (status, rolled_back, _) = admin(&server, &client, Method::POST, path).await;
        assert_eq!(status, StatusCode::OK, "{rolled_back}");
        assert_eq!(
            rolled_back,
            json!({"plugin": "p", "outcome": "rolled-back", "version": id_a, "left": id_b})
        );
        // The stable version serves everything; the canary drains.
        for _ in 0..8 {
            let answer = get(&client, &server.url("/p")).await;
            assert_eq!(
                (answer.body.as_str(), version_of(&answer)),
                ("version A\n", id_a.clone())
            );
        }
        let view = plugin_view(&server, &client, "p").await;
        assert_eq!(view["canary"], Value::Null, "{view}");
        // Cooperative first: the canary's request runs on until
        // drain_timeout (1 s), then it is stopped; its answer still names
        // its version.
        let answer = answer_of(stream).await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("custody-plugin-version: {id_b}")),
            "{answer}"
        );
        // The forced drain is among the recent diagnostics, with the
        // canary's version (pushed once the stopped request has left).
        let mut forced = false;
        for _ in 0..250 {
            let (_, recent, _) = admin(&server, &client, Method::GET, "/admin/diagnostics").await;
            forced = (recent["diagnostics"].as_array().unwrap().iter()).any(|d| {
                d["kind"] == "drain-forced" && d["plugin"] == "p" && d["version"] == id_b.as_str()
            });
            if forced {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(forced, "a drain-forced diagnostic of {id_b}");
        // Nothing of the canary is left: no domain, no draining version,
        // no fd.
        let mut left = usize::MAX;
        for _ in 0..100 {
            left = domains_of(&server, &client, &id_b).await;
            let view = plugin_view(&server, &client, "p").await;
            if left == 0 && versions(&view).len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(left, 0, "the canary's domains are unloaded");
        let view = plugin_view(&server, &client, "p").await;
        assert_eq!(versions(&view), [(id_a.clone(), "stable".into(), 8)]);
        assert_eq!(server.state.host().domain_count(), 0);
        drop(client);
        eventually(Duration::from_secs(5), || FdBaseline::now() == fds).await;
        fds.assert_back("after a canary was rolled back with a request in flight");
    });
}

#[test]
fn reloads_promotes_and_rollbacks_under_load_lose_no_request() {
    serial_runtime(async {
        let (a, b) = (answering("version A"), answering("version B"));
        let ids = [content_id(&[a.as_bytes()]), content_id(&[b.as_bytes()])];
        let server = server(&a).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (stop, url) = (Arc::clone(&stop), server.url("/p"));
            let ids = ids.clone();
            clients.push(tokio::spawn(async move {
                let client = client();
                let mut seen = [0usize; 2];
                let mut wrong = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match crate::reload::which_version(&get(&client, &url).await, &ids) {
                        Ok(version) => seen[version] += 1,
                        Err(e) => wrong.push(e),
                    }
                }
                (seen, wrong)
            }));
        }
        let client = client();
        // The stable version alternates: each round loads the other one as
        // a canary, then promotes it (even rounds) or rolls it back.
        let mut stable = 0;
        let (mut promotes, mut rollbacks) = (0, 0);
        for round in 0..20 {
            let other = 1 - stable;
            let reloaded = reload_p(&server, &client, [&a, &b][other]).await;
            assert_eq!(reloaded["outcome"], "canary", "round {round}: {reloaded}");
            tokio::time::sleep(Duration::from_millis(15)).await;
            let action = if round % 2 == 0 {
                "promote"
            } else {
                "rollback"
            };
            let path = format!("/admin/plugins/p/{action}");
            let (status, ended, _) = admin(&server, &client, Method::POST, &path).await;
            assert_eq!(status, StatusCode::OK, "round {round}: {ended}");
            if round % 2 == 0 {
                stable = other;
                promotes += 1;
            } else {
                rollbacks += 1;
            }
            assert_eq!(
                server.state.plugins()[0].current().id,
                ids[stable],
                "round {round}"
            );
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut seen = [0usize; 2];
        let mut wrong = Vec::new();
        for client in clients {
            let (by_version, bad) = client.await.unwrap();
            seen = [seen[0] + by_version[0], seen[1] + by_version[1]];
            wrong.extend(bad);
        }
        assert!(wrong.is_empty(), "{} failed: {:?}", wrong.len(), &wrong[..]);
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "both versions answered: {seen:?}"
        );
        assert_eq!((promotes, rollbacks), (10, 10));
        // Every drain ends: only the stable version is left.
        let mut listed = Vec::new();
        for _ in 0..250 {
            listed = versions(&plugin_view(&server, &client, "p").await);
            if listed.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            eventually(Duration::from_secs(5), || server
                .state
                .host()
                .domain_count()
                == 0)
            .await
        );
    });
}
