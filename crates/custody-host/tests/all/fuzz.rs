//! A fuzz run of the custody ABI, bounded in time (SPEC C1): random calls of
//! every function of the catalogue with random arguments (pointers in and
//! out of memory, lengths past every limit, forged, stale and live handle
//! ids, bad flags, levels and timeouts), while another thread aborts calls
//! at random. It asserts that nothing panics or traps, that every error a
//! function returns is one its catalogue entry documents, that the ledger
//! balances, that no call made a handle the host had to take back (a call
//! that fails has not acted), and that no fd outlives the domain.
//!
//! `CUSTODY_FUZZ_SECS` sets the duration (default 2 s; CI runs longer) and
//! `CUSTODY_FUZZ_SEED` the seed (default: from the clock; a failure names
//! it, so a run can be repeated).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use custody_host::abi::{AbiError, FUNCTIONS, MAX_IO};
use custody_host::{CallError, DomainConfig, HostFunction, Policy, Val};
use custody_testkit::*;

/// Where out-values land: the fuzzer reads handle ids back from here.
const SLOTS: i32 = 0;
const SLOT_COUNT: i32 = 64;
/// Guest paths, NUL-separated, at this offset.
const PATHS_AT: i32 = 60_000;
const PATHS: &[&str] = &[
    "data/a.txt",
    "data/new.txt",
    "data/dir",
    "data/../escape",
    "data/link_out",
    "data/fifo",
    "/etc/passwd",
    "nope/x",
    "data",
    "data/dir/../a.txt",
];

/// A guest that re-exports every custody function as `f_NAME`, plus
/// `load`/`store` for the fuzzer's bookkeeping.
fn guest() -> String {
    let mut wat = String::from("(module\n");
    for f in FUNCTIONS {
        let params = " i32".repeat(f.params.len());
        let _ = writeln!(
            wat,
            r#"  (import "custody" "{0}" (func ${0} (param{1}) (result i32)))"#,
            f.name, params
        );
    }
    wat.push_str("  (memory (export \"memory\") 1)\n");
    let mut at = PATHS_AT;
    for path in PATHS {
        let _ = writeln!(wat, r#"  (data (i32.const {at}) "{path}")"#);
        at += path.len() as i32 + 1;
    }
    for f in FUNCTIONS {
        let params = " i32".repeat(f.params.len());
        let gets: String = (0..f.params.len())
            .map(|i| format!(" (local.get {i})"))
            .collect();
        let _ = writeln!(
            wat,
            r#"  (func (export "f_{0}") (param{1}) (result i32) (call ${0}{2}))"#,
            f.name, params, gets
        );
    }
    wat.push_str(
        r#"  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
)"#,
    );
    wat
}

/// Offsets and lengths of the guest paths.
fn path_spans() -> Vec<(i32, i32)> {
    let mut at = PATHS_AT;
    PATHS
        .iter()
        .map(|p| {
            let span = (at, p.len() as i32);
            at += p.len() as i32 + 1;
            span
        })
        .collect()
}

struct Fuzzer {
    rng: Rng,
    /// Handle ids seen in the slots (live, closed, stale: all worth trying).
    ids: Vec<i32>,
    paths: Vec<(i32, i32)>,
}

impl Fuzzer {
    fn one_in(&mut self, n: u64) -> bool {
        self.rng.next_u64().is_multiple_of(n)
    }

    fn pointer(&mut self) -> i32 {
        let r = self.rng.next_u64();
        match r % 8 {
            0..=2 => SLOTS + 4 * (self.rng.next_u64() % SLOT_COUNT as u64) as i32,
            3 => self.rng.pick(&self.paths).0,
            4 => self
                .rng
                .pick(&[-1, -4, i32::MIN, i32::MAX, 65_535, 65_533, 65_536]),
            5 => 1 + 4 * (self.rng.next_u64() % 64) as i32, // unaligned
            _ => (self.rng.next_u64() % 70_000) as i32,
        }
    }

