//! The command line and the environment: `args_*` and `environ_*`. Each
//! list is written as C expects it: an array of pointers, and the strings
//! behind it, each ending in a NUL byte.

use super::errno::WasiResult;
use crate::boundary::marshal::{HostCall, pointer};
use crate::boundary::memory::{Fault, GuestMemory};

pub(super) fn args_get(call: &mut HostCall<'_, '_>, argv: i32, argv_buf: i32) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_list(&mut memory, &ctx.wasi.args, argv, argv_buf)
}

pub(super) fn args_sizes_get(
    call: &mut HostCall<'_, '_>,
    argc: i32,
    argv_buf_size: i32,
) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_sizes(&mut memory, &ctx.wasi.args, argc, argv_buf_size)
}

pub(super) fn environ_get(
    call: &mut HostCall<'_, '_>,
    environ: i32,
    environ_buf: i32,
) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_list(&mut memory, &ctx.wasi.env, environ, environ_buf)
}

pub(super) fn environ_sizes_get(
    call: &mut HostCall<'_, '_>,
    count: i32,
    buf_size: i32,
) -> WasiResult {
    let (mut memory, ctx) = call.split();
    write_sizes(&mut memory, &ctx.wasi.env, count, buf_size)
}

/// Writes each string of `list`, NUL-terminated, from `buf` on, and its
/// address in the array at `pointers`.
fn write_list(
    memory: &mut GuestMemory<'_>,
    list: &[String],
    pointers: i32,
    buf: i32,
) -> WasiResult {
    let mut at = pointer(buf);
    for (i, text) in list.iter().enumerate() {
        let slot = (i as u32)
            .checked_mul(4)
            .and_then(|offset| pointer(pointers).checked_add(offset))
            .ok_or(Fault)?;
        memory.write_i32(slot, at as i32)?;
        memory.write(at, text.as_bytes())?;
        let end = at.checked_add(text.len() as u32).ok_or(Fault)?;
        memory.write(end, &[0])?;
        at = end.checked_add(1).ok_or(Fault)?;
    }
    Ok(())
}

/// Writes how many strings `list` has, and the bytes they take with their
/// NULs.
fn write_sizes(memory: &mut GuestMemory<'_>, list: &[String], count: i32, size: i32) -> WasiResult {
    let bytes: usize = list.iter().map(|s| s.len() + 1).sum();
    memory.range(pointer(count), 4)?;
    memory.range(pointer(size), 4)?;
    memory.write_i32(pointer(count), list.len() as i32)?;
    memory.write_i32(pointer(size), bytes as i32)?;
    Ok(())
}
