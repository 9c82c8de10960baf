//! custody-http's tests: one binary (wasmtime's `tests/all` layout). Every
//! test takes `serial()` first (checked below): one counts fds, and every
//! test makes a domain, which opens some.

mod functions;

use custody_testkit::{assert_every_test_takes_serial_first, serial};

#[test]
fn every_test_takes_serial_first() {
    let _serial = serial();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    assert_every_test_takes_serial_first(&dir, 5);
}
