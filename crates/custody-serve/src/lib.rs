//! `custody serve`'s library: an HTTP server whose requests are calls into
//! unloadable domains. WAGI plugins (WASI commands, unchanged) run in a
//! fresh domain per request, with the request as CGI 1.1 environment
//! variables and stdin, and stdout as the response, streamed both ways.
//! A plugin that traps, hangs, overflows or writes garbage costs one
//! request its answer (a status per fault kind, docs/SERVER.md), never
//! the server.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use custody_serve::{ServerConfig, ServerState};
//!
//! let file = Path::new("custody.toml");
//! let config = ServerConfig::from_file(file)?;
//! let state = ServerState::load(&config, custody_host::Policy::default(), file)?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! // SIGTERM/SIGINT stop it as Kubernetes expects, SIGHUP reloads.
//! custody_serve::serve_with_signals(state, listener, custody_serve::os_signals()?).await?;
//! # Ok(()) }
//! ```
//!
//! custody-ABI plugins (`interface = "custody"`, a `handle(request,
//! response)` export) get the request and response bodies as two handles
//! and shape the head through custody-http's `custody_http` functions,
//! per request or from a pool of long-lived domains.
//!
//! # Module map
//! Bottom first: a module imports only modules listed above it, and this
//! file sits on top (`custody-testkit/tests/layering.rs` declares the same
//! order).
//!
//! | module | owns |
//! | --- | --- |
//! | `body` | the response body type (a leaf) |
//! | `request_span` | a request's id (`RequestId`) and its `tracing` span (plugin, version, route, id, status) and the hook that gives it the caller's trace as parent |
//! | `abort` | stopping a request's guest from the async side |
//! | `route` | routes (`/hello`, `/hello/...`), matching, `_routes` sub-routes |
//! | `config` | the TOML configuration: keys, defaults, durations, checks |
//! | `examples` | the bundled example plugins and their configuration |
//! | `recent_diagnostics` | the bounded ring of recent diagnostics (faults, the host's, refused reloads) and its followers |
//! | `fault` | the fault kinds, their statuses, bodies, log events and counters |
//! | `wagi` | WAGI's contract: the CGI environment, argv, the response head |
//! | `drain` | a version's in-flight requests: the registry a drain waits on and forces |
//! | `pool` | pooled instances: long-lived domains lent one request at a time, retired after a random count, a failure or a handle left behind |
//! | `series` | the request metrics' families and each version's series of them, kept by the version |
//! | `plugin` | a plugin and its versions (compiled modules, content id, policy, routes): the stable one and a canary, the split's counter |
//! | `stdio` | a request's stdio: in-process pipes as tokio I/O, stderr logged |
//! | `outcome` | how a request's call ended: the outcome, sent before its domain unloads, and whether the call was short enough for one whole response |
//! | `exec` | one WAGI request: its domain, stdio, streamed body and outcome |
//! | `custody_run` | one custody-ABI request: `handle(request, response)`, the two handles, the head through `custody_http` |
//! | `connection` | accepting connections under the client bounds (count, head size and time, idle), for every listener |
//! | `metrics/` | the Prometheus registry (`prometheus-client`): `mod.rs` the registry: requests and latency (`series`), faults, in flight, reloads and the OpenMetrics text; `host.rs` the scrape-time families (domains by state, handles by type, the ledger, aborted calls, blocked and forced unloads, the module cache, the pools' use) |
//! | `server` | hyper on tokio: state, health, routing, the plugins' listener |
//! | `reload` | hot reload: a trial load, the swap (or, with `canary = N`, a canary beside the stable version), the old version's drain |
//! | `canary` | a canary's end: promote (the canary alone, the old stable version drained) or rollback (the canary drained) |
//! | `watch` | `watch = true`: the plugins' files watched, changes debounced, reloads |
//! | `admin/` | the admin listener: `mod.rs` the door (routing, 405 with `Allow`, mutating calls logged, `/healthz`, `/readyz`, `/metrics`), `token.rs` (the bearer token in constant time, the dashboard's read-only cookie), `views.rs` (plugins, domains, roots), `requests.rs` (in flight, cancel), `actions.rs` (reload, promote, rollback, unload, force), `diagnostics.rs` (the recent ring, `?follow` as server-sent events), `dashboard.rs` (the HTML page at `/admin/`, `dashboard.html` embedded) |
//! | `shutdown` | `serve`: the termination contract (ready 503, delay, drain, force), signals, the admin listener stopped last |
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod abort;
mod admin;
mod body;
mod canary;
mod config;
mod connection;
mod custody_run;
mod drain;
mod examples;
mod exec;
mod fault;
mod metrics;
mod outcome;
mod plugin;
mod pool;
mod recent_diagnostics;
mod reload;
mod request_span;
mod route;
mod series;
mod server;
mod shutdown;
mod stdio;
mod wagi;
mod watch;

pub use admin::{
    ADMIN_DASHBOARD_PATH, ADMIN_DIAGNOSTICS_PATH, ADMIN_DOMAINS_PATH, ADMIN_HEALTH_PATH,
    ADMIN_PLUGINS_PATH, ADMIN_READY_PATH, ADMIN_REQUESTS_PATH, AdminListener, METRICS_PATH,
};
pub use body::{Body, full};
pub use canary::{CanaryEnded, CanaryError};
pub use config::{
    AdminConfig, ConfigError, HttpLimits, Instances, Interface, PluginConfig, ServerConfig,
    parse_duration,
};
pub use drain::{InFlight, InFlightGuard};
pub use examples::{ECHO_WAT, HELLO_WAT, example_config};
pub use exec::CHUNK;
pub use fault::{Fault, FaultCounters, FaultKind};
pub use metrics::{METRICS_CONTENT_TYPE, Metrics, ReloadOutcome};
pub use outcome::FLUSH_DELAY;
pub use plugin::{Canary, Plugin, PluginVersion, Serving, canary_takes, content_id};
pub use recent_diagnostics::RECENT_DIAGNOSTICS;
pub use reload::{Drained, FORCE_GRACE, ReloadError, Reloaded};
pub use request_span::{RequestId, SpanParent};
pub use route::{Route, RouteMatch, parse_sub_routes};
pub use server::{HEALTH_PATH, READY_PATH, ServerState, VERSION_HEADER, display_path};
pub use shutdown::{Listeners, Signal, Stopped, os_signals, serve, serve_with_signals};
pub use wagi::{
    CgiRequest, MAX_HEAD, ResponseHead, SERVER_SOFTWARE, argv, cgi_env, head_end, parse_head,
};
pub use watch::{MAX_DELAY, PluginWatcher, QUIET};
