//! Sockets: `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`, on
//! socket handles the embedder gave the domain
//! ([`Domain::insert_handle`](crate::Domain::insert_handle)); a guest
//! cannot create a socket. A connection `sock_accept` takes is a new handle
//! of the domain (released at unload like every other). Waiting for data
//! or room goes through the one cancellable wait, as reads and writes do.
//! (wasmtime's preview 1 answers `ENOTSOCK` to all four.)

use std::os::fd::AsFd;

use custody_handle::{Fd, TableRef};
use rustix::event::PollFlags;
use rustix::io::Errno as OsErrno;

use crate::errno::{Fail, WasiResult, from_abi};
use crate::fd_io::{Begun, begin, gathered, on_fd, one_buffer, write_size};
use crate::fds::{FdState, Target};
use crate::state::wasi;
use crate::sys::{self, FileType, RecvFlags, Shutdown};
use crate::types::{Errno, RECV_DATA_TRUNCATED, fdflags, riflags, sdflags};
use custody_host::extension::MAX_IO;
use custody_host::extension::{self, HostCall, pointer};

/// The socket `target` names: anything else is `ENOTSOCK`.
fn socket(target: Target<'_>) -> Result<TableRef<'_, Fd>, Fail> {
    let Target::Handle(file) = target else {
        return Err(Errno::Notsock.into());
    };
    let kind = FileType::from_raw_mode(sys::stat(file.as_fd())?.st_mode);
    if kind != FileType::Socket {
        return Err(Errno::Notsock.into());
    }
    Ok(file)
}

pub(super) fn sock_accept(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    flags: i32,
    accepted: i32,
) -> WasiResult {
    let table = call.table();
    let target = crate::target(call, fd)?;
    let listener = socket(target)?;
    if flags & !i32::from(fdflags::NONBLOCK) != 0 {
        return Err(Errno::Inval.into());
    }
    let (memory, ctx) = call.split();
    // Before the accept: a connection taken is gone from the listener, so
    // a call that fails must not take one.
    let out = extension::out_handle(&memory, table, accepted)
        .map_err(|e| from_abi(e, ctx.last_errno()))?;
    let mut connection = None;
    let nonblock = wasi(ctx)?.fds.state(fd).nonblock;
    on_fd(call, listener.as_fd(), PollFlags::IN, nonblock, |_| {
        connection = Some(sys::accept(listener.as_fd())?);
        Ok(0)
    })?;
    drop(listener);
    let connection = connection.expect("accepted when Ok");
    let (mut memory, ctx) = call.split();
    let id = extension::give(&mut memory, table, out, Fd::from(connection))
        .map_err(|e| from_abi(e, ctx.last_errno()))?;
    if flags != 0 {
        wasi(ctx)?
            .fds
            .set_state(table, id.raw() as i32, FdState { nonblock: true });
    }
    Ok(())
}

pub(super) fn sock_recv(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    ri_data: i32,
    ri_data_len: i32,
    ri_flags: i32,
    ro_datalen: i32,
    ro_flags: i32,
) -> WasiResult {
    let known = i32::from(riflags::RECV_PEEK | riflags::RECV_WAITALL);
    if ri_flags & !known != 0 {
        return Err(Errno::Inval.into());
    }
    let mut flags = RecvFlags::empty();
    if ri_flags & i32::from(riflags::RECV_PEEK) != 0 {
        flags |= RecvFlags::PEEK;
    }
    let Begun {
        target,
        mut memory,
        ctx,
        list,
        out: datalen,
    } = begin(call, fd, ri_data, ri_data_len, ro_datalen)?;
    let socket = socket(target)?;
    let ro_flags = memory.out_slot(pointer(ro_flags))?;
    let Some(iov) = list.iter().find(|iov| iov.len > 0) else {
        write_size(&mut memory, datalen, 0);
        memory.put(ro_flags, 0u16.to_le_bytes());
        return Ok(());
    };
    let len = iov.len.min(MAX_IO);
    let mut whole = 0;
    let nonblock = wasi(ctx)?.fds.state(fd).nonblock;
    let buf = iov.buf;
    let got = on_fd(call, socket.as_fd(), PollFlags::IN, nonblock, |memory| {
        let filled = memory.fill_with(buf, len, |bytes| {
            sys::recv(socket.as_fd(), bytes, flags).map(|(got, all)| {
                whole = all;
                got
            })
        });
        filled.unwrap_or(Err(rustix::io::Errno::FAULT))
    })?;
    let truncated = if whole > got { RECV_DATA_TRUNCATED } else { 0 };
    let (mut memory, _) = call.split();
    write_size(&mut memory, datalen, got);
    memory.put(ro_flags, truncated.to_le_bytes());
    Ok(())
}

pub(super) fn sock_send(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    si_data: i32,
    si_data_len: i32,
    si_flags: i32,
    so_datalen: i32,
) -> WasiResult {
    // `siflags` has no flags.
    if si_flags != 0 {
        return Err(Errno::Inval.into());
    }
    let Begun {
        target,
        memory: _,
        ctx,
        list,
        out,
    } = begin(call, fd, si_data, si_data_len, so_datalen)?;
    let socket = socket(target)?;
    let nonblock = wasi(ctx)?.fds.state(fd).nonblock;
    let sent = on_fd(call, socket.as_fd(), PollFlags::OUT, nonblock, |memory| {
        gathered(memory, &list, MAX_IO, |slices| {
            sys::send(socket.as_fd(), &one_buffer(slices))
        })
        .unwrap_or(Err(OsErrno::FAULT))
    })?;
    write_size(&mut call.split().0, out, sent);
    Ok(())
}

pub(super) fn sock_shutdown(call: &mut HostCall<'_, '_>, fd: i32, how: i32) -> WasiResult {
    let target = crate::target(call, fd)?;
    let socket = socket(target)?;
    let how = match u8::try_from(how) {
        Ok(sdflags::RD) => Shutdown::Read,
        Ok(sdflags::WR) => Shutdown::Write,
        Ok(both) if both == sdflags::RD | sdflags::WR => Shutdown::Both,
        _ => return Err(Errno::Inval.into()),
    };
    Ok(sys::shutdown(socket.as_fd(), how)?)
}
