//! Tracing across the wire (the `otlp` feature): `custody serve` pointed
//! at an OTLP/HTTP receiver inside the test (a std `TcpListener` taking
//! `POST /v1/traces` with protobuf bodies, decoded into
//! opentelemetry-proto's OTLP messages) gets requests with and without a W3C
//! `traceparent`, is stopped with SIGTERM, and must have flushed the
//! requests' and the calls' spans, in the caller's trace, before it
//! exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::cli_serve::serve_files_with_env;
use crate::common::request;
use crate::serve_process::{exit_within, terminate};

/// What the receiver got: every span, and each batch's resource.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    resources: Vec<Resource>,
    /// What was refused, and why (a wrong path or content type).
    refused: Vec<String>,
}

/// An OTLP/HTTP receiver on 127.0.0.1, port 0: each connection's
/// requests are read (Content-Length bodies), `POST /v1/traces` with
/// `application/x-protobuf` decoded, answered 200.
fn receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Received::default()));
    let shared = Arc::clone(&received);
    // Ends with the test binary: it blocks in accept.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || serve_connection(stream, &shared));
        }
    });
    (endpoint, received)
}

fn serve_connection(stream: TcpStream, received: &Mutex<Received>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push(line.trim_end().to_string()),
            }
        }
        let header = |name: &str| {
            (head.iter().skip(1))
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim().to_string())
        };
        let length: usize = header("content-length").map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request_line = head.first().cloned().unwrap_or_default();
        let content_type = header("content-type").unwrap_or_default();
        let mut got = received.lock().unwrap();
        if request_line.starts_with("POST /v1/traces ") && content_type == "application/x-protobuf"
        {
            let export = ExportTraceServiceRequest::decode(body.as_slice())
                .unwrap_or_else(|e| panic!("not an OTLP export request: {e}"));
            for resource_spans in export.resource_spans {
                got.resources.extend(resource_spans.resource);
                for scope in resource_spans.scope_spans {
                    got.spans.extend(scope.spans);
                }
            }
        } else {
            got.refused.push(format!("{request_line} ({content_type})"));
        }
        drop(got);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The attribute `key` of `attributes`, as text.
fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A WAGI plugin that answers `traced`.
const ANSWERING: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "content-type: text/plain\n\ntraced\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 33))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// A WAGI plugin that traps: its 500 names the request's id.
const TRAPPING: &str = r#"(module (func (export "_start") unreachable))"#;

/// The bundled custody-ABI hello, served from a pool of one domain: its
/// second request's call is in a domain the first one's request made.
const POOLED: &str = include_str!("../../../custody-serve/plugins/hello_custody.wat");

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
const TRAP_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const TRAP_CALLER_SPAN_ID: &str = "b7ad6b7169203331";
/// Two requests to the pooled plugin, in two traces.
const POOLED_TRACES: [(&str, &str); 2] = [
    ("5b8aa5a2d2c872e8321cf37308d69df2", "051581bf3cb55c13"),
    ("6e0c63257de34c926f9efcd03927272e", "2f3a4b5c6d7e8f90"),
];

