//! WAGI's contract (deislabs/wagi's documents): the CGI 1.1 environment a
//! request becomes, the argv template, and the response head a plugin
//! writes on stdout (header lines, a blank line, LF or CRLF).

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

/// The CGI 1.1 environment of a request, as WAGI sets it, in a stable
/// order: the meta-variables, then every header as `HTTP_NAME` (upper
/// case, `-` as `_`; `Authorization` and `Connection` left out, as
/// RFC 3875 4.1.18 allows; repeated headers joined with `, `).
pub fn cgi_env(request: &CgiRequest<'_>) -> Vec<(String, String)> {
    let headers = request.headers;
    let text = |name: HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (host, port) = host_and_port(text(header::HOST).as_deref(), request.local);
    let path_and_query = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path_info = percent_decode_str(&request.route.raw_path_info)
        .decode_utf8_lossy()
        .into_owned();
    let content_length = text(header::CONTENT_LENGTH).unwrap_or_else(|| {
        if headers.contains_key(header::TRANSFER_ENCODING) {
            String::new()
        } else {
            "0".into()
        }
    });
    let remote = request.remote.ip().to_string();
    let mut env: Vec<(String, String)> = [
        ("REQUEST_METHOD", request.method.as_str().to_string()),
        ("SCRIPT_NAME", request.route.script_name.clone()),
        ("PATH_INFO", path_info.clone()),
        ("PATH_TRANSLATED", path_info),
        (
            "QUERY_STRING",
            request.uri.query().unwrap_or("").to_string(),
        ),
        (
            "CONTENT_TYPE",
            text(header::CONTENT_TYPE).unwrap_or_default(),
        ),
        ("CONTENT_LENGTH", content_length),
        ("SERVER_NAME", host.clone()),
        ("SERVER_PORT", port.clone()),
        ("SERVER_PROTOCOL", format!("{:?}", request.version)),
        ("SERVER_SOFTWARE", SERVER_SOFTWARE.to_string()),
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        ("REMOTE_ADDR", remote.clone()),
        ("REMOTE_HOST", remote),
        ("REMOTE_USER", String::new()),
        ("AUTH_TYPE", String::new()),
        ("X_MATCHED_ROUTE", request.matched_route.to_string()),
        ("X_RAW_PATH_INFO", request.route.raw_path_info.clone()),
        (
            "X_FULL_URL",
            format!("http://{host}:{port}{path_and_query}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut names: Vec<&HeaderName> = headers.keys().collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    for name in names {
        if name == header::AUTHORIZATION || name == header::CONNECTION {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((key, values.join(", ")));
    }
    env
}

/// `SERVER_NAME` and `SERVER_PORT`: from the `Host` header, else the
/// server's own address.
fn host_and_port(host_header: Option<&str>, local: SocketAddr) -> (String, String) {
    let (mut host, mut port) = (local.ip().to_string(), local.port().to_string());
    if let Some(value) = host_header.filter(|v| !v.is_empty()) {
        // `[::1]:8080`, `example.com:8080`, `example.com`.
        let (name, rest) = match value.rfind(':') {
            Some(at) if !value[at..].contains(']') => (&value[..at], Some(&value[at + 1..])),
            _ => (value, None),
        };
        if !name.is_empty() {
            host = name.to_string();
        }
        match rest {
            Some(p) if !p.is_empty() => port = p.to_string(),
            _ => port = "80".to_string(),
        }
    }
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
