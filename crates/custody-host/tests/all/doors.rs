//! Every bound of SPEC C1 (and of WASI's stdio capture and waits)
//! attacked through every door guest code has: the
//! start function, a call, the unloading hook, the re-instantiation at a
//! recycle, and a timer's callback (a call no embedder made: its failure is
//! seen in its `callAborted` report). Each attack must end promptly with an error that names the
//! bound (or be cut by it without an error, for quotas, rates and the
//! memory cap's failed grows), and
//! leave the fds where they were; at the end the process's memory is back
//! near where it started.

use std::time::{Duration, Instant};

use custody_handle::diagnostics::{Assistant, Collector};
use custody_host::abi::AbiError;
use custody_host::{
    CallError, Domain, DomainConfig, EscalationOutcome, HookOutcome, Module, OnMemoryLimit, Policy,
};
use custody_testkit::*;

/// One hostile function body and what stopping it looks like.
struct Attack {
    name: &'static str,
    body: String,
    /// Words the error names (`None`: the bound cuts it without an error).
    error: Option<&'static str>,
}

/// The memory and table attacks: grow until refused, then trap if the
/// memory or table is past the cap (4 MiB: 64 pages, or 524,288 elements of
/// 8 bytes). A table step of 1,000,000 elements is past the cap at once,
/// so the cap refuses it, not the pool's smaller bound on tables. Under the default `on_memory_limit` ("fail-grow") the grow
/// returns -1 and the attack ends without an error; under "abort", the
/// error names the limit.
fn memory_attacks(error: Option<&'static str>) -> Vec<Attack> {
    vec![
        Attack {
            name: "memory",
            body: "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
                   (if (i32.gt_u (memory.size) (i32.const 64)) (then unreachable))"
                .into(),
            error,
        },
        Attack {
            name: "table",
            body: "(loop $l
                     (br_if $l (i32.ne (table.grow (ref.null func) (i32.const 1000000)) (i32.const -1))))
                   (if (i32.gt_u (table.size) (i32.const 524288)) (then unreachable))"
                .into(),
            error,
        },
    ]
}

fn attacks() -> Vec<Attack> {
    let quota = AbiError::Quota.code();
    let mut attacks = memory_attacks(None);
    attacks.extend([
        Attack {
            name: "cpu",
            body: "(loop $l (br $l))".into(),
            error: Some("deadline"),
        },
        Attack {
            name: "wait",
            // In the unloading hook an aborted sleep returns E_ABORTED: the
            // loop makes the hook insist, and its time limit ends it.
            body: "(loop $l (drop (call $sleep (i32.const 5000))) (br $l))".into(),
            error: Some("deadline"),
        },
        Attack {
            name: "stack",
            body: "(call $recurse)".into(),
            error: Some("stack"),
        },
        Attack {
            name: "handles",
            // Pipes until refused; anything but E_QUOTA is a failure.
            body: format!(
                "(loop $l (local.set $rc (call $pipe (i32.const 128) (i32.const 132)))
                   (br_if $l (i32.ge_s (local.get $rc) (i32.const 0))))
                 (if (i32.ne (local.get $rc) (i32.const {quota})) (then unreachable))"
            ),
            error: None,
        },
        Attack {
            name: "wasi stdout",
            // 4 KiB writes to the captured stdout until refused: the
            // capture's bound (`stdio_capture_limit`) answers EFBIG (22),
            // anything else is a failure.
            body: "(i32.store (i32.const 1024) (i32.const 2048))
                   (i32.store (i32.const 1028) (i32.const 4096))
                   (loop $l
                     (local.set $rc (call $fd_write (i32.const 1) (i32.const 1024) (i32.const 1) (i32.const 1032)))
                     (br_if $l (i32.eqz (local.get $rc))))
                   (if (i32.ne (local.get $rc) (i32.const 22)) (then unreachable))"
                .into(),
            error: None,
        },
        Attack {
            name: "wasi wait",
            // poll_oneoff on a 5 s monotonic clock, again and again: the
            // one cancellable wait ends it at the deadline (in the hook, at
            // the hook's time limit).
            body: "(i32.store8 (i32.const 1096) (i32.const 0))
                   (i32.store (i32.const 1104) (i32.const 1))
                   (i64.store (i32.const 1112) (i64.const 5000000000))
                   (loop $l
                     (drop (call $poll_oneoff (i32.const 1088) (i32.const 1152) (i32.const 1) (i32.const 1184)))
                     (br $l))"
                .into(),
            error: Some("deadline"),
        },
        Attack {
            name: "log",
            body: "(local.set $rc (i32.const 5000))
                   (loop $l (drop (call $log (i32.const 2) (i32.const 0) (i32.const 10)))
                     (br_if $l (local.tee $rc (i32.sub (local.get $rc) (i32.const 1)))))"
                .into(),
            error: None,
        },
    ]);
    attacks
}

