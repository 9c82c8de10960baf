//! `HandleTable`: integer ids for handles held across a trust boundary.
//!
//! A guest, a tenant or any other untrusted holder never sees a
//! [`SafeHandle`]; it sees a 32-bit [`HandleId`]. The table maps ids to
//! handles so that no id can ever reach a resource it was not issued for.
//!
//! # Invariants
//! - **Id 0 is never issued**: it is the null handle ([`HandleError::Null`]).
//! - **An id names one slot at one generation.** A slot's generation only
//!   grows: when a slot is freed its generation is bumped, and a slot whose
//!   generation would pass [`MAX_GENERATION`] is retired, never reused. So a
//!   stale id can never reach a recycled slot: the seeds' recycled-handle
//!   hazard (a double close that closes an unrelated resource which reused
//!   the value) is impossible by construction. Using a stale id fires
//!   `staleHandleUse` and returns [`HandleError::Stale`].
//! - **Lookups take no lock.** A lookup pins the slot with one compare-and-swap
//!   on the slot's word and returns a [`TableRef`] guard; dropping it unpins
//!   with one atomic subtraction. Inserts and removals take a mutex (they
//!   allocate); reads never do.
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

use std::any::{Any, TypeId, type_name};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::ptr;

use crate::diagnostics;
use crate::error::HandleError;
use crate::release::ReleaseHandle;
use crate::safe_handle::SafeHandle;
use crate::sync::{AtomicPtr, AtomicU64, Mutex, Ordering, UnsafeCell, lock};

/// Bits of an id that name the slot.
pub const SLOT_BITS: u32 = 20;
/// Bits of an id that name the generation. With [`SLOT_BITS`] this keeps ids
/// below 2^31, so they are positive as a guest's `int32_t`.
pub const GENERATION_BITS: u32 = 11;
/// The most slots a table can have.
pub const MAX_SLOTS: u32 = 1 << SLOT_BITS;
/// The last generation a slot is issued at before it is retired.
pub const MAX_GENERATION: u32 = (1 << GENERATION_BITS) - 1;

const LIVE: u64 = 0b01;
const REMOVING: u64 = 0b10;
const PIN_ONE: u64 = 0b100;
const PIN_MASK: u64 = ((1 << 30) - 1) << 2;
const GEN_SHIFT: u32 = 32;

/// Slots live in buckets of doubling size, so the table can grow without
/// moving a slot (readers hold plain references into buckets).
const FIRST_BUCKET_SHIFT: u32 = 5;
const FIRST_BUCKET_LEN: usize = 1 << FIRST_BUCKET_SHIFT;
/// Enough buckets for `MAX_SLOTS`: 32 * (2^16 - 1) >= 2^20.
const BUCKETS: usize = 16;

/// A table id: a slot and a generation packed in 32 bits (0 = null).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(u32);

impl HandleId {
    /// The null id, never issued.
    pub const NULL: HandleId = HandleId(0);

    /// An id as it crossed a boundary (any value; the table validates it).
    pub const fn from_raw(raw: u32) -> HandleId {
        HandleId(raw)
    }

    /// The id as an integer.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether this is the null id.
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The slot this id names.
    pub const fn slot(self) -> u32 {
        self.0 & (MAX_SLOTS - 1)
    }

    /// The generation this id names (issued ids have 1..=[`MAX_GENERATION`]).
    pub const fn generation(self) -> u32 {
        self.0 >> SLOT_BITS
    }

    fn new(slot: u32, generation: u32) -> HandleId {
        debug_assert!(slot < MAX_SLOTS && (1..=MAX_GENERATION).contains(&generation));
        HandleId(generation << SLOT_BITS | slot)
    }
}

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (slot {}, generation {})",
            self.0,
            self.slot(),
            self.generation()
        )
    }
}

impl fmt::Debug for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandleId({self})")
    }
}

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

/// The type-erased operations the table needs on a `SafeHandle<T>`.
trait Erased: Any + Send + Sync {
    fn handle_type(&self) -> &'static str;
    fn raw_value(&self) -> u64;
    /// Whether a lookup may hand it out: neither closed nor disposed.
    fn is_usable(&self) -> bool;
    /// Drops the table's reference (and, for entries the table created, the
    /// creation reference), releasing the resource if nothing else holds it.
    fn release_from_table(&self, created: bool) -> Result<(), HandleError>;
}

