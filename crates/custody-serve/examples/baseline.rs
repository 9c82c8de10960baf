//! The baseline `scripts/serve-bench.sh` measures `custody serve` against:
//! the same WAGI module run per request on raw wasmtime, as `wasmtime serve`
//! runs a component — a fresh `Store` per request from an `InstancePre`
//! prepared once, on an engine with the pooling allocator — behind the same
//! HTTP stack as custody-serve's `server.rs` (hyper 1 HTTP/1.1 on a tokio
//! multi-thread runtime, the same connection settings).
//!
//! Per request: the CGI environment and argv from custody-serve's own `wagi`
//! functions, the request body read whole into a memory stdin, WASI preview 1
//! from `wasmtime-wasi` with stdout and stderr in memory pipes, `_start`
//! called on tokio's blocking pool (as custody calls its guests: never on a
//! reactor thread), the header block parsed by `wagi::parse_head`, the rest
//! sent as the body. Epoch interruption is on, with a ticker and a deadline
//! of `REQUEST_TIMEOUT` (custody's default `request_timeout`), as custody has.
//!
//! A module exporting `handle` (a custody-ABI plugin, as `custody serve`
//! picks its interface) is run the same way with the least raw wasmtime
//! needs to answer it: `handle(1, 2)` called, the two functions the
//! bundled custody-ABI hello imports (`custody_http.set_header`,
//! `custody.write` to handle 2) as `func_wrap`s writing into the store's
//! response, and WASI only if the module imports it. The same module on
//! both sides, so both pay its memory's first-touch pattern (the hello
//! reads its data page before a host call writes it: a copy-on-write
//! fault, with its TLB shootdown, that a WAGI hello writing first avoids).
//!
//! Not in the baseline (custody's own costs, measured against it): a domain
//! (handle table, root tracking, the unload), stdio through OS pipes
//! streamed both ways, fault ids and counters, `max_concurrency` permits,
//! the idle-connection timer and the connection limit.
//!
//! Run: `cargo run --release -p custody-serve --example baseline --
//! --listen 127.0.0.1:0 [--route /hello] [--keep-resident BYTES] MODULE`
//! (prints `GET URL` once it listens, as `custody serve` does).
//! `--keep-resident` is `wasmtime serve -O pooling-memory-keep-resident=BYTES
//! -O pooling-table-keep-resident=BYTES`: the pool zeroes that much of each
//! freed memory and table in place (custody's `pool_keep_resident`, 64 KiB
//! by default); without it, wasmtime's default, none.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use custody_serve::{Body, CgiRequest, HttpLimits, Route, argv, cgi_env, full, head_end};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, MemoryType,
    Module, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// custody-serve's default `request_timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the epoch advances (custody's `EPOCH_TICK`).
const EPOCH_TICK: Duration = custody_host::EPOCH_TICK;
/// custody-serve's default `max_body`.
const MAX_BODY: usize = 1 << 20;
/// custody-serve's default `max_response`.
const MAX_RESPONSE: usize = 16 << 20;
/// What stderr may hold (custody logs it; here it is dropped).
const MAX_STDERR: usize = 64 << 10;
/// custody-serve's default argv template.
const ARGV_TEMPLATE: &str = "${SCRIPT_NAME} ${ARGS}";
/// The entrypoint a WAGI plugin exports by default.
const ENTRYPOINT: &str = "_start";

/// What every request shares.
struct Baseline {
    pre: InstancePre<Ctx>,
    route: Route,
    /// The module exports `handle`: a custody-ABI plugin.
    custody_abi: bool,
    /// The module imports WASI: each store gets a context.
    wasi: bool,
}

/// A request's store data.
struct Ctx {
    /// For a module that imports WASI.
    wasi: Option<WasiP1Ctx>,
    /// The instance's memory, kept for the host functions.
    memory: Option<Memory>,
    /// What a custody-ABI `handle` answered with.
    response: AbiResponse,
}

/// The response a custody-ABI plugin shapes.
#[derive(Default)]
struct AbiResponse {
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

/// The custody ABI's `E_FAULT` and `E_INVAL` (guest/include/custody.h).
const E_FAULT: i32 = -5;
const E_INVAL: i32 = -11;
/// The handle `handle` is given for the response body.
const RESPONSE_HANDLE: i32 = 2;

/// Why a request's guest did not produce its output.
enum RunError {
    /// The guest trapped, hit the deadline or exited nonzero.
    Guest(wasmtime::Error),
    /// The blocking task failed.
    Task(tokio::task::JoinError),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, route, keep_resident, module) = parse_args()?;
    let engine = engine(keep_resident)?;
    let module =
        Module::from_file(&engine, &module).map_err(|e| format!("{}: {e:#}", module.display()))?;
    let mut linker: Linker<Ctx> = Linker::new(&engine);
    // Reached only from a module importing WASI, whose stores have it.
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx: &mut Ctx| {
        ctx.wasi
            .as_mut()
            .expect("a module importing WASI gets a context")
    })?;
    add_custody_abi(&mut linker)?;
    let custody_abi = module.exports().any(|e| e.name() == "handle");
    let wasi = module
        .imports()
        .any(|i| i.module() == "wasi_snapshot_preview1");
    let pre = linker.instantiate_pre(&module)?;
    let route = Route::parse(&route)?;
    // The epoch ticker a deadline needs (custody runs the same one).
    std::thread::spawn({
        let engine = engine.clone();
        move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        }
    });
    let state = Arc::new(Baseline {
        pre,
        route,
        custody_abi,
        wasi,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(state, listen))
}

