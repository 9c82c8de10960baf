//! Moving bytes: `read`, `write`, `pipe`, the guest's `log`, and
//! `last_error` (the errno behind the last `E_IO`).
//!
//! `read` and `write` take an fd's handle or the guest's side of an
//! in-process pipe ([`GuestSide`], the embedder's streams into and out of
//! the guest): the guest sees both as a pipe's ends. An empty or full pipe
//! waits through the domain's one cancellable wait, at most the policy's
//! `max_wait`; the embedder's end gone is the end of the input or `EPIPE`;
//! an end used against its direction is `EBADF`, as an fd opened the
//! other way is.

use std::io;
use std::os::fd::AsFd;

use custody_handle::{Either, Fd, HandleTable};
use rustix::event::PollFlags;
use rustix::io::Errno;

use super::{MAX_IO, MAX_LOG};
use crate::boundary::ctx::DomainCtx;
use crate::boundary::errno::AbiError;
use crate::boundary::marshal::{self, AbiResult, HostCall, Pinned, length, pointer};
use crate::boundary::memory::{Fault, GuestMemory};
use crate::pipe::{GuestSide, Transfer};
use crate::sys;

/// A handle `read`, `write` and `poll` take: an fd, or the guest's side of
/// an in-process pipe.
pub(super) enum Stream<'t> {
    Fd(Pinned<'t, Fd>),
    Pipe(Pinned<'t, GuestSide>),
}

/// Pins the handle `raw` names as a [`Stream`] (one lookup for either
/// kind); any other kind is `E_KIND`.
pub(super) fn pin_stream(table: &HandleTable, raw: i32) -> Result<Stream<'_>, AbiError> {
    match table.get_either::<Fd, GuestSide>(marshal::handle_id(raw))? {
        Either::First(fd) => Ok(Stream::Fd(fd)),
        Either::Second(side) => Ok(Stream::Pipe(side)),
    }
}

pub(super) fn log(call: &mut HostCall<'_, '_>, level: i32, ptr: i32, len: i32) -> AbiResult {
    if !(0..=4).contains(&level) {
        return Err(AbiError::Inval);
    }
    let len = length(len)?;
    let (memory, ctx) = call.split();
    memory.range(pointer(ptr), len)?;
    let bytes = memory.read(pointer(ptr), len.min(MAX_LOG))?;
    ctx.log_line(level as u8, &String::from_utf8_lossy(&bytes));
    Ok(0)
}

pub(super) fn read(call: &mut HostCall<'_, '_>, h: i32, buf: i32, len: i32, out: i32) -> AbiResult {
    let len = length(len)?;
    let stream = pin_stream(call.table, h)?;
    // Check both destinations, whole, before consuming any data; only then
    // cut the request to what one call moves (a short read).
    let out = {
        let (memory, _) = call.split();
        memory.range(pointer(buf), len)?;
        memory.out_slot(pointer(out))?
    };
    let len = len.min(MAX_IO);
    let n = match &stream {
        Stream::Fd(fd) => call.until_ready(fd.as_fd(), PollFlags::IN, |memory| {
            Ok(memory.fill_with(pointer(buf), len, |bytes| sys::read(fd.as_fd(), bytes))?)
        })?,
        Stream::Pipe(side) if !side.goes_into_guest() => {
            return Err(call.split().1.os_error(Errno::BADF));
        }
        // Straight into guest memory: the one copy is out of the pipe.
        Stream::Pipe(side) => through_pipe(call, |memory| {
            let read = memory.fill_with(pointer(buf), len, |bytes| match side.read(bytes) {
                Ok(Transfer::Done(n)) => Ok(n),
                other => Err(other),
            })?;
            Ok(read.map_or_else(|other| other, |n| Ok(Transfer::Done(n))))
        })?,
    };
    drop(stream);
    call.split().0.put_i32(out, n as i32);
    Ok(0)
}

pub(super) fn write(
    call: &mut HostCall<'_, '_>,
    h: i32,
    buf: i32,
    len: i32,
    out: i32,
) -> AbiResult {
    let len = length(len)?;
    let stream = pin_stream(call.table, h)?;
    // The whole range is checked (a length past the end of memory is
    // `E_FAULT`), then cut to what one call moves (a short write).
    let out = {
        let (memory, _) = call.split();
        memory.range(pointer(buf), len)?;
        memory.out_slot(pointer(out))?
    };
    let n = match &stream {
        Stream::Fd(fd) => {
            // Read once: a retry after a wait writes the same bytes.
            let bytes = call.split().0.read(pointer(buf), len.min(MAX_IO))?;
            call.until_ready(fd.as_fd(), PollFlags::OUT, |_| {
                Ok(sys::write(fd.as_fd(), &bytes))
            })?
        }
        Stream::Pipe(side) if side.goes_into_guest() => {
            return Err(call.split().1.os_error(Errno::BADF));
        }
        // Straight from guest memory: the one copy is into the pipe.
        Stream::Pipe(side) => through_pipe(call, |memory| {
            memory.gather_with([(pointer(buf), len)], MAX_IO as usize, |slices| {
                side.write(slices.first().map_or(&[][..], |slice| slice))
            })
        })?,
    };
    drop(stream);
    call.split().0.put_i32(out, n as i32);
    Ok(0)
}

/// Moves bytes through an in-process pipe with `transfer` until some move
/// (or the end of the input), waiting on the pipe's bell while none can
/// (through the domain's one cancellable wait, at most the policy's
/// `max_wait`: then `E_TIMEDOUT`). The embedder's end gone is `EPIPE` to a
/// writer; failing to make the bell is `E_IO`.
fn through_pipe(
    call: &mut HostCall<'_, '_>,
    mut transfer: impl FnMut(&mut GuestMemory<'_>) -> Result<io::Result<Transfer>, Fault>,
) -> Result<usize, AbiError> {
    loop {
        let (mut memory, ctx) = call.split();
        match transfer(&mut memory)? {
            Ok(Transfer::Done(n)) => return Ok(n),
            Ok(Transfer::Closed) => return Err(ctx.os_error(Errno::PIPE)),
            Ok(Transfer::Wait(bell)) => call.wait_ready(bell.as_fd(), PollFlags::IN)?,
            Err(error) => return Err(ctx.io_error(&error)),
        }
    }
}

pub(super) fn pipe(call: &mut HostCall<'_, '_>, out_r: i32, out_w: i32) -> AbiResult {
    let table = call.table;
    let (mut memory, ctx) = call.split();
    // Both places and the room for both ends, before the pipe is made.
    let out = marshal::out_pair(&memory, table, out_r, out_w)?;
    let ends = sys::pipe().map_err(|e| ctx.os_error(e))?;
    marshal::give_pair(&mut memory, table, out, ends)
}

pub(super) fn last_error(ctx: &mut DomainCtx) -> AbiResult {
    Ok(ctx.last_errno.get())
}
