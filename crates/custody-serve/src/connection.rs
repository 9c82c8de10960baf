//! Accepting connections under the client bounds, for any of the server's
//! listeners (the plugins' and the admin API's): the connection count, the
//! request head's size, header count and read timeout (slowloris), idle
//! keep-alive connections, and a graceful close when the server stops.
//! Each connection is hyper's HTTP/1.1 on its own task, with a plain
//! function as its service (no tower).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::body::Body;
use crate::config::HttpLimits;

/// Accepts connections on `listener` and serves each on its own task with
/// `service` (given the request and the client's address) until
/// `shutdown` completes: then it stops accepting (the listener closes)
/// and returns the open connections' tasks. A connection closes
/// gracefully when `close` turns true: at once if it is idle, else after
/// the response in flight.
pub(crate) async fn accept<S, F>(
    limits: &HttpLimits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    close: &watch::Receiver<bool>,
    service: S,
) -> std::io::Result<JoinSet<()>>
where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(target: "custody::serve", "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reaps the tasks of closed connections as it goes.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = &mut shutdown => return Ok(tasks),
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(
                target: "custody::serve",
                %remote,
                "max_connections ({}) open: connection closed",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let limits = limits.clone();
        let service = service.clone();
        let mut close = close.clone();
        tasks.spawn(async move {
            // When the connection's last request began: an idle connection
            // (no new request for `idle_timeout`) is shut down gracefully,
            // which lets a response in flight finish first.
            let last_request = Arc::new(std::sync::Mutex::new(Instant::now()));
            let service = {
                let last_request = Arc::clone(&last_request);
                service_fn(move |request| {
                    *last_request.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                    service(request, remote)
                })
            };
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                // hyper refuses a buffer under 8 KiB.
                .max_buf_size(limits.max_header_size.max(8192))
                .max_headers(limits.max_headers)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut closing = false;
            let result = loop {
                let since = last_request
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .elapsed();
                let wait = limits.idle_timeout.saturating_sub(since);
                tokio::select! {
                    result = connection.as_mut() => break result,
                    () = tokio::time::sleep(wait), if !closing => {
                        let since = last_request.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
                        if since >= limits.idle_timeout {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    // The server is stopping (a closed channel is a stop
                    // too).
                    _ = close.wait_for(|close| *close), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(target: "custody::serve", %remote, "connection: {e}");
            }
            drop(permit);
        });
    }
}

/// Completes when every connection's task has ended.
pub(crate) async fn all_closed(connections: &mut JoinSet<()>) {
    while connections.join_next().await.is_some() {}
}
