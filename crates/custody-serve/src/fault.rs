//! What can go wrong in one request, and how each is answered: a status
//! per kind, a body naming the kind and the request's diagnostic id (JSON
//! when the client accepts it), one log event with the same id, and a
//! counter per kind, the server's and each plugin's (`/metrics` and
//! `/admin/plugins` read them), and an entry in the server's recent
//! diagnostics (`/admin/diagnostics`) with the same id.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use custody_host::{CallError, Interrupt};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

use crate::body::{Body, full};
use crate::recent_diagnostics::RecentDiagnostics;
use crate::request_span::RequestId;

/// The kinds of fault, each with its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest trapped: 500.
    Trap,
    /// The call's deadline (`request_timeout`) passed: 504.
    Deadline,
    /// `max_concurrency` requests were in flight: 503 with `Retry-After`.
    Overload,
    /// The request body was over `max_body`: 413.
    Body,
    /// The plugin's response was malformed, missing or over
    /// `max_response`: 502.
    BadResponse,
    /// The guest reached its memory limit: 500.
    Memory,
    /// The guest exited with a nonzero status before writing a complete
    /// header block: 500.
    Exit,
    /// The server could not run the request (a domain or a pipe could not
    /// be made): 500.
    Internal,
    /// An operator cancelled the request (`POST
    /// /admin/requests/{id}/cancel`, or a forced unload of its domain
    /// through the admin API): 503.
    Cancelled,
}

impl FaultKind {
    /// Every kind, in the counters' order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Trap,
        FaultKind::Deadline,
        FaultKind::Overload,
        FaultKind::Body,
        FaultKind::BadResponse,
        FaultKind::Memory,
        FaultKind::Exit,
        FaultKind::Internal,
        FaultKind::Cancelled,
    ];

    /// The name in bodies, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::Overload => "overload",
            FaultKind::Body => "body",
            FaultKind::BadResponse => "bad-response",
            FaultKind::Memory => "memory",
            FaultKind::Exit => "exit",
            FaultKind::Internal => "internal",
            FaultKind::Cancelled => "cancelled",
        }
    }

    /// The response's status.
    pub fn status(self) -> StatusCode {
        match self {
            FaultKind::Trap | FaultKind::Memory | FaultKind::Exit | FaultKind::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            FaultKind::Deadline => StatusCode::GATEWAY_TIMEOUT,
            FaultKind::Overload | FaultKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
            FaultKind::Body => StatusCode::PAYLOAD_TOO_LARGE,
            FaultKind::BadResponse => StatusCode::BAD_GATEWAY,
        }
    }

    fn index(self) -> usize {
        FaultKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The kind of a failed call (`None` for an exit with 0, which is a
    /// success): the deadline and the memory limit by the [`Interrupt`]
    /// that stopped the call, wherever it is in the error's causes.
    pub fn of_call(error: &CallError) -> Option<FaultKind> {
        match error {
            CallError::Exit(0) => return None,
            CallError::Exit(_) => return Some(FaultKind::Exit),
            CallError::NotRunning(_)
            | CallError::NoSuchExport(_)
            | CallError::Signature { .. }
            | CallError::HostStack { .. } => return Some(FaultKind::Internal),
            _ => {}
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
        while let Some(e) = cause {
            match e.downcast_ref::<Interrupt>() {
                Some(Interrupt::Deadline(_)) => return Some(FaultKind::Deadline),
                Some(Interrupt::MemoryLimit(_)) => return Some(FaultKind::Memory),
                _ => {}
            }
            if let Some(inner) = e.downcast_ref::<CallError>() {
                return FaultKind::of_call(inner);
            }
            cause = e.source();
        }
        Some(FaultKind::Trap)
    }
}

/// The guest's stack in a failed call, when the error has one.
pub fn backtrace(error: &CallError) -> Option<&str> {
    match error {
        CallError::Trap { backtrace, .. }
        | CallError::Aborted { backtrace, .. }
        | CallError::Escalated { backtrace, .. } => Some(backtrace.as_str()),
        _ => None,
    }
}

/// A counter per fault kind. A plugin's counters have the server's as
/// their parent: a fault counted for the plugin is counted for the server
/// too, so whoever holds a plugin's counters counts at both levels.
#[derive(Debug, Default)]
pub struct FaultCounters {
    counts: [AtomicU64; FaultKind::ALL.len()],
    parent: Option<Arc<FaultCounters>>,
}

impl FaultCounters {
    /// Counters whose every count is also `parent`'s.
    pub fn child_of(parent: Arc<FaultCounters>) -> FaultCounters {
        FaultCounters {
            counts: Default::default(),
            parent: Some(parent),
        }
    }

    /// Counts one fault (in the parent too).
    pub fn count(&self, kind: FaultKind) {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.count(kind);
        }
    }

    /// How many faults of `kind` so far.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }
}

/// One fault of one request.
#[derive(Debug)]
pub struct Fault<'a> {
    /// Its kind.
    pub kind: FaultKind,
    /// The request's diagnostic id.
    pub id: RequestId,
    /// The plugin.
    pub plugin: &'a str,
    /// The plugin's version that served the request.
    pub version: &'a str,
    /// The request's domain, if it had one.
    pub domain: Option<u64>,
    /// The route that matched.
    pub route: &'a str,
    /// What happened, for the log and the text body.
    pub detail: String,
    /// The guest's stack, for traps and aborts.
    pub backtrace: Option<&'a str>,
}

impl Fault<'_> {
    /// Logs the fault (one event), counts it and keeps it in `recent`.
    pub(crate) fn record(&self, counters: &FaultCounters, recent: &RecentDiagnostics) {
        counters.count(self.kind);
        let mut entry = serde_json::Map::new();
        entry.insert("source".into(), "fault".into());
        entry.insert("kind".into(), self.kind.name().into());
        entry.insert("id".into(), self.id.to_string().into());
        entry.insert("domain".into(), self.domain.into());
        entry.insert("plugin".into(), self.plugin.into());
        entry.insert("version".into(), self.version.into());
        entry.insert("route".into(), self.route.into());
        entry.insert("status".into(), self.kind.status().as_u16().into());
        entry.insert("message".into(), self.detail.clone().into());
        entry.insert("backtrace".into(), self.backtrace.into());
        recent.push(entry);
        tracing::warn!(
            target: "custody::serve::fault",
            kind = self.kind.name(),
            id = %self.id,
            plugin = self.plugin,
            version = self.version,
            domain = self.domain,
            route = self.route,
            status = self.kind.status().as_u16(),
            backtrace = self.backtrace.unwrap_or(""),
            "{}",
            self.detail
        );
    }

    /// Logs, counts and keeps the fault, and answers it: JSON when the
    /// request asked for it ([`wants_json`]), text otherwise.
    pub(crate) fn respond(
        &self,
        counters: &FaultCounters,
        recent: &RecentDiagnostics,
        json: bool,
    ) -> Response<Body> {
        self.record(counters, recent);
        let (body, content_type) = if json {
            let value = serde_json::json!({ "error": self.kind.name(), "id": self.id.to_string() });
            (value.to_string(), "application/json")
        } else {
            (
                format!("{}: {} (id {})\n", self.kind.name(), self.detail, self.id),
                "text/plain; charset=utf-8",
            )
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = self.kind.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.kind == FaultKind::Overload {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Whether a request's `Accept` names JSON: its faults are answered in
/// JSON then, in text otherwise.
pub(crate) fn wants_json(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") || v.contains("+json"))
}
