//! Runs one boundary path `N` times beside its raw wasmtime baseline, for
//! counting instructions with callgrind: the count of `N` runs minus the
//! count of 0 runs, over `N`, is one run's instructions, the same from run
//! to run whatever else the machine is doing (docs/PERFORMANCE.md,
//! `scripts/boundary-instructions.sh` runs every pair).
//!
//! | path | custody | raw wasmtime |
//! | --- | --- | --- |
//! | an ABI call failing `E_KIND` after lookup and pin | `abi-kind` | `raw-kind-memory` (a `func_wrap` reading a `Memory` kept in store data), `raw-kind` |
//! | a typed embedder function | `embedder` | `raw-embedder` |
//! | create + load + call + unload, one page | `lifecycle` | `raw-lifecycle` (`Store::new` + `InstancePre::instantiate` + call + drop) |
//!
//! ```sh
//! cargo build --release -p custody-host --example boundary_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/boundary_instructions abi-kind 100000
//! ```

use std::hint::black_box;
use std::sync::Arc;

use custody_host::{AbiError, Allocation, DomainConfig, GuestCall, Host, Policy, Val};
use wasmtime::{Caller, Linker, Memory, Module, Store};

/// Calls `MODULE.write(handle at 0, 16, 1, 8)` `n` times.
const WRITE_CALLER: &str = r#"
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
const BUMP_CALLER: &str = r#"
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

const SMALL: &str =
    r#"(module (memory (export "memory") 1) (func (export "run") (result i32) i32.const 7))"#;

/// A token resource of a kind `write` does not accept.
struct Token;

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

/// A raw store on the host's engine with a domain's epoch setup.
fn raw_store<T>(host: &Host, data: T) -> Store<T> {
    let mut store = Store::new(host.engine(), data);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Continue(1)));
    store
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_default();
    let n: i32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    // A small pool with capped memories: the pooling allocator (the
    // default) then reserves little enough address space to run under
    // valgrind, which refuses the default reservation (the host would fall
    // back to on-demand allocation and count a different path).
    let policy = Policy {
        pool_size: 64,
        memory_limit: Some(1 << 20),
        ..Policy::default()
    };
    let host = Host::builder(policy)
        .log(Arc::new(|_, _, _| {}))
        .func_wrap(
            "env",
            "bump",
            &[],
            |_: &mut GuestCall<'_>, x: i32| -> Result<i32, AbiError> { Ok(x.wrapping_add(1)) },
        )
        .build()
        .expect("host");
    assert_eq!(
        host.allocation(),
        Allocation::Pooling,
        "the pooling allocator"
    );
    match path.as_str() {
        "abi-kind" => {
            let module = host
                .compile(WRITE_CALLER.replace("{MODULE}", "custody").as_bytes())
                .expect("module");
            let domain = host.create_domain(DomainConfig::new()).expect("domain");
            domain.load("caller", &module).expect("load");
            let id = domain.insert_handle(Token).expect("handle");
            domain
                .call("set", &[Val::I32(id.raw() as i32)])
                .expect("set");
            let result = domain.call("run", &[Val::I32(n)]).expect("run");
            black_box(result);
            domain.unload().expect("unload");
        }
        "raw-kind" | "raw-kind-memory" => {
            let module = Module::new(host.engine(), WRITE_CALLER.replace("{MODULE}", "env"))
                .expect("module");
            let mut linker = Linker::<Option<Memory>>::new(host.engine());
            let read_memory = path == "raw-kind-memory";
            linker
                .func_wrap(
                    "env",
                    "write",
                    move |caller: Caller<'_, Option<Memory>>, h: i32, _: i32, _: i32, _: i32| {
                        if read_memory && let Some(memory) = *caller.data() {
                            black_box(memory.data(&caller).len());
                        }
                        black_box(h);
                        AbiError::Kind.code()
                    },
                )
                .expect("func_wrap");
            let mut store = raw_store(&host, None);
            let instance = linker.instantiate(&mut store, &module).expect("instance");
            *store.data_mut() = instance.get_memory(&mut store, "memory");
            let run = instance
                .get_typed_func::<i32, i32>(&mut store, "run")
                .expect("run");
            black_box(run.call(&mut store, n).expect("call"));
        }
        "embedder" => {
            let module = host.compile(BUMP_CALLER.as_bytes()).expect("module");
            let domain = host.create_domain(DomainConfig::new()).expect("domain");
            domain.load("caller", &module).expect("load");
            black_box(domain.call("run", &[Val::I32(n)]).expect("run"));
            domain.unload().expect("unload");
        }
        "raw-embedder" => {
            let module = host.compile(BUMP_CALLER.as_bytes()).expect("module");
            let mut linker = Linker::new(host.engine());
            linker
                .func_wrap("env", "bump", |_: Caller<'_, ()>, x: i32| -> i32 {
                    x.wrapping_add(1)
                })
                .expect("func_wrap");
            let mut store = raw_store(&host, ());
            let instance = linker.instantiate(&mut store, &module).expect("instance");
            let run = instance
                .get_typed_func::<i32, i32>(&mut store, "run")
                .expect("run");
            black_box(run.call(&mut store, n).expect("call"));
        }
        "lifecycle" => {
            let module = host.compile(SMALL.as_bytes()).expect("module");
            for _ in 0..n {
                let domain = host.create_domain(DomainConfig::new()).expect("domain");
                domain.load("m", &module).expect("load");
                black_box(domain.call("run", &[]).expect("call"));
                black_box(domain.unload().expect("unload"));
            }
        }
        "raw-lifecycle" => {
            let module = host.compile(SMALL.as_bytes()).expect("module");
            let pre = Linker::<()>::new(host.engine())
                .instantiate_pre(&module)
                .expect("pre");
            for _ in 0..n {
                let mut store = raw_store(&host, ());
                let instance = pre.instantiate(&mut store).expect("instance");
                let run = instance
                    .get_typed_func::<(), i32>(&mut store, "run")
                    .expect("run");
                black_box(run.call(&mut store, ()).expect("call"));
            }
        }
        other => panic!(
            "path {other:?}: abi-kind, raw-kind, raw-kind-memory, embedder, raw-embedder, lifecycle or raw-lifecycle"
        ),
    }
}
