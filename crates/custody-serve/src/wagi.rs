//! WAGI's contract (deislabs/wagi's documents): the CGI 1.1 environment a
//! request becomes, the argv template, and the response head a plugin
//! writes on stdout (header lines, a blank line, LF or CRLF).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode, Uri, Version};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::route::RouteMatch;

/// `SERVER_SOFTWARE`.
pub const SERVER_SOFTWARE: &str = concat!("custody/", env!("CARGO_PKG_VERSION"));

/// The largest header block a plugin may write: past it the response is
/// a 502 (a header block that never ends).
pub const MAX_HEAD: usize = 64 << 10;

/// What the environment of one request is made from.
#[derive(Debug)]
pub struct CgiRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The client.
    pub remote: SocketAddr,
    /// The server's own address (the port when there is no `Host`).
    pub local: SocketAddr,
    /// The route as written (`X_MATCHED_ROUTE`).
    pub matched_route: &'a str,
    /// How the path splits under it.
    pub route: &'a RouteMatch,
}

impl<'a> CgiRequest<'a> {
    /// The request's method, target, version and headers, from the client
    /// `remote` to the server's `local`, taken by `matched_route` as
    /// `route` says.
    pub fn new<B>(
        request: &'a hyper::Request<B>,
        (remote, local): (SocketAddr, SocketAddr),
        matched_route: &'a str,
        route: &'a RouteMatch,
    ) -> Self {
        CgiRequest {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            remote,
            local,
            matched_route,
            route,
        }
    }
}

/// The CGI 1.1 environment of a request, as WAGI sets it, each variable as
/// `NAME=VALUE` (what a WASI guest's `environ_get` returns), in a stable
/// order: the meta-variables, then every header as `HTTP_NAME` (upper
/// case, `-` as `_`; `Authorization` and `Connection` left out, as
/// RFC 3875 4.1.18 allows; repeated headers joined with `, `). Each entry
/// is one allocation, written in place: this runs once per request.
pub fn cgi_env(request: &CgiRequest<'_>) -> Vec<String> {
    let headers = request.headers;
    let text = |name: HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    };
    let host_header = text(header::HOST);
    let (host, port) = host_and_port(host_header.as_deref(), request.local);
    let path_and_query = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path_info = percent_decode_str(&request.route.raw_path_info).decode_utf8_lossy();
    let content_length = text(header::CONTENT_LENGTH).unwrap_or_else(|| {
        if headers.contains_key(header::TRANSFER_ENCODING) {
            "".into()
        } else {
            "0".into()
        }
    });
    let content_type = text(header::CONTENT_TYPE).unwrap_or_default();
    let remote = request.remote.ip().to_string();
    let protocol = protocol(request.version);
    let mut env = Vec::with_capacity(19 + headers.keys_len());
    for (name, value) in [
        ("REQUEST_METHOD", request.method.as_str()),
        ("SCRIPT_NAME", request.route.script_name.as_str()),
        ("PATH_INFO", &*path_info),
        ("PATH_TRANSLATED", &*path_info),
        ("QUERY_STRING", request.uri.query().unwrap_or("")),
        ("CONTENT_TYPE", &*content_type),
        ("CONTENT_LENGTH", &*content_length),
        ("SERVER_NAME", &*host),
        ("SERVER_PORT", &*port),
        ("SERVER_PROTOCOL", &*protocol),
        ("SERVER_SOFTWARE", SERVER_SOFTWARE),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REMOTE_ADDR", &*remote),
        ("REMOTE_HOST", &*remote),
        ("REMOTE_USER", ""),
        ("AUTH_TYPE", ""),
        ("X_MATCHED_ROUTE", request.matched_route),
        ("X_RAW_PATH_INFO", request.route.raw_path_info.as_str()),
    ] {
        env.push(entry(name, &[value]));
    }
    let full_url = ["http://", &*host, ":", &*port, path_and_query];
    env.push(entry("X_FULL_URL", &full_url));
    let mut names: Vec<&HeaderName> = headers.keys().collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    for name in names {
        if name == header::AUTHORIZATION || name == header::CONNECTION {
            continue;
        }
        let mut var = String::with_capacity(5 + name.as_str().len() + 1 + 16);
        var.push_str("HTTP_");
        var.extend(name.as_str().chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        var.push('=');
        for (i, value) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                var.push_str(", ");
            }
            var.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        env.push(var);
    }
    env
}

