//! `/admin/requests`: every request in flight (every live version's
//! registry, `drain`), with the host call it is blocked in and the guest's
//! stack (its domain's `Call` root); `/admin/requests/{id}/cancel`: the
//! request's call aborted and the request marked cancelled, so its client
//! gets 503 `cancelled` with the id (`fault`).

use std::sync::Arc;

use custody_host::RootKind;
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::{error, json};
use crate::body::Body;
use crate::drain::InFlightRequest;
use crate::server::ServerState;

/// Every request in flight, oldest first.
fn in_flight(state: &ServerState) -> Vec<Arc<InFlightRequest>> {
    let mut requests: Vec<_> = (state.live_versions().iter())
        .flat_map(|version| version.in_flight.requests())
        .collect();
    requests.sort_by_key(|r| r.started);
    requests
}

/// One request as JSON, with its domain's call (sampled on the blocking
/// pool: a running guest's stack waits for its next epoch check).
fn request_view(request: &InFlightRequest) -> Value {
    let domain = request.abort.domain();
    let call = domain
        .as_ref()
        .and_then(|domain| (domain.roots().into_iter()).find(|root| root.kind == RootKind::Call));
    serde_json::json!({
        "id": request.id.to_string(),
        "plugin": &*request.plugin,
        "version": &*request.version,
        "domain": request.abort.domain_id(),
        "age_ms": request.started.elapsed().as_millis() as u64,
        "cancelled": request.abort.is_cancelled(),
        "blocked_in": call.as_ref().and_then(|c| c.blocked_in.clone()),
        "stack": call.as_ref().and_then(|c| c.stack.clone()),
        "call": call,
    })
}

/// `GET /admin/requests`.
pub(super) async fn list(state: &ServerState) -> Response<Body> {
    let requests = in_flight(state);
    let views = tokio::task::spawn_blocking(move || {
        (requests.iter())
            .map(|r| request_view(r))
            .collect::<Vec<_>>()
    })
    .await;
    match views {
        Ok(views) => json(StatusCode::OK, &serde_json::json!({ "requests": views })),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "",
            format!("listing the requests failed: {e}"),
        ),
    }
}

/// Whether `id` has the shape of a request id (`PREFIX-N`: hex digits, a
/// dash, decimal digits).
fn is_request_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(prefix, n)| {
        !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `POST /admin/requests/{id}/cancel`: 202 once the cancel is asked (the
/// call stops at its next epoch check, or wakes from its host wait at
/// once; the request ends as its client is answered).
pub(super) fn cancel(state: &ServerState, id: &str) -> Response<Body> {
    if !is_request_id(id) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad-request-id",
            id,
            "a request id is PREFIX-N, as /admin/requests and the fault bodies give it".into(),
        );
    }
    let Some(request) = in_flight(state)
        .into_iter()
        .find(|r| r.id.to_string() == id)
    else {
        return error(
            StatusCode::NOT_FOUND,
            "no-such-request",
            id,
            "no request in flight has this id (it ended, or never was)".into(),
        );
    };
    request.abort.cancel();
    tracing::warn!(
        target: "custody::serve::admin",
        id, plugin = &*request.plugin, version = &*request.version,
        domain = request.abort.domain_id(),
        "request cancelled through the admin API"
    );
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "id": request.id.to_string(),
            "cancelled": true,
            "plugin": &*request.plugin,
            "version": &*request.version,
            "domain": request.abort.domain_id(),
        }),
    )
}

/// The requests in flight on `domain`, marked cancelled (before a forced
/// unload stops them: their clients get `cancelled`, not a trap).
pub(super) fn mark_cancelled_on(state: &ServerState, domain: u64) -> Vec<String> {
    (in_flight(state).into_iter())
        .filter(|r| r.abort.domain_id() == Some(domain))
        .map(|r| {
            r.abort.mark_cancelled();
            r.id.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_request_id;

    #[test]
    fn request_ids_have_their_shape() {
        for good in ["1a2b-1", "ffffffffffffffff-18446744073709551615", "0-0"] {
            assert!(is_request_id(good), "{good}");
        }
        for bad in [
            "", "-", "1a2b", "1a2b-", "-1", "xyz-1", "1a-2-3", "1a-+2", "1a-2 ",
        ] {
            assert!(!is_request_id(bad), "{bad}");
        }
    }
}
