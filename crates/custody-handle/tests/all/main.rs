//! custody-handle's integration tests: one binary (wasmtime's `tests/all`
//! layout), a module per theme.
//!
//! Every test here takes `serial()` (`custody_handle::testing`) as its
//! first statement, and `every_test_takes_serial_first` checks it:
//! `os_resources` counts the process's fds and closes raw fds behind
//! handles' backs, and the others open fds meanwhile (`env_config` runs
//! children through pipes), so a count is right only when nothing else
//! runs beside it.
//!
//! `tests/diagnostics_rate.rs` keeps a process of its own: it sets the
//! process-wide rate limit of diagnostics and counts what the limit lets
//! through, which every other test's diagnostics would change (and its
//! limit would cut theirs).

mod env_config;
mod os_resources;
mod stress;
mod table_model;

use std::path::Path;

use custody_handle::testing::{assert_every_test_takes_serial_first, serial};

#[test]
fn every_test_takes_serial_first() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    assert_every_test_takes_serial_first(&dir, 20);
}
