//! `HandleTable`: integer ids for handles held across a trust boundary.
//!
//! A guest, a tenant or any other untrusted holder never sees a
//! [`SafeHandle`](crate::SafeHandle); it sees a 32-bit [`HandleId`]. The table maps ids to
//! handles so that no id can ever reach a resource it was not issued for.
//!
//! This module owns the table's API (insert, look up, close, drain, the
//! counters) and its reports; the storage and the slot protocol, with every
//! `unsafe` of the table, are in `slot.rs`; ids and their bit layout are in
//! [`crate::id`].
//!
//! # Invariants
//! - **Id 0 is never issued**: it is the null handle ([`HandleError::Null`]).
//! - **An id names one slot at one generation.** A slot's generation only
//!   grows: when a slot is freed its generation is bumped, and a slot whose
//!   generation would pass [`MAX_GENERATION`](crate::MAX_GENERATION) is retired, never reused. So a
//!   stale id can never reach a recycled slot: the seeds' recycled-handle
//!   hazard (a double close that closes an unrelated resource which reused
//!   the value) is impossible by construction. Using a stale id fires
//!   `staleHandleUse` and returns [`HandleError::Stale`].
//! - **Lookups take no lock.** A lookup pins the slot with one compare-and-swap
//!   on the slot's word and returns a [`TableRef`] guard; dropping it unpins
//!   with one atomic subtraction. Inserts and removals take a mutex (they
//!   allocate); reads never do. Slots are cache-line aligned, so lookups of
//!   different ids on different threads do not contend.
//! - **The table holds one reference on every handle it contains**, taken on
//!   insert. While a slot is pinned its entry cannot be removed, so that
//!   reference stands and the resource stays open for the whole use, even if
//!   the handle is closed meanwhile: [`close`](HandleTable::close) makes the
//!   id stale at once and the release happens when the last pin drops. This
//!   is .NET's add-ref around a P/Invoke call, done once per slot instead of
//!   once per handle operation.
//!
//! # The slot word
//! ```text
//!  63             32 31                   2   1   0
//! +-----------------+----------------------+---+---+
//! |   generation    |      pin count       | R | L |
//! +-----------------+----------------------+---+---+
//! ```
//! `L` (live): the slot holds an entry. `R` (removing): the entry has been
//! closed; new pins are refused and the thread that drops the pin count to
//! zero (or the closer, if it already is zero) takes the entry out, bumps the
//! generation and frees the slot. Every step is a CAS or RMW on this one word,
//! so exactly one thread finalizes.
//!
//! # Counters
//! [`HandleTable::counters`] reports what the table has done, for a ledger:
//! handles inserted, closed through [`close`](HandleTable::close), removed by
//! [`drain`](HandleTable::drain), and releases that failed, wherever they
//! ran (close, drain, the last [`TableRef`]'s drop, or a value refused by the
//! quota). They are Relaxed atomics on their own cache line, touched only by
//! inserts and removals: lookups never see them.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::diagnostics;
use crate::error::HandleError;
use crate::id::{HandleId, MAX_SLOTS};
use crate::release::{ReleaseHandle, format_raw};

mod erased;
mod insert;
mod kinds;
mod slot;

use slot::{Entry, Pin, PinError, Pinned, Removal, Slot, SlotOwner, Slots};

/// What [`HandleTable::close`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The table's reference was dropped now (the resource was released if no
    /// one else holds it).
    Released,
    /// The id is stale already; the release waits for the last [`TableRef`]
    /// on it to drop.
    Deferred,
}

/// A release that failed during [`HandleTable::drain`] or `close`.
#[derive(Debug)]
pub struct ReleaseFailure {
    /// The id the handle had.
    pub id: HandleId,
    /// Its resource type.
    pub handle_type: &'static str,
    /// Its raw value.
    pub raw_value: u64,
    /// What the release returned.
    pub error: HandleError,
}

/// What [`HandleTable::drain`] did.
#[derive(Debug, Default)]
pub struct DrainReport {
    /// Entries removed and released (or handed back to a shared owner).
    pub released: usize,
    /// Entries whose release failed (`releaseHandleFailed` has fired for each).
    pub failed: Vec<ReleaseFailure>,
    /// Entries still pinned by a [`TableRef`]: their ids are stale now and the
    /// release happens when the last guard drops.
    pub deferred: usize,
}

