//! Test support shared by custody's crates (`publish = false`): fd
//! baselines, guest drivers and hosts for tests, quiet diagnostics,
//! reproducible randomness, scratch directories, and the layering check.
//!
//! # Module map
//! Bottom first: a module imports only modules listed above it, and this
//! file sits on top (`tests/layering.rs` declares the same order).
//!
//! | module | owns |
//! | --- | --- |
//! | `fds` | fd baselines: the open fds, before and after |
//! | [`layering`] | the layering check: module graphs, cycles, declared orders |
//! | `guests` | guest drivers and hosts for tests |
//! | `wasi_guests` | WASI guests and their drivers |
#![deny(missing_docs)]
// `unsafe` is allowed only in the modules that say so (`#![allow(unsafe_code)]`),
// each with a SAFETY argument beside every block: a new one is a visible decision.
#![deny(unsafe_code)]
#![allow(clippy::missing_panics_doc)]

mod fds;
mod guests;
pub mod layering;
mod wasi_guests;

pub use fds::{
    FdBaseline, SERIAL_FIRST, assert_every_test_takes_serial_first, fd_is_open, open_fds,
    open_non_socket_fds, serial, tests_not_beginning_with,
};
pub use guests::*;
pub use wasi_guests::*;

use std::fs;

/// Routes custody's diagnostics through libtest's output capture, so a
/// passing test prints nothing (see `diagnostics::capture_for_tests`). Every
/// helper here that makes a host calls it; call it first in a test that
/// fires diagnostics without one.
pub fn quiet() {
    custody_handle::diagnostics::capture_for_tests();
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "custody-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The seed of a fuzz run: `CUSTODY_FUZZ_SEED`, else from the clock (a
/// failure names it, so the run can be repeated).
pub fn fuzz_seed() -> u64 {
    std::env::var("CUSTODY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// How long a fuzz run lasts: `CUSTODY_FUZZ_SECS` (default 2 s).
pub fn fuzz_duration() -> std::time::Duration {
    let secs = std::env::var("CUSTODY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    std::time::Duration::from_secs_f64(secs)
}

/// Times `iters` calls of `measured`, in blocks of `block` that alternate
/// with as many untimed calls of `other`: a criterion `iter_custom` body
/// for comparing two variants on a shared machine. Its load changes from
/// one second to the next, so two benches run one after the other compare
/// two loads as much as two code paths; interleaved, both variants run
/// under the same conditions.
pub fn paired(
    iters: u64,
    block: u64,
    measured: impl Fn(),
    other: impl Fn(),
) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(block.max(1));
        let start = std::time::Instant::now();
        for _ in 0..n {
            measured();
        }
        total += start.elapsed();
        for _ in 0..n {
            other();
        }
        left -= n;
    }
    total
}

/// xorshift64*: reproducible randomness for hostile arguments and chaos.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// One of `from`, at random.
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next_u64() % from.len() as u64) as usize]
    }
}
