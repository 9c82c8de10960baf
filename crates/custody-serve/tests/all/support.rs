//! The test server and client: a real server on 127.0.0.1 port 0, in the
//! test's runtime, stopped when the `TestServer` drops; hyper-util's
//! client; WAT guests written for each case; the `tracing` events of the
//! binary captured, so a test can find a fault's log event by its id
//! (and a passing test prints nothing).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use custody_host::Policy;
use custody_serve::{AdminListener, ConfigError, Listeners, ServerConfig, ServerState};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every `tracing` event of the binary, as text lines.
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_log() {
    LOG.get_or_init(|| {
        custody_testkit::quiet();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    });
}

/// The lines logged so far that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    let log = LOG.get().unwrap().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The lines logged for `needle`, once one of them contains `awaited`
/// (a guest's stderr is logged as its call ends, a moment after its
/// response), or after a second: the caller's assertion then says what is
/// missing.
pub async fn logged_eventually(needle: &str, awaited: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = logged(needle);
        if lines.iter().any(|l| l.contains(awaited)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    lines
}

/// A server under test.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener's address, with `[admin]` in the configuration.
    pub admin: Option<SocketAddr>,
    pub state: Arc<ServerState>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<custody_serve::Stopped>>>,
}

impl TestServer {
    /// A server for `toml` (the configuration, relative to a scratch
    /// directory holding `files`).
    pub async fn start(toml: &str, files: &[(&str, &str)]) -> TestServer {
        let dir = write_files(files);
        let file = dir.join("custody.toml");
        std::fs::write(&file, toml).unwrap();
        let config = ServerConfig::from_file(&file).unwrap();
        TestServer::with_config(config, &file, dir).await
    }

    /// A server for a configuration already read.
    pub async fn with_config(config: ServerConfig, file: &Path, dir: PathBuf) -> TestServer {
        let (server, loading) = TestServer::starting(config, file, dir).await;
        loading.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// A server that listens before its plugins load, as the CLI's does:
    /// it serves at once, and the plugins load on the blocking pool
    /// (the returned task).
    pub async fn starting(
        config: ServerConfig,
        file: &Path,
        dir: PathBuf,
    ) -> (TestServer, JoinHandle<Result<(), ConfigError>>) {
        capture_log();
        let state = {
            let (config, file) = (config.clone(), file.to_path_buf());
            tokio::task::spawn_blocking(move || {
                ServerState::starting(&config, Policy::default(), &file)
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = match &config.admin {
            Some(admin) => Some(
                AdminListener::bind(admin, file)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|admin| admin.local_addr().unwrap());
        let listeners = Listeners {
            plugins: listener,
            admin,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(custody_serve::serve(Arc::clone(&state), listeners, async {
            let _ = stopped.await;
        }));
        let loading = {
            let state = Arc::clone(&state);
            tokio::task::spawn_blocking(move || state.load_plugins(&config))
        };
        let server = TestServer {
            addr,
            admin: admin_addr,
            state,
            dir,
            stop: Some(stop),
            task: Some(task),
        };
        (server, loading)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL of the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.expect("the configuration has an [admin] table");
        format!("http://{admin}{path}")
    }

    /// Stops the server as `serve`'s shutdown future does, and waits for
    /// it to return.
    pub async fn stop(&mut self) -> custody_serve::Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("the server was stopped already");
        task.await.unwrap().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a test's body in its own runtime, under `serial()` from before
/// the runtime exists to after it is gone: tests here count fds, and a
/// runtime's own (its epoll, its eventfd) must not come or go meanwhile.
pub fn serial_runtime(test: impl std::future::Future<Output = ()>) {
    let _serial = custody_testkit::serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test);
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`,
/// the resident set now; `VmHWM`, its peak), in bytes.
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = (status.lines())
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A scratch directory with `files` in it.
pub fn write_files(files: &[(&str, &str)]) -> PathBuf {
    let dir = custody_testkit::scratch("serve");
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `NAME=VALUE` lines of the echo plugin's environment section.
    pub fn env(&self, name: &str) -> Option<String> {
        let section = self.body.split("--- args ---").next()?;
        section
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    /// The echo plugin's arguments.
    pub fn args(&self) -> Vec<String> {
        let after = self.body.split("--- args ---\n").nth(1).unwrap_or("");
        let args = after.split("--- body ---").next().unwrap_or("");
        args.lines().map(str::to_string).collect()
    }

    /// The echo plugin's body section.
    pub fn echoed(&self) -> &str {
        self.body.split("--- body ---\n").nth(1).unwrap_or("")
    }
}

/// Sends a request and reads the whole response.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &HttpClient, url: &str) -> Answer {
    send(client, Method::GET, url, &[], Bytes::new()).await
}

/// A WAT string literal of `bytes`.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A WAGI guest whose export `name` (and `_start` unless it is `name`)
/// writes `output` to stdout whole, then runs `then` (WAT instructions:
/// `unreachable`, a loop, an exit). Helpers: `$write_all(ptr, len)`,
/// `$exit(code)`; `output` is at 1024, `$out_len` is its length.
pub fn guest(output: &[u8], then: &str) -> String {
    guest_with(&[("_start", output, then)], "")
}

/// A guest with several exports, each writing its output and running its
/// `then`; `extra` is more module fields.
pub fn guest_with(exports: &[(&str, &[u8], &str)], extra: &str) -> String {
    let mut data = String::new();
    let mut funcs = String::new();
    let mut at = 1024usize;
    for (name, output, then) in exports {
        data.push_str(&format!(
            "(data (i32.const {at}) \"{}\")\n",
            wat_bytes(output)
        ));
        funcs.push_str(&format!(
            "(func (export \"{name}\") (call $write_all (i32.const {at}) (i32.const {len})) {then})\n",
            len = output.len()
        ));
        at += output.len() + 16;
    }
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  {data}
  (func $write_all (param $ptr i32) (param $len i32)
    (block $done (loop $more
      (br_if $done (i32.eqz (local.get $len)))
      (i32.store (i32.const 0) (local.get $ptr))
      (i32.store (i32.const 4) (local.get $len))
      (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))
        (then (call $exit (i32.const 99))))
      (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 16))))
      (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 16))))
      (br $more))))
  {funcs}
  {extra})"#
    )
}

/// WAT: spin until stopped.
pub const SPIN: &str = "(loop $forever (br $forever))";
