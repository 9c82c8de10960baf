//! The admin API: a listener of its own (`[admin] listen`), never the
//! plugins', under the same client bounds (`connection`). It answers
//! `/healthz` and `/readyz` (the plugins' well-known pair, open to
//! probes), and, to a caller with the bearer token when `token_file` is
//! set, the JSON endpoints (docs/SERVER.md lists them with their shapes)
//! and `/metrics` (OpenMetrics text). This file is the door: the routing
//! ([`Endpoint`]: a path and the methods it allows, 405 with `Allow` for
//! the others) and the listener; `token` is the credential (the bearer
//! header, and the dashboard's cookie for reads); the answers are by
//! concept: `dashboard` (the HTML page at `/admin/`, which takes the token
//! itself), `views` (plugins, domains, roots), `requests` (in flight,
//! cancel), `actions` (reload, promote,
//! rollback, unload, force), `diagnostics` (the recent
//! ring and its event stream).
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
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{Body, full};
use crate::config::{AdminConfig, ConfigError};
use crate::connection;
use crate::metrics::METRICS_CONTENT_TYPE;
use crate::reload::FORCE_GRACE;
use crate::server::ServerState;

mod actions;
mod dashboard;
mod diagnostics;
mod requests;
mod token;
mod views;

use token::Token;

