//! One WAGI request, run: a fresh domain (create, load, call the
//! entrypoint, unload) on tokio's blocking pool, never on a reactor
//! thread, with in-process pipes for its stdin and stdout (`stdio`). The
//! request body is written into stdin as it arrives (a request without
//! one gets a null stdin); stdout is read as the guest writes it: its
//! header block becomes the response head and the rest streams out as
//! the client takes it ([`GuestBody`]), so the first bytes leave before the guest
//! finishes and a request costs the server a bounded amount of memory
//! (the pipes' room, [`MAX_HEAD`](crate::wagi::MAX_HEAD), and
//! one chunk of [`CHUNK`] bytes at a time). stderr is captured
//! (bounded by the policy's `stdio_capture_limit`) and logged a line at a
//! time when the call ends.
//!
//! How a request ends (docs/SERVER.md has the table): the guest's header
//! block decides the status; without one, the call's outcome does (a trap
//! 500, the deadline 504, the memory limit 500, an exit with a nonzero
//! status 500, an exit with 0 or a return a 502 for the missing header
//! block). A failure after the head left cuts the body (the client sees
//! an incomplete response); an exit with a nonzero status after it is
//! logged and the response stands, as CGI servers do.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use custody_host::{CallError, Host};
use custody_wasi::{Stdio, WasiConfig, WasiDomain};
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::{Body as _, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinError;

use crate::abort::{Abort, AbortOnDrop};
use crate::body::Body;
use crate::drain::InFlightGuard;
use crate::fault::{self, Fault, FaultCounters, FaultKind};
use crate::outcome::{CallOutcome, Outcome, short_call};
use crate::plugin::PluginVersion;
use crate::recent_diagnostics::RecentDiagnostics;
use crate::request_span::RequestId;
use crate::stdio::{GuestStdin, GuestStdout, PIPE_CAPACITY, feed_stdin, log_captured, read_whole};
use crate::wagi::{self, Head, MAX_HEAD};

/// The size of one read of the guest's stdout.
pub const CHUNK: usize = 16 << 10;
/// What one request runs.
pub(crate) struct WagiRun {
    pub host: Arc<Host>,
    pub version: Arc<PluginVersion>,
    /// Which of the version's routes the request took (its export).
    pub at: usize,
    /// A WAGI guest's environment (`NAME=VALUE`); empty for the custody ABI.
    pub env: Vec<String>,
    pub argv: Vec<String>,
    pub request_id: RequestId,
    pub max_body: usize,
    pub max_response: usize,
    pub counters: Arc<FaultCounters>,
    /// The server's recent diagnostics, where its faults go too.
    pub recent: Arc<RecentDiagnostics>,
    /// Whether a fault is answered in JSON (the request's `Accept`).
    pub wants_json: bool,
    /// Stops its guest; whether an operator cancelled it.
    pub abort: Abort,
    /// The request's span: its domain is made and called inside it.
    pub span: tracing::Span,
}

impl WagiRun {
    /// The fault `kind` of this request, as a [`Fault`]: `cancelled`
    /// whatever it looked like, if an operator cancelled the request (the
    /// cancel is why its call failed or never ran).
    fn as_fault<'a>(
        &'a self,
        kind: FaultKind,
        detail: String,
        backtrace: Option<&'a str>,
    ) -> Fault<'a> {
        let kind = if self.abort.is_cancelled() {
            FaultKind::Cancelled
        } else {
            kind
        };
        Fault {
            kind,
            id: self.request_id,
            plugin: &self.version.plugin,
            version: &self.version.id,
            domain: self.abort.domain_id(),
            route: self.route(),
            detail,
            backtrace,
        }
    }

    pub(crate) fn fault(
        &self,
        kind: FaultKind,
        detail: String,
        backtrace: Option<&str>,
    ) -> Response<Body> {
        (self.as_fault(kind, detail, backtrace)).respond(
            &self.counters,
            &self.recent,
            self.wants_json,
        )
    }

    fn record(&self, kind: FaultKind, detail: String, backtrace: Option<&str>) {
        (self.as_fault(kind, detail, backtrace)).record(&self.counters, &self.recent);
    }

    /// The route the request took, as written.
    fn route(&self) -> &str {
        self.version.routes[self.at].0.as_str()
    }

    /// Enters the request in its version's registry until the guard drops
    /// (once its domain is unloaded): a drain forced past
    /// `drain_timeout`, or an operator's cancel, stops the guest through
    /// it, and the admin API lists it.
    pub(crate) fn enter(&self) -> InFlightGuard {
        (self.version.in_flight).enter(self.request_id, self.abort.clone())
    }

    /// Runs the request: the response, whose body may still be streaming.
    /// `permit` (one of the plugin's `max_concurrency`) is held until the
    /// domain is unloaded.
    pub(crate) async fn run(
        mut self,
        body: Incoming,
        permit: OwnedSemaphorePermit,
    ) -> Response<Body> {
        // Most requests (a GET) have no body: a null stdin, nothing to feed.
        let (stdin, feed) = if body.is_end_stream() {
            (Stdio::Null, None)
        } else {
            let (stdin, writer) = Stdio::pipe_in(PIPE_CAPACITY);
            (stdin, Some(GuestStdin(writer)))
        };
        let (stdout, reader) = Stdio::pipe_out(PIPE_CAPACITY);
        let wasi = WasiConfig::new()
            .args(std::mem::take(&mut self.argv))
            .env_entries(std::mem::take(&mut self.env))
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::Capture);
        let domain = self.abort.clone();
        let in_flight = self.enter();
        // The outcome leaves as soon as the call ended and the guest's
        // stdio pipes are closed (the server's reader sees the end of
        // stdout): the response does not wait for the domain's unload,
        // which follows on the same thread, still under the permit.
        let (done, outcome) = oneshot::channel();
        {
            let abort = domain.clone();
            let (host, version, at) = (Arc::clone(&self.host), Arc::clone(&self.version), self.at);
            let request_id = self.request_id;
            let span = self.span.clone();
            tokio::task::spawn_blocking(move || {
                let _request = span.enter();
                let domain = match version.domain(&host, || wasi) {
                    Ok(domain) => domain,
                    Err(e) => return drop(done.send(Outcome::NotRun(e))),
                };
                let outcome = if !abort.register(&domain) {
                    Outcome::NotRun("the request ended before the call".into())
                } else {
                    match domain.call(&version.routes[at].1, &[]) {
                        Ok(_) => Outcome::Exited(0),
                        Err(CallError::Exit(status)) => Outcome::Exited(status),
                        Err(e) => Outcome::Failed(e),
                    }
                };
                log_captured(&domain.take_stderr(), &version.plugin, request_id);
                domain.close_pipes();
                let _ = done.send(outcome);
                let _ = domain.unload();
                drop(permit);
                drop(in_flight);
            });
        }
        let call = CallOutcome(outcome);
        // A client that goes away before the head drops this future: the
        // guard stops the guest then (once the body streams, its task
        // stops the guest when the client is gone).
        let mut on_drop = AbortOnDrop(Some(domain.clone()));
        let body_too_large = Arc::new(AtomicBool::new(false));
        if let Some(stdin) = feed {
            tokio::spawn(feed_stdin(
                body,
                stdin,
                self.max_body,
                Arc::clone(&body_too_large),
                domain.clone(),
            ));
        }
        let mut call = call;
        if let Some(outcome) = short_call(&reader, &mut call).await {
            on_drop.0 = None;
            return self.complete(reader, outcome, &body_too_large).await;
        }
        let mut stdout = GuestStdout(reader);
        let head = wagi::read_head(&mut stdout, self.max_response.min(MAX_HEAD), CHUNK).await;
        if body_too_large.load(Ordering::Acquire) {
            domain.abort();
            return self.body_too_large();
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
            Head::Eof(written) => return self.without_head(call.await, written),
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
        let rest = Bytes::copy_from_slice(&buffer[end..]);
        let written = buffer.len();
        on_drop.0 = None;
        let body = GuestBody::new(self, stdout, rest, written, call, domain);
        respond(head, body.boxed())
    }

    /// The response of a call that ended with its whole output in the
    /// pipe (at most half its room): its head and the rest as one body
    /// with its length, or the fault the outcome makes of it. Nothing left
    /// yet, so a failed call is its fault's status, not a cut body.
    async fn complete(
        self,
        reader: custody_wasi::PipeReader,
        outcome: Result<Outcome, JoinError>,
        body_too_large: &AtomicBool,
    ) -> Response<Body> {
        if body_too_large.load(Ordering::Acquire) {
            return self.body_too_large();
        }
        let output = read_whole(&reader).await;
        let len = output.len();
        let limit = self.max_response.min(MAX_HEAD);
        let Some(end) = wagi::head_end(&output[..len.min(limit)], 0) else {
            if len > limit {
                return self.fault(
                    FaultKind::BadResponse,
                    format!("no end of the header block in the first {len} bytes (max_response: {limit})"),
                    None,
                );
            }
            return self.without_head(outcome, len);
        };
        match outcome {
            Ok(Outcome::Exited(0)) => {}
            Ok(Outcome::Exited(status)) => tracing::warn!(
                target: "custody::serve::request",
                id = %self.request_id, plugin = self.version.plugin, status,
                "the plugin exited with a nonzero status after its response"
            ),
            failed => return self.failed(failed, "the plugin exited with status {}"),
        }
        if len > self.max_response {
            let detail = format!(
                "the response is over max_response ({} bytes)",
                self.max_response
            );
            return self.fault(FaultKind::BadResponse, detail, None);
        }
        match wagi::parse_head(&output[..end]) {
            Ok(head) => respond(head, crate::body::full(Bytes::from(output).slice(end..))),
            Err(e) => self.fault(
                FaultKind::BadResponse,
                format!("bad header block: {e}"),
                None,
            ),
        }
    }

    /// The fault of a request body over `max_body`.
    pub(crate) fn body_too_large(&self) -> Response<Body> {
        let detail = format!(
            "the request body is over max_body ({} bytes)",
            self.max_body
        );
        self.fault(FaultKind::Body, detail, None)
    }

    /// The answer when stdout ended without a header block: the call's
    /// outcome decides.
    pub(crate) fn without_head(
        self,
        outcome: Result<Outcome, JoinError>,
        written: usize,
    ) -> Response<Body> {
        match outcome {
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
}

/// A response body read from the guest's output as the client takes it:
/// the client's pace is the guest's (a slow client makes the guest's
/// writes wait), and nothing runs between them: no task, no channel, one
/// chunk of [`CHUNK`] bytes at a time. Past `max_response` the body is cut
/// and the guest stopped; at the end of the output the call's outcome
/// decides (a failed call cuts the body: the client sees an incomplete
/// response); dropped early (the client is gone), it stops the guest.
///
/// A cut waits for one `Pending` first: hyper drops what it has buffered
/// (the head, the first bytes) when a body fails in the same turn, and
/// flushes it when the body is pending, so the head that was sent stands.
pub(crate) struct GuestBody<R, C> {
    run: WagiRun,
    output: R,
    /// Body bytes read with the head, not sent yet.
    rest: Bytes,
    /// Everything the guest wrote so far, head included.
    written: usize,
    buf: BytesMut,
    /// The call's outcome, awaited once the output ends.
    call: C,
    domain: Abort,
    ended: bool,
    /// Whether the body was pending since the head: what hyper buffered
    /// was flushed.
    flushed: bool,
    /// A cut held back until hyper has flushed.
    cut: Option<io::Error>,
}

impl<R, C> GuestBody<R, C> {
    /// The body after a head: `rest` was read with it, `written` bytes in
    /// all so far.
    pub(crate) fn new(
        run: WagiRun,
        output: R,
        rest: Bytes,
        written: usize,
        call: C,
        domain: Abort,
    ) -> Self {
        GuestBody {
            run,
            output,
            rest,
            written,
            buf: BytesMut::new(),
            call,
            domain,
            ended: false,
            flushed: false,
            cut: None,
        }
    }

    /// Ends the body with an error the client sees as a cut response,
    /// once what was sent before it has left (see the type's doc).
    fn cut(
        &mut self,
        cx: &Context<'_>,
        error: io::Error,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.ended = true;
        if self.flushed {
            return Poll::Ready(Some(Err(error)));
        }
        self.cut = Some(error);
        cx.waker().wake_by_ref();
        self.pending()
    }

    fn pending<T>(&mut self) -> Poll<T> {
        self.flushed = true;
        Poll::Pending
    }

    /// The error of a cut for `detail`, naming the request.
    fn cut_error(&self, detail: &str) -> io::Error {
        io::Error::other(format!("{detail} (id {})", self.run.request_id))
    }

    /// The end of the output: what the call's outcome makes of the body.
    fn end(
        &mut self,
        cx: &Context<'_>,
        outcome: Result<Outcome, JoinError>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.ended = true;
        match outcome {
            Ok(Outcome::Exited(0)) => {}
            Ok(Outcome::Exited(status)) => {
                tracing::warn!(
                    target: "custody::serve::request",
                    id = %self.run.request_id, plugin = self.run.version.plugin, status,
                    "the plugin exited with a nonzero status after its response"
                );
            }
            Ok(Outcome::Failed(e)) => {
                let kind = FaultKind::of_call(&e).unwrap_or(FaultKind::Trap);
                let detail = format!("{e}; the response body was cut");
                self.run.record(kind, detail, fault::backtrace(&e));
                let error = self.cut_error(kind.name());
                return self.cut(cx, error);
            }
            Ok(Outcome::NotRun(e)) => self.run.record(FaultKind::Internal, e, None),
            Err(e) => {
                let detail = format!("the call's task: {e}");
                self.run.record(FaultKind::Internal, detail, None);
            }
        }
        Poll::Ready(None)
    }
}

impl<R, C> hyper::body::Body for GuestBody<R, C>
where
    R: AsyncRead + Unpin + Send,
    C: Future<Output = Result<Outcome, JoinError>> + Unpin + Send,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(cut) = this.cut.take() {
            return Poll::Ready(Some(Err(cut)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.rest)))));
        }
        this.buf.reserve(CHUNK);
        let read = std::pin::pin!(this.output.read_buf(&mut this.buf)).poll(cx);
        match read {
            Poll::Pending => this.pending(),
            Poll::Ready(Ok(0)) => match Pin::new(&mut this.call).poll(cx) {
                Poll::Ready(outcome) => this.end(cx, outcome),
                Poll::Pending => this.pending(),
            },
            Poll::Ready(Ok(n)) => {
                this.written += n;
                if this.written > this.run.max_response {
                    this.domain.abort();
                    let detail = format!(
                        "the response is over max_response ({} bytes): cut",
                        this.run.max_response
                    );
                    this.run
                        .record(FaultKind::BadResponse, detail.clone(), None);
                    let error = this.cut_error(&detail);
                    return this.cut(cx, error);
                }
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
            Poll::Ready(Err(e)) => {
                this.domain.abort();
                this.cut(cx, e)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.cut.is_none()
    }
}

impl<R, C> Drop for GuestBody<R, C> {
    /// A body dropped before its end: the client is gone, the guest stops.
    fn drop(&mut self) {
        if !self.ended {
            self.domain.abort();
        }
    }
}

/// A response of the guest's head and `body`. A `status:`-only head gets
/// `application/octet-stream`: the body is whatever the guest wrote.
fn respond(head: wagi::ResponseHead, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
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
