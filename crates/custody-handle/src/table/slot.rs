//! The table's storage and the slot protocol: the slot word, [`Slot`], the
//! buckets that hold the slots, the allocator, [`Entry`], and [`Pin`].
//! Every `unsafe` of the table lives here.
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
//! generation and frees the slot.
//!
//! All transitions are performed via RMW operations (or, for the one thread
//! that owns a slot exclusively, a store). This establishes an unambiguous
//! modification order, so exactly one thread finalizes:
//!
//! | transition | method | from | to | who |
//! | --- | --- | --- | --- | --- |
//! | fill | [`Vacant::fill`] | free at `g` | `(g, 0, L)` | the allocating thread (store) |
//! | pin | [`Slot::try_pin`] | `(g, p, L)` | `(g, p+1, L)` | any reader (CAS) |
//! | unpin | [`Pin`]'s drop | `(g, p, _)` | `(g, p-1, _)` | the pin's holder (`fetch_sub`) |
//! | remove | [`Slot::remove`] | `(g, p, L)` | `(g, p, R+L)` | one closer (CAS) |
//! | free | [`Slots::free`] | `(g, 0, R+L)` | free at `g+1` | whoever saw `R` with no pins (store) |
//!
//! The thread that frees is the closer if no pin was held, else the last
//! pin's drop: each gets a [`Removal`], the proof that it owns the slot, and
//! hands it to the table ([`SlotOwner::last_unpin`] for a pin).
//!
//! # Ownership proofs
//! The protocol's exclusive states are types: [`Vacant`] (a slot reserved
//! by the allocator, not yet live), [`Pinned`]/[`Pin`] (a pin is held, so
//! the entry stays) and [`Removal`] (removing with no pins: this thread owns
//! the slot). Only this module creates them, so the table above it needs no
//! `unsafe`.
//!
//! # Layout
//! Slots live in buckets of doubling size, so the table can grow without
//! moving a slot (readers hold plain references into buckets). Each slot is
//! padded to 128 bytes, so two threads pinning neighbouring ids never write
//! one cache line. (Padded rather than aligned to 128 bytes, which would
//! also keep them off the adjacent line x86 prefetches in pairs: an
//! over-aligned bucket costs an aligned allocation, several times a plain
//! one, for every domain's table.)

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::any::{TypeId, type_name};
use std::collections::VecDeque;
use std::ptr;

use super::erased::Erased;
use super::kinds::Kinds;
use crate::error::HandleError;
use crate::id::{HandleId, MAX_GENERATION, MAX_SLOTS};
use crate::release::ReleaseHandle;
use crate::safe_handle::SafeHandle;
use crate::sync::{AtomicPtr, AtomicU64, Mutex, Ordering, UnsafeCell, lock};

const LIVE: u64 = 0b01;
const REMOVING: u64 = 0b10;
const PIN_ONE: u64 = 0b100;
const PIN_MASK: u64 = ((1 << 30) - 1) << 2;
const GEN_SHIFT: u32 = 32;

/// The first bucket holds 8 slots, each next one twice the last: a
/// table made per request, with its two or three handles, initializes 8
/// slots (1 KiB), not 32 (4 KiB).
const FIRST_BUCKET_SHIFT: u32 = 3;
const FIRST_BUCKET_LEN: usize = 1 << FIRST_BUCKET_SHIFT;
/// Enough buckets for `MAX_SLOTS`: 8 * (2^18 - 1) >= 2^20.
pub(super) const BUCKETS: usize = 18;

