//! One request to a custody-ABI plugin (`interface = "custody"`), run: a
//! fresh domain on tokio's blocking pool, never on a reactor thread, whose
//! `handle(request, response)` export gets two handles of its table, the
//! request body (the guest's side of an in-process pipe the server writes
//! the body into as it arrives, `stdio`'s feeding) and the response body
//! (the guest's side of one the server streams out, [`GuestBody`]), and
//! reads the head and shapes its own through `custody_http` (an
//! [`Exchange`]). The pipes are custody-host's ([`custody_host::pipe`]), as
//! WAGI's stdio: no fd, no reactor registration, a lock per transfer.
//!
//! As for WAGI, a short call's response leaves whole, with its length, when
//! `handle` returns (within [`FLUSH_DELAY`], having written less than half
//! the pipe's room); a longer one streams. The head is committed when the
//! first body bytes leave, or when the call ends: a status or header set
//! after that is `E_INVAL` to the guest.
//!
//! Both handles are the domain's: whatever the guest did (closed them,
//! leaked them, trapped, spun to the deadline), they are closed when the
//! call ends, and anything else the guest holds is released when its domain
//! unloads, just after the response left. Faults end as for WAGI
//! (`exec`): before the head, a trap 500, the deadline 504, the memory limit
//! 500, a nonzero return 500; after it, the body is cut.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use custody_handle::HandleId;
use custody_host::pipe::{self, GuestSide, PipeReader};
use custody_host::{CallError, Domain, Val};
use custody_http::{Exchange, RequestHead, ResponseHead};
use custody_wasi::{Stdio, WasiConfig, WasiDomain};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinError;

use crate::abort::{Abort, AbortOnDrop};
use crate::body::{Body, full};
use crate::exec::{CHUNK, GuestBody, WagiRun};
use crate::fault::FaultKind;
use crate::outcome::{CallOutcome, Outcome, short_call};
use crate::plugin::HANDLE_EXPORT;
use crate::stdio::{GuestStdin, GuestStdout, PIPE_CAPACITY, feed_stdin, log_captured, read_whole};
use crate::wagi::SERVER_OWNED;

