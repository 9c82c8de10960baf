//! Host functions an embedder adds beside the `custody` ABI, and the host
//! locks they may hold.
//!
//! Registration is typed ([`HostBuilder::func_wrap`], generic over
//! wasmtime's parameter and result types, as `Linker::func_wrap` is), so an
//! embedder function costs a raw wasmtime host function plus custody's own
//! work: the abort check at entry, and the abort delivery at exit. An
//! untyped form ([`HostBuilder::func_new`]) takes `Val` slices for
//! signatures known only at run time.
//!
//! [`HostBuilder::func_wrap`]: crate::HostBuilder::func_wrap
//! [`HostBuilder::func_new`]: crate::HostBuilder::func_new
//!
//! An embedder function is .NET's P/Invoke target written by the host: it
//! gets the same guarantees as the ABI (handle arguments pinned for the call,
//! bounds-checked guest memory, cancellable waits) and carries host-protection
//! [`Category`] flags checked when a module importing it loads.
//!
//! A [`HostLock`] is a lock the host knows about (.NET: a lock taken through
//! the hosting API). While a guard is held the domain counts it; if the call
//! is aborted while one is held (its wait cut by the deadline, an abort or an
//! unload), the abort is treated like one inside a critical region: the state
//! the lock protected may be half-updated, so the policy's
//! `inside_critical` escalation applies.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use custody_handle::{ReleaseHandle, TableRef};
use wasmtime::{Caller, FuncType, Linker, Val, ValType, WasmRet, WasmTy};

use super::ctx::{CtxShared, DomainCtx};
use super::errno::AbiError;
use super::marshal::{self, length, pointer};
use crate::config::Category;

/// The body of an untyped embedder host function: the call, its arguments,
/// and the slots for its results. Returning `Err` traps the guest's call
/// (`E_ABORTED` from a wait ends the call as an abort).
pub type HostFunctionBody =
    dyn Fn(&mut GuestCall<'_>, &[Val], &mut [Val]) -> Result<(), AbiError> + Send + Sync;

/// Links one embedder function into the host's linker (run once, when the
/// host is built).
pub(crate) type LinkFn =
    Box<dyn FnOnce(&mut Linker<DomainCtx>) -> wasmtime::Result<()> + Send + Sync>;

/// An embedder host function, as the builder registered it: its place in the
/// catalogue and how to link it.
pub(crate) struct EmbedderFunction {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) categories: Vec<Category>,
    pub(crate) link: LinkFn,
}

mod sealed {
    pub trait Sealed<Params, Results> {}
}

/// A Rust closure usable as a typed embedder host function:
/// `Fn(&mut GuestCall<'_>, A1, ..., An) -> Result<R, AbiError>` for up to
/// eight parameters of wasmtime's value types (`i32`, `i64`, `f32`, `f64`,
/// ...) and a result `R` that is one of them, a tuple of them, or `()`.
pub trait EmbedderFn<Params, Results>:
    sealed::Sealed<Params, Results> + Send + Sync + 'static
{
    #[doc(hidden)]
    fn into_link(self, module: String, name: String) -> EmbedderLink;
}

/// How a typed embedder function is linked (opaque).
#[doc(hidden)]
pub struct EmbedderLink(pub(crate) LinkFn);

