//! The admin API's credential: the bearer token of `token_file`, and the
//! dashboard's cookie derived from it. Both are compared in constant time
//! over SHA-256 digests (`subtle`), so neither the secret's bytes nor its
//! length show in how long a refusal takes.
//!
//! The cookie is not the token: it is the hex SHA-256 of a label and the
//! token, so a browser never holds the token itself, and the door admits
//! the cookie for reads only (GET and HEAD): a mutating call always needs
//! the `Authorization` header, which a browser never adds on its own, so
//! no page of another site can make one (on top of `SameSite=Strict`).

use hyper::header::{self, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The dashboard's cookie's name.
pub(super) const COOKIE_NAME: &str = "custody_admin";

/// What the cookie's value is derived from, before the token: so the
/// cookie is no other digest of the token.
const COOKIE_LABEL: &[u8] = b"custody admin dashboard cookie\0";

/// The token's digest, and the cookie's.
#[derive(Clone)]
pub(super) struct Token {
    /// SHA-256 of the token.
    digest: [u8; 32],
    /// The cookie's value: hex SHA-256 of the label and the token.
    cookie: String,
    /// SHA-256 of `cookie`.
    cookie_digest: [u8; 32],
}

impl Token {
    /// The credential of the token `bytes`.
    pub(super) fn of(bytes: &[u8]) -> Token {
        let mut derived = Sha256::new();
        derived.update(COOKIE_LABEL);
        derived.update(bytes);
        let cookie: String = (derived.finalize().iter())
            .map(|b| format!("{b:02x}"))
            .collect();
        Token {
            digest: digest(bytes),
            cookie_digest: digest(cookie.as_bytes()),
            cookie,
        }
    }

    /// Whether `presented` is the token.
    pub(super) fn is(&self, presented: &[u8]) -> bool {
        bool::from(self.digest.ct_eq(&digest(presented)))
    }

    /// Whether `headers` carry `Authorization: Bearer TOKEN`, or, for a
    /// `read`, the dashboard's cookie.
    pub(super) fn admits(&self, headers: &HeaderMap, read: bool) -> bool {
        self.bearer(headers) || (read && self.cookie_in(headers))
    }

    fn bearer(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110 11.1).
        let Some((scheme, presented)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        self.is(presented.trim_ascii())
    }

    /// Whether a `Cookie` header holds the dashboard's cookie (every one
    /// named so is compared, so a stale one beside it does no harm).
    fn cookie_in(&self, headers: &HeaderMap) -> bool {
        let mut admitted = false;
        for value in headers.get_all(header::COOKIE) {
            for pair in value.as_bytes().split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                if let Some(value) = (pair.strip_prefix(COOKIE_NAME.as_bytes()))
                    .and_then(|rest| rest.strip_prefix(b"="))
                {
                    admitted |= bool::from(self.cookie_digest.ct_eq(&digest(value)));
                }
            }
        }
        admitted
    }

    /// The `Set-Cookie` value that lets a browser read the admin API:
    /// `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
    /// page sends it), for the whole listener (`/admin/...` and
    /// `/metrics`), for the browser's session. Not `Secure`: the admin
    /// listener speaks plain HTTP (put it behind TLS to reach it from
    /// afar).
    pub(super) fn set_cookie(&self) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie
        )
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use hyper::header::{self, HeaderMap, HeaderValue};

    use super::Token;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_bearer_header_admits_every_call_the_cookie_only_reads() {
        let token = Token::of(b"s3cret");
        let bearer = headers(&[(header::AUTHORIZATION, "bEaReR  s3cret ")]);
        assert!(token.admits(&bearer, true) && token.admits(&bearer, false));
        let set = token.set_cookie();
        let cookie = set.split(';').next().unwrap();
        assert!(!cookie.contains("s3cret"), "{set}");
        let jar = headers(&[(header::COOKIE, &format!("other=1; {cookie}; x=y"))]);
        assert!(token.admits(&jar, true), "{set}");
        assert!(!token.admits(&jar, false), "a cookie never mutates");
        let stale = headers(&[
            (header::COOKIE, "custody_admin=old"),
            (header::COOKIE, cookie),
        ]);
        assert!(token.admits(&stale, true));
    }

    #[test]
    fn anything_else_is_refused() {
        let token = Token::of(b"s3cret");
        let other = Token::of(b"other");
        let other_cookie = other.set_cookie();
        for refused in [
            headers(&[]),
            headers(&[(header::AUTHORIZATION, "Bearer s3cre")]),
            headers(&[(header::AUTHORIZATION, "Basic s3cret")]),
            headers(&[(header::AUTHORIZATION, "Bearer")]),
            headers(&[(header::COOKIE, "custody_admin=s3cret")]),
            headers(&[(header::COOKIE, other_cookie.split(';').next().unwrap())]),
            headers(&[(header::COOKIE, "xcustody_admin=s3cret")]),
        ] {
            assert!(!token.admits(&refused, true), "{refused:?}");
        }
    }
}
