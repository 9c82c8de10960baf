//! One request's exchange between the server and a domain: the request
//! head the plugin reads, the response head it shapes, and the moment the
//! head is committed (sent). The body goes both ways through handles, not
//! through here.
//!
//! The server [`begin`](Exchange::begin)s an exchange before it calls the
//! plugin's `handle` export, [`commit`](Exchange::commit)s the response
//! head when the first body bytes arrive or the call ends (a status or
//! header set after that is refused), and [`end`](Exchange::end)s it when
//! the request is over. One lock, held only to copy bytes in or out, so a
//! server thread never waits on a guest.

use std::sync::{Mutex, MutexGuard, PoisonError};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

/// Most response headers a plugin may set (each a line of the head).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of response header names and values, in all.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What the plugin reads of the request: the server's parsed head, moved
/// in (not copied).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// The request target as the client sent it (the plugin reads its path
    /// and query).
    pub uri: Uri,
    /// The headers (names lower case), a name's values in the order
    /// received.
    pub headers: HeaderMap,
}

impl From<http::request::Parts> for RequestHead {
    fn from(parts: http::request::Parts) -> RequestHead {
        RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        }
    }
}

/// What the plugin sets of its response before the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// 100 to 999; 200 unless the plugin sets it.
    pub status: u16,
    /// The headers set (names lower case), a name's values in the order
    /// set.
    pub headers: HeaderMap,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 200,
            headers: HeaderMap::new(),
        }
    }
}

/// Why a change of the response head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No request in flight, or its head was committed already.
    NotNow,
    /// A bad status, header name or value.
    Invalid,
    /// Past [`MAX_HEADERS`] or [`MAX_HEADER_BYTES`].
    TooMany,
}

#[derive(Debug)]
struct InFlight {
    request: RequestHead,
    response: ResponseHead,
    committed: bool,
}

/// A domain's exchange slot: shared by the server (through
/// `Domain::extension::<Exchange>()`) and the domain's host functions.
#[derive(Debug, Default)]
pub struct Exchange {
    in_flight: Mutex<Option<InFlight>>,
}

impl Exchange {
    fn lock(&self) -> MutexGuard<'_, Option<InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A request begins: the plugin reads `request` and shapes a fresh
    /// response head (200, no headers). Replaces any exchange not ended.
    pub fn begin(&self, request: RequestHead) {
        *self.lock() = Some(InFlight {
            request,
            response: ResponseHead::default(),
            committed: false,
        });
    }

    /// Commits the response head and hands it over (moved, not copied):
    /// from now on the plugin cannot change it. `None` if no request is in
    /// flight, or its head was committed already.
    pub fn commit(&self) -> Option<ResponseHead> {
        let mut guard = self.lock();
        let in_flight = guard.as_mut().filter(|f| !f.committed)?;
        in_flight.committed = true;
        Some(std::mem::take(&mut in_flight.response))
    }

    /// The request is over: the slot is empty again.
    pub fn end(&self) {
        *self.lock() = None;
    }

    /// Runs `read` on the request in flight, if any.
    pub(crate) fn with_request<R>(&self, read: impl FnOnce(&RequestHead) -> R) -> Option<R> {
        self.lock().as_ref().map(|f| read(&f.request))
    }

    /// Sets the status, if the head is not committed.
    pub(crate) fn set_status(&self, status: i32) -> Result<(), Refused> {
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or(Refused::Invalid)?;
        self.change(|head| {
            head.status = status;
            Ok(())
        })
    }

    /// Sets (`append` false: replacing every value of `name`) or appends
    /// a response header, if the head is not committed and the header is
    /// valid and within the bounds; a refused one changes nothing.
    pub(crate) fn set_header(
        &self,
        name: &[u8],
        value: &[u8],
        append: bool,
    ) -> Result<(), Refused> {
        if !name_in_bounds(name) || !value_in_bounds(value) {
            return Err(Refused::Invalid);
        }
        // The byte checks (a token; no control character) are the http
        // crate's, made as it builds the name and the value.
        let name = HeaderName::from_bytes(name).map_err(|_| Refused::Invalid)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Refused::Invalid)?;
        self.change(|head| {
            let headers = &mut head.headers;
            let size = |(n, v): (&HeaderName, &HeaderValue)| n.as_str().len() + v.len();
            let (mut count, mut bytes) = (headers.len(), headers.iter().map(size).sum::<usize>());
            if !append {
                for v in headers.get_all(&name) {
                    count -= 1;
                    bytes -= size((&name, v));
                }
            }
            if count >= MAX_HEADERS || bytes + name.as_str().len() + value.len() > MAX_HEADER_BYTES
            {
                return Err(Refused::TooMany);
            }
            if append {
                headers.append(name, value);
            } else {
                headers.insert(name, value);
            }
            Ok(())
        })
    }

    fn change(
        &self,
        change: impl FnOnce(&mut ResponseHead) -> Result<(), Refused>,
    ) -> Result<(), Refused> {
        match self.lock().as_mut() {
            Some(in_flight) if !in_flight.committed => change(&mut in_flight.response),
            _ => Err(Refused::NotNow),
        }
    }
}

