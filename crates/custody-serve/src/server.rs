//! The HTTP server: hyper 1 (HTTP/1.1) on tokio, as `wasmtime serve`
//! drives it. It owns the server's state (the host, the plugins, the fault
//! counters, the metrics, readiness), the health endpoints, routing a
//! request to its plugin's stable version or its canary (the split), each
//! plugin's `max_concurrency` and `max_body`, the version header and the
//! per-version count of every answer; its connections are accepted under
//! the client bounds by `connection`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use custody_host::{Host, Policy};
use custody_wasi::Wasi;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::abort::Abort;
use crate::body::{Body, full};
use crate::config::{ConfigError, HttpLimits, Interface, ServerConfig};
use crate::connection;
use crate::custody_run;
use crate::exec::WagiRun;
use crate::fault::{Fault, FaultCounters, FaultKind, wants_json};
use crate::metrics::Metrics;
use crate::plugin::{Plugin, PluginVersion, Serving};
use crate::recent_diagnostics::{RECENT_DIAGNOSTICS, RecentDiagnostics};
use crate::request_span::{self, RequestFields, RequestId, SpanParent};
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

/// [`VERSION_HEADER`] as a header name, checked once, at compile time.
const VERSION_HEADER_NAME: HeaderName = HeaderName::from_static(VERSION_HEADER);

