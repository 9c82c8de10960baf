//! custody-wasi's tests: one binary (wasmtime's `tests/all` layout), a
//! module per theme. Every test takes `serial()` first (checked below):
//! many count fds, and almost every test opens some.

mod fds;
mod framework;
mod fuzz;
mod io;
mod leaks;
mod path;
mod pipes;
mod poll;
mod proc;

use custody_testkit::{assert_every_test_takes_serial_first, serial};

/// An fd-counting test is right only when nothing else opens fds beside it,
/// and almost every test here makes a domain: so every test takes
/// `serial()` first (it is not reentrant: a helper never takes it).
#[test]
fn every_test_takes_serial_first() {
    let _serial = serial();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    assert_every_test_takes_serial_first(&dir, 30);
}
