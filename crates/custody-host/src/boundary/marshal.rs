//! Marshalling: one host call from the moment the guest enters it to the
//! moment its result goes back (SPEC B, "Marshalling").
//!
//! - **Entry** ([`enter`], [`enter_ctx`]): an abort raised before the call
//!   ends it at once. The caller's memory is looked up only when the body
//!   asks for it ([`HostCall::split`]), and then without a name: the
//!   domain's only instance's memory kept at load, or the caller's found by
//!   index among the memories resolved at load.
//! - **Handle arguments** ([`pin`]) are resolved and pinned before the body
//!   does any work; the [`Pinned`] guard keeps the handle's resource open
//!   until the body is done with it, even if the handle is closed meanwhile.
//!   A null, stale, closed or wrong-kind id is an error code first.
//! - **Out-handles**: their places ([`out_handle`], [`out_pair`]: the out
//!   slots inside memory, room in the table) are checked before the body
//!   makes the resource, so a call that fails has made nothing; then
//!   [`give`] and [`give_pair`] insert it and write its id, which cannot
//!   fault. No handle is ever made and taken back.
//! - **Guest input is never trusted**: a negative length is `E_INVAL`
//!   ([`length`]), an out-of-bounds range `E_FAULT` (the memory module).
//! - **Exit** ([`finish`]): `E_ABORTED` becomes a trap carrying why the call
//!   was stopped (except in the unloading hook); every other code goes to
//!   the guest.

// SAFETY arguments live beside each `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use custody_handle::{Fd, HandleError, HandleId, HandleTable, ReleaseHandle, TableRef};
use rustix::event::PollFlags;
use rustix::io::Errno;
use wasmtime::{Caller, Extern, SharedMemory, ValType};

use super::cancel::Waited;
use super::ctx::DomainCtx;
use super::errno::AbiError;
use super::memory::{GuestMemory, OutSlot};

/// Most bytes one read or write moves for a guest, in any ABI (a larger
/// request is a short read or write, which every ABI allows): a guest
/// cannot make the host copy or hold more for it at once.
pub const MAX_IO: u32 = 1 << 20;

/// A host function's result for the guest: a count or 0, or an error code.
pub type AbiResult = Result<i32, AbiError>;

/// A handle argument, pinned for the rest of the host call.
pub type Pinned<'a, T> = TableRef<'a, T>;

/// One host call in progress: the caller, and the domain's handle table
/// borrowed apart from it, so a handle can be pinned before (and while) the
/// caller's memory is borrowed, and a call that fails on its handle never
/// looks its memory up.
pub struct HostCall<'a, 'c> {
    caller: &'a mut Caller<'c, DomainCtx>,
    /// The host function being called (for the record of a wait).
    name: &'static str,
    pub(crate) table: &'a HandleTable,
    /// A shared memory found by [`HostCall::split`], kept so its bytes can
    /// be borrowed for the rest of the call.
    shared: Option<SharedMemory>,
}

