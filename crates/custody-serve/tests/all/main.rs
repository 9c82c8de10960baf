//! custody-serve's tests: one binary, a module per theme. Each starts a
//! real server on 127.0.0.1 port 0 and talks HTTP to it; every test stops
//! by itself (deadlines are short, reads have timeouts).

mod admin;
mod admin_api;
mod admin_refusals;
mod canary;
mod config;
mod custody;
mod dashboard;
mod faults;
mod limits;
mod metrics_families;
mod openmetrics;
mod reload;
mod streaming;
mod support;
mod wagi;

use custody_testkit::{SERIAL_FIRST, serial, tests_not_beginning_with};

/// Some tests count fds (a request, a reload, a shutdown leaves none
/// open), and every test opens some: so each runs alone, under `serial()`,
/// taken first either by hand or by `support::serial_runtime`.
#[test]
fn every_test_takes_serial_first() {
    let _serial = serial();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    let (tests, by_hand) = tests_not_beginning_with(&dir, SERIAL_FIRST);
    let (_, in_runtime) = tests_not_beginning_with(&dir, "serial_runtime(async {");
    let without: Vec<_> = by_hand.iter().filter(|t| in_runtime.contains(t)).collect();
    assert!(tests >= 28, "{tests} tests found in {}", dir.display());
    assert!(
        without.is_empty(),
        "tests that take no serial() first: {without:#?}"
    );
}
