//! The admin API: a listener of its own (`[admin] listen`), never the
//! plugins', under the same client bounds (`connection`). It answers
//! `/healthz` and `/readyz` (the plugins' well-known pair, open to
//! probes), and, to a caller with the bearer token when `token_file` is
//! set, `/admin/plugins` (JSON) and `/metrics` (OpenMetrics text).
//! Without a token the listener must be on loopback (the configuration
//! refuses otherwise, and so does [`AdminListener::bind`]). Every call
//! that is not a read (any method but GET and HEAD) is logged with its
//! caller's address at the door, before routing, so no mutating endpoint
//! can forget to. It stops with the server, after the plugins' listener
//! has drained (`shutdown`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{Body, full};
use crate::config::{AdminConfig, ConfigError};
use crate::connection;
use crate::fault::FaultKind;
use crate::metrics::METRICS_CONTENT_TYPE;
use crate::reload::FORCE_GRACE;
use crate::server::ServerState;

/// The admin listener's liveness endpoint (as the plugins' `/health`).
pub const ADMIN_HEALTH_PATH: &str = "/healthz";
/// The admin listener's readiness endpoint (as the plugins' `/ready`).
pub const ADMIN_READY_PATH: &str = "/readyz";
/// The plugins, as JSON.
pub const ADMIN_PLUGINS_PATH: &str = "/admin/plugins";
/// The Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The SHA-256 of the bearer token: compared in constant time with the
/// SHA-256 of what a caller presents, so neither the token's bytes nor
/// its length show in how long a refusal takes.
#[derive(Clone)]
struct Token([u8; 32]);

impl Token {
    fn of(bytes: &[u8]) -> Token {
        Token(Sha256::digest(bytes).into())
    }

    /// Whether `headers` carry `Authorization: Bearer TOKEN`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110 11.1).
        let Some((scheme, presented)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let presented = Token::of(presented.trim_ascii());
        bool::from(self.0.ct_eq(&presented.0))
    }
}

/// The admin API's bound listener and its token.
pub struct AdminListener {
    listener: TcpListener,
    token: Option<Token>,
}

impl std::fmt::Debug for AdminListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminListener")
            .field("listener", &self.listener)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AdminListener {
    /// Reads the token (if `token_file` is set) and binds `listen`.
    /// `file` names the configuration in errors.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key: `admin.listen` beyond loopback
    /// without a token, or not bindable; `admin.token_file` unreadable,
    /// empty, or not a token (printable ASCII, no spaces).
    pub async fn bind(config: &AdminConfig, file: &Path) -> Result<AdminListener, ConfigError> {
        config.check().map_err(|e| ConfigError::new(file, e))?;
        let token = match &config.token_file {
            None => None,
            Some(path) => Some(read_token(path).map_err(|e| {
                ConfigError::new(file, format!("admin.token_file {}: {e}", path.display()))
            })?),
        };
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            ConfigError::new(
                file,
                format!("admin.listen: cannot listen on {}: {e}", config.listen),
            )
        })?;
        Ok(AdminListener { listener, token })
    }

    /// The address it listens on (port 0 bound to a free port).
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The token in `path`: the file's text without surrounding whitespace.
fn read_token(path: &Path) -> Result<Token, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let token = text.trim_ascii();
    if token.is_empty() {
        return Err("it holds no token".into());
    }
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err("a token is printable ASCII without spaces".into());
    }
    Ok(Token::of(token))
}

/// Serves the admin API on `admin` until `shutdown` completes, then closes
/// its connections (an idle one at once, the others after their response,
/// for [`FORCE_GRACE`] at most).
pub(crate) async fn serve(
    state: Arc<ServerState>,
    admin: AdminListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (close_tx, close_rx) = watch::channel(false);
    let limits = state.limits.clone();
    let token = admin.token.map(Arc::new);
    let mut connections = connection::accept(
        &limits,
        admin.listener,
        shutdown,
        &close_rx,
        move |request, remote| handle(Arc::clone(&state), token.clone(), request, remote),
    )
    .await?;
    let _ = close_tx.send(true);
    let closed = tokio::time::timeout(FORCE_GRACE, connection::all_closed(&mut connections)).await;
    if closed.is_err() {
        connections.shutdown().await;
    }
    tracing::info!(target: "custody::serve::admin", "the admin listener stopped");
    Ok(())
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

/// Logs a call that may change the server, with who made it: every call
/// but a read passes here once authorized.
fn mutating(remote: SocketAddr, method: &Method, path: &str) {
    tracing::info!(
        target: "custody::serve::admin",
        %remote, %method, path,
        "admin call"
    );
}

/// Answers one admin request.
async fn handle(
    state: Arc<ServerState>,
    token: Option<Arc<Token>>,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    let method = request.method();
    let read = method == Method::GET || method == Method::HEAD;
    if path == ADMIN_HEALTH_PATH && read {
        return Ok(text(StatusCode::OK, "ok\n".into()));
    }
    if path == ADMIN_READY_PATH && read {
        return Ok(if state.is_ready() {
            text(StatusCode::OK, "ready\n".into())
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
        });
    }
    if let Some(token) = &token
        && !token.admits(request.headers())
    {
        tracing::debug!(target: "custody::serve::admin", %remote, path, "unauthorized");
        let mut refused = text(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send Authorization: Bearer TOKEN (admin.token_file)\n".into(),
        );
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"custody admin\""),
        );
        return Ok(refused);
    }
    if !read {
        mutating(remote, method, path);
    }
    let response = match path {
        ADMIN_PLUGINS_PATH | METRICS_PATH | ADMIN_HEALTH_PATH | ADMIN_READY_PATH if !read => {
            let mut refused = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path}: only GET\n"),
            );
            (refused.headers_mut()).insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            refused
        }
        ADMIN_PLUGINS_PATH => json(StatusCode::OK, &plugins(&state)),
        METRICS_PATH => match state.metrics().encode(state.plugins()) {
            Ok(metrics) => {
                let mut response = Response::new(full(metrics));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(METRICS_CONTENT_TYPE),
                );
                response
            }
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the metrics could not be encoded: {e}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, format!("no admin endpoint {path}\n")),
    };
    Ok(response)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(format!("{value}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `/admin/plugins`: whether the plugins are loaded (none are listed
/// before), and each plugin as it serves now.
fn plugins(state: &ServerState) -> serde_json::Value {
    let plugins: Vec<serde_json::Value> = (state.plugins().iter())
        .map(|plugin| {
            let version = plugin.current();
            let routes: Vec<serde_json::Value> = (version.routes.iter())
                .map(|(route, export)| serde_json::json!({ "route": route.as_str(), "export": export }))
                .collect();
            let faults: serde_json::Map<String, serde_json::Value> = (FaultKind::ALL.iter())
                .map(|kind| (kind.name().to_string(), plugin.faults.get(*kind).into()))
                .collect();
            serde_json::json!({
                "name": plugin.config.name,
                "routes": routes,
                "interface": version.interface.name(),
                "instances": plugin.config.instances.name(),
                "version": version.id,
                "in_flight": plugin.in_flight(),
                "max_concurrency": plugin.config.max_concurrency,
                "faults": faults,
            })
        })
        .collect();
    serde_json::json!({ "loaded": state.is_loaded(), "plugins": plugins })
}
