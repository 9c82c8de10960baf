//! One request to a custody-ABI plugin (`interface = "custody"`), run: a
//! fresh domain on tokio's blocking pool, never on a reactor thread, whose
//! `handle(request, response)` export gets two handles of its table, the
//! request body (the read end of a pipe the server writes the body into as
//! it arrives) and the response body (the write end of a pipe the server
//! streams out), and reads the head and shapes its own through
//! `custody_http` (an [`Exchange`]). The head is committed when the first
//! body bytes arrive, or when the call ends without any: a status or header
//! set after that is `E_INVAL` to the guest.
//!
//! Both handles are the domain's: whatever the guest did (closed them,
//! leaked them, trapped, spun to the deadline), they are released when the
//! domain unloads at the end of the request. Faults end as for WAGI
//! (`exec`): before the head, a trap 500, the deadline 504, the memory limit
//! 500, a nonzero return 500; after it, the body is cut.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use custody_handle::{Fd, HandleId};
use custody_host::{CallError, Domain, Val};
use custody_http::{Exchange, RequestHead, ResponseHead};
use custody_wasi::{Stdio, WasiConfig, WasiDomain};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::abort::{Abort, AbortOnDrop};
use crate::body::{Body, full};
use crate::exec::{CHUNK, GuestBody, Outcome, WagiRun};
use crate::fault::FaultKind;
use crate::plugin::HANDLE_EXPORT;
use crate::stdio::{feed_stdin, log_captured};
use crate::wagi::SERVER_OWNED;

/// A non-blocking, close-on-exec pipe: (read end, write end). The guest's
/// end must not block: the custody ABI waits on it through the domain's
/// one cancellable wait.
fn pipe_ends() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?)
}

/// Runs one request through `handle`: the response, whose body may still
/// be streaming. `run` says who, where and with which bounds (its `env`,
/// `argv` and `entrypoint` are not used: the export is `handle`).
pub(crate) async fn run(
    run: WagiRun,
    head: RequestHead,
    body: Incoming,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    let ends = pipe_ends().and_then(|request| Ok((request, pipe_ends()?)));
    let ((request_r, request_w), (response_r, response_w)) = match ends {
        Ok(ends) => ends,
        Err(e) => return run.fault(FaultKind::Internal, format!("pipes: {e}"), None),
    };
    // A request without a body (a GET): the guest reads its end at once,
    // and nothing feeds it (no task, no reactor registration).
    let server_in = if body.is_end_stream() {
        drop(request_w);
        None
    } else {
        match pipe::Sender::from_owned_fd(request_w) {
            Ok(sender) => Some(sender),
            Err(e) => return run.fault(FaultKind::Internal, format!("pipes: {e}"), None),
        }
    };
    let server_out = match pipe::Receiver::from_owned_fd(response_r) {
        Ok(receiver) => receiver,
        Err(e) => return run.fault(FaultKind::Internal, format!("pipes: {e}"), None),
    };
    let domain = run.abort.clone();
    let in_flight = run.enter();
    let (exchange_tx, exchange_rx) = oneshot::channel::<Arc<Exchange>>();
    let call = {
        let abort = domain.clone();
        let (host, version) = (Arc::clone(&run.host), Arc::clone(&run.version));
        let (plugin, request_id) = (run.plugin.clone(), run.request_id.clone());
        let span = run.span.clone();
        tokio::task::spawn_blocking(move || {
            // The domain is made and called in the request's span.
            let _request = span.enter();
            // A plugin that also imports WASI logs through stderr: captured,
            // and logged after each request.
            let wasi = WasiConfig::new().stderr(Stdio::Capture);
            let outcome = match &version.pool {
                None => {
                    let domain = match version.domain(&host, wasi) {
                        Ok(domain) => domain,
                        Err(e) => return Outcome::NotRun(e),
                    };
                    let ends = (request_r, response_w);
                    let (outcome, _) = call_handle(&domain, &abort, head, ends, exchange_tx);
                    log_captured(&domain.take_stderr(), &plugin, &request_id);
                    // The two handles are released here, whatever the guest
                    // did: the server's reader sees the end of the body.
                    let _ = domain.unload();
                    outcome
                }
                Some(pool) => {
                    let pooled = match pool.take(|| version.domain(&host, wasi)) {
                        Ok(pooled) => pooled,
                        Err(e) => return Outcome::NotRun(e),
                    };
                    let domain = &pooled.domain;
                    let ends = (request_r, response_w);
                    let (outcome, ids) = call_handle(domain, &abort, head, ends, exchange_tx);
                    // The request's two handles go now (the server's reader
                    // sees the end of the body); one the guest kept or
                    // duplicated retires the domain.
                    for id in ids.into_iter().flatten() {
                        let _ = domain.close_handle(id);
                    }
                    log_captured(&domain.take_stderr(), &plugin, &request_id);
                    if let Some(exchange) = domain.extension::<Exchange>() {
                        exchange.end();
                    }
                    let call_ok = matches!(outcome, Outcome::Exited(_));
                    pool.give_back(pooled, call_ok);
                    outcome
                }
            };
            drop(permit);
            drop(in_flight);
            outcome
        })
    };
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
    let mut response_body = server_out;
    // The first body bytes, or the end of the body (the call ended).
    let mut first = vec![0u8; CHUNK];
    let n = match response_body.read(&mut first).await {
        Ok(n) => n,
        Err(e) => {
            domain.abort();
            return run.fault(
                FaultKind::Internal,
                format!("reading the response: {e}"),
                None,
            );
        }
    };
    first.truncate(n);
    if body_too_large.load(std::sync::atomic::Ordering::Acquire) {
        domain.abort();
        return run.fault(
            FaultKind::Body,
            format!("the request body is over max_body ({} bytes)", run.max_body),
            None,
        );
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
            Ok(Outcome::Exited(0)) => respond(commit(&exchange), full(Bytes::new())),
            other => run.failed(other, "handle returned {} before any response body"),
        };
    }
    let head = commit(&exchange);
    on_drop.0 = None;
    // `handle`'s result, as a WAGI exit status after the body began (a
    // future the body polls, not a task of its own).
    let call = Box::pin(async move {
        Ok(match call.await {
            Ok(Outcome::Exited(0)) | Err(_) => Outcome::Exited(0),
            Ok(other) => other,
        })
    });
    let body = GuestBody::new(run, response_body, Bytes::from(first), n, call, domain);
    respond(head, body.boxed())
}

