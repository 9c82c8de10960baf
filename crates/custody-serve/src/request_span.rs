//! A plugin request's `tracing` span (`custody::request`): its plugin,
//! version, route and id, the method and path, and the status once the
//! response's head is made. The guest's domain is made and called inside
//! it, so the call's span (`custody::call`) is its child. A binary that
//! exports spans across the wire (the CLI's `otlp` feature) gives the
//! server a [`SpanParent`]: the caller's trace context read from the
//! request's headers (W3C `traceparent`) becomes the span's parent.
//! custody-serve itself knows no OpenTelemetry.

use std::fmt;

use hyper::HeaderMap;
use tracing::Span;

/// A request's diagnostic id, `PREFIX-N` (hexadecimal, decimal): what its
/// faults, log events, span and the admin API name it by. The prefix
/// makes ids unique across restarts of the process, the number within
/// it. A plain pair, formatted only when something shows it: a request
/// that shows its id nowhere never pays for the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    prefix: u64,
    n: u64,
}

impl RequestId {
    /// The id numbered `n` under `prefix`.
    pub(crate) fn new(prefix: u64, n: u64) -> RequestId {
        RequestId { prefix, n }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.prefix, self.n)
    }
}

/// Makes the caller's trace context, read from a request's headers, the
/// parent of that request's span; a request without one is left as it
/// is.
pub type SpanParent = fn(&HeaderMap, &Span);

/// What a request's span names.
pub(crate) struct RequestFields<'a> {
    pub plugin: &'a str,
    pub version: &'a str,
    pub route: &'a str,
    pub request_id: RequestId,
    pub method: &'a str,
    pub path: &'a str,
}

/// The span of one plugin request, its parent set by `parent` (if the
/// binary gave one) from `headers`. Disabled (and free) when no
/// subscriber wants `custody::request` at INFO.
pub(crate) fn request_span(
    fields: &RequestFields<'_>,
    headers: &HeaderMap,
    parent: Option<SpanParent>,
) -> Span {
    let span = tracing::info_span!(
        target: "custody::request",
        // No contextual parent: a request starts its own trace, or joins
        // the caller's through `parent`.
        parent: None,
        "request",
        plugin = fields.plugin,
        version = fields.version,
        route = fields.route,
        request_id = tracing::field::display(fields.request_id),
        "http.request.method" = fields.method,
        "url.path" = fields.path,
        "http.response.status_code" = tracing::field::Empty,
        "otel.kind" = "server",
    );
    if let Some(parent) = parent
        && !span.is_disabled()
    {
        parent(headers, &span);
    }
    span
}

/// Records the response's status on the request's span.
pub(crate) fn record_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
}
