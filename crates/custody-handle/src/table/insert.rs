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
        self.insert_entry(SafeHandle::new(value), true)
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
        let mut entries = Vec::with_capacity(N);
        for value in values {
            let handle = SafeHandle::new(value);
            // The table's reference: dropped by `Entry::release`.
            if let Err(error) = handle.dangerous_add_ref() {
                self.release_all(entries);
                return Err(error);
            }
            entries.push(Entry::new(handle, true));
        }
        let kinds: [&'static str; N] = std::array::from_fn(|i| entries[i].handle_type());
        match self.slots.allocate(self.limit, kinds) {
            Ok(vacant) => {
                let mut entries = entries.into_iter();
                Ok(vacant.map(|vacant| {
                    Counters::add(&self.counters.inserted);
                    vacant.fill(entries.next().expect("one entry per slot"))
                }))
            }
            Err(error) => {
                self.release_all(entries);
                Err(error)
            }
        }
    }

    /// Releases entries that never got a slot: nothing else owns a handle
    /// the table created.
    fn release_all(&self, entries: Vec<Entry>) {
        for entry in entries {
            let _ = self.release_entry(entry, HandleId::NULL);
        }
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
        self.insert_entry(handle.clone(), false)
    }

    fn insert_entry<T: ReleaseHandle>(
        &self,
        handle: SafeHandle<T>,
        created: bool,
    ) -> Result<HandleId, HandleError> {
        // The table's reference: dropped by `Entry::release`.
        handle.dangerous_add_ref()?;
        let entry = Entry::new(handle, created);
        let [vacant] = match self.slots.allocate(self.limit, [entry.handle_type()]) {
            Ok(vacant) => vacant,
            Err(error) => {
                // Nothing else owns a handle we created: release it now.
                let _ = self.release_entry(entry, HandleId::NULL);
                return Err(error);
            }
        };
        let id = vacant.fill(entry);
        Counters::add(&self.counters.inserted);
        Ok(id)
    }
}
