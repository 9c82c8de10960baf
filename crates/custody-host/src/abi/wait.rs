//! Waiting: `poll` over a by-reference handle array, and `sleep`. Both wait
//! through the domain's one cancellable, deadline-bounded wait.

use std::os::fd::AsFd;

use custody_handle::Fd;
use rustix::event::PollFlags;

use super::MAX_POLL;
use crate::boundary::cancel::Waited;
use crate::boundary::errno::AbiError;
use crate::boundary::marshal::{self, AbiResult, HostCall, pointer};

/// The by-reference array is read once (never re-read mid-call: no
/// time-of-check/time-of-use), every element pinned, and on return compared
/// with what was read: a changed element fails the call with `E_NOTSUP`,
/// because the ready index would name a different handle.
pub(super) fn poll(
    call: &mut HostCall<'_, '_>,
    handles: i32,
    count: i32,
    timeout_ms: i32,
    out: i32,
) -> AbiResult {
    let table = call.table;
    if !(1..=MAX_POLL).contains(&count) || timeout_ms < -1 {
        return Err(AbiError::Inval);
    }
    let (memory, ctx) = call.split();
    let timeout = ctx.policy.wait_for(timeout_ms).ok_or(AbiError::Denied)?;
    let snapshot = memory.read(pointer(handles), count as u32 * 4)?;
    let out = memory.out_slot(pointer(out))?;
    let pinned = snapshot
        .chunks_exact(4)
        .map(|raw| marshal::pin::<Fd>(table, i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])))
        .collect::<Result<Vec<_>, _>>()?;
    let fds: Vec<_> = pinned
        .iter()
        .map(|fd| (fd.as_fd(), PollFlags::IN))
        .collect();
    let outcome = call.wait(&fds, timeout);
    drop(fds);
    // Every element was pinned until here.
    drop(pinned);
    let outcome = outcome?;
    let (mut memory, _) = call.split();
    if memory.read(pointer(handles), count as u32 * 4)? != snapshot {
        return Err(AbiError::NotSup);
    }
    match outcome {
        Waited::Ready(index) => {
            memory.put_i32(out, index as i32);
            Ok(0)
        }
        _ => Err(AbiError::TimedOut),
    }
}

pub(super) fn sleep(call: &mut HostCall<'_, '_>, ms: i32) -> AbiResult {
    if ms < 0 {
        return Err(AbiError::Inval);
    }
    let duration = call.split().1.policy.wait_for(ms).ok_or(AbiError::Denied)?;
    call.wait(&[], duration).map(|_| 0)
}
