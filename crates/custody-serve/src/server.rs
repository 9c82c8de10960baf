//! The HTTP server: hyper 1 (HTTP/1.1) on tokio, as `wasmtime serve`
//! drives it. It owns the server's state (the host, the plugins, the fault
//! counters, readiness), the health endpoints, routing a request to its
//! plugin's current version, and the bounds on clients: the connection
//! count, the head's size, header count and read timeout (slowloris, and
//! idle keep-alive connections), each plugin's `max_concurrency` and
//! `max_body`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use custody_host::{Host, Policy};
use custody_wasi::Wasi;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::body::{Body, full};
use crate::config::{ConfigError, HttpLimits, Interface, ServerConfig};
use crate::custody_run;
use crate::exec::WagiRun;
use crate::fault::{Fault, FaultCounters, FaultKind};
use crate::plugin::{Plugin, PluginVersion};
use crate::route::RouteMatch;
use crate::wagi::{self, CgiRequest};

/// The liveness endpoint: 200 while the process serves.
pub const HEALTH_PATH: &str = "/.well-known/custody/health";
/// The readiness endpoint: 200 once every plugin is loaded, 503 before
/// (while they load, the listener already answering) and while shutting
/// down.
pub const READY_PATH: &str = "/.well-known/custody/ready";
/// The header naming the plugin version that answered.
pub const VERSION_HEADER: &str = "custody-plugin-version";

/// Everything the server's requests share.
pub struct ServerState {
    host: Arc<Host>,
    /// Set once, when every plugin has loaded; until then the server
    /// answers its health endpoints and 503 for everything else.
    plugins: OnceLock<Vec<Arc<Plugin>>>,
    /// Turns true when `plugins` is set: what [`ServerState::loaded`]
    /// waits on.
    loaded: watch::Sender<bool>,
    limits: HttpLimits,
    faults: Arc<FaultCounters>,
    /// False once shutting down; `/ready` is 200 when this is true and
    /// the plugins are loaded.
    ready: AtomicBool,
    next_request: AtomicU64,
    /// Makes request ids unique across restarts of the process.
    id_prefix: String,
    /// The configuration file, named in a reload's errors.
    pub(crate) file: PathBuf,
    /// On reload and shutdown, how long in-flight requests get.
    pub(crate) drain_timeout: Duration,
    /// On SIGTERM, how long `/ready` is 503 before accepting stops.
    pub(crate) shutdown_delay: Duration,
    /// Versions replaced by a reload whose requests are still draining.
    pub(crate) draining: Mutex<Vec<Arc<PluginVersion>>>,
    /// Reloads one at a time (a signal, the watcher and the library
    /// call may ask at once).
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("plugins", &self.plugins().len())
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// Builds the host (custody's ABI and WASI, `host_policy`) and loads
    /// every plugin of `config` (compiled, checked, instantiated once):
    /// [`starting`](Self::starting) then [`load_plugins`](Self::load_plugins).
    /// `file` names the configuration in errors. Blocking: call it before
    /// serving, or off the reactor.
    ///
    /// # Errors
    /// A [`ConfigError`]: the host cannot be built, or a plugin cannot be
    /// loaded (named, with why).
    pub fn load(
        config: &ServerConfig,
        host_policy: Policy,
        file: &Path,
    ) -> Result<Arc<ServerState>, ConfigError> {
        let state = ServerState::starting(config, host_policy, file)?;
        state.load_plugins(config)?;
        Ok(state)
    }

