//! One WAGI request's guest lifecycle, without HTTP, against raw wasmtime
//! (issue 18's "≤ 5 µs"), on the bundled hello plugin with a CGI
//! environment of a real request (19 meta-variables and 3 headers):
//!
//! - **baseline**: raw wasmtime as `wasmtime serve` runs a request —
//!   `Store::new` + `InstancePre::instantiate` + `_start` + drop, WASI
//!   preview 1 from `wasmtime-wasi` with stdout in a memory pipe — on the
//!   custody host's own engine (pooling allocator, epoch interruption), so
//!   only the layers above the engine differ;
//! - **custody, captured stdout**: `PluginVersion::domain` (create a domain,
//!   load from the prepared instance) + call `_start` + `take_stdout` +
//!   `unload`;
//! - **custody, in-process pipes**: the same with the stdio `custody
//!   serve` gives a request without a body: a null stdin, stdout through
//!   an in-process pipe (custody-wasi's `Stdio::pipe_out`), stderr
//!   captured;
//! - **custody, OS pipes**: the same with three OS pipes (made, then read
//!   and closed), as `custody serve` ran a request before the in-process
//!   pipes.
//!
//! The domain lifecycle without WASI is `custody-host`'s `boundary` bench
//! (`domain lifecycle: create + load + call + unload`).
//!
//! Each variant is timed in blocks alternating with the baseline (or, for
//! the baseline, with custody's captured variant), so both see the same
//! load; the last group prints the ratios of paired blocks.
//!
//! Run: `cargo bench -p custody-serve --bench lifecycle`

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use custody_host::{CallError, Host, Policy};
use custody_serve::{CgiRequest, PluginVersion, Route, ServerState, argv, cgi_env, example_config};
use custody_testkit::paired;
use custody_wasi::{Stdio, WasiConfig, WasiDomain};
use wasmtime::{InstancePre, Linker, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// Lifecycles per block of [`paired`].
const BLOCK: u64 = 64;
/// What the hello plugin writes.
const HELLO_OUTPUT: &[u8] = b"content-type: text/plain\n\nhello, world\n";

/// The hello plugin, loaded as `custody serve` loads it, and the same
/// module prepared on raw wasmtime.
struct Fixture {
    state: Arc<ServerState>,
    version: Arc<PluginVersion>,
    pre: InstancePre<WasiP1Ctx>,
    /// The CGI environment, `NAME=VALUE` (custody's form)...
    env: Vec<String>,
    /// ... and as names and values (wasmtime-wasi's).
    env_pairs: Vec<(String, String)>,
    argv: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let config = example_config(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let state = ServerState::load(&config, Policy::default(), Path::new("<bench>")).unwrap();
        let version = state.plugins()[0].current();
        let module = &version.modules[0].1;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(state.host().engine());
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
        let pre = linker.instantiate_pre(module).unwrap();
        let request = hyper::Request::get("/hello?name=x")
            .header("host", "127.0.0.1:8080")
            .header("user-agent", "wrk")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let route = Route::parse("/hello").unwrap();
        let matched = route.matches(request.uri().path()).unwrap();
        let env = cgi_env(&CgiRequest {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            remote: SocketAddr::from(([127, 0, 0, 1], 50000)),
            local: SocketAddr::from(([127, 0, 0, 1], 8080)),
            matched_route: route.as_str(),
            route: &matched,
        });
        let argv = argv(
            "${SCRIPT_NAME} ${ARGS}",
            &matched.script_name,
            Some("name=x"),
        );
        let env_pairs = env
            .iter()
            .filter_map(|var| var.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Fixture {
            state,
            version,
            pre,
            env,
            env_pairs,
            argv,
        }
    }

    fn host(&self) -> &Host {
        self.state.host()
    }

    /// Raw wasmtime: a fresh store, instantiated from the prepared
    /// instance, `_start`, dropped; its stdout.
    fn raw(&self) -> bytes::Bytes {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let ctx = WasiCtxBuilder::new()
            .args(&self.argv)
            .envs(&self.env_pairs)
            .stdout(stdout.clone())
            .stderr(MemoryOutputPipe::new(1 << 16))
            .allow_blocking_current_thread(true)
            .build_p1();
        let mut store = Store::new(self.host().engine(), ctx);
        store.set_epoch_deadline(1000);
        let instance = self.pre.instantiate(&mut store).unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        if let Err(e) = start.call(&mut store, ()) {
            assert_eq!(e.downcast_ref::<I32Exit>().map(|x| x.0), Some(0), "{e}");
        }
        drop(store);
        stdout.contents()
    }

    fn wasi(&self) -> WasiConfig {
        WasiConfig::new()
            .args(self.argv.iter().cloned())
            .env_entries(self.env.clone())
    }

    /// A fresh domain of the plugin's version given `wasi`, after its
    /// `_start`.
    fn started(&self, wasi: WasiConfig) -> custody_host::Domain {
        let domain = self.version.domain(self.host(), || wasi).unwrap();
        match domain.call("_start", &[]) {
            Ok(_) | Err(CallError::Exit(0)) => {}
            Err(e) => panic!("{e}"),
        }
        domain
    }

    /// custody: a fresh domain of the plugin's version, `_start`, its
    /// captured stdout, unloaded.
    fn custody_captured(&self) -> Vec<u8> {
        let wasi = self.wasi().stdout(Stdio::Capture).stderr(Stdio::Capture);
        let domain = self.started(wasi);
        let output = domain.take_stdout();
        domain.unload().unwrap();
        output
    }

    /// custody as `custody serve` runs a request's guest: a null stdin,
    /// stdout through an in-process pipe, read once the domain is
    /// unloaded, stderr captured.
    fn custody_served(&self) -> Vec<u8> {
        let (stdout, reader) = Stdio::pipe_out(custody_wasi::PIPE_CAPACITY);
        let wasi = self.wasi().stdout(stdout).stderr(Stdio::Capture);
        let domain = self.started(wasi);
        black_box(domain.take_stderr());
        domain.unload().unwrap();
        let mut output = Vec::with_capacity(64);
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 256];
        while let Poll::Ready(n @ 1..) = reader.poll_read(&mut cx, &mut buf) {
            output.extend_from_slice(&buf[..n]);
        }
        output
    }

    /// custody with stdio through three OS pipes, stdout read once the
    /// domain is unloaded (how `custody serve` ran a request before).
    fn custody_piped(&self) -> Vec<u8> {
        let (stdin_r, stdin_w) = std::io::pipe().unwrap();
        let (mut stdout_r, stdout_w) = std::io::pipe().unwrap();
        let (stderr_r, stderr_w) = std::io::pipe().unwrap();
        drop(stdin_w);
        let wasi = self
            .wasi()
            .stdin(Stdio::File(File::from(std::os::fd::OwnedFd::from(stdin_r))))
            .stdout(Stdio::File(File::from(std::os::fd::OwnedFd::from(
                stdout_w,
            ))))
            .stderr(Stdio::File(File::from(std::os::fd::OwnedFd::from(
                stderr_w,
            ))));
        let domain = self.started(wasi);
        domain.unload().unwrap();
        let mut output = Vec::with_capacity(64);
        stdout_r.read_to_end(&mut output).unwrap();
        drop(stderr_r);
        output
    }
}

fn lifecycle(c: &mut Criterion) {
    let fixture = Fixture::new();
    assert_eq!(&fixture.raw()[..], HELLO_OUTPUT);
    assert_eq!(fixture.custody_captured(), HELLO_OUTPUT);
    assert_eq!(fixture.custody_served(), HELLO_OUTPUT);
    assert_eq!(fixture.custody_piped(), HELLO_OUTPUT);
    let raw = || {
        black_box(fixture.raw());
    };
    let captured = || {
        black_box(fixture.custody_captured());
    };
    let served = || {
        black_box(fixture.custody_served());
    };
    let piped = || {
        black_box(fixture.custody_piped());
    };
    let mut g = c.benchmark_group("WAGI hello: create + instantiate + _start + unload");
    g.bench_function(
        "baseline: raw wasmtime Store + instantiate_pre + _start + drop",
        |b| b.iter_custom(|iters| paired(iters, BLOCK, raw, captured)),
    );
    g.bench_function(
        "custody: domain + load + _start + unload, captured stdout",
        |b| b.iter_custom(|iters| paired(iters, BLOCK, captured, raw)),
    );
    g.bench_function(
        "custody: the same, stdout through an in-process pipe (as custody serve)",
        |b| b.iter_custom(|iters| paired(iters, BLOCK, served, raw)),
    );
    g.bench_function("custody: the same, stdio through three OS pipes", |b| {
        b.iter_custom(|iters| paired(iters, BLOCK, piped, raw))
    });
    g.finish();
    print_ratios(
        &raw,
        [
            ("captured stdout", &captured as &dyn Fn()),
            ("in-process pipes, as custody serve", &served),
            ("three OS pipes", &piped),
        ],
    );
}

/// The ratio custody/baseline over paired blocks: 200 blocks of each,
/// alternating; prints the median of the per-block ratios and their
/// spread (the 10th and 90th percentiles).
fn print_ratios(raw: &dyn Fn(), variants: [(&str, &dyn Fn()); 3]) {
    for (name, variant) in variants {
        let mut ratios = Vec::new();
        let mut custody_ns = Vec::new();
        let mut raw_ns = Vec::new();
        for _ in 0..200 {
            let custody = paired(BLOCK, BLOCK, variant, raw);
            let baseline = paired(BLOCK, BLOCK, raw, variant);
            custody_ns.push(per_call(custody));
            raw_ns.push(per_call(baseline));
            ratios.push(custody.as_secs_f64() / baseline.as_secs_f64());
        }
        let (c, r) = (median(&mut custody_ns), median(&mut raw_ns));
        ratios.sort_by(f64::total_cmp);
        println!(
            "WAGI hello lifecycle, custody ({name}) / baseline: {:.2}× (p10 {:.2}×, p90 {:.2}×); \
             custody {:.2} µs, baseline {:.2} µs (medians of 200 paired blocks of {BLOCK})",
            median(&mut ratios),
            ratios[ratios.len() / 10],
            ratios[ratios.len() * 9 / 10],
            c / 1000.0,
            r / 1000.0,
        );
    }
}

fn per_call(block: Duration) -> f64 {
    block.as_nanos() as f64 / BLOCK as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