/// What a [`HandleTable`] has done since it was created: the numbers a
/// handle ledger is built from. See [`HandleTable::counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounters {
    /// Handles inserted, by [`insert`](HandleTable::insert) and
    /// [`insert_handle`](HandleTable::insert_handle).
    pub inserted: u64,
    /// Handles closed through [`close`](HandleTable::close) (released now or
    /// deferred to the last guard).
    pub closed: u64,
    /// Handles removed by [`drain`](HandleTable::drain) (and so by dropping
    /// the table), released, failed or deferred.
    pub drained: u64,
    /// Releases run by the table that failed: in `close`, in `drain`, in the
    /// drop of the last [`TableRef`] of a closed id, or of a value refused
    /// by the quota.
    pub release_failures: u64,
}

/// The live counters, on a line of their own: only inserts and removals
/// write them, and a lookup never reads them. Padded on both sides rather
/// than aligned: an over-aligned table would make whatever holds it an
/// aligned allocation, several times the cost of a plain one.
#[derive(Default)]
#[repr(C)]
struct Counters {
    _before: LinePad,
    inserted: AtomicU64,
    closed: AtomicU64,
    drained: AtomicU64,
    release_failures: AtomicU64,
    _after: LinePad,
}

/// A cache line's worth of padding.
#[derive(Default)]
struct LinePad {
    _bytes: [u64; 8],
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A concurrent table of handles addressed by generational 32-bit ids.
///
/// See the module documentation for the invariants. Dropping the table
/// drains it.
///
/// ```
/// use custody_handle::{Fd, HandleError, HandleTable};
/// # custody_handle::diagnostics::set_stderr(false);
///
/// let table = HandleTable::new();
/// let id = table.insert(Fd::from(std::fs::File::open("/dev/null")?))?;
/// {
///     let fd = table.get::<Fd>(id)?; // pinned: a concurrent close waits for us
///     assert!(fd.raw() >= 0);
/// }
/// table.close(id)?;
/// assert!(matches!(table.get::<Fd>(id), Err(HandleError::Stale(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HandleTable {
    slots: Slots,
    limit: usize,
    /// The domain named in this table's diagnostics, if any.
    domain: Option<u64>,
    counters: Counters,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new()
    }
}

impl HandleTable {
    /// An empty table that may hold up to [`MAX_SLOTS`] live handles.
    pub fn new() -> Self {
        Self::with_limit(MAX_SLOTS as usize)
    }