#[inline]
fn generation_of(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

#[inline]
fn pins_of(word: u64) -> u64 {
    (word & PIN_MASK) >> 2
}

/// The bucket and the offset in it of slot `index`.
#[inline]
pub(super) fn bucket_of(index: u32) -> (usize, usize) {
    let biased = index as usize + FIRST_BUCKET_LEN;
    let bucket = (usize::BITS - 1 - biased.leading_zeros() - FIRST_BUCKET_SHIFT) as usize;
    (bucket, biased - (FIRST_BUCKET_LEN << bucket))
}

/// How many slots bucket `bucket` holds.
#[inline]
pub(super) fn bucket_len(bucket: usize) -> usize {
    FIRST_BUCKET_LEN << bucket
}

/// Why `id` is stale, given the word of its slot (for `staleHandleUse`).
pub(super) fn why_stale(id: HandleId, word: u64) -> &'static str {
    let current = generation_of(word);
    if current > MAX_GENERATION && id.generation() < current {
        "it was closed (its slot has since been retired)"
    } else if id.generation() < current || word & REMOVING != 0 {
        "it was closed"
    } else {
        "it was never issued"
    }
}

// ---- entries ---------------------------------------------------------------

/// What a live slot holds: one handle, type-erased, with its type id and a
/// pointer to its resource cached for the lookup.
pub(super) struct Entry {
    /// `TypeId::of::<SafeHandle<T>>()`, kept inline so a typed lookup needs
    /// no virtual call.
    type_id: TypeId,
    /// `type_name::<T>()`, kept inline too: a wrong-kind lookup names it
    /// without a virtual call.
    type_name: &'static str,
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
    /// An entry for `handle`, whose table reference the caller has taken.
    pub(super) fn new<T: ReleaseHandle>(handle: SafeHandle<T>, created: bool) -> Entry {
        Entry {
            type_id: TypeId::of::<SafeHandle<T>>(),
            type_name: type_name::<T>(),
            value: std::ptr::from_ref::<T>(handle.value()).cast(),
            handle: Box::new(handle),
            created,
        }
    }

    /// The resource, for a lookup of `id` as a `T`: checked for its kind
    /// first ([`HandleError::WrongKind`]), then for being open
    /// ([`check_open`](Self::check_open)).
    #[inline]
    pub(super) fn holds<T: ReleaseHandle>(&self) -> bool {
        self.type_id == TypeId::of::<SafeHandle<T>>()
    }

    #[inline]
    pub(super) fn resource<T: ReleaseHandle>(&self, id: HandleId) -> Result<&T, HandleError> {
        if !self.holds::<T>() {
            return Err(HandleError::WrongKind {
                id,
                expected: type_name::<T>(),
                found: self.handle_type(),
            });
        }
        self.check_open()?;
        // SAFETY: `type_id` is `SafeHandle<T>`'s, so `value` points at a `T`
        // (both set together in `Entry::new`); that `T` lives in the handle's
        // shared state, which `self.handle` keeps alive for as long as this
        // entry exists, and so for the borrow of `self`.
        Ok(unsafe { &*self.value.cast::<T>() })
    }

    /// `Closed` if a shared owner closed or disposed the handle. A handle the
    /// table created has no other owner (the table never hands one out), so
    /// only a shared one can have been closed: a created entry costs no load.
    #[inline]
    pub(super) fn check_open(&self) -> Result<(), HandleError> {
        if self.created || self.handle.is_usable() {
            Ok(())
        } else {
            Err(HandleError::Closed)
        }
    }

    /// Whether the entry shares a caller's handle (`insert_handle`), so an
    /// owner outside the table may hold the resource too.
    #[inline]
    pub(super) fn is_shared(&self) -> bool {
        !self.created
    }

    /// The resource type (its Rust path).
    #[inline]
    pub(super) fn handle_type(&self) -> &'static str {
        self.type_name
    }

    /// The raw value (readable before and after the release).
    pub(super) fn raw_value(&self) -> u64 {
        self.handle.raw_value()
    }

    /// Drops the table's references; the resource is released here if
    /// nothing else holds it.
    pub(super) fn release(self) -> Result<(), HandleError> {
        self.handle.release_from_table(self.created)
    }
}

// ---- slots -----------------------------------------------------------------

