//! The C guest examples in `guest/examples/`, built with clang + lld by
//! `guest/build.sh` (run by this package's build script) and run here.
//!
//! Without clang and lld the build script sets `cfg(no_guest_toolchain)`:
//! every test here is then `ignored` with the reason, never reported as
//! passed. CI installs clang and lld and sets `CUSTODY_REQUIRE_GUESTS=1`,
//! which turns a missing toolchain into a build failure.
//!
//! Every test takes `serial()`: they open fds and count them.

use custody_host::{CallError, DomainConfig, HookOutcome, Host, Module};
use custody_testkit::*;

/// Where the build script put the guests.
const GUESTS: &str = env!("CUSTODY_GUEST_DIR");

/// Compiles `guest/examples/NAME.c`'s module and warms it up (so its memory
/// image exists before a test takes its fd baseline).
fn load(host: &Host, name: &str) -> Module {
    let path = std::path::Path::new(GUESTS).join(format!("{name}.wasm"));
    let module = host
        .compile_file(&path)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    warm(host, module)
}

#[test]
#[cfg_attr(
    no_guest_toolchain,
    ignore = "clang and lld missing: apt-get install clang lld"
)]
fn copy_copies_a_file_inside_its_preopen() {
    let _serial = serial();
    let host = host();
    let module = load(&host, "copy");
    let dir = scratch("c-copy");
    let contents = "x".repeat(10_000);
    std::fs::write(dir.join("in.txt"), &contents).unwrap();
    let baseline = open_fds();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir))
        .unwrap();
    domain.load("copy", &module).unwrap();
    assert_eq!(call(&domain, "copy", &[]), 10_000);
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        contents
    );
    let report = domain.unload().unwrap();
    assert_eq!(
        (report.ledger.opened, report.ledger.closed_by_guest),
        (2, 2)
    );
    assert_eq!(open_fds(), baseline);
}

#[test]
#[cfg_attr(
    no_guest_toolchain,
    ignore = "clang and lld missing: apt-get install clang lld"
)]
fn pipe_echo_round_trips_through_a_pipe() {
    let _serial = serial();
    let host = host();
    let module = load(&host, "pipe_echo");
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("echo", &module).unwrap();
    for n in [0, 1, 100, 1024] {
        assert_eq!(call(&domain, "echo", &[n]), n);
    }
    assert_eq!(call(&domain, "echo", &[1025]), -11, "E_INVAL");
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 0, "echo closes what it opens");
    assert_eq!(open_fds(), baseline);
}

#[test]
#[cfg_attr(
    no_guest_toolchain,
    ignore = "clang and lld missing: apt-get install clang lld"
)]
fn leaky_leaks_nothing_past_its_domain() {
    let _serial = serial();
    let (host, lines) = host_with(custody_host::Policy::default());
    let module = load(&host, "leaky");
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("leaky", &module).unwrap();
    assert_eq!(call(&domain, "leak", &[5]), 5);
    assert_eq!(open_fds(), baseline + 10);
    let report = domain.unload().unwrap();
    assert_eq!(report.hook(), HookOutcome::Completed);
    assert_eq!(report.released, 10);
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(d, _, _)| *d == domain.id()),
        "the hook logged"
    );
    assert_eq!(open_fds(), baseline);
}

#[test]
#[cfg_attr(
    no_guest_toolchain,
    ignore = "clang and lld missing: apt-get install clang lld"
)]
fn trap_aborts_the_call_and_the_unload_releases_its_pipe() {
    let _serial = serial();
    let host = host();
    let module = load(&host, "trap");
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("trap", &module).unwrap();
    assert!(matches!(
        domain.call("open_then_trap", &[]),
        Err(CallError::Trap { .. })
    ));
    let report = domain.unload().unwrap();
    assert_eq!(report.released, 2);
    assert_eq!(open_fds(), baseline);
}

/// bulk.c's loops are memset and memcpy at -O2: it links (and runs) only
/// because build.sh passes -mbulk-memory (memory.fill, memory.copy).
#[test]
#[cfg_attr(
    no_guest_toolchain,
    ignore = "clang and lld missing: apt-get install clang lld"
)]
fn bulk_fills_and_copies_with_bulk_memory_instructions() {
    let _serial = serial();
    let host = host();
    let module = load(&host, "bulk");
    let baseline = open_fds();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("bulk", &module).unwrap();
    assert_eq!(call(&domain, "fill", &[1000, 7]), 1000);
    assert_eq!(call(&domain, "copy_sum", &[1000]), 7000);
    assert_eq!(call(&domain, "fill", &[10, 0x1ff]), 10, "a byte is 8 bits");
    assert_eq!(call(&domain, "copy_sum", &[10]), 10 * 0xff);
    assert_eq!(call(&domain, "fill", &[1025, 0]), -11, "E_INVAL");
    let report = domain.unload().unwrap();
    assert_eq!(report.ledger.opened, 0);
    assert_eq!(open_fds(), baseline);
}

/// A pipe as two files: (read end, write end).
fn pipe_files() -> (std::fs::File, std::fs::File) {
    let (read, write) = std::io::pipe().unwrap();
    (
        std::fs::File::from(std::os::fd::OwnedFd::from(read)),
        std::fs::File::from(std::os::fd::OwnedFd::from(write)),
    )
}

#[test]
#[cfg_attr(
    no_guest_toolchain,
    ignore = "clang and lld missing: apt-get install clang lld"
)]
fn http_echo_answers_through_the_http_functions_and_its_two_handles() {
    use std::io::{Read, Write};

    use custody_http::{Exchange, Http, RequestHead};

    let _serial = serial();
    quiet();
    let host = Host::builder(custody_host::Policy::default())
        .extension(Http)
        .build()
        .unwrap();
    let module = load(&host, "http_echo");
    let baseline = open_fds();
    for (method, status, body) in [
        ("POST", 200, "POST /echo/x?y=1\nx-echo: hi\nthe body"),
        ("DELETE", 405, ""),
    ] {
        let domain = host.create_domain(DomainConfig::new()).unwrap();
        domain.load("echo", &module).unwrap();
        let exchange = domain.extension::<Exchange>().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-echo", http::HeaderValue::from_static("hi"));
        exchange.begin(RequestHead {
            method: method.parse().unwrap(),
            uri: http::Uri::from_static("/echo/x?y=1"),
            headers,
        });
        let (request_body, mut client) = pipe_files();
        let (mut server, response_body) = pipe_files();
        let request = domain
            .insert_handle(custody_handle::Fd::from(request_body))
            .unwrap();
        let response = domain
            .insert_handle(custody_handle::Fd::from(response_body))
            .unwrap();
        client.write_all(b"the body").unwrap();
        drop(client);
        let args = [
            custody_host::Val::I32(request.raw() as i32),
            custody_host::Val::I32(response.raw() as i32),
        ];
        let result = domain.call("handle", &args).unwrap();
        assert_eq!(result[0].unwrap_i32(), 0, "{method}");
        let head = exchange.commit().unwrap();
        assert_eq!(head.status, status, "{method}");
        exchange.end();
        domain.unload().unwrap();
        let mut got = String::new();
        server.read_to_string(&mut got).unwrap();
        assert_eq!(got, body, "{method}");
    }
    assert_eq!(open_fds(), baseline, "every request's handles released");
}
