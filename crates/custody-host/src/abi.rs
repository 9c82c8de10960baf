//! The `custody` guest ABI, version 1 (SPEC B1; `guest/include/custody.h`).
//!
//! Every function is a plain Rust function over the caller's guest memory and
//! its domain context, so the marshalling rules are visible in one place:
//!
//! - **Handle arguments** are resolved with [`HandleTable::get`], whose guard
//!   pins the handle for the whole host call: a handle closed concurrently is
//!   released only when the call ends. A null, stale, closed or wrong-kind id
//!   is an error code before any host work happens.
//! - **Out-handles** are inserted into the table *before* their id is written
//!   to guest memory; if the write faults the new handle is closed again, so
//!   no path leaks one.
//! - **By-reference handle arrays** (`poll`) are read once, every element is
//!   pinned, and on return the array is read again: a changed element fails
//!   the call with `E_NOTSUP` (the ready index would name another handle).
//! - **Guest input is never trusted**: pointers and lengths are checked by
//!   the guest-memory module; a negative length is `E_INVAL`, an out-of-bounds one
//!   `E_FAULT`, never a panic.
//!
//! [`HandleTable::get`]: custody_handle::HandleTable::get

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use custody_handle::{Fd, HandleError, HandleId, TableRef};
use rustix::event::PollFlags;
use rustix::io::Errno;
use wasmtime::{Caller, Linker};

use crate::domain::DomainCtx;
use crate::memory::{Fault, GuestMemory, with_memory};
use crate::policy::Category;
use crate::sys::{self, OpenFlags, Wait};

/// The import module name.
pub const MODULE: &str = "custody";

/// Most bytes one `read` or `write` moves (a larger request is a short
/// read/write, which the ABI allows).
pub const MAX_IO: u32 = 1 << 20;
/// Longest path `open` accepts.
pub const MAX_PATH: u32 = 4096;
/// Longest log line kept (longer text is cut).
pub const MAX_LOG: u32 = 64 * 1024;
/// Most handles one `poll` waits on.
pub const MAX_POLL: i32 = 64;

/// An ABI error code: what a host function returns to the guest on failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum AbiError {
    /// The handle id is 0.
    Null = -1,
    /// The id was never issued to this domain or was closed by the guest.
    Stale = -2,
    /// The handle was closed by its owner (the host).
    Closed = -3,
    /// A live handle of a kind this function does not accept.
    Kind = -4,
    /// A pointer or length outside the guest's memory.
    Fault = -5,
    /// The domain's handle quota is used up.
    Quota = -6,
    /// A wait ended with nothing ready.
    TimedOut = -7,
    /// Refused by policy or by the pre-open sandbox.
    Denied = -8,
    /// A by-reference handle array changed during the call.
    NotSup = -9,
    /// An OS error; `last_error` returns its errno.
    Io = -10,
    /// Bad flags, a negative length, a count out of range.
    Inval = -11,
    /// The call is being aborted (deadline, unload).
    Aborted = -12,
}

impl AbiError {
    /// Every code, in numeric order (-1 first).
    pub const ALL: [AbiError; 12] = [
        AbiError::Null,
        AbiError::Stale,
        AbiError::Closed,
        AbiError::Kind,
        AbiError::Fault,
        AbiError::Quota,
        AbiError::TimedOut,
        AbiError::Denied,
        AbiError::NotSup,
        AbiError::Io,
        AbiError::Inval,
        AbiError::Aborted,
    ];

    /// The code as the guest sees it.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The error for a code, if it is one.
    pub fn from_code(code: i32) -> Option<AbiError> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }

    /// The C name, e.g. `E_STALE`.
    pub fn name(self) -> &'static str {
        match self {
            AbiError::Null => "E_NULL",
            AbiError::Stale => "E_STALE",
            AbiError::Closed => "E_CLOSED",
            AbiError::Kind => "E_KIND",
            AbiError::Fault => "E_FAULT",
            AbiError::Quota => "E_QUOTA",
            AbiError::TimedOut => "E_TIMEDOUT",
            AbiError::Denied => "E_DENIED",
            AbiError::NotSup => "E_NOTSUP",
            AbiError::Io => "E_IO",
            AbiError::Inval => "E_INVAL",
            AbiError::Aborted => "E_ABORTED",
        }
    }
}

impl From<Fault> for AbiError {
    fn from(_: Fault) -> Self {
        AbiError::Fault
    }
}

