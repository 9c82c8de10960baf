//! The guest boundary against raw wasmtime, measured in the same run on the
//! same engine (the host's: pooling allocator, epoch interruption):
//!
//! - **ABI call**: a guest calling `custody.write` on a handle of the wrong
//!   kind (the handle is looked up and pinned, the call fails with `E_KIND`,
//!   no syscall) vs a raw `func_wrap` host function of the same signature,
//!   and one that also reads its caller's memory kept in store data.
//! - **ABI write**: `custody.write` of one byte to /dev/null vs a raw host
//!   function doing the same write on an fd passed as an `i32`.
//! - **Embedder call**: a typed embedder function (`HostBuilder::func_wrap`)
//!   vs the same closure registered with wasmtime's `Linker::func_wrap`.
//! - **Domain lifecycle**: create + load + call + unload vs raw
//!   `Store::new` + instantiate + call + drop, for a one-page module and a
//!   larger one (`boundary_guests::larger`).
//! - **Compilation**: a module of 2,000 functions, compiled by `Host::compile`
//!   on a cache miss and on a hit, vs `Module::new` (parallel compilation).
//! - **Allocation strategies**: the domain lifecycle with dense allocation,
//!   and a guest's memory accesses under each strategy.
//! - **Unload** of a domain holding 100,000 handles, and 10,000 pipe fds.
//!
//! Run: `cargo bench -p custody-host --bench boundary`

use std::fs::File;
use std::hint::black_box;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custody_handle::Fd;
use custody_host::{AbiError, Allocation, Domain, DomainConfig, GuestCall, Host, Policy, Val};
use wasmtime::{Caller, Extern, Instance, Linker, Memory, Module, Store};

#[path = "common/boundary_guests.rs"]
mod boundary_guests;

use boundary_guests::{BUMP_CALLER, SMALL, Token, WRITE_CALLER, larger, raw_store};

const CALLS: i32 = 1000;

/// A host whose guests' log lines go nowhere.
fn quiet_host(policy: Policy) -> Host {
    Host::with_log(policy, Arc::new(|_, _, _| {})).unwrap()
}

fn host() -> Host {
    Host::builder(Policy::default())
        .log(Arc::new(|_, _, _| {}))
        .func_wrap(
            "env",
            "bump",
            &[],
            |_: &mut GuestCall<'_>, x: i32| -> Result<i32, AbiError> { Ok(x.wrapping_add(1)) },
        )
        .build()
        .unwrap()
}

/// A domain running the `custody.write` caller, with `resource` as the
/// handle it writes to.
fn write_caller(host: &Host, resource: impl custody_handle::ReleaseHandle) -> Domain {
    let module = host
        .compile(WRITE_CALLER.replace("{MODULE}", "custody").as_bytes())
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("caller", &module).unwrap();
    let id = domain.insert_handle(resource).unwrap();
    domain.call("set", &[Val::I32(id.raw() as i32)]).unwrap();
    domain
}

/// `module` instantiated by `linker` on a raw store (see [`raw_store`]).
fn raw_instance(host: &Host, linker: &Linker<()>, module: &Module) -> (Store<()>, Instance) {
    let mut store = raw_store(host, ());
    let instance = linker.instantiate(&mut store, module).unwrap();
    (store, instance)
}

