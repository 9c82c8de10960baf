//! What an fd is and how it is kept: `fd_fdstat_*` (type, flags, rights),
//! `fd_filestat_*` (attributes, size, times), `fd_advise`, `fd_allocate`,
//! `fd_sync`, `fd_datasync`. Closing, renumbering and the pre-opens are
//! in `fd_table.rs`.
//!
//! Rights are advisory, as in wasmtime-wasi's preview 1 (the reference):
//! `fd_fdstat_get` reports what wasmtime reports (stdin `FD_READ`, stdout
//! and stderr `FD_WRITE`, a pre-open a fixed set, an opened file or
//! directory every right its type and access mode allow), no call checks
//! them, and `fd_fdstat_set_rights` is `ENOTSUP` on an open fd. What an fd
//! can do is how it was opened: a write on a read-only file is the
//! kernel's `EBADF`.

use std::os::fd::{AsFd, BorrowedFd};

use custody_handle::{Fd, TableRef};

use crate::errno::{Fail, WasiResult};
use crate::fds::{FdState, Target};
use crate::state::{wasi, wasi_ref};
use crate::stdio::Stream;
use crate::sys::{self, Advice, FileType, OFlags, Stat, Timespec, Timestamps};
use crate::types::{ADVICE_MAX, Errno, Fdstat, Filestat, fdflags, filetype, fstflags, rights};
use custody_host::extension::DomainCtx;
use custody_host::extension::{HostCall, pointer};

/// The WASI file type of a `stat`.
pub(crate) fn filetype_of(stat: &Stat) -> u8 {
    wasi_filetype(FileType::from_raw_mode(stat.st_mode))
}

/// The WASI file type of an OS file type (WASI has none for a FIFO, nor
/// for "the file system did not say").
pub(crate) fn wasi_filetype(kind: FileType) -> u8 {
    match kind {
        FileType::RegularFile => filetype::REGULAR_FILE,
        FileType::Directory => filetype::DIRECTORY,
        FileType::Symlink => filetype::SYMBOLIC_LINK,
        FileType::CharacterDevice => filetype::CHARACTER_DEVICE,
        FileType::BlockDevice => filetype::BLOCK_DEVICE,
        FileType::Socket => filetype::SOCKET_STREAM,
        _ => filetype::UNKNOWN,
    }
}