    /// An empty table that holds at most `limit` live handles (a quota).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            slots: Slots::new(),
            limit: limit.min(MAX_SLOTS as usize),
            domain: None,
            counters: Counters::default(),
        }
    }

    /// Names the domain that owns this table in its diagnostics
    /// (`staleHandleUse` reports carry it as `domain`).
    pub fn for_domain(mut self, domain: u64) -> Self {
        self.domain = Some(domain);
        self
    }

    /// The quota on live handles.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many handles the table holds (including closed ones whose release
    /// is deferred).
    pub fn len(&self) -> usize {
        self.slots.live()
    }

    /// Whether the table holds no handle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many handles the table holds of each resource type, by type name
    /// (`std::any::type_name` of the resource, as [`kind_of`](Self::kind_of)
    /// gives it; [`short_type_name`](crate::short_type_name) shortens it),
    /// in name order, each count above zero.
    ///
    /// It never stops the table: lookups do not see it, and inserts and
    /// removals wait only for a copy of a few counts (it is kept under the
    /// allocator's lock, which they take anyway). It is a snapshot taken at
    /// one instant: it sums to what [`len`](Self::len) returned at that
    /// instant, so it counts handles closed whose release is deferred to a
    /// guard, and a handle being inserted before its id is returned; other
    /// threads may insert and close before the caller reads it.
    pub fn count_by_kind(&self) -> Vec<(&'static str, usize)> {
        self.slots.count_by_kind()
    }

    /// How many slots have used up their generations and been retired.
    pub fn retired_slots(&self) -> u32 {
        self.slots.retired()
    }

    /// What the table has done so far: handles inserted, closed, drained,
    /// and failed releases. Each field is read with one Relaxed load, so a
    /// snapshot taken while other threads work may be mid-update (a handle
    /// counted as inserted before its close is counted, never the reverse
    /// for one handle on one thread).
    pub fn counters(&self) -> TableCounters {
        let c = &self.counters;
        TableCounters {
            inserted: c.inserted.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
            drained: c.drained.load(Ordering::Relaxed),
            release_failures: c.release_failures.load(Ordering::Relaxed),
        }
    }

    /// Looks up `id` as a `T`: the hot path. The returned guard pins the slot,
    /// so the handle stays in the table (and its resource open) until the
    /// guard drops.
    ///
    /// # Errors
    /// [`HandleError::Null`] for id 0; [`HandleError::Stale`] (and
    /// `staleHandleUse`) for an id that was closed or never issued;
    /// [`HandleError::WrongKind`] if the id holds another type;
    /// [`HandleError::Closed`] if the handle was closed or disposed by a
    /// shared owner.
    #[inline]
    pub fn get<T: ReleaseHandle>(&self, id: HandleId) -> Result<TableRef<'_, T>, HandleError> {
        // Only the one-pointer pin proof comes back through the `Result`: a
        // whole `Pin` returned that way is spilled and reloaded with a wider
        // load than parts of it were stored with, a store-forwarding stall
        // that doubled the cost of a lookup.
        let pin = Pin::new(self, self.pin_slot(id)?);
        let value = pin.entry().resource::<T>(id)?;
        Ok(TableRef { value, pin })
    }

    /// The resource under `id`, pinned, if it is an `A` or a `B`: one
    /// lookup for a caller that takes either kind (the custody ABI's I/O
    /// takes an fd or a pipe end), where [`get`](Self::get) twice would pin
    /// the slot twice and build a `WrongKind` to throw away.
    ///
    /// # Errors
    /// As [`get`](Self::get); a `WrongKind` names `A` as the kind expected.
    #[inline]
    pub fn get_either<A: ReleaseHandle, B: ReleaseHandle>(
        &self,
        id: HandleId,
    ) -> Result<Either<TableRef<'_, A>, TableRef<'_, B>>, HandleError> {
        let pin = Pin::new(self, self.pin_slot(id)?);
        let entry = pin.entry();
        if entry.holds::<B>() {
            let value = entry.resource::<B>(id)?;
            return Ok(Either::Second(TableRef { value, pin }));
        }
        let value = entry.resource::<A>(id)?;
        Ok(Either::First(TableRef { value, pin }))
    }

    /// The resource type held under `id` (its Rust type name), checking the
    /// id as [`get`](Self::get) does but for any kind.
    ///
    /// # Errors
    /// As [`get`](Self::get), minus `WrongKind`.
    pub fn kind_of(&self, id: HandleId) -> Result<&'static str, HandleError> {
        let pin = Pin::new(self, self.pin_slot(id)?);
        let entry = pin.entry();
        entry.check_open()?;
        Ok(entry.handle_type())
    }

    /// Pins the slot `id` names; the caller wraps it in a `Pin` at once.
    #[inline]
    fn pin_slot(&self, id: HandleId) -> Result<Pinned<'_>, HandleError> {
        if id.is_null() {
            return Err(HandleError::Null);
        }
        let Some(slot) = self.slots.get(id.slot()) else {
            return Err(self.stale(id, "it was never issued"));
        };
        match slot.try_pin(id) {
            Ok(pinned) => Ok(pinned),
            Err(PinError::Stale(word)) => Err(self.stale_word(id, word)),
            Err(PinError::Overflow) => Err(HandleError::RefCountOverflow),
        }
    }

    /// Removes `id`: it is stale from now on. The table's reference is
    /// dropped now if no [`TableRef`] pins the id, else when the last one
    /// drops (on that thread).
    ///
    /// # Errors
    /// [`HandleError::Null`], [`HandleError::Stale`] (closing twice is a stale
    /// use), or [`HandleError::ReleaseFailed`] if the release ran here and
    /// failed.
    pub fn close(&self, id: HandleId) -> Result<CloseOutcome, HandleError> {
        if id.is_null() {
            return Err(HandleError::Null);
        }
        let Some(slot) = self.slots.get(id.slot()) else {
            return Err(self.stale(id, "it was never issued"));
        };
        let removed = self.remove(id, slot);
        if removed.is_ok() {
            Counters::add(&self.counters.closed);
        }
        match removed {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(failure)) => Err(failure.error),
            Err(word) => Err(self.stale_word(id, word)),
        }
    }

    /// Removes every handle: each is released now, or (if a [`TableRef`] pins
    /// it) when its last guard drops. Handles inserted concurrently with the
    /// drain may survive it; stop inserting first.
    pub fn drain(&self) -> DrainReport {
        let fresh = self.slots.fresh();
        let mut report = DrainReport::default();
        for index in 0..fresh {
            let Some(slot) = self.slots.get(index) else {
                continue;
            };
            let Some(id) = slot.live_id() else {
                continue;
            };
            // A lost race (closed concurrently) is not a stale use: skip it.
            let removed = self.remove(id, slot);
            if removed.is_ok() {
                Counters::add(&self.counters.drained);
            }
            match removed {
                Ok(Ok(CloseOutcome::Released)) => report.released += 1,
                Ok(Ok(CloseOutcome::Deferred)) => report.deferred += 1,
                Ok(Err(failure)) => report.failed.push(failure),
                Err(_) => {}
            }
        }
        report
    }

    /// The ids of the handles live now, in slot order (a snapshot: other
    /// threads may insert and close meanwhile). One pass over the slots.
    pub fn live_ids(&self) -> Vec<HandleId> {
        (0..self.slots.fresh())
            .filter_map(|index| self.slots.get(index)?.live_id())
            .collect()
    }

    /// Marks `id`'s slot REMOVING and finalizes it now if it is unpinned.
    /// `Err` carries the slot word if `id` is not live there (already closed
    /// or never issued).
    fn remove(
        &self,
        id: HandleId,
        slot: &Slot,
    ) -> Result<Result<CloseOutcome, ReleaseFailure>, u64> {
        Ok(match slot.remove(id)? {
            Some(removal) => self.finalize(removal).map(|()| CloseOutcome::Released),
            None => Ok(CloseOutcome::Deferred),
        })
    }

    /// Frees a removed slot (or retires it) and releases its entry.
    #[cold]
    fn finalize(&self, removal: Removal<'_>) -> Result<(), ReleaseFailure> {
        match self.slots.free(removal) {
            (id, Some(entry)) => self.release_entry(entry, id),
            (_, None) => Ok(()),
        }
    }

    /// Releases an entry the table has taken out (or refused), counting a
    /// failure.
    fn release_entry(&self, entry: Entry, id: HandleId) -> Result<(), ReleaseFailure> {
        let (handle_type, raw_value) = (entry.handle_type(), entry.raw_value());
        entry.release().map_err(|error| {
            Counters::add(&self.counters.release_failures);
            ReleaseFailure {
                id,
                handle_type,
                raw_value,
                error,
            }
        })
    }

    #[cold]
    #[inline(never)]
    fn stale(&self, id: HandleId, why: &str) -> HandleError {
        diagnostics::stale_handle_use(id, self.domain, why);
        HandleError::Stale(id)
    }

    #[cold]
    #[inline(never)]
    fn stale_word(&self, id: HandleId, word: u64) -> HandleError {
        self.stale(id, slot::why_stale(id, word))
    }
}

