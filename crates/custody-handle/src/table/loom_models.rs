//! Loom models of the slot word: a lookup's pin racing close, and two closes
//! racing each other.

use std::io;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use super::*;

struct Counted(Arc<AtomicUsize>);

impl ReleaseHandle for Counted {
    fn is_invalid(&self) -> bool {
        false
    }
    fn release_handle(&self) -> io::Result<()> {
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
    fn raw_value(&self) -> u64 {
        9
    }
}

/// A lookup racing close: the pinned resource is never released under the
/// guard, the release happens exactly once, and the slot is free afterwards.
#[test]
fn lookup_racing_close() {
    crate::diagnostics::capture_for_tests();
    loom::model(|| {
        let releases = Arc::new(AtomicUsize::new(0));
        let table = Arc::new(HandleTable::new());
        let id = table.insert(Counted(Arc::clone(&releases))).unwrap();
        let (t2, r2) = (Arc::clone(&table), Arc::clone(&releases));
        let reader = thread::spawn(move || {
            if let Ok(guard) = t2.get::<Counted>(id) {
                assert_eq!(r2.load(SeqCst), 0, "released while pinned");
                drop(guard);
            }
        });
        table.close(id).unwrap();
        reader.join().unwrap();
        assert_eq!(releases.load(SeqCst), 1);
        assert_eq!(table.len(), 0);
    });
}

/// Two closes of one id: exactly one succeeds, the other is stale, one
/// release.
#[test]
fn close_racing_close() {
    crate::diagnostics::capture_for_tests();
    loom::model(|| {
        let releases = Arc::new(AtomicUsize::new(0));
        let table = Arc::new(HandleTable::new());
        let id = table.insert(Counted(Arc::clone(&releases))).unwrap();
        let t2 = Arc::clone(&table);
        let other = thread::spawn(move || t2.close(id).is_ok());
        let mine = table.close(id).is_ok();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one close succeeds");
        assert_eq!(releases.load(SeqCst), 1);
    });
}
