//! Linear memories for [`Allocation::Dense`]: no reservation, no guard
//! region, explicit bounds checks in the compiled code, and the bytes in
//! slots of a process-wide arena of large anonymous mappings, so a memory
//! costs no kernel memory map of its own (the kernel's limit of 65,530 maps
//! per process would otherwise cap a host near 32,000 live domains) and
//! only the pages its guest touched: an idle one-page domain holds one or
//! two pages, not 64 KiB.
//!
//! # The arena
//! Slots come in classes of one wasm page (64 KiB) times a power of two, up
//! to [`LARGEST`]; a class carves its slots from chunks of [`CHUNK`] bytes,
//! mapped when its free list is empty and never unmapped (as a heap keeps
//! its address space). A larger memory is a mapping of its own. A slot
//! given back has the pages its memory could have touched discarded
//! (`MADV_DONTNEED`) before it goes on its class's free list, so a slot
//! handed out is all zeros, whether fresh or reused, and a process's
//! resident memory falls back when its domains unload.
//!
//! This module, `sys` (the mappings) and `boundary::memory` are the only
//! places in custody-host with `unsafe`.
//!
//! [`Allocation::Dense`]: crate::Allocation::Dense

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use crate::sys;

/// The smallest slot: one wasm page, page-aligned on every page size Linux
/// has (4 to 64 KiB), so a slot's pages can be discarded whole.
const SMALLEST: usize = 64 << 10;
/// The largest slot kept for reuse; a larger memory is mapped on its own.
const LARGEST: usize = 64 << 20;
/// Slot classes: `SMALLEST << class` for `class` in `0..CLASSES`.
const CLASSES: usize = (LARGEST / SMALLEST).trailing_zeros() as usize + 1;
/// The address space a class maps at once (kernel memory is taken only by
/// pages touched): 4,096 one-page slots, so a million idle domains need 256
/// maps.
const CHUNK: usize = 256 << 20;

/// One class's slots: those given back, and the unused rest of its chunk.
struct Class {
    /// Addresses of zeroed slots given back.
    free: Vec<usize>,
    /// The next never-used slot of the current chunk, and the chunk's end.
    next: usize,
    end: usize,
}

static ARENA: [Mutex<Class>; CLASSES] = [const {
    Mutex::new(Class {
        free: Vec::new(),
        next: 0,
        end: 0,
    })
}; CLASSES];

/// A slot of at least `capacity` bytes, all zeros: its base and length.
fn take(capacity: usize) -> Result<(NonNull<u8>, usize), String> {
    let len = capacity
        .max(SMALLEST)
        .checked_next_power_of_two()
        .ok_or("a linear memory that large cannot exist")?;
    let mapping_failed =
        |e: std::io::Error| format!("mapping {len} bytes for a linear memory: {e}");
    if len > LARGEST {
        return Ok((sys::map_anonymous(len).map_err(mapping_failed)?, len));
    }
    let class = (len / SMALLEST).trailing_zeros() as usize;
    let mut slots = ARENA[class].lock().unwrap_or_else(PoisonError::into_inner);
    let address = match slots.free.pop() {
        Some(address) => address,
        None => {
            if slots.next == slots.end {
                let chunk = sys::map_anonymous(CHUNK).map_err(mapping_failed)?;
                slots.next = chunk.as_ptr() as usize;
                slots.end = slots.next + CHUNK;
            }
            let address = slots.next;
            slots.next += len;
            address
        }
    };
    // Slot addresses are never 0: they lie inside a mapping.
    let base = NonNull::new(address as *mut u8).ok_or("a null slot address")?;
    Ok((base, len))
}

/// Gives back the slot of `len` bytes at `base`, of which the first `used`
/// bytes may have been written.
///
/// # Safety
/// The slot came from [`take`] with this `len`, and nothing reads or writes
/// it any more.
unsafe fn give_back(base: NonNull<u8>, len: usize, used: usize) {
    if len > LARGEST {
        // SAFETY: a slot this large is a whole mapping of its own, unused
        // (the caller's contract).
        let _ = unsafe { sys::unmap(base, len) };
        return;
    }
    let written = used.next_multiple_of(SMALLEST).min(len);
    // SAFETY: `base` is slot-aligned (a multiple of SMALLEST, itself a
    // multiple of the page size) inside a chunk mapped by `sys`, and no
    // one uses the slot (the caller's contract).
    if written > 0 && unsafe { sys::discard(base, written) }.is_err() {
        // Its pages may not read as zeros: the slot is not reused.
        return;
    }
    let class = (len / SMALLEST).trailing_zeros() as usize;
    ARENA[class]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .free
        .push(base.as_ptr() as usize);
}

/// Creates [`DenseMemory`]s.
pub(crate) struct DenseMemoryCreator;

/// One linear memory in an arena slot.
struct DenseMemory {
    base: NonNull<u8>,
    /// Accessible bytes.
    size: usize,
    /// The slot's bytes (all zeros beyond `size`).
    capacity: usize,
    maximum: Option<usize>,
}

