//! custody-wasi's tests: one binary (wasmtime's `tests/all` layout), a
//! module per theme. Every test takes `serial()` when it opens fds, and
//! those that count them compare against a baseline.

mod fds;
mod framework;
mod fuzz;
mod io;
mod leaks;
mod path;
mod poll;
mod proc;

use std::path::Path;

use custody_testkit::{assert_every_test_takes_serial_first, serial};

/// The tests share one process and some count its fds: none may run
/// beside another.
#[test]
fn every_test_takes_serial_first() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    assert_every_test_takes_serial_first(&dir, 30);
}
