//! Host functions an embedder adds beside the `custody` ABI, and the host
//! locks they may hold.
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use custody_handle::{HandleId, ReleaseHandle, TableRef};
use wasmtime::{Caller, FuncType, Val, ValType};

use crate::abi::AbiError;
use crate::domain::DomainCtx;
use crate::memory::with_memory;
use crate::policy::Category;
use rustix::event::PollFlags;

/// The body of an embedder host function: the call, its arguments, and the
/// slots for its results. Returning `Err` traps the guest's call
/// (`E_ABORTED` from a wait ends the call as an abort).
pub type HostFunctionBody =
    dyn Fn(&mut GuestCall<'_>, &[Val], &mut [Val]) -> Result<(), AbiError> + Send + Sync;

/// An embedder host function, as [`HostBuilder::function`] registers it.
///
/// [`HostBuilder::function`]: crate::HostBuilder::function
pub(crate) struct ExtraFunction {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) categories: Vec<Category>,
    pub(crate) params: Vec<ValType>,
    pub(crate) results: Vec<ValType>,
    pub(crate) body: Arc<HostFunctionBody>,
}

/// Counts the host locks a domain's current call holds, and whether one was
/// held when the call was aborted.
#[derive(Debug, Default)]
pub(crate) struct LockCount {
    held: AtomicU32,
    aborted_while_held: AtomicU32,
}

impl LockCount {
    /// Whether the call that just ended was aborted while holding a host
    /// lock (and clears it for the next call).
    pub(crate) fn take_aborted_while_held(&self) -> bool {
        self.aborted_while_held.swap(0, Ordering::AcqRel) != 0
    }
}

/// One guest call into an embedder host function.
pub struct GuestCall<'a> {
    caller: Caller<'a, DomainCtx>,
}

impl<'a> GuestCall<'a> {
    pub(crate) fn new(caller: Caller<'a, DomainCtx>) -> Self {
        GuestCall { caller }
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
        self.caller
            .data()
            .table
            .get::<T>(HandleId::from_raw(id as u32))
            .map_err(crate::abi::resolution)
    }

    /// Gives the guest a new handle and returns its id.
    ///
    /// # Errors
    /// `E_QUOTA` when the domain's quota is used up (the resource is then
    /// released).
    pub fn insert<T: ReleaseHandle>(&self, resource: T) -> Result<i32, AbiError> {
        self.caller
            .data()
            .table
            .insert(resource)
            .map(|id| id.raw() as i32)
            .map_err(crate::abi::resolution)
    }

    /// Copies `len` bytes out of the caller's memory.
    ///
    /// # Errors
    /// `E_INVAL` for a negative length, `E_FAULT` out of bounds.
    pub fn read(&mut self, ptr: i32, len: i32) -> Result<Vec<u8>, AbiError> {
        let len = u32::try_from(len).map_err(|_| AbiError::Inval)?;
        with_memory(&mut self.caller, |memory, _| memory.read(ptr as u32, len)).map_err(Into::into)
    }

    /// Copies `bytes` into the caller's memory at `ptr`.
    ///
    /// # Errors
    /// `E_FAULT` out of bounds.
    pub fn write(&mut self, ptr: i32, bytes: &[u8]) -> Result<(), AbiError> {
        with_memory(&mut self.caller, |memory, _| {
            memory.write(ptr as u32, bytes)
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
        match ctx.wait(&[], PollFlags::IN, duration) {
            Err(AbiError::Aborted) => Err(self.aborted()),
            outcome => outcome.map(drop),
        }
    }

    /// Records an abort, noting whether a host lock was held at that moment.
    fn aborted(&self) -> AbiError {
        let locks = &self.caller.data().host_locks;
        if locks.held.load(Ordering::Acquire) > 0 {
            locks.aborted_while_held.store(1, Ordering::Release);
        }
        AbiError::Aborted
    }

    fn lock_count(&self) -> Arc<LockCount> {
        Arc::clone(&self.caller.data().host_locks)
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
        count.held.fetch_add(1, Ordering::AcqRel);
        HostLockGuard {
            guard: self.mutex.lock().unwrap_or_else(PoisonError::into_inner),
            count,
        }
    }
}

/// A held [`HostLock`].
pub struct HostLockGuard<'l, T> {
    guard: MutexGuard<'l, T>,
    count: Arc<LockCount>,
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
        self.count.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The wasmtime function type of an embedder function.
pub(crate) fn func_type(engine: &wasmtime::Engine, f: &ExtraFunction) -> FuncType {
    FuncType::new(engine, f.params.iter().cloned(), f.results.iter().cloned())
}

/// Runs an embedder function for a guest: the abort check first, then the
/// body; an abort ends the guest's call (except in the unloading hook), any
/// other error traps it.
pub(crate) fn call(
    caller: Caller<'_, DomainCtx>,
    body: &HostFunctionBody,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let mut call = GuestCall::new(caller);
    let outcome = if call.caller.data().cancel.is_raised() {
        Err(call.aborted())
    } else {
        body(&mut call, params, results)
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(error) => {
            let error = call.caller.data().deliver(error)?;
            Err(wasmtime::Error::msg(format!(
                "a host function failed with {}",
                error.name()
            )))
        }
    }
}