impl<T: ReleaseHandle> Erased for SafeHandle<T> {
    fn handle_type(&self) -> &'static str {
        type_name::<T>()
    }
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

struct Entry {
    /// `TypeId::of::<SafeHandle<T>>()`, kept inline so a typed lookup needs
    /// no virtual call.
    type_id: TypeId,
    /// The `T` inside the handle's shared state, cached so a lookup reaches
    /// it with one load. Valid while `handle` (which keeps that state alive)
    /// is in the entry.
    value: *const (),
    handle: Box<dyn Erased>,
    /// The table built the handle (`insert`) and so also holds its creation
    /// reference; otherwise it shares a caller's handle (`insert_handle`).
    /// A created handle is never handed out, so nothing but the table can
    /// close it.
    created: bool,
}

impl Entry {
    /// `Closed` if a shared owner closed or disposed the handle. A handle the
    /// table created has no other owner (the table never hands one out), so
    /// only a shared one can have been closed: a created entry costs no load.
    #[inline]
    fn check_open(&self) -> Result<(), HandleError> {
        if self.created || self.handle.is_usable() {
            Ok(())
        } else {
            Err(HandleError::Closed)
        }
    }

    fn release(self, id: HandleId) -> Result<(), ReleaseFailure> {
        self.handle
            .release_from_table(self.created)
            .map_err(|error| ReleaseFailure {
                id,
                handle_type: self.handle.handle_type(),
                raw_value: self.handle.raw_value(),
                error,
            })
    }
}

struct Slot {
    word: AtomicU64,
    /// This slot's index, so a pin needs no id of its own: the generation of
    /// a pinned slot cannot change, so the id is derivable.
    index: u32,
    entry: UnsafeCell<Option<Entry>>,
}

// SAFETY: `entry` is written only by the one thread that owns the slot
// exclusively (an inserter before setting LIVE, a finalizer after REMOVING
// with no pins), and read only by threads holding a pin, which excludes both
// writers. Every entry's handle is `Send + Sync` (`Erased` requires it) and
// its `value` pointer points into that handle.
unsafe impl Sync for Slot {}
// SAFETY: as above; an `Entry` is `Send`.
unsafe impl Send for Slot {}

impl Slot {
    fn new(index: u32) -> Self {
        Slot {
            // Free, to be issued at generation 1.
            word: AtomicU64::new(1 << GEN_SHIFT),
            index,
            entry: UnsafeCell::new(None),
        }
    }

    /// The id this slot is pinned or being finalized at. Only meaningful
    /// while LIVE (pinned, or REMOVING and owned by the finalizer): then
    /// the generation cannot change.
    fn id(&self) -> HandleId {
        HandleId::new(self.index, generation_of(self.word.load(Ordering::Relaxed)))
    }
}