impl SlotOwner for HandleTable {
    fn last_unpin(&self, removal: Removal<'_>) {
        // A failure has been reported by `releaseHandleFailed` and counted.
        let _ = self.finalize(removal);
    }
}

impl Drop for HandleTable {
    fn drop(&mut self) {
        // No guard can exist (they borrow the table), so nothing is deferred;
        // failures have been reported by `releaseHandleFailed`. The slots
        // themselves are freed when `self.slots` drops, after this.
        let _ = self.drain();
    }
}

impl fmt::Debug for HandleTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleTable")
            .field("live", &self.slots.live())
            .field("limit", &self.limit)
            .field("retired_slots", &self.slots.retired())
            .finish()
    }
}

/// What [`HandleTable::get_either`] found: a resource of its first kind
/// or of its second.
#[derive(Debug)]
pub enum Either<F, S> {
    /// The first kind asked for.
    First(F),
    /// The second kind asked for.
    Second(S),
}

/// A handle looked up in a [`HandleTable`]: derefs to the resource, which
/// stays open until the guard drops, even if the id is closed meanwhile.
#[must_use = "dropping the guard unpins the handle at once"]
pub struct TableRef<'a, T: ReleaseHandle> {
    value: &'a T,
    pin: Pin<'a, HandleTable>,
}

impl<T: ReleaseHandle> TableRef<'_, T> {
    /// The id this guard was looked up by.
    pub fn id(&self) -> HandleId {
        self.pin.id()
    }

    /// Whether the table shares this handle with an owner outside it (it
    /// was put in with [`HandleTable::insert_handle`]) rather than owning it
    /// alone ([`HandleTable::insert`]). A host function that would change
    /// the resource itself, not just use it (replace the file behind an fd,
    /// say), must not do so to a shared one: the change would reach its
    /// other owner.
    pub fn is_shared(&self) -> bool {
        self.pin.entry().is_shared()
    }
}

impl<T: ReleaseHandle> Deref for TableRef<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: ReleaseHandle + fmt::Debug> fmt::Debug for TableRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableRef")
            .field("id", &self.id())
            .field("value", &**self)
            .finish()
    }
}

impl fmt::Display for ReleaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handle {} ({} {}): {}",
            self.id,
            self.handle_type,
            format_raw(self.raw_value),
            self.error
        )
    }
}

impl ReleaseFailure {
    /// The OS error behind the failure, if any.
    pub fn os_error(&self) -> Option<&io::Error> {
        match &self.error {
            HandleError::ReleaseFailed(e) | HandleError::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, not(loom)))]
mod count_tests;

#[cfg(all(test, loom))]
mod loom_models;