    fn length(&mut self) -> i32 {
        let big = MAX_IO as i32;
        match self.rng.next_u64() % 6 {
            0 => self.rng.pick(&[0, 1, 2, 4, 8, 16]),
            1 => self
                .rng
                .pick(&[-1, i32::MIN, i32::MAX, big, big + 1, 65_536]),
            _ => (self.rng.next_u64() % 1024) as i32,
        }
    }

    fn handle(&mut self) -> i32 {
        match self.rng.next_u64() % 5 {
            0 => self.rng.pick(&[0, -1, 1, 2, i32::MAX, i32::MIN]),
            1 => self.rng.next_u64() as i32,
            // The newest ids are the likeliest to be live.
            2 if !self.ids.is_empty() => self.ids[self.ids.len() - 1],
            _ if !self.ids.is_empty() => {
                let i = (self.rng.next_u64() % self.ids.len() as u64) as usize;
                self.ids[i]
            }
            _ => 1,
        }
    }

    /// One argument, by the parameter's name.
    fn argument(&mut self, name: &str) -> i32 {
        match name {
            "handle" => self.handle(),
            "path_ptr" => {
                if self.one_in(4) {
                    self.pointer()
                } else {
                    self.rng.pick(&self.paths).0
                }
            }
            "path_len" => self.length(),
            "flags" => self.rng.pick(&[0, 1, 2, 3, 6, 7, 10, 18, 22, 32, -1, 255]),
            "level" => self.rng.pick(&[-1, 0, 1, 2, 3, 4, 5, 100]),
            "ms" | "timeout_ms" => self.rng.pick(&[-1, -2, 0, 1, 5, 10, 11, 60_000, i32::MAX]),
            "count" => self.rng.pick(&[-1, 0, 1, 2, 3, 64, 65, i32::MAX]),
            name if name.ends_with("_ptr") || name == "ptr" => self.pointer(),
            _ => self.length(),
        }
    }

    /// Arguments for `f`; a path argument's length goes with its pointer.
    fn arguments(&mut self, f: &HostFunction) -> Vec<i32> {
        let mut args: Vec<i32> = f.params.iter().map(|(n, _)| self.argument(n)).collect();
        if let Some(p) = f.params.iter().position(|(n, _)| *n == "path_ptr")
            && let Some(&(_, len)) = self.paths.iter().find(|(at, _)| *at == args[p])
            && !self.one_in(4)
        {
            args[p + 1] = len;
        }
        // poll reads its handle ids from memory: point it at the slots.
        if f.name == "poll" && self.one_in(2) {
            args[0] = SLOTS;
        }
        args
    }
}

fn prepare_data(dir: &std::path::Path) {
    std::fs::write(dir.join("a.txt"), "some bytes to read").unwrap();
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    let _ = std::os::unix::fs::symlink("/etc/passwd", dir.join("link_out"));
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
}

