//! WASI I/O through custody against the reference and the metal (SPEC W3),
//! measured in one run on the same guest:
//!
//! - `fd_write` of 4 KiB to `/dev/null` (opened by the guest with
//!   `path_open` under a pre-open of `/dev`), per call: custody vs
//!   `wasmtime-wasi`'s preview 1 vs a native Rust `write(2)`;
//! - a 64 MiB file read in 64 KiB `fd_read`s (`path_open`, read to the end,
//!   `fd_close`): custody vs `wasmtime-wasi` vs native Rust reads.
//!
//! The guest loops inside one call (`write_n`, `read_file`), so the figures
//! are the WASI functions' cost, not the cost of entering the guest.
//!
//! Run: `cargo bench -p custody-guests --bench wasi`

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custody_host::{DomainConfig, Host, Policy, Val};
use custody_wasi::Wasi;

/// The guest: `write_n(dirfd, n)` opens `null` under `dirfd` and writes
/// 4 KiB to it `n` times; `read_file(dirfd)` opens `big` under `dirfd` and
/// reads it to the end in 64 KiB reads, returning the bytes read.
const GUEST: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 3)
  (data (i32.const 64) "null")
  (data (i32.const 80) "big")
  ;; iovec at 0: buf 65536, len set per call; nwritten/nread at 8; fd at 16
  (func $open (param $dir i32) (param $path i32) (param $len i32) (param $rights i64) (result i32)
    (if (call $path_open (local.get $dir) (i32.const 0) (local.get $path) (local.get $len)
          (i32.const 0) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 16))
      (then unreachable))
    (i32.load (i32.const 16)))
  (func (export "write_n") (param $dir i32) (param $n i32)
    (local $fd i32)
    ;; rights: fd_write (1 << 6)
    (local.set $fd (call $open (local.get $dir) (i32.const 64) (i32.const 4) (i64.const 64)))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 4096))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
          (then unreachable))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (drop (call $fd_close (local.get $fd))))
  (func (export "read_file") (param $dir i32) (result i64)
    (local $fd i32) (local $total i64)
    ;; rights: fd_read (1 << 1)
    (local.set $fd (call $open (local.get $dir) (i32.const 80) (i32.const 3) (i64.const 2)))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 65536))
    (block $done
      (loop $l
        (if (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
          (then unreachable))
        (br_if $done (i32.eqz (i32.load (i32.const 8))))
        (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (i32.load (i32.const 8)))))
        (br $l)))
    (drop (call $fd_close (local.get $fd)))
    (local.get $total))
)"#;

const FILE_BYTES: usize = 64 << 20;
const CHUNK: usize = 64 << 10;
const WRITE: usize = 4 << 10;

/// A scratch directory with the 64 MiB file `big`.
fn big_file_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("custody-wasi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big");
    if std::fs::metadata(&path).map(|m| m.len() as usize).ok() != Some(FILE_BYTES) {
        let mut file = File::create(&path).unwrap();
        let block: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
        for _ in 0..FILE_BYTES / CHUNK {
            file.write_all(&block).unwrap();
        }
    }
    dir
}

/// custody: a domain with `dir` pre-opened as fd 3.
fn custody_domain(host: &Host, module: &custody_host::Module, dir: &Path) -> custody_host::Domain {
    let domain = host
        .create_domain(DomainConfig::new().preopen("/data", dir))
        .unwrap();
    domain.load("bench", module).unwrap();
    domain
}

/// wasmtime-wasi preview 1: the same guest, `dir` pre-opened as fd 3.
struct Reference {
    store: wasmtime::Store<wasmtime_wasi::p1::WasiP1Ctx>,
    instance: wasmtime::Instance,
}

impl Reference {
    fn new(engine: &wasmtime::Engine, module: &wasmtime::Module, dir: &Path) -> Reference {
        let mut linker = wasmtime::Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
        // As the wasmtime CLI sets up preview 1: file I/O on the calling
        // thread, not handed to a blocking pool (about 40 times slower).
        let ctx = wasmtime_wasi::WasiCtxBuilder::new()
            .allow_blocking_current_thread(true)
            .preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadWrite)
            .unwrap()
            .build_p1();
        let mut store = wasmtime::Store::new(engine, ctx);
        let instance = linker.instantiate(&mut store, module).unwrap();
        Reference { store, instance }
    }

    fn write_n(&mut self, n: i32) {
        let f = self
            .instance
            .get_typed_func::<(i32, i32), ()>(&mut self.store, "write_n")
            .unwrap();
        f.call(&mut self.store, (3, n)).unwrap();
    }

    fn read_file(&mut self) -> i64 {
        let f = self
            .instance
            .get_typed_func::<i32, i64>(&mut self.store, "read_file")
            .unwrap();
        f.call(&mut self.store, 3).unwrap()
    }
}

/// A host whose calls have no deadline: one call of the guest's loop may run
/// for the whole of a measurement.
fn host() -> Host {
    let policy = Policy {
        deadline: None,
        ..Policy::default()
    };
    Host::builder(policy).extension(Wasi).build().unwrap()
}

fn fd_write(c: &mut Criterion) {
    let host = host();
    let module = host.compile(GUEST.as_bytes()).unwrap();
    let domain = custody_domain(&host, &module, Path::new("/dev"));
    let engine = wasmtime::Engine::default();
    let reference_module = wasmtime::Module::new(&engine, GUEST).unwrap();
    let mut reference = Reference::new(&engine, &reference_module, Path::new("/dev"));
    let mut group = c.benchmark_group("fd_write of 4 KiB to /dev/null");
    group.throughput(Throughput::Elements(1));
    group.bench_function("custody", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            domain
                .call("write_n", &[Val::I32(3), Val::I32(iters as i32)])
                .unwrap();
            started.elapsed()
        })
    });
    group.bench_function("wasmtime-wasi preview 1", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            reference.write_n(iters as i32);
            started.elapsed()
        })
    });
    let mut null = File::options().write(true).open("/dev/null").unwrap();
    let block = vec![0u8; WRITE];
    group.bench_function("native write(2)", |b| {
        b.iter(|| black_box(null.write(&block).unwrap()))
    });
    group.finish();
    domain.unload().unwrap();
}

fn fd_read(c: &mut Criterion) {
    let dir = big_file_dir();
    let host = host();
    let module = host.compile(GUEST.as_bytes()).unwrap();
    let domain = custody_domain(&host, &module, &dir);
    let engine = wasmtime::Engine::default();
    let reference_module = wasmtime::Module::new(&engine, GUEST).unwrap();
    let mut reference = Reference::new(&engine, &reference_module, &dir);
    let mut group = c.benchmark_group("64 MiB file in 64 KiB fd_reads");
    group.throughput(Throughput::Bytes(FILE_BYTES as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("custody", |b| {
        b.iter(|| {
            let read = domain.call("read_file", &[Val::I32(3)]).unwrap();
            assert_eq!(read[0].unwrap_i64() as usize, FILE_BYTES);
        })
    });
    group.bench_function("wasmtime-wasi preview 1", |b| {
        b.iter(|| assert_eq!(reference.read_file() as usize, FILE_BYTES))
    });
    let path = dir.join("big");
    let mut buffer = vec![0u8; CHUNK];
    group.bench_function("native read(2)", |b| {
        b.iter(|| {
            let mut file = File::open(&path).unwrap();
            let mut total = 0;
            loop {
                let n = file.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, FILE_BYTES);
        })
    });
    group.finish();
    domain.unload().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, fd_write, fd_read);
criterion_main!(benches);
