//! The fd numbers themselves: `fd_close`, `fd_renumber`, and the pre-opens
//! (`fd_prestat_get`, `fd_prestat_dir_name`).

use std::os::fd::{AsFd, OwnedFd};

use custody_handle::{Fd, HandleId};

use crate::errno::{Fail, WasiResult, from_abi};
use crate::fds::{Small, Target};
use crate::state::{wasi, wasi_ref};
use crate::stdio::Stream;
use crate::sys;
use crate::types::{Errno, encode_prestat_dir};
use custody_host::extension::DomainCtx;
use custody_host::extension::{HostCall, pointer};

/// Closes whatever `fd` names: a small fd is closed (stdio and pre-opens
/// stay held by the domain; a handle renumbered onto it is released), a
/// table id closed as the custody ABI's `close` does.
fn close(ctx: &mut DomainCtx, fd: i32) -> WasiResult {
    let raw = fd as u32;
    let id = match wasi(ctx)?.fds.small(raw) {
        Some(_) => match wasi(ctx)?.fds.close_small(raw) {
            Some(Small::Handle(id)) => id,
            _ => return Ok(()),
        },
        None if (raw as usize) < wasi(ctx)?.fds.small_len() => return Err(Errno::Badf.into()),
        None if raw < (1 << custody_handle::SLOT_BITS) => return Err(Errno::Badf.into()),
        None => HandleId::from_raw(raw),
    };
    ctx.close_handle(id)
        .map(|_| ())
        .map_err(|e| from_abi(e, ctx.last_errno()))
}

pub(super) fn fd_close(call: &mut HostCall<'_, '_>, fd: i32) -> WasiResult {
    close(call.ctx(), fd)
}

/// A duplicate of the open file `target` names (for a renumber onto a
/// small fd); stdio that is no host fd cannot move (`ENOTSUP`).
fn duplicate(ctx: &DomainCtx, target: &Target<'_>) -> Result<OwnedFd, Fail> {
    let fd = match target {
        Target::Stdio(i) => match &wasi_ref(ctx)?.stdio[*i] {
            Stream::Os { fd, .. } => fd.as_fd(),
            _ => return Err(Errno::Notsup.into()),
        },
        Target::Preopen(i) => ctx.preopens().get(*i).ok_or(Errno::Badf)?.1,
        Target::Handle(file) => file.as_fd(),
    };
    Ok(fd.try_clone_to_owned()?)
}

/// `to` names what `from` named, and `from` is closed; what `to` named
/// before is released. Onto a table id, the open file behind `to`'s OS fd
/// is replaced in place (`dup3`), so the id, and every custody ABI use of
/// it, follows. Not onto a handle the embedder shares with the domain
/// (`HandleTable::insert_handle`): replacing its file would reach the
/// embedder's own fd, so that is `ENOTSUP` and nothing changes. Onto a
/// small fd, the small fd takes `from`'s stdio stream or pre-open, or a new
/// handle over a duplicate of `from`'s file.
pub(super) fn fd_renumber(call: &mut HostCall<'_, '_>, from: i32, to: i32) -> WasiResult {
    let table = call.table();
    let ctx = call.ctx();
    let source = wasi(ctx)?.fds.resolve(table, from)?;
    let dest = wasi(ctx)?.fds.resolve(table, to)?;
    if from == to {
        return Ok(());
    }
    let (from_raw, to_raw) = (from as u32, to as u32);
    if let Target::Handle(dest) = dest {
        if dest.is_shared() {
            return Err(Errno::Notsup.into());
        }
        let source_fd = duplicate(ctx, &source)?;
        sys::dup_onto(source_fd.as_fd(), dest.as_fd())?;
        drop((dest, source));
        wasi(ctx)?.fds.move_state(from_raw, to_raw);
        return close(ctx, from);
    }
    // Onto a small fd: a small `from` moves as it is, a table id as a new
    // handle over a duplicate of its file.
    let moved = wasi(ctx)?.fds.small(from_raw);
    let what = match moved {
        Some(small) => small,
        None => Small::Handle(table.insert(Fd::from(duplicate(ctx, &source)?))?),
    };
    drop((source, dest));
    wasi(ctx)?.fds.move_state(from_raw, to_raw);
    let state = wasi(ctx)?.fds.state(to);
    // `to`'s old resource goes first, then `from`.
    close(ctx, to)?;
    match moved {
        Some(_) => drop(wasi(ctx)?.fds.close_small(from_raw)),
        None => close(ctx, from)?,
    }
    wasi(ctx)?.fds.put_small(to_raw, what);
    wasi(ctx)?.fds.set_state(table, to, state);
    Ok(())
}

pub(super) fn fd_prestat_get(call: &mut HostCall<'_, '_>, fd: i32, buf: i32) -> WasiResult {
    let target = crate::target(call, fd)?;
    let (mut memory, ctx) = call.split();
    let Target::Preopen(i) = target else {
        return Err(Errno::Badf.into());
    };
    let (name, _) = ctx.preopens().get(i).ok_or(Errno::Badf)?;
    memory.write(pointer(buf), &encode_prestat_dir(name.len() as u32))?;
    Ok(())
}

pub(super) fn fd_prestat_dir_name(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    path_len: i32,
) -> WasiResult {
    let target = crate::target(call, fd)?;
    let (mut memory, ctx) = call.split();
    // As wasmtime: an fd that is no pre-open is not a directory here.
    let Target::Preopen(i) = target else {
        return Err(Errno::Notdir.into());
    };
    let (name, _) = ctx.preopens().get(i).ok_or(Errno::Badf)?;
    if name.len() > path_len as u32 as usize {
        return Err(Errno::Nametoolong.into());
    }
    memory.write(pointer(path), name.as_bytes())?;
    Ok(())
}