#[test]
fn random_calls_of_every_abi_function_keep_every_bound() {
    let _serial = serial();
    let seed = fuzz_seed();
    let (host, _lines) = host_with(Policy {
        deadline: Some(Duration::from_millis(200)),
        max_wait: Duration::from_millis(10),
        handle_quota: 32,
        memory_limit: Some(1 << 20),
        log_lines_per_second: 1000,
        ..Policy::default()
    });
    let module = warmed_module(&host, &guest());
    let dir = scratch("fuzz");
    prepare_data(&dir);
    let baseline = FdBaseline::now();
    let domain = Arc::new(
        host.create_domain(DomainConfig::new().preopen("data", &dir))
            .unwrap(),
    );
    domain.load("fuzz", &module).unwrap();

    // Aborts at random moments: every host function meets E_ABORTED.
    let done = Arc::new(AtomicBool::new(false));
    let aborter = {
        let (domain, done) = (Arc::clone(&domain), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_micros(rng.next_u64() % 20_000));
                domain.abort();
            }
        })
    };

    let mut fuzzer = Fuzzer {
        rng: Rng(seed),
        ids: Vec::new(),
        paths: path_spans(),
    };
    // What a run must reach; it goes on past its time (up to ten times as
    // long) until it has, so a slow machine does not fail it.
    const REACHED: [&str; 7] = [
        "open ok", "pipe ok", "read ok", "E_FAULT", "E_STALE", "E_DENIED", "E_INVAL",
    ];
    let started = Instant::now();
    let (until, hard_until) = (started + fuzz_duration(), started + fuzz_duration() * 10);
    let mut calls = 0u64;
    // What the run reached, so that a run that reaches nothing fails.
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    loop {
        let now = Instant::now();
        let reached_all = REACHED.iter().all(|r| seen.contains(*r));
        if now >= hard_until || (now >= until && reached_all) {
            break;
        }
        let f = fuzzer.rng.pick(FUNCTIONS);
        // A region left open recycles the domain (every handle gone): rare
        // enough that handles live long enough to be used.
        if f.name == "critical_enter" && !fuzzer.one_in(16) {
            continue;
        }
        let args = fuzzer.arguments(&f);
        let values: Vec<Val> = args.iter().map(|&a| Val::I32(a)).collect();
        let export = format!("f_{}", f.name);
        let context = || format!("seed {seed}, call {calls}: {}{args:?}", f.name);
        match domain.call(&export, &values) {
            Ok(result) => {
                let code = result[0].unwrap_i32();
                if code >= 0 {
                    seen.insert(format!("{} ok", f.name));
                } else {
                    let error = AbiError::from_code(code)
                        .unwrap_or_else(|| panic!("{}: unknown code {code}", context()));
                    assert!(
                        f.errors.contains(&error),
                        "{}: {error} is not among the documented {:?}",
                        context(),
                        f.errors
                    );
                    seen.insert(error.name().to_string());
                }
            }
            // Stopped by the deadline or the aborter, or escalated after a
            // region left open: all named, none a trap.
            Err(CallError::Aborted { .. }) => drop(seen.insert("aborted".into())),
            Err(CallError::Escalated { .. }) => drop(seen.insert("escalated".into())),
            Err(other) => panic!("{}: {other}", context()),
        }
        calls += 1;
        // Harvest the ids the guest was given: read the out slots it used.
        let outs: Vec<i32> = f
            .params
            .iter()
            .zip(&args)
            .filter(|((name, _), _)| name.starts_with("out_"))
            .map(|(_, &at)| at)
            .filter(|at| (SLOTS..SLOTS + 4 * SLOT_COUNT).contains(at) && at % 4 == 0)
            .collect();
        for at in outs {
            if let Ok(r) = domain.call("load", &[Val::I32(at)]) {
                let id = r[0].unwrap_i32();
                if id > 0 && !fuzzer.ids.contains(&id) {
                    if fuzzer.ids.len() == 64 {
                        fuzzer.ids.remove(0);
                    }
                    fuzzer.ids.push(id);
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    aborter.join().unwrap();

    let report = domain.unload().unwrap();
    let l = report.ledger;
    assert_eq!(
        l.opened,
        l.closed_by_guest
            + l.closed_by_host
            + l.released_at_recycle
            + l.released_at_unload
            + l.release_failures,
        "seed {seed}: the ledger balances: {l:?}"
    );
    assert_eq!(
        l.closed_by_host, 0,
        "seed {seed}: a failed call made a handle the host took back: {l:?}"
    );
    assert!(calls > 100, "seed {seed}: only {calls} calls");
    for reached in REACHED {
        assert!(
            seen.contains(reached),
            "seed {seed}: never reached {reached}: {seen:?}"
        );
    }
    drop(domain);
    baseline.assert_back(&format!("the fuzz run (seed {seed}, {calls} calls)"));
}
