//! How many live idle domains one process holds, what each costs in
//! resident memory, and whether creating one gets slower as more live
//! (docs/PERFORMANCE.md, "Density").
//!
//! Creates domains of a one-page module, loads and calls each once, and
//! keeps them all; at each checkpoint prints the count, the resident memory
//! per domain (the process's RSS over the live count, the host's own
//! baseline taken off), the kernel memory maps, and the time of the last
//! batch of creations per domain. Stops at the target or at the first
//! failure, which it names with the count reached, then unloads every
//! domain and prints the RSS after.
//!
//! ```sh
//! cargo run --release -p custody-host --example density -- 1000000 dense
//! cargo run --release -p custody-host --example density -- 200000 pooling
//! ```

use std::hint::black_box;
use std::time::Instant;

use custody_host::{Allocation, DomainConfig, Host, Policy};

/// One page of memory and a function that touches it (as a guest's first
/// call touches its stack and data).
const ONE_PAGE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (i32.store (i32.const 1024) (i32.const 7))
    (i32.load (i32.const 1024))))"#;

/// Creations timed per checkpoint.
const BATCH: usize = 1000;

/// A line of `/proc/self/status`, in KiB.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |maps| maps.lines().count())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let allocation = match args.next().as_deref() {
        None | Some("dense") => Allocation::Dense,
        Some("pooling") => Allocation::Pooling,
        Some("on-demand") => Allocation::OnDemand,
        Some(other) => panic!("allocation {other:?}: dense, pooling or on-demand"),
    };
    let policy = Policy {
        allocation,
        // The pool holds every domain asked for (pooling only).
        pool_size: u32::try_from(target).unwrap_or(u32::MAX),
        memory_limit: Some(1 << 20),
        ..Policy::default()
    };
    let host = match Host::new(policy) {
        Ok(host) => host,
        Err(error) => {
            println!("no host: {error}");
            std::process::exit(1);
        }
    };
    let wat = match std::env::var("DENSITY_MODULE").as_deref() {
        Ok("none") => r#"(module (func (export "run") (result i32) i32.const 7))"#,
        Ok("untouched") => r#"(module (memory 1) (func (export "run") (result i32) i32.const 7))"#,
        _ => ONE_PAGE,
    };
    let module = host.compile(wat.as_bytes()).expect("module");
    let base_rss = status_kib("VmRSS:");
    println!(
        "allocation {} (asked {:?}), target {target}, baseline RSS {base_rss} KiB, {} maps",
        host.allocation().name(),
        allocation.name(),
        maps()
    );
    println!("| live domains | RSS per domain | maps | creation (last {BATCH}) |");
    println!("| --- | --- | --- | --- |");
    let mut domains = Vec::with_capacity(target);
    let mut batch_started = Instant::now();
    let mut stopped = None;
    let started = Instant::now();
    while domains.len() < target {
        let domain = match host.create_domain(DomainConfig::new()) {
            Ok(domain) => domain,
            Err(error) => {
                stopped = Some(format!("create_domain: {error}"));
                break;
            }
        };
        if let Err(error) = domain.load("m", &module) {
            stopped = Some(format!("load: {error}"));
            break;
        }
        match domain.call("run", &[]) {
            Ok(result) => {
                black_box(result);
            }
            Err(error) => {
                stopped = Some(format!("call: {error}"));
                break;
            }
        }
        domains.push(domain);
        let live = domains.len();
        if live % BATCH == 0 {
            let per = batch_started.elapsed() / BATCH as u32;
            if checkpoint(live) {
                let rss = status_kib("VmRSS:").saturating_sub(base_rss);
                println!(
                    "| {live} | {:.1} KiB | {} | {:.1} µs |",
                    rss as f64 / live as f64,
                    maps(),
                    per.as_secs_f64() * 1e6
                );
            }
            batch_started = Instant::now();
        }
    }
    let live = domains.len();
    let rss = status_kib("VmRSS:").saturating_sub(base_rss);
    println!(
        "reached {live} live domains in {:.1} s: {:.1} KiB each, {} maps{}",
        started.elapsed().as_secs_f64(),
        rss as f64 / live.max(1) as f64,
        maps(),
        stopped.map_or(String::new(), |why| format!("; stopped by {why}"))
    );
    let unloading = Instant::now();
    for domain in domains.drain(..) {
        domain.unload().expect("unload");
    }
    println!(
        "unloaded in {:.1} s; RSS after {} KiB (baseline {base_rss} KiB)",
        unloading.elapsed().as_secs_f64(),
        status_kib("VmRSS:")
    );
}

/// Whether `live` is a count to report: 1k, 10k, 100k, 1M and each 100k.
fn checkpoint(live: usize) -> bool {
    matches!(live, 1_000 | 10_000) || live.is_multiple_of(100_000)
}
