//! A WASI driver guest: `w_NAME` calls `wasi_snapshot_preview1.NAME` with
//! the same arguments, generated from the catalogue (so it imports every
//! function with the declared signature); `abi_NAME` does the same for a
//! few custody ABI functions (so a test can mix the two ABIs); memory
//! helpers read and write the results.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use custody_host::{AbiType, CallError, Domain, DomainConfig, Host, Val};
use custody_wasi::FUNCTIONS;

/// The WASI driver's text, with `data` as extra data segments.
pub fn wasi_driver(data: &str) -> String {
    let mut wat = String::from("(module\n");
    for f in FUNCTIONS {
        let params: Vec<&str> = f.params.iter().map(|(_, t)| wat_type(*t)).collect();
        let results: Vec<&str> = f.results.iter().map(|t| wat_type(*t)).collect();
        let signature = signature(&params, &results);
        wat += &format!(
            "  (import \"wasi_snapshot_preview1\" \"{0}\" (func ${0} {1}))\n",
            f.name, signature
        );
    }
    wat += r#"
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
"#;
    wat += data;
    for f in FUNCTIONS {
        let params: Vec<&str> = f.params.iter().map(|(_, t)| wat_type(*t)).collect();
        let results: Vec<&str> = f.results.iter().map(|t| wat_type(*t)).collect();
        let args: String = (0..params.len())
            .map(|i| format!(" (local.get {i})"))
            .collect();
        wat += &format!(
            "  (func (export \"w_{0}\") {1} (call ${0}{2}))\n",
            f.name,
            signature(&params, &results),
            args
        );
    }
    wat += r#"
  (func (export "abi_open") (param i32 i32 i32 i32) (result i32) (call $open (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_pipe") (param i32 i32) (result i32) (call $pipe (local.get 0) (local.get 1)))
  (func (export "abi_read") (param i32 i32 i32 i32) (result i32) (call $read (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_write") (param i32 i32 i32 i32) (result i32) (call $write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_close") (param i32) (result i32) (call $close (local.get 0)))
  (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
  (func (export "store8") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "load8") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "load16") (param i32) (result i32) (i32.load16_u (local.get 0)))
  (func (export "load64") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "trap") unreachable)
)
"#;
    wat
}

/// `(param ..) (result ..)`, each left out when empty.
fn signature(params: &[&str], results: &[&str]) -> String {
    let mut text = String::new();
    if !params.is_empty() {
        text += &format!("(param {})", params.join(" "));
    }
    if !results.is_empty() {
        text += &format!(" (result {})", results.join(" "));
    }
    text
}

fn wat_type(t: AbiType) -> &'static str {
    match t {
        AbiType::I32 => "i32",
        AbiType::I64 => "i64",
    }
}

/// Calls a WASI driver export with mixed arguments (`i32`s and `i64`s) and
/// returns its `i32` result (the errno), or 0 if it has none.
pub fn wcall(domain: &Domain, name: &str, args: &[Val]) -> i32 {
    let results = domain
        .call(name, args)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    results.first().map_or(0, |v| v.unwrap_i32())
}

/// Reads `len` bytes of the driver's memory at `at` (through `load8`).
pub fn peek(domain: &Domain, at: i32, len: i32) -> Vec<u8> {
    (at..at + len)
        .map(|i| crate::call(domain, "load8", &[i]) as u8)
        .collect()
}

/// Writes `bytes` into the driver's memory at `at` (through `store8`).
pub fn poke(domain: &Domain, at: i32, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        crate::call(domain, "store8", &[at + i as i32, i32::from(*b)]);
    }
}

/// Stores one iovec `(buf, len)` at `at`.
pub fn iovec(domain: &Domain, at: i32, buf: i32, len: i32) {
    crate::call(domain, "store", &[at, buf]);
    crate::call(domain, "store", &[at + 4, len]);
}

/// A domain of `host` made from `config`, with the WASI driver (plus
/// `extra` module fields) loaded as "main".
pub fn wasi_domain(host: &Host, config: DomainConfig, extra: &str) -> Domain {
    let module = host.compile(wasi_driver(extra).as_bytes()).unwrap();
    let domain = host.create_domain(config).unwrap();
    domain.load("main", &module).unwrap();
    domain
}

/// Aborts `domain`'s call in flight after `after`, from another thread
/// (join the handle once the call returned).
pub fn abort_after(domain: &Domain, after: Duration) -> JoinHandle<()> {
    let domain = domain.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        domain.abort();
    })
}

/// Asserts that a call was aborted, within `limit` of `started`: a wait
/// woken at once, not when it would have ended.
pub fn assert_aborted_within(
    outcome: &Result<Vec<Val>, CallError>,
    started: Instant,
    limit: Duration,
) {
    assert!(
        matches!(outcome, Err(CallError::Aborted { .. })),
        "{outcome:?}"
    );
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
}
