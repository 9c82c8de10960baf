//! The program's own process: `proc_exit` (the exit status ends the call as
//! [`CallError::Exit`](custody_host::CallError::Exit), the core's exit
//! outcome, not as a trap),
//! `proc_raise` (`ENOSYS`: a guest has no signals), `sched_yield` and
//! `random_get`.

use wasmtime::Caller;

use crate::errno::WasiResult;
use crate::sys;
use crate::types::Errno;
use custody_host::extension::{DomainCtx, Exit};
use custody_host::extension::{HostCall, length, pointer};

pub(super) fn proc_exit(_caller: &mut Caller<'_, DomainCtx>, rval: i32) -> wasmtime::Result<()> {
    Err(Exit(rval).into())
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