impl<'a> HostCall<'a, '_> {
    /// The domain's handle table, borrowed apart from the call: a handle
    /// pinned from it stays usable while the caller's memory is borrowed.
    #[inline]
    pub fn table(&self) -> &'a HandleTable {
        self.table
    }

    /// Whether the calling instance exports `name` as a function of one
    /// `i32` returning nothing (a timer callback).
    pub(crate) fn exports_callback(&mut self, name: &str) -> bool {
        let Some(Extern::Func(func)) = self.caller.get_export(name) else {
            return false;
        };
        let ty = func.ty(&*self.caller);
        let params: Vec<ValType> = ty.params().collect();
        matches!(params.as_slice(), [ValType::I32]) && ty.results().len() == 0
    }

    /// The guest's stack at this host call, innermost frame first, one
    /// frame a line.
    pub fn guest_stack(&self) -> String {
        guest_stack(self.caller)
    }

    /// The domain, without its memory (a body that must resolve something
    /// of the domain's before it touches guest memory).
    #[inline]
    pub fn ctx(&mut self) -> &mut DomainCtx {
        self.caller.data_mut()
    }

    /// The caller's memory and the domain, borrowed together.
    #[inline]
    pub fn split(&mut self) -> (GuestMemory<'_>, &mut DomainCtx) {
        split(self.caller, &mut self.shared)
    }

    /// The domain's one wait (deadline-bounded, woken by the cancellation
    /// signal), recorded for the
    /// domain's roots while it lasts: this host function and the guest's
    /// stack now (a blocked guest reaches no epoch check to be sampled at).
    pub fn wait(
        &mut self,
        fds: &[(BorrowedFd<'_>, PollFlags)],
        wanted: Duration,
    ) -> Result<Waited, AbiError> {
        let ctx = self.caller.data();
        let _waiting = ctx.shared.blocked.enter(self.name, self.guest_stack());
        ctx.wait(fds, wanted)
    }

    /// Waits until `fd` is ready for `interest`, at most the policy's
    /// `max_wait` (then `E_TIMEDOUT`).
    pub fn wait_ready(&mut self, fd: BorrowedFd<'_>, interest: PollFlags) -> Result<(), AbiError> {
        let max_wait = self.caller.data().policy.max_wait;
        match self.wait(&[(fd, interest)], max_wait)? {
            Waited::Ready(_) => Ok(()),
            _ => Err(AbiError::TimedOut),
        }
    }

    /// Runs one non-blocking `io` on the caller's memory until it does not
    /// block: `EAGAIN` waits ([`wait`](Self::wait), for `interest`, at most
    /// the policy's `max_wait`: then `E_TIMEDOUT`), `EINTR` retries, any
    /// other errno is `E_IO`.
    pub fn until_ready(
        &mut self,
        fd: BorrowedFd<'_>,
        interest: PollFlags,
        mut io: impl FnMut(&mut GuestMemory<'_>) -> Result<Result<usize, Errno>, AbiError>,
    ) -> Result<usize, AbiError> {
        loop {
            let (mut memory, ctx) = self.split();
            match io(&mut memory)? {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => self.wait_ready(fd, interest)?,
                Err(errno) => return Err(ctx.os_error(errno)),
            }
        }
    }
}

/// The guest's stack at a host call, innermost frame first, one frame a
/// line.
pub(crate) fn guest_stack(caller: &Caller<'_, DomainCtx>) -> String {
    super::stack::render(&wasmtime::WasmBacktrace::force_capture(caller))
}

/// Runs an ABI function body that takes guest pointers.
#[inline]
pub fn enter(
    caller: &mut Caller<'_, DomainCtx>,
    name: &'static str,
    body: impl FnOnce(&mut HostCall<'_, '_>) -> AbiResult,
) -> wasmtime::Result<i32> {
    let result = if caller.data().shared.cancel.is_raised() {
        Err(AbiError::Aborted)
    } else {
        let table: *const HandleTable = caller.data().table();
        // SAFETY: `table` points into the `Arc` that the store's data holds
        // in `DomainCtx::shared`, a field set when the store was made and
        // never reassigned. The store (and so that `Arc`) outlives this host
        // call: it cannot be dropped while a guest call runs on it, and
        // `caller` is borrowed for the whole of `body`. So the reference is
        // valid for the call; it is shared, and the table is `Sync`.
        let table = unsafe { &*table };
        body(&mut HostCall {
            caller,
            name,
            table,
            shared: None,
        })
    };
    finish(caller.data(), result)
}

/// Runs an ABI function body without pointer arguments. Such a body
/// never waits, so it needs no name for a wait's record: `_name` is taken
/// only so the ABI's declaration calls every entry the same way.
#[inline]
pub(crate) fn enter_ctx(
    caller: &mut Caller<'_, DomainCtx>,
    _name: &'static str,
    body: impl FnOnce(&mut DomainCtx) -> AbiResult,
) -> wasmtime::Result<i32> {
    let ctx = caller.data_mut();
    let result = if ctx.shared.cancel.is_raised() {
        Err(AbiError::Aborted)
    } else {
        body(ctx)
    };
    finish(caller.data(), result)
}

/// The guest's result, or a trap when the call is being aborted.
#[inline]
pub(crate) fn finish(ctx: &DomainCtx, result: AbiResult) -> wasmtime::Result<i32> {
    match result {
        Ok(n) => Ok(n),
        Err(error) => Ok(ctx.deliver(error)?.code()),
    }
}

/// The calling module's exported `memory`, if it has one. With one
/// instance in the store, its memory was kept at load and is used as is;
/// with several, the caller's is found among the `memory` exports resolved
/// at load (`ModuleExport`s: an index compare, no string lookup). A start
/// function, which runs before its instance is recorded, finds its memory
/// by the export resolved before instantiating (a call from another module
/// that the start function called, by name).
#[inline]
fn caller_memory(caller: &mut Caller<'_, DomainCtx>) -> Option<Extern> {
    let ctx = caller.data();
    if ctx.instantiating {
        // A start function: its instance is not recorded yet (and the
        // memory kept for another instance is not its own). The lookup by
        // `ModuleExport` is on the caller's own instance, and only if it is
        // of the module being instantiated.
        if let Some(export) = ctx.starting_memory
            && let Some(memory) = caller.get_module_export(&export)
        {
            return Some(memory);
        }
        return caller.get_export("memory");
    }
    if ctx.only_memory.is_some() || ctx.instances <= 1 {
        return ctx.only_memory.clone();
    }
    if let Some(export) = caller.data().first_memory
        && let Some(memory) = caller.get_module_export(&export)
    {
        return Some(memory);
    }
    for index in 0..caller.data().memories.len() {
        let export = caller.data().memories[index];
        if let Some(memory) = caller.get_module_export(&export) {
            return Some(memory);
        }
    }
    None
}

/// The calling module's memory and the store data, borrowed together. A
/// shared memory is kept in `shared`, whose bytes the result borrows. A
/// module without a memory gets an empty one: every non-empty access faults.
fn split<'a>(
    caller: &'a mut Caller<'_, DomainCtx>,
    shared: &'a mut Option<SharedMemory>,
) -> (GuestMemory<'a>, &'a mut DomainCtx) {
    match caller_memory(caller) {
        Some(Extern::Memory(memory)) => {
            let (bytes, ctx) = memory.data_and_store_mut(caller);
            (GuestMemory::plain(bytes), ctx)
        }
        Some(Extern::SharedMemory(memory)) => {
            let memory = shared.insert(memory);
            (GuestMemory::shared(memory.data()), caller.data_mut())
        }
        _ => (GuestMemory::plain(&mut []), caller.data_mut()),
    }
}

/// Runs `f` with the calling module's memory and the store data (for
/// embedder functions, which hold their `Caller` themselves).
pub(crate) fn with_memory<R>(
    caller: &mut Caller<'_, DomainCtx>,
    f: impl FnOnce(GuestMemory<'_>, &mut DomainCtx) -> R,
) -> R {
    let mut shared = None;
    let (memory, ctx) = split(caller, &mut shared);
    f(memory, ctx)
}

/// A guest length: negative is `E_INVAL`.
pub fn length(len: i32) -> Result<u32, AbiError> {
    u32::try_from(len).map_err(|_| AbiError::Inval)
}

/// A guest pointer: an unsigned offset into its memory.
pub fn pointer(ptr: i32) -> u32 {
    ptr as u32
}

/// A guest handle id, as it crossed the boundary.
pub fn handle_id(raw: i32) -> HandleId {
    HandleId::from_raw(raw as u32)
}

/// Resolves and pins a handle argument.
#[inline]
pub fn pin<T: ReleaseHandle>(table: &HandleTable, raw: i32) -> Result<Pinned<'_, T>, AbiError> {
    table.get::<T>(handle_id(raw)).map_err(AbiError::from)
}

/// Where a new handle's id goes, checked before the resource is made
/// ([`out_handle`]): its out slot whole and inside memory, and room for the
/// handle in the table.
#[must_use = "the place checked for the handle's id"]
pub struct OutHandle(OutSlot<4>);

/// Where the ids of two handles made together go ([`out_pair`]).
#[must_use = "the places checked for the handles' ids"]
pub struct OutPair(OutSlot<4>, OutSlot<4>);

/// Checks the out slot at `out` and the table's room for one more handle,
/// before the body makes the resource: a call that fails then has made
/// nothing (no file created or truncated, no connection taken).
pub fn out_handle(
    memory: &GuestMemory<'_>,
    table: &HandleTable,
    out: i32,
) -> Result<OutHandle, AbiError> {
    let slot = memory.out_slot(pointer(out))?;
    room(table, 1)?;
    Ok(OutHandle(slot))
}

/// [`out_handle`] for two handles made together (a pipe's ends): the
/// slots must not overlap (`E_INVAL`), both must be inside memory, and the
/// table must have room for both.
pub fn out_pair(
    memory: &GuestMemory<'_>,
    table: &HandleTable,
    out_a: i32,
    out_b: i32,
) -> Result<OutPair, AbiError> {
    if pointer(out_a).abs_diff(pointer(out_b)) < 4 {
        return Err(AbiError::Inval);
    }
    let slots = OutPair(
        memory.out_slot(pointer(out_a))?,
        memory.out_slot(pointer(out_b))?,
    );
    room(table, 2)?;
    Ok(slots)
}

/// Whether `table` has room for `count` more handles now. Only the
/// embedder inserts into a domain's table beside its one running call, so
/// an insert after this check fails only if the embedder raced it.
fn room(table: &HandleTable, count: usize) -> Result<(), HandleError> {
    if table.len() + count > table.limit() {
        return Err(HandleError::QuotaExceeded {
            limit: table.limit(),
        });
    }
    Ok(())
}

/// Gives the guest a new handle: inserts `resource` and writes its id at
/// the place checked for it. The only failure left is the quota, if the
/// embedder filled the table since [`out_handle`] (the resource is then
/// released, never counted in the ledger).
pub fn give<T: ReleaseHandle>(
    memory: &mut GuestMemory<'_>,
    table: &HandleTable,
    out: OutHandle,
    resource: T,
) -> Result<HandleId, AbiError> {
    let id = table.insert(resource)?;
    memory.put_i32(out.0, id.raw() as i32);
    Ok(id)
}

/// [`give`] for two fds made together (a pipe's ends): both are in the
/// table with their ids written, or neither (the fds stay `OwnedFd`s,
/// closed on drop, until the table owns them).
pub fn give_pair(
    memory: &mut GuestMemory<'_>,
    table: &HandleTable,
    out: OutPair,
    (a, b): (OwnedFd, OwnedFd),
) -> AbiResult {
    let [first, second] = table.insert_all([Fd::from(a), Fd::from(b)])?;
    memory.put_i32(out.0, first.raw() as i32);
    memory.put_i32(out.1, second.raw() as i32);
    Ok(0)
}
