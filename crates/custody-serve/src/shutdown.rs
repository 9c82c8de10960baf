//! Serving and stopping: the termination contract Kubernetes expects.
//!
//! ```text
//! first SIGTERM/SIGINT ─> /ready 503 ─> shutdown_delay ─> stop accepting ─> idle
//!     connections close, the others after their response ─> in-flight requests
//!     finish (drain_timeout) ─> forced: every guest still running stopped ─>
//!     every domain unloaded ─> Ok (the CLI exits 0)
//! a second signal, at any step ─> straight to "forced"
//! SIGHUP ─> every plugin reloaded (not while stopping)
//! ```
//! [`serve`] is the same without signals: when its `shutdown` future
//! completes it stops accepting and drains (no delay: a caller that wants
//! one puts it in the future). The delay exists because a load balancer
//! learns of a stopping pod late: during it the server still serves.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::admin::{self, AdminListener};
use crate::connection::all_closed;
use crate::reload::FORCE_GRACE;
use crate::server::{self, ServerState};

/// What a signal asks of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop (the second one: stop now).
    Stop,
    /// SIGHUP: reload every plugin.
    Reload,
}

/// The listeners a server serves on: the plugins' (with the health
/// endpoints) and, when `[admin]` is configured, the admin API's. A
/// `TcpListener` alone is the plugins' without an admin API.
#[derive(Debug)]
pub struct Listeners {
    /// The plugins' listener.
    pub plugins: TcpListener,
    /// The admin API's, if any.
    pub admin: Option<AdminListener>,
}

impl From<TcpListener> for Listeners {
    fn from(plugins: TcpListener) -> Listeners {
        Listeners {
            plugins,
            admin: None,
        }
    }
}

/// How the server stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Connections open when accepting stopped.
    pub connections: usize,
    /// Whether the drain was forced (`drain_timeout`, or a second
    /// signal).
    pub forced: bool,
    /// Requests stopped by the force.
    pub stopped: usize,
    /// Domains still alive at the end (a bug if ever nonzero: logged as
    /// an error).
    pub domains_left: usize,
    /// From the stop to the end.
    pub elapsed: Duration,
}

/// Serves `state` on `listeners` until `shutdown` completes, then stops
/// accepting and drains: every connection closes after its response (an
/// idle one at once), the requests in flight get `drain_timeout`, then
/// their guests are stopped, and every domain is unloaded; then the admin
/// listener, which answered throughout, stops too, and this returns.
/// Plugins with `watch = true` are watched meanwhile.
///
/// # Errors
/// The listener's address cannot be read, or the plugins' files cannot
/// be watched.
pub async fn serve(
    state: Arc<ServerState>,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<Stopped> {
    serve_until(state, listeners.into(), shutdown, std::future::pending()).await
}

/// Serves until the first [`Signal::Stop`] of `signals`, then follows the
/// termination contract (the module docs); [`Signal::Reload`] reloads
/// every plugin. A closed channel is a stop.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with_signals(
    state: Arc<ServerState>,
    listeners: impl Into<Listeners>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> io::Result<Stopped> {
    let (force_tx, force_rx) = watch::channel(false);
    let stopping = {
        let state = Arc::clone(&state);
        let force_rx = force_rx.clone();
        async move {
            // Until the first stop (a closed channel is one).
            while let Some(Signal::Reload) = signals.recv().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    tracing::info!(target: "custody::serve", "SIGHUP: reloading every plugin");
                    state.reload_all().await;
                });
            }
            // A server stopped while its plugins load was never ready: no
            // balancer sends it requests, so there is nothing to wait for.
            let delay = if state.is_ready() {
                state.shutdown_delay
            } else {
                Duration::ZERO
            };
            state.set_ready(false);
            tracing::info!(
                target: "custody::serve",
                delay_ms = delay.as_millis() as u64,
                "stopping: /ready answers 503; accepting stops after shutdown_delay"
            );
            // From here on a second stop forces, wherever the sequence is.
            tokio::spawn(async move {
                while let Some(signal) = signals.recv().await {
                    if signal == Signal::Stop {
                        tracing::warn!(target: "custody::serve", "a second signal: forcing the stop");
                        let _ = force_tx.send(true);
                        return;
                    }
                }
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = forced(force_rx) => {}
            }
        }
    };
    serve_until(state, listeners.into(), stopping, forced(force_rx)).await
}

/// Completes when `force` turns true; never if its sender goes first.
async fn forced(mut force: watch::Receiver<bool>) {
    if force.wait_for(|forced| *forced).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A channel of the process's signals: SIGTERM and SIGINT as
/// [`Signal::Stop`], SIGHUP as [`Signal::Reload`]. Must run on a tokio
/// runtime; the handlers are installed when this returns.
///
/// # Errors
/// A handler cannot be installed.
pub fn os_signals() -> io::Result<mpsc::UnboundedReceiver<Signal>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = term.recv() => Signal::Stop,
                Some(()) = int.recv() => Signal::Stop,
                Some(()) = hup.recv() => Signal::Reload,
                else => return,
            };
            if tx.send(signal).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Serves until `shutdown`, then drains; `force` cuts the drain short.
