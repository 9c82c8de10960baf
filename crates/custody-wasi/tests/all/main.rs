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
