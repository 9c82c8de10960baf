//! Moving bytes: `read`, `write`, `pipe`, the guest's `log`, and
//! `last_error` (the errno behind the last `E_IO`).

use std::os::fd::AsFd;

use custody_handle::Fd;
use rustix::event::PollFlags;

use super::{MAX_IO, MAX_LOG};
use crate::boundary::ctx::DomainCtx;
use crate::boundary::errno::AbiError;
use crate::boundary::marshal::{self, AbiResult, HostCall, length, pointer};
use crate::sys;

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
    let fd = marshal::pin::<Fd>(call.table, h)?;
    // Check both destinations, whole, before consuming any data; only then
    // cut the request to what one call moves (a short read).
    let out = {
        let (memory, _) = call.split();
        memory.range(pointer(buf), len)?;
        memory.out_slot(pointer(out))?
    };
    let len = len.min(MAX_IO);
    let n = call.until_ready(fd.as_fd(), PollFlags::IN, |memory| {
        Ok(memory.fill_with(pointer(buf), len, |bytes| sys::read(fd.as_fd(), bytes))?)
    })?;
    drop(fd);
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
    let fd = marshal::pin::<Fd>(call.table, h)?;
    // The whole range is checked (a length past the end of memory is
    // `E_FAULT`), then cut to what one call moves (a short write).
    let (out, bytes) = {
        let (memory, _) = call.split();
        memory.range(pointer(buf), len)?;
        let out = memory.out_slot(pointer(out))?;
        (out, memory.read(pointer(buf), len.min(MAX_IO))?)
    };
    let n = call.until_ready(fd.as_fd(), PollFlags::OUT, |_| {
        Ok(sys::write(fd.as_fd(), &bytes))
    })?;
    drop(fd);
    call.split().0.put_i32(out, n as i32);
    Ok(0)
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
