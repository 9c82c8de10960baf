//! Moving bytes: `fd_read`, `fd_write`, `fd_pread`, `fd_pwrite`, and the
//! offset (`fd_seek`, `fd_tell`).
//!
//! A read fills the first non-empty iovec (a short read, as wasmtime's
//! preview 1 does); a write takes every iovec, up to [`MAX_IO`] bytes in
//! all, straight from guest memory: one `write` (or `writev`, for several
//! iovecs) of the guest's own bytes for a plain memory; a shared one goes
//! through one bounce buffer (see [`GuestMemory::gather_with`]). A read or
//! write that would block waits through the domain's one cancellable wait
//! (an abort or unload wakes it), unless the guest set `NONBLOCK` on the
//! fd: then it is `EAGAIN`.

use std::borrow::Cow;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd};

use custody_handle::{Fd, TableRef};
use rustix::event::PollFlags;
use rustix::io::Errno as OsErrno;

use crate::errno::{Fail, WasiResult};
use crate::fd_meta::filetype_of;
use crate::fds::Target;
use crate::state::wasi;
use crate::stdio::Stream;
use crate::sys::{self, SeekFrom};
use crate::types::{Errno, Iovec, filetype, whence};
use custody_host::extension::DomainCtx;
use custody_host::extension::MAX_IO;
use custody_host::extension::{Fault, GuestMemory, OutSlot};
use custody_host::extension::{HostCall, pointer};
use custody_host::pipe::Transfer;

/// Most iovecs one call takes (POSIX's `IOV_MAX`).
pub(crate) const MAX_IOVS: u32 = 1024;
/// Most bytes one write to a pipe-like stdio stream moves: a pipe takes
/// this much at once without blocking once `poll` says it is writable.
const PIPE_BUF: u32 = 4096;

/// The iovec array at `iovs` (`len` entries), every buffer checked whole.
pub(crate) fn iovecs(memory: &GuestMemory<'_>, iovs: i32, len: i32) -> Result<Vec<Iovec>, Fail> {
    let len = len as u32;
    if len > MAX_IOVS {
        return Err(Errno::Inval.into());
    }
    // Decoded where the array lies (one range is one slice), not copied
    // out first.
    let array = (pointer(iovs), len * Iovec::SIZE);
    let list: Vec<Iovec> = memory.gather_with([array], usize::MAX, |slices| {
        slices
            .iter()
            .flat_map(|slice| slice.chunks_exact(Iovec::SIZE as usize))
            .map(Iovec::decode)
            .collect()
    })?;
    for iov in &list {
        memory.range(iov.buf, iov.len)?;
    }
    Ok(list)
}

/// What a read or write works on once [`begin`] checked it.
pub(crate) struct Begun<'a, 'c> {
    pub(crate) target: Target<'a>,
    pub(crate) memory: GuestMemory<'c>,
    pub(crate) ctx: &'c mut DomainCtx,
    /// The iovecs, every buffer inside memory.
    pub(crate) list: Vec<Iovec>,
    /// Where the count goes (a `u32`), inside memory.
    pub(crate) out: OutSlot<4>,
}

/// What every read or write starts with, before it moves a byte: the fd
/// resolved (a handle pinned), then the iovec array read and every buffer
/// checked whole, and the place of the result (`out`, a `u32`) checked.
pub(crate) fn begin<'a, 'c>(
    call: &'c mut HostCall<'a, '_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    out: i32,
) -> Result<Begun<'a, 'c>, Fail> {
    let target = crate::target(call, fd)?;
    let (memory, ctx) = call.split();
    let list = iovecs(&memory, iovs, iovs_len)?;
    let out = memory.out_slot(pointer(out))?;
    Ok(Begun {
        target,
        memory,
        ctx,
        list,
        out,
    })
}