/// Within custody's bounds for a header name (at most 256 bytes); that it
/// is an HTTP token (RFC 9110 §5.6.2) is `HeaderName::from_bytes`'s check.
fn name_in_bounds(bytes: &[u8]) -> bool {
    bytes.len() <= 256
}

/// Within custody's bounds for a field value (RFC 9110 §5.5): at most 8 KiB
/// and no space or tab at either end. Its bytes (visible characters,
/// spaces and tabs; no CR, LF or NUL, so a guest cannot split the head)
/// are `HeaderValue::from_bytes`'s check.
fn value_in_bounds(bytes: &[u8]) -> bool {
    bytes.len() <= 8192
        && !bytes.first().is_some_and(|b| *b == b' ' || *b == b'\t')
        && !bytes.last().is_some_and(|b| *b == b' ' || *b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestHead {
        RequestHead {
            method: http::Method::GET,
            uri: http::Uri::from_static("/x"),
            headers: HeaderMap::new(),
        }
    }

    #[test]
    fn a_head_changes_until_it_is_committed() {
        let exchange = Exchange::default();
        assert_eq!(exchange.set_status(201), Err(Refused::NotNow), "no request");
        exchange.begin(request());
        exchange.set_status(201).unwrap();
        exchange.set_header(b"X-A", b"1", false).unwrap();
        exchange.set_header(b"x-a", b"2", true).unwrap();
        exchange.set_header(b"x-b", b"3", false).unwrap();
        exchange.set_header(b"x-b", b"4", false).unwrap();
        let head = exchange.commit().unwrap();
        assert_eq!(head.status, 201);
        let headers: Vec<(&str, &[u8])> = (head.headers.iter())
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(headers, [("x-a", &b"1"[..]), ("x-a", b"2"), ("x-b", b"4")]);
        assert_eq!(exchange.set_status(500), Err(Refused::NotNow));
        assert_eq!(exchange.set_header(b"x", b"y", false), Err(Refused::NotNow));
        assert!(exchange.commit().is_none(), "handed over once");
        exchange.end();
        assert!(exchange.commit().is_none());
    }

    #[test]
    fn bad_statuses_names_and_values_are_refused() {
        let exchange = Exchange::default();
        exchange.begin(request());
        for status in [-1, 0, 99, 1000, i32::MAX] {
            assert_eq!(
                exchange.set_status(status),
                Err(Refused::Invalid),
                "{status}"
            );
        }
        for name in [
            &b""[..],
            b"a b",
            b"a:b",
            b"\xff",
            b"a\r\nb",
            b"(a)",
            &[b'a'; 257],
        ] {
            assert_eq!(
                exchange.set_header(name, b"v", false),
                Err(Refused::Invalid)
            );
        }
        for value in [
            &b"a\r\nx-evil: 1"[..],
            b"a\nb",
            b"a\0b",
            b"a\x7fb",
            b" lead",
            b"trail ",
        ] {
            assert_eq!(
                exchange.set_header(b"x", value, false),
                Err(Refused::Invalid)
            );
        }
        assert_eq!(
            exchange.set_header(b"x", &[b'v'; 8193], false),
            Err(Refused::Invalid)
        );
    }

    #[test]
    fn the_head_is_bounded() {
        let exchange = Exchange::default();
        exchange.begin(request());
        for _ in 0..MAX_HEADERS {
            exchange.set_header(b"x", b"v", true).unwrap();
        }
        assert_eq!(exchange.set_header(b"x", b"v", true), Err(Refused::TooMany));
        // A refused change leaves the head as it was; replacing a name's
        // values at the bound fits.
        assert_eq!(
            exchange.set_header(b"y", b"v", false),
            Err(Refused::TooMany)
        );
        exchange.set_header(b"x", b"w", false).unwrap();
        let head = exchange.commit().unwrap();
        assert_eq!(head.headers.len(), 1);
        assert_eq!(head.headers["x"], "w");
        exchange.begin(request());
        let value = vec![b'v'; 8000];
        for _ in 0..MAX_HEADER_BYTES / 8002 {
            exchange.set_header(b"x", &value, true).unwrap();
        }
        assert_eq!(
            exchange.set_header(b"x", &value, true),
            Err(Refused::TooMany)
        );
    }
}
