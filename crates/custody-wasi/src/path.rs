//! The `path_*` functions: paths resolved beneath a directory fd (a
//! pre-open or a directory the guest opened) with `openat2`'s
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, as the custody ABI's `open`
//! is. This file holds what they share (reading the path, the directory
//! fd, the parent of a last component) and `path_open`; the others are in
//! `path/ops.rs`.
//!
//! # Confinement
//! - a path that leaves its directory (`..` above it, an absolute path, a
//!   symbolic link pointing out) is `EPERM`, as wasmtime-wasi answers it
//!   (the kernel says `EXDEV`; cap-std, under wasmtime, says "permission
//!   denied");
//! - the calls with no `openat2` form (`mkdirat`, `unlinkat`, `renameat`,
//!   `symlinkat`, `linkat`) get the *parent* directory opened beneath the
//!   dir fd (`O_PATH`) and a last component with no `/` in it but a
//!   trailing one, so the kernel resolves nothing the `openat2` did not
//!   check; a last component `..` is resolved as a parent itself, with
//!   `.` as the name (so `..` at the top is `EPERM`, as with cap-std);
//! - the calls on a whole path (stat, times, readlink) open it `O_PATH`
//!   beneath the dir fd and act on that fd (`AT_EMPTY_PATH`).
//!
//! # Rights
//! Rights are advisory, as in wasmtime-wasi's preview 1 (the reference):
//! no `path_*` function checks the dir fd's rights, and `path_open` never
//! refuses the rights it is asked for (Go's `os` package and the Rust
//! helpers of the official test suite ask for rights a directory did not
//! announce, and wasmtime opens them).
//! `path_open` reads only `FD_READ` and `FD_WRITE` of the base rights, to
//! choose the access mode, as wasmtime does; what the new fd can do is
//! then that mode (a write on a read-only fd is the kernel's `EBADF`).
//! Confinement does not rest on rights: every lookup is `openat2`
//! beneath its dir fd, whatever was asked.

mod ops;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use custody_handle::Fd;
use rustix::io::Errno as OsErrno;

pub(super) use ops::{
    path_create_directory, path_filestat_get, path_filestat_set_times, path_link, path_readlink,
    path_remove_directory, path_rename, path_symlink, path_unlink_file,
};

use crate::errno::{Fail, WasiResult, from_abi};
use crate::fd_meta::filetype_of;
use crate::fds::{FdState, Target};
use crate::state::wasi;
use crate::sys::{self, OFlags};
use crate::types::{Errno, fdflags, filetype, lookupflags, oflags, rights};
use custody_host::extension::DomainCtx;
use custody_host::extension::GuestMemory;
use custody_host::extension::{self, HostCall, pointer};

/// The longest path a guest may pass: bounds the host's copy of it (the
/// kernel refuses anything past `PATH_MAX`, 4 KiB, anyway).
const MAX_PATH: u32 = 64 * 1024;

/// The path at `ptr` (`len` bytes): a wild range is `EFAULT`, bytes that
/// are not UTF-8 are `EILSEQ` (as wasmtime's string reading says).
pub(super) fn read_path(memory: &GuestMemory<'_>, ptr: i32, len: i32) -> Result<String, Fail> {
    let len = len as u32;
    memory.range(pointer(ptr), len)?;
    if len > MAX_PATH {
        return Err(Errno::Nametoolong.into());
    }
    let bytes = memory.read(pointer(ptr), len)?;
    String::from_utf8(bytes).map_err(|_| Errno::Ilseq.into())
}

/// An OS error of a lookup beneath a directory: an escape (`EXDEV` from
/// `openat2`) is `EPERM`, as wasmtime returns it.
pub(super) fn lookup_error(errno: OsErrno) -> Fail {
    if errno == OsErrno::XDEV {
        Errno::Perm.into()
    } else {
        errno.into()
    }
}

/// The directory `target` names, for a path call on it: a pre-open, or a
/// table handle that is a directory. Anything else is `EBADF` (wasmtime's
/// answer; `path_open` says `ENOTDIR` for a file itself).
pub(super) fn dir_fd<'a>(
    ctx: &'a DomainCtx,
    target: &'a Target<'_>,
) -> Result<BorrowedFd<'a>, Fail> {
    match target {
        Target::Stdio(_) => Err(Errno::Badf.into()),
        Target::Preopen(i) => Ok(ctx.preopens().get(*i).ok_or(Errno::Badf)?.1),
        Target::Handle(file) => {
            let fd = file.as_fd();
            if filetype_of(&sys::stat(fd)?) != filetype::DIRECTORY {
                return Err(Errno::Badf.into());
            }
            Ok(fd)
        }
    }
}

/// A path split for a call with no `openat2` form: its parent directory,
/// opened `O_PATH` beneath the dir fd, and the last component (no `/` in
/// it, but the path's trailing one, which the kernel checks: `file/` is
/// not a directory).
pub(super) struct Parent {
    pub(super) dir: OwnedFd,
    pub(super) name: String,
}