    /// Builds the host (custody's ABI and WASI, `host_policy`), with no
    /// plugin loaded yet: served at once, it answers `/health` 200,
    /// `/ready` 503 and every other path 503 until
    /// [`load_plugins`](Self::load_plugins) succeeds. `file` names the
    /// configuration in errors.
    ///
    /// # Errors
    /// A [`ConfigError`]: the host cannot be built.
    pub fn starting(
        config: &ServerConfig,
        host_policy: Policy,
        file: &Path,
    ) -> Result<Arc<ServerState>, ConfigError> {
        let host = Host::builder(host_policy)
            .extension(Wasi)
            .extension(custody_http::Http)
            .build()
            .map_err(|e| ConfigError::new(file, format!("the host: {e}")))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Arc::new(ServerState {
            host: Arc::new(host),
            plugins: OnceLock::new(),
            loaded: watch::Sender::new(false),
            limits: config.limits.clone(),
            faults: Arc::new(FaultCounters::default()),
            ready: AtomicBool::new(true),
            next_request: AtomicU64::new(1),
            id_prefix: format!("{:x}", (nanos as u64) ^ u64::from(std::process::id())),
            file: file.to_path_buf(),
            drain_timeout: config.drain_timeout,
            shutdown_delay: config.shutdown_delay,
            draining: Mutex::default(),
            reloading: tokio::sync::Mutex::default(),
        }))
    }

    /// Loads every plugin of `config` (compiled, checked, instantiated
    /// once, `_routes` called); when all have loaded they serve and
    /// `/ready` turns 200. Blocking: call it off the reactor (the
    /// server answers its health endpoints meanwhile).
    ///
    /// # Errors
    /// A [`ConfigError`]: a plugin cannot be loaded (named, with why;
    /// none of them serves then), or the plugins were loaded already.
    pub fn load_plugins(&self, config: &ServerConfig) -> Result<(), ConfigError> {
        if self.plugins.get().is_some() {
            return Err(ConfigError::new(
                &self.file,
                "the plugins are loaded already",
            ));
        }
        let plugins = (config.plugins.iter())
            .map(|plugin| Plugin::load(&self.host, plugin.clone(), &self.file).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        self.plugins
            .set(plugins)
            .map_err(|_| ConfigError::new(&self.file, "the plugins are loaded already"))?;
        self.loaded.send_replace(true);
        Ok(())
    }

    /// Completes once the plugins are loaded (at once if they are).
    pub async fn loaded(&self) {
        let mut loaded = self.loaded.subscribe();
        // The sender is `self`'s, alive as long as this borrow.
        let _ = loaded.wait_for(|loaded| *loaded).await;
    }

    /// The host the plugins run on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The plugins, in the configuration's order; none until they are
    /// loaded.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        self.plugins.get().map_or(&[], Vec::as_slice)
    }

    /// The fault counters.
    pub fn faults(&self) -> &FaultCounters {
        &self.faults
    }

    /// Whether `/ready` answers 200: the plugins are loaded and the
    /// server is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.plugins.get().is_some() && self.ready.load(Ordering::Acquire)
    }

    /// Sets what `/ready` answers once the plugins are loaded (shutdown
    /// turns it off first); while they load it is 503 whatever this says.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Every route with its plugin, the most specific first within each
    /// plugin, as the startup lines print them.
    pub fn routes(&self) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        for plugin in self.plugins() {
            for (route, _) in &plugin.current().routes {
                routes.push((plugin.config.name.clone(), route.as_str().to_string()));
            }
        }
        routes
    }

    /// The plugin, version, route and export for a path: the most
    /// specific route of any plugin's current version.
    fn route(&self, path: &str) -> Option<(Arc<Plugin>, Arc<PluginVersion>, usize, RouteMatch)> {
        let mut best: Option<(Arc<Plugin>, Arc<PluginVersion>, usize, RouteMatch)> = None;
        for plugin in self.plugins() {
            let version = plugin.current();
            for (at, (route, _)) in version.routes.iter().enumerate() {
                let Some(matched) = route.matches(path) else {
                    continue;
                };
                let better = best
                    .as_ref()
                    .is_none_or(|(_, v, i, _)| route.specificity() > v.routes[*i].0.specificity());
                if better {
                    best = Some((Arc::clone(plugin), Arc::clone(&version), at, matched));
                }
            }
        }
        best
    }

    fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }
}

