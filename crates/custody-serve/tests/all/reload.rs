//! Hot reload: 100 reloads under a steady load lose no request and leave
//! nothing behind; a broken version is refused while the old one serves;
//! a drain is bounded by `drain_timeout`; `watch = true` follows a
//! rewritten module file, and a manifest plugin's manifest and modules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use custody_serve::{ReloadError, Reloaded, VERSION_HEADER, content_id};
use custody_testkit::FdBaseline;
use hyper::StatusCode;

use crate::support::*;

/// How much the RSS may grow over 100 reloads under load. Measured (debug
/// build, 4 clients without pause): 2.7 to 3.2 MiB after 100 reloads,
/// 4.3 MiB after 400: the allocator's and the runtime's, not growing with
/// the reloads. Keeping each response whole in the test instead cost
/// ~10 KiB a request, which is why the clients only count them.
const RSS_TOLERANCE: u64 = 16 << 20;

/// A WAGI guest answering `text`.
pub fn answering(text: &str) -> String {
    guest(
        format!("content-type: text/plain\n\n{text}\n").as_bytes(),
        "",
    )
}

fn plugin_toml(extra: &str) -> String {
    format!("[[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wat\"\n{extra}\n")
}

/// The version header of an answer.
pub fn version_of(answer: &Answer) -> String {
    answer.headers[VERSION_HEADER].to_str().unwrap().to_string()
}

/// Polls `check` every 10 ms for up to `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// GETs `url` every 20 ms until version `id` answers (a watched reload
/// happened), for 10 s at most; the last answer and how long it took.
async fn until_version(client: &HttpClient, url: &str, id: &str) -> (Answer, Duration) {
    let begun = Instant::now();
    let mut answer = get(client, url).await;
    while version_of(&answer) != id && begun.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer = get(client, url).await;
    }
    (answer, begun.elapsed())
}

/// Rewrites the module file and reloads; the swapped-in version.
async fn reload_to(server: &TestServer, wat: &str) -> Reloaded {
    std::fs::write(server.dir.join("p.wat"), wat).unwrap();
    server.state.reload("p").await.unwrap()
}

/// Which of the two versions (`ids`) answered, by its header, its body
/// matching (`version A`, `version B`); else what is wrong.
pub fn which_version(answer: &Answer, ids: &[String; 2]) -> Result<usize, String> {
    if answer.status != StatusCode::OK {
        return Err(format!("{}: {}", answer.status, answer.body));
    }
    let version = version_of(answer);
    let at = (ids.iter().position(|id| *id == version))
        .ok_or_else(|| format!("version {version}: never loaded"))?;
    let expected = ["version A\n", "version B\n"][at];
    if answer.body != expected {
        return Err(format!("version {version} answered {:?}", answer.body));
    }
    Ok(at)
}

