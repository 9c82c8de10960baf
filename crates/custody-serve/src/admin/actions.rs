//! The admin API's actions: `POST /admin/plugins/{name}/reload` (the
//! library's reload, as SIGHUP and `watch` ask it), `/promote` and
//! `/rollback` (a canary's end, 409 without one), and on one domain
//! `POST /admin/domains/{id}/unload` (cooperative: what holds it, if it
//! does not complete within `wait_ms`) and `/force` (forced: the requests
//! on it end `cancelled`). Each answers JSON, its errors as a fault's
//! body is (`{"error", "id", "message"}`).

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Response, StatusCode};

use super::{error, find_domain, json, requests};
use crate::body::Body;
use crate::canary::CanaryError;
use crate::reload::{ReloadError, Reloaded};
use crate::server::ServerState;

/// How long `unload` waits for the unload to complete unless `wait_ms`
/// says otherwise.
const UNLOAD_WAIT: Duration = Duration::from_secs(1);
/// The longest `wait_ms` taken.
const MAX_UNLOAD_WAIT: Duration = Duration::from_secs(60);

/// An error with its causes, `: `-separated.
fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// A plugin's name from the path, percent-decoded; 400 if it is not
/// UTF-8.
fn plugin_name(name: &str) -> Result<String, Response<Body>> {
    match percent_encoding::percent_decode_str(name).decode_utf8() {
        Ok(decoded) => Ok(decoded.into_owned()),
        Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad-plugin-name",
            name,
            "a plugin's name is UTF-8".into(),
        )),
    }
}

/// `POST /admin/plugins/{name}/reload`: 200 with the version serving
/// after it (`swapped` or `unchanged`) or the canary started (`canary`),
/// 404 for no such plugin, 422 when the new version is refused (the old
/// one keeps serving).
pub(super) async fn reload(state: &Arc<ServerState>, name: &str) -> Response<Body> {
    let name = match plugin_name(name) {
        Ok(name) => name,
        Err(refused) => return refused,
    };
    match state.reload(&name).await {
        Ok(Reloaded::Swapped {
            previous, current, ..
        }) => json(
            StatusCode::OK,
            &serde_json::json!({
                "plugin": name, "outcome": "swapped", "version": current, "previous": previous,
            }),
        ),
        Ok(Reloaded::Unchanged { version, .. }) => json(
            StatusCode::OK,
            &serde_json::json!({ "plugin": name, "outcome": "unchanged", "version": version }),
        ),
        Ok(Reloaded::Canary {
            stable,
            canary,
            percent,
            replaced,
            ..
        }) => json(
            StatusCode::OK,
            &serde_json::json!({
                "plugin": name, "outcome": "canary", "version": canary, "stable": stable,
                "percent": percent, "replaced": replaced,
            }),
        ),
        Err(e @ ReloadError::UnknownPlugin(_)) => error(
            StatusCode::NOT_FOUND,
            "no-such-plugin",
            &name,
            e.to_string(),
        ),
        Err(e @ ReloadError::Refused { .. }) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            &name,
            with_causes(&e),
        ),
        Err(e @ ReloadError::Task { .. }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &name,
            with_causes(&e),
        ),
    }
}

/// `POST /admin/plugins/{name}/promote` (`promote`) or `/rollback`: 200
/// with the version serving everything now and the one that left (it
/// drains), 404 for no such plugin, 409 `no-canary` when none runs.
pub(super) async fn end_canary(
    state: &Arc<ServerState>,
    name: &str,
    promote: bool,
) -> Response<Body> {
    let name = match plugin_name(name) {
        Ok(name) => name,
        Err(refused) => return refused,
    };
    let (ended, outcome) = if promote {
        (state.promote(&name).await, "promoted")
    } else {
        (state.rollback(&name).await, "rolled-back")
    };
    match ended {
        Ok(ended) => json(
            StatusCode::OK,
            &serde_json::json!({
                "plugin": name, "outcome": outcome, "version": ended.version, "left": ended.left,
            }),
        ),
        Err(e @ CanaryError::UnknownPlugin(_)) => error(
            StatusCode::NOT_FOUND,
            "no-such-plugin",
            &name,
            e.to_string(),
        ),
        Err(e @ CanaryError::NoCanary { .. }) => {
            error(StatusCode::CONFLICT, "no-canary", &name, e.to_string())
        }
    }
}