/// What a handle-resolution failure is to the guest.
pub(crate) fn resolution(error: HandleError) -> AbiError {
    match error {
        HandleError::Null => AbiError::Null,
        HandleError::Stale(_) => AbiError::Stale,
        HandleError::Closed => AbiError::Closed,
        HandleError::WrongKind { .. } => AbiError::Kind,
        HandleError::QuotaExceeded { .. } | HandleError::RefCountOverflow => AbiError::Quota,
        _ => AbiError::Io,
    }
}

type AbiResult = Result<i32, AbiError>;

/// A guest length: negative is `E_INVAL`.
fn length(len: i32) -> Result<u32, AbiError> {
    u32::try_from(len).map_err(|_| AbiError::Inval)
}

/// A guest pointer: an unsigned offset into its memory.
fn pointer(ptr: i32) -> u32 {
    ptr as u32
}

fn handle_id(raw: i32) -> HandleId {
    HandleId::from_raw(raw as u32)
}

/// One host function: its name and the host-protection categories it needs.
#[derive(Clone, Copy, Debug)]
pub struct HostFunction {
    /// The import name in module `custody`.
    pub name: &'static str,
    /// What it touches, for host protection (SPEC Part C).
    pub categories: &'static [Category],
    /// One line on what it does.
    pub summary: &'static str,
}

/// Every function of the ABI with its categories.
pub const FUNCTIONS: &[HostFunction] = &[
    HostFunction {
        name: "log",
        categories: &[],
        summary: "write a line to the host's log",
    },
    HostFunction {
        name: "open",
        categories: &[Category::MayLeakOnAbort],
        summary: "open a file under a pre-opened directory",
    },
    HostFunction {
        name: "read",
        categories: &[Category::MayLeakOnAbort],
        summary: "read from a file or pipe",
    },
    HostFunction {
        name: "write",
        categories: &[Category::MayLeakOnAbort],
        summary: "write to a file or pipe",
    },
    HostFunction {
        name: "close",
        categories: &[],
        summary: "close a handle",
    },
    HostFunction {
        name: "dup",
        categories: &[Category::MayLeakOnAbort],
        summary: "duplicate a handle",
    },
    HostFunction {
        name: "pipe",
        categories: &[Category::MayLeakOnAbort, Category::Synchronization],
        summary: "create a pipe",
    },
    HostFunction {
        name: "poll",
        categories: &[Category::Synchronization],
        summary: "wait until one of several handles is readable",
    },
    HostFunction {
        name: "sleep",
        categories: &[Category::Synchronization],
        summary: "sleep",
    },
    HostFunction {
        name: "last_error",
        categories: &[],
        summary: "the errno behind the last E_IO",
    },
    HostFunction {
        name: "critical_enter",
        categories: &[Category::Synchronization],
        summary: "enter a critical region",
    },
    HostFunction {
        name: "critical_exit",
        categories: &[Category::Synchronization],
        summary: "leave a critical region",
    },
];

