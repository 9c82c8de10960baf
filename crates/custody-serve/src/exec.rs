//! One WAGI request, run: a fresh domain (create, load, call the
//! entrypoint, unload) on tokio's blocking pool, never on a reactor
//! thread, with three pipes for its stdio. The request body is written
//! into stdin as it arrives; stdout is read as the guest writes it: its
//! header block becomes the response head and the rest streams out
//! through a bounded channel, so the first bytes leave before the guest
//! finishes and a request costs the server a bounded amount of memory
//! (the pipes' buffers, [`MAX_HEAD`](crate::wagi::MAX_HEAD), and
//! [`BODY_CHANNEL`] chunks of [`CHUNK`] bytes). stderr is logged a line
//! at a time.
//!
//! How a request ends (docs/SERVER.md has the table): the guest's header
//! block decides the status; without one, the call's outcome does (a trap
//! 500, the deadline 504, the memory limit 500, an exit with a nonzero
//! status 500, an exit with 0 or a return a 502 for the missing header
//! block). A failure after the head left cuts the body (the client sees
//! an incomplete response); an exit with a nonzero status after it is
//! logged and the response stands, as CGI servers do.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use custody_handle::diagnostics::escape_control;
use custody_host::{CallError, Host, WeakDomain};
use custody_wasi::{Stdio, WasiConfig};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;

use crate::body::Body;
use crate::fault::{self, Fault, FaultCounters, FaultKind};
use crate::plugin::PluginVersion;
use crate::wagi::{self, MAX_HEAD};

/// The size of one read of the guest's stdout.
pub const CHUNK: usize = 16 << 10;
/// Chunks of a response body in flight between the guest and the client.
pub const BODY_CHANNEL: usize = 4;
/// The longest stderr line logged whole; a longer one is logged in parts.
const MAX_LOG_LINE: usize = 4 << 10;

/// What one request runs.
pub(crate) struct WagiRun {
    pub host: Arc<Host>,
    pub version: Arc<PluginVersion>,
    pub plugin: String,
    pub route: String,
    pub entrypoint: String,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub request_id: String,
    pub max_body: usize,
    pub max_response: usize,
    pub counters: Arc<FaultCounters>,
    /// The request's headers (for the fault's body format).
    pub headers: HeaderMap,
}

/// How the guest's call ended.
pub(crate) enum Outcome {
    /// Returned, or exited with `status`.
    Exited(i32),
    /// Failed with this error.
    Failed(CallError),
    /// The domain could not be made or loaded.
    NotRun(String),
}

/// The server's ends of the guest's stdio.
struct ServerEnds {
    stdin: pipe::Sender,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
}

/// The guest's ends, given to its domain (which keeps its own duplicates:
/// these close when the configuration is dropped).
struct GuestEnds {
    stdin: std::fs::File,
    stdout: std::fs::File,
    stderr: std::fs::File,
}

fn pipes() -> io::Result<(ServerEnds, GuestEnds)> {
    let (stdin_r, stdin_w) = io::pipe()?;
    let (stdout_r, stdout_w) = io::pipe()?;
    let (stderr_r, stderr_w) = io::pipe()?;
    let server = ServerEnds {
        stdin: pipe::Sender::from_owned_fd(OwnedFd::from(stdin_w))?,
        stdout: pipe::Receiver::from_owned_fd(OwnedFd::from(stdout_r))?,
        stderr: pipe::Receiver::from_owned_fd(OwnedFd::from(stderr_r))?,
    };
    let guest = GuestEnds {
        stdin: OwnedFd::from(stdin_r).into(),
        stdout: OwnedFd::from(stdout_w).into(),
        stderr: OwnedFd::from(stderr_w).into(),
    };
    Ok((server, guest))
}

impl WagiRun {
    pub(crate) fn fault(
        &self,
        kind: FaultKind,
        detail: String,
        backtrace: Option<&str>,
    ) -> Response<Body> {
        Fault {
            kind,
            id: &self.request_id,
            plugin: &self.plugin,
            route: &self.route,
            detail,
            backtrace,
        }
        .respond(&self.counters, &self.headers)
    }

