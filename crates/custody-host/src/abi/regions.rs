//! Critical regions (SPEC Part C): a guest marks where its own state may be
//! half-updated, so an abort there escalates (recycles the domain) instead
//! of ending only the call.

use crate::boundary::ctx::DomainCtx;
use crate::boundary::errno::AbiError;
use crate::boundary::marshal::AbiResult;

pub(super) fn critical_enter(ctx: &mut DomainCtx) -> AbiResult {
    ctx.critical_depth += 1;
    Ok(0)
}

pub(super) fn critical_exit(ctx: &mut DomainCtx) -> AbiResult {
    if ctx.critical_depth == 0 {
        return Err(AbiError::Inval);
    }
    ctx.critical_depth -= 1;
    Ok(0)
}
