//! The type-erased operations the table needs on the `SafeHandle<T>` an
//! entry holds (its type id and resource pointer are kept inline in the
//! entry; these are the calls that need the handle itself).

use std::any::Any;

use crate::error::HandleError;
use crate::release::ReleaseHandle;
use crate::safe_handle::SafeHandle;

/// A `SafeHandle<T>` of any `T`, as a table entry holds it.
pub(super) trait Erased: Any + Send + Sync {
    fn raw_value(&self) -> u64;
    /// Whether a lookup may hand it out: neither closed nor disposed.
    fn is_usable(&self) -> bool;
    /// Drops the table's reference (and, for entries the table created, the
    /// creation reference), releasing the resource if nothing else holds it.
    fn release_from_table(&self, created: bool) -> Result<(), HandleError>;
}

impl<T: ReleaseHandle> Erased for SafeHandle<T> {
    fn raw_value(&self) -> u64 {
        SafeHandle::raw_value(self)
    }
    fn is_usable(&self) -> bool {
        SafeHandle::is_usable(self)
    }
    fn release_from_table(&self, created: bool) -> Result<(), HandleError> {
        if created {
            // Cannot release: the table's own reference is still held.
            self.dispose()?;
        }
        self.dangerous_release()
    }
}
