//! A lookup with `..` beneath a pre-open survives renames elsewhere: the
//! kernel fails `openat2(RESOLVE_BENEATH)` with `EAGAIN` when any rename on
//! the system races a path walk that crosses `..`, and custody retries it
//! (bounded) instead of handing a legitimate open an error. Both ABIs open
//! through the same `openat2`.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use custody_host::DomainConfig;
use custody_testkit::*;

const READ: i32 = 1;

#[test]
fn opens_through_dot_dot_succeed_while_renames_race_them() {
    let _serial = serial();
    let dir = scratch("rename-race");
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("f.txt"), "x").unwrap();
    let churn = scratch("rename-churn");
    fs::write(churn.join("a"), "").unwrap();
    let host = host();
    let path = "data/sub/../f.txt";
    let (domain, _m) = driver_domain(
        &host,
        DomainConfig::new().preopen("data", &dir),
        &data(1024, path),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let renamers: Vec<_> = (0..2)
        .map(|i| {
            let (stop, churn) = (Arc::clone(&stop), churn.clone());
            thread::spawn(move || {
                let (a, b) = (churn.join(format!("a{i}")), churn.join(format!("b{i}")));
                fs::write(&a, "").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    fs::rename(&a, &b).unwrap();
                    fs::rename(&b, &a).unwrap();
                }
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(2);
    let mut opened = 0;
    let mut failures = Vec::new();
    while Instant::now() < until {
        let code = call(&domain, "abi_open", &[1024, path.len() as i32, READ, 0]);
        if code == 0 {
            opened += 1;
            assert_eq!(
                call(&domain, "abi_close", &[call(&domain, "load", &[0])]),
                0
            );
        } else {
            failures.push((code, call(&domain, "abi_last_error", &[])));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for renamer in renamers {
        renamer.join().unwrap();
    }
    domain.unload().unwrap();
    assert!(opened > 100, "only {opened} opens ran");
    assert!(
        failures.is_empty(),
        "{} of {} opens failed (code, errno): {:?}",
        failures.len(),
        opened + failures.len(),
        &failures[..failures.len().min(5)]
    );
}
