//! What the chaos run measures: wrk's figures (`--latency`), the
//! server's `/metrics` counters, its fds and RSS from `/proc/PID`, and
//! its log (stderr, JSON lines), read by a thread as it comes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{ChildStderr, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One wrk run's figures.
#[derive(Clone, Debug, Default)]
pub struct WrkFigures {
    pub requests: u64,
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl WrkFigures {
    /// The share of requests answered 2xx without a socket error, in %.
    pub fn success_percent(&self) -> f64 {
        let bad = self.non_2xx + self.socket_errors;
        100.0 * self.requests.saturating_sub(bad) as f64 / self.requests.max(1) as f64
    }
}

/// wrk's settings: one thread, this many connections, per route.
pub const WRK_CONNECTIONS: u64 = 4;

/// Starts `wrk -t1 -cN -d SECS --latency URL`; `finish` reads its figures.
pub fn start_wrk(url: &str, secs: u64) -> std::process::Child {
    Command::new("wrk")
        .args(["-t", "1", "-c", &WRK_CONNECTIONS.to_string()])
        .args(["-d", &format!("{secs}s"), "--latency", url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("wrk (the Debian package `wrk`) cannot be run: {e}"))
}

/// Waits for wrk and parses its report.
pub fn finish_wrk(child: std::process::Child) -> WrkFigures {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_wrk(&text).unwrap_or_else(|| panic!("wrk's report is not as expected:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkFigures> {
    let mut figures = WrkFigures::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [n, "requests", "in", ..] => figures.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => figures.non_2xx = n.parse().ok()?,
            ["Requests/sec:", n] => figures.rps = n.parse().ok()?,
            ["50%", v] => figures.p50_us = micros(v)?,
            ["99%", v] => figures.p99_us = micros(v)?,
            ["Socket", "errors:", ..] => {
                // `Socket errors: connect 0, read 0, write 0, timeout 0`
                figures.socket_errors = (words.iter().skip(3).step_by(2))
                    .map(|n| n.trim_end_matches(',').parse::<u64>().unwrap_or(0))
                    .sum();
            }
            _ => {}
        }
    }
    (figures.requests > 0 && figures.p99_us > 0.0).then_some(figures)
}

/// A wrk latency (`850.00us`, `1.20ms`, `2.00s`) in µs.
fn micros(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e6)
    } else {
        (value, 1.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The counters of `/metrics` this run checks.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// `custody_serve_requests_total` by plugin and status (versions summed).
    pub requests: BTreeMap<(String, u16), u64>,
    /// `custody_serve_faults_total` by kind.
    pub faults: BTreeMap<String, u64>,
}

impl Counters {
    /// Parses the OpenMetrics text.
    pub fn parse(text: &str) -> Counters {
        let mut counters = Counters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((name, labels)) = series.split_once('{') else {
                continue;
            };
            let labels = labels.trim_end_matches('}');
            let label = |key: &str| {
                (labels.split(',')).find_map(|pair| {
                    let value = pair.strip_prefix(key)?.strip_prefix("=\"")?;
                    Some(value.trim_end_matches('"').to_string())
                })
            };
            let value: u64 = value.parse::<f64>().unwrap_or(0.0) as u64;
            match name {
                "custody_serve_requests_total" => {
                    let plugin = label("plugin").unwrap_or_default();
                    let status = label("status").and_then(|s| s.parse().ok()).unwrap_or(0);
                    *counters.requests.entry((plugin, status)).or_default() += value;
                }
                "custody_serve_faults_total" => {
                    let kind = label("kind").unwrap_or_default();
                    *counters.faults.entry(kind).or_default() += value;
                }
                _ => {}
            }
        }
        counters
    }

    /// What was counted since `before` (the series that grew).
    pub fn since(&self, before: &Counters) -> Counters {
        fn minus<K: Ord + Clone>(
            now: &BTreeMap<K, u64>,
            then: &BTreeMap<K, u64>,
        ) -> BTreeMap<K, u64> {
            (now.iter())
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        }
        Counters {
            requests: minus(&self.requests, &before.requests),
            faults: minus(&self.faults, &before.faults),
        }
    }
}

/// A process's open fds and resident set (bytes).
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub fds: usize,
    pub rss: u64,
}

/// `/proc/PID/fd`'s count and `/proc/PID/status`'s `VmRSS`.
pub fn usage(pid: u32) -> Usage {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap();
    Usage {
        fds,
        rss: kib * 1024,
    }
}

/// Polls `usage` until `settled` holds, at most `within`; the last reading.
pub fn usage_settling(pid: u32, within: Duration, settled: impl Fn(Usage) -> bool) -> Usage {
    let begun = std::time::Instant::now();
    loop {
        let now = usage(pid);
        if settled(now) || begun.elapsed() > within {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's stderr, line by line, as a thread reads it (so the
/// server never blocks on a full pipe).
pub fn collect_log(stderr: ChildStderr) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