/// A WAGI guest's environment: the request's CGI variables, then the
/// plugin's `env`, which replaces a variable of the same name (a guest
/// sees each name once).
pub(crate) fn guest_env(
    request: &CgiRequest<'_>,
    plugin_env: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut env = cgi_env(request);
    if !plugin_env.is_empty() {
        env.retain(|var| {
            let name = var.split_once('=').map_or(var.as_str(), |(name, _)| name);
            !plugin_env.contains_key(name)
        });
        env.extend(plugin_env.iter().map(|(name, value)| entry(name, &[value])));
    }
    env
}

/// `NAME=` followed by `parts`, in one allocation.
fn entry(name: &str, parts: &[&str]) -> String {
    let len = name.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut entry = String::with_capacity(len);
    entry.push_str(name);
    entry.push('=');
    parts.iter().for_each(|p| entry.push_str(p));
    entry
}

/// `SERVER_PROTOCOL`: `HTTP/1.1` and its kin, without formatting.
fn protocol(version: Version) -> std::borrow::Cow<'static, str> {
    match version {
        Version::HTTP_09 => "HTTP/0.9".into(),
        Version::HTTP_10 => "HTTP/1.0".into(),
        Version::HTTP_11 => "HTTP/1.1".into(),
        Version::HTTP_2 => "HTTP/2.0".into(),
        Version::HTTP_3 => "HTTP/3.0".into(),
        other => format!("{other:?}").into(),
    }
}

/// `SERVER_NAME` and `SERVER_PORT`: from the `Host` header, else the
/// server's own address.
fn host_and_port<'h>(
    host_header: Option<&'h str>,
    local: SocketAddr,
) -> (Cow<'h, str>, Cow<'h, str>) {
    let Some(value) = host_header.filter(|v| !v.is_empty()) else {
        return (
            local.ip().to_string().into(),
            local.port().to_string().into(),
        );
    };
    // `[::1]:8080`, `example.com:8080`, `example.com`.
    let (name, rest) = match value.rfind(':') {
        Some(at) if !value[at..].contains(']') => (&value[..at], Some(&value[at + 1..])),
        _ => (value, None),
    };
    let host = if name.is_empty() {
        local.ip().to_string().into()
    } else {
        name.into()
    };
    let port = match rest {
        Some(p) if !p.is_empty() => p.into(),
        _ => "80".into(),
    };
    (host, port)
}

/// The guest's argv from WAGI's template: each whitespace-separated word,
/// with `${SCRIPT_NAME}` replaced, and a word `${ARGS}` replaced by the
/// query's parameters (split on `&`, each percent-decoded, `+` as a space;
/// empty ones skipped), as many words as there are.
pub fn argv(template: &str, script_name: &str, query: Option<&str>) -> Vec<String> {
    let args: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            percent_decode_str(&p.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut argv = Vec::new();
    for word in template.split_whitespace() {
        if word == "${ARGS}" {
            argv.extend(args.iter().cloned());
        } else {
            argv.push(word.replace("${SCRIPT_NAME}", script_name));
        }
    }
    argv
}

/// Where the header block of `buf` ends (after its blank line), looking
/// from `from` on; `None` while it has not ended.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    // An empty header block: the output starts with its blank line.
    if from == 0 {
        if buf.starts_with(b"\n") {
            return Some(1);
        }
        if buf.starts_with(b"\r\n") {
            return Some(2);
        }
    }
    let start = from.saturating_sub(2);
    let mut at = start;
    while let Some(offset) = buf[at..].iter().position(|&b| b == b'\n') {
        let nl = at + offset;
        match &buf[nl + 1..] {
            [b'\n', ..] => return Some(nl + 2),
            [b'\r', b'\n', ..] => return Some(nl + 3),
            _ => at = nl + 1,
        }
    }
    None
}

/// The status and headers a plugin's header block gives.
#[derive(Debug)]
pub struct ResponseHead {
    /// `status:`'s, else 302 with a `location:`, else 200.
    pub status: StatusCode,
    /// The other headers.
    pub headers: HeaderMap,
}