    fn record(&self, kind: FaultKind, detail: String, backtrace: Option<&str>) {
        Fault {
            kind,
            id: &self.request_id,
            plugin: &self.plugin,
            route: &self.route,
            detail,
            backtrace,
        }
        .record(&self.counters);
    }

    /// Runs the request: the response, whose body may still be streaming.
    /// `permit` (one of the plugin's `max_concurrency`) is held until the
    /// domain is unloaded.
    pub(crate) async fn run(self, body: Incoming, permit: OwnedSemaphorePermit) -> Response<Body> {
        let (server, guest) = match pipes() {
            Ok(ends) => ends,
            Err(e) => return self.fault(FaultKind::Internal, format!("pipes: {e}"), None),
        };
        let wasi = WasiConfig::new()
            .args(self.argv.iter().cloned())
            .stdin(Stdio::File(guest.stdin))
            .stdout(Stdio::File(guest.stdout))
            .stderr(Stdio::File(guest.stderr));
        let wasi = self
            .env
            .iter()
            .fold(wasi, |w, (k, v)| w.env(k.clone(), v.clone()));
        let domain = Abort::default();
        // In the version's registry until the domain is unloaded: a drain
        // forced past `drain_timeout` stops the guest through it.
        let in_flight = self.version.in_flight.enter({
            let abort = domain.clone();
            move || abort.abort()
        });
        let call = {
            let abort = domain.clone();
            let (host, version, entrypoint) = (
                Arc::clone(&self.host),
                Arc::clone(&self.version),
                self.entrypoint.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let domain = match version.domain(&host, wasi) {
                    Ok(domain) => domain,
                    Err(e) => return Outcome::NotRun(e),
                };
                let outcome = if !abort.register(domain.downgrade()) {
                    Outcome::NotRun("the request ended before the call".into())
                } else {
                    match domain.call(&entrypoint, &[]) {
                        Ok(_) => Outcome::Exited(0),
                        Err(CallError::Exit(status)) => Outcome::Exited(status),
                        Err(e) => Outcome::Failed(e),
                    }
                };
                // The domain's stdio duplicates close here: the server's
                // readers see the end of stdout and stderr.
                let _ = domain.unload();
                drop(permit);
                drop(in_flight);
                outcome
            })
        };
        // A client that goes away before the head drops this future: the
        // guard stops the guest then (once the body streams, its task
        // stops the guest when the client is gone).
        let mut on_drop = AbortOnDrop(Some(domain.clone()));
        let body_too_large = Arc::new(AtomicBool::new(false));
        tokio::spawn(feed_stdin(
            body,
            server.stdin,
            self.max_body,
            Arc::clone(&body_too_large),
            domain.clone(),
        ));
        tokio::spawn(log_stderr(
            server.stderr,
            self.plugin.clone(),
            self.request_id.clone(),
        ));
        let mut stdout = server.stdout;
        let head = read_head(&mut stdout, self.max_response.min(MAX_HEAD)).await;
        if body_too_large.load(Ordering::Acquire) {
            domain.abort();
            return self.fault(
                FaultKind::Body,
                format!(
                    "the request body is over max_body ({} bytes)",
                    self.max_body
                ),
                None,
            );
        }
        let (buffer, end) = match head {
            Head::Ended { buffer, end } => (buffer, end),
            Head::TooLong(len) => {
                domain.abort();
                let limit = self.max_response.min(MAX_HEAD);
                let what = if limit < MAX_HEAD {
                    "max_response"
                } else {
                    "the header block limit"
                };
                return self.fault(
                    FaultKind::BadResponse,
                    format!(
                        "no end of the header block in the first {len} bytes ({what}: {limit})"
                    ),
                    None,
                );
            }
            Head::Eof(written) => return self.without_head(call, written).await,
            Head::Error(e) => {
                domain.abort();
                return self.fault(FaultKind::Internal, format!("reading stdout: {e}"), None);
            }
        };
        let head = match wagi::parse_head(&buffer[..end]) {
            Ok(head) => head,
            Err(e) => {
                domain.abort();
                return self.fault(
                    FaultKind::BadResponse,
                    format!("bad header block: {e}"),
                    None,
                );
            }
        };
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(BODY_CHANNEL);
        let rest = Bytes::copy_from_slice(&buffer[end..]);
        let written = buffer.len();
        let mut response = Response::new(ChannelBody(rx).boxed());
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        if !response.headers().contains_key(header::CONTENT_TYPE) {
            // A `status:`-only head: the body is whatever the guest wrote.
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        on_drop.0 = None;
        tokio::spawn(self.stream_body(stdout, rest, written, tx, call, domain));
        response
    }

