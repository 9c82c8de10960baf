//! The program's own process: `proc_exit` (the exit status ends the call as
//! [`CallError::Exit`](crate::CallError::Exit), not as a trap),
//! `proc_raise` (`ENOSYS`: a guest has no signals), `sched_yield` and
//! `random_get`.

use wasmtime::Caller;

use super::errno::WasiResult;
use super::types::Errno;
use crate::boundary::ctx::DomainCtx;
use crate::boundary::marshal::{HostCall, length, pointer};
use crate::sys;

/// The error that carries a guest's exit status out of its call: the call
/// maps it to `CallError::Exit` before any trap or escalation logic (an
/// exit is never escalated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the guest exited with status {0}")]
pub(crate) struct ProcExit(pub(crate) i32);

pub(super) fn proc_exit(_caller: &mut Caller<'_, DomainCtx>, rval: i32) -> wasmtime::Result<()> {
    Err(ProcExit(rval).into())
}

pub(super) fn proc_raise(_call: &mut HostCall<'_, '_>, _sig: i32) -> WasiResult {
    Err(Errno::Nosys.into())
}

pub(super) fn sched_yield(_call: &mut HostCall<'_, '_>) -> WasiResult {
    std::thread::yield_now();
    Ok(())
}

pub(super) fn random_get(call: &mut HostCall<'_, '_>, buf: i32, buf_len: i32) -> WasiResult {
    let len = length(buf_len).map_err(|_| Errno::Fault)?;
    let (mut memory, _) = call.split();
    memory.fill_with(pointer(buf), len, |bytes| {
        sys::random(bytes).map(|()| bytes.len())
    })??;
    Ok(())
}
