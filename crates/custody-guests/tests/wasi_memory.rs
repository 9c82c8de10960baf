//! A full memory is the guest's to handle: guest/wasi/oom.c, a wasi-libc
//! program that allocates until `malloc` returns NULL, prints "survived"
//! under custody's default `on_memory_limit` ("fail-grow": `memory.grow`
//! returns -1, as WebAssembly says) and is aborted under "abort". Never run
//! natively (nothing would cap it).
//!
//! Without clang, lld, wasi-libc or a C compiler every test here is ignored
//! with the reason.

use std::path::Path;

use custody_handle::diagnostics::{Assistant, Collector};
use custody_host::{CallError, DomainConfig, OnMemoryLimit, Policy};
use custody_testkit::*;
use custody_wasi::{WasiDomain, WasiDomainConfig};

/// Where the build script put the guests.
const GUESTS: &str = env!("CUSTODY_GUEST_DIR");

/// The cap: 16 MiB, far above what wasi-libc needs to start and print.
const CAP: usize = 16 << 20;

#[test]
#[cfg_attr(
    no_wasi_toolchain,
    ignore = "clang, lld, wasi-libc or cc missing: see guest/wasi/README.md"
)]
fn a_program_that_allocates_until_null_survives_the_cap_or_is_aborted_as_the_policy_says() {
    let _serial = serial();
    let host = host();
    let module = host
        .compile_file(Path::new(GUESTS).join("wasi/corpus.wasm"))
        .unwrap_or_else(|e| panic!("corpus.wasm: {e}"));
    let module = warm(&host, module);
    for on_limit in [OnMemoryLimit::FailGrow, OnMemoryLimit::Abort] {
        let collector = Collector::start();
        let baseline = FdBaseline::now();
        let policy = Policy {
            memory_limit: Some(CAP),
            on_memory_limit: on_limit,
            ..host.policy().clone()
        };
        let domain = host
            .create_domain(DomainConfig::new().args(["oom"]).policy(policy))
            .unwrap();
        domain.load("oom", &module).unwrap();
        let result = domain.call("_start", &[]);
        let stdout = String::from_utf8_lossy(&domain.take_stdout()).into_owned();
        let id = domain.id();
        let reached = collector
            .matching(|d| d.assistant == Assistant::MemoryLimitReached && d.domain == Some(id));
        match on_limit {
            OnMemoryLimit::FailGrow => {
                assert!(
                    matches!(result, Ok(_) | Err(CallError::Exit(0))),
                    "{result:?}"
                );
                assert_eq!(stdout, "allocated some\nsurvived\n");
                assert_eq!(reached.len(), 1, "once per call: {reached:?}");
            }
            _ => {
                match &result {
                    Err(CallError::Aborted { reason, .. }) => {
                        assert!(
                            reason.contains("memory limit of 16777216 bytes"),
                            "{reason}"
                        )
                    }
                    other => panic!("expected an abort, got {other:?}"),
                }
                assert_eq!(stdout, "", "aborted before it could print");
                assert!(reached.is_empty(), "{reached:?}");
            }
        }
        assert!(
            domain.info().memory_bytes.is_none_or(|bytes| bytes <= CAP),
            "the cap held"
        );
        domain.unload().unwrap();
        drop(domain);
        baseline.assert_back(&format!("{on_limit:?}"));
    }
}
