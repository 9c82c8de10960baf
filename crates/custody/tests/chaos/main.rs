//! Chaos under load (SPEC E6): one `custody serve` process on loopback
//! with two well-behaved plugins, loaded by `wrk`, beside hostile ones
//! that spin, exhaust their memory, overflow their stack, leak pipes and
//! files, and block in host calls (stdin that never comes, a long sleep),
//! while an operator reloads plugins, runs canaries to promote and
//! rollback, and cancels requests in flight through the admin API.
//!
//! Asserted: the well-behaved routes answer every request 2xx; the fds
//! of the server return to their count before the run and its RSS to
//! within `RSS_TOLERANCE`; every failed request's id (from its error
//! body) is in the server's log and in `/admin/diagnostics`; `/metrics`
//! counts what the clients saw, per plugin and status and per fault
//! kind. Reported (docs/RELIABILITY.md): the good routes' success rate
//! and p99 beside a run of the same length without the hostile load.
//!
//! `CUSTODY_CHAOS_SECS` sets each run's length (default 60 s in CI,
//! `CI` or `CUSTODY_REQUIRE_GUESTS` set; else 10 s). Needs `wrk`
//! (`cfg(no_wrk)`, set by build.rs, ignores it otherwise). The figures
//! go to `target/tmp/chaos-report.md` (and the test's output).

mod clients;
mod observe;
mod plugins;
#[path = "../all/serve_process.rs"]
mod serve_process;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use clients::{
    Followed, Operations, Operator, Tally, admin, follow_diagnostics, hammer, operate, request,
};
use observe::{
    Counters, Usage, WRK_CONNECTIONS, WrkFigures, collect_log, finish_wrk, start_wrk,
    usage_settling,
};
use plugins::{GOOD, HOSTILE, write_config};
use serve_process::{exit_within, spawn_serve, terminate};

/// How far the RSS after the run may stay above the one before: the
/// allocator keeps some freed pages, and the blocking pool's threads
/// that ran guests keep their touched stacks until they idle out.
const RSS_TOLERANCE: u64 = 32 << 20;

