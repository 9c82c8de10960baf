//! The guests and raw-wasmtime helpers the boundary benchmark
//! (`benches/boundary.rs`) and its instruction count
//! (`examples/boundary_instructions.rs`) share, so both measure the same
//! code.

use custody_host::Host;
use wasmtime::Store;

/// Calls `MODULE.write(handle at 0, 16, 1, 8)` `n` times.
pub const WRITE_CALLER: &str = r#"
(module
  (import "{MODULE}" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $n i32) (result i32)
    (local $sum i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $sum (i32.add (local.get $sum)
          (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 8))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (local.get $sum))
  (func (export "set") (param i32) (i32.store (i32.const 0) (local.get 0)))
)
"#;

/// Calls `env.bump(i)` `n` times.
pub const BUMP_CALLER: &str = r#"
(module
  (import "env" "bump" (func $bump (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $n i32) (result i32)
    (local $sum i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $sum (i32.add (local.get $sum) (call $bump (local.get $n))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (local.get $sum))
)
"#;

pub const SMALL: &str =
    r#"(module (memory (export "memory") 1) (func (export "run") (result i32) i32.const 7))"#;

/// A larger module, shaped like a small compiled program: two pages of
/// memory with a 4 KiB data segment, eight mutable globals, 64 functions
/// in a table its element segment fills, and `run` calling one of them
/// indirectly.
pub fn larger() -> String {
    let mut wat = String::from("(module (memory (export \"memory\") 2)\n");
    for g in 0..8 {
        wat.push_str(&format!(
            "(global $g{g} (export \"g{g}\") (mut i32) (i32.const {g}))\n"
        ));
    }
    wat.push_str(
        "(type $unary (func (param i32) (result i32)))\n(table 64 funcref)\n(elem (i32.const 0)",
    );
    for f in 0..64 {
        wat.push_str(&format!(" $f{f}"));
    }
    wat.push_str(")\n");
    wat.push_str(&format!(
        "(data (i32.const 1024) \"{}\")\n",
        "custody!".repeat(512)
    ));
    for f in 0..64 {
        wat.push_str(&format!(
            "(func $f{f} (type $unary) (i32.add (i32.mul (local.get 0) (i32.const {f})) \
             (i32.load (i32.const {}))))\n",
            1024 + f * 4
        ));
    }
    wat.push_str(
        "(func (export \"run\") (result i32) \
         (call_indirect (type $unary) (i32.const 7) (i32.const 5))))",
    );
    wat
}

/// A token resource of a kind `write` does not accept.
pub struct Token;

impl custody_handle::ReleaseHandle for Token {
    fn is_invalid(&self) -> bool {
        false
    }
    fn release_handle(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn raw_value(&self) -> u64 {
        0
    }
}

/// A raw wasmtime store on the host's engine, with the same epoch setup a
/// domain has.
pub fn raw_store<T>(host: &Host, data: T) -> Store<T> {
    let mut store = Store::new(host.engine(), data);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Continue(1)));
    store
}