/// One slot: its word, its index and (while live) its entry, padded to
/// [`SLOT_BYTES`] so that the words of neighbouring slots, which pins
/// write, are never on one cache line.
#[repr(C)]
pub(super) struct Slot {
    word: AtomicU64,
    /// This slot's index, so a pin needs no id of its own: the generation of
    /// a pinned slot cannot change, so the id is derivable.
    index: u32,
    entry: UnsafeCell<Option<Entry>>,
    _pad: [u8; SLOT_PAD],
}

/// A slot's size: its words are this far apart, two 64-byte lines (padded,
/// not aligned: see the module's Layout).
const SLOT_BYTES: usize = 128;

/// The padding that makes a slot [`SLOT_BYTES`] long (none under loom,
/// whose atomics are larger).
const SLOT_PAD: usize = SLOT_BYTES.saturating_sub(
    std::mem::size_of::<AtomicU64>()
        + std::mem::size_of::<u64>()
        + std::mem::size_of::<UnsafeCell<Option<Entry>>>(),
);

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

// SAFETY: `entry` is written only by the one thread that owns the slot
// exclusively (an inserter before setting LIVE, a finalizer after REMOVING
// with no pins), and read only by threads holding a pin, which excludes both
// writers. Every entry's handle is `Send + Sync` (`Erased` requires it) and
// its `value` pointer points into that handle.
unsafe impl Sync for Slot {}
// SAFETY: as above; an `Entry` is `Send`.
unsafe impl Send for Slot {}

/// Why [`Slot::try_pin`] refused.
#[derive(Clone, Copy, Debug)]
pub(super) enum PinError {
    /// The id is not live in this slot; the slot's word, for the report.
    Stale(u64),
    /// The pin count is at its maximum.
    Overflow,
}

impl Slot {
    fn new(index: u32) -> Self {
        Slot {
            // Free, to be issued at generation 1.
            word: AtomicU64::new(1 << GEN_SHIFT),
            index,
            entry: UnsafeCell::new(None),
            _pad: [0; SLOT_PAD],
        }
    }

    /// The id this slot is pinned or being finalized at. Only meaningful
    /// while LIVE (pinned, or REMOVING and owned by the finalizer): then
    /// the generation cannot change.
    pub(super) fn id(&self) -> HandleId {
        HandleId::new(self.index, generation_of(self.word.load(Ordering::Relaxed)))
    }

    /// The id the slot is live at, if it is live and not being removed (a
    /// snapshot, for `drain`).
    pub(super) fn live_id(&self) -> Option<HandleId> {
        let word = self.word.load(Ordering::Acquire);
        (word & (LIVE | REMOVING) == LIVE).then(|| HandleId::new(self.index, generation_of(word)))
    }

    /// Pins the slot if `id` is live in it: the hot path of a lookup.
    #[inline]
    pub(super) fn try_pin(&self, id: HandleId) -> Result<Pinned<'_>, PinError> {
        // Guess the commonest word (live at the id's generation, unpinned)
        // instead of loading first: a wrong guess costs one failed CAS, which
        // returns the actual word.
        let mut word = u64::from(id.generation()) << GEN_SHIFT | LIVE;
        loop {
            if word & (LIVE | REMOVING) != LIVE || generation_of(word) != id.generation() {
                return Err(PinError::Stale(word));
            }
            if word & PIN_MASK == PIN_MASK {
                return Err(PinError::Overflow);
            }
            // Acquire pairs with the inserter's Release store of LIVE.
            match self.word.compare_exchange_weak(
                word,
                word + PIN_ONE,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Pinned(self)),
                Err(actual) => word = actual,
            }
        }
    }

    /// Marks the slot REMOVING if `id` is live in it. `Ok(Some)` if no pin
    /// was held: the caller now owns the slot and frees it. `Ok(None)` if
    /// pinned: the last pin's drop frees it. `Err` carries the word if `id`
    /// is not live here (already closed or never issued).
    pub(super) fn remove(&self, id: HandleId) -> Result<Option<Removal<'_>>, u64> {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & (LIVE | REMOVING) != LIVE || generation_of(word) != id.generation() {
                return Err(word);
            }
            match self.word.compare_exchange_weak(
                word,
                word | REMOVING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if pins_of(word) == 0 => return Ok(Some(Removal(self))),
                Ok(_) => return Ok(None),
                Err(actual) => word = actual,
            }
        }
    }
}