/// Runs one request through `handle`: the response, whose body may still
/// be streaming. `run` says who, where and with which bounds (its `env`,
/// `argv` and `entrypoint` are not used: the export is `handle`).
pub(crate) async fn run(
    run: WagiRun,
    head: RequestHead,
    body: Incoming,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    let (request_side, writer) = pipe::into_guest(PIPE_CAPACITY);
    // A request without a body (a GET): the guest reads its end at once,
    // and nothing feeds it (no task).
    let server_in = if body.is_end_stream() {
        drop(writer);
        None
    } else {
        Some(GuestStdin(writer))
    };
    let (response_side, reader) = pipe::out_of_guest(PIPE_CAPACITY);
    let domain = run.abort.clone();
    let in_flight = run.enter();
    let (exchange_tx, exchange_rx) = oneshot::channel::<Arc<HeadOnce>>();
    // The outcome leaves as soon as the call ended and the request's two
    // handles are closed (the response's reader then sees the end of the
    // body): the response does not wait for a fresh domain's unload, which
    // follows on the same thread, still under the request's permit.
    let (done, outcome) = oneshot::channel::<Outcome>();
    {
        let abort = domain.clone();
        let (host, version) = (Arc::clone(&run.host), Arc::clone(&run.version));
        let request_id = run.request_id;
        let span = run.span.clone();
        tokio::task::spawn_blocking(move || {
            // The domain is made and called in the request's span.
            let _request = span.enter();
            // A plugin that also imports WASI logs through stderr: captured,
            // and logged after each request.
            let wasi = || WasiConfig::new().stderr(Stdio::Capture);
            let ends = (request_side, response_side);
            match &version.pool {
                None => {
                    let domain = match version.domain(&host, wasi) {
                        Ok(domain) => domain,
                        Err(e) => return drop(done.send(Outcome::NotRun(e))),
                    };
                    let (outcome, ids) = call_handle(&domain, &abort, head, ends, exchange_tx);
                    close_request_handles(&domain, ids);
                    log_captured(&domain.take_stderr(), &version.plugin, request_id);
                    let _ = done.send(outcome);
                    // Whatever else the guest holds is released here.
                    let _ = domain.unload();
                }
                Some(pool) => {
                    let pooled = match pool.take(|| version.domain(&host, wasi)) {
                        Ok(pooled) => pooled,
                        Err(e) => return drop(done.send(Outcome::NotRun(e))),
                    };
                    let domain = &pooled.domain;
                    let (outcome, ids) = call_handle(domain, &abort, head, ends, exchange_tx);
                    // One the guest kept (duplicated) retires the domain.
                    close_request_handles(domain, ids);
                    log_captured(&domain.take_stderr(), &version.plugin, request_id);
                    if let Some(exchange) = domain.extension::<Exchange>() {
                        exchange.end();
                    }
                    // Back in the pool before the response leaves: the
                    // client's next request finds it.
                    let call_ok = matches!(outcome, Outcome::Exited(_));
                    pool.give_back(pooled, call_ok);
                    let _ = done.send(outcome);
                }
            }
            drop(permit);
            drop(in_flight);
        });
    }
    let call = CallOutcome(outcome);
    let mut on_drop = AbortOnDrop(Some(domain.clone()));
    let body_too_large = Arc::new(AtomicBool::new(false));
    if let Some(server_in) = server_in {
        tokio::spawn(feed_stdin(
            body,
            server_in,
            run.max_body,
            Arc::clone(&body_too_large),
            domain.clone(),
        ));
    }
    // A short call's whole response is one, with its length (the response
    // side closes as the request's handles are released); else it streams.
    let mut call = call;
    if let Some(outcome) = short_call(&reader, &mut call).await {
        on_drop.0 = None;
        let ended = Ended {
            reader,
            outcome,
            exchange: exchange_rx,
            body_too_large,
            domain,
        };
        return complete(run, ended).await;
    }
    // The first body bytes, or the end of the body (the call ended).
    let mut first = vec![0u8; CHUNK];
    let n = reader.read(&mut first).await;
    first.truncate(n);
    if body_too_large.load(Ordering::Acquire) {
        domain.abort();
        return run.body_too_large();
    }
    let Ok(exchange) = exchange_rx.await else {
        // The domain was never made (its error is the call's outcome).
        on_drop.0 = None;
        return run.without_head(call.await, 0);
    };
    if n == 0 {
        // No body: the call's outcome decides, then the head goes.
        on_drop.0 = None;
        return match call.await {
            Ok(Outcome::Exited(0)) => respond(exchange.commit(), full(Bytes::new())),
            other => run.failed(other, "handle returned {} before any response body"),
        };
    }
    let head = exchange.commit();
    on_drop.0 = None;
    // `handle`'s result, as a WAGI exit status after the body began (a
    // future the body polls, not a task of its own).
    let call = Box::pin(async move {
        Ok(match call.await {
            Ok(Outcome::Exited(0)) | Err(_) => Outcome::Exited(0),
            Ok(other) => other,
        })
    });
    let body = GuestBody::new(
        run,
        GuestStdout(reader),
        Bytes::from(first),
        n,
        call,
        domain,
    );
    respond(head, body.boxed())
}

/// The request's two handles go (the server's reader sees the end of the
/// response body), whatever the guest did with them.
fn close_request_handles(domain: &Domain, ids: [Option<HandleId>; 2]) {
    for id in ids.into_iter().flatten() {
        let _ = domain.close_handle(id);
    }
}

/// A call that ended before its response left: its whole body is in the
/// pipe.
struct Ended {
    reader: PipeReader,
    outcome: Result<Outcome, JoinError>,
    exchange: oneshot::Receiver<Arc<HeadOnce>>,
    body_too_large: Arc<AtomicBool>,
    domain: Abort,
}

/// The response of a call that ended with its whole body in the pipe:
/// the head and the body as one, with its length, or the fault the
/// outcome makes of it (nothing left yet: a body over `max_response` is a
/// 502, a failure before any body its fault's status). A call that failed
/// after writing some body keeps its head and has the body cut, as if the
/// body had begun to leave ([`GuestBody`] ends it).
async fn complete(run: WagiRun, ended: Ended) -> Response<Body> {
    let Ended {
        reader,
        outcome,
        exchange,
        body_too_large,
        domain,
    } = ended;
    if body_too_large.load(Ordering::Acquire) {
        return run.body_too_large();
    }
    let Ok(exchange) = exchange.await else {
        // The domain was never made (its error is the call's outcome).
        return run.without_head(outcome, 0);
    };
    let output = read_whole(&reader).await;
    let written = output.len();
    if written > run.max_response {
        let detail = format!(
            "the response is over max_response ({} bytes)",
            run.max_response
        );
        return run.fault(FaultKind::BadResponse, detail, None);
    }
    match outcome {
        Ok(Outcome::Exited(0)) => respond(exchange.commit(), full(Bytes::from(output))),
        other if written == 0 => run.failed(other, "handle returned {} before any response body"),
        other => {
            let head = exchange.commit();
            let call = std::future::ready(other);
            let body = GuestBody::new(
                run,
                GuestStdout(reader),
                Bytes::from(output),
                written,
                call,
                domain,
            );
            respond(head, body.boxed())
        }
    }
}

