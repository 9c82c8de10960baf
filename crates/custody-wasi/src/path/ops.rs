//! The `path_*` functions other than `path_open`: create and remove
//! directories, unlink, rename, symbolic and hard links, and a file's
//! attributes by path. Each resolves beneath its dir fd as `path.rs`
//! says: the parent of the last component for the calls with no `openat2`
//! form, the whole path opened `O_PATH` for the others.

use std::os::fd::AsFd;

use super::{Parent, dir_fd, follows, parent, read_path, whole};
use crate::errno::{Fail, WasiResult};
use crate::fd_meta::{filestat_of, timestamps};
use crate::state::wasi;
use crate::sys;
use crate::types::{Errno, Filestat};
use custody_host::extension::{HostCall, pointer};

/// Runs `op` on the parent of `path` beneath `fd`.
fn on_parent(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    len: i32,
    op: impl FnOnce(&Parent) -> Result<(), rustix::io::Errno>,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (memory, ctx) = call.split();
    let dir = dir_fd(ctx, &target)?;
    let path = read_path(&memory, path, len)?;
    let at = parent(dir, &path)?;
    Ok(op(&at)?)
}

pub(crate) fn path_create_directory(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    len: i32,
) -> WasiResult {
    on_parent(call, fd, path, len, |at| {
        sys::mkdir_at(at.dir.as_fd(), &at.name)
    })
}

pub(crate) fn path_remove_directory(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    len: i32,
) -> WasiResult {
    remove(call, fd, path, len, true)
}

pub(crate) fn path_unlink_file(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    len: i32,
) -> WasiResult {
    remove(call, fd, path, len, false)
}

/// Removes an empty directory (`directory`) or anything else: the kernel
/// says `EISDIR` or `ENOTDIR` for the wrong kind.
fn remove(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    len: i32,
    directory: bool,
) -> WasiResult {
    on_parent(call, fd, path, len, |at| {
        sys::unlink_at(at.dir.as_fd(), &at.name, directory)
    })
}

/// The contents of a symbolic link are stored as given (they are resolved,
/// beneath a directory, only by a later lookup, which confines them then),
/// except an absolute target, which could only ever point out: `EPERM`,
/// as wasmtime refuses it.
pub(crate) fn path_symlink(
    call: &mut HostCall<'_, '_>,
    old_path: i32,
    old_len: i32,
    fd: i32,
    new_path: i32,
    new_len: i32,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (memory, ctx) = call.split();
    let dir = dir_fd(ctx, &target)?;
    let contents = read_path(&memory, old_path, old_len)?;
    let new = read_path(&memory, new_path, new_len)?;
    if contents.starts_with('/') {
        return Err(Errno::Perm.into());
    }
    let at = parent(dir, &new)?;
    Ok(sys::symlink_at(&contents, at.dir.as_fd(), &at.name)?)
}

/// One side of a two-path call: the dir fd and the path (pointer and
/// length).
type Side = (i32, i32, i32);

/// The parents of both paths of a rename or link, each beneath its own
/// dir fd.
fn both(call: &mut HostCall<'_, '_>, old: Side, new: Side) -> Result<(Parent, Parent), Fail> {
    let table = call.table();
    let fds = &wasi(call.ctx())?.fds;
    let (old_target, new_target) = (fds.resolve(table, old.0)?, fds.resolve(table, new.0)?);
    let (memory, ctx) = call.split();
    let (old_dir, new_dir) = (dir_fd(ctx, &old_target)?, dir_fd(ctx, &new_target)?);
    let old_path = read_path(&memory, old.1, old.2)?;
    let new_path = read_path(&memory, new.1, new.2)?;
    Ok((parent(old_dir, &old_path)?, parent(new_dir, &new_path)?))
}

/// Renames within or across two dir fds.
pub(crate) fn path_rename(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    old_path: i32,
    old_len: i32,
    new_fd: i32,
    new_path: i32,
    new_len: i32,
) -> WasiResult {
    let (from, to) = both(call, (fd, old_path, old_len), (new_fd, new_path, new_len))?;
    Ok(sys::rename_at(
        from.dir.as_fd(),
        &from.name,
        to.dir.as_fd(),
        &to.name,
    )?)
}

/// A hard link. Following a symbolic link at `old` is `EINVAL`, as in
/// wasmtime (it could name a file outside every directory).
#[allow(clippy::too_many_arguments)]
pub(crate) fn path_link(
    call: &mut HostCall<'_, '_>,
    old_fd: i32,
    old_flags: i32,
    old_path: i32,
    old_len: i32,
    new_fd: i32,
    new_path: i32,
    new_len: i32,
) -> WasiResult {
    if follows(old_flags)? {
        return Err(Errno::Inval.into());
    }
    let (from, to) = both(
        call,
        (old_fd, old_path, old_len),
        (new_fd, new_path, new_len),
    )?;
    Ok(sys::link_at(
        from.dir.as_fd(),
        &from.name,
        to.dir.as_fd(),
        &to.name,
    )?)
}

/// Reads a symbolic link's contents into `buf`, cut to `buf_len` bytes
/// (as wasmtime does: no error for a short buffer); `used` gets the
/// count. Not a link is `EINVAL` (as Linux and wasmtime say); a link to an
/// absolute path is `EPERM`, as wasmtime answers: its target is outside
/// every directory the guest was given.
pub(crate) fn path_readlink(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    path: i32,
    len: i32,
    buf: i32,
    buf_len: i32,
    used: i32,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (mut memory, ctx) = call.split();
    let dir = dir_fd(ctx, &target)?;
    let path = read_path(&memory, path, len)?;
    memory.range(pointer(buf), buf_len as u32)?;
    memory.range(pointer(used), 4)?;
    let at = parent(dir, &path)?;
    let contents = sys::read_link_at(at.dir.as_fd(), &at.name)?;
    let bytes = contents.as_bytes();
    if bytes.starts_with(b"/") {
        return Err(Errno::Perm.into());
    }
    let bytes = &bytes[..bytes.len().min(buf_len as u32 as usize)];
    memory.write(pointer(buf), bytes)?;
    memory.write(pointer(used), &(bytes.len() as u32).to_le_bytes())?;
    Ok(())
}

pub(crate) fn path_filestat_get(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    flags: i32,
    path: i32,
    len: i32,
    buf: i32,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (mut memory, ctx) = call.split();
    let dir = dir_fd(ctx, &target)?;
    let path = read_path(&memory, path, len)?;
    memory.range(pointer(buf), Filestat::SIZE)?;
    let follow = follows(flags)?;
    let file = whole(dir, &path, follow)?;
    let stat = filestat_of(&sys::stat_fd(file.as_fd())?);
    memory.write(pointer(buf), &stat.encode())?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_filestat_set_times(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    flags: i32,
    path: i32,
    len: i32,
    atim: i64,
    mtim: i64,
    fst_flags: i32,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (memory, ctx) = call.split();
    let dir = dir_fd(ctx, &target)?;
    let path = read_path(&memory, path, len)?;
    let follow = follows(flags)?;
    let times = timestamps(atim, mtim, fst_flags)?;
    let file = whole(dir, &path, follow)?;
    Ok(sys::set_times_fd(file.as_fd(), &times)?)
}