/// Headers the server makes itself (framing, connection): a plugin's are
/// dropped, so it cannot break the response's framing.
pub(crate) const SERVER_OWNED: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-connection",
];

/// Reads a header block (up to and with its blank line).
///
/// # Errors
/// A message naming the line: not `name: value`, a name or value HTTP does
/// not allow, a `status` that is not a status code, or a block with none
/// of `content-type`, `location` and `status` (CGI's minimum).
pub fn parse_head(head: &[u8]) -> Result<ResponseHead, String> {
    let mut status = None;
    let mut location = false;
    let mut sufficient = false;
    let mut headers = HeaderMap::new();
    for raw in head.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let shown = String::from_utf8_lossy(line);
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("header line {shown:?} is not `name: value`"))?;
        let name = HeaderName::from_bytes(line[..colon].trim_ascii())
            .map_err(|_| format!("header line {shown:?}: not a header name"))?;
        let value = line[colon + 1..].trim_ascii();
        match name.as_str() {
            "status" => {
                let text = String::from_utf8_lossy(value);
                let code = text.split_whitespace().next().unwrap_or("");
                let parsed = code
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=999).contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("status {text:?} is not a status code"))?;
                status = Some(parsed);
                sufficient = true;
                continue;
            }
            "location" => location = true,
            "content-type" => {}
            other if SERVER_OWNED.contains(&other) => continue,
            _ => {}
        }
        sufficient |= location || name == header::CONTENT_TYPE;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| format!("header line {shown:?}: not a header value"))?;
        headers.append(name, value);
    }
    if !sufficient {
        return Err("the header block has none of content-type, location and status".into());
    }
    let status = status.unwrap_or(if location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(ResponseHead { status, headers })
}

/// How reading the header block ended.
pub(crate) enum Head {
    /// It ended at `end` in `buffer` (which may hold body bytes after it).
    Ended { buffer: Vec<u8>, end: usize },
    /// No end in the first `limit` bytes.
    TooLong(usize),
    /// stdout ended first, after this many bytes.
    Eof(usize),
    /// Reading failed.
    Error(io::Error),
}