/// A `stat` as WASI's `filestat`.
pub(crate) fn filestat_of(stat: &Stat) -> Filestat {
    let time = |sec: i64, nsec: i64| {
        (sec.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(nsec.max(0) as u64)
    };
    Filestat {
        dev: stat.st_dev,
        ino: stat.st_ino,
        filetype: filetype_of(stat),
        nlink: stat.st_nlink,
        size: stat.st_size as u64,
        atim: time(stat.st_atime, stat.st_atime_nsec as i64),
        mtim: time(stat.st_mtime, stat.st_mtime_nsec as i64),
        ctim: time(stat.st_ctime, stat.st_ctime_nsec as i64),
    }
}

/// A table handle that is a file (not a directory): what the calls on a
/// file's contents take. stdio, pre-opens and directories are `EBADF`.
fn file(target: Target<'_>) -> Result<TableRef<'_, Fd>, Fail> {
    let Target::Handle(file) = target else {
        return Err(Errno::Badf.into());
    };
    if filetype_of(&sys::stat(file.as_fd())?) == filetype::DIRECTORY {
        return Err(Errno::Badf.into());
    }
    Ok(file)
}

/// What `fd` is: its `fdstat`, before the guest's `NONBLOCK`.
fn describe(ctx: &DomainCtx, target: &Target<'_>) -> Result<Fdstat, Fail> {
    let stdio = |stream: &Stream, right: u64| {
        let tty = matches!(stream, Stream::Os { fd, .. } if sys::is_terminal(fd.as_fd()));
        Fdstat {
            filetype: if tty {
                filetype::CHARACTER_DEVICE
            } else {
                filetype::UNKNOWN
            },
            flags: 0,
            rights_base: right,
            rights_inheriting: right,
        }
    };
    Ok(match target {
        Target::Stdio(0) => stdio(&wasi_ref(ctx)?.stdio[0], rights::FD_READ),
        Target::Stdio(i) => stdio(&wasi_ref(ctx)?.stdio[*i], rights::FD_WRITE),
        Target::Preopen(_) => Fdstat {
            filetype: filetype::DIRECTORY,
            flags: 0,
            rights_base: rights::PREOPEN_BASE,
            rights_inheriting: rights::PREOPEN_INHERITING,
        },
        Target::Handle(file) => describe_file(file.as_fd())?,
    })
}

/// The `fdstat` of a file or directory the guest opened: every right its
/// type and access mode allow, inheriting the same (wasmtime's rule), the
/// flags the OS holds.
fn describe_file(fd: BorrowedFd<'_>) -> Result<Fdstat, Fail> {
    let mut kind = filetype_of(&sys::stat(fd)?);
    if kind == filetype::SOCKET_STREAM && sys::is_datagram(fd) {
        kind = filetype::SOCKET_DGRAM;
    }
    let status = sys::status_flags(fd)?;
    let mut base = rights::ALL;
    if kind == filetype::DIRECTORY {
        base &= !(rights::FD_SEEK | rights::FD_FILESTAT_SET_SIZE | rights::PATH_FILESTAT_SET_SIZE);
    }
    let access = status & (OFlags::RDONLY | OFlags::WRONLY | OFlags::RDWR);
    if access == OFlags::WRONLY || status.contains(OFlags::PATH) {
        base &= !(rights::FD_READ | rights::FD_READDIR);
    }
    if access == OFlags::RDONLY {
        base &= !rights::FD_WRITE;
    }
    let mut flags = 0;
    if status.contains(OFlags::APPEND) {
        flags |= fdflags::APPEND;
    }
    if status.contains(OFlags::SYNC) {
        flags |= fdflags::SYNC | fdflags::RSYNC;
    } else if status.contains(OFlags::DSYNC) {
        flags |= fdflags::DSYNC;
    }
    Ok(Fdstat {
        filetype: kind,
        flags,
        rights_base: base,
        rights_inheriting: base,
    })
}

pub(super) fn fd_fdstat_get(call: &mut HostCall<'_, '_>, fd: i32, stat: i32) -> WasiResult {
    let target = crate::target(call, fd)?;
    let (mut memory, ctx) = call.split();
    memory.range(pointer(stat), Fdstat::SIZE)?;
    let mut fdstat = describe(ctx, &target)?;
    if wasi(ctx)?.fds.state(fd).nonblock {
        fdstat.flags |= fdflags::NONBLOCK;
    }
    memory.write(pointer(stat), &fdstat.encode())?;
    Ok(())
}

pub(super) fn fd_fdstat_set_flags(call: &mut HostCall<'_, '_>, fd: i32, flags: i32) -> WasiResult {
    let table = call.table();
    let target = crate::target(call, fd)?;
    let flags = u16::try_from(flags).map_err(|_| Errno::Inval)?;
    // As wasmtime: only APPEND and NONBLOCK change after opening.
    if flags & !fdflags::ALL != 0 || flags & (fdflags::DSYNC | fdflags::RSYNC | fdflags::SYNC) != 0
    {
        return Err(Errno::Inval.into());
    }
    let file = file(target)?;
    let fds = &mut wasi(call.ctx())?.fds;
    let status = sys::status_flags(file.as_fd())?;
    let status = if flags & fdflags::APPEND != 0 {
        status | OFlags::APPEND
    } else {
        status - OFlags::APPEND
    };
    sys::set_status_flags(file.as_fd(), status)?;
    let state = FdState {
        nonblock: flags & fdflags::NONBLOCK != 0,
    };
    fds.set_state(table, fd, state);
    Ok(())
}

/// As wasmtime: `EBADF` for an fd that is not open, else `ENOTSUP`
/// (rights are advisory, so there is nothing to change).
pub(super) fn fd_fdstat_set_rights(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    _base: i64,
    _inheriting: i64,
) -> WasiResult {
    crate::target(call, fd)?;
    Err(Errno::Notsup.into())
}

pub(super) fn fd_filestat_get(call: &mut HostCall<'_, '_>, fd: i32, buf: i32) -> WasiResult {
    let target = crate::target(call, fd)?;
    let (mut memory, ctx) = call.split();
    memory.range(pointer(buf), Filestat::SIZE)?;
    let filestat = match &target {
        // As wasmtime: stdio has a type and nothing else.
        Target::Stdio(_) => Filestat {
            filetype: describe(ctx, &target)?.filetype,
            ..Filestat::default()
        },
        Target::Preopen(i) => {
            let (_, dir) = ctx.preopens().get(*i).ok_or(Errno::Badf)?;
            filestat_of(&sys::stat(dir)?)
        }
        Target::Handle(file) => filestat_of(&sys::stat(file.as_fd())?),
    };
    memory.write(pointer(buf), &filestat.encode())?;
    Ok(())
}

pub(super) fn fd_filestat_set_size(call: &mut HostCall<'_, '_>, fd: i32, size: i64) -> WasiResult {
    let target = crate::target(call, fd)?;
    let file = file(target)?;
    let size = u64::try_from(size).map_err(|_| Errno::Inval)?;
    Ok(sys::set_size(file.as_fd(), size)?)
}

/// The `*_set_times` flags as the OS's timestamps: a time given, now, or
/// left alone; both a time and now for one stamp is `EINVAL`.
pub(crate) fn timestamps(atim: i64, mtim: i64, flags: i32) -> Result<Timestamps, Errno> {
    const KNOWN: i32 =
        (fstflags::ATIM | fstflags::ATIM_NOW | fstflags::MTIM | fstflags::MTIM_NOW) as i32;
    if flags & !KNOWN != 0 {
        return Err(Errno::Inval);
    }
    let flags = flags as u16;
    let stamp = |time: i64, set: u16, now: u16| -> Result<Timespec, Errno> {
        let nanos = time as u64;
        match (flags & set != 0, flags & now != 0) {
            (true, true) => Err(Errno::Inval),
            (true, false) => Ok(Timespec {
                tv_sec: (nanos / 1_000_000_000) as i64,
                tv_nsec: (nanos % 1_000_000_000) as _,
            }),
            (false, true) => Ok(Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            }),
            (false, false) => Ok(Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            }),
        }
    };
    Ok(Timestamps {
        last_access: stamp(atim, fstflags::ATIM, fstflags::ATIM_NOW)?,
        last_modification: stamp(mtim, fstflags::MTIM, fstflags::MTIM_NOW)?,
    })
}