#[inline]
fn generation_of(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

#[inline]
fn pins_of(word: u64) -> u64 {
    (word & PIN_MASK) >> 2
}

#[inline]
fn bucket_of(index: u32) -> (usize, usize) {
    let biased = index as usize + FIRST_BUCKET_LEN;
    let bucket = (usize::BITS - 1 - biased.leading_zeros() - FIRST_BUCKET_SHIFT) as usize;
    (bucket, biased - (FIRST_BUCKET_LEN << bucket))
}

#[inline]
fn bucket_len(bucket: usize) -> usize {
    FIRST_BUCKET_LEN << bucket
}

struct Allocator {
    /// Freed slots, oldest first (FIFO spreads generations over slots).
    free: VecDeque<u32>,
    /// Slots below this index have been handed out at least once.
    fresh: u32,
    live: usize,
    retired: u32,
}

/// A concurrent table of handles addressed by generational 32-bit ids.
///
/// See the module documentation for the invariants. Dropping the table
/// drains it.
///
/// ```
/// use custody_handle::{Fd, HandleError, HandleTable};
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
    buckets: [AtomicPtr<Slot>; BUCKETS],
    alloc: Mutex<Allocator>,
    limit: usize,
    /// The domain named in this table's diagnostics, if any.
    domain: Option<u64>,
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
            buckets: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            alloc: Mutex::new(Allocator {
                free: VecDeque::new(),
                fresh: 0,
                live: 0,
                retired: 0,
            }),
            limit: limit.min(MAX_SLOTS as usize),
            domain: None,
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
        lock(&self.alloc).live
    }

    /// Whether the table holds no handle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many slots have used up their generations and been retired.
    pub fn retired_slots(&self) -> u32 {
        lock(&self.alloc).retired
    }

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
        let entry = Entry {
            type_id: TypeId::of::<SafeHandle<T>>(),
            value: std::ptr::from_ref::<T>(handle.value()).cast(),
            handle: Box::new(handle),
            created,
        };
        let index = match self.allocate() {
            Ok(index) => index,
            Err(error) => {
                // Nothing else owns a handle we created: release it now.
                let _ = entry.release(HandleId::NULL);
                return Err(error);
            }
        };
        let slot = self
            .slot(index)
            .expect("allocate returns a slot in an allocated bucket");
        let generation = generation_of(slot.word.load(Ordering::Relaxed));
        // SAFETY: the slot came off the free list (or was never used) under
        // the allocator lock and is not LIVE, so no reader pins it and no
        // other writer owns it.
        slot.entry.with_mut(|e| unsafe { *e = Some(entry) });
        // Release: a reader that pins this word sees the entry.
        slot.word
            .store(u64::from(generation) << GEN_SHIFT | LIVE, Ordering::Release);
        Ok(HandleId::new(index, generation))
    }

    /// Reserves a free slot index (allocating its bucket if needed).
    fn allocate(&self) -> Result<u32, HandleError> {
        let mut alloc = lock(&self.alloc);
        if alloc.live >= self.limit {
            return Err(HandleError::QuotaExceeded { limit: self.limit });
        }
        let index = match alloc.free.pop_front() {
            Some(index) => index,
            None if alloc.fresh < MAX_SLOTS => {
                let index = alloc.fresh;
                let (bucket, offset) = bucket_of(index);
                if offset == 0 {
                    let slots: Box<[Slot]> =
                        (index..).take(bucket_len(bucket)).map(Slot::new).collect();
                    let raw = Box::into_raw(slots).cast::<Slot>();
                    // Release: readers that load the pointer see initialized slots.
                    self.buckets[bucket].store(raw, Ordering::Release);
                }
                alloc.fresh += 1;
                index
            }
            // Every slot was issued and the free ones are retired.
            None => return Err(HandleError::QuotaExceeded { limit: self.limit }),
        };
        alloc.live += 1;
        Ok(index)
    }

    #[inline]
    fn slot(&self, index: u32) -> Option<&Slot> {
        if index >= MAX_SLOTS {
            return None;
        }
        let (bucket, offset) = bucket_of(index);
        let base = self.buckets[bucket].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: a non-null bucket pointer came from a leaked
        // `Box<[Slot]>` of `bucket_len(bucket)` slots, published with
        // Release and freed only in `Drop` (which has `&mut self`);
        // `offset < bucket_len(bucket)` by construction of `bucket_of`.
        Some(unsafe { &*base.add(offset) })
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
        // Only the slot reference comes back through the `Result`: a whole
        // `Pin` returned that way is spilled and reloaded with a wider load
        // than its id was stored with, a store-forwarding stall that doubled
        // the cost of a lookup.
        let pin = Pin {
            table: self,
            slot: self.pin_slot(id)?,
        };
        let entry = pin.entry();
        if entry.type_id != TypeId::of::<SafeHandle<T>>() {
            return Err(HandleError::WrongKind {
                id,
                expected: type_name::<T>(),
                found: entry.handle.handle_type(),
            });
        }
        entry.check_open()?;
        // SAFETY: `entry.type_id` is `SafeHandle<T>`'s, so `entry.value`
        // points at a `T` (both set together in `insert_entry`); that `T`
        // lives in the handle's shared state, which `entry.handle` keeps
        // alive until the entry is taken out, which the pin (moved into the
        // returned guard together with this reference) prevents.
        let value = unsafe { &*entry.value.cast::<T>() };
        Ok(TableRef { value, pin })
    }

    /// The resource type held under `id` (its Rust type name), checking the
    /// id as [`get`](Self::get) does but for any kind.
    ///
    /// # Errors
    /// As [`get`](Self::get), minus `WrongKind`.
    pub fn kind_of(&self, id: HandleId) -> Result<&'static str, HandleError> {
        let pin = self.pin(id)?;
        let entry = pin.entry();
        entry.check_open()?;
        Ok(entry.handle.handle_type())
    }

    fn pin(&self, id: HandleId) -> Result<Pin<'_>, HandleError> {
        Ok(Pin {
            table: self,
            slot: self.pin_slot(id)?,
        })
    }

    /// Pins the slot `id` names; the caller wraps it in a `Pin` at once.
    #[inline]
    fn pin_slot(&self, id: HandleId) -> Result<&Slot, HandleError> {
        if id.is_null() {
            return Err(HandleError::Null);
        }
        let Some(slot) = self.slot(id.slot()) else {
            return Err(self.stale(id, "it was never issued"));
        };
        // Guess the commonest word (live at the id's generation, unpinned)
        // instead of loading first: a wrong guess costs one failed CAS, which
        // returns the actual word.
        let mut word = u64::from(id.generation()) << GEN_SHIFT | LIVE;
        loop {
            if word & (LIVE | REMOVING) != LIVE || generation_of(word) != id.generation() {
                return Err(self.stale_word(id, word));
            }
            if word & PIN_MASK == PIN_MASK {
                return Err(HandleError::RefCountOverflow);
            }
            // Acquire pairs with the inserter's Release store of LIVE.
            match slot.word.compare_exchange_weak(
                word,
                word + PIN_ONE,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(slot),
                Err(actual) => word = actual,
            }
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
        let Some(slot) = self.slot(id.slot()) else {
            return Err(self.stale(id, "it was never issued"));
        };
        match self.remove(id, slot) {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(failure)) => Err(failure.error),
            Err(word) => Err(self.stale_word(id, word)),
        }
    }

    /// Takes the entry out of a slot that is REMOVING with no pins, frees the
    /// slot (or retires it) and releases the entry.
    #[cold]
    fn finalize(&self, slot: &Slot) -> Result<(), ReleaseFailure> {
        let id = slot.id();
        // SAFETY: REMOVING is set and the pin count is zero, and this thread
        // made that so (the closer's CAS or the last unpin): new pins are
        // refused, so this thread has the slot to itself.
        let entry = slot.entry.with_mut(|e| unsafe { (*e).take() });
        let next = id.generation() + 1;
        // Release: the next inserter (synchronized through the allocator
        // lock below) and stale readers see the new generation.
        slot.word
            .store(u64::from(next) << GEN_SHIFT, Ordering::Release);
        {
            let mut alloc = lock(&self.alloc);
            alloc.live -= 1;
            if next <= MAX_GENERATION {
                alloc.free.push_back(id.slot());
            } else {
                alloc.retired += 1;
            }
        }
        match entry {
            Some(entry) => entry.release(id),
            None => Ok(()),
        }
    }

    /// Removes every handle: each is released now, or (if a [`TableRef`] pins
    /// it) when its last guard drops. Handles inserted concurrently with the
    /// drain may survive it; stop inserting first.
    pub fn drain(&self) -> DrainReport {
        let fresh = lock(&self.alloc).fresh;
        let mut report = DrainReport::default();
        for index in 0..fresh {
            let Some(slot) = self.slot(index) else {
                continue;
            };
            let word = slot.word.load(Ordering::Acquire);
            if word & (LIVE | REMOVING) != LIVE {
                continue;
            }
            let id = HandleId::new(index, generation_of(word));
            // A lost race (closed concurrently) is not a stale use: skip it.
            match self.remove(id, slot) {
                Ok(Ok(CloseOutcome::Released)) => report.released += 1,
                Ok(Ok(CloseOutcome::Deferred)) => report.deferred += 1,
                Ok(Err(failure)) => report.failed.push(failure),
                Err(_) => {}
            }
        }
        report
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
        let current = generation_of(word);
        let why = if current > MAX_GENERATION && id.generation() < current {
            "it was closed (its slot has since been retired)"
        } else if id.generation() < current || word & REMOVING != 0 {
            "it was closed"
        } else {
            "it was never issued"
        };
        self.stale(id, why)
    }

    /// Marks `id`'s slot REMOVING and finalizes it now if it is unpinned.
    /// `Err` carries the slot word if `id` is not live there (already closed
    /// or never issued).
    fn remove(
        &self,
        id: HandleId,
        slot: &Slot,
    ) -> Result<Result<CloseOutcome, ReleaseFailure>, u64> {
        let mut word = slot.word.load(Ordering::Relaxed);
        loop {
            if word & (LIVE | REMOVING) != LIVE || generation_of(word) != id.generation() {
                return Err(word);
            }
            match slot.word.compare_exchange_weak(
                word,
                word | REMOVING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if pins_of(word) == 0 => {
                    return Ok(self.finalize(slot).map(|()| CloseOutcome::Released));
                }
                Ok(_) => return Ok(Ok(CloseOutcome::Deferred)),
                Err(actual) => word = actual,
            }
        }
    }
}