/// `--listen ADDR`, `--route ROUTE` (default `/...`), `--keep-resident
/// BYTES` (default 0), `MODULE`.
fn parse_args() -> Result<(SocketAddr, String, usize, PathBuf), String> {
    const USAGE: &str =
        "usage: baseline [--listen ADDR] [--route ROUTE] [--keep-resident BYTES] MODULE";
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut route = "/...".to_string();
    let mut keep_resident = 0;
    let mut module = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or(USAGE)?;
                listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?;
            }
            "--route" => route = args.next().ok_or(USAGE)?,
            "--keep-resident" => {
                let value = args.next().ok_or(USAGE)?;
                keep_resident = value
                    .parse()
                    .map_err(|e| format!("--keep-resident {value}: {e}"))?;
            }
            _ if module.is_none() && !arg.starts_with('-') => module = Some(PathBuf::from(arg)),
            _ => return Err(format!("{arg}: unexpected\n{USAGE}")),
        }
    }
    Ok((listen, route, keep_resident, module.ok_or(USAGE)?))
}

/// The engine as `wasmtime serve` configures it: the pooling allocator with
/// its default configuration (but `keep_resident`, as its `-O` flags set
/// it) when the machine can reserve its address space (else on demand, as
/// `wasmtime serve` falls back), and epoch interruption for the deadline.
fn engine(keep_resident: usize) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if pooling_fits()? {
        let mut pool = PoolingAllocationConfig::default();
        pool.linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    } else {
        eprintln!("baseline: the pooling allocator does not fit; allocating on demand");
    }
    Engine::new(&config)
}

/// Whether a 42-bit reservation succeeds: `wasmtime serve`'s test before it
/// turns the pooling allocator on (its default pool reserves about that).
fn pooling_fits() -> wasmtime::Result<bool> {
    const BITS: u32 = 42;
    let mut config = Config::new();
    config.wasm_memory64(true);
    config.memory_reservation(1 << BITS);
    let engine = Engine::new(&config)?;
    let mut store = Store::new(&engine, ());
    let ty = MemoryType::new64(0, Some(1 << (BITS - 16)));
    Ok(Memory::new(&mut store, ty).is_ok())
}

async fn serve(state: Arc<Baseline>, listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    println!(
        "GET http://{local}{}",
        custody_serve::display_path(state.route.as_str())
    );
    let limits = HttpLimits::default();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("baseline: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let limits = limits.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| handle(Arc::clone(&state), request, remote, local));
            // custody-serve's connection settings (server.rs).
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_size.max(8192))
                .max_headers(limits.max_headers)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(
    state: Arc<Baseline>,
    request: Request<Incoming>,
    remote: SocketAddr,
    local: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let Some(matched) = state.route.matches(request.uri().path()) else {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "no route for this path\n".into(),
        ));
    };
    // A custody-ABI guest reads its request through the ABI: no CGI
    // environment, as custody builds none for it.
    let (env, argv) = if state.custody_abi {
        (Vec::new(), Vec::new())
    } else {
        let cgi = CgiRequest::new(&request, (remote, local), state.route.as_str(), &matched);
        let env = cgi_env(&cgi);
        let argv = argv(ARGV_TEMPLATE, &matched.script_name, request.uri().query());
        (env, argv)
    };
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e}\n"))),
    };
    let run = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.run(&env, &argv, body))
    };
    let stdout = match run.await {
        Ok(Ok(Output::Stdout(stdout))) => stdout,
        Ok(Ok(Output::Abi(answer))) => return Ok(respond_abi(answer)),
        Ok(Err(e)) => return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, e.message())),
        Err(e) => {
            return Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                RunError::Task(e).message(),
            ));
        }
    };
    Ok(respond(stdout))
}

/// The response a guest's stdout makes: its header block, then the rest as
/// the body; without a header block a 502.
fn respond(stdout: Bytes) -> Response<Body> {
    let Some(end) = head_end(&stdout, 0) else {
        return text(
            StatusCode::BAD_GATEWAY,
            "the plugin wrote no header block\n".into(),
        );
    };
    let head = match custody_serve::parse_head(&stdout[..end]) {
        Ok(head) => head,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("bad header block: {e}\n")),
    };
    let mut response = Response::new(full(stdout.slice(end..)));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    response
}