/// In the domain, on the blocking pool: the handles made, the exchange
/// begun and handed to the server, `handle` called.
/// Returns the call's outcome and the two handles' ids (to close in a
/// pooled domain).
fn call_handle(
    domain: &Domain,
    abort: &Abort,
    head: RequestHead,
    (request, response): (OwnedFd, OwnedFd),
    exchange_tx: oneshot::Sender<Arc<Exchange>>,
) -> (Outcome, [Option<HandleId>; 2]) {
    let Some(exchange) = domain.extension::<Exchange>() else {
        let missing = "the host has no custody_http extension";
        return (Outcome::NotRun(missing.into()), [None, None]);
    };
    let request = match domain.insert_handle(Fd::from(request)) {
        Ok(id) => id,
        Err(e) => {
            return (
                Outcome::NotRun(format!("the request's handle: {e}")),
                [None, None],
            );
        }
    };
    let response = match domain.insert_handle(Fd::from(response)) {
        Ok(id) => id,
        Err(e) => {
            let outcome = Outcome::NotRun(format!("the response's handle: {e}"));
            return (outcome, [Some(request), None]);
        }
    };
    let ids = [Some(request), Some(response)];
    exchange.begin(head);
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
    // from here on, and the server reads it once the body ends.
    exchange.commit();
    (outcome, ids)
}

/// Commits the head: from now on the plugin cannot change it (it may still
/// read the request's).
fn commit(exchange: &Exchange) -> ResponseHead {
    exchange.commit().unwrap_or_default()
}

/// The response the plugin's head describes, with `body`: a header the
/// server owns (framing, connection) is dropped, so a plugin cannot break
/// the response's framing.
fn respond(head: ResponseHead, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
    for (name, value) in head.headers {
        if SERVER_OWNED.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    response
}
