//! Runs one boundary path `N` times beside its raw wasmtime baseline, for
//! counting instructions with callgrind: the count of `N` runs minus the
//! count of 0 runs, over `N`, is one run's instructions, the same from run
//! to run whatever else the machine is doing (docs/PERFORMANCE.md,
//! `scripts/boundary-instructions.sh` runs every pair).
//!
//! | path | custody | raw wasmtime |
//! | --- | --- | --- |
//! | an ABI call failing `E_KIND` after lookup and pin | `abi-kind` | `raw-kind-memory` (a `func_wrap` reading a `Memory` kept in store data), `raw-kind` |
//! | a typed embedder function | `embedder` | `raw-embedder`, `raw-embedder-fallible` (the closure returns `wasmtime::Result`, always `Ok`), `raw-embedder-failing` (it returns `Err` for one argument) |
//! | create + load + call + unload, one page | `lifecycle` | `raw-lifecycle` (`Store::new` + `InstancePre::instantiate` + call + drop) |
//! | the same, a larger module ([`boundary_guests::larger`]) | `lifecycle-larger` | `raw-lifecycle-larger` |
//!
//! ```sh
//! cargo build --release -p custody-host --example boundary_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/boundary_instructions abi-kind 100000
//! ```

use std::hint::black_box;
use std::sync::Arc;

use custody_host::{AbiError, Allocation, DomainConfig, GuestCall, Host, Policy, Val};
use wasmtime::{Caller, Linker, Memory, Module};

#[path = "../benches/common/boundary_guests.rs"]
mod boundary_guests;

use boundary_guests::{BUMP_CALLER, SMALL, Token, WRITE_CALLER, larger, raw_store};

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
        // A freed slot's memory handed back to the kernel (`madvise`, one
        // system call callgrind does not count), not zeroed in place:
        // callgrind counts glibc's `rep stosb` byte by byte, so a kept page
        // would add about 65,000 "instructions" (a microsecond or two) to
        // both lifecycles and bury the difference between them.
        pool_keep_resident: 0,
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
        "raw-embedder" | "raw-embedder-fallible" | "raw-embedder-failing" => {
            let module = host.compile(BUMP_CALLER.as_bytes()).expect("module");
            let mut linker = Linker::new(host.engine());
            if path == "raw-embedder" {
                linker.func_wrap("env", "bump", |_: Caller<'_, ()>, x: i32| -> i32 {
                    x.wrapping_add(1)
                })
            } else if path == "raw-embedder-failing" {
                // A function whose failure path is live (it traps on one
                // argument the compiler cannot rule out).
                linker.func_wrap(
                    "env",
                    "bump",
                    |_: Caller<'_, ()>, x: i32| -> wasmtime::Result<i32> {
                        let x = black_box(x);
                        if x == i32::MIN {
                            return Err(wasmtime::Error::msg("i32::MIN"));
                        }
                        Ok(x.wrapping_add(1))
                    },
                )
            } else {
                // A function that can trap, as every custody function can
                // (an abort, a failed body): its result is a `Result`.
                linker.func_wrap(
                    "env",
                    "bump",
                    |_: Caller<'_, ()>, x: i32| -> wasmtime::Result<i32> {
                        Ok(black_box(x).wrapping_add(1))
                    },
                )
            }
            .expect("func_wrap");
            let mut store = raw_store(&host, ());
            let instance = linker.instantiate(&mut store, &module).expect("instance");
            let run = instance
                .get_typed_func::<i32, i32>(&mut store, "run")
                .expect("run");
            black_box(run.call(&mut store, n).expect("call"));
        }
        "lifecycle" | "lifecycle-larger" => {
            let module = lifecycle_module(&host, &path);
            for _ in 0..n {
                let domain = host.create_domain(DomainConfig::new()).expect("domain");
                domain.load("m", &module).expect("load");
                black_box(domain.call("run", &[]).expect("call"));
                black_box(domain.unload().expect("unload"));
            }
        }
        "raw-lifecycle" | "raw-lifecycle-larger" => {
            let module = lifecycle_module(&host, &path);
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
            "path {other:?}: abi-kind, raw-kind, raw-kind-memory, embedder, raw-embedder, raw-embedder-fallible, raw-embedder-failing, lifecycle, raw-lifecycle, lifecycle-larger or raw-lifecycle-larger"
        ),
    }
}

/// The module a lifecycle path runs: one page, or the larger one for a
/// path ending `-larger`.
fn lifecycle_module(host: &Host, path: &str) -> Module {
    let wat = if path.ends_with("-larger") {
        larger()
    } else {
        SMALL.to_string()
    };
    host.compile(wat.as_bytes()).expect("module")
}
