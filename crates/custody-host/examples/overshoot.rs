//! How far past its deadline an aborted call runs: the overshoot
//! distribution for a guest spinning in wasm and for one blocked in a host
//! wait.
//!
//! Run: `cargo run --release -p custody-host --example overshoot [SAMPLES]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_host::{CallError, DomainConfig, EPOCH_TICK, Host, Policy, Val};

const GUEST: &str = r#"
(module
  (import "custody" "sleep" (func $sleep (param i32) (result i32)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "sleep") (drop (call $sleep (i32.const 5000))))
)
"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let deadline = Duration::from_millis(20);
    custody_handle::diagnostics::set_stderr(false);
    let host = Host::with_log(
        Policy {
            deadline: Some(deadline),
            ..Policy::default()
        },
        Arc::new(|_, _, _| {}),
    )
    .expect("host");
    let module = host.compile(GUEST.as_bytes()).expect("module");
    let domain = host.create_domain(DomainConfig::new()).expect("domain");
    domain.load("guest", &module).expect("load");
    println!("deadline {deadline:?}, epoch tick {EPOCH_TICK:?}, {samples} samples each");
    println!("| guest | p50 | p99 | max |");
    println!("| --- | --- | --- | --- |");
    for export in ["spin", "sleep"] {
        let mut overshoot: Vec<Duration> = (0..samples)
            .map(|_| {
                let start = Instant::now();
                let result = domain.call(export, &[] as &[Val]);
                assert!(
                    matches!(result, Err(CallError::Aborted { .. })),
                    "{result:?}"
                );
                start.elapsed().saturating_sub(deadline)
            })
            .collect();
        overshoot.sort();
        let what = if export == "spin" {
            "spinning in wasm (epoch interrupt)"
        } else {
            "blocked in `sleep` (host wait cut at the deadline)"
        };
        println!(
            "| {what} | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(&overshoot, 0.50).as_secs_f64() * 1e3,
            percentile(&overshoot, 0.99).as_secs_f64() * 1e3,
            overshoot.last().unwrap().as_secs_f64() * 1e3,
        );
    }
}