macro_rules! embedder_fn {
    ($($arg:ident),*) => {
        impl<F, $($arg,)* R> sealed::Sealed<($($arg,)*), R> for F
        where
            F: Fn(&mut GuestCall<'_>, $($arg),*) -> Result<R, AbiError> + Send + Sync + 'static,
            $($arg: WasmTy + 'static,)*
            R: WasmRet + 'static,
        {
        }

        impl<F, $($arg,)* R> EmbedderFn<($($arg,)*), R> for F
        where
            F: Fn(&mut GuestCall<'_>, $($arg),*) -> Result<R, AbiError> + Send + Sync + 'static,
            $($arg: WasmTy + 'static,)*
            R: WasmRet + 'static,
        {
            #[allow(non_snake_case)]
            fn into_link(self, module: String, name: String) -> EmbedderLink {
                EmbedderLink(Box::new(move |linker| {
                    let label: Arc<str> = Arc::from(name.as_str());
                    linker.func_wrap(
                        &module,
                        &name,
                        move |caller: Caller<'_, DomainCtx>, $($arg: $arg),*| -> wasmtime::Result<R> {
                            let mut call = GuestCall { caller, name: &label };
                            call.run(|call| self(call, $($arg),*))
                        },
                    )?;
                    Ok(())
                }))
            }
        }
    };
}

embedder_fn!();
embedder_fn!(A1);
embedder_fn!(A1, A2);
embedder_fn!(A1, A2, A3);
embedder_fn!(A1, A2, A3, A4);
embedder_fn!(A1, A2, A3, A4, A5);
embedder_fn!(A1, A2, A3, A4, A5, A6);
embedder_fn!(A1, A2, A3, A4, A5, A6, A7);
embedder_fn!(A1, A2, A3, A4, A5, A6, A7, A8);

/// The link step of an untyped embedder function.
pub(crate) fn link_untyped(
    module: String,
    name: String,
    params: Vec<ValType>,
    results: Vec<ValType>,
    body: Arc<HostFunctionBody>,
) -> LinkFn {
    Box::new(move |linker| {
        let ty = FuncType::new(linker.engine(), params, results);
        let label: Arc<str> = Arc::from(name.as_str());
        linker.func_new(&module, &name, ty, move |caller, params, results| {
            let mut call = GuestCall {
                caller,
                name: &label,
            };
            call.run(|call| body(call, params, results))
        })?;
        Ok(())
    })
}

/// One guest call into an embedder host function.
pub struct GuestCall<'a> {
    caller: Caller<'a, DomainCtx>,
    /// The function's import name (for the record of a wait).
    name: &'a str,
}

impl GuestCall<'_> {
    /// Runs an embedder function's body: the abort check first; an abort
    /// ends the guest's call (except in the unloading hook), any other
    /// error traps it.
    #[inline]
    fn run<R>(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<R, AbiError>,
    ) -> wasmtime::Result<R> {
        if self.caller.data().shared.cancel.is_raised() {
            return Err(self.fail(AbiError::Aborted));
        }
        body(self).map_err(|error| self.fail(error))
    }

    /// The trap (or the abort) that ends the guest's call when a body
    /// fails: out of line and cold, so the success path stays small.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, error: AbiError) -> wasmtime::Error {
        if error == AbiError::Aborted {
            self.aborted();
        }
        match self.caller.data().deliver(error) {
            Ok(error) => wasmtime::Error::msg(format!("a host function failed with {error}")),
            Err(interrupt) => interrupt.into(),
        }
    }

    /// The calling domain's id.
    pub fn domain(&self) -> u64 {
        self.caller.data().id
    }

    /// Resolves a handle argument: the handle stays pinned (its resource
    /// open) until the returned guard drops, even if it is closed meanwhile.
    ///
    /// # Errors
    /// `E_NULL`, `E_STALE`, `E_CLOSED` or `E_KIND`, as for the ABI.
    pub fn handle<T: ReleaseHandle>(&self, id: i32) -> Result<TableRef<'_, T>, AbiError> {
        marshal::pin(self.caller.data().table(), id)
    }

    /// Gives the guest a new handle and returns its id (counted in the
    /// domain's ledger as opened).
    ///
    /// # Errors
    /// `E_QUOTA` when the domain's quota is used up (the resource is then
    /// released).
    pub fn insert<T: ReleaseHandle>(&self, resource: T) -> Result<i32, AbiError> {
        let id = self.caller.data().table().insert(resource)?;
        Ok(id.raw() as i32)
    }

    /// Copies `len` bytes out of the caller's memory.
    ///
    /// # Errors
    /// `E_INVAL` for a negative length, `E_FAULT` out of bounds.
    pub fn read(&mut self, ptr: i32, len: i32) -> Result<Vec<u8>, AbiError> {
        let len = length(len)?;
        marshal::with_memory(&mut self.caller, |memory, _| memory.read(pointer(ptr), len))
            .map_err(Into::into)
    }

    /// Copies `bytes` into the caller's memory at `ptr`.
    ///
    /// # Errors
    /// `E_FAULT` out of bounds.
    pub fn write(&mut self, ptr: i32, bytes: &[u8]) -> Result<(), AbiError> {
        marshal::with_memory(&mut self.caller, |mut memory, _| {
            memory.write(pointer(ptr), bytes)
        })
        .map_err(Into::into)
    }

    /// Waits for `duration`, bounded by the policy's `max_wait` and the
    /// call's deadline, and woken at once by an abort or unload.
    ///
    /// # Errors
    /// `E_DENIED` above `max_wait`; `E_ABORTED` if the wait was cut short
    /// (return it: the call then ends as an abort).
    pub fn sleep(&self, duration: Duration) -> Result<(), AbiError> {
        let ctx = self.caller.data();
        if duration > ctx.policy.max_wait {
            return Err(AbiError::Denied);
        }
        let _waiting = (ctx.shared.blocked).enter(self.name, marshal::guest_stack(&self.caller));
        match ctx.wait(&[], duration) {
            Err(AbiError::Aborted) => Err(self.aborted()),
            outcome => outcome.map(drop),
        }
    }

    /// Records an abort, noting whether a host lock was held at that moment.
    fn aborted(&self) -> AbiError {
        self.caller.data().shared.host_locks.note_abort();
        AbiError::Aborted
    }

    fn lock_count(&self) -> Arc<CtxShared> {
        Arc::clone(&self.caller.data().shared)
    }
}

/// A lock the host knows about: while a guest call holds it, the domain
/// counts it, and an abort of that call escalates like one inside a
/// critical region.
///
/// Keep the locked section short, and wait inside it only through
/// [`GuestCall::sleep`] (or not at all): acquiring the lock itself is not
/// cancellable.
#[derive(Debug, Default)]
pub struct HostLock<T> {
    mutex: Mutex<T>,
}

impl<T> HostLock<T> {
    /// A lock around `value`.
    pub fn new(value: T) -> Self {
        HostLock {
            mutex: Mutex::new(value),
        }
    }

    /// A lock around `value`, usable in a `static`.
    pub const fn new_const(value: T) -> Self {
        HostLock {
            mutex: Mutex::new(value),
        }
    }

    /// Takes the lock for the calling guest.
    pub fn lock<'l>(&'l self, call: &GuestCall<'_>) -> HostLockGuard<'l, T> {
        let count = call.lock_count();
        count.host_locks.held.fetch_add(1, Ordering::AcqRel);
        HostLockGuard {
            guard: self.mutex.lock().unwrap_or_else(PoisonError::into_inner),
            count,
        }
    }
}

/// A held [`HostLock`].
pub struct HostLockGuard<'l, T> {
    guard: MutexGuard<'l, T>,
    /// Its `host_locks` count this lock while it is held.
    count: Arc<CtxShared>,
}

impl<T> Deref for HostLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for HostLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for HostLockGuard<'_, T> {
    fn drop(&mut self) {
        self.count.host_locks.held.fetch_sub(1, Ordering::AcqRel);
    }
}
