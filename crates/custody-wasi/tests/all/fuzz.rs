//! A fuzz run of WASI preview 1, bounded in time (SPEC C1, W1): random
//! calls of every function of `wasi_snapshot_preview1` with random
//! arguments (pointers in and out of memory, lengths past every limit,
//! small fds, live, stale and forged ids, bad flags, whences and clocks),
//! while another thread aborts calls at random. Nothing may panic or trap:
//! every call returns a WASI errno, exits (`proc_exit`) or is aborted; and
//! no fd outlives the domain.
//!
//! `CUSTODY_FUZZ_SECS` sets the duration (default 2 s) and
//! `CUSTODY_FUZZ_SEED` the seed (default: from the clock; a failure names
//! it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use custody_host::{AbiType, CallError, Domain, DomainConfig, Policy, Val};
use custody_testkit::*;
use custody_wasi::FUNCTIONS;
use custody_wasi::{WasiDomain, WasiDomainConfig};

/// The largest WASI errno (`ENOTCAPABLE`).
const MAX_ERRNO: i32 = 76;

/// An fd worth trying: small ones, live table ids, closed ones, forged.
fn fd(rng: &mut Rng, domain: &Domain, seen: &[i32]) -> i32 {
    match rng.next_u64() % 5 {
        0 => (rng.next_u64() % 7) as i32,
        1 | 2 => {
            let live = domain.table().live_ids();
            match live.len() {
                0 => 1,
                n => live[(rng.next_u64() % n as u64) as usize].raw() as i32,
            }
        }
        3 if !seen.is_empty() => seen[(rng.next_u64() % seen.len() as u64) as usize],
        _ => rng.next_u64() as i32,
    }
}

/// An `i32` argument named `name`.
fn argument(rng: &mut Rng, domain: &Domain, seen: &[i32], name: &str) -> i32 {
    if matches!(name, "fd" | "to" | "old_fd" | "new_fd") {
        return fd(rng, domain, seen);
    }
    match rng.next_u64() % 6 {
        // In memory, leaving room for what is written there.
        0..=2 => (rng.next_u64() % 60_000) as i32,
        3 => (rng.next_u64() % 8) as i32,
        4 => 65_536 - (rng.next_u64() % 64) as i32,
        _ => rng.next_u64() as i32,
    }
}

/// An `i64` argument: small, or anything.
fn argument64(rng: &mut Rng) -> i64 {
    match rng.next_u64() % 3 {
        0 => (rng.next_u64() % 4096) as i64,
        1 => (rng.next_u64() % 20_000_000) as i64,
        _ => rng.next_u64() as i64,
    }
}

#[test]
fn random_calls_of_every_wasi_function_keep_every_bound() {
    let _serial = serial();
    let seed = fuzz_seed();
    let mut rng = Rng(seed);
    let dir = scratch("wasi-fuzz");
    let (host, _) = host_with(Policy {
        max_wait: Duration::from_millis(20),
        deadline: Some(Duration::from_millis(500)),
        ..Policy::default()
    });
    let module = warmed_module(&host, &wasi_driver(""));
    let baseline = FdBaseline::now();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", &dir).args(["fuzz"]))
        .unwrap();
    domain.load("main", &module).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let aborter = {
        let (domain, stop) = (domain.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x9e37_79b9);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5 + rng.next_u64() % 40));
                domain.abort();
            }
        })
    };
    let until = Instant::now() + fuzz_duration();
    let mut seen = Vec::new();
    let mut calls = 0;
    while Instant::now() < until {
        if rng.next_u64().is_multiple_of(8) {
            // Fresh pipes to work on (ids recorded: later stale).
            if domain
                .call("abi_pipe", &[Val::I32(60_000), Val::I32(60_004)])
                .is_ok()
                && let Ok(ends) = domain.call("load", &[Val::I32(60_000)])
            {
                seen.push(ends[0].unwrap_i32());
            }
        }
        let f = FUNCTIONS[(rng.next_u64() % FUNCTIONS.len() as u64) as usize];
        let args: Vec<Val> = f
            .params
            .iter()
            .map(|(name, ty)| match ty {
                AbiType::I32 => Val::I32(argument(&mut rng, &domain, &seen, name)),
                AbiType::I64 => Val::I64(argument64(&mut rng)),
            })
            .collect();
        let export = format!("w_{}", f.name);
        match domain.call(&export, &args) {
            Ok(results) if f.name == "proc_exit" => {
                panic!("seed {seed}: proc_exit returned {results:?}")
            }
            Ok(results) => {
                let errno = results[0].unwrap_i32();
                assert!(
                    (0..=MAX_ERRNO).contains(&errno),
                    "seed {seed}: {export}{args:?} returned {errno}"
                );
            }
            Err(CallError::Exit(_)) if f.name == "proc_exit" => {}
            Err(CallError::Aborted { .. }) => {}
            Err(error) => panic!("seed {seed}: {export}{args:?}: {error}"),
        }
        calls += 1;
        let _ = domain.take_stdout();
        let _ = domain.take_stderr();
    }
    stop.store(true, Ordering::Relaxed);
    aborter.join().unwrap();
    assert!(calls > 50, "seed {seed}: only {calls} calls");
    let report = domain.unload().unwrap();
    let ledger = report.ledger;
    assert_eq!(ledger.release_failures, 0, "seed {seed}: {ledger:?}");
    assert_eq!(
        ledger.closed_by_host, 0,
        "seed {seed}: a failed call made a handle the host took back: {ledger:?}"
    );
    drop(domain);
    baseline.assert_back(&format!("wasi fuzz, seed {seed}"));
}
