//! What the admin API's endpoints refuse, and how: forged, malformed and
//! stale ids (400 and 404 with a JSON error naming the kind), unknown
//! methods on known paths (405 with `Allow`), and every endpoint without
//! the token (401).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::admin_api::{admin, server};
use crate::support::*;

#[test]
fn bad_ids_and_methods_are_clear_errors_and_every_endpoint_wants_the_token() {
    serial_runtime(async {
        let server = server().await;
        let client = client();
        for (path, kind) in [
            ("/admin/domains/abc", "bad-domain-id"),
            ("/admin/domains/+1", "bad-domain-id"),
            ("/admin/domains/-1/roots", "bad-domain-id"),
            ("/admin/domains/18446744073709551616", "bad-domain-id"),
            ("/admin/domains/18446744073709551615", "no-such-domain"),
            ("/admin/domains/0/roots", "no-such-domain"),
        ] {
            let (status, refused, _) = admin(&server, &client, Method::GET, path).await;
            let want = if kind == "bad-domain-id" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(
                (status, &refused["error"]),
                (want, &Value::from(kind)),
                "{path}: {refused}"
            );
        }
        for (path, status, kind) in [
            (
                "/admin/requests/zz/cancel",
                StatusCode::BAD_REQUEST,
                "bad-request-id",
            ),
            (
                "/admin/requests/1a-x/cancel",
                StatusCode::BAD_REQUEST,
                "bad-request-id",
            ),
            (
                "/admin/requests/1a-5/cancel",
                StatusCode::NOT_FOUND,
                "no-such-request",
            ),
            (
                "/admin/domains/x/force",
                StatusCode::BAD_REQUEST,
                "bad-domain-id",
            ),
            (
                "/admin/domains/999999/unload",
                StatusCode::NOT_FOUND,
                "no-such-domain",
            ),
            (
                "/admin/domains/1/unload?wait_ms=soon",
                StatusCode::BAD_REQUEST,
                "bad-query",
            ),
        ] {
            let (got, refused, _) = admin(&server, &client, Method::POST, path).await;
            assert_eq!(
                (got, &refused["error"]),
                (status, &Value::from(kind)),
                "{path}: {refused}"
            );
        }
        // Unknown methods on known paths: 405 with what is allowed.
        for (method, path, allow) in [
            (Method::POST, "/admin/domains", "GET, HEAD"),
            (Method::DELETE, "/admin/domains/1", "GET, HEAD"),
            (Method::PUT, "/admin/diagnostics", "GET, HEAD"),
            (Method::POST, "/admin/requests", "GET, HEAD"),
            (Method::GET, "/admin/requests/1a-5/cancel", "POST"),
            (Method::GET, "/admin/plugins/hello/reload", "POST"),
            (Method::DELETE, "/admin/domains/1/force", "POST"),
            (Method::GET, "/admin/domains/1/unload", "POST"),
        ] {
            let (status, _, answer) = admin(&server, &client, method.clone(), path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(answer.headers["allow"], allow, "{method} {path}");
        }
        // Without the token, every endpoint is refused before it acts.
        for (method, path) in [
            (Method::GET, "/admin/domains"),
            (Method::GET, "/admin/domains/1"),
            (Method::GET, "/admin/domains/1/roots"),
            (Method::GET, "/admin/diagnostics"),
            (Method::GET, "/admin/diagnostics?follow"),
            (Method::GET, "/admin/requests"),
            (Method::POST, "/admin/requests/1a-5/cancel"),
            (Method::POST, "/admin/plugins/hello/reload"),
            (Method::POST, "/admin/domains/1/unload"),
            (Method::POST, "/admin/domains/1/force"),
        ] {
            let answer = send(
                &client,
                method.clone(),
                &server.admin_url(path),
                &[],
                Bytes::new(),
            )
            .await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
        let version = server.state.plugins()[2].current().id.clone();
        assert_eq!(
            get(&client, &server.url("/hello")).await.headers["custody-plugin-version"],
            version.as_str()
        );
    });
}
