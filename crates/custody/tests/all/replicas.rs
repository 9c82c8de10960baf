//! More than one machine, on loopback: three `custody serve` replicas
//! behind HAProxy (health checks on the ready endpoint), under `wrk` load
//! through HAProxy, rolled twice as an orchestrator rolls them:
//!
//! 1. a rolling reload: a new version of the plugin's module, then SIGHUP
//!    one replica at a time, each waited for until it serves the new
//!    version;
//! 2. a rolling restart (as Kubernetes does): SIGTERM one replica, wait
//!    for its exit 0, start it again on its port, wait until HAProxy sees
//!    it up, then the next.
//!
//! Neither may fail one request: wrk's non-2xx responses and socket errors
//! are 0. The figures (`cargo test -p custody --test all replicas --
//! --nocapture`) are in docs/DEPLOY.md. Ignored, with the reason, without
//! HAProxy or wrk (`cfg(no_replica_tools)`, the build script); CI installs
//! both and sets `CUSTODY_REQUIRE_TOOLS=1`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, exit_within, signal, terminate, try_http};

/// How long `/ready` is 503 before a stopping replica stops accepting:
/// five of HAProxy's checks (`inter 200ms`, `fall 1`).
const SHUTDOWN_DELAY: &str = "1s";
/// The least load of a phase, and the load after its last step.
const MIN_LOAD: Duration = Duration::from_secs(10);
const TAIL: Duration = Duration::from_secs(1);
/// wrk's own end, a bound on a phase whose steps hang.
const MAX_LOAD_SECS: u64 = 60;
/// The longest one step (a reload seen, an exit, HAProxy's notice) may take.
const STEP: Duration = Duration::from_secs(15);

/// The version of `hello.wat` the reload brings: the same length, another
/// greeting.
fn hello_again() -> String {
    custody_serve::HELLO_WAT.replace("hello, world", "hello, again")
}

/// A replica: its port (the same across restarts, as HAProxy knows it) and
/// its process, when it runs.
struct Replica {
    port: u16,
    process: Option<Server>,
    /// Its stdout, kept open: the server prints its routes there.
    _stdout: Option<BufReader<ChildStdout>>,
}

/// The scene: a directory with the configuration, the module and every
/// process's log, the replicas and HAProxy.
struct Scene {
    dir: PathBuf,
    config: PathBuf,
    replicas: Vec<Replica>,
    haproxy: Option<Server>,
    frontend: u16,
    stats: u16,
    /// Starts of replicas so far: each one's log file is its own.
    starts: usize,
}

impl Scene {
    fn new() -> Scene {
        let dir = std::env::temp_dir().join(format!("custody-replicas-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.wat"), custody_serve::HELLO_WAT).unwrap();
        let config = dir.join("custody.toml");
        std::fs::write(
            &config,
            format!(
                "shutdown_delay = \"{SHUTDOWN_DELAY}\"\ndrain_timeout = \"5s\"\n\n\
                 [[plugin]]\nname = \"hello\"\nroute = \"/hello\"\nmodule = \"hello.wat\"\n"
            ),
        )
        .unwrap();
        Scene {
            dir,
            config,
            replicas: Vec::new(),
            haproxy: None,
            frontend: 0,
            stats: 0,
            starts: 0,
        }
    }