    /// The answer when stdout ended without a header block: the call's
    /// outcome decides.
    pub(crate) async fn without_head(
        self,
        call: JoinHandle<Outcome>,
        written: usize,
    ) -> Response<Body> {
        match call.await {
            Ok(Outcome::Exited(0)) => self.fault(
                FaultKind::BadResponse,
                format!("the plugin wrote no header block ({written} bytes, no blank line)"),
                None,
            ),
            other => self.failed(
                other,
                "the plugin exited with status {} before a header block",
            ),
        }
    }

    /// The fault of a call that failed before the response's head: a
    /// nonzero exit status (`exited`, with `{}` for the status), a trap,
    /// the deadline, the memory limit, or a call that never ran.
    pub(crate) fn failed(
        &self,
        outcome: Result<Outcome, tokio::task::JoinError>,
        exited: &str,
    ) -> Response<Body> {
        match outcome {
            Ok(Outcome::Exited(status)) => self.fault(
                FaultKind::Exit,
                exited.replace("{}", &status.to_string()),
                None,
            ),
            Ok(Outcome::Failed(e)) => {
                let kind = FaultKind::of_call(&e).unwrap_or(FaultKind::Trap);
                self.fault(kind, e.to_string(), fault::backtrace(&e))
            }
            Ok(Outcome::NotRun(e)) => self.fault(FaultKind::Internal, e, None),
            Err(e) => self.fault(FaultKind::Internal, format!("the call's task: {e}"), None),
        }
    }

    /// Streams the rest of stdout into the response body; at the end, a
    /// failed call cuts it.
    pub(crate) async fn stream_body(
        self,
        mut stdout: pipe::Receiver,
        rest: Bytes,
        mut written: usize,
        tx: mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
        call: JoinHandle<Outcome>,
        domain: Abort,
    ) {
        let cut = |detail: &str| io::Error::other(format!("{detail} (id {})", self.request_id));
        if !rest.is_empty() && tx.send(Ok(Frame::data(rest))).await.is_err() {
            domain.abort();
            return;
        }
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match stdout.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    written += n;
                    if written > self.max_response {
                        domain.abort();
                        let detail = format!(
                            "the response is over max_response ({} bytes): cut",
                            self.max_response
                        );
                        self.record(FaultKind::BadResponse, detail.clone(), None);
                        let _ = tx.send(Err(cut(&detail))).await;
                        return;
                    }
                    if tx
                        .send(Ok(Frame::data(buf.split().freeze())))
                        .await
                        .is_err()
                    {
                        // The client is gone: stop the guest.
                        domain.abort();
                        return;
                    }
                }
                Err(e) => {
                    domain.abort();
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        match call.await {
            Ok(Outcome::Exited(0)) => {}
            Ok(Outcome::Exited(status)) => {
                tracing::warn!(
                    target: "custody::serve::request",
                    id = self.request_id, plugin = self.plugin, status,
                    "the plugin exited with a nonzero status after its response"
                );
            }
            Ok(Outcome::Failed(e)) => {
                let kind = FaultKind::of_call(&e).unwrap_or(FaultKind::Trap);
                self.record(
                    kind,
                    format!("{e}; the response body was cut"),
                    fault::backtrace(&e),
                );
                let _ = tx.send(Err(cut(kind.name()))).await;
            }
            Ok(Outcome::NotRun(e)) => self.record(FaultKind::Internal, e, None),
            Err(e) => self.record(FaultKind::Internal, format!("the call's task: {e}"), None),
        }
    }
}