#[test]
fn spans_carry_the_callers_trace_over_otlp_and_are_flushed_on_sigterm() {
    let (endpoint, received) = receiver();
    let dir = std::env::temp_dir().join(format!("custody-cli-otlp-{}", std::process::id()));
    let toml = "shutdown_delay = \"10ms\"\n\
        [[plugin]]\nname = \"traced\"\nroute = \"/traced\"\nmodule = \"traced.wat\"\n\
        [[plugin]]\nname = \"trapping\"\nroute = \"/trapping\"\nmodule = \"trapping.wat\"\n\
        [[plugin]]\nname = \"pooled\"\nroute = \"/pooled\"\nmodule = \"pooled.wat\"\n\
        interface = \"custody\"\ninstances = \"pooled\"\npool = 1\n";
    let files = [
        ("traced.wat", ANSWERING),
        ("trapping.wat", TRAPPING),
        ("pooled.wat", POOLED),
    ];
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "custody-under-test"),
    ];
    let (mut server, lines) = serve_files_with_env(&dir, toml, &files, &[], &env, 3);
    let url = |name: &str| {
        let line = lines.iter().find(|l| l.ends_with(&format!("/{name}")));
        line.unwrap().strip_prefix("GET ").unwrap().to_string()
    };
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    let answer = request(&url("traced"), "GET", &[("traceparent", &traceparent)], "");
    assert!(answer.ends_with("\r\n\r\ntraced\n"), "{answer}");
    let trap_parent = format!("00-{TRAP_TRACE_ID}-{TRAP_CALLER_SPAN_ID}-01");
    let trapped = request(
        &url("trapping"),
        "GET",
        &[("traceparent", &trap_parent)],
        "",
    );
    assert!(trapped.starts_with("HTTP/1.0 500"), "{trapped}");
    let trap_id = trapped
        .rsplit_once("(id ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| panic!("no id in {trapped}"));
    for (trace, caller) in POOLED_TRACES {
        let traceparent = format!("00-{trace}-{caller}-01");
        let answer = request(&url("pooled"), "GET", &[("traceparent", &traceparent)], "");
        assert!(answer.ends_with("\r\n\r\nhello, world\n"), "{answer}");
    }
    // A request without a trace context starts a trace of its own.
    let untraced = request(&url("traced"), "GET", &[], "");
    assert!(untraced.ends_with("\r\n\r\ntraced\n"), "{untraced}");
    terminate(&server);
    let status = exit_within(&mut server, Duration::from_secs(20));
    let mut stderr = String::new();
    let _ = server.0.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(status, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);

    // Everything was exported before the exit: the batch was flushed.
    let got = received.lock().unwrap();
    assert!(got.refused.is_empty(), "refused: {:?}", got.refused);
    let service = (got.resources.iter())
        .filter_map(|resource| attribute(&resource.attributes, "service.name"))
        .collect::<Vec<_>>();
    assert!(
        !service.is_empty() && service.iter().all(|name| name == "custody-under-test"),
        "{service:?}"
    );
    let requests: Vec<&Span> = got.spans.iter().filter(|s| s.name == "request").collect();
    let calls: Vec<&Span> = got.spans.iter().filter(|s| s.name == "call").collect();
    assert_eq!(requests.len(), 5, "{:#?}\n{stderr}", got.spans);
    assert_eq!(calls.len(), 5, "{:#?}\n{stderr}", got.spans);
    let in_trace = |trace: &str| {
        let request = (requests.iter())
            .find(|s| hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("no request span in trace {trace}: {requests:#?}"));
        let call = (calls.iter())
            .find(|s| hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("no call span in trace {trace}: {calls:#?}"));
        (*request, *call)
    };
    let [(pooled_a, caller_a), (pooled_b, caller_b)] = POOLED_TRACES;
    for (trace, caller, plugin, status, export) in [
        (TRACE_ID, CALLER_SPAN_ID, "traced", "200", "_start"),
        (
            TRAP_TRACE_ID,
            TRAP_CALLER_SPAN_ID,
            "trapping",
            "500",
            "_start",
        ),
        (pooled_a, caller_a, "pooled", "200", "handle"),
        (pooled_b, caller_b, "pooled", "200", "handle"),
    ] {
        let (request, call) = in_trace(trace);
        assert_eq!(hex(&request.parent_span_id), caller, "{request:#?}");
        assert_eq!(request.kind, 2, "a server span: {request:#?}");
        let attr = |key| attribute(&request.attributes, key);
        assert_eq!(attr("plugin").as_deref(), Some(plugin), "{request:#?}");
        assert_eq!(attr("route").as_deref(), Some(&*format!("/{plugin}")));
        assert_eq!(attr("http.request.method").as_deref(), Some("GET"));
        assert_eq!(
            attr("http.response.status_code").as_deref(),
            Some(status),
            "{request:#?}"
        );
        assert!(attr("request_id").is_some_and(|id| !id.is_empty()));
        // The guest's call is the request's child.
        assert_eq!(call.parent_span_id, request.span_id, "{call:#?}");
        assert_eq!(
            attribute(&call.attributes, "export").as_deref(),
            Some(export)
        );
    }
    // One pooled domain served both: each call joined its own request.
    let domain = |trace| attribute(&in_trace(trace).1.attributes, "domain");
    assert!(domain(pooled_a).is_some());
    assert_eq!(domain(pooled_a), domain(pooled_b), "not the same domain");
    let (trapped_request, _) = in_trace(TRAP_TRACE_ID);
    assert_eq!(
        attribute(&trapped_request.attributes, "request_id"),
        Some(trap_id),
        "the id the client got is the span's"
    );
    // The third request: its own trace, a root span.
    let own = (requests.iter())
        .find(|s| {
            let known = [TRACE_ID, TRAP_TRACE_ID, pooled_a, pooled_b];
            !known.contains(&hex(&s.trace_id).as_str())
        })
        .expect("the untraced request's span");
    assert!(own.parent_span_id.is_empty(), "{own:#?}");
    assert!(
        calls
            .iter()
            .any(|c| c.trace_id == own.trace_id && c.parent_span_id == own.span_id),
        "{calls:#?}"
    );
}
