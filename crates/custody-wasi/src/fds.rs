//! The WASI fd model (SPEC W1): which resource a WASI fd names, and the
//! per-fd state WASI keeps beside the handle table.
//!
//! - fds 0, 1, 2 are stdio and the pre-opens are 3, 4, ... in the order
//!   the domain was given them: the **small fds**, a short list of their
//!   own. wasi-libc finds the pre-opens by scanning from 3 until `EBADF`.
//! - every other fd is the raw [`HandleId`] of a [`Fd`] handle in the
//!   domain's table. Ids are at least 2^20 by construction (generation 1
//!   and up, above 20 bits of slot), so they never meet a small fd; they
//!   are positive `i32`s and never reused. A number below 2^20 that is no
//!   small fd is `EBADF` quietly (the pre-open scan ends that way); a stale
//!   or forged id is `EBADF` and fires `staleHandleUse` (the table's
//!   lookup does).
//! - per-fd state (the guest's `NONBLOCK`) lives in a side map keyed by
//!   fd number, removed when the
//!   fd is closed (`fd_close`, the custody ABI's `close`, `fd_renumber`)
//!   and pruned of ids the table no longer holds before it grows past the
//!   handle quota. An fd without an entry has the defaults.
//! - no rights are kept: as in wasmtime-wasi's preview 1, rights are
//!   advisory (what an fd can do is how it was opened; see `fd_meta.rs`).

use std::collections::{HashMap, HashSet};

use custody_handle::{Fd, HandleId, HandleTable, TableRef};

use crate::errno::from_handle_error;
use crate::types::Errno;

/// The first fd number that can be a table id.
const FIRST_ID: u32 = 1 << custody_handle::SLOT_BITS;

/// What a small fd names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Small {
    /// stdin, stdout or stderr.
    Stdio(usize),
    /// The domain's pre-open at this index.
    Preopen(usize),
    /// A table handle renumbered onto a small fd.
    Handle(HandleId),
}

/// What a WASI fd resolved to, for the rest of one host call.
pub(crate) enum Target<'t> {
    Stdio(usize),
    Preopen(usize),
    /// A table handle, pinned.
    Handle(TableRef<'t, Fd>),
}

/// What WASI keeps of one fd beyond the handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FdState {
    /// The guest asked for `NONBLOCK`: a read or write that would wait
    /// returns `EAGAIN` instead.
    pub(crate) nonblock: bool,
}

/// A domain's WASI fds: the small fds and the side map.
#[derive(Debug)]
pub(crate) struct WasiFds {
    small: Vec<Option<Small>>,
    state: HashMap<u32, FdState>,
}

impl WasiFds {
    /// Stdio and `preopens` pre-opens, all open.
    pub(crate) fn new(preopens: usize) -> Self {
        let small = (0..3)
            .map(Small::Stdio)
            .chain((0..preopens).map(Small::Preopen))
            .map(Some)
            .collect();
        WasiFds {
            small,
            state: HashMap::new(),
        }
    }

    /// The small fd `fd` names, if it is one and open.
    pub(crate) fn small(&self, fd: u32) -> Option<Small> {
        self.small.get(fd as usize).copied().flatten()
    }

