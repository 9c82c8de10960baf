//! Files: `open` beneath a pre-opened directory, `close`, `dup`.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use custody_handle::Fd;
use rustix::io::Errno;

use super::MAX_PATH;
use super::io::{Stream, pin_stream};
use crate::boundary::ctx::DomainCtx;
use crate::boundary::errno::AbiError;
use crate::boundary::marshal::{self, AbiResult, HostCall, handle_id, length, pointer};
use crate::sys::{self, OpenFlags};

/// The `open` flags of `custody.h`, checked: unknown bits, no access mode,
/// or a writing flag without `WRITE` are `E_INVAL`.
pub(super) fn open_flags(bits: i32) -> Result<OpenFlags, AbiError> {
    const KNOWN: i32 = 1 | 2 | 4 | 8 | 16;
    if bits & !KNOWN != 0 {
        return Err(AbiError::Inval);
    }
    let flags = OpenFlags {
        read: bits & 1 != 0,
        write: bits & 2 != 0,
        create: bits & 4 != 0,
        truncate: bits & 8 != 0,
        append: bits & 16 != 0,
    };
    let needs_write = flags.create || flags.truncate || flags.append;
    let accessible = flags.read || flags.write;
    if !accessible || (needs_write && !flags.write) {
        return Err(AbiError::Inval);
    }
    Ok(flags)
}

pub(super) fn open(
    call: &mut HostCall<'_, '_>,
    path_ptr: i32,
    path_len: i32,
    flags: i32,
    out: i32,
) -> AbiResult {
    let table = call.table;
    let (mut memory, ctx) = call.split();
    let flags = open_flags(flags)?;
    let len = length(path_len)?;
    if len > MAX_PATH {
        return Err(AbiError::Inval);
    }
    let path = memory.read(pointer(path_ptr), len)?;
    // Before the open: CREATE and TRUNC act, and a failed call must not.
    let out = marshal::out_handle(&memory, table, out)?;
    let path = std::str::from_utf8(&path).map_err(|_| AbiError::Inval)?;
    if path.contains('\0') {
        return Err(AbiError::Inval);
    }
    let (dir, relative) = ctx.preopens.resolve(path)?;
    let fd = match sys::open_beneath(
        dir,
        Path::new(OsStr::from_bytes(relative.as_bytes())),
        flags,
    ) {
        Ok(fd) => fd,
        // openat2 reports every escape (`..`, absolute, symlink out) as EXDEV.
        Err(Errno::XDEV) => return Err(AbiError::Denied),
        Err(errno) => return Err(ctx.os_error(errno)),
    };
    marshal::give(&mut memory, table, out, Fd::from(fd)).map(|_| 0)
}

pub(super) fn close(ctx: &mut DomainCtx, h: i32) -> AbiResult {
    match ctx.close_handle(handle_id(h))? {
        true => Err(AbiError::Closed),
        false => Ok(0),
    }
}

/// An fd's handle gets an OS-level duplicate; a pipe end's, another holder
/// of the same side (the embedder sees the side closed once both are).
pub(super) fn dup(call: &mut HostCall<'_, '_>, h: i32, out: i32) -> AbiResult {
    let table = call.table;
    let stream = pin_stream(table, h)?;
    let (mut memory, ctx) = call.split();
    let out = marshal::out_handle(&memory, table, out)?;
    match &stream {
        Stream::Fd(fd) => {
            let duplicate = fd.as_fd().try_clone_to_owned();
            drop(stream);
            let duplicate = duplicate.map_err(|e| ctx.io_error(&e))?;
            marshal::give(&mut memory, table, out, Fd::from(duplicate)).map(|_| 0)
        }
        Stream::Pipe(side) => {
            let holder = side.open();
            drop(stream);
            marshal::give(&mut memory, table, out, holder).map(|_| 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_follow_the_header() {
        assert!(open_flags(1).is_ok());
        assert!(open_flags(2 | 4 | 8).is_ok());
        assert_eq!(open_flags(0), Err(AbiError::Inval));
        assert_eq!(
            open_flags(1 | 4),
            Err(AbiError::Inval),
            "CREATE needs WRITE"
        );
        assert_eq!(open_flags(1 | 32), Err(AbiError::Inval), "unknown bit");
        assert_eq!(open_flags(-1), Err(AbiError::Inval));
    }
}
