//! Table ids: [`HandleId`] and the bit layout it packs a slot and a
//! generation into.
//!
//! A leaf: it imports nothing from the crate, so the error type, the
//! diagnostics and the table can all name ids without importing one another.
//!
//! ```text
//!  31  30                     20 19                        0
//! +---+-------------------------+---------------------------+
//! | 0 |  generation (11 bits)   |      slot (20 bits)       |
//! +---+-------------------------+---------------------------+
//! ```
//!
//! Bit 31 stays clear, so every id is positive as a guest's `int32_t`, and
//! id 0 (generation 0) is never issued: it is the null handle.

use std::fmt;

/// Bits of an id that name the slot.
pub const SLOT_BITS: u32 = 20;
/// Bits of an id that name the generation. With [`SLOT_BITS`] this keeps ids
/// below 2^31, so they are positive as a guest's `int32_t`.
pub const GENERATION_BITS: u32 = 11;
/// The most slots a table can have.
pub const MAX_SLOTS: u32 = 1 << SLOT_BITS;
/// The last generation a slot is issued at before it is retired.
pub const MAX_GENERATION: u32 = (1 << GENERATION_BITS) - 1;

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

    /// The id of `slot` at `generation` (what the table issues).
    pub(crate) fn new(slot: u32, generation: u32) -> HandleId {
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