#[derive(Clone, Copy, Debug)]
enum Door {
    Start,
    Call,
    Hook,
    Recycle,
    /// A timer's callback (`timer_set`): a call no embedder made.
    Timer,
}

/// The shared-memory attack, run with the policy's `threads`.
fn atomic_wait() -> Attack {
    Attack {
        name: "atomic wait",
        body: "(drop (memory.atomic.wait32 (i32.const 512) (i32.const 0) (i64.const -1)))".into(),
        error: Some("deadline"),
    }
}

fn module(attack: &Attack, door: Door, memory: &str) -> String {
    let door_code = match door {
        Door::Start => "(func $s (call $attack)) (start $s)",
        Door::Call => r#"(func (export "attack") (call $attack))"#,
        Door::Hook => r#"(func (export "custody_unloading") (call $attack))"#,
        Door::Recycle => {
            r#"(func $s (if (call $armed) (then (call $attack)))) (start $s)
               (func (export "fail_critical") (drop (call $enter)) unreachable)"#
        }
        Door::Timer => {
            r#"(data (i32.const 300) "attack_cb")
               (func (export "arm") (result i32)
                 (call $timer_set (i32.const 0) (i32.const 0) (i32.const 300) (i32.const 9) (i32.const 96)))
               (func (export "attack_cb") (param i32)
                 (i32.store (i32.const 256) (i32.const 1)) (call $attack))
               (func (export "started") (result i32) (i32.load (i32.const 256)))"#
        }
    };
    format!(
        r#"(module
          (import "custody" "pipe" (func $pipe (param i32 i32) (result i32)))
          (import "custody" "sleep" (func $sleep (param i32) (result i32)))
          (import "custody" "log" (func $log (param i32 i32 i32) (result i32)))
          (import "custody" "open" (func $open (param i32 i32 i32 i32) (result i32)))
          (import "custody" "close" (func $close (param i32) (result i32)))
          (import "custody" "critical_enter" (func $enter (result i32)))
          (import "custody" "timer_set" (func $timer_set (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") {memory})
          (table 1 funcref)
          (data (i32.const 0) "data/armed")
          ;; Whether data/armed exists (the recycle door's trigger).
          (func $armed (result i32)
            (if (result i32) (i32.ge_s (call $open (i32.const 0) (i32.const 10) (i32.const 1) (i32.const 64)) (i32.const 0))
              (then (drop (call $close (i32.load (i32.const 64)))) (i32.const 1))
              (else (i32.const 0))))
          (func $recurse (call $recurse))
          (func $attack (local $rc i32) {body})
          {door_code})"#,
        body = attack.body,
    )
}

fn policy() -> Policy {
    Policy {
        deadline: Some(Duration::from_millis(200)),
        memory_limit: Some(4 << 20),
        handle_quota: 16,
        unload_hook_timeout: Duration::from_millis(200),
        log_lines_per_second: 50,
        ..Policy::default()
    }
}

/// The attack's module for the door, compiled and instantiated once:
/// wasmtime makes a module's memory image (a memfd) at its first
/// instantiation, and it lives as long as the module.
fn prepare(host: &custody_host::Host, attack: &Attack, door: Door, memory: &str) -> Module {
    let module = host
        .compile(module(attack, door, memory).as_bytes())
        .unwrap();
    let warm = host.create_domain(DomainConfig::new()).unwrap();
    let _ = warm.load("warm-up", &module);
    let _ = warm.unload();
    module
}

/// What one door made of one attack: `Ok` if it ran to the end, `Err` with
/// the error's text if it was stopped.
fn through(
    host: &custody_host::Host,
    module: &Module,
    attack: &Attack,
    door: Door,
    dir: &std::path::Path,
) -> (Result<(), String>, Domain) {
    std::fs::remove_file(dir.join("armed")).ok();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", dir))
        .unwrap();
    let outcome = match door {
        Door::Start => domain.load("hostile", module).map_err(|e| e.to_string()),
        Door::Call => {
            domain.load("hostile", module).unwrap();
            let outcome = domain
                .call("attack", &[])
                .map(drop)
                .map_err(|e| e.to_string());
            assert!(
                domain.table().len() <= 16,
                "{}: the quota held",
                attack.name
            );
            outcome
        }
        Door::Hook => {
            domain.load("hostile", module).unwrap();
            match domain.unload().unwrap().hook() {
                HookOutcome::Completed => Ok(()),
                HookOutcome::TimedOut => Err("the deadline of the hook passed".into()),
                other => Err(format!("{other:?}")),
            }
        }
        Door::Recycle => {
            domain.load("hostile", module).unwrap();
            std::fs::write(dir.join("armed"), "").unwrap();
            match domain.call("fail_critical", &[]) {
                Err(CallError::Escalated {
                    outcome: EscalationOutcome::Recreated,
                    ..
                }) => Ok(()),
                Err(CallError::Escalated { outcome, .. }) => Err(outcome.to_string()),
                other => panic!("{}: {other:?}", attack.name),
            }
        }
        Door::Timer => {
            domain.load("hostile", module).unwrap();
            let seen = Collector::start();
            assert_eq!(call(&domain, "arm", &[]), 0, "{}: armed", attack.name);
            // Calls are serialized: this one waits for the callback's end.
            let waited = Instant::now();
            while call(&domain, "started", &[]) == 0 {
                assert!(
                    waited.elapsed() < Duration::from_secs(5),
                    "the timer never fired"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let id = domain.id();
            let aborted = seen.matching(|d| {
                d.assistant == Assistant::CallAborted
                    && d.domain == Some(id)
                    && d.function.as_deref() == Some("attack_cb")
            });
            match aborted.first() {
                Some(d) => Err(d.reason.clone().unwrap_or_default()),
                None => Ok(()),
            }
        }
    };
    (outcome, domain)
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn every_bound_holds_through_every_door() {
    let _serial = serial();
    let (host, lines) = host_with(policy());
    let dir = scratch("doors");
    // Warm the process (allocator, pool, first compilations).
    for _ in 0..2 {
        for attack in &attacks()[..1] {
            let module = prepare(&host, attack, Door::Call, "1");
            let (_, domain) = through(&host, &module, attack, Door::Call, &dir);
            let _ = domain.unload();
        }
    }
    let resident = resident_bytes();
    for round in 0..3 {
        for attack in attacks() {
            run_doors(&host, &attack, "1", &dir, round == 0);
        }
    }
    // The log flood was cut to the rate, every door together.
    let logged = lines.lock().unwrap().len();
    assert!(logged < 3 * 4 * 200, "{logged} guest lines");
    let grown = resident_bytes().saturating_sub(resident);
    assert!(
        grown < 64 << 20,
        "the process grew by {grown} bytes over three rounds"
    );
}

#[test]
fn the_memory_cap_aborts_through_every_door_when_the_policy_says_so() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        on_memory_limit: OnMemoryLimit::Abort,
        ..policy()
    });
    let dir = scratch("doors-abort");
    for attack in memory_attacks(Some("memory limit")) {
        run_doors(&host, &attack, "1", &dir, true);
    }
}

#[test]
fn an_atomic_wait_ends_through_every_door() {
    let _serial = serial();
    let (host, _lines) = host_with(Policy {
        threads: true,
        allow_infinite_wait: true,
        ..policy()
    });
    let dir = scratch("doors-threads");
    run_doors(&host, &atomic_wait(), "1 1 shared", &dir, true);
}

/// Runs `attack` through the four doors, each promptly stopped (or cut)
/// and, if `count_fds`, leaving the fds where they were.
fn run_doors(
    host: &custody_host::Host,
    attack: &Attack,
    memory: &str,
    dir: &std::path::Path,
    count_fds: bool,
) {
    for door in [
        Door::Start,
        Door::Call,
        Door::Hook,
        Door::Recycle,
        Door::Timer,
    ] {
        let what = format!("{} through {door:?}", attack.name);
        let module = prepare(host, attack, door, memory);
        let baseline = FdBaseline::now();
        let started = Instant::now();
        let (outcome, domain) = through(host, &module, attack, door, dir);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: took {:?}",
            started.elapsed()
        );
        match (attack.error, &outcome) {
            (None, Ok(())) => {}
            (Some(words), Err(text)) => assert!(text.contains(words), "{what}: {text}"),
            (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
        let unloading = Instant::now();
        let _ = domain.unload();
        if std::env::var_os("DOORS_TIMING").is_some() {
            eprintln!(
                "{what}: {:?}, unload {:?}",
                started.elapsed(),
                unloading.elapsed()
            );
        }
        drop(domain);
        if count_fds {
            baseline.assert_back(&what);
        }
    }
}