fn abi_call(c: &mut Criterion) {
    let host = host();
    let mut g = c.benchmark_group("ABI call, E_KIND after lookup and pin (per call)");
    g.throughput(Throughput::Elements(CALLS as u64));

    let raw = Module::new(host.engine(), WRITE_CALLER.replace("{MODULE}", "env")).unwrap();
    let mut linker = Linker::new(host.engine());
    linker
        .func_wrap(
            "env",
            "write",
            |_: Caller<'_, ()>, h: i32, _ptr: i32, _len: i32, _out: i32| -> i32 {
                black_box(h);
                AbiError::Kind.code()
            },
        )
        .unwrap();
    let (mut store, instance) = raw_instance(&host, &linker, &raw);
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    g.bench_function("baseline: raw wasmtime func_wrap", |b| {
        b.iter(|| black_box(run.call(&mut store, black_box(CALLS)).unwrap()))
    });

    // The same, reading the caller's memory kept in store data (what an
    // ABI function needs before it can touch guest pointers).
    let mut reading = Linker::<Option<Memory>>::new(host.engine());
    reading
        .func_wrap(
            "env",
            "write",
            |caller: Caller<'_, Option<Memory>>, h: i32, _ptr: i32, _len: i32, _out: i32| -> i32 {
                if let Some(memory) = *caller.data() {
                    black_box(memory.data(&caller).len());
                }
                black_box(h);
                AbiError::Kind.code()
            },
        )
        .unwrap();
    let mut reading_store = Store::new(host.engine(), None);
    reading_store.set_epoch_deadline(1);
    reading_store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Continue(1)));
    let instance = reading.instantiate(&mut reading_store, &raw).unwrap();
    *reading_store.data_mut() = instance.get_memory(&mut reading_store, "memory");
    let reading_run = instance
        .get_typed_func::<i32, i32>(&mut reading_store, "run")
        .unwrap();
    g.bench_function("baseline: raw wasmtime func_wrap reading its memory", |b| {
        b.iter(|| {
            black_box(
                reading_run
                    .call(&mut reading_store, black_box(CALLS))
                    .unwrap(),
            )
        })
    });

    let domain = write_caller(&host, Token);
    let result = domain.call("run", &[Val::I32(1)]).unwrap()[0].unwrap_i32();
    assert_eq!(
        result,
        AbiError::Kind.code(),
        "the bench measures the E_KIND path"
    );
    g.bench_function("custody write(handle of the wrong kind)", |b| {
        b.iter(|| black_box(domain.call("run", &[Val::I32(CALLS)]).unwrap()))
    });
    g.finish();
    domain.unload().unwrap();
}

fn embedder_call(c: &mut Criterion) {
    let host = host();
    let mut g = c.benchmark_group("embedder host function (per call)");
    g.throughput(Throughput::Elements(CALLS as u64));

    let module = host.compile(BUMP_CALLER.as_bytes()).unwrap();
    let mut linker = Linker::new(host.engine());
    linker
        .func_wrap("env", "bump", |_: Caller<'_, ()>, x: i32| -> i32 {
            x.wrapping_add(1)
        })
        .unwrap();
    let (mut store, instance) = raw_instance(&host, &linker, &module);
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    g.bench_function("baseline: raw wasmtime func_wrap", |b| {
        b.iter(|| black_box(run.call(&mut store, black_box(CALLS)).unwrap()))
    });

    // A host function that can fail (as every custody function can: an
    // abort traps) goes through wasmtime's trap-catching path.
    let mut fallible = Linker::new(host.engine());
    fallible
        .func_wrap(
            "env",
            "bump",
            |_: Caller<'_, ()>, x: i32| -> wasmtime::Result<i32> { Ok(x.wrapping_add(1)) },
        )
        .unwrap();
    let (mut fallible_store, instance) = raw_instance(&host, &fallible, &module);
    let fallible_run = instance
        .get_typed_func::<i32, i32>(&mut fallible_store, "run")
        .unwrap();
    g.bench_function("baseline: raw wasmtime func_wrap returning Result", |b| {
        b.iter(|| {
            black_box(
                fallible_run
                    .call(&mut fallible_store, black_box(CALLS))
                    .unwrap(),
            )
        })
    });

    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("caller", &module).unwrap();
    g.bench_function("custody typed embedder function", |b| {
        b.iter(|| black_box(domain.call("run", &[Val::I32(CALLS)]).unwrap()))
    });
    g.finish();
    domain.unload().unwrap();
}

/// One domain's whole life: create, load, call, unload.
fn domain_lifecycle(host: &Host, module: &Module) -> custody_host::UnloadReport {
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("m", module).unwrap();
    black_box(domain.call("run", &[]).unwrap());
    domain.unload().unwrap()
}

