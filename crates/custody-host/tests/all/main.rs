//! custody-host's tests: one binary (wasmtime's `tests/all` layout), a
//! module per theme, so wasmtime and cranelift are linked once, not once
//! per file.
//!
//! Every test here takes `serial()` as its first statement, and
//! `every_test_takes_serial_first` checks it. Many tests count the process's
//! fds (`FdBaseline`), and almost any other test opens some meanwhile (a
//! host, a domain, a pipe, even reading a file), so a count is right only
//! when nothing else runs beside it. The cost is that these tests run one at
//! a time, as most of them already did in their own binaries.
//!
//! Two tests keep a process of their own, in `tests/`: `density.rs` (the
//! process's resident memory and memory maps with 100,000 domains) and
//! `soak.rs` (a process-wide diagnostics collector and stderr switch, and a
//! run as long as `CUSTODY_SOAK_SECS` says, by name).

mod abi;
mod caches;
mod contended_store;
mod docs;
mod domains;
mod doors;
mod durations;
mod embedding;
mod error_sources;
mod failed_calls;
mod fuzz;
mod host_process;
mod hostile;
mod manifests;
mod marshalling;
mod memory_cap;
mod pipe_handles;
mod reliability;
mod rename_race;
mod resolution;
mod roots;
mod stacks;
mod threads;
mod throttle;
mod timers;
mod unload;
mod unload_stress;
mod unloadability;

use std::path::Path;

use custody_testkit::{assert_every_test_takes_serial_first, serial};

#[test]
fn every_test_takes_serial_first() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    assert_every_test_takes_serial_first(&dir, 150);
}
