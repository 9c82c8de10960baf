//! The admin API's client (docs/SERVER.md): one HTTP/1 request per
//! connection through hyper (the stack custody-serve serves with), the
//! token from `CUSTODY_ADMIN_TOKEN` as a bearer header, the answer read
//! whole. What goes wrong is a [`Failure`] whose exit status says whose
//! fault it was, as `custody run`'s do: 2 what was asked (a bad URL, an id
//! or name the server refuses, a version that does not load), 3 the
//! server could not be reached or failed (5xx), 4 the token was refused
//! (401, 403).

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::outcome::Failure;

/// The variable the token is read from.
pub(crate) const TOKEN_VARIABLE: &str = "CUSTODY_ADMIN_TOKEN";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take in all (an unload waits up to its
/// `wait_ms`, 1 s by default).
const CALL_TIMEOUT: Duration = Duration::from_secs(75);
/// The largest answer read.
const MAX_ANSWER: usize = 64 << 20;

/// The exit status of a failure of the server, or of reaching it.
const UNAVAILABLE: u8 = 3;
/// The exit status of a refused token.
const DENIED: u8 = 4;

/// What every admin command takes.
#[derive(Args)]
pub(crate) struct AdminArgs {
    /// The admin listener's URL (`custody serve` prints it: `ADMIN
    /// http://ADDR`); the token, if it has one, comes from
    /// CUSTODY_ADMIN_TOKEN.
    #[arg(
        long = "admin",
        value_name = "URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub(crate) url: String,
    /// Print the server's JSON answer as it is, for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

/// An answer of the admin API.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The body, whole.
    pub(crate) body: String,
    /// The body as JSON, if it is.
    pub(crate) json: Option<Value>,
}

/// Where the admin API is, and the token.
pub(crate) struct AdminClient {
    /// `host:port`, connected to and sent as `Host`.
    authority: String,
    /// The URL's path, without its trailing `/` (empty for none): a
    /// prefix a proxy in front may need.
    prefix: String,
    authorization: Option<HeaderValue>,
}

impl AdminClient {
    /// The client of `args.url`, with the token of `CUSTODY_ADMIN_TOKEN`.
    pub(crate) fn new(args: &AdminArgs) -> Result<AdminClient, Failure> {
        let token = std::env::var(TOKEN_VARIABLE).ok();
        AdminClient::with_token(&args.url, token.as_deref())
    }

    fn with_token(url: &str, token: Option<&str>) -> Result<AdminClient, Failure> {
        let bad = |why: &str| Failure::usage(format!("--admin {url}: {why}"));
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let uri: hyper::Uri = with_scheme
            .parse()
            .map_err(|e| bad(&format!("not a URL ({e})")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "only http:// (the admin listener speaks plain HTTP; reach a remote one through a TLS proxy or a tunnel)",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("give the listener's URL, without a query"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        let prefix = uri.path().trim_end_matches('/').to_string();
        // As `admin.token_file` holds it: printable ASCII, no spaces.
        let authorization = match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(
                (token.bytes().all(|b| b.is_ascii_graphic()))
                    .then(|| HeaderValue::from_str(&format!("Bearer {token}")).ok())
                    .flatten()
                    .ok_or_else(|| {
                        Failure::usage(format!(
                            "{TOKEN_VARIABLE}: a token is printable ASCII without spaces"
                        ))
                    })?,
            ),
        };
        Ok(AdminClient {
            authority,
            prefix,
            authorization,
        })
    }

    /// `method path` (the path percent-encoded already), whatever the
    /// status; a failure if the server cannot be reached or its answer
    /// read.
    pub(crate) fn send(&self, method: Method, path: &str) -> Result<Answer, Failure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("the runtime: {e}")))?;
        let exchange = self.exchange(method, path);
        runtime.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(unavailable(format!(
                        "the admin API at {} did not answer {path} within {CALL_TIMEOUT:?}",
                        self.authority
                    )))
                })
        })
    }

    async fn exchange(&self, method: Method, path: &str) -> Result<Answer, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| {
            unavailable(format!(
                "cannot reach the admin API at {}: {e} (is `custody serve` running with [admin] there? --admin URL)",
                self.authority
            ))
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| unreachable(&format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        // The connection is driven beside the request; it ends with it.
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::usage(format!("{path}: {e}")))?;
        if let Some(authorization) = &self.authorization {
            (request.headers_mut()).insert(header::AUTHORIZATION, authorization.clone());
        }
        let failed = |e: &dyn std::fmt::Display| {
            unavailable(format!(
                "the admin API at {} failed to answer {path}: {e}",
                self.authority
            ))
        };
        let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_str(&body).ok();
        Ok(Answer {
            status: parts.status,
            body,
            json,
        })
    }

    /// The failure of an answer that is not a success: what the server
    /// said (its JSON error's kind and message, or its text).
    pub(crate) fn refused(&self, method: &Method, path: &str, answer: &Answer) -> Failure {
        refusal(&self.authority, method, path, answer)
    }
}