/// In the domain, on the blocking pool: the handles made, the exchange
/// begun and handed to the server, `handle` called.
/// Returns the call's outcome and the two handles' ids (to close in a
/// pooled domain).
fn call_handle(
    domain: &Domain,
    abort: &Abort,
    head: RequestHead,
    (request, response): (GuestSide, GuestSide),
    exchange_tx: oneshot::Sender<Arc<HeadOnce>>,
) -> (Outcome, [Option<HandleId>; 2]) {
    let Some(exchange) = domain.extension::<Exchange>() else {
        let missing = "the host has no custody_http extension";
        return (Outcome::NotRun(missing.into()), [None, None]);
    };
    // Both handles or neither (one lock of the table for the two).
    let [request, response] = match domain.insert_handles([request, response]) {
        Ok(ids) => ids,
        Err(e) => {
            let outcome = Outcome::NotRun(format!("the request's handles: {e}"));
            return (outcome, [None, None]);
        }
    };
    let ids = [Some(request), Some(response)];
    exchange.begin(head);
    let exchange = Arc::new(HeadOnce::new(exchange));
    if exchange_tx.send(Arc::clone(&exchange)).is_err() || !abort.register(domain) {
        return (
            Outcome::NotRun("the request ended before the call".into()),
            ids,
        );
    }
    let args = [
        Val::I32(request.raw() as i32),
        Val::I32(response.raw() as i32),
    ];
    let outcome = match domain.call(HANDLE_EXPORT, &args) {
        Ok(results) => match results.first() {
            Some(Val::I32(code)) => Outcome::Exited(*code),
            _ => Outcome::Exited(0),
        },
        Err(CallError::Exit(status)) => Outcome::Exited(status),
        Err(e) => Outcome::Failed(e),
    };
    // The head is committed (if the server did not yet): nothing changes it
    // from here on, and the server reads it here once the body ends, even
    // after a pooled domain's exchange moved on to its next request.
    exchange.seal();
    (outcome, ids)
}

/// One request's response head, committed once by whichever side comes
/// first: the server when the first body bytes leave, or the call's task
/// when `handle` returns. A pooled domain's exchange is emptied when its
/// call ends, and serves its next request after: the server, which may
/// commit later than that, takes the head kept here, never the exchange's.
struct HeadOnce {
    exchange: Arc<Exchange>,
    state: Mutex<Commit>,
}

/// Where the head is.
enum Commit {
    /// In the exchange: the plugin may still change it.
    Open,
    /// Committed by the call's side, kept here for the server.
    Kept(ResponseHead),
    /// Handed to the server.
    Taken,
}

impl HeadOnce {
    fn new(exchange: Arc<Exchange>) -> HeadOnce {
        HeadOnce {
            exchange,
            state: Mutex::new(Commit::Open),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Commit> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's side, once per request: commits the head (if the call
    /// did not yet) and takes it: from now on the plugin cannot change it
    /// (it may still read the request's).
    fn commit(&self) -> ResponseHead {
        match std::mem::replace(&mut *self.lock(), Commit::Taken) {
            Commit::Open => self.exchange.commit().unwrap_or_default(),
            Commit::Kept(head) => head,
            Commit::Taken => unreachable!("the server takes a request's head once"),
        }
    }

    /// The call's side, when `handle` returns: commits the head (if the
    /// server did not yet) and keeps it for the server.
    fn seal(&self) {
        let mut state = self.lock();
        if let Commit::Open = *state {
            *state = Commit::Kept(self.exchange.commit().unwrap_or_default());
        }
    }
}

/// The response the plugin's head describes, with `body`: a header the
/// server owns (framing, connection) is dropped, so a plugin cannot break
/// the response's framing.
fn respond(head: ResponseHead, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
    let mut headers = head.headers;
    // Most responses set none of these: look before hashing eight names.
    if headers
        .keys()
        .any(|name| SERVER_OWNED.contains(&name.as_str()))
    {
        for name in SERVER_OWNED {
            headers.remove(name);
        }
    }
    *response.headers_mut() = headers;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    response
}