/// A path as a URL's path for the startup lines: `/hello/...` is served at
/// `/hello`, `/...` at `/`.
pub fn display_path(route: &str) -> &str {
    match route.strip_suffix("/...") {
        Some("") => "/",
        Some(prefix) => prefix,
        None => route,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What a custody-ABI plugin reads of the request: the method, the target
/// as sent, the headers (names lower case, as hyper keeps them).
fn request_head(parts: &hyper::http::request::Parts) -> custody_http::RequestHead {
    custody_http::RequestHead {
        method: parts.method.as_str().to_string(),
        uri: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
    }
}

/// Answers one request.
async fn handle(
    state: Arc<ServerState>,
    request: Request<Incoming>,
    remote: SocketAddr,
    local: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    if path == HEALTH_PATH {
        return Ok(text(StatusCode::OK, "ok\n"));
    }
    if path == READY_PATH {
        return Ok(if state.is_ready() {
            text(StatusCode::OK, "ready\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        });
    }
    if state.plugins.get().is_none() {
        let mut starting = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: plugins loading\n",
        );
        starting
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(starting);
    }
    let Some((plugin, version, at, matched)) = state.route(path) else {
        return Ok(text(StatusCode::NOT_FOUND, "no route for this path\n"));
    };
    let (route, entrypoint) = &version.routes[at];
    let config = &plugin.config;
    let request_id = state.request_id();
    let fault = |kind: FaultKind, detail: String| {
        Fault {
            kind,
            id: &request_id,
            plugin: &config.name,
            route: route.as_str(),
            detail,
            backtrace: None,
        }
        .respond(&state.faults, request.headers())
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|n| n > config.max_body as u64) {
        fault(
            FaultKind::Body,
            format!(
                "Content-Length is over max_body ({} bytes)",
                config.max_body
            ),
        )
    } else if let Ok(permit) = Arc::clone(&plugin.permits).try_acquire_owned() {
        let cgi = CgiRequest {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            remote,
            local,
            matched_route: route.as_str(),
            route: &matched,
        };
        let run = WagiRun {
            host: Arc::clone(&state.host),
            version: Arc::clone(&version),
            plugin: config.name.clone(),
            route: route.as_str().to_string(),
            entrypoint: entrypoint.clone(),
            // The plugin's env after the CGI variables, replacing any of
            // the same name (a guest sees each name once).
            env: (wagi::cgi_env(&cgi).into_iter())
                .filter(|(name, _)| !config.env.contains_key(name))
                .chain(config.env.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
            argv: wagi::argv(&config.argv, &matched.script_name, request.uri().query()),
            request_id: request_id.clone(),
            max_body: config.max_body,
            max_response: config.max_response,
            counters: Arc::clone(&state.faults),
            headers: request.headers().clone(),
        };
        match version.interface {
            Interface::Wagi => run.run(request.into_body(), permit).await,
            Interface::Custody => {
                let (parts, body) = request.into_parts();
                custody_run::run(run, request_head(&parts), body, permit).await
            }
        }
    } else {
        fault(
            FaultKind::Overload,
            format!(
                "{} requests in flight (max_concurrency)",
                config.max_concurrency
            ),
        )
    };
    if let Ok(value) = HeaderValue::from_str(&version.id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(VERSION_HEADER), value);
    }
    Ok(response)
}

/// Accepts connections on `listener` and serves each on its own task until
/// `shutdown` completes: then it stops accepting (the listener closes)
/// and returns the open connections' tasks. A connection closes
/// gracefully when `close` turns true: at once if it is idle, else after
/// the response in flight.
pub(crate) async fn accept(
    state: &Arc<ServerState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    close: &watch::Receiver<bool>,
) -> std::io::Result<JoinSet<()>> {
    let local = listener.local_addr()?;
    let connections = Arc::new(Semaphore::new(state.limits.max_connections));
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(target: "custody::serve", "accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
                state.limits.max_connections
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(state);
        let mut close = close.clone();
        tasks.spawn(async move {
            let limits = state.limits.clone();
            // When the connection's last request began: an idle connection
            // (no new request for `idle_timeout`) is shut down gracefully,
            // which lets a response in flight finish first.
            let last_request = Arc::new(std::sync::Mutex::new(Instant::now()));
            let service = {
                let last_request = Arc::clone(&last_request);
                service_fn(move |request| {
                    *last_request.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                    handle(Arc::clone(&state), request, remote, local)
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
