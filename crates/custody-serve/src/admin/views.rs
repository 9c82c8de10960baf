//! The admin API's read views: `/admin/plugins` (each plugin as it serves
//! now: its stable version, its canary, each version's counters), `/admin/domains` and `/admin/domains/{id}` (the host's
//! `DomainInfo`, with what the server knows of the domain: the plugin,
//! version and request it serves), `/admin/domains/{id}/roots` (what holds
//! it, each root with its origin and the live guest stack).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use hyper::{Response, StatusCode};
use serde_json::Value;

use super::{error, find_domain, json};
use crate::body::Body;
use crate::fault::FaultKind;
use crate::plugin::PluginVersion;
use crate::server::ServerState;

/// What the server made a domain for.
struct Serving {
    plugin: String,
    version: String,
    /// The request it serves now; `None` for an idle pooled domain.
    request: Option<String>,
}

/// Every domain the server made for a plugin and still knows of, by id:
/// those of the requests in flight (every live version's), and the pools'
/// idle ones.
fn serving(state: &ServerState) -> HashMap<u64, Serving> {
    let mut serving = HashMap::new();
    for version in state.live_versions() {
        for request in version.in_flight.requests() {
            if let Some(domain) = request.abort.domain_id() {
                let request_id = Some(request.id.to_string());
                serving.insert(
                    domain,
                    Serving {
                        plugin: request.plugin.to_string(),
                        version: request.version.to_string(),
                        request: request_id,
                    },
                );
            }
        }
        for domain in version.pool.iter().flat_map(|pool| pool.idle_domains()) {
            serving.entry(domain).or_insert_with(|| Serving {
                plugin: version.plugin.clone(),
                version: version.id.clone(),
                request: None,
            });
        }
    }
    serving
}

/// One domain as JSON: its `DomainInfo` and the server's fields (`name`,
/// `plugin`, `version`, `request`, `role`).
fn domain_view(info: &custody_host::DomainInfo, serving: Option<&Serving>) -> Value {
    let mut view =
        serde_json::to_value(info).unwrap_or_else(|_| serde_json::json!({ "id": info.id }));
    let fields = match serving {
        Some(s) => serde_json::json!({
            "name": format!("{}@{}", s.plugin, s.version),
            "plugin": s.plugin,
            "version": s.version,
            "request": s.request,
            "role": if s.request.is_some() { "request" } else { "pooled" },
        }),
        // A domain the server did not make for a request: a plugin's
        // trial load, or the embedder's own.
        None => serde_json::json!({
            "name": null, "plugin": null, "version": null, "request": null, "role": "other",
        }),
    };
    if let (Some(view), Value::Object(fields)) = (view.as_object_mut(), fields) {
        view.extend(fields);
    }
    view
}

/// `/admin/domains`: every live or unloading domain, by id.
pub(super) fn domains(state: &ServerState) -> Response<Body> {
    let serving = serving(state);
    let domains: Vec<Value> = (state.host().domains().iter())
        .map(|info| domain_view(info, serving.get(&info.id)))
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "domains": domains }))
}

/// `/admin/domains/{id}`: one domain.
pub(super) fn domain(state: &ServerState, id: &str) -> Response<Body> {
    let domain = match find_domain(state, id) {
        Ok(domain) => domain,
        Err(refused) => return refused,
    };
    let info = domain.info();
    let serving = serving(state);
    json(StatusCode::OK, &domain_view(&info, serving.get(&info.id)))
}

/// `/admin/domains/{id}/roots`: what holds the domain, each root with its
/// origin; a call's live guest stack is sampled at its next epoch check
/// (up to about two ticks, on the blocking pool), a blocked call's is the
/// one it began to wait with.
pub(super) async fn roots(state: &ServerState, id: &str) -> Response<Body> {
    let domain = match find_domain(state, id) {
        Ok(domain) => domain,
        Err(refused) => return refused,
    };
    let listed = tokio::task::spawn_blocking(move || {
        let roots = domain.roots();
        (domain.id(), domain.state(), roots)
    })
    .await;
    match listed {
        Ok((domain, domain_state, roots)) => json(
            StatusCode::OK,
            &serde_json::json!({ "domain": domain, "state": domain_state, "roots": roots }),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            id,
            format!("listing the roots failed: {e}"),
        ),
    }
}

/// One version as `/admin/plugins` lists it: its id, its role (`stable`,
/// `canary` or `draining`), the requests it answered and those in flight.
fn version_view(version: &PluginVersion, role: &str) -> Value {
    serde_json::json!({
        "version": version.id,
        "role": role,
        "served": version.served.load(Ordering::Relaxed),
        "in_flight": version.in_flight.len(),
    })
}

/// `/admin/plugins`: whether the plugins are loaded (none are listed
/// before), and each plugin as it serves now: its stable version, its
/// canary and its share, and every version with requests (the draining
/// ones too) with its counters.
pub(super) fn plugins(state: &ServerState) -> Value {
    let draining = state.draining_versions();
    let plugins: Vec<Value> = (state.plugins().iter())
        .map(|plugin| {
            let serving = plugin.serving();
            let version = &serving.stable;
            let routes: Vec<Value> = (version.routes.iter())
                .map(|(route, export)| serde_json::json!({ "route": route.as_str(), "export": export }))
                .collect();
            let faults: serde_json::Map<String, Value> = (FaultKind::ALL.iter())
                .map(|kind| (kind.name().to_string(), plugin.faults.get(*kind).into()))
                .collect();
            let canary = serving.canary.as_ref().map(|canary| {
                serde_json::json!({ "version": canary.version.id, "percent": canary.percent })
            });
            let mut versions = vec![version_view(version, "stable")];
            versions.extend(
                (serving.canary.iter()).map(|canary| version_view(&canary.version, "canary")),
            );
            versions.extend(
                (draining.iter())
                    .filter(|v| v.plugin == plugin.config.name)
                    .map(|v| version_view(v, "draining")),
            );
            serde_json::json!({
                "name": plugin.config.name,
                "routes": routes,
                "interface": version.interface.name(),
                "instances": plugin.config.instances.name(),
                "version": version.id,
                "canary": canary,
                "versions": versions,
                "in_flight": plugin.in_flight(),
                "max_concurrency": plugin.config.max_concurrency,
                "faults": faults,
            })
        })
        .collect();
    serde_json::json!({ "loaded": state.is_loaded(), "plugins": plugins })
}
