//! The body type of every response the server makes (a leaf): boxed, so a
//! whole body, a fault's and a plugin's streamed one are one type; its
//! error is an `io::Error`, which cuts the response.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// A response body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