/// What a request's guest produced.
enum Output {
    /// A WAGI module's stdout.
    Stdout(Bytes),
    /// A custody-ABI module's response.
    Abi(AbiResponse),
}

impl Baseline {
    /// One request's guest: a fresh store, instantiated from the prepared
    /// instance, `_start` (or `handle`) called; its output.
    fn run(&self, env: &[String], argv: &[String], body: Bytes) -> Result<Output, RunError> {
        let stdout = self.wasi.then(|| MemoryOutputPipe::new(MAX_RESPONSE));
        let wasi = stdout.as_ref().map(|stdout| {
            // `NAME=VALUE` entries, as wasmtime-wasi takes them: name and value.
            let env: Vec<(&str, &str)> = env.iter().filter_map(|var| var.split_once('=')).collect();
            WasiCtxBuilder::new()
                .args(argv)
                .envs(&env)
                .stdin(MemoryInputPipe::new(body))
                .stdout(stdout.clone())
                .stderr(MemoryOutputPipe::new(MAX_STDERR))
                // As the wasmtime CLI sets up preview 1: I/O on the calling
                // thread.
                .allow_blocking_current_thread(true)
                .build_p1()
        });
        let ctx = Ctx {
            wasi,
            memory: None,
            response: AbiResponse::default(),
        };
        let mut store = Store::new(self.pre.module().engine(), ctx);
        let ticks = (REQUEST_TIMEOUT.as_millis() / EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks);
        let instance = self.pre.instantiate(&mut store).map_err(RunError::Guest)?;
        if self.custody_abi {
            store.data_mut().memory = instance.get_memory(&mut store, "memory");
            let handle = instance
                .get_typed_func::<(i32, i32), i32>(&mut store, "handle")
                .map_err(RunError::Guest)?;
            match handle.call(&mut store, (1, RESPONSE_HANDLE)) {
                Ok(0) => {}
                Ok(code) => {
                    let e = wasmtime::Error::msg(format!("handle returned {code}"));
                    return Err(RunError::Guest(e));
                }
                Err(e) => return Err(RunError::Guest(e)),
            }
            return Ok(Output::Abi(std::mem::take(&mut store.data_mut().response)));
        }
        let start = instance
            .get_typed_func::<(), ()>(&mut store, ENTRYPOINT)
            .map_err(RunError::Guest)?;
        match start.call(&mut store, ()) {
            Ok(()) => {}
            Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|exit| exit.0 == 0) => {}
            Err(e) => return Err(RunError::Guest(e)),
        }
        drop(store);
        Ok(Output::Stdout(
            stdout.map_or_else(Bytes::new, |s| s.contents()),
        ))
    }
}

/// `bytes` at `ptr` in guest memory, as a range, if it does not wrap.
fn span(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    Some(start..start.checked_add(usize::try_from(len).ok()?)?)
}

/// The two custody-ABI functions the bundled hello imports, as raw
/// wasmtime host functions over the memory kept in store data: ranges
/// checked whole before acting, no handle table (the one response
/// handle).
fn add_custody_abi(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "custody_http",
        "set_header",
        |mut caller: Caller<'_, Ctx>, name: i32, name_len: i32, value: i32, value_len: i32| {
            let Some(memory) = caller.data().memory else {
                return E_FAULT;
            };
            let (data, ctx) = memory.data_and_store_mut(&mut caller);
            let (Some(name), Some(value)) = (span(name, name_len), span(value, value_len)) else {
                return E_FAULT;
            };
            let (Some(name), Some(value)) = (data.get(name), data.get(value)) else {
                return E_FAULT;
            };
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            else {
                return E_INVAL;
            };
            ctx.response.headers.insert(name, value);
            0
        },
    )?;
    linker.func_wrap(
        "custody",
        "write",
        |mut caller: Caller<'_, Ctx>, handle: i32, buf: i32, len: i32, out_n: i32| {
            let Some(memory) = caller.data().memory else {
                return E_FAULT;
            };
            if handle != RESPONSE_HANDLE {
                return E_INVAL;
            }
            let (data, ctx) = memory.data_and_store_mut(&mut caller);
            let (Some(src), Some(out)) = (span(buf, len), span(out_n, 4)) else {
                return E_FAULT;
            };
            if src.end > data.len() || out.end > data.len() {
                return E_FAULT;
            }
            ctx.response.body.extend_from_slice(&data[src]);
            data[out].copy_from_slice(&len.to_le_bytes());
            0
        },
    )?;
    Ok(())
}

/// The response a custody-ABI plugin shaped: 200, its headers, its body.
fn respond_abi(answer: AbiResponse) -> Response<Body> {
    let mut response = Response::new(full(answer.body));
    *response.headers_mut() = answer.headers;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    response
}

impl RunError {
    fn message(&self) -> String {
        match self {
            RunError::Guest(e) => format!("the guest: {e:#}\n"),
            RunError::Task(e) => format!("the call's task: {e}\n"),
        }
    }
}