    /// Starts `custody serve` on `port` (0: any); waits for its route
    /// line, printed once its plugins have loaded (ready).
    fn start_replica(&mut self, port: u16) -> Replica {
        self.starts += 1;
        let log = File::create(self.dir.join(format!("custody-{}.log", self.starts))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let process = Server(child);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = (line.trim().strip_prefix("GET "))
            .unwrap_or_else(|| panic!("no route line: {line:?}\n{}", self.logs()));
        let port = url.split(['/', ':']).nth(4).unwrap().parse().unwrap();
        Replica {
            port,
            process: Some(process),
            _stdout: Some(stdout),
        }
    }

    /// Starts HAProxy in front of the replicas: round robin, a check of
    /// `/ready` every 200 ms that takes a replica out at its first 503 or
    /// refused connection and back at its first 200, a retry on another
    /// replica of a request whose connection failed.
    fn start_haproxy(&mut self) {
        self.frontend = free_port();
        self.stats = free_port();
        let servers: String = (self.replicas.iter().enumerate())
            .map(|(i, r)| format!("    server r{i} 127.0.0.1:{} check\n", r.port))
            .collect();
        let file = self.dir.join("haproxy.cfg");
        std::fs::write(
            &file,
            format!(
                "global\n    maxconn 1024\n\n\
                 defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    \
                 timeout server 10s\n    retries 3\n    option redispatch 1\n    \
                 retry-on conn-failure empty-response response-timeout\n\n\
                 frontend replicas\n    bind 127.0.0.1:{frontend}\n    default_backend custody\n\n\
                 backend custody\n    balance roundrobin\n    \
                 option httpchk GET /.well-known/custody/ready\n    http-check expect status 200\n    \
                 default-server inter 200ms fastinter 200ms downinter 200ms fall 1 rise 1\n\
                 {servers}\n\
                 listen stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /stats\n",
                frontend = self.frontend,
                stats = self.stats,
            ),
        )
        .unwrap();
        let log = File::create(self.dir.join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.haproxy = Some(Server(child));
        for i in 0..self.replicas.len() {
            self.wait_haproxy(i, "UP");
        }
    }

    /// HAProxy's view of the replicas: `(status, sessions)` of each.
    fn haproxy_view(&self) -> Vec<(String, u64)> {
        let url = format!("http://127.0.0.1:{}/stats;csv", self.stats);
        let Ok(response) = try_http(&url, "GET", "") else {
            return Vec::new();
        };
        let body = unchunked(&response);
        let mut lines = body.lines();
        let header: Vec<&str> = (lines.next().unwrap_or("").trim_start_matches("# "))
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|&h| h == name);
        let (Some(svname), Some(status), Some(stot)) =
            (column("svname"), column("status"), column("stot"))
        else {
            return Vec::new();
        };
        (lines.map(|l| l.split(',').collect::<Vec<_>>()))
            .filter(|f| f.len() > stot && f[svname].starts_with('r'))
            .map(|f| (f[status].to_string(), f[stot].parse().unwrap_or(0)))
            .collect()
    }

    /// Waits until HAProxy says replica `i` is `status` (`UP`, `DOWN`).
    fn wait_haproxy(&self, i: usize, status: &str) {
        let begun = Instant::now();
        loop {
            let view = self.haproxy_view();
            if view.get(i).is_some_and(|(s, _)| s.starts_with(status)) {
                return;
            }
            assert!(
                begun.elapsed() < STEP,
                "HAProxy does not see replica {i} {status}: {view:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The version replica `i` serves (`custody-plugin-version`), asked
    /// directly.
    fn version(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/hello", self.replicas[i].port);
        let response = try_http(&url, "GET", "").unwrap_or_else(|e| panic!("{url}: {e}"));
        (response.lines())
            .find_map(|l| l.strip_prefix("custody-plugin-version: "))
            .unwrap_or_else(|| panic!("no version: {response}"))
            .to_string()
    }

    /// Every log of the scene, for a failure's message.
    fn logs(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        (files.iter())
            .map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                format!("--- {} ---\n{text}", f.display())
            })
            .collect()
    }

    /// Load through HAProxy while `steps` run; wrk's figures.
    fn under_load(&mut self, phase: &str, steps: impl FnOnce(&mut Scene)) -> Figures {
        let url = format!("http://127.0.0.1:{}/hello", self.frontend);
        let wrk = Command::new("wrk")
            .args(["-t", "2", "-c", "16", "--timeout", "5s"])
            .arg(format!("-d{MAX_LOAD_SECS}s"))
            .arg(&url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut wrk = Server(wrk);
        let begun = Instant::now();
        std::thread::sleep(TAIL);
        steps(self);
        let done = begun.elapsed();
        std::thread::sleep(MIN_LOAD.saturating_sub(done).max(TAIL));
        assert!(
            wrk.0.try_wait().unwrap().is_none(),
            "{phase}: wrk ended before the steps did ({done:?})"
        );
        // wrk stops at SIGINT and prints its figures.
        signal(&wrk, libc::SIGINT);
        assert_eq!(exit_within(&mut wrk, STEP), Some(0), "{phase}: wrk");
        let mut output = String::new();
        std::io::Read::read_to_string(wrk.0.stdout.as_mut().unwrap(), &mut output).unwrap();
        Figures::parse(phase, &output)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        drop(self.haproxy.take());
        self.replicas.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The body of a response, chunked (as HAProxy's statistics come, even
/// to HTTP/1.0) or not.
fn unchunked(response: &str) -> String {
    let (head, mut rest) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return rest.to_string();
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    body
}

/// A port free now (the kernel's pick, released at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One phase's figures, from wrk's report.
#[derive(Debug)]
struct Figures {
    phase: String,
    requests: u64,
    seconds: f64,
    per_second: f64,
    non_2xx: u64,
    socket_errors: u64,
    report: String,
}

impl Figures {
    fn parse(phase: &str, report: &str) -> Figures {
        let line = |prefix: &str| {
            (report.lines())
                .map(str::trim)
                .find_map(|l| l.strip_prefix(prefix))
        };
        // `12345 requests in 10.00s, 1.80MB read`
        let summary = (report.lines())
            .find(|l| l.contains(" requests in "))
            .unwrap_or_else(|| panic!("{phase}: no summary in wrk's report:\n{report}"));
        let mut words = summary.split_whitespace();
        let requests = words.next().unwrap().parse().unwrap();
        let seconds = (words.nth(2).unwrap().trim_end_matches(','))
            .trim_end_matches('s')
            .parse()
            .unwrap();
        // Present only when not zero.
        let non_2xx = line("Non-2xx or 3xx responses:").map_or(0, |n| n.trim().parse().unwrap());
        // `Socket errors: connect 0, read 1, write 0, timeout 0`
        let socket_errors = line("Socket errors:").map_or(0, |errors| {
            (errors.split(','))
                .map(|e| e.split_whitespace().last().unwrap().parse::<u64>().unwrap())
                .sum()
        });
        let per_second = line("Requests/sec:").unwrap().trim().parse().unwrap();
        Figures {
            phase: phase.to_string(),
            requests,
            seconds,
            per_second,
            non_2xx,
            socket_errors,
            report: report.to_string(),
        }
    }

    fn print(&self) {
        println!(
            "{}: {} requests in {:.1} s ({:.0}/s), {} non-2xx, {} socket errors",
            self.phase,
            self.requests,
            self.seconds,
            self.per_second,
            self.non_2xx,
            self.socket_errors
        );
    }
}

#[test]
#[cfg_attr(
    no_replica_tools,
    ignore = "HAProxy or wrk missing: apt-get install haproxy wrk"
)]
fn three_replicas_behind_haproxy_roll_a_reload_and_a_restart_without_a_failed_request() {
    let mut scene = Scene::new();
    for _ in 0..3 {
        let replica = scene.start_replica(0);
        scene.replicas.push(replica);
    }
    scene.start_haproxy();
    let first = scene.version(0);

    let reload = scene.under_load("rolling reload", |scene| {
        std::fs::write(scene.dir.join("hello.wat"), hello_again()).unwrap();
        for i in 0..scene.replicas.len() {
            signal(scene.replicas[i].process.as_ref().unwrap(), libc::SIGHUP);
            let begun = Instant::now();
            while scene.version(i) == first {
                assert!(begun.elapsed() < STEP, "replica {i} did not reload");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let second = scene.version(0);
    assert_ne!(second, first);
    for i in 0..3 {
        assert_eq!(scene.version(i), second, "replica {i}");
    }

    let restart = scene.under_load("rolling restart", |scene| {
        for i in 0..scene.replicas.len() {
            let mut process = scene.replicas[i].process.take().unwrap();
            terminate(&process);
            scene.wait_haproxy(i, "DOWN");
            assert_eq!(exit_within(&mut process, STEP), Some(0), "replica {i}");
            let port = scene.replicas[i].port;
            let again = scene.start_replica(port);
            assert_eq!(again.port, port);
            scene.replicas[i] = again;
            scene.wait_haproxy(i, "UP");
        }
    });
    for i in 0..3 {
        assert_eq!(scene.version(i), second, "replica {i} after its restart");
    }

    let view = scene.haproxy_view();
    for figures in [&reload, &restart] {
        figures.print();
        assert!(
            figures.requests > 1000,
            "{}: too few requests to show anything\n{}",
            figures.phase,
            figures.report
        );
        assert_eq!(
            (figures.non_2xx, figures.socket_errors),
            (0, 0),
            "{}: failed requests\n{}\nHAProxy: {view:?}\n{}",
            figures.phase,
            figures.report,
            scene.logs()
        );
    }
    // Each replica took its share.
    assert_eq!(view.len(), 3, "{view:?}");
    assert!(view.iter().all(|(_, sessions)| *sessions > 0), "{view:?}");
    println!("HAProxy: (status, requests) per replica, both phases: {view:?}");
}