pub(super) fn fd_filestat_set_times(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    atim: i64,
    mtim: i64,
    fst_flags: i32,
) -> WasiResult {
    let target = crate::target(call, fd)?;
    let times = timestamps(atim, mtim, fst_flags)?;
    let Target::Handle(file) = target else {
        return Err(Errno::Badf.into());
    };
    Ok(sys::set_times(file.as_fd(), &times)?)
}

pub(super) fn fd_advise(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    offset: i64,
    len: i64,
    advice: i32,
) -> WasiResult {
    let target = crate::target(call, fd)?;
    let advice = match u8::try_from(advice) {
        Ok(0) => Advice::Normal,
        Ok(1) => Advice::Sequential,
        Ok(2) => Advice::Random,
        Ok(3) => Advice::WillNeed,
        Ok(4) => Advice::DontNeed,
        Ok(ADVICE_MAX) => Advice::NoReuse,
        _ => return Err(Errno::Inval.into()),
    };
    let file = file(target)?;
    if offset < 0 || len < 0 {
        return Err(Errno::Inval.into());
    }
    Ok(sys::advise(
        file.as_fd(),
        offset as u64,
        len as u64,
        advice,
    )?)
}

pub(super) fn fd_allocate(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    offset: i64,
    len: i64,
) -> WasiResult {
    let target = crate::target(call, fd)?;
    let file = file(target)?;
    if offset < 0 || len <= 0 {
        return Err(Errno::Inval.into());
    }
    Ok(sys::allocate(file.as_fd(), offset as u64, len as u64)?)
}

pub(super) fn fd_sync(call: &mut HostCall<'_, '_>, fd: i32) -> WasiResult {
    let target = crate::target(call, fd)?;
    let file = file(target)?;
    Ok(sys::sync(file.as_fd())?)
}

pub(super) fn fd_datasync(call: &mut HostCall<'_, '_>, fd: i32) -> WasiResult {
    let target = crate::target(call, fd)?;
    let file = file(target)?;
    Ok(sys::sync_data(file.as_fd())?)
}
