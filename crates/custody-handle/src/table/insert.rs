//! Putting handles in the table: one value, one shared handle, or several
//! values together (all or none).

use super::slot::Entry;
use super::{Counters, HandleTable};
use crate::error::HandleError;
use crate::id::HandleId;
use crate::release::ReleaseHandle;
use crate::safe_handle::SafeHandle;

impl HandleTable {
    /// Wraps `value` in a new [`SafeHandle`] owned by the table and returns
    /// its id. The table releases it on [`close`](Self::close), on
    /// [`drain`](Self::drain) or when dropped.
    ///
    /// # Errors
    /// [`HandleError::QuotaExceeded`] when the table is full; the value is
    /// then released (never leaked).
    pub fn insert<T: ReleaseHandle>(&self, value: T) -> Result<HandleId, HandleError> {
        self.insert_entries([SafeHandle::new(value)], true)
            .map(|[id]| id)
    }

    /// Inserts `values` together, each as [`insert`](Self::insert) does:
    /// every one gets an id, or none does (a caller that made them
    /// together, such as a pipe's two ends, never holds half of them).
    ///
    /// # Errors
    /// [`HandleError::QuotaExceeded`] when the table has no room for all of
    /// them; every value is then released (never leaked).
    pub fn insert_all<T: ReleaseHandle, const N: usize>(
        &self,
        values: [T; N],
    ) -> Result<[HandleId; N], HandleError> {
        self.insert_entries(values.map(SafeHandle::new), true)
    }

    /// Shares an existing handle under a new id. The table adds a reference,
    /// so the resource stays open while the id is in the table, even if the
    /// caller disposes its handle (lookups then report
    /// [`HandleError::Closed`]).
    ///
    /// # Errors
    /// [`HandleError::Closed`] if the handle is closed,
    /// [`HandleError::QuotaExceeded`] when the table is full.
    pub fn insert_handle<T: ReleaseHandle>(
        &self,
        handle: &SafeHandle<T>,
    ) -> Result<HandleId, HandleError> {
        self.insert_entries([handle.clone()], false).map(|[id]| id)
    }

    /// The one way into the table: the table's reference on each handle,
    /// then slots for all of them under one lock, or none (`created`: the
    /// table made the handles, so nothing else owns one that gets no slot,
    /// and it is released now).
    fn insert_entries<T: ReleaseHandle, const N: usize>(
        &self,
        handles: [SafeHandle<T>; N],
        created: bool,
    ) -> Result<[HandleId; N], HandleError> {
        // The table's references, dropped by `Entry::release`. Only a
        // shared handle (`insert_handle`) can refuse one (it is closed):
        // then the references taken are given back, and dropping
        // `handles` releases what the table made.
        for (i, handle) in handles.iter().enumerate() {
            if let Err(error) = handle.dangerous_add_ref() {
                for taken in &handles[..i] {
                    let _ = taken.dangerous_release();
                }
                return Err(error);
            }
        }
        let entries = handles.map(|handle| Entry::new(handle, created));
        let kinds = std::array::from_fn(|i| entries[i].handle_type());
        match self.slots.allocate(self.limit, kinds) {
            Ok(vacant) => {
                let mut entries = entries.into_iter();
                Ok(vacant.map(|vacant| {
                    Counters::add(&self.counters.inserted);
                    vacant.fill(entries.next().expect("one entry per slot"))
                }))
            }
            Err(error) => {
                for entry in entries {
                    let _ = self.release_entry(entry, HandleId::NULL);
                }
                Err(error)
            }
        }
    }
}