fn lifecycle(c: &mut Criterion) {
    let host = host();
    let mut g = c.benchmark_group("domain lifecycle: create + load + call + unload");
    for (wat, which) in [(SMALL.to_string(), ""), (larger(), ", larger module")] {
        let module = host.compile(wat.as_bytes()).unwrap();
        let linker: Linker<()> = Linker::new(host.engine());
        let pre = linker.instantiate_pre(&module).unwrap();
        g.bench_function(
            format!("baseline: raw Store + instantiate + call + drop{which}"),
            |b| {
                b.iter(|| {
                    let mut store = raw_store(&host, ());
                    let instance = pre.instantiate(&mut store).unwrap();
                    let run = instance
                        .get_typed_func::<(), i32>(&mut store, "run")
                        .unwrap();
                    black_box(run.call(&mut store, ()).unwrap());
                })
            },
        );
        g.bench_function(
            format!("custody create_domain + load + call + unload{which}"),
            |b| b.iter(|| black_box(domain_lifecycle(&host, &module))),
        );
    }
    g.finish();
}

/// A module of `n` small functions, each exported.
fn large_module(n: usize) -> String {
    let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
    for i in 0..n {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) (local i32) \
             (local.set 1 (i32.mul (local.get 0) (i32.const {i}))) \
             (if (i32.gt_s (local.get 1) (i32.const 100)) (then (local.set 1 (i32.sub (local.get 1) (i32.const 3))))) \
             (i32.add (local.get 1) (i32.load (i32.const {}))))\n",
            (i * 4) % 60000
        ));
    }
    wat.push(')');
    wat
}

fn compilation(c: &mut Criterion) {
    let host = host();
    let wasm = wat::parse_str(large_module(2000)).unwrap();
    let mut g = c.benchmark_group("compile a 2,000-function module");
    g.sample_size(10);
    g.bench_function("baseline: wasmtime Module::new (parallel)", |b| {
        b.iter(|| black_box(Module::new(host.engine(), &wasm).unwrap()))
    });
    g.bench_function("custody Host::compile, cache miss", |b| {
        b.iter(|| {
            host.clear_module_cache();
            black_box(host.compile(&wasm).unwrap())
        })
    });
    host.compile(&wasm).unwrap();
    g.bench_function("custody Host::compile, cache hit", |b| {
        b.iter(|| black_box(host.compile(&wasm).unwrap()))
    });
    g.finish();
}

/// Reads and writes every 4-byte word of its first page, `n` times.
const CHURN: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "churn") (param $n i32) (result i32)
    (local $i i32) (local $sum i32)
    (loop $rounds
      (local.set $i (i32.const 0))
      (loop $words
        (local.set $sum (i32.add (local.get $sum) (i32.load (local.get $i))))
        (i32.store (local.get $i) (local.get $sum))
        (local.tee $i (i32.add (local.get $i) (i32.const 4)))
        (br_if $words (i32.lt_u (i32.const 65536))))
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $rounds))
    (local.get $sum))
)
"#;

/// The price of each allocation strategy on guest memory accesses: `Dense`
/// trades bounds checks for density.
fn memory_access(c: &mut Criterion) {
    let mut g = c.benchmark_group("guest memory access, 16,384 loads + stores");
    g.throughput(Throughput::Elements(16_384 * 2));
    for allocation in [Allocation::Pooling, Allocation::OnDemand, Allocation::Dense] {
        let host = quiet_host(Policy {
            allocation,
            ..Policy::default()
        });
        let module = host.compile(CHURN.as_bytes()).unwrap();
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("churn", &module).unwrap();
        g.bench_function(allocation.name(), |b| {
            b.iter(|| black_box(domain.call("churn", &[Val::I32(1)]).unwrap()))
        });
        domain.unload().unwrap();
    }
    g.finish();
}

fn dense_lifecycle(c: &mut Criterion) {
    let host = quiet_host(Policy {
        allocation: Allocation::Dense,
        ..Policy::default()
    });
    let module = host.compile(SMALL.as_bytes()).unwrap();
    let mut g = c.benchmark_group("domain lifecycle: create + load + call + unload");
    g.bench_function("custody, dense allocation", |b| {
        b.iter(|| black_box(domain_lifecycle(&host, &module)))
    });
    g.finish();
}

