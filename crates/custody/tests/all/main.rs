//! The command line's tests: one binary (wasmtime's `tests/all` layout), a
//! module per theme, sharing `common`. Each runs the built `custody` as a
//! child process and counts nothing of this process, so they run in
//! parallel; a scratch module gets a directory of its own.
//!
//! The official WASI suite keeps a binary of its own,
//! `tests/wasi_testsuite.rs`: CI runs it by name for its summary, and the
//! build script's `cfg(no_wasi_testsuite)` is about it alone.

mod cli;
mod cli_admin;
mod cli_inputs;
mod cli_ledger;
mod cli_manifest;
mod cli_serve;
mod cli_wasi;
mod common;
mod dashboard;
mod deploy;
// Only in a build with the `otlp` feature: CI runs it as
// `cargo test -p custody --features otlp --test all otlp::`.
#[cfg(feature = "otlp")]
mod otlp;
mod replicas;
mod serve_process;