/// A slot reserved by the allocator: free, not live, owned by this thread.
#[must_use = "a vacant slot that is never filled stays reserved"]
pub(super) struct Vacant<'a>(&'a Slot);

impl Vacant<'_> {
    /// Stores `entry` and makes the slot live; returns its id.
    pub(super) fn fill(self, entry: Entry) -> HandleId {
        let slot = self.0;
        let generation = generation_of(slot.word.load(Ordering::Relaxed));
        // SAFETY: a `Vacant` is made only by `Slots::allocate`, for a slot
        // that came off the free list (or was never used) under the allocator
        // lock and is not LIVE: no reader pins it and no other writer owns it.
        slot.entry.with_mut(|e| unsafe { *e = Some(entry) });
        // Release: a reader that pins this word sees the entry.
        slot.word
            .store(u64::from(generation) << GEN_SHIFT | LIVE, Ordering::Release);
        HandleId::new(slot.index, generation)
    }
}

/// Proof that a pin is held on a live slot: its entry cannot be taken out.
/// Wrap it in a [`Pin`] at once, which unpins on drop.
#[must_use = "a pin that is not wrapped in a `Pin` is never released"]
pub(super) struct Pinned<'a>(&'a Slot);

/// Proof that a slot is REMOVING with no pins and that this thread made it
/// so: it owns the slot, and frees it with [`Slots::free`].
#[must_use = "a removal that is not freed leaves its slot in use"]
pub(super) struct Removal<'a>(&'a Slot);

/// The owner of the slots, told when the last pin on a removed slot drops.
pub(super) trait SlotOwner {
    /// The last pin on a REMOVING slot dropped: free it and release its
    /// entry (on this thread).
    fn last_unpin(&self, removal: Removal<'_>);
}

/// A pinned slot: its entry cannot be removed until the pin drops.
///
/// Two pointers and nothing narrower: a guard holding a `u32` id beside them
/// was copied with a wider load than its store, a store-forwarding stall that
/// cost a lookup more than its atomics.
pub(super) struct Pin<'a, O: SlotOwner> {
    owner: &'a O,
    slot: &'a Slot,
}

impl<'a, O: SlotOwner> Pin<'a, O> {
    /// Takes over `pinned`; `owner` is told if this turns out to be the last
    /// pin of a removed slot.
    #[inline]
    pub(super) fn new(owner: &'a O, pinned: Pinned<'a>) -> Self {
        Pin {
            owner,
            slot: pinned.0,
        }
    }

    /// The pinned entry. The reference is only valid while the pin lives:
    /// callers keep the two together (as `TableRef` does).
    #[inline]
    pub(super) fn entry(&self) -> &'a Entry {
        // SAFETY: the slot is pinned and was LIVE when pinned, so its entry is
        // `Some` and no thread may take it until the pin drops; every caller
        // keeps the pin alive for as long as it uses the reference.
        let entry = self.slot.entry.with(|e| unsafe { (*e).as_ref() });
        entry.expect("a pinned live slot has an entry")
    }

    /// The id the slot is pinned at.
    pub(super) fn id(&self) -> HandleId {
        self.slot.id()
    }
}

impl<O: SlotOwner> Drop for Pin<'_, O> {
    #[inline]
    fn drop(&mut self) {
        // AcqRel: Release publishes our use; Acquire lets a finalizing
        // unpinner see every other pinner's use before it releases.
        let before = self.slot.word.fetch_sub(PIN_ONE, Ordering::AcqRel);
        if before & REMOVING != 0 && pins_of(before) == 1 {
            self.owner.last_unpin(Removal(self.slot));
        }
    }
}

// ---- storage ---------------------------------------------------------------

