//! Heap-backed linear memories, for [`Allocation::Dense`]: no reservation,
//! no guard region, explicit bounds checks in the compiled code, and the
//! bytes on the process heap, so a memory costs no kernel memory map (the
//! kernel's limit of 65,530 maps per process would otherwise cap a host
//! near 32,000 live domains).
//!
//! This module and `boundary::memory` are the only places in custody-host
//! with `unsafe`.
//!
//! [`Allocation::Dense`]: crate::Allocation::Dense

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc, realloc};
use std::ptr::NonNull;

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// Memories are 16-byte aligned (the allocator's natural alignment), so
/// `alloc_zeroed` is `calloc`, which leaves fresh heap pages untouched until
/// the guest writes them: an idle memory costs almost no resident memory.
/// (Page alignment would make the allocator `memset` every page. Nothing
/// needs it: compiled code bounds-checks every access against the size.)
const ALIGN: usize = 16;
/// Capacities are whole pages of this size.
const GRAIN: usize = 4096;

/// Creates [`HeapMemory`]s.
pub(crate) struct HeapMemoryCreator;

/// One linear memory on the heap.
struct HeapMemory {
    base: NonNull<u8>,
    /// Accessible bytes.
    size: usize,
    /// Allocated bytes (all zeroed beyond `size`), whole pages, at least one.
    capacity: usize,
    maximum: Option<usize>,
}

// SAFETY: `HeapMemory` owns its allocation exclusively (like a `Vec<u8>`);
// wasmtime synchronizes access to a non-shared memory through its store.
unsafe impl Send for HeapMemory {}
// SAFETY: as above: `&HeapMemory` only reads `size`/`capacity`/`base`.
unsafe impl Sync for HeapMemory {}

fn layout(capacity: usize) -> Result<Layout, String> {
    Layout::from_size_align(capacity, ALIGN).map_err(|e| e.to_string())
}

impl HeapMemory {
    fn new(minimum: usize, maximum: Option<usize>) -> Result<HeapMemory, String> {
        let capacity = minimum.max(GRAIN).next_multiple_of(GRAIN);
        let layout = layout(capacity)?;
        // SAFETY: `layout` has a non-zero size (at least one page).
        let base = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(base).ok_or("out of memory allocating a linear memory")?;
        Ok(HeapMemory {
            base,
            size: minimum,
            capacity,
            maximum,
        })
    }
}

impl Drop for HeapMemory {
    fn drop(&mut self) {
        // SAFETY: `base` was allocated (or last reallocated) with exactly
        // this layout, and is freed only here.
        unsafe {
            dealloc(
                self.base.as_ptr(),
                Layout::from_size_align_unchecked(self.capacity, ALIGN),
            )
        }
    }
}

// SAFETY: `as_ptr` points at `capacity`
// zero-initialized or guest-written bytes that stay valid until the next
// `grow_to` (which wasmtime expects may move the base: the engine is
// configured with `memory_may_move` and no reservation), and no guard
// region is promised (the engine is configured with a guard size of 0, so
// compiled code checks every access against `byte_size`).
unsafe impl LinearMemory for HeapMemory {
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
            // Double, to amortize copies; never past the maximum; whole pages.
            let capacity = new_size
                .max(self.capacity.saturating_mul(2))
                .min(self.maximum.unwrap_or(usize::MAX))
                .max(new_size)
                .checked_next_multiple_of(GRAIN)
                .ok_or_else(|| wasmtime::Error::msg("a linear memory that large cannot exist"))?;
            layout(capacity).map_err(wasmtime::Error::msg)?;
            // SAFETY: `base` holds `self.capacity` bytes allocated with
            // alignment ALIGN; `capacity` is non-zero and its layout valid
            // (checked above).
            let grown = unsafe {
                realloc(
                    self.base.as_ptr(),
                    Layout::from_size_align_unchecked(self.capacity, ALIGN),
                    capacity,
                )
            };
            let grown = NonNull::new(grown)
                .ok_or_else(|| wasmtime::Error::msg("out of memory growing a linear memory"))?;
            // SAFETY: `grown` holds `capacity` bytes; the tail past the old
            // capacity is uninitialized and is zeroed here, before use.
            unsafe {
                grown
                    .as_ptr()
                    .add(self.capacity)
                    .write_bytes(0, capacity - self.capacity);
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

// SAFETY: every memory it returns is a `HeapMemory`, whose contract is above;
// it refuses requests it cannot honour (a fixed reservation or a guard
// region) instead of returning a memory without them.
unsafe impl MemoryCreator for HeapMemoryCreator {
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
        Ok(Box::new(HeapMemory::new(minimum, maximum)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_zeroed_and_keeps_contents() {
        let mut memory = HeapMemory::new(65536, Some(4 * 65536)).unwrap();
        assert_eq!(memory.byte_size(), 65536);
        // SAFETY: within the memory's size.
        unsafe { *memory.as_ptr().add(100) = 7 };
        memory.grow_to(3 * 65536).unwrap();
        assert_eq!(memory.byte_size(), 3 * 65536);
        // SAFETY: within the memory's new size.
        let (kept, fresh) = unsafe {
            (
                *memory.as_ptr().add(100),
                *memory.as_ptr().add(2 * 65536 + 5),
            )
        };
        assert_eq!((kept, fresh), (7, 0));
        assert!(memory.grow_to(5 * 65536).is_err(), "past the maximum");
        let mut unbounded = HeapMemory::new(0, None).unwrap();
        assert!(
            unbounded.grow_to(usize::MAX - 1).is_err(),
            "an error, not a panic"
        );
        assert!(memory.byte_capacity() >= memory.byte_size());
    }
}
