//! Clocks: `clock_res_get` and `clock_time_get`, in nanoseconds, for the
//! realtime and monotonic clocks and the CPU time of the host process and
//! of the calling thread (which runs the guest's call). wasmtime's preview
//! 1 answers `EBADF` for the two CPU-time clocks; custody answers them.

use crate::errno::WasiResult;
use crate::sys::{self, ClockId, Timespec};
use crate::types::{Errno, clockid};
use custody_host::extension::{HostCall, pointer};

/// The OS clock for a WASI clock id.
pub(crate) fn clock(id: i32) -> Result<ClockId, Errno> {
    Ok(match id as u32 {
        clockid::REALTIME => ClockId::Realtime,
        clockid::MONOTONIC => ClockId::Monotonic,
        clockid::PROCESS_CPUTIME => ClockId::ProcessCPUTime,
        clockid::THREAD_CPUTIME => ClockId::ThreadCPUTime,
        _ => return Err(Errno::Inval),
    })
}

/// A time in nanoseconds (a `timestamp`).
pub(crate) fn nanos(time: Timespec) -> u64 {
    (time.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(time.tv_nsec as u64)
}

pub(super) fn clock_res_get(call: &mut HostCall<'_, '_>, id: i32, resolution: i32) -> WasiResult {
    let clock = clock(id)?;
    let (mut memory, _) = call.split();
    let res = nanos(sys::clock_resolution(clock)).max(1);
    memory.write(pointer(resolution), &res.to_le_bytes())?;
    Ok(())
}

pub(super) fn clock_time_get(
    call: &mut HostCall<'_, '_>,
    id: i32,
    _precision: i64,
    time: i32,
) -> WasiResult {
    let clock = clock(id)?;
    let (mut memory, _) = call.split();
    memory.write(pointer(time), &nanos(sys::clock_now(clock)).to_le_bytes())?;
    Ok(())
}