/// Reads the guest's header block from `stdout`, `chunk` bytes at a
/// time, at most `limit` bytes.
pub(crate) async fn read_head(
    stdout: &mut (impl AsyncRead + Unpin),
    limit: usize,
    chunk: usize,
) -> Head {
    let mut buffer = Vec::with_capacity(chunk.min(limit));
    loop {
        let from = buffer.len();
        if from >= limit {
            return Head::TooLong(from);
        }
        let room = (limit - from).min(chunk);
        let mut read = vec![0u8; room];
        match stdout.read(&mut read).await {
            Ok(0) => return Head::Eof(from),
            Ok(n) => {
                buffer.extend_from_slice(&read[..n]);
                if let Some(end) = head_end(&buffer, from) {
                    return Head::Ended { buffer, end };
                }
            }
            Err(e) => return Head::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment of a request to `/r/...` with `headers`.
    fn env_of(uri: &str, headers: &[(&str, &str)], plugin: &[(&str, &str)]) -> Vec<String> {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let route = crate::route::Route::parse("/r/...").unwrap();
        let matched = route.matches(uri.path()).unwrap();
        let request = CgiRequest {
            method: &Method::POST,
            uri: &uri,
            version: Version::HTTP_10,
            headers: &map,
            remote: "[::1]:5000".parse().unwrap(),
            local: "10.0.0.1:8080".parse().unwrap(),
            matched_route: route.as_str(),
            route: &matched,
        };
        let plugin = plugin
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        guest_env(&request, &plugin)
    }

    fn var<'e>(env: &'e [String], name: &str) -> Option<&'e str> {
        env.iter()
            .find_map(|var| var.strip_prefix(name)?.strip_prefix('='))
    }

    #[test]
    fn the_environment_is_name_value_entries_in_cgi_order_then_headers() {
        let env = env_of(
            "/r/a%2Fb?q=1",
            &[
                ("x-two", "a"),
                ("x-two", "b"),
                ("authorization", "s"),
                ("transfer-encoding", "chunked"),
            ],
            &[],
        );
        assert_eq!(env[0], "REQUEST_METHOD=POST");
        assert_eq!(var(&env, "PATH_INFO"), Some("/a/b"));
        assert_eq!(var(&env, "X_RAW_PATH_INFO"), Some("/a%2Fb"));
        assert_eq!(var(&env, "CONTENT_LENGTH"), Some(""), "chunked: no length");
        assert_eq!(var(&env, "SERVER_PROTOCOL"), Some("HTTP/1.0"));
        // No Host: the server's own address.
        assert_eq!(var(&env, "SERVER_NAME"), Some("10.0.0.1"));
        assert_eq!(var(&env, "SERVER_PORT"), Some("8080"));
        assert_eq!(var(&env, "REMOTE_ADDR"), Some("::1"));
        assert_eq!(
            var(&env, "X_FULL_URL"),
            Some("http://10.0.0.1:8080/r/a%2Fb?q=1")
        );
        assert_eq!(var(&env, "HTTP_X_TWO"), Some("a, b"));
        assert_eq!(var(&env, "HTTP_AUTHORIZATION"), None);
        let names: Vec<&str> = env.iter().map(|v| v.split_once('=').unwrap().0).collect();
        let at = names.iter().position(|n| n.starts_with("HTTP_")).unwrap();
        assert_eq!(at, 19, "19 meta-variables, then the headers");
        assert_eq!(
            names[at..],
            ["HTTP_TRANSFER_ENCODING", "HTTP_X_TWO"],
            "sorted"
        );
    }

    #[test]
    fn host_forms_and_the_plugin_env_replacing_a_variable_once() {
        let port_of = |host| {
            let env = env_of("/r", &[("host", host)], &[]);
            let name = var(&env, "SERVER_NAME").unwrap().to_string();
            (name, var(&env, "SERVER_PORT").unwrap().to_string())
        };
        assert_eq!(
            port_of("example.com:81"),
            ("example.com".into(), "81".into())
        );
        assert_eq!(port_of("example.com"), ("example.com".into(), "80".into()));
        assert_eq!(port_of("[::1]:9"), ("[::1]".into(), "9".into()));
        assert_eq!(port_of("[::1]"), ("[::1]".into(), "80".into()));
        assert_eq!(port_of(":82"), ("10.0.0.1".into(), "82".into()));
        let env = env_of("/r", &[], &[("SERVER_NAME", "mine"), ("EXTRA", "x=y")]);
        assert_eq!(
            env.iter().filter(|v| v.starts_with("SERVER_NAME=")).count(),
            1
        );
        assert_eq!(var(&env, "SERVER_NAME"), Some("mine"));
        assert_eq!(var(&env, "EXTRA"), Some("x=y"));
    }

    #[test]
    fn the_head_ends_at_a_blank_line_lf_or_crlf() {
        assert_eq!(head_end(b"a: b\n\nbody", 0), Some(6));
        assert_eq!(head_end(b"a: b\r\n\r\nbody", 0), Some(8));
        assert_eq!(head_end(b"\nbody", 0), Some(1));
        assert_eq!(head_end(b"a: b\nc: d\n", 0), None);
        // Found across reads.
        assert_eq!(head_end(b"a: b\n\n", 5), Some(6));
    }

    #[test]
    fn status_location_and_headers() {
        let head = parse_head(b"Content-Type: text/plain\nX-A: 1\n\n").unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers["x-a"], "1");
        let head = parse_head(b"location: /there\r\n\r\n").unwrap();
        assert_eq!(head.status, StatusCode::FOUND);
        let head = parse_head(b"Status: 404 Not Found\nlocation: /x\n\n").unwrap();
        assert_eq!(head.status, StatusCode::NOT_FOUND);
        let head = parse_head(b"status: 201\ncontent-length: 99\n\n").unwrap();
        assert!(!head.headers.contains_key("content-length"));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            &b"no colon here\n\n"[..],
            b"bad name: x\n\n",
            b"status: abc\n\n",
            b"status: 42\n\n",
            b"x-only: 1\n\n",
            b"\n",
            b"content-type: a\x01b\n\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn argv_follows_the_template() {
        let argv = argv("${SCRIPT_NAME} ${ARGS}", "/s", Some("a=1&b%20c&&d+e"));
        assert_eq!(argv, ["/s", "a=1", "b c", "d e"]);
        assert_eq!(super::argv("x ${ARGS} y", "/s", None), ["x", "y"]);
    }
}
