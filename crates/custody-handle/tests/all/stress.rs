//! Exactly-once release on real threads: over a million random operations on
//! a few shared handles, counting releases.
//!
//! Half the handles also suffer the misuse .NET allows, a release without a
//! matching add-ref. Such a release consumes *some* reference, possibly one
//! another thread holds through a guard, so on those handles a release while
//! a guard is held is the documented consequence of the misuse, not a bug:
//! the "never released under a guard" and "a release after an add-ref
//! succeeds" checks run on the other half, and the "released exactly once"
//! check on all of them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;

use custody_handle::testing::{Counted, serial};
use custody_handle::{HandleError, SafeHandle};

/// xorshift64*: a tiny deterministic generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const THREADS: usize = 4;
const HANDLES: usize = 4;
const OPS_PER_THREAD_PER_ROUND: usize = 1_000;
const ROUNDS: usize = 260; // 4 threads x 1,000 ops x 260 rounds = 1,040,000 ops

/// One of the shared handles: the odd ones are `misused` (random releases
/// without add-ref are done on them); `set_invalid` records that a thread
/// marked it invalid.
struct Shared {
    handle: SafeHandle<Counted>,
    misused: bool,
    set_invalid: AtomicBool,
}

fn assert_live(h: &Shared) {
    if h.misused {
        // A misuse elsewhere may have consumed this thread's reference.
        return;
    }
    assert_eq!(
        h.handle.dangerous_get_handle().releases(),
        0,
        "released while a reference was held"
    );
}

fn random_op(shared: &Shared, rng: &mut Rng, counted: &AtomicUsize) {
    let h = &shared.handle;
    counted.fetch_add(1, SeqCst);
    match rng.next() % 1000 {
        0..=399 => {
            if let Ok(guard) = h.acquire() {
                assert_live(shared);
                drop(guard);
            }
        }
        400..=699 => {
            let Ok(()) = h.dangerous_add_ref() else {
                return;
            };
            assert_live(shared);
            let released = h.dangerous_release();
            // On a misused handle a misuse may have consumed this reference
            // already: then no reference is left (`Closed`).
            if !shared.misused {
                released.unwrap();
            }
        }
        700..=899 => drop(h.clone()),
        900..=996 => match h.dispose() {
            Ok(()) | Err(HandleError::Closed) => {}
            Err(e) => panic!("dispose: {e}"),
        },
        997 => {
            shared.set_invalid.store(true, SeqCst);
            h.set_handle_as_invalid();
        }
        _ if shared.misused => {
            // Release without add-ref: consumes the creation reference, as in
            // .NET; fails with Closed once nothing is left.
            let _ = h.dangerous_release();
        }
        _ => {}
    }
}

#[test]
fn a_million_random_operations_release_each_handle_exactly_once() {
    let _serial = serial();
    custody_handle::diagnostics::capture_for_tests();
    let ops = AtomicUsize::new(0);
    let mut total_releases = 0;
    for round in 0..ROUNDS {
        let handles: Vec<Shared> = (0..HANDLES)
            .map(|i| Shared {
                handle: SafeHandle::new(Counted::new()),
                misused: i % 2 == 1,
                set_invalid: AtomicBool::new(false),
            })
            .collect();
        thread::scope(|s| {
            for t in 0..THREADS {
                let (handles, ops) = (&handles, &ops);
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((round * THREADS + t) as u64 + 1));
                    for _ in 0..OPS_PER_THREAD_PER_ROUND {
                        let h = &handles[(rng.next() % HANDLES as u64) as usize];
                        random_op(h, &mut rng, ops);
                    }
                });
            }
        });
        for shared in handles {
            let h = &shared.handle;
            let _ = h.dispose();
            let releases = h.dangerous_get_handle().releases();
            assert!(h.is_closed());
            if shared.set_invalid.load(SeqCst) {
                assert!(releases <= 1, "released {releases} times");
            } else {
                assert_eq!(releases, 1, "released {releases} times");
            }
            total_releases += releases;
        }
    }
    assert!(ops.load(SeqCst) >= 1_000_000);
    assert!(total_releases > 0);
}