/// The ABI function with this import name.
pub fn function(name: &str) -> Option<&'static HostFunction> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Runs an ABI function body with the caller's memory and context (after
/// the abort check every function makes first).
fn call(
    caller: &mut Caller<'_, DomainCtx>,
    body: impl FnOnce(&mut GuestMemory<'_>, &mut DomainCtx) -> AbiResult,
) -> wasmtime::Result<i32> {
    let result = if caller.data().cancel.is_raised() {
        Err(AbiError::Aborted)
    } else {
        with_memory(caller, body)
    };
    finish(caller.data(), result)
}

/// [`call`] for a function without pointer arguments: no lookup of the
/// caller's `memory` export.
fn call_ctx(
    caller: &mut Caller<'_, DomainCtx>,
    body: impl FnOnce(&mut DomainCtx) -> AbiResult,
) -> wasmtime::Result<i32> {
    let ctx = caller.data_mut();
    let result = if ctx.cancel.is_raised() {
        Err(AbiError::Aborted)
    } else {
        body(ctx)
    };
    finish(caller.data(), result)
}

/// The guest's result, or a trap when the call is being aborted.
fn finish(ctx: &DomainCtx, result: AbiResult) -> wasmtime::Result<i32> {
    match result {
        Ok(n) => Ok(n),
        Err(error) => Ok(ctx.deliver(error)?.code()),
    }
}

/// Defines every ABI function in `linker`.
pub(crate) fn define(linker: &mut Linker<DomainCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "log",
        |mut c: Caller<'_, DomainCtx>, level: i32, ptr: i32, len: i32| {
            call(&mut c, |m, ctx| log(m, ctx, level, ptr, len))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "open",
        |mut c: Caller<'_, DomainCtx>, path: i32, len: i32, flags: i32, out: i32| {
            call(&mut c, |m, ctx| open(m, ctx, path, len, flags, out))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "read",
        |mut c: Caller<'_, DomainCtx>, h: i32, buf: i32, len: i32, out: i32| {
            call(&mut c, |m, ctx| read(m, ctx, h, buf, len, out))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "write",
        |mut c: Caller<'_, DomainCtx>, h: i32, buf: i32, len: i32, out: i32| {
            call(&mut c, |m, ctx| write(m, ctx, h, buf, len, out))
        },
    )?;
    linker.func_wrap(MODULE, "close", |mut c: Caller<'_, DomainCtx>, h: i32| {
        call_ctx(&mut c, |ctx| close(ctx, h))
    })?;
    linker.func_wrap(
        MODULE,
        "dup",
        |mut c: Caller<'_, DomainCtx>, h: i32, out: i32| call(&mut c, |m, ctx| dup(m, ctx, h, out)),
    )?;
    linker.func_wrap(
        MODULE,
        "pipe",
        |mut c: Caller<'_, DomainCtx>, out_r: i32, out_w: i32| {
            call(&mut c, |m, ctx| pipe(m, ctx, out_r, out_w))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "poll",
        |mut c: Caller<'_, DomainCtx>, handles: i32, count: i32, timeout: i32, out: i32| {
            call(&mut c, |m, ctx| poll(m, ctx, handles, count, timeout, out))
        },
    )?;
    linker.func_wrap(MODULE, "sleep", |mut c: Caller<'_, DomainCtx>, ms: i32| {
        call_ctx(&mut c, |ctx| sleep(ctx, ms))
    })?;
    linker.func_wrap(MODULE, "last_error", |c: Caller<'_, DomainCtx>| {
        Ok(c.data().last_errno.get())
    })?;
    linker.func_wrap(MODULE, "critical_enter", |mut c: Caller<'_, DomainCtx>| {
        call_ctx(&mut c, |ctx| {
            ctx.critical_depth += 1;
            Ok(0)
        })
    })?;
    linker.func_wrap(MODULE, "critical_exit", |mut c: Caller<'_, DomainCtx>| {
        call_ctx(&mut c, |ctx| {
            if ctx.critical_depth == 0 {
                return Err(AbiError::Inval);
            }
            ctx.critical_depth -= 1;
            Ok(0)
        })
    })?;
    Ok(())
}

fn log(
    memory: &mut GuestMemory<'_>,
    ctx: &mut DomainCtx,
    level: i32,
    ptr: i32,
    len: i32,
) -> AbiResult {
    if !(0..=4).contains(&level) {
        return Err(AbiError::Inval);
    }
    let len = length(len)?;
    memory.range(pointer(ptr), len)?;
    let bytes = memory.read(pointer(ptr), len.min(MAX_LOG))?;
    ctx.log_line(level as u8, &String::from_utf8_lossy(&bytes));
    Ok(0)
}

fn open_flags(bits: i32) -> Result<OpenFlags, AbiError> {
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

/// Writes a new handle's id to guest memory, or closes the handle again if
/// the write faults: no path leaks a handle.
fn deliver(memory: &mut GuestMemory<'_>, ctx: &mut DomainCtx, out: i32, id: HandleId) -> AbiResult {
    match memory.write_i32(pointer(out), id.raw() as i32) {
        Ok(()) => {
            ctx.ledger.opened += 1;
            Ok(0)
        }
        Err(fault) => {
            let _ = ctx.table.close(id);
            Err(fault.into())
        }
    }
}

fn open(
    memory: &mut GuestMemory<'_>,
    ctx: &mut DomainCtx,
    path_ptr: i32,
    path_len: i32,
    flags: i32,
    out: i32,
) -> AbiResult {
    let flags = open_flags(flags)?;
    let len = length(path_len)?;
    if len > MAX_PATH {
        return Err(AbiError::Inval);
    }
    let path = memory.read(pointer(path_ptr), len)?;
    let path = std::str::from_utf8(&path).map_err(|_| AbiError::Inval)?;
    if path.contains('\0') {
        return Err(AbiError::Inval);
    }
    let (name, relative) = path.split_once('/').unwrap_or((path, ""));
    let relative = if relative.is_empty() { "." } else { relative };
    if relative.starts_with('/') {
        return Err(AbiError::Denied);
    }
    let dir = ctx
        .preopens
        .iter()
        .find(|p| p.name == name)
        .ok_or(AbiError::Denied)?;
    let fd = match sys::open_beneath(
        dir.dir.as_fd(),
        Path::new(OsStr::from_bytes(relative.as_bytes())),
        flags,
    ) {
        Ok(fd) => fd,
        // openat2 reports every escape (`..`, absolute, symlink out) as EXDEV.
        Err(Errno::XDEV) => return Err(AbiError::Denied),
        Err(errno) => return Err(ctx.os_error(errno.raw_os_error())),
    };
    let id = ctx.table.insert(Fd::from(fd)).map_err(resolution)?;
    deliver(memory, ctx, out, id)
}

/// The fd behind a handle argument, pinned for the rest of the call.
fn resolve<'t>(
    table: &'t custody_handle::HandleTable,
    raw: i32,
) -> Result<TableRef<'t, Fd>, AbiError> {
    table.get::<Fd>(handle_id(raw)).map_err(resolution)
}

