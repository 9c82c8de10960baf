//! custody-host against raw wasmtime, measured in the same run:
//! - a guest calling a host function with one handle (resolve + pin + unpin,
//!   then a 1-byte write to /dev/null) vs a raw wasmtime host function taking
//!   the fd as an i32 and doing the same write;
//! - domain create + instantiate + unload vs raw `Store` + instantiate + drop;
//! - unloading a domain that holds 100,000 handles (a no-op resource: the
//!   table's drain) and 10,000 real pipe fds (the drain plus 10,000 `close`s).
//!
//! Run: `cargo bench -p custody-host --bench host`

use std::fs::File;
use std::hint::black_box;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custody_handle::{Fd, ReleaseHandle};
use custody_host::{Domain, DomainConfig, Host, Policy, Val};
use wasmtime::{Caller, Extern, Linker, Module, Store};

/// Calls the write import `n` times with the handle/fd at 0 and 1 byte at 16.
const CALLER: &str = r#"
(module
  (import "{MODULE}" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $n i32) (result i32)
    (local $sum i32)
    (loop $again
      (local.set $sum (i32.add (local.get $sum)
        (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 8))))
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again))
    (local.get $sum))
  (func (export "set") (param i32) (i32.store (i32.const 0) (local.get 0)))
)
"#;

const CALLS: i32 = 1000;

fn quiet_host() -> Host {
    Host::with_log(
        Policy {
            handle_quota: 200_000,
            ..Policy::default()
        },
        std::sync::Arc::new(|_, _, _| {}),
    )
    .unwrap()
}

fn host_calls(c: &mut Criterion) {
    let host = quiet_host();
    let mut g = c.benchmark_group("host call with one handle (per call)");
    g.throughput(Throughput::Elements(CALLS as u64));

    // Raw wasmtime: the fd as an i32, the same write.
    let raw_module = Module::new(host.engine(), CALLER.replace("{MODULE}", "env")).unwrap();
    let mut linker = Linker::new(host.engine());
    linker
        .func_wrap(
            "env",
            "write",
            |mut caller: Caller<'_, ()>, fd: i32, ptr: i32, len: i32, out: i32| -> i32 {
                let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                    return -5;
                };
                let data = memory.data_mut(&mut caller);
                let (ptr, len) = (ptr as usize, len as usize);
                let Some(bytes) = data.get(ptr..ptr + len) else {
                    return -5;
                };
                // SAFETY: the fd is the /dev/null `File` opened below, which
                // outlives every call of this benchmark.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                let n = rustix::io::write(fd, bytes)
                    .map(|n| n as i32)
                    .unwrap_or(-10);
                data[out as usize..out as usize + 4].copy_from_slice(&n.to_le_bytes());
                0
            },
        )
        .unwrap();
    let mut store = Store::new(host.engine(), ());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, &raw_module).unwrap();
    let dev_null = File::options().write(true).open("/dev/null").unwrap();
    let set = instance
        .get_typed_func::<i32, ()>(&mut store, "set")
        .unwrap();
    set.call(&mut store, dev_null.as_raw_fd()).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, 1).unwrap(), 0);
    g.bench_function("baseline: raw wasmtime host call, fd as i32", |b| {
        b.iter(|| black_box(run.call(&mut store, black_box(CALLS)).unwrap()))
    });

    // custody: the handle id resolved and pinned by the ABI.
    let module = host
        .compile(CALLER.replace("{MODULE}", "custody").as_bytes())
        .unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("caller", &module).unwrap();
    let id = domain
        .insert_handle(Fd::from(
            File::options().write(true).open("/dev/null").unwrap(),
        ))
        .unwrap();
    domain.call("set", &[Val::I32(id.raw() as i32)]).unwrap();
    assert_eq!(
        domain.call("run", &[Val::I32(1)]).unwrap()[0].unwrap_i32(),
        0
    );
    g.bench_function("custody write(handle), marshalled", |b| {
        b.iter(|| black_box(domain.call("run", &[Val::I32(CALLS)]).unwrap()))
    });
    g.finish();
    domain.unload().unwrap();
}

const EMPTY: &str =
    r#"(module (memory (export "memory") 1) (func (export "run") (result i32) i32.const 0))"#;

fn lifecycle(c: &mut Criterion) {
    let host = quiet_host();
    let module = host.compile(EMPTY.as_bytes()).unwrap();
    let mut g = c.benchmark_group("domain lifecycle");
    g.bench_function("baseline: raw Store + instantiate + drop", |b| {
        b.iter(|| {
            let mut store = Store::new(host.engine(), ());
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            black_box(instance);
        })
    });
    g.bench_function("custody create_domain + load + unload", |b| {
        b.iter(|| {
            let domain = host.create_domain(DomainConfig::new()).unwrap();
            domain.load("m", &module).unwrap();
            black_box(domain.unload().unwrap());
        })
    });
    g.finish();
}

/// A resource whose release costs nothing: measures the table's drain.
struct Token(u64);

impl ReleaseHandle for Token {
    fn is_invalid(&self) -> bool {
        false
    }
    fn release_handle(&self) -> io::Result<()> {
        black_box(self.0);
        Ok(())
    }
    fn raw_value(&self) -> u64 {
        self.0
    }
}

fn full_domain(host: &Host, module: &Module, fill: impl Fn(&Domain)) -> Domain {
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("m", module).unwrap();
    fill(&domain);
    domain
}

fn unload(c: &mut Criterion) {
    let host = quiet_host();
    let module = host.compile(EMPTY.as_bytes()).unwrap();
    let mut g = c.benchmark_group("unload");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("100,000 handles (no-op resource)", |b| {
        b.iter_batched(
            || {
                full_domain(&host, &module, |d| {
                    for i in 0..100_000 {
                        d.insert_handle(Token(i)).unwrap();
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
                full_domain(&host, &module, |d| {
                    for _ in 0..5_000 {
                        let (r, w) = std::io::pipe().unwrap();
                        d.insert_handle(Fd::from(std::os::fd::OwnedFd::from(r)))
                            .unwrap();
                        d.insert_handle(Fd::from(std::os::fd::OwnedFd::from(w)))
                            .unwrap();
                    }
                })
            },
            |domain| black_box(domain.unload().unwrap()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, host_calls, lifecycle, unload);
criterion_main!(benches);