// SAFETY: `DenseMemory` owns its slot exclusively (like a `Vec<u8>`);
// wasmtime synchronizes access to a non-shared memory through its store.
unsafe impl Send for DenseMemory {}
// SAFETY: as above: `&DenseMemory` only reads `size`/`capacity`/`base`.
unsafe impl Sync for DenseMemory {}

impl DenseMemory {
    fn new(minimum: usize, maximum: Option<usize>) -> Result<DenseMemory, String> {
        if maximum.is_some_and(|max| minimum > max) {
            return Err("a linear memory's minimum is past its maximum".into());
        }
        let (base, capacity) = take(minimum)?;
        Ok(DenseMemory {
            base,
            size: minimum,
            capacity,
            maximum,
        })
    }
}

impl Drop for DenseMemory {
    fn drop(&mut self) {
        // SAFETY: the slot came from `take` with this capacity, and the
        // memory, its only user, is going away.
        unsafe { give_back(self.base, self.capacity, self.size) }
    }
}

// SAFETY: `as_ptr` points at `capacity` zeroed or guest-written bytes that
// stay valid until the next `grow_to` past the capacity (which wasmtime
// expects may move the base: the engine is configured with
// `memory_may_move` and no reservation), and no guard region is promised
// (the engine is configured with a guard size of 0, so compiled code checks
// every access against `byte_size`).
unsafe impl LinearMemory for DenseMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if self.maximum.is_some_and(|max| new_size > max) {
            wasmtime::bail!("memory would grow past its maximum");
        }
        if new_size > self.capacity {
            // A slot at least twice as large (classes are powers of two),
            // zeroed; the old bytes copied over, the old slot given back.
            let (grown, capacity) = take(new_size).map_err(wasmtime::Error::msg)?;
            // SAFETY: the two slots are distinct (the old one is still
            // held), `self.size` bytes are readable at `base` and writable
            // at `grown` (its capacity is at least `new_size`).
            unsafe {
                std::ptr::copy_nonoverlapping(self.base.as_ptr(), grown.as_ptr(), self.size);
                give_back(self.base, self.capacity, self.size);
            }
            self.base = grown;
            self.capacity = capacity;
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

// SAFETY: every memory it returns is a `DenseMemory`, whose contract is
// above; it refuses requests it cannot honour (a fixed reservation or a
// guard region) instead of returning a memory without them.
unsafe impl MemoryCreator for DenseMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        // The engine is configured with a reservation of 0 (wasmtime passes
        // `Some(0)`): any other reservation, or a guard, cannot be honoured.
        if reserved_size_in_bytes.is_some_and(|r| r != 0) || guard_size_in_bytes != 0 {
            return Err("dense allocation supports neither reservations nor guard regions".into());
        }
        Ok(Box::new(DenseMemory::new(minimum, maximum)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte at `offset` of `memory`.
    fn byte(memory: &DenseMemory, offset: usize) -> u8 {
        assert!(offset < memory.byte_size());
        // SAFETY: within the memory's size (checked above).
        unsafe { *memory.as_ptr().add(offset) }
    }

    #[test]
    fn grows_zeroed_and_keeps_contents() {
        let mut memory = DenseMemory::new(65536, Some(4 * 65536)).unwrap();
        assert_eq!(memory.byte_size(), 65536);
        // SAFETY: within the memory's size.
        unsafe { *memory.as_ptr().add(100) = 7 };
        memory.grow_to(3 * 65536).unwrap();
        assert_eq!(memory.byte_size(), 3 * 65536);
        assert_eq!((byte(&memory, 100), byte(&memory, 2 * 65536 + 5)), (7, 0));
        assert!(memory.grow_to(5 * 65536).is_err(), "past the maximum");
        let mut unbounded = DenseMemory::new(0, None).unwrap();
        assert!(
            unbounded.grow_to(usize::MAX - 1).is_err(),
            "an error, not a panic"
        );
        assert!(memory.byte_capacity() >= memory.byte_size());
        assert!(DenseMemory::new(usize::MAX, None).is_err());
        assert!(DenseMemory::new(2 * 65536, Some(65536)).is_err());
    }

    #[test]
    fn a_slot_given_back_is_all_zeros_when_reused() {
        // Written all over, dropped, and taken again (the class's free
        // list is last in, first out; other tests may take it first, and
        // then this one gets another slot: zeros either way).
        let mut written = DenseMemory::new(2 * 65536, None).unwrap();
        // SAFETY: within the memory's size.
        unsafe { written.as_ptr().write_bytes(0xa5, written.byte_size()) };
        written.grow_to(2 * 65536).unwrap();
        drop(written);
        let fresh = DenseMemory::new(2 * 65536, None).unwrap();
        assert!((0..fresh.byte_size()).all(|i| byte(&fresh, i) == 0));
    }

    #[test]
    fn a_memory_past_the_largest_class_is_a_mapping_of_its_own() {
        let mut memory = DenseMemory::new(LARGEST + 1, None).unwrap();
        assert!(memory.byte_capacity() > LARGEST);
        // SAFETY: within the memory's size.
        unsafe { *memory.as_ptr().add(LARGEST) = 9 };
        memory.grow_to(LARGEST + 65536).unwrap();
        assert_eq!(byte(&memory, LARGEST), 9);
    }
}