/// A write that reaches the OS: `custody.write` of one byte to /dev/null
/// through a handle vs a raw host function that takes the fd as an `i32`,
/// looks the caller's memory up as raw wasmtime code does, and writes.
fn abi_write_syscall(c: &mut Criterion) {
    let host = host();
    let mut g = c.benchmark_group("ABI write of 1 byte to /dev/null (per call)");
    g.throughput(Throughput::Elements(CALLS as u64));
    let dev_null = File::options().write(true).open("/dev/null").unwrap();

    let raw = Module::new(host.engine(), WRITE_CALLER.replace("{MODULE}", "env")).unwrap();
    let mut linker = Linker::new(host.engine());
    linker
        .func_wrap(
            "env",
            "write",
            |mut caller: Caller<'_, ()>, fd: i32, ptr: i32, len: i32, out: i32| -> i32 {
                let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                    return AbiError::Fault.code();
                };
                let data = memory.data_mut(&mut caller);
                let (ptr, len, out) = (ptr as usize, len as usize, out as usize);
                let (Some(bytes), true) = (data.get(ptr..ptr + len), out + 4 <= data.len()) else {
                    return AbiError::Fault.code();
                };
                // SAFETY: the fd is the /dev/null `File` opened above, which
                // outlives every call of this benchmark.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                let n = rustix::io::write(fd, bytes).map_or(AbiError::Io.code(), |n| n as i32);
                data[out..out + 4].copy_from_slice(&n.to_le_bytes());
                0
            },
        )
        .unwrap();
    let (mut store, instance) = raw_instance(&host, &linker, &raw);
    let set = instance
        .get_typed_func::<i32, ()>(&mut store, "set")
        .unwrap();
    set.call(&mut store, dev_null.as_raw_fd()).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, 1).unwrap(), 0);
    g.bench_function("baseline: raw wasmtime host function, fd as i32", |b| {
        b.iter(|| black_box(run.call(&mut store, black_box(CALLS)).unwrap()))
    });

    let domain = write_caller(&host, Fd::from(dev_null.try_clone().unwrap()));
    assert_eq!(
        domain.call("run", &[Val::I32(1)]).unwrap()[0].unwrap_i32(),
        0
    );
    g.bench_function("custody write(handle)", |b| {
        b.iter(|| black_box(domain.call("run", &[Val::I32(CALLS)]).unwrap()))
    });
    g.finish();
    domain.unload().unwrap();
}

/// Unloading a domain full of handles: the table's drain, and `close(2)`.
fn unload_full(c: &mut Criterion) {
    let host = quiet_host(Policy {
        handle_quota: 200_000,
        ..Policy::default()
    });
    let module = host.compile(SMALL.as_bytes()).unwrap();
    let full = |fill: &dyn Fn(&Domain)| {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("m", &module).unwrap();
        fill(&domain);
        domain
    };
    let mut g = c.benchmark_group("unload");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("100,000 handles (no-op resource)", |b| {
        b.iter_batched(
            || {
                full(&|d| {
                    for _ in 0..100_000 {
                        d.insert_handle(Token).unwrap();
                    }
                })
            },
            |domain| black_box(domain.unload().unwrap()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("10,000 pipe fds", |b| {
        b.iter_batched(
            || {
                full(&|d| {
                    for _ in 0..5_000 {
                        let (r, w) = std::io::pipe().unwrap();
                        d.insert_handle(Fd::from(OwnedFd::from(r))).unwrap();
                        d.insert_handle(Fd::from(OwnedFd::from(w))).unwrap();
                    }
                })
            },
            |domain| black_box(domain.unload().unwrap()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    abi_call,
    abi_write_syscall,
    embedder_call,
    lifecycle,
    dense_lifecycle,
    memory_access,
    compilation,
    unload_full
);
criterion_main!(benches);