/// A way to stop the request's guest from the async side: the blocking
/// side registers its domain before the call; an abort asked earlier
/// makes the call not start.
#[derive(Clone, Default)]
pub(crate) struct Abort(Arc<Mutex<AbortState>>);

#[derive(Default)]
struct AbortState {
    aborted: bool,
    domain: Option<WeakDomain>,
}

impl Abort {
    fn lock(&self) -> std::sync::MutexGuard<'_, AbortState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the domain; false if the request was aborted already.
    pub(crate) fn register(&self, domain: WeakDomain) -> bool {
        let mut state = self.lock();
        state.domain = Some(domain);
        !state.aborted
    }

    /// Aborts the guest's call, now or before it starts.
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        if let Some(domain) = state.domain.as_ref().and_then(WeakDomain::upgrade) {
            domain.abort();
        }
    }
}

/// Aborts the guest's call when dropped, unless disarmed (`None`).
pub(crate) struct AbortOnDrop(pub(crate) Option<Abort>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(abort) = self.0.take() {
            abort.abort();
        }
    }
}

/// Writes the request body into the guest's stdin as it arrives; over
/// `max_body`, marks it and stops the guest. Closing stdin (the end of the
/// body) is the guest's end of file. A guest that stops reading (or ends)
/// leaves the rest of the body unwanted: it is read and dropped (still
/// bounded by `max_body`), so the client can finish sending and read the
/// response on a connection that stays usable.
pub(crate) async fn feed_stdin(
    mut body: Incoming,
    stdin: pipe::Sender,
    max_body: usize,
    too_large: Arc<AtomicBool>,
    domain: Abort,
) {
    let mut total = 0usize;
    let mut stdin = Some(stdin);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > max_body {
            too_large.store(true, Ordering::Release);
            domain.abort();
            return;
        }
        if let Some(pipe) = &mut stdin
            && pipe.write_all(&data).await.is_err()
        {
            stdin = None;
        }
    }
}

/// Logs the guest's stderr a line at a time, tagged with the plugin and
/// the request.
pub(crate) async fn log_stderr(stderr: pipe::Receiver, plugin: String, request_id: String) {
    let mut reader = BufReader::new(stderr.take(u64::MAX));
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LOG_LINE as u64);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
                tracing::info!(
                    target: "custody::serve::stderr",
                    plugin, id = request_id, "{}", escape_control(&text)
                );
            }
        }
    }
}

/// How reading the header block ended.
enum Head {
    /// It ended at `end` in `buffer` (which may hold body bytes after it).
    Ended { buffer: Vec<u8>, end: usize },
    /// No end in the first `limit` bytes.
    TooLong(usize),
    /// stdout ended first, after this many bytes.
    Eof(usize),
    /// Reading failed.
    Error(io::Error),
}

async fn read_head(stdout: &mut pipe::Receiver, limit: usize) -> Head {
    let mut buffer = Vec::with_capacity(CHUNK.min(limit));
    loop {
        let from = buffer.len();
        if from >= limit {
            return Head::TooLong(from);
        }
        let room = (limit - from).min(CHUNK);
        let mut chunk = vec![0u8; room];
        match stdout.read(&mut chunk).await {
            Ok(0) => return Head::Eof(from),
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(end) = wagi::head_end(&buffer, from) {
                    return Head::Ended { buffer, end };
                }
            }
            Err(e) => return Head::Error(e),
        }
    }
}

/// A response body fed through a bounded channel.
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Result<Frame<Bytes>, io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx)
    }
}