/// Waits until a read or write would not block: `E_TIMEDOUT` at the
/// policy's wait cap.
fn wait_ready(ctx: &DomainCtx, fd: &TableRef<'_, Fd>, interest: PollFlags) -> Result<(), AbiError> {
    match ctx.wait(&[fd.as_fd()], interest, ctx.policy.max_wait)? {
        Wait::Ready(_) => Ok(()),
        _ => Err(AbiError::TimedOut),
    }
}

fn read(
    memory: &mut GuestMemory<'_>,
    ctx: &mut DomainCtx,
    h: i32,
    buf: i32,
    len: i32,
    out: i32,
) -> AbiResult {
    let len = length(len)?.min(MAX_IO);
    // Check both destinations before consuming any data.
    memory.range(pointer(buf), len)?;
    memory.range(pointer(out), 4)?;
    let fd = resolve(&ctx.table, h)?;
    let n = loop {
        match memory.fill_with(pointer(buf), len, |bytes| sys::read(fd.as_fd(), bytes))? {
            Ok(n) => break n,
            Err(Errno::AGAIN) => wait_ready(ctx, &fd, PollFlags::IN)?,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(ctx.os_error(errno.raw_os_error())),
        }
    };
    drop(fd);
    memory.write_i32(pointer(out), n as i32)?;
    Ok(0)
}

fn write(
    memory: &mut GuestMemory<'_>,
    ctx: &mut DomainCtx,
    h: i32,
    buf: i32,
    len: i32,
    out: i32,
) -> AbiResult {
    let len = length(len)?.min(MAX_IO);
    memory.range(pointer(out), 4)?;
    let bytes = memory.read(pointer(buf), len)?;
    let fd = resolve(&ctx.table, h)?;
    let n = loop {
        match sys::write(fd.as_fd(), &bytes) {
            Ok(n) => break n,
            Err(Errno::AGAIN) => wait_ready(ctx, &fd, PollFlags::OUT)?,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(ctx.os_error(errno.raw_os_error())),
        }
    };
    drop(fd);
    memory.write_i32(pointer(out), n as i32)?;
    Ok(0)
}

fn close(ctx: &mut DomainCtx, h: i32) -> AbiResult {
    let id = handle_id(h);
    // A shared handle its owner closed is still removed, but reported.
    let closed_by_owner = matches!(ctx.table.kind_of(id), Err(HandleError::Closed));
    match ctx.table.close(id) {
        Ok(_) => {
            ctx.ledger.closed_by_guest += 1;
            if closed_by_owner {
                Err(AbiError::Closed)
            } else {
                Ok(0)
            }
        }
        Err(HandleError::ReleaseFailed(error)) => {
            ctx.ledger.closed_by_guest += 1;
            ctx.ledger.release_failures += 1;
            Err(ctx.io_error(&error))
        }
        Err(error) => Err(resolution(error)),
    }
}

fn dup(memory: &mut GuestMemory<'_>, ctx: &mut DomainCtx, h: i32, out: i32) -> AbiResult {
    let duplicate = {
        let fd = resolve(&ctx.table, h)?;
        fd.as_fd().try_clone_to_owned()
    };
    let duplicate = duplicate.map_err(|e| ctx.io_error(&e))?;
    let id = ctx.table.insert(Fd::from(duplicate)).map_err(resolution)?;
    deliver(memory, ctx, out, id)
}