/// Each run's length in seconds.
fn chaos_secs() -> u64 {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
    match std::env::var("CUSTODY_CHAOS_SECS") {
        Ok(secs) => secs.parse().expect("CUSTODY_CHAOS_SECS: whole seconds"),
        Err(_) if set("CI") || set("CUSTODY_REQUIRE_GUESTS") => 60,
        Err(_) => 10,
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server's plugin and admin addresses, from its stdout's lines.
fn addresses(stdout: impl std::io::Read) -> (SocketAddr, SocketAddr) {
    let mut routes = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let host = |url: &str| {
            url.strip_prefix("http://")
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        if let Some(url) = line.strip_prefix("GET ") {
            routes.push(host(url));
        } else if let Some(url) = line.strip_prefix("ADMIN ") {
            assert_eq!(routes.len(), GOOD.len() + HOSTILE.len(), "{routes:?}");
            return (routes[0], host(url));
        }
    }
    panic!("the server ended before printing its admin line");
}

/// One load: wrk on each good route for `secs`; with `hostile`, the
/// hostile clients and the operator at the same time.
struct Load {
    wrk: Vec<WrkFigures>,
    tally: Tally,
    operations: Operations,
}

fn load(
    operator: &mut Operator,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    dir: &Path,
    secs: u64,
    hostile: bool,
) -> Load {
    let wrks: Vec<_> = (GOOD.iter())
        .map(|(name, ..)| start_wrk(&format!("http://{addr}/{name}"), secs))
        .collect();
    let stop = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    let repo = repo_root();
    let (wrk, operations) = std::thread::scope(|scope| {
        let operator =
            hostile.then(|| scope.spawn(|| operate(operator, admin_addr, dir, &repo, &stop)));
        for plugin in HOSTILE.iter().filter(|_| hostile) {
            for _ in 0..plugin.clients {
                scope.spawn(|| hammer(addr, plugin, Duration::from_millis(30), &stop, &tally));
            }
        }
        let wrk: Vec<WrkFigures> = wrks.into_iter().map(finish_wrk).collect();
        stop.store(true, Ordering::Relaxed);
        let operations = operator.map(|t| t.join().unwrap()).unwrap_or_default();
        (wrk, operations)
    });
    Load {
        wrk,
        tally: tally.into_inner().unwrap(),
        operations,
    }
}

fn metrics(admin_addr: SocketAddr) -> Counters {
    let answer = request(admin_addr, "GET", "/metrics", 0).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    Counters::parse(&answer.body)
}

/// The ids of the fault events in the server's JSON log.
fn logged_fault_ids(log: &[String]) -> BTreeSet<String> {
    (log.iter())
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "custody::serve::fault")
        .filter_map(|event| event["fields"]["id"].as_str().map(str::to_string))
        .collect()
}

fn fault_ids(entries: &[Value]) -> BTreeSet<String> {
    (entries.iter())
        .filter(|e| e["source"] == "fault")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
#[cfg_attr(
    no_wrk,
    ignore = "wrk is not installed (Debian's `wrk`); with CUSTODY_REQUIRE_GUESTS=1 this fails instead"
)]
fn chaos_under_load_leaves_the_good_routes_answering_and_nothing_behind() {
    let secs = chaos_secs();
    let dir = std::env::temp_dir().join(format!("custody-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = write_config(&dir, &repo_root());
    let mut server = spawn_serve(&file, &["--log-format", "json"]);
    let pid = server.0.id();
    let log = collect_log(server.0.stderr.take().unwrap());
    let (addr, admin_addr) = addresses(server.0.stdout.take().unwrap());

    // Warm-up: a short chaos run (every plugin, both variants of each
    // reloaded module compiled, the blocking pool grown), then the run
    // without the hostile load.
    let mut operator = Operator::default();
    let warm = load(&mut operator, addr, admin_addr, &dir, 3, true);
    assert!(warm.tally.errors.is_empty(), "{:?}", warm.tally.errors);
    let quiet = load(&mut operator, addr, admin_addr, &dir, secs, false);
    let before = usage_settling(pid, Duration::from_secs(5), |_| false);

    let counted_before = metrics(admin_addr);
    let (followed, follow_stream, follower) = follow_diagnostics(admin_addr);
    let started = Instant::now();
    let chaos = load(&mut operator, addr, admin_addr, &dir, secs, true);
    let elapsed = started.elapsed();
    let tally = &chaos.tally;
    // The last faults' entries may still be on their way to the follower.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tally
        .failed_ids
        .is_subset(&fault_ids(&followed.lock().unwrap().entries))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    follow_stream.shutdown(std::net::Shutdown::Both).unwrap();
    follower.join().unwrap();
    let followed = std::mem::take(&mut *followed.lock().unwrap());
    let counted = metrics(admin_addr).since(&counted_before);
    let ring = admin(admin_addr, "GET", "/admin/diagnostics", &[200]);
    let after = usage_settling(pid, Duration::from_secs(20), |now| {
        now.fds <= before.fds && now.rss <= before.rss + RSS_TOLERANCE
    });
    std::thread::sleep(Duration::from_millis(300));
    let log_ids = logged_fault_ids(&log.lock().unwrap());

    let report = report(secs, elapsed, &quiet, &chaos, before, after, &followed);
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-report.md"),
        &report,
    )
    .unwrap();
    println!("{report}");

    // The clients saw no transport error; the good routes answered 2xx.
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    for figures in quiet.wrk.iter().chain(&chaos.wrk) {
        assert_eq!(
            (figures.non_2xx, figures.socket_errors),
            (0, 0),
            "{figures:?}\n{report}"
        );
    }
    // Every hostile behaviour happened, and every operator action.
    for kind in ["deadline", "memory", "trap", "overload", "cancelled"] {
        assert!(
            tally.faults.get(kind).is_some_and(|&n| n > 0),
            "no {kind}:\n{report}"
        );
    }
    for leak in ["leak-pipes", "leak-files"] {
        let served = tally.statuses.get(&(leak.to_string(), 200));
        assert!(served.is_some_and(|&n| n > 0), "{leak}:\n{report}");
    }
    let ops = &chaos.operations;
    assert!(
        ops.reloads > 0 && ops.promotes > 0 && ops.rollbacks > 0,
        "{ops:?}"
    );
    assert!(
        ops.cancels >= tally.faults["cancelled"],
        "{ops:?}\n{report}"
    );

    // Every failed request's id is in the log and in the diagnostics.
    assert!(!tally.failed_ids.is_empty());
    let missing_log: Vec<_> = tally.failed_ids.difference(&log_ids).collect();
    assert!(missing_log.is_empty(), "not logged: {missing_log:?}");
    assert_eq!(followed.missed, 0, "the diagnostics follower lagged");
    let streamed = fault_ids(&followed.entries);
    let missing: Vec<_> = tally.failed_ids.difference(&streamed).collect();
    assert!(missing.is_empty(), "not in /admin/diagnostics: {missing:?}");
    // The ring is the stream's tail: its last entries, same seqs.
    let seqs = |entries: &[Value]| -> Vec<u64> {
        entries.iter().filter_map(|e| e["seq"].as_u64()).collect()
    };
    let kept = seqs(ring["diagnostics"].as_array().unwrap());
    let all = seqs(&followed.entries);
    let streamed_range = all[0]..=all[all.len() - 1];
    let tail: Vec<u64> = (kept.iter())
        .filter(|seq| streamed_range.contains(seq))
        .copied()
        .collect();
    assert!(!tail.is_empty() && all.ends_with(&tail), "ring {kept:?}");

    // The metrics count what the clients saw.
    let hostile: BTreeSet<&str> = HOSTILE.iter().map(|h| h.name).collect();
    let counted_hostile: std::collections::BTreeMap<_, _> = (counted.requests.iter())
        .filter(|((plugin, _), _)| hostile.contains(plugin.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(
        counted_hostile, tally.statuses,
        "requests by plugin and status"
    );
    assert_eq!(counted.faults, tally.faults, "faults by kind");
    for ((name, ..), figures) in GOOD.iter().zip(&chaos.wrk) {
        let statuses: Vec<_> = (counted.requests.iter())
            .filter(|((plugin, _), _)| plugin == name)
            .collect();
        assert_eq!(statuses.len(), 1, "{name}: {statuses:?}");
        let (&(_, status), &n) = statuses[0];
        assert_eq!(status, 200, "{name}");
        // wrk does not count the responses in flight when it stops.
        assert!(
            (figures.requests..=figures.requests + WRK_CONNECTIONS).contains(&n),
            "{name}: the server counted {n}, wrk {}",
            figures.requests
        );
    }

    // Nothing left behind.
    assert!(
        after.fds <= before.fds,
        "fds {} -> {}\n{report}",
        before.fds,
        after.fds
    );
    assert!(after.rss <= before.rss + RSS_TOLERANCE, "{report}");

    terminate(&server);
    assert_eq!(exit_within(&mut server, Duration::from_secs(20)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The figures, as docs/RELIABILITY.md shows them.
fn report(
    secs: u64,
    elapsed: Duration,
    quiet: &Load,
    chaos: &Load,
    before: Usage,
    after: Usage,
    followed: &Followed,
) -> String {
    let mut out = format!(
        "chaos run: {secs} s per run (chaos took {:.1} s), wrk -t1 -c{WRK_CONNECTIONS} --latency per good route, {} cores\n\n",
        elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    out.push_str(
        "| route | run | requests | req/s | success | p50 (µs) | p99 (µs) | p99 chaos/quiet |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (i, (name, ..)) in GOOD.iter().enumerate() {
        for (run, load) in [("quiet", quiet), ("chaos", chaos)] {
            let w = &load.wrk[i];
            let ratio = if run == "chaos" {
                format!("{:.2}×", w.p99_us / quiet.wrk[i].p99_us)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| /{name} | {run} | {} | {:.0} | {:.3}% | {:.0} | {:.0} | {ratio} |\n",
                w.requests,
                w.rps,
                w.success_percent(),
                w.p50_us,
                w.p99_us
            ));
        }
    }
    let tally = &chaos.tally;
    out.push_str(&format!(
        "\nhostile requests answered: {}; by plugin and status: {:?}\nfaults by kind: {:?}\n",
        tally.answered(),
        tally.statuses,
        tally.faults
    ));
    out.push_str(&format!(
        "operator: {:?}\ndiagnostics streamed: {} (missed {})\n",
        chaos.operations,
        followed.entries.len(),
        followed.missed
    ));
    out.push_str(&format!(
        "server fds: {} before, {} after; RSS: {:.1} MiB before, {:.1} MiB after\n",
        before.fds,
        after.fds,
        before.rss as f64 / 1048576.0,
        after.rss as f64 / 1048576.0
    ));
    out
}