/// The free list and the counts the allocator keeps under its lock.
struct Allocator {
    /// Freed slots, oldest first (FIFO spreads generations over slots).
    free: VecDeque<u32>,
    /// Slots below this index have been handed out at least once.
    fresh: u32,
    live: usize,
    /// The live slots by the type of their entry (reserved ones included).
    kinds: Kinds,
    retired: u32,
}

/// All of a table's slots: the buckets and the allocator.
pub(super) struct Slots {
    buckets: [AtomicPtr<Slot>; BUCKETS],
    alloc: Mutex<Allocator>,
}

impl Slots {
    /// No slot allocated yet.
    pub(super) fn new() -> Self {
        Slots {
            buckets: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            alloc: Mutex::new(Allocator {
                free: VecDeque::new(),
                fresh: 0,
                live: 0,
                kinds: Kinds::default(),
                retired: 0,
            }),
        }
    }

    /// Slot `index`, if its bucket has been allocated.
    #[inline]
    pub(super) fn get(&self, index: u32) -> Option<&Slot> {
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

    /// Reserves `N` free slots together (allocating buckets if needed),
    /// one for an entry of each type in `kinds`, counting them live: all
    /// of them, or none if `limit` leaves no room for `N` more or every
    /// other slot is retired.
    pub(super) fn allocate<const N: usize>(
        &self,
        limit: usize,
        kinds: [&'static str; N],
    ) -> Result<[Vacant<'_>; N], HandleError> {
        let mut alloc = lock(&self.alloc);
        if alloc.live + N > limit {
            return Err(HandleError::QuotaExceeded { limit });
        }
        let mut indices = [0; N];
        for taken in 0..N {
            indices[taken] = match alloc.free.pop_front() {
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
                // Every slot was issued and the free ones are retired: the
                // ones taken go back, first in line, unused.
                None => {
                    for &index in indices[..taken].iter().rev() {
                        alloc.free.push_front(index);
                    }
                    return Err(HandleError::QuotaExceeded { limit });
                }
            };
        }
        alloc.live += N;
        for kind in kinds {
            alloc.kinds.add(kind);
        }
        Ok(indices.map(|index| {
            Vacant(
                self.get(index)
                    .expect("allocate returns slots in allocated buckets"),
            )
        }))
    }

    /// Takes the entry out of a removed slot, bumps its generation and frees
    /// it (or retires it when its generations are used up). Returns the id
    /// it had and its entry.
    pub(super) fn free(&self, removal: Removal<'_>) -> (HandleId, Option<Entry>) {
        let slot = removal.0;
        let id = slot.id();
        // SAFETY: a `Removal` proves REMOVING is set with no pins and that
        // this thread made it so (the closer's CAS or the last unpin): new
        // pins are refused, so this thread has the slot to itself.
        let entry = slot.entry.with_mut(|e| unsafe { (*e).take() });
        let next = id.generation() + 1;
        // Release: the next inserter (synchronized through the allocator
        // lock below) and stale readers see the new generation.
        slot.word
            .store(u64::from(next) << GEN_SHIFT, Ordering::Release);
        let mut alloc = lock(&self.alloc);
        alloc.live -= 1;
        if let Some(entry) = &entry {
            alloc.kinds.remove(entry.handle_type());
        }
        if next <= MAX_GENERATION {
            alloc.free.push_back(id.slot());
        } else {
            alloc.retired += 1;
        }
        (id, entry)
    }

    /// How many slots hold an entry (including removed ones whose release
    /// is deferred).
    pub(super) fn live(&self) -> usize {
        lock(&self.alloc).live
    }

    /// How many live slots hold each type (as [`live`](Self::live) counts
    /// them), by type name.
    pub(super) fn count_by_kind(&self) -> Vec<(&'static str, usize)> {
        lock(&self.alloc).kinds.snapshot()
    }

    /// How many slots have used up their generations.
    pub(super) fn retired(&self) -> u32 {
        lock(&self.alloc).retired
    }

    /// How many slots have ever been handed out (slots `0..fresh`).
    pub(super) fn fresh(&self) -> u32 {
        lock(&self.alloc).fresh
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
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