/// Runs `io` on the bytes of `iovs`, in order, up to `limit` in all (see
/// [`GuestMemory::gather_with`]: the guest's own bytes for a plain memory).
/// [`begin`] checked every iovec whole and a memory never shrinks, so it
/// faults only if that invariant breaks.
pub(crate) fn gathered<R>(
    memory: &GuestMemory<'_>,
    iovs: &[Iovec],
    limit: u32,
    io: impl FnOnce(&[IoSlice<'_>]) -> R,
) -> Result<R, Fault> {
    memory.gather_with(
        iovs.iter().map(|iov| (iov.buf, iov.len)),
        limit as usize,
        io,
    )
}

/// Gathered bytes as one buffer, for a sink that takes one (a capture, an
/// in-process pipe, a socket): borrowed when there is one slice (a libc
/// `write`), copied only when there are several.
pub(crate) fn one_buffer<'s>(slices: &'s [IoSlice<'_>]) -> Cow<'s, [u8]> {
    match slices {
        [] => Cow::Borrowed(&[]),
        [only] => Cow::Borrowed(only),
        many => {
            let mut bytes = Vec::with_capacity(many.iter().map(|slice| slice.len()).sum());
            for slice in many {
                bytes.extend_from_slice(slice);
            }
            Cow::Owned(bytes)
        }
    }
}

/// Writes the bytes of `iovs` (up to `limit`) to `fd` straight from guest
/// memory, with one system call ([`sys::write_vectored`]).
fn write_from(
    memory: &GuestMemory<'_>,
    iovs: &[Iovec],
    limit: u32,
    fd: BorrowedFd<'_>,
) -> Result<usize, OsErrno> {
    gathered(memory, iovs, limit, |slices| {
        sys::write_vectored(fd, slices)
    })
    .unwrap_or(Err(OsErrno::FAULT))
}

/// The buffer a read fills: the first non-empty iovec, cut to [`MAX_IO`].
fn first_buffer(iovs: &[Iovec]) -> Option<(u32, u32)> {
    iovs.iter()
        .find(|iov| iov.len > 0)
        .map(|iov| (iov.buf, iov.len.min(MAX_IO)))
}

/// Runs one non-blocking `io` on `fd` (with the caller's memory) as the
/// fd's mode says: waiting through the call's cancellable wait while it
/// would block, or, for a guest's `NONBLOCK` fd, `EAGAIN` at once.
pub(crate) fn on_fd(
    call: &mut HostCall<'_, '_>,
    fd: BorrowedFd<'_>,
    interest: PollFlags,
    nonblock: bool,
    mut io: impl FnMut(&mut GuestMemory<'_>) -> Result<usize, OsErrno>,
) -> Result<usize, Fail> {
    if nonblock {
        loop {
            let (mut memory, _) = call.split();
            match io(&mut memory) {
                Err(OsErrno::INTR) => {}
                other => return Ok(other?),
            }
        }
    }
    match call.until_ready(fd, interest, |memory| Ok(io(memory))) {
        Ok(n) => Ok(n),
        Err(error) => Err(crate::fail(call, error)),
    }
}

/// Runs `io` on a host fd that may be blocking, each time once `poll` says
/// it is ready for `interest` (so the call itself never blocks), until it
/// does not report `EAGAIN`.
fn when_ready(
    call: &mut HostCall<'_, '_>,
    fd: BorrowedFd<'_>,
    interest: PollFlags,
    mut io: impl FnMut(&mut GuestMemory<'_>) -> Result<usize, OsErrno>,
) -> Result<usize, Fail> {
    loop {
        if let Err(error) = call.wait_ready(fd, interest) {
            return Err(crate::fail(call, error));
        }
        let (mut memory, _) = call.split();
        match io(&mut memory) {
            Ok(n) => return Ok(n),
            Err(OsErrno::AGAIN | OsErrno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// A directory read or written as a file is a bad fd to WASI (as wasmtime
/// says it), not `EISDIR`.
fn not_a_file(fail: Fail) -> Fail {
    match fail {
        Fail::Errno(Errno::Isdir) => Errno::Badf.into(),
        other => other,
    }
}

/// Reads `len` bytes at most into guest memory at `buf` from `fd`.
fn read_into(
    fd: BorrowedFd<'_>,
    buf: u32,
    len: u32,
) -> impl FnMut(&mut GuestMemory<'_>) -> Result<usize, OsErrno> + '_ {
    move |memory| {
        memory
            .fill_with(buf, len, |bytes| sys::read(fd, bytes))
            .unwrap_or(Err(OsErrno::FAULT))
    }
}

pub(super) fn fd_read(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> WasiResult {
    let Begun {
        target,
        mut memory,
        ctx,
        list,
        out,
    } = begin(call, fd, iovs, iovs_len, nread)?;
    let Some((buf, len)) = first_buffer(&list) else {
        write_size(&mut memory, out, 0);
        return Ok(());
    };
    let nonblock = wasi(ctx)?.fds.state(fd).nonblock;
    let stdin = wasi(ctx)?.stdio[0].clone();
    let n = match target {
        // A null stdin is at its end at once; a host fd may be a blocking
        // one: it is read only once `poll` says it is readable.
        Target::Stdio(0) => match stdin {
            Stream::Os { fd, .. } => when_ready(
                call,
                fd.as_fd(),
                PollFlags::IN,
                read_into(fd.as_fd(), buf, len),
            )?,
            Stream::Pipe(side) => through_pipe(call, |memory| {
                let read = memory.fill_with(buf, len, |bytes| match side.read(bytes) {
                    Ok(Transfer::Done(n)) => Ok(n),
                    other => Err(other),
                })?;
                Ok(match read {
                    Ok(n) => Transfer::Done(n),
                    Err(other) => other?,
                })
            })?,
            _ => 0,
        },
        Target::Stdio(_) | Target::Preopen(_) => return Err(Errno::Badf.into()),
        Target::Handle(file) => on_fd(
            call,
            file.as_fd(),
            PollFlags::IN,
            nonblock,
            read_into(file.as_fd(), buf, len),
        )
        .map_err(not_a_file)?,
    };
    write_size(&mut call.split().0, out, n);
    Ok(())
}

pub(super) fn fd_write(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> WasiResult {
    let Begun {
        target,
        memory: _,
        ctx,
        list,
        out,
    } = begin(call, fd, iovs, iovs_len, nwritten)?;
    let nonblock = wasi(ctx)?.fds.state(fd).nonblock;
    let n = match target {
        Target::Stdio(i @ (1 | 2)) => write_stdio(call, i, &list)?,
        Target::Stdio(_) | Target::Preopen(_) => return Err(Errno::Badf.into()),
        Target::Handle(file) => on_fd(call, file.as_fd(), PollFlags::OUT, nonblock, |memory| {
            write_from(memory, &list, MAX_IO, file.as_fd())
        })
        .map_err(not_a_file)?,
    };
    write_size(&mut call.split().0, out, n);
    Ok(())
}

/// Writes the bytes of `iovs` to stdout or stderr: a null stream takes
/// everything, a capture buffer what its limit leaves room for, a host fd
/// what it takes at once (a pipe-like one once it is writable, at most
/// [`PIPE_BUF`] bytes), an in-process pipe what its room takes.
fn write_stdio(call: &mut HostCall<'_, '_>, which: usize, iovs: &[Iovec]) -> Result<usize, Fail> {
    let ctx = call.ctx();
    let (domain, stream) = (ctx.id(), wasi(ctx)?.stdio[which].clone());
    match stream {
        Stream::Null => {
            let total: u64 = iovs.iter().map(|iov| u64::from(iov.len)).sum();
            Ok(total.min(u64::from(MAX_IO)) as usize)
        }
        Stream::Capture(capture) => {
            let (memory, _) = call.split();
            Ok(gathered(&memory, iovs, MAX_IO, |slices| {
                capture.push(domain, &one_buffer(slices))
            })??)
        }
        Stream::Os { fd, polled: false } => {
            on_fd(call, fd.as_fd(), PollFlags::OUT, false, |memory| {
                write_from(memory, iovs, MAX_IO, fd.as_fd())
            })
        }
        Stream::Os { fd, polled: true } => when_ready(call, fd.as_fd(), PollFlags::OUT, |memory| {
            write_from(memory, iovs, PIPE_BUF, fd.as_fd())
        }),
        Stream::Pipe(side) => through_pipe(call, |memory| {
            Ok(gathered(memory, iovs, MAX_IO, |slices| {
                side.write(&one_buffer(slices))
            })??)
        }),
    }
}

/// Moves bytes through an in-process pipe with `transfer`, waiting on the
/// pipe's bell (through the domain's one cancellable wait, at most the
/// policy's `max_wait`) while nothing can move. A write to a pipe whose
/// embedder's end is gone is `EPIPE`.
fn through_pipe(
    call: &mut HostCall<'_, '_>,
    mut transfer: impl FnMut(&mut GuestMemory<'_>) -> Result<Transfer, Fail>,
) -> Result<usize, Fail> {
    loop {
        let (mut memory, _) = call.split();
        match transfer(&mut memory)? {
            Transfer::Done(n) => return Ok(n),
            Transfer::Closed => return Err(Errno::Pipe.into()),
            Transfer::Wait(bell) => {
                if let Err(error) = call.wait_ready(bell.as_fd(), PollFlags::IN) {
                    return Err(crate::fail(call, error));
                }
            }
        }
    }
}

pub(super) fn fd_pread(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: i64,
    nread: i32,
) -> WasiResult {
    let Begun {
        target,
        mut memory,
        ctx: _,
        list,
        out,
    } = begin(call, fd, iovs, iovs_len, nread)?;
    let file = positioned(target)?;
    let Some((buf, len)) = first_buffer(&list) else {
        write_size(&mut memory, out, 0);
        return Ok(());
    };
    let n = memory
        .fill_with(buf, len, |bytes| {
            sys::read_at(file.as_fd(), bytes, offset as u64)
        })?
        .map_err(Fail::from)
        .map_err(not_a_file)?;
    write_size(&mut memory, out, n);
    Ok(())
}

pub(super) fn fd_pwrite(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: i64,
    nwritten: i32,
) -> WasiResult {
    let Begun {
        target,
        mut memory,
        ctx: _,
        list,
        out,
    } = begin(call, fd, iovs, iovs_len, nwritten)?;
    let file = positioned(target)?;
    let n = gathered(&memory, &list, MAX_IO, |slices| {
        sys::write_vectored_at(file.as_fd(), slices, offset as u64)
    })?
    .map_err(Fail::from)
    .map_err(not_a_file)?;
    write_size(&mut memory, out, n);
    Ok(())
}

/// The file behind a positioned or seeking call: stdio cannot seek
/// (`ESPIPE`), a pre-open is no file (`EBADF`).
fn positioned(target: Target<'_>) -> Result<TableRef<'_, Fd>, Fail> {
    match target {
        Target::Stdio(_) => Err(Errno::Spipe.into()),
        Target::Preopen(_) => Err(Errno::Badf.into()),
        Target::Handle(file) => Ok(file),
    }
}

pub(super) fn fd_seek(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    offset: i64,
    whence: i32,
    newoffset: i32,
) -> WasiResult {
    let target = crate::target(call, fd)?;
    let (mut memory, _) = call.split();
    let newoffset = memory.out_slot(pointer(newoffset))?;
    let to = match u8::try_from(whence) {
        Ok(whence::SET) if offset >= 0 => SeekFrom::Start(offset as u64),
        Ok(whence::CUR) => SeekFrom::Current(offset),
        Ok(whence::END) => SeekFrom::End(offset),
        _ => return Err(Errno::Inval.into()),
    };
    let file = positioned(target)?;
    // The kernel seeks a directory (its readdir offset); WASI has no such
    // thing: `EBADF`, as wasmtime answers (it seeks files only).
    if filetype_of(&sys::stat(file.as_fd())?) == filetype::DIRECTORY {
        return Err(Errno::Badf.into());
    }
    let at = sys::seek(file.as_fd(), to)
        .map_err(Fail::from)
        .map_err(not_a_file)?;
    memory.put(newoffset, at.to_le_bytes());
    Ok(())
}

pub(super) fn fd_tell(call: &mut HostCall<'_, '_>, fd: i32, offset: i32) -> WasiResult {
    fd_seek(call, fd, 0, i32::from(whence::CUR), offset)
}

/// Writes a `size` result (a `u32`) into its checked slot.
pub(crate) fn write_size(memory: &mut GuestMemory<'_>, out: OutSlot<4>, n: usize) {
    memory.put(out, (n as u32).to_le_bytes());
}
