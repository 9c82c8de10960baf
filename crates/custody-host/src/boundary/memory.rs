//! Guest memory: every read and write of a guest's memory is bounds-checked
//! here, and nothing else in custody-host touches guest memory.
//!
//! A guest pointer is an offset into the calling module's exported `memory`.
//! Guest input is never trusted: an offset or length outside the memory is a
//! [`Fault`] (the guest sees `E_FAULT`), never a panic. A shared memory (wasm
//! threads) may be written by another guest thread while the host reads it,
//! so it is read and written byte by byte with atomic accesses, and read
//! **once**: the host works on its copy, never re-reading mid-call.

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};

/// Most slices [`GuestMemory::gather_with`] hands over without a heap
/// allocation (a libc `write` is one, `printf` a few).
const INLINE_SLICES: usize = 8;

/// An out-of-bounds guest pointer or length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// A place in guest memory for one `N`-byte result, checked whole and in
/// bounds ([`GuestMemory::out_slot`]) before the host call does anything
/// that cannot be undone. A wasm memory never shrinks, and a host call only
/// ever sees its caller's memory, so a slot checked once stays inside it
/// for the rest of the call: [`GuestMemory::put`] cannot fault, and a call
/// that has acted (made a handle, consumed data, created a file) can always
/// report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a slot is checked so that the call's result can be written to it"]
pub struct OutSlot<const N: usize> {
    at: u32,
}

/// The calling module's memory, for the duration of one host call: every
/// access bounds-checked ([`Fault`] outside it), a shared memory read and
/// written atomically, byte by byte.
pub struct GuestMemory<'a>(Bytes<'a>);

