//! What the module caches hold: `module_cache_entries` bounds the module
//! cache and the prepared-instance cache, `Host::cache_stats` reports them,
//! and the fds they keep (wasmtime's memory image memfds, one per module
//! that initializes memory) grow no further than their entries.
//!
//! Every test takes `serial()`: they count fds.

use custody_host::{DomainConfig, Host, Module, Policy};
use custody_testkit::*;

/// The driver (custody imports only, so it is prepared for instantiation
/// too) with a data segment of its own: a distinct module, with a memory
/// image, for each `n`.
fn distinct(host: &Host, n: u32) -> Module {
    host.compile(driver(&data(4096, &format!("module {n}"))).as_bytes())
        .unwrap()
}

/// Loads `module` into a fresh domain (its memory image is made at the
/// first instantiation), calls it and unloads the domain.
fn load_once(host: &Host, module: &Module) {
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", module).unwrap();
    assert_eq!(call(&domain, "load8", &[4096]), i32::from(b'm'));
    domain.unload().unwrap();
}

fn host_caching(entries: usize) -> Host {
    let host = host_with(Policy {
        module_cache_entries: entries,
        ..Policy::default()
    })
    .0;
    // Whatever the process opens once (the first compilation, the first
    // domain) is open before the baseline.
    let warm = host
        .compile(b"(module (memory 1) (data (i32.const 0) \"w\"))")
        .unwrap();
    load_once_plain(&host, &warm);
    host.clear_module_cache();
    host
}

fn load_once_plain(host: &Host, module: &Module) {
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", module).unwrap();
    domain.unload().unwrap();
}

#[test]
fn module_cache_entries_bounds_both_caches_and_the_fds_they_keep() {
    let _serial = serial();
    const CAP: usize = 4;
    let host = host_caching(CAP);
    let baseline = FdBaseline::now();
    let images_before = host.cache_stats().process_memory_image_fds.unwrap();
    for n in 0..(3 * CAP as u32) {
        let module = distinct(&host, n);
        load_once(&host, &module);
        let stats = host.cache_stats();
        assert!(
            stats.modules <= CAP && stats.prepared <= CAP,
            "{n}: {stats:?}"
        );
    }
    let stats = host.cache_stats();
    assert_eq!(
        (stats.limit, stats.modules, stats.prepared),
        (CAP, CAP, CAP)
    );
    // Both caches keep the newest modules: the same four.
    assert_eq!(stats.distinct_modules, CAP, "{stats:?}");
    assert!(stats.code_bytes > 0, "{stats:?}");
    // What is still open is what the cached modules keep: one memory image
    // each, and nothing else.
    let grown = open_fds() - baseline.0;
    let images = stats.process_memory_image_fds.unwrap() - images_before;
    assert_eq!(grown, images, "only memory images stay open");
    assert!(grown <= stats.distinct_modules, "{grown} fds for {stats:?}");
    assert!(stats.process_memory_image_bytes.unwrap() > 0, "{stats:?}");
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["distinct_modules"], CAP);
    // Emptied, the caches give every fd back.
    host.clear_module_cache();
    let stats = host.cache_stats();
    assert_eq!(
        (stats.modules, stats.prepared, stats.distinct_modules),
        (0, 0, 0)
    );
    assert_eq!(stats.code_bytes, 0);
    baseline.assert_back("after clear_module_cache");
}

#[test]
fn a_cap_of_0_keeps_nothing() {
    let _serial = serial();
    let host = host_caching(0);
    let baseline = FdBaseline::now();
    for n in 0..5 {
        let module = distinct(&host, n);
        load_once(&host, &module);
        let stats = host.cache_stats();
        assert_eq!((stats.modules, stats.prepared, stats.code_bytes), (0, 0, 0));
        // The module a test still holds keeps its own image until dropped.
    }
    let again = distinct(&host, 0);
    load_once(&host, &again);
    drop(again);
    baseline.assert_back("a cap of 0, every module dropped and unloaded");
}

#[test]
fn the_module_cache_counts_its_hits_and_misses() {
    let _serial = serial();
    let host = host();
    let wat = driver("");
    let before = host.cache_stats();
    assert_eq!((before.hits, before.misses), (0, 0));
    let first = host.compile(wat.as_bytes()).unwrap();
    let again = host.compile(wat.as_bytes()).unwrap();
    assert!(Module::same(&first, &again), "the second is the cached one");
    assert!(host.compile(b"(module (func $oops").is_err());
    let stats = host.cache_stats();
    // The first and the malformed one compiled (a miss each); the second
    // was found.
    assert_eq!((stats.hits, stats.misses), (1, 2));
    host.clear_module_cache();
    host.compile(wat.as_bytes()).unwrap();
    assert_eq!(host.cache_stats().misses, 3, "a cleared cache misses");
}