/// The admin listener serves beside the plugins' until they have stopped
/// (an operator sees the drain through it), or failed.
async fn serve_until(
    state: Arc<ServerState>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> io::Result<Stopped> {
    let Listeners { plugins, admin } = listeners;
    let Some(admin) = admin else {
        return serve_plugins(state, plugins, shutdown, force).await;
    };
    // Dropped when the plugins' side ends, however it ends.
    let (plugins_ended, admin_stop) = oneshot::channel::<()>();
    let plugins_side = async {
        let _plugins_ended = plugins_ended;
        serve_plugins(Arc::clone(&state), plugins, shutdown, force).await
    };
    let admin_side = admin::serve(Arc::clone(&state), admin, async {
        let _ = admin_stop.await;
    });
    let (stopped, admin_served) = tokio::join!(plugins_side, admin_side);
    let stopped = stopped?;
    admin_served?;
    Ok(stopped)
}

/// The plugins' listener: serves until `shutdown`, then drains.
async fn serve_plugins(
    state: Arc<ServerState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> io::Result<Stopped> {
    let (close_tx, close_rx) = watch::channel(false);
    let mut force = std::pin::pin!(force);
    let mut forced = false;
    let accepting = server::accept(&state, listener, shutdown, &close_rx);
    let mut accepting = std::pin::pin!(accepting);
    // The plugins may still be loading (the listener answers `/ready`
    // 503 meanwhile): their files are watched once they are loaded.
    let watching = async {
        state.loaded().await;
        state.watch()
    };
    let mut watching = std::pin::pin!(watching);
    let mut watcher = None;
    let mut connections = loop {
        tokio::select! {
            accepted = &mut accepting => break accepted?,
            started = &mut watching, if watcher.is_none() => {
                watcher = Some(started.map_err(io::Error::other)?);
            }
            // A force during the delay: stop accepting now.
            () = &mut force => {
                forced = true;
                break JoinSet::new();
            }
        }
    };
    // No reload begins once accepting stopped.
    drop(watcher);
    let begun = Instant::now();
    let open = connections.len();
    tracing::info!(
        target: "custody::serve",
        connections = open,
        "accepting stopped: open connections close after their response"
    );
    let _ = close_tx.send(true);
    if !forced {
        tokio::select! {
            () = all_closed(&mut connections) => {}
            () = tokio::time::sleep(state.drain_timeout) => forced = true,
            () = &mut force => forced = true,
        }
    }
    let mut stopped = 0;
    if forced {
        stopped = stop_requests(&state);
        let closed = tokio::time::timeout(FORCE_GRACE, all_closed(&mut connections)).await;
        if closed.is_err() {
            // Responses still streaming to clients that do not read: the
            // guests are stopped, so the connections go too.
            connections.shutdown().await;
        }
    }
    // Stopped while the plugins load: no request ever ran, and the only
    // domains are the abandoned load's own, which nothing here can end.
    let domains_left = if state.is_loaded() {
        domains_unloaded(&state).await
    } else {
        state.host().domain_count()
    };
    let report = Stopped {
        connections: open,
        forced,
        stopped,
        domains_left,
        elapsed: begun.elapsed(),
    };
    let elapsed_ms = report.elapsed.as_millis() as u64;
    if !state.is_loaded() {
        tracing::info!(
            target: "custody::serve", elapsed_ms,
            "stopped while the plugins loaded: nothing was served"
        );
    } else if domains_left > 0 {
        tracing::error!(
            target: "custody::serve", domains_left, elapsed_ms,
            "stopped with domains still alive"
        );
    } else {
        tracing::info!(
            target: "custody::serve", forced, stopped, elapsed_ms,
            "stopped: every request ended and every domain is unloaded"
        );
    }
    Ok(report)
}

/// Stops every request still in flight, of every version; how many.
fn stop_requests(state: &ServerState) -> usize {
    (state.live_versions().iter())
        .map(|version| version.in_flight.stop_all())
        .sum()
}

/// Waits (at most [`FORCE_GRACE`]) for every domain of the host to be
/// unloaded, each by the request that made it; how many are left.
async fn domains_unloaded(state: &ServerState) -> usize {
    let deadline = Instant::now() + FORCE_GRACE;
    for version in state.live_versions() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, version.in_flight.drained())
            .await
            .is_err()
        {
            version.in_flight.stop_all();
        }
    }
    // The pools' idle domains belong to no request: unloaded here.
    for version in state.live_versions() {
        if let Some(pool) = version.pool.clone() {
            let _ = tokio::task::spawn_blocking(move || pool.unload_idle()).await;
        }
    }
    // A request's domain is unloaded just before it leaves its registry:
    // what the host still counts is going, or leaked.
    loop {
        let left = state.host().domain_count();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
