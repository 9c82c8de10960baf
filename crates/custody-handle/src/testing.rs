//! Test support (the `testing` feature; this crate's own tests always have
//! it): resource doubles, the fd count, and the lock that keeps fd counts
//! right.
//!
//! Resource doubles release nothing real, so a test can count, fail or
//! inspect releases without opening anything:
//!
//! - [`Counted`]: counts its releases (in a counter of its own, or one
//!   shared by many), remembers whether and on which thread it was
//!   released, and can be made to fail its release, to be invalid, or to
//!   carry a given raw value; a second release panics.
//! - [`AnotherKind`]: a [`Counted`] of another type, for a table's
//!   wrong-kind lookups.
//! - [`Inert`]: releases nothing and never fails; for tests of the handle
//!   itself.
//!
//! A test that counts the process's open fds ([`open_fds`]) takes
//! [`serial`] first, and so does every test that may open or close fds
//! beside it: a count is right only when nothing else runs meanwhile. In a
//! test binary where every test takes it, [`tests_not_beginning_with`]
//! checks that none forgot.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

use crate::ReleaseHandle;

/// The errno a failing [`Counted`]'s release returns (`EBADF`: what a
/// double close of an fd returns).
pub const FAILED_RELEASE_ERRNO: i32 = libc::EBADF;

/// A resource that counts its releases; see the [module](self) doc.
#[derive(Debug, Default)]
pub struct Counted {
    releases: Arc<AtomicUsize>,
    released: AtomicBool,
    released_on: Mutex<Option<ThreadId>>,
    raw: u64,
    fails: bool,
    invalid: bool,
    tag: AtomicU64,
}

/// Distinct raw values, so diagnostics about different doubles can be told
/// apart.
fn next_raw() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x5AFE_0000);
    NEXT.fetch_add(1, SeqCst)
}

impl Counted {
    /// A resource with a counter of its own and a raw value no other
    /// [`Counted::new`] has.
    pub fn new() -> Self {
        Counted {
            raw: next_raw(),
            ..Counted::default()
        }
    }

    /// A resource counting its releases into `releases`, which several
    /// resources may share (and which outlives the resource).
    pub fn counting_into(releases: &Arc<AtomicUsize>) -> Self {
        Counted {
            releases: Arc::clone(releases),
            ..Counted::new()
        }
    }

    /// A resource and its release counter, kept apart so the count can be
    /// read after the resource is gone.
    pub fn with_counter() -> (Self, Arc<AtomicUsize>) {
        let counted = Counted::new();
        let releases = Arc::clone(&counted.releases);
        (counted, releases)
    }

    /// Makes the release fail with [`FAILED_RELEASE_ERRNO`] (it is counted
    /// all the same).
    #[must_use]
    pub fn failing(self) -> Self {
        Counted {
            fails: true,
            ..self
        }
    }

    /// Makes the resource invalid (`is_invalid`), as a null fd is: never
    /// released.
    #[must_use]
    pub fn invalid(self) -> Self {
        Counted {
            invalid: true,
            ..self
        }
    }

    /// Sets the raw value diagnostics show.
    #[must_use]
    pub fn with_raw(self, raw: u64) -> Self {
        Counted { raw, ..self }
    }

    /// How many releases the counter has seen (of every resource sharing
    /// it).
    pub fn releases(&self) -> usize {
        self.releases.load(SeqCst)
    }

