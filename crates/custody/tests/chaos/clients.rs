//! The chaos run's clients: one HTTP/1.0 request at a time over a plain
//! `TcpStream` (a connection each, so the server's fds churn); the
//! hostile plugins' callers, tallying every status and every fault's
//! kind and id as the error bodies name them; the operator (reloads,
//! canaries promoted and rolled back, cancels); the follower of
//! `/admin/diagnostics?follow`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::plugins::{GOOD, Hostile, variant};

/// A response: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.0 request asking for JSON errors. `withheld` declares a
/// body of that length and sends none (the server waits for it).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    withheld: usize,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Length: {withheld}\r\n\r\n"
    )?;
    let (head, body) = read_response(&mut stream)?;
    let status = head
        .strip_prefix("HTTP/1.0 ")
        .or_else(|| head.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok(Answer { status, body })
}

/// The head and the body of a response: the body's `content-length`
/// bytes when the head says, else up to the end. (The server keeps a
/// connection whose request body it never got open after answering.)
fn read_response(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "the connection closed in the head: {:?}",
                String::from_utf8_lossy(&received)
            )));
        }
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..end]).into_owned();
    let length = (head.lines())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let mut body = received.split_off(end);
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Err(std::io::Error::other("the connection closed in the body"));
                }
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut body)?;
        }
    }
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

/// An admin call that must answer `expected`; its JSON body.
pub fn admin(addr: SocketAddr, method: &str, path: &str, expected: &[u16]) -> Value {
    let answer = request(addr, method, path, 0).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(
        expected.contains(&answer.status),
        "{method} {path}: {} {}",
        answer.status,
        answer.body
    );
    serde_json::from_str(&answer.body).unwrap_or(Value::Null)
}

/// What the clients saw: responses by plugin and status, faults by kind,
/// every failed request's id, and transport errors (none expected).
#[derive(Default)]
pub struct Tally {
    pub statuses: BTreeMap<(String, u16), u64>,
    pub faults: BTreeMap<String, u64>,
    pub failed_ids: BTreeSet<String>,
    pub errors: Vec<String>,
}

impl Tally {
    fn record(&mut self, plugin: &str, answer: std::io::Result<Answer>) {
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => return self.errors.push(format!("{plugin}: {e}")),
        };
        *self
            .statuses
            .entry((plugin.to_string(), answer.status))
            .or_default() += 1;
        if answer.status < 400 {
            return;
        }
        let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        match (body["error"].as_str(), body["id"].as_str()) {
            (Some(kind), Some(id)) => {
                *self.faults.entry(kind.to_string()).or_default() += 1;
                self.failed_ids.insert(id.to_string());
            }
            _ => self.errors.push(format!(
                "{plugin}: {} without a fault body: {}",
                answer.status, answer.body
            )),
        }
    }

    /// Total requests answered.
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// Calls `hostile` until `stop`, one request at a time, `pause` between.
pub fn hammer(
    addr: SocketAddr,
    hostile: &Hostile,
    pause: Duration,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
) {
    let path = format!("/{}", hostile.name);
    while !stop.load(Ordering::Relaxed) {
        let answer = request(addr, "GET", &path, hostile.withheld_body);
        tally.lock().unwrap().record(hostile.name, answer);
        std::thread::sleep(pause);
    }
}

/// What the operator did.
#[derive(Debug, Default)]
pub struct Operations {
    pub reloads: u64,
    pub promotes: u64,
    pub rollbacks: u64,
    pub cancels: u64,
}

/// The operator's memory between runs: which variant of each reloaded
/// module serves now, and its rounds so far.
#[derive(Default)]
pub struct Operator {
    hello_b: bool,
    custody_b: bool,
    spin_b: bool,
    round: u64,
}

