//! `timer_set`: a guest timer as a handle (SPEC D6). The export it names is
//! called with the timer's handle id after `delay_ms`, then every
//! `period_ms` if that is positive (each at least the policy's
//! `timer_min_period`, counted from the end of the last callback); `close`
//! disarms it. An armed timer is a
//! root of its domain: an unload waits for the guest to close it (its
//! `custody_unloading` should), and a forced unload disarms it.

use std::time::Duration;

use crate::boundary::errno::AbiError;
use crate::boundary::marshal::{self, AbiResult, HostCall, length, pointer};
use crate::boundary::timer::{Timer, TimerSpec};

/// The longest export name a timer may call.
const MAX_EXPORT: u32 = 256;

pub(super) fn timer_set(
    call: &mut HostCall<'_, '_>,
    delay_ms: i32,
    period_ms: i32,
    export_ptr: i32,
    export_len: i32,
    out: i32,
) -> AbiResult {
    let len = length(export_len)?;
    if len > MAX_EXPORT || delay_ms < 0 || period_ms < 0 {
        return Err(AbiError::Inval);
    }
    let table = call.table;
    let (memory, ctx) = call.split();
    // Delays are capped like waits: a guest asking for more is refused.
    let (delay, period) = (
        Duration::from_millis(delay_ms as u64),
        Duration::from_millis(period_ms as u64),
    );
    if delay > ctx.policy.max_wait || period > ctx.policy.max_wait {
        return Err(AbiError::Denied);
    }
    // Below the floor a timer would only keep a worker and the domain's
    // store busy: it is raised to it, as a clock's resolution would.
    let floor = ctx.policy.timer_min_period;
    // Before the timer is armed: a failed call arms nothing.
    let out = marshal::out_handle(&memory, table, out)?;
    let name = memory.read(pointer(export_ptr), len)?;
    let export = String::from_utf8(name).map_err(|_| AbiError::Inval)?;
    let timers = ctx.timers.clone().ok_or(AbiError::NotSup)?;
    if !call.exports_callback(&export) {
        return Err(AbiError::Inval);
    }
    let spec = TimerSpec {
        export,
        delay: delay.max(floor),
        period: (period_ms > 0).then(|| period.max(floor)),
        stack: call.guest_stack(),
    };
    let handle: Timer = timers.arm(spec)?;
    let armed = std::sync::Arc::clone(&handle.0);
    // In the table first, so its callbacks get its id.
    let (mut memory, _) = call.split();
    let id = marshal::give(&mut memory, table, out, handle)?;
    let _ = armed.id.set(id.raw());
    Ok(0)
}