/// A failure of the server, or of reaching it (exit 3).
pub(crate) fn unavailable(message: String) -> Failure {
    Failure {
        status: UNAVAILABLE,
        message,
    }
}

/// The failure of an answer that is not a success.
fn refusal(authority: &str, method: &Method, path: &str, answer: &Answer) -> Failure {
    let said = match &answer.json {
        Some(error) if error["error"].is_string() => format!(
            "{}: {}",
            error["error"].as_str().unwrap_or_default(),
            error["message"].as_str().unwrap_or_default()
        ),
        _ => answer.body.trim().to_string(),
    };
    let status = answer.status;
    let (exit, hint) = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            DENIED,
            if std::env::var_os(TOKEN_VARIABLE).is_some() {
                " (the token in CUSTODY_ADMIN_TOKEN was refused)"
            } else {
                " (set CUSTODY_ADMIN_TOKEN to the token of admin.token_file)"
            },
        ),
        s if s.is_server_error() => (UNAVAILABLE, ""),
        _ => (2, ""),
    };
    Failure {
        status: exit,
        message: format!("{method} {path} on {authority}: {status}: {said}{hint}"),
    }
}

/// What a path segment percent-encodes: the URL standard's path set,
/// `/` and `%` (so a name is one segment, and decodes to itself).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `text` as one path segment (a plugin's name, a request's id).
pub(crate) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::AdminClient;

    #[test]
    fn urls_are_read_or_refused_clearly() {
        for (url, authority, prefix) in [
            ("http://127.0.0.1:9090", "127.0.0.1:9090", ""),
            ("127.0.0.1:9090/", "127.0.0.1:9090", ""),
            ("http://[::1]:1/custody/", "[::1]:1", "/custody"),
            ("http://admin.internal", "admin.internal:80", ""),
        ] {
            let client =
                AdminClient::with_token(url, None).unwrap_or_else(|f| panic!("{}", f.message));
            assert_eq!(
                (client.authority.as_str(), client.prefix.as_str()),
                (authority, prefix)
            );
        }
        for (url, why) in [
            ("https://127.0.0.1:9090", "only http://"),
            ("http://127.0.0.1:9090/?x=1", "without a query"),
            ("http:// bad", "not a URL"),
        ] {
            let failure = AdminClient::with_token(url, None).err().unwrap();
            assert!(
                failure.status == 2 && failure.message.contains(why),
                "{}",
                failure.message
            );
        }
        assert_eq!(super::segment("18c3-17"), "18c3-17");
        assert_eq!(super::segment("a b/c%?é"), "a%20b%2Fc%25%3F%C3%A9");
        let failure = AdminClient::with_token("127.0.0.1:1", Some("a b"))
            .err()
            .unwrap();
        assert!(
            failure.message.contains("CUSTODY_ADMIN_TOKEN"),
            "{}",
            failure.message
        );
    }
}