/// What a [`GuestMemory`] borrows.
enum Bytes<'a> {
    /// An ordinary linear memory, borrowed from the store.
    Plain(&'a mut [u8]),
    /// A shared linear memory, which other threads may access concurrently.
    Shared(&'a [UnsafeCell<u8>]),
}

impl<'a> GuestMemory<'a> {
    /// An ordinary linear memory's bytes.
    pub(crate) fn plain(bytes: &'a mut [u8]) -> Self {
        GuestMemory(Bytes::Plain(bytes))
    }

    /// A shared linear memory's cells.
    pub(crate) fn shared(cells: &'a [UnsafeCell<u8>]) -> Self {
        GuestMemory(Bytes::Shared(cells))
    }
}

impl GuestMemory<'_> {
    fn len(&self) -> usize {
        match &self.0 {
            Bytes::Plain(bytes) => bytes.len(),
            Bytes::Shared(cells) => cells.len(),
        }
    }

    /// The byte range `ptr..ptr+len`, if it lies inside the memory.
    pub fn range(&self, ptr: u32, len: u32) -> Result<Range<usize>, Fault> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Fault)?;
        if end <= self.len() {
            Ok(start..end)
        } else {
            Err(Fault)
        }
    }

    /// The `N` bytes at `ptr`, checked as the place of a result written
    /// later ([`OutSlot`]).
    pub fn out_slot<const N: usize>(&self, ptr: u32) -> Result<OutSlot<N>, Fault> {
        self.range(ptr, N as u32)?;
        Ok(OutSlot { at: ptr })
    }

    /// Writes a result into a slot checked earlier in this call: it cannot
    /// fault (see [`OutSlot`]).
    pub fn put<const N: usize>(&mut self, slot: OutSlot<N>, bytes: [u8; N]) {
        let written = self.write(slot.at, &bytes);
        debug_assert_eq!(written, Ok(()), "a checked slot is inside the memory");
    }

    /// Writes a little-endian `i32` into a checked slot.
    pub fn put_i32(&mut self, slot: OutSlot<4>, value: i32) {
        self.put(slot, value.to_le_bytes());
    }

    /// Copies `len` bytes out of guest memory.
    pub fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, Fault> {
        let range = self.range(ptr, len)?;
        Ok(match &self.0 {
            Bytes::Plain(bytes) => bytes[range].to_vec(),
            Bytes::Shared(cells) => cells[range].iter().map(load).collect(),
        })
    }

    /// Runs `f` on the `len` bytes at `ptr`: the guest's bytes themselves
    /// for a plain memory (no copy), a copy read atomically and once (as
    /// [`read`](Self::read)) for a shared one, which other guest threads
    /// may write meanwhile. The range is checked whole before `f` runs.
    pub fn read_with<R>(&self, ptr: u32, len: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, Fault> {
        let range = self.range(ptr, len)?;
        Ok(match &self.0 {
            Bytes::Plain(bytes) => f(&bytes[range]),
            Bytes::Shared(cells) => f(&cells[range].iter().map(load).collect::<Vec<u8>>()),
        })
    }

    /// Copies `bytes` into guest memory at `ptr`.
    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Fault> {
        let len = u32::try_from(bytes.len()).map_err(|_| Fault)?;
        let range = self.range(ptr, len)?;
        match &mut self.0 {
            Bytes::Plain(memory) => memory[range].copy_from_slice(bytes),
            Bytes::Shared(cells) => {
                for (cell, &byte) in cells[range].iter().zip(bytes) {
                    store(cell, byte);
                }
            }
        }
        Ok(())
    }

    /// Writes a little-endian `i32`.
    pub fn write_i32(&mut self, ptr: u32, value: i32) -> Result<(), Fault> {
        self.write(ptr, &value.to_le_bytes())
    }

    /// Runs `io` on the guest's bytes at `ranges` (each `(ptr, len)`), in
    /// order, cut to `limit` bytes in all, and returns what it returned.
    /// Every range is checked whole, past the cut too, before `io` runs: one
    /// outside the memory is a [`Fault`] and `io` never sees any byte.
    /// Empty ranges (and those past the cut) are left out of the slices.
    ///
    /// For a plain memory the slices are the guest's bytes themselves (no
    /// copy: a `writev` of them is one system call, straight from guest
    /// memory); for a shared one, which other guest threads may write
    /// meanwhile, they are one bounce buffer, read atomically and once
    /// (as [`read`](Self::read) does).
    pub fn gather_with<R>(
        &self,
        ranges: impl IntoIterator<Item = (u32, u32)>,
        limit: usize,
        io: impl FnOnce(&[IoSlice<'_>]) -> R,
    ) -> Result<R, Fault> {
        let mut room = limit;
        match &self.0 {
            Bytes::Plain(bytes) => {
                // Up to INLINE_SLICES slices stay on the stack (a libc
                // `write` is one); more go to the heap.
                let mut inline = [IoSlice::new(&[]); INLINE_SLICES];
                let mut spilled = Vec::new();
                let mut count = 0;
                for (ptr, len) in ranges {
                    let range = self.range(ptr, len)?;
                    let take = range.len().min(room);
                    if take == 0 {
                        continue;
                    }
                    room -= take;
                    let slice = IoSlice::new(&bytes[range.start..range.start + take]);
                    if count < INLINE_SLICES {
                        inline[count] = slice;
                    } else {
                        if spilled.is_empty() {
                            spilled.extend_from_slice(&inline);
                        }
                        spilled.push(slice);
                    }
                    count += 1;
                }
                Ok(io(if count <= INLINE_SLICES {
                    &inline[..count]
                } else {
                    &spilled
                }))
            }
            Bytes::Shared(cells) => {
                let mut bounce = Vec::new();
                for (ptr, len) in ranges {
                    let range = self.range(ptr, len)?;
                    let take = range.len().min(room);
                    room -= take;
                    bounce.extend(cells[range.start..range.start + take].iter().map(load));
                }
                Ok(if bounce.is_empty() {
                    io(&[])
                } else {
                    io(&[IoSlice::new(&bounce)])
                })
            }
        }
    }

    /// Runs `io` on a buffer of `len` bytes that ends up at `ptr` in guest
    /// memory: directly on the guest's bytes for a plain memory, through a
    /// bounce buffer for a shared one. Returns what `io` returned; `io`
    /// reports how many bytes it filled.
    pub fn fill_with<E>(
        &mut self,
        ptr: u32,
        len: u32,
        io: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, Fault> {
        let range = self.range(ptr, len)?;
        Ok(match &mut self.0 {
            Bytes::Plain(memory) => io(&mut memory[range]),
            Bytes::Shared(cells) => {
                let mut bounce = vec![0; range.len()];
                let result = io(&mut bounce);
                if let Ok(filled) = result {
                    for (cell, &byte) in cells[range].iter().zip(&bounce[..filled]) {
                        store(cell, byte);
                    }
                }
                result
            }
        })
    }
}

fn load(cell: &UnsafeCell<u8>) -> u8 {
    // SAFETY: `AtomicU8` has the size and alignment of `u8`, and the cell
    // belongs to a shared memory that outlives this borrow; every host access
    // to shared memory is atomic, so host threads never race non-atomically,
    // and guest threads' accesses are machine loads and stores, which an
    // atomic access tolerates (the wasm threads model).
    unsafe { AtomicU8::from_ptr(cell.get()) }.load(Ordering::Relaxed)
}

fn store(cell: &UnsafeCell<u8>, byte: u8) {
    // SAFETY: as in `load`.
    unsafe { AtomicU8::from_ptr(cell.get()) }.store(byte, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_is_a_fault_not_a_panic() {
        let mut bytes = vec![0u8; 16];
        let mut memory = GuestMemory::plain(&mut bytes);
        assert_eq!(memory.read(0, 16).unwrap().len(), 16);
        assert_eq!(memory.read(16, 0).unwrap().len(), 0);
        assert_eq!(memory.read(16, 1), Err(Fault));
        assert_eq!(memory.read(u32::MAX, 2), Err(Fault));
        assert_eq!(memory.read(1, u32::MAX), Err(Fault));
        assert_eq!(memory.write_i32(13, 1), Err(Fault));
        memory.write_i32(12, -5).unwrap();
        assert_eq!(memory.read(12, 4).unwrap(), (-5i32).to_le_bytes());
        let filled = memory.fill_with(4, 4, |buf| {
            buf.copy_from_slice(b"abcd");
            Ok::<_, ()>(4)
        });
        assert_eq!(filled, Ok(Ok(4)));
        assert_eq!(&memory.read(4, 4).unwrap(), b"abcd");
    }

    #[test]
    fn an_out_slot_is_checked_whole_then_written_without_failing() {
        let mut bytes = vec![0u8; 16];
        let mut memory = GuestMemory::plain(&mut bytes);
        assert_eq!(memory.out_slot::<4>(13), Err(Fault), "one byte short");
        assert_eq!(memory.out_slot::<8>(u32::MAX - 3), Err(Fault));
        assert_eq!(GuestMemory::plain(&mut []).out_slot::<4>(0), Err(Fault));
        let slot = memory.out_slot::<4>(12).unwrap();
        memory.put_i32(slot, 7);
        let wide = memory.out_slot::<8>(0).unwrap();
        memory.put(wide, [1; 8]);
        assert_eq!(memory.read(0, 8).unwrap(), [1; 8]);
        assert_eq!(memory.read(12, 4).unwrap(), 7i32.to_le_bytes());
    }

    #[test]
    fn shared_memory_is_copied_atomically() {
        let cells: Vec<UnsafeCell<u8>> = (0..8).map(UnsafeCell::new).collect();
        let mut memory = GuestMemory::shared(&cells);
        assert_eq!(memory.read(2, 3).unwrap(), vec![2, 3, 4]);
        memory.write(0, &[9, 9]).unwrap();
        assert_eq!(memory.read(0, 3).unwrap(), vec![9, 9, 2]);
        assert_eq!(memory.read(7, 2), Err(Fault));
        let filled = memory.fill_with(6, 2, |buf| {
            buf[0] = 42;
            Ok::<_, ()>(1)
        });
        assert_eq!(filled, Ok(Ok(1)));
        assert_eq!(
            memory.read(6, 2).unwrap(),
            vec![42, 7],
            "only the filled bytes land"
        );
    }

    #[test]
    fn read_with_sees_the_bytes_in_place_or_a_copy_and_faults_before_running() {
        let mut bytes: Vec<u8> = (0..8).collect();
        let plain = GuestMemory::plain(&mut bytes);
        assert_eq!(plain.read_with(2, 3, <[u8]>::to_vec), Ok(vec![2, 3, 4]));
        assert_eq!(plain.read_with(8, 0, <[u8]>::len), Ok(0));
        let mut ran = false;
        assert_eq!(plain.read_with(6, 3, |_| ran = true), Err(Fault));
        assert!(!ran, "f never runs on a faulting range");
        let cells: Vec<UnsafeCell<u8>> = (0..8).map(UnsafeCell::new).collect();
        let shared = GuestMemory::shared(&cells);
        assert_eq!(shared.read_with(5, 3, <[u8]>::to_vec), Ok(vec![5, 6, 7]));
        assert_eq!(shared.read_with(u32::MAX, 2, |_| ()), Err(Fault));
    }

    /// What `gather_with` handed `io`: each slice's bytes.
    fn gathered(
        memory: &GuestMemory<'_>,
        ranges: &[(u32, u32)],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, Fault> {
        memory.gather_with(ranges.iter().copied(), limit, |slices| {
            slices.iter().map(|slice| slice.to_vec()).collect()
        })
    }

    #[test]
    fn gathered_ranges_are_checked_whole_before_io_and_cut_to_the_limit() {
        let mut bytes: Vec<u8> = (0..16).collect();
        let memory = GuestMemory::plain(&mut bytes);
        assert_eq!(
            gathered(&memory, &[(2, 2), (9, 0), (0, 3)], 100),
            Ok(vec![vec![2, 3], vec![0, 1, 2]]),
            "in order, the empty range left out"
        );
        assert_eq!(
            gathered(&memory, &[(2, 2), (0, 3), (10, 6)], 4),
            Ok(vec![vec![2, 3], vec![0, 1]]),
            "cut to the limit"
        );
        let mut ran = false;
        let result = memory.gather_with([(0, 4), (14, 2), (15, 2)], 4, |_| ran = true);
        assert_eq!(result, Err(Fault), "a range past the cut is still checked");
        assert!(!ran, "io never runs on a faulting gather");
        let many: Vec<(u32, u32)> = (0..12).map(|i| (i, 1)).collect();
        let expected: Vec<Vec<u8>> = (0..12).map(|i| vec![i]).collect();
        assert_eq!(
            gathered(&memory, &many, 100),
            Ok(expected),
            "past the inline slices"
        );
        assert_eq!(gathered(&memory, &[], 100), Ok(vec![]));
    }

    #[test]
    fn a_shared_memory_is_gathered_into_one_bounce_buffer() {
        let cells: Vec<UnsafeCell<u8>> = (0..8).map(UnsafeCell::new).collect();
        let memory = GuestMemory::shared(&cells);
        assert_eq!(
            gathered(&memory, &[(6, 2), (1, 0), (0, 3)], 4),
            Ok(vec![vec![6, 7, 0, 1]])
        );
        assert_eq!(gathered(&memory, &[(0, 0)], 4), Ok(vec![]));
        assert_eq!(gathered(&memory, &[(0, 1), (7, 2)], 1), Err(Fault));
    }
}
