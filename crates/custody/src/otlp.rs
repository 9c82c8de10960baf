//! `custody serve`'s spans across the wire (the `otlp` feature,
//! docs/SERVER.md "Tracing across the wire"): the requests' spans
//! (`custody::request`) and the guests' calls' (`custody::call`) go to
//! an OpenTelemetry collector over OTLP/HTTP with protobuf bodies,
//! batched, and flushed when the server stops. It is configured the
//! standard way, by environment: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on, `OTEL_SERVICE_NAME`
//! names the service (`custody` by default), `OTEL_EXPORTER_OTLP_HEADERS`
//! adds headers, and `OTEL_SDK_DISABLED=true` turns it off.
//!
//! A request's W3C `traceparent` header becomes its span's parent
//! ([`span_parent`]), so its spans carry the caller's trace id.
//!
//! The exporter sends through [`HyperExport`], one HTTP/1 request per
//! batch on hyper (the stack the admin commands already link), rather
//! than an HTTP client crate of its own: plain `http://` only, as a
//! collector beside the server (a sidecar, a node agent) is reached.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::Registry;

use crate::outcome::Failure;

/// The variables that turn the export on (either).
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
/// The service's name unless `OTEL_SERVICE_NAME` (or
/// `OTEL_RESOURCE_ATTRIBUTES`) gives one.
const SERVICE_NAME: &str = "custody";
/// How long one batch's request may take, connecting included (the
/// OpenTelemetry default export timeout).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer of the collector read.
const MAX_ANSWER: usize = 4 << 20;

/// The layer exporting spans, on the registry.
pub(crate) type ExportLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The running export: flushed and stopped by [`Export::shutdown`].
pub(crate) struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// The export the environment asks for, and its layer; `None` when
    /// no endpoint is set or `OTEL_SDK_DISABLED` is `true`.
    ///
    /// # Errors
    /// A usage failure: the endpoint is not a plain `http://` URL, or
    /// the exporter cannot be built (its cause kept).
    pub(crate) fn from_env() -> Result<Option<(Export, ExportLayer)>, Failure> {
        let disabled = std::env::var("OTEL_SDK_DISABLED")
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
        let endpoint = ENDPOINT_VARIABLES.iter().find_map(|name| {
            let value = std::env::var(name).ok()?;
            (!value.trim().is_empty()).then_some((*name, value))
        });
        let Some((variable, endpoint)) = endpoint.filter(|_| !disabled) else {
            return Ok(None);
        };
        if !endpoint.trim().starts_with("http://") {
            return Err(Failure::usage(format!(
                "{variable}={endpoint}: custody exports over plain http:// (a collector beside it); reach a remote one through it"
            )));
        }
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(HyperExport)
            .build()
            .map_err(|e| Failure::usage(format!("the OTLP exporter ({variable}): {e}")))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        let tracer = provider.tracer("custody");
        // Only the server's spans (and its faults, as events of them);
        // the log's level does not apply.
        let targets = Targets::new()
            .with_target("custody::request", LevelFilter::INFO)
            .with_target("custody::call", LevelFilter::DEBUG)
            .with_target("custody::serve::fault", LevelFilter::INFO);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(targets)
            .boxed();
        Ok(Some((Export { provider }, layer)))
    }

    /// Exports the spans still batched and stops the exporter; what
    /// failed is reported on stderr (the server's exit status stands).
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("custody: exporting the last spans over OTLP: {e}");
        }
    }
}

/// The detected resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`),
/// named `custody` when they name no service.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    if unnamed {
        Resource::builder().with_service_name(SERVICE_NAME).build()
    } else {
        detected
    }
}

/// The caller's trace context in `headers` (W3C `traceparent` and
/// `tracestate`) as `span`'s parent: its spans join the caller's trace.
/// Headers without a valid one leave the span a trace of its own.
pub(crate) fn span_parent(headers: &HeaderMap, span: &tracing::Span) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        // Fails only without the export's layer, which set this hook.
        let _ = span.set_parent(context);
    }
}

/// The exporter's HTTP client: each batch is one HTTP/1 request over a
/// fresh connection, on a tokio runtime of its own, within
/// [`EXPORT_TIMEOUT`]. The SDK's batch processor calls it on its own
/// thread (never a tokio worker), where blocking is what it expects.
#[derive(Debug)]
struct HyperExport;

impl HttpClient for HyperExport {
    fn send_bytes<'client, 'call>(
        &'client self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'call>>
    where
        'client: 'call,
        Self: 'call,
    {
        Box::pin(std::future::ready(send_blocking(request)))
    }
}

/// Sends `request` and reads the answer whole.
fn send_blocking(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        // Blocking a runtime's thread would stall it: refused, not done.
        return Err("the OTLP export was called on a tokio runtime's thread".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(EXPORT_TIMEOUT, exchange(request))
            .await
            .unwrap_or_else(|_| {
                Err(format!("no answer from the collector within {EXPORT_TIMEOUT:?}").into())
            })
    })
}

/// One request on a fresh connection.
async fn exchange(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let uri = request.uri();
    if uri.scheme_str() != Some("http") {
        return Err(format!("{uri}: only http:// is exported to").into());
    }
    let authority = uri.authority().ok_or_else(|| format!("{uri}: no host"))?;
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let host = HeaderValue::from_str(authority.as_str())?;
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| with_cause(format!("connecting to {address}"), e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection is driven beside the request; it ends with it.
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    // hyper's client sends the path; the authority goes in `Host`.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()?;
    parts.headers.insert(header::HOST, host);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// `error` behind `context`, its cause kept.
fn with_cause(context: String, error: std::io::Error) -> HttpError {
    #[derive(Debug)]
    struct Context(String, std::io::Error);
    impl std::fmt::Display for Context {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }
    impl Error for Context {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }
    Box::new(Context(context, error))
}
