//! Every `custody_http` function under the custody ABI's contract, called
//! from a guest: what it copies out or changes, and its errors (a range or
//! out slot outside memory writes nothing, a bad header never reaches the
//! head, nothing changes once the head is committed). A `handle` export
//! streams a request body to the response through the two handles, which
//! are released with the domain.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use custody_handle::Fd;
use custody_host::extension::AbiError;
use custody_host::{Domain, DomainConfig, Host, Policy, Val};
use custody_http::{Exchange, Http, RequestHead};
use custody_testkit::*;

const GUEST: &str = r#"(module
  (import "custody_http" "method" (func $method (param i32 i32 i32) (result i32)))
  (import "custody_http" "uri" (func $uri (param i32 i32 i32) (result i32)))
  (import "custody_http" "header" (func $header (param i32 i32 i32 i32 i32) (result i32)))
  (import "custody_http" "header_names" (func $header_names (param i32 i32 i32) (result i32)))
  (import "custody_http" "set_status" (func $set_status (param i32) (result i32)))
  (import "custody_http" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "custody_http" "append_header" (func $append_header (param i32 i32 i32 i32) (result i32)))
  (import "custody" "read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "custody" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "store8") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "load8") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "method") (param i32 i32 i32) (result i32) (call $method (local.get 0) (local.get 1) (local.get 2)))
  (func (export "uri") (param i32 i32 i32) (result i32) (call $uri (local.get 0) (local.get 1) (local.get 2)))
  (func (export "header") (param i32 i32 i32 i32 i32) (result i32)
    (call $header (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "header_names") (param i32 i32 i32) (result i32) (call $header_names (local.get 0) (local.get 1) (local.get 2)))
  (func (export "set_status") (param i32) (result i32) (call $set_status (local.get 0)))
  (func (export "set_header") (param i32 i32 i32 i32) (result i32)
    (call $set_header (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "append_header") (param i32 i32 i32 i32) (result i32)
    (call $append_header (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  ;; handle(request, response): copies the request body to the response
  ;; in 7-byte reads, after setting a status and a header.
  (func (export "handle") (param $req i32) (param $resp i32) (result i32)
    (local $n i32)
    (drop (call $set_status (i32.const 201)))
    (i32.store (i32.const 9000) (i32.const 0x6f2d78)) ;; "x-o"
    (i32.store (i32.const 9004) (i32.const 0x6b)) ;; "k"
    (drop (call $set_header (i32.const 9000) (i32.const 3) (i32.const 9004) (i32.const 1)))
    (block $done
      (loop $more
        (br_if $done (i32.ne (call $read (local.get $req) (i32.const 8000) (i32.const 7) (i32.const 8100)) (i32.const 0)))
        (local.set $n (i32.load (i32.const 8100)))
        (br_if $done (i32.eqz (local.get $n)))
        (drop (call $write (local.get $resp) (i32.const 8000) (local.get $n) (i32.const 8104)))
        (br $more)))
    (i32.const 0))
)"#;

const END: i32 = 65536;

fn host() -> Host {
    quiet();
    Host::builder(Policy::default())
        .extension(Http)
        .build()
        .unwrap()
}

fn domain(host: &Host) -> Domain {
    let module = host.compile(GUEST.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("main", &module).unwrap();
    domain
}

fn exchange(domain: &Domain) -> std::sync::Arc<Exchange> {
    domain
        .extension::<Exchange>()
        .expect("every domain of the host has one")
}

fn request() -> RequestHead {
    let mut headers = http::HeaderMap::new();
    headers.append("content-type", "text/plain".parse().unwrap());
    headers.append("x-many", "a".parse().unwrap());
    headers.append("x-many", "b".parse().unwrap());
    RequestHead {
        method: http::Method::POST,
        uri: http::Uri::from_static("/echo?x=1"),
        headers,
    }
}

fn e(error: AbiError) -> i32 {
    error.code()
}

#[test]
fn the_request_head_is_copied_out_whole_or_cut_with_its_length() {
    let _serial = serial();
    let host = host();
    let domain = domain(&host);
    assert_eq!(
        call(&domain, "method", &[100, 16, 200]),
        e(AbiError::Inval),
        "no request yet"
    );
    exchange(&domain).begin(request());
    assert_eq!(call(&domain, "method", &[100, 16, 200]), 0);
    assert_eq!(peek(&domain, 100, 4), b"POST");
    assert_eq!(peek_i32(&domain, 200), 4);
    // A short buffer: cut, and the whole length said.
    poke(&domain, 300, b"........");
    assert_eq!(call(&domain, "uri", &[300, 3, 200]), 0);
    assert_eq!(peek(&domain, 300, 8), b"/ec.....");
    assert_eq!(peek_i32(&domain, 200), 9);
    // Present, absent, any case, joined.
    poke(&domain, 400, b"X-MANY");
    assert_eq!(call(&domain, "header", &[400, 6, 500, 64, 200]), 1);
    assert_eq!(peek(&domain, 500, 4), b"a, b");
    poke(&domain, 400, b"absent");
    assert_eq!(call(&domain, "header", &[400, 6, 500, 64, 200]), 0);
    assert_eq!(peek_i32(&domain, 200), 0);
    assert_eq!(call(&domain, "header_names", &[600, 64, 200]), 0);
    let len = peek_i32(&domain, 200) as usize;
    assert_eq!(peek(&domain, 600, len as i32), b"content-type\nx-many");
    exchange(&domain).end();
    assert_eq!(
        call(&domain, "uri", &[100, 16, 200]),
        e(AbiError::Inval),
        "ended"
    );
}

#[test]
fn a_range_or_out_slot_outside_memory_writes_nothing() {
    let _serial = serial();
    let host = host();
    let domain = domain(&host);
    exchange(&domain).begin(request());
    poke(&domain, 100, &[0xAA; 8]);
    poke(&domain, END - 2, &[0xAA; 2]);
    for (name, args) in [
        ("method", [100, 8, END - 2]),
        ("method", [END - 2, 8, 200]),
        ("uri", [100, 8, -1]),
        ("header_names", [END - 2, 8, 200]),
    ] {
        assert_eq!(
            call(&domain, name, &args),
            e(AbiError::Fault),
            "{name} {args:?}"
        );
    }
    assert_eq!(peek(&domain, 100, 8), [0xAA; 8], "no text written");
    assert_eq!(peek(&domain, END - 2, 2), [0xAA; 2], "no length written");
    assert_eq!(call(&domain, "method", &[100, -1, 200]), e(AbiError::Inval));
    poke(&domain, 400, b"x-many");
    assert_eq!(
        call(&domain, "header", &[END - 2, 6, 500, 64, 200]),
        e(AbiError::Fault)
    );
    assert_eq!(
        call(&domain, "header", &[400, 257, 500, 64, 200]),
        e(AbiError::Inval)
    );
    assert_eq!(
        call(&domain, "header", &[400, 6, 500, 64, END]),
        e(AbiError::Fault)
    );
}

#[test]
fn the_response_head_changes_until_it_is_committed_and_refuses_injection() {
    let _serial = serial();
    let host = host();
    let domain = domain(&host);
    assert_eq!(
        call(&domain, "set_status", &[404]),
        e(AbiError::Inval),
        "no request yet"
    );
    exchange(&domain).begin(request());
    assert_eq!(call(&domain, "set_status", &[99]), e(AbiError::Inval));
    assert_eq!(call(&domain, "set_status", &[404]), 0);
    poke(&domain, 100, b"x-evil");
    poke(&domain, 200, b"1\r\nset-cookie: stolen");
    assert_eq!(
        call(&domain, "set_header", &[100, 6, 200, 21]),
        e(AbiError::Inval)
    );
    poke(&domain, 200, b"ok");
    assert_eq!(
        call(&domain, "set_header", &[100, 6, END - 1, 2]),
        e(AbiError::Fault)
    );
    assert_eq!(call(&domain, "set_header", &[100, 6, 200, 2]), 0);
    assert_eq!(call(&domain, "append_header", &[100, 6, 200, 2]), 0);
    for _ in 2..custody_http::MAX_HEADERS {
        assert_eq!(call(&domain, "append_header", &[100, 6, 200, 2]), 0);
    }
    assert_eq!(
        call(&domain, "append_header", &[100, 6, 200, 2]),
        e(AbiError::Quota)
    );
    let head = exchange(&domain).commit().unwrap();
    assert_eq!(head.status, 404);
    assert_eq!(head.headers.len(), custody_http::MAX_HEADERS);
    assert!(head.headers.iter().all(|(n, v)| n == "x-evil" && v == "ok"));
    assert_eq!(
        call(&domain, "set_status", &[200]),
        e(AbiError::Inval),
        "committed"
    );
    assert_eq!(
        call(&domain, "set_header", &[100, 6, 200, 2]),
        e(AbiError::Inval),
        "committed"
    );
}

#[test]
fn handle_streams_the_body_through_two_handles_released_with_the_domain() {
    let _serial = serial();
    let host = host();
    let baseline = FdBaseline::now();
    let domain = domain(&host);
    let (request_body, mut body_writer) = pipe();
    let (mut response_reader, response_body) = pipe();
    let request_id = domain.insert_handle(Fd::from(request_body)).unwrap();
    let response_id = domain.insert_handle(Fd::from(response_body)).unwrap();
    exchange(&domain).begin(request());
    let body = b"streamed through custody_http, seven bytes at a time";
    body_writer.write_all(body).unwrap();
    drop(body_writer);
    let result = domain
        .call(
            "handle",
            &[
                Val::I32(request_id.raw() as i32),
                Val::I32(response_id.raw() as i32),
            ],
        )
        .unwrap();
    assert_eq!(result[0].unwrap_i32(), 0);
    let head = exchange(&domain).commit().unwrap();
    assert_eq!(head.status, 201);
    assert_eq!(head.headers.len(), 1);
    assert_eq!(head.headers["x-o"], "k");
    exchange(&domain).end();
    // The server's end of the response sees the end once the domain
    // releases its handle.
    let report = domain.unload().unwrap();
    assert_eq!(report.ledger.opened, 2);
    let mut got = Vec::new();
    response_reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, body);
    drop(response_reader);
    baseline.assert_back("the request's two handles");
}

/// A pipe as two files: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let (read, write) = std::io::pipe().unwrap();
    (
        std::fs::File::from(OwnedFd::from(read)),
        std::fs::File::from(OwnedFd::from(write)),
    )
}

fn peek_i32(domain: &Domain, at: i32) -> i32 {
    i32::from_le_bytes(peek(domain, at, 4).try_into().unwrap())
}