    /// The release counter itself, to read after the resource is gone.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.releases)
    }

    /// Whether this resource was released.
    pub fn was_released(&self) -> bool {
        self.released.load(SeqCst)
    }

    /// The thread that released this resource, if one did.
    pub fn released_on(&self) -> Option<ThreadId> {
        *self
            .released_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A number the test attaches after making the resource (say, the id a
    /// table issued it as), read back through a guard.
    pub fn tag(&self) -> u64 {
        self.tag.load(SeqCst)
    }

    /// Sets [`tag`](Self::tag).
    pub fn set_tag(&self, tag: u64) {
        self.tag.store(tag, SeqCst);
    }
}

impl ReleaseHandle for Counted {
    fn is_invalid(&self) -> bool {
        self.invalid
    }

    /// Counts the release; panics if this resource was released before
    /// (the one thing a handle must never do).
    fn release_handle(&self) -> io::Result<()> {
        assert!(!self.released.swap(true, SeqCst), "released twice");
        self.releases.fetch_add(1, SeqCst);
        *self
            .released_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(thread::current().id());
        if self.fails {
            Err(io::Error::from_raw_os_error(FAILED_RELEASE_ERRNO))
        } else {
            Ok(())
        }
    }

    fn raw_value(&self) -> u64 {
        self.raw
    }
}

/// A [`Counted`] of another type, for lookups of the wrong kind.
#[derive(Debug, Default)]
pub struct AnotherKind(pub Counted);

impl ReleaseHandle for AnotherKind {
    fn is_invalid(&self) -> bool {
        self.0.is_invalid()
    }

    fn release_handle(&self) -> io::Result<()> {
        self.0.release_handle()
    }

    fn raw_value(&self) -> u64 {
        self.0.raw_value()
    }
}

/// A resource that releases nothing and never fails.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inert;

impl ReleaseHandle for Inert {
    fn is_invalid(&self) -> bool {
        false
    }

    fn release_handle(&self) -> io::Result<()> {
        Ok(())
    }

    fn raw_value(&self) -> u64 {
        0
    }
}

/// How many fds the process has open now (`/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Whether `raw` is an open fd of this process.
pub fn fd_is_open(raw: i32) -> bool {
    std::fs::symlink_metadata(format!("/proc/self/fd/{raw}")).is_ok()
}

/// The process's test lock: tests that count fds take it, so no other test
/// opens or closes fds meanwhile (a test that panicked holding it does not
/// poison it for the rest).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The statement every test of a binary that counts fds begins with.
pub const SERIAL_FIRST: &str = "let _serial = serial();";

/// Asserts that every `#[test]` in the `.rs` files of `dir` begins with
/// [`SERIAL_FIRST`], and that there are at least `at_least` of them (so a
/// wrong `dir` does not pass by finding none): tests that share one
/// process and count its fds must not run beside each other.
///
/// # Panics
/// Naming each test that does not, or if too few were found.
#[track_caller]
pub fn assert_every_test_takes_serial_first(dir: &Path, at_least: usize) {
    let (tests, without) = tests_not_beginning_with(dir, SERIAL_FIRST);
    assert!(
        tests >= at_least,
        "{tests} tests found in {}",
        dir.display()
    );
    assert!(
        without.is_empty(),
        "tests that do not begin with `{SERIAL_FIRST}`: {without:#?}"
    );
}

/// The `#[test]` functions in the `.rs` files of `dir` whose first
/// statement is not `statement` (as `file: fn name`), and how many tests
/// there are in all: for a test binary whose every test must begin by
/// taking [`serial`].
///
/// # Panics
/// If `dir` or a file in it cannot be read.
pub fn tests_not_beginning_with(dir: &Path, statement: &str) -> (usize, Vec<String>) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let (mut tests, mut without) = (0, Vec::new());
    for path in &files {
        let source =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let lines: Vec<&str> = source.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if line.trim() != "#[test]" {
                continue;
            }
            tests += 1;
            // The signature, past any other attributes, and the line after
            // its `{`: the first statement.
            let signature = (at..lines.len()).find(|&i| lines[i].trim_start().starts_with("fn "));
            let first = signature
                .and_then(|s| (s..lines.len()).find(|&i| lines[i].trim_end().ends_with('{')))
                .and_then(|open| lines.get(open + 1))
                .map(|l| l.trim());
            if first != Some(statement) {
                let name = signature.map_or("?", |s| lines[s].trim());
                let file = path.file_name().unwrap_or_default().to_string_lossy();
                without.push(format!("{file}: {name}"));
            }
        }
    }
    (tests, without)
}
