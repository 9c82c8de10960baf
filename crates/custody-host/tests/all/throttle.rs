//! The throttle of a long call (`throttle_after`, `throttle_share`): a
//! guest that spins past the threshold gets its share of a core, not a
//! core, and an abort or the deadline still ends it at once.

use std::time::{Duration, Instant};

use custody_host::{CallError, DomainConfig, Policy};
use custody_testkit::{FdBaseline, host_with, serial};
use rustix::time::{ClockId, clock_gettime};

const SPIN: &str = r#"(module (func (export "spin") (loop $l (br $l))))"#;

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn throttled(deadline: Option<Duration>, after: Duration, share: u8) -> Policy {
    Policy {
        deadline,
        throttle_after: Some(after),
        throttle_share: share,
        ..Policy::default()
    }
}

#[test]
fn a_spinning_call_past_the_threshold_gets_its_share_of_a_core() {
    let _serial = serial();
    let fds = FdBaseline::now();
    let deadline = Duration::from_millis(400);
    let policy = throttled(Some(deadline), Duration::from_millis(20), 25);
    let (host, _lines) = host_with(policy);
    let module = host.compile(SPIN.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("spin", &module).unwrap();
    let (began, cpu_before) = (Instant::now(), thread_cpu());
    let result = domain.call("spin", &[]);
    let (wall, cpu) = (began.elapsed(), thread_cpu() - cpu_before);
    assert!(
        matches!(result, Err(CallError::Aborted { .. })),
        "the deadline still ends it: {result:?}"
    );
    assert!(wall >= deadline, "ended early: {wall:?}");
    // 20 ms whole, then a quarter of the rest: about 30 % of the wall
    // time. A loaded machine gives it less, never more.
    assert!(
        cpu.as_secs_f64() <= 0.6 * wall.as_secs_f64(),
        "a throttled spin used {cpu:?} of CPU in {wall:?}"
    );
    domain.unload().unwrap();
    drop(host);
    fds.assert_back("after a throttled call");
}

#[test]
fn an_abort_ends_a_throttled_call_in_its_pause() {
    let _serial = serial();
    // No deadline: only the abort ends it.
    let (host, _lines) = host_with(throttled(None, Duration::ZERO, 10));
    let module = host.compile(SPIN.as_bytes()).unwrap();
    let domain = host.create_domain(DomainConfig::new()).unwrap();
    domain.load("spin", &module).unwrap();
    std::thread::scope(|scope| {
        let call = scope.spawn(|| domain.call("spin", &[]));
        std::thread::sleep(Duration::from_millis(100));
        let aborted = Instant::now();
        domain.abort();
        let result = call.join().unwrap();
        assert!(
            matches!(result, Err(CallError::Aborted { .. })),
            "{result:?}"
        );
        assert!(
            aborted.elapsed() < Duration::from_secs(2),
            "the pause did not end with the abort: {:?}",
            aborted.elapsed()
        );
    });
    domain.unload().unwrap();
}

#[test]
fn the_share_is_checked_and_the_policy_file_sets_both_keys() {
    let _serial = serial();
    let refused = throttled(None, Duration::ZERO, 5).validate().unwrap_err();
    assert!(refused.0.contains("throttle_share"), "{refused}");
    let policy = Policy::from_toml("throttle_after_ms = 50\nthrottle_share = 40").unwrap();
    assert_eq!(policy.throttle_after, Some(Duration::from_millis(50)));
    assert_eq!(policy.throttle_share, 40);
    assert_eq!(Policy::default().throttle_after, None, "off by default");
    let refused = Policy::from_toml("throttle_share = 101").unwrap_err();
    assert!(refused.0.contains("throttle_share"), "{refused}");
}
