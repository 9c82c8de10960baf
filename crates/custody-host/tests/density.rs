//! Density: 100,000 live idle domains in one process (one page of memory
//! each, each called once), then all unloaded with the fd count back at
//! its baseline. `Allocation::Dense` keeps each memory in a slot of an
//! arena of large mappings, so the kernel's limit of 65,530 memory maps per
//! process does not bind, and an idle domain holds only the pages its guest
//! touched: the count is bounded by real memory alone, at most 16 KiB a
//! domain (issue 20's goal; `examples/density.rs` takes it to a million).
//!
//! `CUSTODY_DENSITY=N` changes the count.

use std::time::Instant;

use custody_host::{Allocation, DomainConfig, Policy, Val};
use custody_testkit::*;

/// Its one call touches its memory, as a guest's first call touches its
/// stack and data.
const IDLE: &str = r#"(module (memory (export "memory") 1)
  (func (export "run") (result i32)
    (i32.store (i32.const 1024) (i32.const 1))
    (i32.load (i32.const 1024))))"#;

/// Resident memory of the process, in bytes (`/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The process's memory maps (`/proc/self/maps`).
fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_hundred_thousand_idle_domains() {
    let _serial = serial();
    let count: usize = std::env::var("CUSTODY_DENSITY")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let (host, _lines) = host_with(Policy {
        allocation: Allocation::Dense,
        memory_limit: Some(1 << 20),
        ..Policy::default()
    });
    let module = warmed_module(&host, IDLE);
    let fds = FdBaseline::now();
    let (rss_before, maps_before) = (rss(), maps());
    let started = Instant::now();
    let mut domains = Vec::with_capacity(count);
    for i in 0..count {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("idle", &module).unwrap();
        let result = domain.call("run", &[]).unwrap();
        assert!(matches!(result[..], [Val::I32(1)]), "domain {i}");
        domains.push(domain);
    }
    let created = started.elapsed();
    let per_domain = rss().saturating_sub(rss_before) / count;
    let new_maps = maps().saturating_sub(maps_before);
    assert_eq!(host.domain_count(), count);
    eprintln!(
        "{count} live domains: {} KiB of RSS each, {new_maps} new memory maps, created in {created:?}",
        per_domain / 1024
    );
    assert!(
        new_maps < 1000,
        "dense domains need no memory map each: {new_maps} new maps"
    );
    assert!(
        per_domain <= 16 * 1024,
        "{per_domain} bytes of RSS per idle domain (at most 16 KiB)"
    );
    for domain in domains.drain(..) {
        domain.unload().unwrap();
    }
    assert_eq!(
        host.domain_count(),
        0,
        "the registry forgets every unloaded domain"
    );
    fds.assert_back("after unloading every domain");
}