#[test]
fn a_hundred_reloads_under_load_lose_no_request_and_leave_nothing_behind() {
    serial_runtime(async {
        let (a, b) = (answering("version A"), answering("version B"));
        let (id_a, id_b) = (content_id(&[a.as_bytes()]), content_id(&[b.as_bytes()]));
        let server = TestServer::start(&plugin_toml(""), &[("p.wat", &a)]).await;
        // Both versions compiled once (their memory images are the
        // module cache's), and the runtime's threads started, before the
        // baseline.
        for wat in [&b, &a] {
            if let Reloaded::Swapped { drain, .. } = reload_to(&server, wat).await {
                drain.await.unwrap();
            }
        }
        let cached = server.state.host().cache_stats();
        let fds = FdBaseline::now();
        let rss = proc_status_bytes("VmRSS");
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (stop, url) = (Arc::clone(&stop), server.url("/p"));
            let ids = [id_a.clone(), id_b.clone()];
            // Each answer is checked as it comes and only counted: kept
            // whole, thousands of them would be most of the RSS measured.
            clients.push(tokio::spawn(async move {
                let client = client();
                let mut seen = [0usize; 2];
                let mut wrong = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match which_version(&get(&client, &url).await, &ids) {
                        Ok(version) => seen[version] += 1,
                        Err(e) => wrong.push(e),
                    }
                }
                (seen, wrong)
            }));
        }
        let mut drains = Vec::new();
        for i in 0..100 {
            let (wat, id) = if i % 2 == 0 { (&b, &id_b) } else { (&a, &id_a) };
            match reload_to(&server, wat).await {
                Reloaded::Swapped { current, drain, .. } => {
                    assert_eq!(&current, id);
                    drains.push(drain);
                }
                other => panic!("reload {i}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut seen = [0usize; 2];
        let mut wrong = Vec::new();
        for client in clients {
            let (by_version, bad) = client.await.unwrap();
            seen = [seen[0] + by_version[0], seen[1] + by_version[1]];
            wrong.extend(bad);
        }
        for drain in drains {
            let drained = drain.await.unwrap();
            assert_eq!((drained.forced, drained.left), (0, 0), "{drained:?}");
        }
        assert!(wrong.is_empty(), "{} bad answers: {wrong:#?}", wrong.len());
        assert!(seen[0] + seen[1] >= 100, "only {seen:?} requests");
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "both versions answered: {seen:?}"
        );
        // Recompiling the same bytes hit the module cache: no module was
        // added.
        let after = server.state.host().cache_stats();
        assert_eq!(
            (after.modules, after.distinct_modules, after.code_bytes),
            (cached.modules, cached.distinct_modules, cached.code_bytes)
        );
        assert!(
            eventually(Duration::from_secs(5), || server
                .state
                .host()
                .domain_count()
                == 0)
            .await,
            "domains left: {}",
            server.state.host().domain_count()
        );
        // The clients' connections close as their tasks end; the server's
        // side follows.
        eventually(Duration::from_secs(5), || FdBaseline::now() == fds).await;
        fds.assert_back("after 100 reloads under load");
        // Every old version's memory went with it: what is left over is
        // the allocator's (freed memory it keeps), within RSS_TOLERANCE.
        let grown = proc_status_bytes("VmRSS").saturating_sub(rss);
        assert!(
            grown <= RSS_TOLERANCE,
            "RSS grew by {} KiB over 100 reloads under load (tolerance {} MiB)",
            grown / 1024,
            RSS_TOLERANCE >> 20
        );
    });
}

#[test]
fn the_same_bytes_reload_as_unchanged_from_the_module_cache() {
    serial_runtime(async {
        let a = answering("version A");
        let server = TestServer::start(&plugin_toml(""), &[("p.wat", &a)]).await;
        let before = server.state.host().cache_stats();
        let serving = server.state.plugins()[0].current();
        match server.state.reload("p").await.unwrap() {
            Reloaded::Unchanged { version, .. } => assert_eq!(version, serving.id),
            other => panic!("{other:?}"),
        }
        assert_eq!(server.state.host().cache_stats().modules, before.modules);
        assert!(matches!(
            server.state.reload("nope").await,
            Err(ReloadError::UnknownPlugin(_))
        ));
    });
}

#[test]
fn a_broken_version_is_refused_and_logged_while_the_old_one_serves() {
    serial_runtime(async {
        let a = answering("version A");
        let id_a = content_id(&[a.as_bytes()]);
        let server = TestServer::start(&plugin_toml(""), &[("p.wat", &a)]).await;
        let client = client();
        let unlinkable = r#"(module (import "nowhere" "missing" (func)) (func (export "_start")))"#;
        for (broken, cause) in [
            ("this is not wasm", "p.wat"),
            (unlinkable, "does not instantiate"),
        ] {
            std::fs::write(server.dir.join("p.wat"), broken).unwrap();
            let error = server.state.reload("p").await.unwrap_err();
            let ReloadError::Refused { plugin, cause: why } = &error else {
                panic!("{error:?}");
            };
            assert_eq!(plugin, "p");
            assert!(why.to_string().contains(cause), "{why}");
            let logged = logged("reload refused");
            assert!(
                logged
                    .iter()
                    .any(|l| l.contains("plugin=\"p\"") && l.contains(cause)),
                "{logged:?}"
            );
            let answer = get(&client, &server.url("/p")).await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(
                (version_of(&answer), answer.body.as_str()),
                (id_a.clone(), "version A\n")
            );
        }
    });
}

