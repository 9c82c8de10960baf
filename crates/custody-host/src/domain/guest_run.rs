//! Running one export of a domain's store: the arguments checked against
//! its signature, the call run under a deadline, and its failure classified
//! (a trap, or an abort with its reason) and reported as `callAborted`.
//! Calls and the unloading hook both run guest code through here.
//!
//! A call whose signature has only numbers goes through `call_unchecked`
//! with the arguments already checked against the export's type, kept
//! since it was resolved: `Func::call` checks them again against a type it
//! looks up (twice) in the engine's registry, a third of an empty call's
//! instructions (docs/PERFORMANCE.md). That one `unsafe` block is the
//! module's.

// SAFETY arguments live beside the `unsafe` block of this module; the crate
// denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::time::Duration;

use custody_handle::diagnostics::{self, Assistant, Diagnostic};
use wasmtime::{Func, FuncType, Store, Trap, Val, ValRaw, ValType};

use crate::boundary::cancel::{Exit, Interrupt};
use crate::boundary::ctx::DomainCtx;
use crate::boundary::stack;
use crate::error::{BoxError, CallError, wasmtime_source};

/// Fires `callAborted` for a failed call.
pub(crate) fn report_aborted(
    domain: u64,
    function: &str,
    reason: &str,
    backtrace: &str,
    context: Option<&str>,
) {
    diagnostics::fire(Assistant::CallAborted, || {
        let where_ = context.map(|c| format!(" {c}")).unwrap_or_default();
        Diagnostic::new(
            Assistant::CallAborted,
            format!("the call to {function} in domain {domain} was aborted{where_}: {reason}"),
        )
        .with_call(domain, function, reason)
        .with_backtrace(backtrace)
    });
}

/// Stack the host itself needs beneath a guest's: wasmtime's entry
/// trampolines and custody's host functions.
pub(crate) const HOST_STACK_MARGIN: usize = 128 * 1024;

/// `Err` says why the calling thread cannot run guest code: its stack has
/// less left than the policy's `stack_limit` plus [`HOST_STACK_MARGIN`]. A
/// guest recursing that deep would overflow the host's own stack, which
/// kills the process instead of failing the call.
pub(crate) fn check_host_stack(stack_limit: usize) -> Result<(), String> {
    let needed = stack_limit.saturating_add(HOST_STACK_MARGIN);
    match stacker::remaining_stack() {
        Some(left) if left < needed => Err(format!(
            "the calling thread has {left} bytes of stack left; guest code needs {needed} (the policy's stack_limit of {stack_limit} plus {HOST_STACK_MARGIN} for the host): call from a thread with a larger stack"
        )),
        _ => Ok(()),
    }
}

fn describe(types: impl Iterator<Item = ValType>) -> String {
    let names: Vec<String> = types.map(|t| t.to_string()).collect();
    format!("({})", names.join(", "))
}

pub(crate) fn call_func(
    store: &mut Store<DomainCtx>,
    export: &str,
    func: Func,
    ty: &FuncType,
    args: &[Val],
    deadline: Option<Duration>,
) -> Result<Vec<Val>, CallError> {
    let matches = ty.params().len() == args.len()
        && ty
            .params()
            .zip(args)
            .all(|(p, a)| a.ty(&*store).is_ok_and(|t| ValType::eq(&t, &p)));
    if !matches {
        let got: Vec<ValType> = args.iter().filter_map(|a| a.ty(&*store).ok()).collect();
        return Err(CallError::Signature {
            export: export.to_string(),
            expected: describe(ty.params()),
            got: describe(got.into_iter()),
        });
    }
    check_host_stack(store.data().policy.stack_limit).map_err(|reason| CallError::HostStack {
        export: export.to_string(),
        reason,
    })?;
    let mut results: Vec<Val> = ty
        .results()
        .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
        .collect();
    let ctx = store.data_mut();
    ctx.deadline = deadline.map(|d| (crate::deadline::after(d), d));
    ctx.begin_call();
    let outcome = if ty.params().chain(ty.results()).all(|t| t.is_num()) {
        call_numbers(store, func, args, &mut results)
    } else {
        func.call(&mut *store, args, &mut results)
    };
    store.data_mut().deadline = None;
    match outcome {
        Ok(()) => Ok(results),
        Err(error) => Err(call_error(export, error, store.data().policy.stack_limit)),
    }
}

/// Values of a numbers-only call, on the stack up to this many.
const INLINE_VALUES: usize = 8;

/// Calls `func`, whose parameters and results are numbers of the types of
/// `args` and `results` (checked by the caller), writing its results.
fn call_numbers(
    store: &mut Store<DomainCtx>,
    func: Func,
    args: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let len = args.len().max(results.len());
    let mut inline = [ValRaw::i32(0); INLINE_VALUES];
    let mut spilled = Vec::new();
    let values: &mut [ValRaw] = if len <= INLINE_VALUES {
        &mut inline[..len]
    } else {
        spilled.resize(len, ValRaw::i32(0));
        &mut spilled
    };
    for (arg, slot) in args.iter().zip(values.iter_mut()) {
        *slot = arg.to_raw(&mut *store)?;
    }
    // SAFETY: `values` has room for every parameter and every result
    // (`len` is the larger count); the parameters written into it are
    // `args`, whose types the caller checked equal the export's parameter
    // types, and all are numbers (no reference that could be stale or from
    // another store); `func` belongs to `store` (it was resolved in it, and
    // a replaced store forgets it); and custody never calls asynchronously.
    unsafe { func.call_unchecked(&mut *store, values as *mut [ValRaw]) }?;
    for (result, raw) in results.iter_mut().zip(values.iter()) {
        let ty = result.ty(&*store)?;
        // SAFETY: `raw` was written by the call as a result of type `ty`
        // (the caller made `results` from the export's result types), a
        // number: no reference to validate.
        *result = unsafe { Val::from_raw(&mut *store, *raw, ty) };
    }
    Ok(())
}

fn call_error(export: &str, error: wasmtime::Error, stack_limit: usize) -> CallError {
    let (cause, backtrace) = stack::cause_and_stack(&error);
    let aborted = |reason: String, source: BoxError| CallError::Aborted {
        export: export.to_string(),
        reason,
        backtrace: backtrace.clone(),
        source,
    };
    // An exit is the guest's own ending, not a failure: it is told apart
    // before anything that could escalate.
    if let Some(Exit(status)) = error.downcast_ref::<Exit>() {
        return CallError::Exit(*status);
    }
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return aborted(interrupt.to_string(), Box::new(interrupt.clone()));
    }
    match error.downcast_ref::<Trap>().copied() {
        Some(Trap::StackOverflow) => aborted(
            format!("the stack limit of {stack_limit} bytes was exhausted"),
            Box::new(Trap::StackOverflow),
        ),
        trap => CallError::Trap {
            export: export.to_string(),
            message: trap.map_or(cause, |trap| trap.to_string()),
            backtrace,
            source: wasmtime_source(error),
        },
    }
}