impl Drop for HandleTable {
    fn drop(&mut self) {
        // No guard can exist (they borrow the table), so nothing is deferred;
        // failures have been reported by `releaseHandleFailed`.
        let _ = self.drain();
        for (bucket, pointer) in self.buckets.iter_mut().enumerate() {
            let base = pointer.load(Ordering::Acquire);
            if !base.is_null() {
                let slots = ptr::slice_from_raw_parts_mut(base, bucket_len(bucket));
                // SAFETY: `base` came from `Box::into_raw` of a boxed slice of
                // exactly this length and is freed only here, once.
                drop(unsafe { Box::from_raw(slots) });
            }
        }
    }
}

impl fmt::Debug for HandleTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alloc = lock(&self.alloc);
        f.debug_struct("HandleTable")
            .field("live", &alloc.live)
            .field("limit", &self.limit)
            .field("retired_slots", &alloc.retired)
            .finish()
    }
}

/// A pinned slot: its entry cannot be removed until the pin drops.
///
/// Two pointers and nothing narrower: a guard holding a `u32` id beside them
/// was copied with a wider load than its store, a store-forwarding stall that
/// cost a lookup more than its atomics.
struct Pin<'a> {
    table: &'a HandleTable,
    slot: &'a Slot,
}

impl<'a> Pin<'a> {
    #[inline]
    /// The pinned entry. The reference is only valid while the pin lives:
    /// callers keep the two together (as `TableRef` does).
    fn entry(&self) -> &'a Entry {
        // SAFETY: the slot is pinned and was LIVE when pinned, so its entry is
        // `Some` and no thread may take it until the pin drops; every caller
        // keeps the pin alive for as long as it uses the reference.
        let entry = self.slot.entry.with(|e| unsafe { (*e).as_ref() });
        entry.expect("a pinned live slot has an entry")
    }
}

impl Drop for Pin<'_> {
    #[inline]
    fn drop(&mut self) {
        // AcqRel: Release publishes our use; Acquire lets a finalizing
        // unpinner see every other pinner's use before it releases.
        let before = self.slot.word.fetch_sub(PIN_ONE, Ordering::AcqRel);
        if before & REMOVING != 0 && pins_of(before) == 1 {
            // A failure has been reported by `releaseHandleFailed`.
            let _ = self.table.finalize(self.slot);
        }
    }
}

/// A handle looked up in a [`HandleTable`]: derefs to the resource, which
/// stays open until the guard drops, even if the id is closed meanwhile.
#[must_use = "dropping the guard unpins the handle at once"]
pub struct TableRef<'a, T: ReleaseHandle> {
    value: &'a T,
    pin: Pin<'a>,
}

impl<T: ReleaseHandle> TableRef<'_, T> {
    /// The id this guard was looked up by.
    pub fn id(&self) -> HandleId {
        self.pin.slot.id()
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
            crate::release::format_raw(self.raw_value),
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

#[cfg(all(test, loom))]
mod loom_models;