/// The admin listener's liveness endpoint (as the plugins' `/health`).
pub const ADMIN_HEALTH_PATH: &str = "/healthz";
/// The admin listener's readiness endpoint (as the plugins' `/ready`).
pub const ADMIN_READY_PATH: &str = "/readyz";
/// The plugins, as JSON.
pub const ADMIN_PLUGINS_PATH: &str = "/admin/plugins";
/// The Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// The live domains, as JSON (`/admin/domains/{id}` one of them,
/// `/admin/domains/{id}/roots` what holds it).
pub const ADMIN_DOMAINS_PATH: &str = "/admin/domains";
/// The recent diagnostics, as JSON (`?follow`: server-sent events).
pub const ADMIN_DIAGNOSTICS_PATH: &str = "/admin/diagnostics";
/// The requests in flight, as JSON.
pub const ADMIN_REQUESTS_PATH: &str = "/admin/requests";
/// The dashboard: one HTML page over the JSON endpoints.
pub const ADMIN_DASHBOARD_PATH: &str = "/admin/";

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
    let stopping = close_rx.clone();
    let mut connections = connection::accept(
        &limits,
        admin.listener,
        shutdown,
        &close_rx,
        move |request, remote| {
            let door = Door {
                state: Arc::clone(&state),
                token: token.clone(),
                stopping: stopping.clone(),
            };
            door.handle(request, remote)
        },
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

/// One endpoint of the admin API, with the path's parameters as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    Health,
    Ready,
    Dashboard,
    Plugins,
    Metrics,
    Domains,
    Domain(&'a str),
    DomainRoots(&'a str),
    Diagnostics,
    Requests,
    Reload(&'a str),
    Promote(&'a str),
    Rollback(&'a str),
    Unload(&'a str),
    Force(&'a str),
    Cancel(&'a str),
}

impl<'a> Endpoint<'a> {
    /// The endpoint at `path`, if any.
    fn of(path: &'a str) -> Option<Endpoint<'a>> {
        let endpoint = match path {
            ADMIN_HEALTH_PATH => Endpoint::Health,
            ADMIN_READY_PATH => Endpoint::Ready,
            // `/admin` too: the dashboard sends it to `/admin/`.
            ADMIN_DASHBOARD_PATH | "/admin" => Endpoint::Dashboard,
            ADMIN_PLUGINS_PATH => Endpoint::Plugins,
            METRICS_PATH => Endpoint::Metrics,
            ADMIN_DOMAINS_PATH => Endpoint::Domains,
            ADMIN_DIAGNOSTICS_PATH => Endpoint::Diagnostics,
            ADMIN_REQUESTS_PATH => Endpoint::Requests,
            _ => {
                let rest = path.strip_prefix("/admin/")?;
                let segments: Vec<&str> = rest.split('/').collect();
                match segments.as_slice() {
                    ["domains", id] => Endpoint::Domain(id),
                    ["domains", id, "roots"] => Endpoint::DomainRoots(id),
                    ["domains", id, "unload"] => Endpoint::Unload(id),
                    ["domains", id, "force"] => Endpoint::Force(id),
                    ["plugins", name, "reload"] => Endpoint::Reload(name),
                    ["plugins", name, "promote"] => Endpoint::Promote(name),
                    ["plugins", name, "rollback"] => Endpoint::Rollback(name),
                    ["requests", id, "cancel"] => Endpoint::Cancel(id),
                    _ => return None,
                }
            }
        };
        Some(endpoint)
    }

    /// Whether it changes the server (POST only), else it reads (GET and
    /// HEAD).
    fn mutates(self) -> bool {
        matches!(
            self,
            Endpoint::Reload(_)
                | Endpoint::Promote(_)
                | Endpoint::Rollback(_)
                | Endpoint::Unload(_)
                | Endpoint::Force(_)
                | Endpoint::Cancel(_)
        )
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> &'static str {
        if self.mutates() { "POST" } else { "GET, HEAD" }
    }
}

/// What every admin request is answered with: the state, the token, and
/// the admin listener's stop (which ends event streams).
struct Door {
    state: Arc<ServerState>,
    token: Option<Arc<Token>>,
    stopping: watch::Receiver<bool>,
}

impl Door {
    /// Answers one admin request.
    async fn handle(
        self,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Result<Response<Body>, Infallible> {
        let path = request.uri().path();
        let method = request.method();
        let read = method == Method::GET || method == Method::HEAD;
        let endpoint = Endpoint::of(path);
        match endpoint {
            Some(Endpoint::Health) if read => return Ok(text(StatusCode::OK, "ok\n".into())),
            Some(Endpoint::Ready) if read => {
                return Ok(if self.state.is_ready() {
                    text(StatusCode::OK, "ready\n".into())
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
                });
            }
            // The dashboard checks the token itself: it also takes it
            // from `?token=` (and sets the cookie), and refuses with a
            // page.
            Some(Endpoint::Dashboard) if read => {
                return Ok(dashboard::answer(self.token.as_deref(), &request, remote));
            }
            _ => {}
        }
        if let Some(token) = &self.token
            && !token.admits(request.headers(), read)
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
        let Some(endpoint) = endpoint else {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {path}\n"),
            ));
        };
        let allowed = if endpoint.mutates() {
            method == Method::POST
        } else {
            read
        };
        if !allowed {
            let mut refused = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path}: only {}\n", endpoint.allow()),
            );
            let allow = HeaderValue::from_static(endpoint.allow());
            refused.headers_mut().insert(header::ALLOW, allow);
            return Ok(refused);
        }
        let query = request.uri().query().unwrap_or("");
        let state = &self.state;
        let response = match endpoint {
            Endpoint::Health | Endpoint::Ready | Endpoint::Dashboard => unreachable_read(),
            Endpoint::Plugins => json(StatusCode::OK, &views::plugins(state)),
            Endpoint::Metrics => metrics(state),
            Endpoint::Domains => views::domains(state),
            Endpoint::Domain(id) => views::domain(state, id),
            Endpoint::DomainRoots(id) => views::roots(state, id).await,
            Endpoint::Diagnostics => diagnostics::answer(state, query, self.stopping.clone()),
            Endpoint::Requests => requests::list(state).await,
            Endpoint::Cancel(id) => requests::cancel(state, id),
            Endpoint::Reload(name) => actions::reload(state, name).await,
            Endpoint::Promote(name) => actions::end_canary(state, name, true).await,
            Endpoint::Rollback(name) => actions::end_canary(state, name, false).await,
            Endpoint::Unload(id) => actions::unload(state, id, query).await,
            Endpoint::Force(id) => actions::force(state, id).await,
        };
        Ok(response)
    }
}

/// The probes and the dashboard were answered before the token (a read
/// of them never gets here): what a mistake in the routing above would
/// answer.
fn unreachable_read() -> Response<Body> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the probes and the dashboard are answered before the token\n".into(),
    )
}

fn metrics(state: &ServerState) -> Response<Body> {
    let versions = state.live_versions();
    match (state.metrics()).encode(state.host(), state.plugins(), &versions) {
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
    }
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

/// An error as JSON, as a fault's body is: `{"error": KIND, "id": ID,
/// "message": TEXT}` (`id` what the path named, as sent).
fn error(status: StatusCode, kind: &str, id: &str, message: String) -> Response<Body> {
    let value = serde_json::json!({ "error": kind, "id": id, "message": message });
    json(status, &value)
}

/// A domain id from the path: a decimal `u64`, else 400.
fn domain_id(id: &str) -> Result<u64, Response<Body>> {
    // `u64::from_str` takes a leading `+`: an id is digits only.
    if !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = id.parse::<u64>()
    {
        return Ok(n);
    }
    Err(error(
        StatusCode::BAD_REQUEST,
        "bad-domain-id",
        id,
        "a domain id is a decimal number (as /admin/domains lists them)".into(),
    ))
}

/// The live domain `id` from the path: 400 for a malformed id, 404 for
/// one no live domain has (never issued, or unloaded since).
fn find_domain(state: &ServerState, id: &str) -> Result<custody_host::Domain, Response<Body>> {
    let n = domain_id(id)?;
    state.host().domain(n).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "no-such-domain",
            id,
            format!("no live domain {n} (never issued, or unloaded since)"),
        )
    })
}
