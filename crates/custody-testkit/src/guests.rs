//! Guests and hosts for tests: a driver guest that forwards each export
//! straight to one ABI import (so a test can call the ABI with any
//! arguments it likes), hosts whose guest log lines are kept, and
//! warmed-up modules for fd baselines.

use std::sync::{Arc, Mutex};

use custody_host::{Domain, DomainConfig, Host, LogSink, Module, Policy, Val};

/// The driver: `abi_NAME` calls `custody.NAME` with the same arguments;
/// `store`/`load`/`store8` touch memory; `trap` and `spin` misbehave.
/// `{DATA}` is replaced with extra data segments.
pub const DRIVER: &str = r#"
(module
  (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "custody" "close" (func $close (param i32) (result i32)))
  (import "custody" "dup" (func $dup (param i32 i32) (result i32)))
  (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
  (import "custody" "poll" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (import "custody" "last_error" (func $last_error (result i32)))
  (import "custody" "critical_enter" (func $critical_enter (result i32)))
  (import "custody" "critical_exit" (func $critical_exit (result i32)))
  (memory (export "memory") 1)
  {DATA}
  (func (export "abi_log") (param i32 i32 i32) (result i32) (call $log (local.get 0) (local.get 1) (local.get 2)))
  (func (export "abi_open") (param i32 i32 i32 i32) (result i32) (call $open (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_read") (param i32 i32 i32 i32) (result i32) (call $read (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_write") (param i32 i32 i32 i32) (result i32) (call $write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_close") (param i32) (result i32) (call $close (local.get 0)))
  (func (export "abi_dup") (param i32 i32) (result i32) (call $dup (local.get 0) (local.get 1)))
  (func (export "abi_pipe") (param i32 i32) (result i32) (call $pipe (local.get 0) (local.get 1)))
  (func (export "abi_poll") (param i32 i32 i32 i32) (result i32) (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "abi_sleep") (param i32) (result i32) (call $sleep (local.get 0)))
  (func (export "abi_last_error") (result i32) (call $last_error))
  (func (export "abi_critical_enter") (result i32) (call $critical_enter))
  (func (export "abi_critical_exit") (result i32) (call $critical_exit))
  (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
  (func (export "store8") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "load8") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "trap") unreachable)
  (func (export "spin") (loop $l (br $l)))
  ;; open a pipe, then trap with both ends held
  (func (export "pipe_then_trap") (drop (call $pipe (i32.const 0) (i32.const 4))) unreachable)
)
"#;

/// The driver with `data` as extra data segments (WAT text).
pub fn driver(data: &str) -> String {
    DRIVER.replace("{DATA}", data)
}

/// A data segment placing `text` at `offset`.
pub fn data(offset: u32, text: &str) -> String {
    format!("(data (i32.const {offset}) \"{text}\")")
}

/// Guest log lines as a test keeps them: (domain, level, text).
pub type Lines = Arc<Mutex<Vec<(u64, u8, String)>>>;

/// A host as custody ships it (the `custody` ABI and WASI preview 1)
/// whose guest log lines are kept, not printed.
pub fn host_with(policy: Policy) -> (Host, Lines) {
    crate::quiet();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let log: LogSink = Arc::new(move |domain, level, text| {
        sink.lock().unwrap().push((domain, level, text.to_string()));
    });
    let host = Host::builder(policy)
        .log(log)
        .extension(custody_wasi::Wasi)
        .build()
        .unwrap();
    (host, lines)
}

/// A host with the default policy whose guest log lines are dropped.
pub fn host() -> Host {
    host_with(Policy::default()).0
}

/// A domain with the driver (plus `data`) loaded as "main".
pub fn driver_domain(host: &Host, config: DomainConfig, data: &str) -> (Domain, Module) {
    let module = host.compile(driver(data).as_bytes()).unwrap();
    let domain = host.create_domain(config).unwrap();
    domain.load("main", &module).unwrap();
    (domain, module)
}

/// Calls an export with i32 arguments and returns its i32 result (or 0 if it
/// has none).
pub fn call(domain: &Domain, name: &str, args: &[i32]) -> i32 {
    let args: Vec<Val> = args.iter().map(|&a| Val::I32(a)).collect();
    let results = domain
        .call(name, &args)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    results.first().map_or(0, |v| v.unwrap_i32())
}

/// Compiles `wat` and instantiates it once in a throwaway domain, so
/// wasmtime's per-module memory image (a memfd kept while the module lives)
/// exists before a test takes its fd baseline.
pub fn warmed_module(host: &Host, wat: &str) -> Module {
    warm(host, host.compile(wat.as_bytes()).unwrap())
}

/// Instantiates `module` once in a throwaway domain (see `warmed_module`).
pub fn warm(host: &Host, module: Module) -> Module {
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("warm-up", &module).unwrap();
    domain.unload().unwrap();
    module
}
