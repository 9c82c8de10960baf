//! `GET /admin/`: the dashboard, one HTML page embedded in the binary
//! (`dashboard.html`: no build step, nothing fetched from elsewhere) whose
//! script reads the JSON endpoints once a second and draws them.
//!
//! A browser cannot add the bearer header to a page it opens, so with a
//! token the page is reached once as `/admin/?token=TOKEN`: a right token
//! is answered 303 to `/admin/` (the token leaves the address bar) with
//! the cookie of `token` (`HttpOnly`, `SameSite=Strict`), which the door
//! then admits for reads; a wrong one, or none, gets a 401 page saying
//! so. Without a token (loopback only) the page is served as is.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::ADMIN_DASHBOARD_PATH;
use super::token::Token;
use crate::body::{Body, full};

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// What a browser without the token is shown.
const LOGIN: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>custody admin: token needed</title></head><body style=\"font-family:sans-serif\">\
<h1>custody admin</h1><p>This admin listener has a token (<code>admin.token_file</code>). \
Open <code>/admin/?token=TOKEN</code> once: the page then keeps a cookie for this browser \
session (read-only: actions still need <code>Authorization: Bearer TOKEN</code>).</p>\
</body></html>\n";

/// What a wrong `?token=` is shown.
const WRONG: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>custody admin: wrong token</title></head><body style=\"font-family:sans-serif\">\
<h1>custody admin</h1><p>That is not this listener's token.</p></body></html>\n";

/// The page's own rules: its script and style are inline, it reads only
/// this listener, it is framed nowhere and sends no referrer (the
/// `?token=` URL never leaves).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Answers `GET /admin/` (and `/admin`, sent to `/admin/`).
pub(super) fn answer(
    token: Option<&Token>,
    request: &Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let query = request.uri().query();
    if request.uri().path() != ADMIN_DASHBOARD_PATH {
        let location = match query {
            Some(query) => format!("{ADMIN_DASHBOARD_PATH}?{query}"),
            None => ADMIN_DASHBOARD_PATH.to_string(),
        };
        return redirect(StatusCode::PERMANENT_REDIRECT, &location, None);
    }
    let Some(token) = token else {
        return html(StatusCode::OK, PAGE);
    };
    match query.and_then(presented_token) {
        Some(presented) if token.is(&presented) => {
            tracing::info!(target: "custody::serve::admin", %remote, "dashboard opened with the token");
            redirect(
                StatusCode::SEE_OTHER,
                ADMIN_DASHBOARD_PATH,
                Some(token.set_cookie()),
            )
        }
        Some(_) => {
            tracing::debug!(target: "custody::serve::admin", %remote, "dashboard: a wrong token");
            html(StatusCode::UNAUTHORIZED, WRONG)
        }
        None if token.admits(request.headers(), true) => html(StatusCode::OK, PAGE),
        None => html(StatusCode::UNAUTHORIZED, LOGIN),
    }
}

/// The `token` parameter of `query`, percent-decoded (`+` is itself: a
/// token has no spaces).
fn presented_token(query: &str) -> Option<Vec<u8>> {
    (query.split('&'))
        .find_map(|pair| pair.strip_prefix("token="))
        .map(|value| percent_encoding::percent_decode_str(value).collect())
}

fn html(status: StatusCode, page: &'static str) -> Response<Body> {
    let mut response = Response::new(full(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    guard(&mut response);
    response
}

/// The headers every dashboard answer has: never cached (the page is the
/// server's state, and a 303 sets a credential), never sniffed, no
/// referrer, never framed.
fn guard(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn redirect(status: StatusCode, location: &str, cookie: Option<String>) -> Response<Body> {
    let mut response = Response::new(full(""));
    *response.status_mut() = status;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    guard(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::presented_token;

    #[test]
    fn the_token_parameter_is_found_and_decoded() {
        assert_eq!(presented_token("token=a%2Bb+c"), Some(b"a+b+c".to_vec()));
        assert_eq!(presented_token("x=1&token=t0k"), Some(b"t0k".to_vec()));
        assert_eq!(presented_token("x=1&tokens=t0k"), None);
        assert_eq!(presented_token(""), None);
    }
}
