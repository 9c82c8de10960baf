//! Runs `N` calls of an empty export, tracked as roots (`Domain::call`) or
//! not (`call_untracked`, the call path before root tracking), for counting
//! instructions with callgrind: the count of N calls minus the count of 0
//! calls, over N, is the instructions of one call, the same from run to run
//! whatever else the machine is doing (docs/PERFORMANCE.md).
//!
//! ```sh
//! cargo build --release -p custody-host --features bench-internals --example call_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/call_instructions tracked 100000
//! ```

use custody_host::{DomainConfig, Host, Policy};

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let calls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let host = Host::new(Policy::default()).expect("host");
    let module = host
        .compile(br#"(module (memory (export "memory") 1) (func (export "nothing")))"#)
        .expect("module");
    let domain = host.create_domain(DomainConfig::new()).expect("domain");
    domain.load("main", &module).expect("load");
    for _ in 0..calls {
        let result = match variant.as_str() {
            "tracked" => domain.call("nothing", &[]),
            "untracked" => domain.call_untracked("nothing", &[]),
            other => panic!("variant {other:?}: tracked or untracked"),
        };
        std::hint::black_box(result.expect("call"));
    }
    domain.unload().expect("unload");
}