/// Until `stop`, about twice a second: swaps `hello` (and every other
/// round `spin`) to its other variant (`POST .../reload`), loads a canary
/// of `hello-custody` and alternately promotes it or rolls it back, and
/// cancels every `read-stdin` and `sleep` request in flight older than
/// 100 ms. Ends with no canary left.
pub fn operate(
    operator: &mut Operator,
    admin_addr: SocketAddr,
    dir: &Path,
    repo: &Path,
    stop: &AtomicBool,
) -> Operations {
    let mut done = Operations::default();
    let bundled = repo.join("crates/custody-serve/plugins");
    let original = |file: &str| std::fs::read_to_string(bundled.join(file)).unwrap();
    let (hello, hello_custody) = (original(GOOD[0].1), original(GOOD[1].1));
    let spin = crate::plugins::HOSTILE[0].wat;
    let Operator {
        hello_b,
        custody_b,
        spin_b,
        round,
    } = operator;
    while !stop.load(Ordering::Relaxed) {
        *round += 1;
        *hello_b = !*hello_b;
        std::fs::write(dir.join("hello.wat"), variant(&hello, *hello_b)).unwrap();
        let swapped = admin(admin_addr, "POST", "/admin/plugins/hello/reload", &[200]);
        assert_eq!(swapped["outcome"], "swapped", "{swapped}");
        done.reloads += 1;
        if *round % 2 == 0 {
            *spin_b = !*spin_b;
            std::fs::write(dir.join("spin.wat"), variant(spin, *spin_b)).unwrap();
            let swapped = admin(admin_addr, "POST", "/admin/plugins/spin/reload", &[200]);
            assert_eq!(swapped["outcome"], "swapped", "{swapped}");
            done.reloads += 1;
        }
        std::fs::write(
            dir.join("hello-custody.wat"),
            variant(&hello_custody, !*custody_b),
        )
        .unwrap();
        let canary = admin(
            admin_addr,
            "POST",
            "/admin/plugins/hello-custody/reload",
            &[200],
        );
        assert_eq!(canary["outcome"], "canary", "{canary}");
        done.reloads += 1;
        done.cancels += cancel_blocked(admin_addr);
        std::thread::sleep(Duration::from_millis(250));
        if *round % 2 == 0 {
            admin(
                admin_addr,
                "POST",
                "/admin/plugins/hello-custody/promote",
                &[200],
            );
            *custody_b = !*custody_b;
            done.promotes += 1;
        } else {
            admin(
                admin_addr,
                "POST",
                "/admin/plugins/hello-custody/rollback",
                &[200],
            );
            done.rollbacks += 1;
        }
        done.cancels += cancel_blocked(admin_addr);
        std::thread::sleep(Duration::from_millis(250));
    }
    done
}

/// Cancels the `read-stdin` and `sleep` requests in flight for over
/// 100 ms; how many cancels were accepted (one that ended meanwhile is
/// 404, or 202 too late to change its answer).
fn cancel_blocked(admin_addr: SocketAddr) -> u64 {
    let listed = admin(admin_addr, "GET", "/admin/requests", &[200]);
    let mut accepted = 0;
    for entry in listed["requests"].as_array().into_iter().flatten() {
        let plugin = entry["plugin"].as_str().unwrap_or("");
        let old = entry["age_ms"].as_u64().unwrap_or(0) > 100;
        if old && matches!(plugin, "read-stdin" | "sleep") {
            let id = entry["id"].as_str().unwrap();
            let path = format!("/admin/requests/{id}/cancel");
            let answer = request(admin_addr, "POST", &path, 0).unwrap();
            assert!(
                matches!(answer.status, 202 | 404 | 409),
                "{path}: {} {}",
                answer.status,
                answer.body
            );
            accepted += u64::from(answer.status == 202);
        }
    }
    accepted
}

/// The entries `/admin/diagnostics?follow` streamed, and how many it was
/// told it missed (`event: lagged`).
#[derive(Default)]
pub struct Followed {
    pub entries: Vec<Value>,
    pub missed: u64,
}

/// Follows the diagnostics from now on: returns once the stream's head
/// is in (so every later diagnostic is streamed); a thread collects the
/// events into the returned `Followed` until the stream's socket shuts.
pub fn follow_diagnostics(
    admin_addr: SocketAddr,
) -> (Arc<Mutex<Followed>>, TcpStream, std::thread::JoinHandle<()>) {
    let mut stream = TcpStream::connect(admin_addr).unwrap();
    write!(
        stream,
        "GET /admin/diagnostics?follow HTTP/1.1\r\nHost: {admin_addr}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "{line}");
    while line.trim_end() != "" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let followed = Arc::new(Mutex::new(Followed::default()));
    let sink = Arc::clone(&followed);
    let thread = std::thread::spawn(move || {
        let mut lagged = false;
        for line in reader.lines() {
            let Ok(line) = line else { break };
            // Chunked framing: the sizes and blank lines are not events.
            if line == "event: lagged" {
                lagged = true;
            } else if let Some(data) = line.strip_prefix("data: ") {
                let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                let mut followed = sink.lock().unwrap();
                if std::mem::take(&mut lagged) {
                    followed.missed += value["missed"].as_u64().unwrap_or(0);
                } else {
                    followed.entries.push(value);
                }
            }
        }
    });
    (followed, stream, thread)
}
