//! WAGI's contract end to end: the CGI environment, argv, the response
//! head (status, location, LF and CRLF), entrypoints, `_routes`, `/...`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::support::*;

const ECHO: &str = include_str!("../../plugins/echo.wat");

async fn echo_server(extra: &str) -> TestServer {
    let toml = format!(
        r#"
        [[plugin]]
        name = "echo"
        route = "/echo/..."
        module = "echo.wat"
        env = {{ GREETING = "hi", SERVER_SOFTWARE = "overridden-by-plugin" }}
        {extra}
        "#
    );
    TestServer::start(&toml, &[("echo.wat", ECHO)]).await
}

#[test]
fn a_get_with_a_query_and_headers_sees_every_cgi_variable() {
    serial_runtime(async {
        let server = echo_server("").await;
        let client = client();
        let url = server.url("/echo/a%20b/c?x=1&y=two%20words");
        let answer = send(
            &client,
            Method::GET,
            &url,
            &[("x-custom", "v1"), ("authorization", "secret")],
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let port = server.addr.port().to_string();
        let expect = [
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", "/echo"),
            ("PATH_INFO", "/a b/c"),
            ("PATH_TRANSLATED", "/a b/c"),
            ("X_RAW_PATH_INFO", "/a%20b/c"),
            ("QUERY_STRING", "x=1&y=two%20words"),
            ("CONTENT_TYPE", ""),
            ("CONTENT_LENGTH", "0"),
            ("SERVER_NAME", "127.0.0.1"),
            ("SERVER_PORT", port.as_str()),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_HOST", "127.0.0.1"),
            ("REMOTE_USER", ""),
            ("AUTH_TYPE", ""),
            ("X_MATCHED_ROUTE", "/echo/..."),
            ("HTTP_X_CUSTOM", "v1"),
            ("GREETING", "hi"),
        ];
        for (name, value) in expect {
            assert_eq!(
                answer.env(name).as_deref(),
                Some(value),
                "{name} in {}",
                answer.body
            );
        }
        let full_url = format!("http://127.0.0.1:{port}/echo/a%20b/c?x=1&y=two%20words");
        assert_eq!(answer.env("X_FULL_URL"), Some(full_url));
        assert_eq!(answer.env("HTTP_HOST"), Some(format!("127.0.0.1:{port}")));
        assert_eq!(answer.env("HTTP_AUTHORIZATION"), None, "RFC 3875 4.1.18");
        // The plugin's env comes after the CGI variables: it wins.
        assert_eq!(
            answer.env("SERVER_SOFTWARE").as_deref(),
            Some("overridden-by-plugin")
        );
        assert_eq!(answer.args(), ["/echo", "x=1", "y=two words"]);
        let version = answer.headers["custody-plugin-version"].to_str().unwrap();
        assert_eq!(version.len(), 12);
        assert_eq!(version, custody_serve::content_id(&[ECHO.as_bytes()]));
    });
}

#[test]
fn a_post_gets_its_body_on_stdin_and_its_length_and_type() {
    serial_runtime(async {
        let server = echo_server("").await;
        let client = client();
        let body = "line one\nline two\n".repeat(5000); // 90 KB: more than a pipe holds
        let answer = send(
            &client,
            Method::POST,
            &server.url("/echo?q=1"),
            &[("content-type", "text/x-test")],
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.env("REQUEST_METHOD").as_deref(), Some("POST"));
        assert_eq!(answer.env("CONTENT_TYPE").as_deref(), Some("text/x-test"));
        assert_eq!(answer.env("CONTENT_LENGTH"), Some(body.len().to_string()));
        assert_eq!(answer.env("QUERY_STRING").as_deref(), Some("q=1"));
        assert_eq!(answer.env("PATH_INFO").as_deref(), Some(""));
        assert_eq!(answer.echoed(), body);
    });
}

#[test]
fn argv_follows_the_plugins_template() {
    serial_runtime(async {
        let server = echo_server(r#"argv = "prog --route ${SCRIPT_NAME} ${ARGS} end""#).await;
        let answer = get(&client(), &server.url("/echo/x?a&b=c")).await;
        assert_eq!(
            answer.args(),
            ["prog", "--route", "/echo", "a", "b=c", "end"]
        );
    });
}

#[test]
fn status_location_and_both_line_endings() {
    serial_runtime(async {
        let cases: [(&[u8], u16, &str, Option<&str>); 4] = [
            (
                b"status: 404 Not Found\r\ncontent-type: text/plain\r\n\r\nnope",
                404,
                "nope",
                None,
            ),
            (
                b"content-type: text/plain\nx-extra: yes\n\nlf body",
                200,
                "lf body",
                None,
            ),
            (b"location: /elsewhere\n\n", 302, "", Some("/elsewhere")),
            (
                b"Status: 301\r\nLocation: /moved\r\n\r\n",
                301,
                "",
                Some("/moved"),
            ),
        ];
        let files: Vec<(String, String)> = cases
            .iter()
            .enumerate()
            .map(|(i, (out, ..))| (format!("g{i}.wat"), guest(out, "")))
            .collect();
        let mut toml = String::new();
        for i in 0..cases.len() {
            toml +=
                &format!("[[plugin]]\nname = \"g{i}\"\nroute = \"/g{i}\"\nmodule = \"g{i}.wat\"\n");
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let server = TestServer::start(&toml, &files).await;
        let client = client();
        for (i, (_, status, body, location)) in cases.iter().enumerate() {
            let answer = get(&client, &server.url(&format!("/g{i}"))).await;
            assert_eq!(answer.status.as_u16(), *status, "case {i}: {}", answer.body);
            assert_eq!(answer.body, *body, "case {i}");
            let got = answer.headers.get("location").map(|v| v.to_str().unwrap());
            assert_eq!(got, *location, "case {i}");
            if i == 1 {
                assert_eq!(answer.headers["x-extra"], "yes");
            }
        }
    });
}

#[test]
fn the_entrypoint_and_routes_sub_routes_are_called() {
    serial_runtime(async {
        let module = guest_with(
            &[
                ("_start", b"content-type: text/plain\n\nstart", ""),
                ("other", b"content-type: text/plain\n\nother", ""),
                ("one", b"content-type: text/plain\n\none", ""),
                ("two", b"content-type: text/plain\n\ntwo", ""),
                ("_routes", b"/one one\n/two/... two\n", ""),
            ],
            "",
        );
        let toml = r#"
        [[plugin]]
        name = "app"
        route = "/app/..."
        module = "app.wat"
        [[plugin]]
        name = "entry"
        route = "/entry"
        module = "app.wat"
        entrypoint = "other"
    "#;
        let server = TestServer::start(toml, &[("app.wat", &module)]).await;
        let client = client();
        for (path, body) in [
            ("/app", "start"),
            ("/app/zzz", "start"),
            ("/app/one", "one"),
            ("/app/two", "two"),
            ("/app/two/deeper", "two"),
            ("/app/one/deeper", "start"),
            ("/entry", "other"),
        ] {
            let answer = get(&client, &server.url(path)).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, body),
                "{path}"
            );
        }
        assert_eq!(
            get(&client, &server.url("/entry/x")).await.status,
            StatusCode::NOT_FOUND
        );
    });
}

#[test]
fn the_longest_route_wins_and_everything_else_goes_to_the_catch_all() {
    serial_runtime(async {
        let files: Vec<(String, String)> = ["all", "x", "xexact"]
            .iter()
            .map(|n| {
                (
                    format!("{n}.wat"),
                    guest(format!("content-type: text/plain\n\n{n}").as_bytes(), ""),
                )
            })
            .collect();
        let toml = r#"
        [[plugin]]
        name = "all"
        route = "/..."
        module = "all.wat"
        [[plugin]]
        name = "x"
        route = "/x/..."
        module = "x.wat"
        [[plugin]]
        name = "xexact"
        route = "/x/exact"
        module = "xexact.wat"
    "#;
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let server = TestServer::start(toml, &files).await;
        let client = client();
        for (path, body) in [
            ("/", "all"),
            ("/y/z", "all"),
            ("/xy", "all"),
            ("/x", "x"),
            ("/x/exact", "xexact"),
            ("/x/exact/more", "x"),
        ] {
            assert_eq!(get(&client, &server.url(path)).await.body, body, "{path}");
        }
    });
}

#[test]
fn the_first_bytes_leave_before_the_plugin_finishes() {
    serial_runtime(async {
        let module = guest(b"content-type: text/plain\n\nfirst bytes", SPIN);
        let toml = r#"
        [[plugin]]
        name = "slow"
        route = "/slow"
        module = "slow.wat"
        request_timeout = "3s"
    "#;
        let server = TestServer::start(toml, &[("slow.wat", &module)]).await;
        let started = Instant::now();
        let client = client();
        let request = hyper::Request::get(server.url("/slow"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "first bytes");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Then the deadline stops the guest and cuts the body.
        let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .unwrap();
        assert!(rest.is_err(), "a body cut by the deadline ends in an error");
    });
}