/// `wait_ms=N` in `query`, else [`UNLOAD_WAIT`]; `None` if malformed.
fn unload_wait(query: &str) -> Option<Duration> {
    let mut wait = UNLOAD_WAIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "wait_ms" {
            wait = Duration::from_millis(value.parse().ok()?);
        }
    }
    Some(wait.min(MAX_UNLOAD_WAIT))
}

/// `POST /admin/domains/{id}/unload[?wait_ms=N]`: begins a cooperative
/// unload and waits up to `wait_ms` (1000 by default, 60000 at most) for
/// it: 200 with the unload's report if it completed, 202 with the roots
/// that hold it if not (it completes when they go), 409 if the domain is
/// no longer running.
pub(super) async fn unload(state: &ServerState, id: &str, query: &str) -> Response<Body> {
    let Some(wait) = unload_wait(query) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad-query",
            id,
            format!("wait_ms is a number of milliseconds: {query:?}"),
        );
    };
    let domain = match find_domain(state, id) {
        Ok(domain) => domain,
        Err(refused) => return refused,
    };
    let id = id.to_string();
    let answered = tokio::task::spawn_blocking(move || {
        let ticket = match domain.begin_unload() {
            Ok(ticket) => ticket,
            Err(e) => return error(StatusCode::CONFLICT, "not-running", &id, with_causes(&e)),
        };
        match ticket.wait(wait) {
            Ok(report) => json(
                StatusCode::OK,
                &serde_json::json!({ "domain": domain.id(), "unloaded": true, "report": report }),
            ),
            Err(blocked) => json(
                StatusCode::ACCEPTED,
                &serde_json::json!({
                    "domain": domain.id(),
                    "unloaded": false,
                    "state": domain.state(),
                    "message": blocked.to_string(),
                    "roots": blocked.roots,
                }),
            ),
        }
    })
    .await;
    answered.unwrap_or_else(|e| task_failed(&e))
}

/// `POST /admin/domains/{id}/force`: a forced unload (running guest code
/// stops at its next epoch check, a host wait wakes, refs are
/// invalidated); the requests on the domain end `cancelled`. 200 with the
/// report and the requests cancelled, 409 if the domain is no longer
/// running.
pub(super) async fn force(state: &ServerState, id: &str) -> Response<Body> {
    let domain = match find_domain(state, id) {
        Ok(domain) => domain,
        Err(refused) => return refused,
    };
    let cancelled = requests::mark_cancelled_on(state, domain.id());
    let id = id.to_string();
    let answered = tokio::task::spawn_blocking(move || match domain.force_unload() {
        Ok(report) => json(
            StatusCode::OK,
            &serde_json::json!({
                "domain": domain.id(), "unloaded": true, "cancelled": cancelled, "report": report,
            }),
        ),
        Err(e) => error(StatusCode::CONFLICT, "not-running", &id, with_causes(&e)),
    })
    .await;
    answered.unwrap_or_else(|e| task_failed(&e))
}

fn task_failed(e: &tokio::task::JoinError) -> Response<Body> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "",
        format!("the action's task failed: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_ms_is_read_bounded_or_refused() {
        assert_eq!(unload_wait(""), Some(UNLOAD_WAIT));
        assert_eq!(unload_wait("wait_ms=0"), Some(Duration::ZERO));
        assert_eq!(
            unload_wait("x=1&wait_ms=250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(unload_wait("wait_ms=999999999"), Some(MAX_UNLOAD_WAIT));
        assert_eq!(unload_wait("wait_ms=-1"), None);
        assert_eq!(unload_wait("wait_ms="), None);
    }
}