/// Everything the server's requests share.
pub struct ServerState {
    host: Arc<Host>,
    /// Set once, when every plugin has loaded; until then the server
    /// answers its health endpoints and 503 for everything else.
    plugins: OnceLock<Vec<Arc<Plugin>>>,
    /// Turns true when `plugins` is set: what [`ServerState::loaded`]
    /// waits on.
    loaded: watch::Sender<bool>,
    pub(crate) limits: HttpLimits,
    faults: Arc<FaultCounters>,
    /// What the server reported with an id or a domain, newest last
    /// (`/admin/diagnostics`).
    pub(crate) recent: Arc<RecentDiagnostics>,
    /// Keeps the host's diagnostics in `recent` while the state lives.
    _host_diagnostics: custody_handle::diagnostics::Subscription,
    metrics: Metrics,
    /// False once shutting down; `/ready` is 200 when this is true and
    /// the plugins are loaded.
    ready: AtomicBool,
    next_request: AtomicU64,
    /// Makes request ids unique across restarts of the process.
    id_prefix: u64,
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
    /// Reads a request's trace context into its span's parent, if the
    /// binary exports spans (`request_span`).
    span_parent: OnceLock<SpanParent>,
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
        let faults = Arc::new(FaultCounters::default());
        let recent = Arc::new(RecentDiagnostics::new(RECENT_DIAGNOSTICS));
        Ok(Arc::new(ServerState {
            _host_diagnostics: RecentDiagnostics::subscribe_to_host(&recent),
            recent,
            host: Arc::new(host),
            plugins: OnceLock::new(),
            loaded: watch::Sender::new(false),
            limits: config.limits.clone(),
            metrics: Metrics::new(Arc::clone(&faults)),
            faults,
            ready: AtomicBool::new(true),
            next_request: AtomicU64::new(1),
            id_prefix: (nanos as u64) ^ u64::from(std::process::id()),
            file: file.to_path_buf(),
            drain_timeout: config.drain_timeout,
            shutdown_delay: config.shutdown_delay,
            draining: Mutex::default(),
            reloading: tokio::sync::Mutex::default(),
            span_parent: OnceLock::new(),
        }))
    }

    /// From now on, each plugin request's span gets its parent from the
    /// request's headers through `parent` (a binary that exports spans
    /// reads the W3C `traceparent` there). Set once: a second call is
    /// ignored.
    pub fn set_span_parent(&self, parent: SpanParent) {
        let _ = self.span_parent.set(parent);
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
            .map(|plugin| {
                let faults = Arc::clone(&self.faults);
                Plugin::load(&self.host, plugin.clone(), &self.file, faults).map(Arc::new)
            })
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

    /// The fault counters, every plugin's (each plugin has its own too:
    /// [`Plugin::faults`]).
    pub fn faults(&self) -> &FaultCounters {
        &self.faults
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether every plugin is loaded.
    pub fn is_loaded(&self) -> bool {
        self.plugins.get().is_some()
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

    /// The plugin, version, route and export for a path. The plugin is
    /// the one with the most specific route of any version it serves (the
    /// first in the configuration on a tie); the version is the one its
    /// canary split gives the request ([`Serving::next`]), or the other
    /// one if only that one routes the path (a canary's `_routes` may
    /// differ).
    fn route(&self, path: &str) -> Option<(Arc<Plugin>, Arc<PluginVersion>, usize, RouteMatch)> {
        let mut best: Option<(&Arc<Plugin>, Arc<Serving>)> = None;
        let mut most_specific = None;
        for plugin in self.plugins() {
            let serving = plugin.serving();
            let specificity = (serving.versions())
                .filter_map(|version| {
                    let at = version.best_route(path)?;
                    Some(version.routes[at].0.specificity())
                })
                .max();
            if let Some(specificity) = specificity
                && most_specific.is_none_or(|most| specificity > most)
            {
                most_specific = Some(specificity);
                best = Some((plugin, serving));
            }
        }
        let (plugin, serving) = best?;
        let (chosen, other) = serving.next();
        let (version, (at, matched)) = [chosen, other]
            .into_iter()
            .find_map(|version| Some((version, version.route_for(path)?)))?;
        Some((Arc::clone(plugin), Arc::clone(version), at, matched))
    }

    /// A new request's id.
    fn request_id(&self) -> RequestId {
        RequestId::new(
            self.id_prefix,
            self.next_request.fetch_add(1, Ordering::Relaxed),
        )
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

/// Answers one request.
async fn handle(
    state: Arc<ServerState>,
    request: Request<Incoming>,
    remote: SocketAddr,
    local: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
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
    let request_id = state.request_id();
    let span = request_span::request_span(
        &RequestFields {
            plugin: &plugin.config.name,
            version: &version.id,
            route: version.routes[at].0.as_str(),
            request_id,
            method: request.method().as_str(),
            path,
        },
        request.headers(),
        state.span_parent.get().copied(),
    );
    let plugin_request = PluginRequest {
        plugin,
        version,
        at,
        matched,
        request_id,
        span: span.clone(),
    };
    // Boxed: the plugin's path is a large future, which hyper would
    // otherwise move, whole, with every request's (health checks too).
    let serving = Box::pin(serve_plugin(
        &state,
        plugin_request,
        request,
        (remote, local),
        started,
    ));
    let response = serving.instrument(span.clone()).await;
    request_span::record_status(&span, response.status().as_u16());
    Ok(response)
}

/// A request routed to a plugin's version.
struct PluginRequest {
    plugin: Arc<Plugin>,
    version: Arc<PluginVersion>,
    /// The index of the route in the version's routes.
    at: usize,
    matched: RouteMatch,
    request_id: RequestId,
    /// The request's span, entered where its guest runs.
    span: tracing::Span,
}

/// Answers a request routed to a plugin (its guest runs, or a fault)
/// and counts it; `started` is when it arrived.
async fn serve_plugin(
    state: &Arc<ServerState>,
    routed: PluginRequest,
    request: Request<Incoming>,
    (remote, local): (SocketAddr, SocketAddr),
    started: Instant,
) -> Response<Body> {
    let PluginRequest {
        plugin,
        version,
        at,
        matched,
        request_id,
        span,
    } = routed;
    let route = &version.routes[at].0;
    let config = &plugin.config;
    let fault = |kind: FaultKind, detail: String| {
        Fault {
            kind,
            id: request_id,
            plugin: &config.name,
            version: &version.id,
            domain: None,
            route: route.as_str(),
            detail,
            backtrace: None,
        }
        .respond(&plugin.faults, &state.recent, wants_json(request.headers()))
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
        let run = WagiRun {
            host: Arc::clone(&state.host),
            version: Arc::clone(&version),
            at,
            // Only a WAGI guest gets the CGI environment and argv.
            env: match version.interface {
                Interface::Wagi => {
                    let cgi = CgiRequest::new(&request, (remote, local), route.as_str(), &matched);
                    wagi::guest_env(&cgi, &config.env)
                }
                Interface::Custody => Vec::new(),
            },
            argv: match version.interface {
                Interface::Wagi => {
                    wagi::argv(&config.argv, &matched.script_name, request.uri().query())
                }
                Interface::Custody => Vec::new(),
            },
            request_id,
            max_body: config.max_body,
            max_response: config.max_response,
            counters: Arc::clone(&plugin.faults),
            recent: Arc::clone(&state.recent),
            wants_json: wants_json(request.headers()),
            abort: Abort::default(),
            span,
        };
        match version.interface {
            Interface::Wagi => run.run(request.into_body(), permit).await,
            Interface::Custody => {
                // The plugin reads the parsed head itself, moved, not copied.
                let (parts, body) = request.into_parts();
                custody_run::run(run, parts.into(), body, permit).await
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
    (response.headers_mut()).insert(VERSION_HEADER_NAME, version.id_header.clone());
    let status = response.status().as_u16();
    version.count_served();
    (state.metrics).request(&version, status, started.elapsed());
    response
}

/// Accepts connections on `listener` and serves each with [`handle`]
/// under the server's client bounds until `shutdown` completes
/// ([`connection::accept`]); returns the open connections' tasks.
pub(crate) async fn accept(
    state: &Arc<ServerState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    close: &watch::Receiver<bool>,
) -> std::io::Result<JoinSet<()>> {
    let local = listener.local_addr()?;
    let state = Arc::clone(state);
    let limits = state.limits.clone();
    connection::accept(
        &limits,
        listener,
        shutdown,
        close,
        move |request, remote| handle(Arc::clone(&state), request, remote, local),
    )
    .await
}