    /// Resolves `fd`, pinning a table handle for the caller's use.
    pub(crate) fn resolve<'t>(&self, table: &'t HandleTable, fd: i32) -> Result<Target<'t>, Errno> {
        let fd = fd as u32;
        match self.small(fd) {
            Some(Small::Stdio(i)) => Ok(Target::Stdio(i)),
            Some(Small::Preopen(i)) => Ok(Target::Preopen(i)),
            Some(Small::Handle(id)) => pin(table, id),
            // Below the first id: never a table id, so not a stale use.
            None if fd < FIRST_ID => Err(Errno::Badf),
            None => pin(table, HandleId::from_raw(fd)),
        }
    }

    /// The state of `fd` (the defaults if it has none).
    pub(crate) fn state(&self, fd: i32) -> FdState {
        self.state.get(&(fd as u32)).copied().unwrap_or_default()
    }

    /// Sets the state of `fd`, an fd resolved in this call. Before the map
    /// grows past the handle quota, entries of ids the table no longer
    /// holds (closed by the embedder) go.
    pub(crate) fn set_state(&mut self, table: &HandleTable, fd: i32, state: FdState) {
        let fd = fd as u32;
        if state == FdState::default() {
            self.state.remove(&fd);
            return;
        }
        if !self.state.contains_key(&fd) && self.state.len() >= table.limit() + self.small.len() {
            let live: HashSet<u32> = table.live_ids().into_iter().map(HandleId::raw).collect();
            self.state
                .retain(|fd, _| *fd < FIRST_ID || live.contains(fd));
        }
        self.state.insert(fd, state);
    }

    /// Forgets the state of a closed fd.
    pub(crate) fn forget(&mut self, fd: u32) {
        self.state.remove(&fd);
    }

    /// Closes small fd `fd`: what it named, if it was open.
    pub(crate) fn close_small(&mut self, fd: u32) -> Option<Small> {
        let closed = self.small.get_mut(fd as usize)?.take();
        self.forget(fd);
        closed
    }

    /// Makes small fd `to` name `what` (a renumber onto it).
    pub(crate) fn put_small(&mut self, to: u32, what: Small) {
        if let Some(slot) = self.small.get_mut(to as usize) {
            *slot = Some(what);
        }
    }

    /// Moves `from`'s state to `to` (renumbering).
    pub(crate) fn move_state(&mut self, from: u32, to: u32) {
        match self.state.remove(&from) {
            Some(state) => self.state.insert(to, state),
            None => self.state.remove(&to),
        };
    }

    /// How many small fds there are (open or closed).
    pub(crate) fn small_len(&self) -> usize {
        self.small.len()
    }

    /// How many pre-opens the domain was given.
    pub(crate) fn preopens(&self) -> usize {
        self.small.len() - 3
    }
}

fn pin(table: &HandleTable, id: HandleId) -> Result<Target<'_>, Errno> {
    table
        .get::<Fd>(id)
        .map(Target::Handle)
        .map_err(|e| from_handle_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_fds_and_ids_never_meet() {
        // A forged id fires `staleHandleUse`: into the test's output.
        custody_handle::diagnostics::capture_for_tests();
        let table = HandleTable::new();
        let mut fds = WasiFds::new(2);
        assert!(matches!(fds.resolve(&table, 1), Ok(Target::Stdio(1))));
        assert!(matches!(fds.resolve(&table, 4), Ok(Target::Preopen(1))));
        assert!(matches!(fds.resolve(&table, 5), Err(Errno::Badf)));
        assert!(matches!(fds.resolve(&table, -1), Err(Errno::Badf)));
        let id = table
            .insert(Fd::from(std::fs::File::open("/dev/null").unwrap()))
            .unwrap();
        assert!(id.raw() >= FIRST_ID);
        assert!(matches!(
            fds.resolve(&table, id.raw() as i32),
            Ok(Target::Handle(_))
        ));
        assert_eq!(fds.close_small(1), Some(Small::Stdio(1)));
        assert!(matches!(fds.resolve(&table, 1), Err(Errno::Badf)));
        assert_eq!(fds.close_small(1), None);
    }

    #[test]
    fn the_side_map_never_outgrows_the_quota() {
        let table = HandleTable::with_limit(2);
        let mut fds = WasiFds::new(0);
        let nonblock = FdState { nonblock: true };
        for _ in 0..50 {
            let id = table
                .insert(Fd::from(std::fs::File::open("/dev/null").unwrap()))
                .unwrap();
            fds.set_state(&table, id.raw() as i32, nonblock);
            assert!(fds.state(id.raw() as i32).nonblock);
            // Closed behind WASI's back (by the embedder): never forgotten.
            table.close(id).unwrap();
            assert!(fds.state.len() <= table.limit() + fds.small_len());
        }
    }
}
