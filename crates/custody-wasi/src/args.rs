//! The command line and the environment: `args_*` and `environ_*`. Each
//! list is written as C expects it: an array of pointers, and the strings
//! behind it, each ending in a NUL byte.

use crate::errno::WasiResult;
use crate::state::wasi;
use custody_host::extension::{Fault, GuestMemory};
use custody_host::extension::{HostCall, pointer};

pub(super) fn args_get(call: &mut HostCall<'_, '_>, argv: i32, argv_buf: i32) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_list(&mut memory, &wasi(ctx)?.args, argv, argv_buf)
}

pub(super) fn args_sizes_get(
    call: &mut HostCall<'_, '_>,
    argc: i32,
    argv_buf_size: i32,
) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_sizes(&mut memory, &wasi(ctx)?.args, argc, argv_buf_size)
}

pub(super) fn environ_get(
    call: &mut HostCall<'_, '_>,
    environ: i32,
    environ_buf: i32,
) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_list(&mut memory, &wasi(ctx)?.env, environ, environ_buf)
}

pub(super) fn environ_sizes_get(
    call: &mut HostCall<'_, '_>,
    count: i32,
    buf_size: i32,
) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_sizes(&mut memory, &wasi(ctx)?.env, count, buf_size)
}

/// Writes each string of `list`, NUL-terminated, from `buf` on, and its
/// address in the array at `pointers`. Both ranges are checked whole
/// first: a call that faults writes nothing.
fn write_list(
    memory: &mut GuestMemory<'_>,
    list: &[String],
    pointers: i32,
    buf: i32,
) -> WasiResult {
    let array = u32::try_from(list.len() * 4).map_err(|_| Fault)?;
    let bytes: usize = list.iter().map(|s| s.len() + 1).sum();
    memory.range(pointer(pointers), array)?;
    memory.range(pointer(buf), u32::try_from(bytes).map_err(|_| Fault)?)?;
    let mut at = pointer(buf);
    for (i, text) in list.iter().enumerate() {
        memory.write_i32(pointer(pointers) + i as u32 * 4, at as i32)?;
        memory.write(at, text.as_bytes())?;
        let end = at + text.len() as u32;
        memory.write(end, &[0])?;
        at = end + 1;
    }
    Ok(())
}

/// Writes how many strings `list` has, and the bytes they take with their
/// NULs.
fn write_sizes(memory: &mut GuestMemory<'_>, list: &[String], count: i32, size: i32) -> WasiResult {
    let bytes: usize = list.iter().map(|s| s.len() + 1).sum();
    let (count, size) = (
        memory.out_slot(pointer(count))?,
        memory.out_slot(pointer(size))?,
    );
    memory.put_i32(count, list.len() as i32);
    memory.put_i32(size, bytes as i32);
    Ok(())
}