fn pipe(memory: &mut GuestMemory<'_>, ctx: &mut DomainCtx, out_r: i32, out_w: i32) -> AbiResult {
    let (r, w) = (pointer(out_r), pointer(out_w));
    if r.abs_diff(w) < 4 {
        return Err(AbiError::Inval);
    }
    let (read_end, write_end) = sys::pipe().map_err(|e| ctx.os_error(e.raw_os_error()))?;
    let read_id = ctx.table.insert(Fd::from(read_end)).map_err(resolution)?;
    let write_id = match ctx.table.insert(Fd::from(write_end)) {
        Ok(id) => id,
        Err(error) => {
            let _ = ctx.table.close(read_id);
            return Err(resolution(error));
        }
    };
    let delivered = memory
        .write_i32(r, read_id.raw() as i32)
        .and_then(|()| memory.write_i32(w, write_id.raw() as i32));
    if let Err(fault) = delivered {
        let _ = ctx.table.close(read_id);
        let _ = ctx.table.close(write_id);
        return Err(fault.into());
    }
    ctx.ledger.opened += 2;
    Ok(0)
}

fn poll(
    memory: &mut GuestMemory<'_>,
    ctx: &mut DomainCtx,
    handles: i32,
    count: i32,
    timeout_ms: i32,
    out: i32,
) -> AbiResult {
    if !(1..=MAX_POLL).contains(&count) || timeout_ms < -1 {
        return Err(AbiError::Inval);
    }
    let timeout = ctx.policy.wait_for(timeout_ms).ok_or(AbiError::Denied)?;
    // Read the array once; everything below works on this copy.
    let snapshot = memory.read(pointer(handles), count as u32 * 4)?;
    memory.range(pointer(out), 4)?;
    let pinned = snapshot
        .chunks_exact(4)
        .map(|raw| {
            resolve(
                &ctx.table,
                i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fds: Vec<_> = pinned.iter().map(|fd| fd.as_fd()).collect();
    let outcome = ctx.wait(&fds, PollFlags::IN, timeout);
    drop(fds);
    // Every element was add-ref'd (pinned) until here.
    drop(pinned);
    let outcome = outcome?;
    if memory.read(pointer(handles), count as u32 * 4)? != snapshot {
        return Err(AbiError::NotSup);
    }
    match outcome {
        Wait::Ready(index) => {
            memory.write_i32(pointer(out), index as i32)?;
            Ok(0)
        }
        _ => Err(AbiError::TimedOut),
    }
}

fn sleep(ctx: &mut DomainCtx, ms: i32) -> AbiResult {
    if ms < 0 {
        return Err(AbiError::Inval);
    }
    let duration = ctx.policy.wait_for(ms).ok_or(AbiError::Denied)?;
    ctx.wait(&[], PollFlags::IN, duration).map(|_| 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_header() {
        for (i, e) in AbiError::ALL.into_iter().enumerate() {
            assert_eq!(e.code(), -(i as i32) - 1);
            assert_eq!(AbiError::from_code(e.code()), Some(e));
        }
        let header = include_str!("../../../guest/include/custody.h");
        for e in AbiError::ALL {
            let line = format!("#define CUSTODY_{}", e.name());
            let defined = header
                .lines()
                .find(|l| l.starts_with(&line))
                .unwrap_or_else(|| panic!("{} missing from custody.h", e.name()));
            assert!(defined.contains(&format!("({})", e.code())), "{defined}");
        }
    }

    #[test]
    fn every_function_is_declared_in_the_header() {
        let header = include_str!("../../../guest/include/custody.h");
        for f in FUNCTIONS {
            assert!(
                header.contains(&format!("CUSTODY_IMPORT_({})", f.name)),
                "{} missing from custody.h",
                f.name
            );
        }
    }

    #[test]
    fn the_documented_category_table_matches_the_functions() {
        let docs = include_str!("../../../docs/RELIABILITY.md");
        for f in FUNCTIONS {
            let prefix = format!("| `{}` |", f.name);
            let row = docs
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{} missing from docs/RELIABILITY.md", f.name));
            let documented: Vec<&str> = row[prefix.len()..]
                .trim_end_matches('|')
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let mut actual: Vec<&str> = f.categories.iter().map(|c| c.name()).collect();
            let mut documented_sorted = documented.clone();
            actual.sort_unstable();
            documented_sorted.sort_unstable();
            assert_eq!(documented_sorted, actual, "{}", f.name);
        }
    }

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