#[test]
fn a_drain_past_drain_timeout_stops_the_old_versions_requests() {
    serial_runtime(async {
        let spin = guest(b"content-type: text/plain\n\nslow ", SPIN);
        let server = TestServer::start(
            &format!(
                "drain_timeout = \"200ms\"\n{}",
                plugin_toml("request_timeout = \"30s\"")
            ),
            &[("p.wat", &spin)],
        )
        .await;
        let url = server.url("/p");
        let slow = tokio::spawn(async move {
            let client = client();
            let response = client
                .request(hyper::Request::get(url).body(Default::default()).unwrap())
                .await
                .unwrap();
            let version = response.headers()[VERSION_HEADER]
                .to_str()
                .unwrap()
                .to_string();
            let body = http_body_util::BodyExt::collect(response.into_body()).await;
            (version, body.is_err())
        });
        let old = server.state.plugins()[0].current();
        assert!(eventually(Duration::from_secs(5), || old.in_flight.len() == 1).await);
        let Reloaded::Swapped { drain, .. } = reload_to(&server, &answering("quick")).await else {
            panic!("not swapped");
        };
        let drained = tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((drained.in_flight, drained.forced, drained.left), (1, 1, 0));
        assert!(drained.elapsed < Duration::from_secs(5), "{drained:?}");
        let (version, cut) = slow.await.unwrap();
        assert_eq!(version, old.id);
        assert!(cut, "the stopped request's body is cut");
        assert!(!logged("requests still running at drain_timeout were stopped").is_empty());
        assert_eq!(get(&client(), &server.url("/p")).await.body, "quick\n");
    });
}

#[test]
fn a_watched_module_rewritten_is_reloaded_within_a_bounded_time() {
    serial_runtime(async {
        let a = answering("version A");
        let server = TestServer::start(&plugin_toml("watch = true"), &[("p.wat", &a)]).await;
        let client = client();
        assert_eq!(get(&client, &server.url("/p")).await.body, "version A\n");
        // In place (truncate and write, as most tools do), then by a rename
        // over the file (as editors that save atomically do).
        for (text, atomic) in [("version B", false), ("version C", true)] {
            let wat = answering(text);
            let path = server.dir.join("p.wat");
            if atomic {
                let temp = server.dir.join(".p.wat.tmp");
                std::fs::write(&temp, &wat).unwrap();
                std::fs::rename(&temp, &path).unwrap();
            } else {
                std::fs::write(&path, &wat).unwrap();
            }
            let id = content_id(&[wat.as_bytes()]);
            let (answer, took) = until_version(&client, &server.url("/p"), &id).await;
            assert_eq!(
                answer.body,
                format!("{text}\n"),
                "not reloaded after {took:?}"
            );
        }
    });
}

#[test]
fn a_manifest_plugin_serves_and_reloads_when_its_manifest_or_module_changes() {
    serial_runtime(async {
        let manifest = |module: &str| {
            format!("name = \"m\"\n[[module]]\nname = \"main\"\npath = \"{module}\"\n")
        };
        let (a, b, c) = (
            answering("version A"),
            answering("version B"),
            answering("version C"),
        );
        let server = TestServer::start(
            "[[plugin]]\nname = \"m\"\nroute = \"/m/...\"\nmanifest = \"m.toml\"\nwatch = true\n",
            &[("m.toml", &manifest("a.wat")), ("a.wat", &a)],
        )
        .await;
        let client = client();
        let url = server.url("/m/x");
        let answer = get(&client, &url).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "version A\n")
        );
        // The version of a manifest is the hash of it and its modules.
        let id = content_id(&[manifest("a.wat").as_bytes(), a.as_bytes()]);
        assert_eq!(version_of(&answer), id);
        // The module the manifest names is rewritten; then the manifest
        // is, to name another module.
        let steps = [
            (
                "a.wat",
                b.clone(),
                manifest("a.wat"),
                b.as_str(),
                "version B\n",
            ),
            (
                "m.toml",
                manifest("c.wat"),
                manifest("c.wat"),
                c.as_str(),
                "version C\n",
            ),
        ];
        std::fs::write(server.dir.join("c.wat"), &c).unwrap();
        for (file, text, manifest_now, module_now, body) in steps {
            std::fs::write(server.dir.join(file), &text).unwrap();
            let id = content_id(&[manifest_now.as_bytes(), module_now.as_bytes()]);
            let (answer, took) = until_version(&client, &url, &id).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, body),
                "{file} rewritten: not reloaded after {took:?}"
            );
        }
        // Now c.wat is the module watched: a.wat no longer counts.
        std::fs::write(server.dir.join("c.wat"), &a).unwrap();
        let id = content_id(&[manifest("c.wat").as_bytes(), a.as_bytes()]);
        let (answer, took) = until_version(&client, &url, &id).await;
        assert_eq!(
            answer.body, "version A\n",
            "c.wat rewritten: not reloaded after {took:?}"
        );
    });
}
