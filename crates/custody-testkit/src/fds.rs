//! Counting the process's open file descriptors: the leak check every
//! resource test ends with.

use std::fs;
use std::sync::{Mutex, MutexGuard};

/// How many fds the process has open now (`/proc/self/fd`).
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Whether `raw` is an open fd of this process.
pub fn fd_is_open(raw: i32) -> bool {
    fs::symlink_metadata(format!("/proc/self/fd/{raw}")).is_ok()
}

/// Tests that count fds take this, so no other test in the binary opens or
/// closes fds meanwhile.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fd count at one moment, to compare with later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBaseline(pub usize);

impl FdBaseline {
    /// The count now.
    pub fn now() -> Self {
        FdBaseline(open_fds())
    }

    /// Panics, listing what is open, unless the count is back to the
    /// baseline.
    #[track_caller]
    pub fn assert_back(self, what: &str) {
        let now = open_fds();
        if now != self.0 {
            let open: Vec<String> = fs::read_dir("/proc/self/fd")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            panic!(
                "{what}: {now} fds open, baseline {}; open now: {open:?}",
                self.0
            );
        }
    }
}
