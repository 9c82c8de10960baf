//! Counting the process's open file descriptors: the leak check every
//! resource test ends with.

use std::fs;

// The count and the lock live with the resource doubles, so custody-handle's
// own tests (which cannot depend on this crate) share them.
pub use custody_handle::testing::{
    SERIAL_FIRST, assert_every_test_takes_serial_first, fd_is_open, open_fds, serial,
    tests_not_beginning_with,
};

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

/// How many of the process's open fds are not sockets: a count that
/// connections coming and going (an HTTP client's pool, a server's
/// accepts) leave alone, so a test of what a request itself opens (pipes,
/// eventfds, files) can sample it while requests are served.
pub fn open_non_socket_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .filter(|target| !target.to_string_lossy().starts_with("socket:"))
        .count()
}
