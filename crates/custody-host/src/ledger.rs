//! The handle ledger of a domain: what its guests were given and what
//! became of it. It balances: `opened` = `closed_by_guest` +
//! `closed_by_host` + `released_at_recycle` + `released_at_unload` + the
//! handles still live. Counted by the domain's `HandleTable` (every insert,
//! whoever made it) plus what only the domain knows (who closed, which
//! drain released).

use std::sync::atomic::{AtomicU64, Ordering};

use custody_handle::TableCounters;
use serde::Serialize;

/// The handle ledger of a domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Handles put in the domain's table: opened by the guest (`open`,
    /// `dup`, each end of a `pipe`) or given to it by the embedder.
    pub opened: u64,
    /// Handles the guest closed itself.
    pub closed_by_guest: u64,
    /// Handles the host closed before the unload: the embedder's
    /// `Domain::close_handle`, or what a failed start function left. Never
    /// a guest call's: a call checks where its new handle's id goes before
    /// it makes the handle, so none is made and taken back.
    pub closed_by_host: u64,
    /// Handles released by a recycle because the guest never closed them.
    pub released_at_recycle: u64,
    /// Handles released by unload because the guest never closed them.
    pub released_at_unload: u64,
    /// Releases that failed (each fired `releaseHandleFailed`).
    pub release_failures: u64,
    /// How many times the domain was recycled.
    pub recycles: u64,
}

impl Ledger {
    /// `f` of each field of `self` and `other`: `u64::saturating_add` sums
    /// two ledgers, `u64::max` keeps the higher of each count.
    pub(crate) fn zip(self, other: Ledger, f: impl Fn(u64, u64) -> u64) -> Ledger {
        Ledger {
            opened: f(self.opened, other.opened),
            closed_by_guest: f(self.closed_by_guest, other.closed_by_guest),
            closed_by_host: f(self.closed_by_host, other.closed_by_host),
            released_at_recycle: f(self.released_at_recycle, other.released_at_recycle),
            released_at_unload: f(self.released_at_unload, other.released_at_unload),
            release_failures: f(self.release_failures, other.release_failures),
            recycles: f(self.recycles, other.recycles),
        }
    }
}

/// What the domain counts beside its table's counters.
#[derive(Debug, Default)]
pub(crate) struct LedgerCounts {
    pub(crate) closed_by_guest: AtomicU64,
    pub(crate) released_at_recycle: AtomicU64,
    pub(crate) released_at_unload: AtomicU64,
    pub(crate) recycles: AtomicU64,
}

impl LedgerCounts {
    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// The ledger now, with the table's counters.
    pub(crate) fn snapshot(&self, table: TableCounters) -> Ledger {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let closed_by_guest = get(&self.closed_by_guest);
        Ledger {
            opened: table.inserted,
            closed_by_guest,
            closed_by_host: table.closed.saturating_sub(closed_by_guest),
            released_at_recycle: get(&self.released_at_recycle),
            released_at_unload: get(&self.released_at_unload),
            release_failures: table.release_failures,
            recycles: get(&self.recycles),
        }
    }
}
