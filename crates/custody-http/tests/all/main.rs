//! custody-http's tests: one binary (wasmtime's `tests/all` layout).

mod functions;
