//! `memory.atomic.wait32/64` as host functions (the policy's `threads`; the
//! runtime rewrites each wait into a call of one of these): the wait runs in
//! slices of at most [`SLICE`], so the deadline, an abort and an unload end
//! it, which wasmtime's own wait, parked out of custody's reach, would not.

use std::time::{Duration, Instant};

use wasmtime::{Caller, Extern, Func, SharedMemory, Store, WaitResult};

use super::ctx::DomainCtx;

/// The longest a waiting guest goes without custody checking the deadline
/// and the cancellation signal: how late an abort of a wait may be.
pub(crate) const SLICE: Duration = Duration::from_millis(10);

/// The wait function for a wait of `width` (32 or 64) bits on the shared
/// memory exported as `memory`, at static offset `offset`. It returns what
/// the instruction does: 0 woken, 1 not equal, 2 timed out.
pub(crate) fn function(
    store: &mut Store<DomainCtx>,
    width: u8,
    offset: u64,
    memory: String,
) -> Func {
    if width == 64 {
        Func::wrap(
            store,
            move |caller: Caller<'_, DomainCtx>, addr: i32, expected: i64, timeout: i64| {
                wait(caller, &memory, offset, addr, timeout, |m, at, slice| {
                    m.atomic_wait64(at, expected as u64, Some(slice))
                })
            },
        )
    } else {
        Func::wrap(
            store,
            move |caller: Caller<'_, DomainCtx>, addr: i32, expected: i32, timeout: i64| {
                wait(caller, &memory, offset, addr, timeout, |m, at, slice| {
                    m.atomic_wait32(at, expected as u32, Some(slice))
                })
            },
        )
    }
}

fn wait(
    mut caller: Caller<'_, DomainCtx>,
    memory: &str,
    offset: u64,
    addr: i32,
    timeout_ns: i64,
    wait_slice: impl Fn(&SharedMemory, u64, Duration) -> Result<WaitResult, wasmtime::Trap>,
) -> wasmtime::Result<i32> {
    let Some(Extern::SharedMemory(shared)) = caller.get_export(memory) else {
        wasmtime::bail!("memory.atomic.wait: the export {memory:?} is not a shared memory");
    };
    let at = u64::from(addr as u32).saturating_add(offset);
    // A value that differs returns at once, whatever the timeout.
    if let WaitResult::Mismatch = wait_slice(&shared, at, Duration::ZERO)? {
        return Ok(1);
    }
    let ctx = caller.data();
    let policy = &ctx.policy;
    let wanted = u64::try_from(timeout_ns).ok().map(Duration::from_nanos);
    if wanted.is_none_or(|w| w > policy.max_wait) && !policy.allow_infinite_wait {
        wasmtime::bail!(
            "memory.atomic.wait with a timeout of {timeout_ns} ns is refused: the policy's max_wait is {:?} (allow_infinite_wait is off)",
            policy.max_wait
        );
    }
    let until = wanted.map(crate::deadline::after);
    let _waiting =
        (ctx.shared.blocked).enter("memory.atomic.wait", super::marshal::guest_stack(&caller));
    loop {
        if ctx.shared.cancel.reason().is_some() {
            return Err(ctx.interrupt().into());
        }
        let now = Instant::now();
        let mut slice = SLICE;
        if let Some(until) = until {
            if now >= until {
                return Ok(2);
            }
            slice = slice.min(until - now);
        }
        if let Some((deadline, _)) = ctx.deadline {
            if now >= deadline {
                return Err(ctx.interrupt().into());
            }
            slice = slice.min(deadline - now);
        }
        match wait_slice(&shared, at, slice)? {
            WaitResult::Ok => return Ok(0),
            WaitResult::Mismatch => return Ok(1),
            WaitResult::TimedOut => {}
        }
    }
}