/// Splits `path` beneath `dir` into its [`Parent`]. An empty path is
/// `ENOENT`; one that leaves `dir` is `EPERM`.
pub(super) fn parent(dir: BorrowedFd<'_>, path: &str) -> Result<Parent, Fail> {
    let trimmed = path.trim_end_matches('/');
    let trailing = if trimmed.len() == path.len() { "" } else { "/" };
    if trimmed.is_empty() {
        // "" names nothing; "/" is absolute: out of every directory.
        return Err(if path.is_empty() {
            Errno::Noent
        } else {
            Errno::Perm
        }
        .into());
    }
    let (up, last) = match trimmed.rfind('/') {
        // "/name": the parent is the root, an escape the openat2 reports.
        Some(0) => ("/", &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (".", trimmed),
    };
    // A last `..` is a directory to resolve (beneath), not a name to act
    // on: the call acts on `.` in it (and `..` at the top is an escape).
    let (up, name) = if last == ".." {
        (trimmed, ".".to_owned())
    } else {
        (up, format!("{last}{trailing}"))
    };
    let dir =
        sys::open_beneath(dir, up, OFlags::PATH | OFlags::DIRECTORY, 0).map_err(lookup_error)?;
    Ok(Parent { dir, name })
}

/// Opens the whole of `path` beneath `dir` as an `O_PATH` fd: the file a
/// symbolic link names if `follow`, else the link itself.
pub(super) fn whole(dir: BorrowedFd<'_>, path: &str, follow: bool) -> Result<OwnedFd, Fail> {
    let mut flags = OFlags::PATH;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    sys::open_beneath(dir, path, flags, 0).map_err(lookup_error)
}

/// Whether `lookupflags` says to follow a last symbolic link; unknown
/// bits are `EINVAL`.
pub(super) fn follows(flags: i32) -> Result<bool, Fail> {
    let flags = flags as u32;
    if flags & !lookupflags::SYMLINK_FOLLOW != 0 {
        return Err(Errno::Inval.into());
    }
    Ok(flags & lookupflags::SYMLINK_FOLLOW != 0)
}

/// What a guest asked `path_open` for, checked.
struct OpenRequest {
    flags: OFlags,
    nonblock: bool,
}

/// The OS flags of a `path_open` (wasmtime's rules): written if `FD_WRITE`
/// is asked for or the file may be created or truncated, read if
/// `FD_READ` is asked for or it is not written; `EXCL` only with `CREAT`;
/// `DIRECTORY` with `CREAT`, `EXCL` or `TRUNC` is `EINVAL`; the sync flags
/// are `ENOTSUP` (wasmtime cannot open with them either). Always
/// `NONBLOCK`: opening a FIFO must not block (and every read or write on
/// the fd waits in the one cancellable wait).
fn open_request(dirflags: i32, open: i32, base: u64, fdflags: i32) -> Result<OpenRequest, Fail> {
    let follow = follows(dirflags)?;
    let open = u16::try_from(open).map_err(|_| Errno::Inval)?;
    let fdflags = u16::try_from(fdflags).map_err(|_| Errno::Inval)?;
    if open & !oflags::ALL != 0 || fdflags & !fdflags::ALL != 0 {
        return Err(Errno::Inval.into());
    }
    if open & oflags::DIRECTORY != 0 && open & (oflags::CREAT | oflags::EXCL | oflags::TRUNC) != 0 {
        return Err(Errno::Inval.into());
    }
    if fdflags & (fdflags::SYNC | fdflags::DSYNC | fdflags::RSYNC) != 0 {
        return Err(Errno::Notsup.into());
    }
    let write = base & rights::FD_WRITE != 0 || open & (oflags::CREAT | oflags::TRUNC) != 0;
    let read = base & rights::FD_READ != 0 || base & rights::FD_WRITE == 0;
    let mut flags = match (read, write) {
        (true, true) => OFlags::RDWR,
        (false, true) => OFlags::WRONLY,
        _ => OFlags::RDONLY,
    } | OFlags::NONBLOCK;
    if open & oflags::CREAT != 0 {
        flags |= OFlags::CREATE;
        if open & oflags::EXCL != 0 {
            flags |= OFlags::EXCL;
        }
    }
    if open & oflags::TRUNC != 0 {
        flags |= OFlags::TRUNC;
    }
    if open & oflags::DIRECTORY != 0 {
        flags |= OFlags::DIRECTORY;
    }
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    if fdflags & fdflags::APPEND != 0 {
        flags |= OFlags::APPEND;
    }
    Ok(OpenRequest {
        flags,
        nonblock: fdflags & fdflags::NONBLOCK != 0,
    })
}

/// Opens a file or directory beneath `fd` and gives the guest a new fd, a
/// table handle; `opened` and the room for it are checked before the open,
/// so a failed call has created and truncated nothing. The rights asked
/// for choose the access mode only (see the module doc); the inheriting
/// ones are unused.
#[allow(clippy::too_many_arguments)]
pub(super) fn path_open(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    dirflags: i32,
    path: i32,
    len: i32,
    open: i32,
    base: i64,
    _inheriting: i64,
    fdflags: i32,
    opened: i32,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (mut memory, ctx) = call.split();
    if let Target::Handle(file) = &target
        && filetype_of(&sys::stat(file.as_fd())?) != filetype::DIRECTORY
    {
        return Err(Errno::Notdir.into());
    }
    let dir = dir_fd(ctx, &target)?;
    let path = read_path(&memory, path, len)?;
    // Before the open: CREAT and TRUNC act, and a failed call must not.
    let opened =
        extension::out_handle(&memory, table, opened).map_err(|e| from_abi(e, ctx.last_errno()))?;
    let request = open_request(dirflags, open, base as u64, fdflags)?;
    let file = sys::open_beneath(dir, &path, request.flags, 0o666).map_err(lookup_error)?;
    drop(target);
    let id = extension::give(&mut memory, table, opened, Fd::from(file))
        .map_err(|e| from_abi(e, ctx.last_errno()))?;
    let state = FdState {
        nonblock: request.nonblock,
    };
    wasi(ctx)?.fds.set_state(table, id.raw() as i32, state);
    Ok(())
}
