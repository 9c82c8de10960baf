//! The embedder's references to a domain (SPEC D1, D2): [`DomainRef`]
//! (strong: a root, it can call in), [`WeakDomain`] (never a root: how to
//! see an unload complete without holding it up) and [`MemoryView`] (a
//! host-held view of guest memory: a root while it lives) and
//! [`PinnedHandle`] (a handle pinned by a host thread outside a call: a
//! root while it lives).
//!
//! The owner's [`Domain`] value is not a root, so the code that calls
//! `unload` never blocks itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use custody_handle::{HandleError, HandleId, ReleaseHandle, TableRef};
use wasmtime::Val;

use super::roots::{Root, RootKind, RootRecord};
use super::state::Admit;
use super::unload::root_released;
use super::{Domain, DomainShared, SAMPLE_WAIT, lock};
use crate::error::{CallError, EndCause, NotRunning, RefError, Refused};

/// A strong reference to a domain ([`Domain::strong_ref`]): it can call
/// into the domain, also while a cooperative unload waits for it, and keeps
/// that unload from completing until it is dropped. A forced unload
/// invalidates it: calls through it then fail with `NotRunning`. Clones
/// share one root.
#[derive(Clone)]
pub struct DomainRef {
    inner: Arc<RefInner>,
}

struct RefInner {
    shared: Arc<DomainShared>,
    key: u64,
    released: AtomicBool,
}

impl RefInner {
    /// Gives the root back, once.
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.shared.roots.remove(self.key);
            root_released(&self.shared);
        }
    }
}

impl Drop for RefInner {
    fn drop(&mut self) {
        self.release();
    }
}

impl DomainRef {
    /// The domain's id.
    pub fn id(&self) -> u64 {
        self.inner.shared.id
    }

    /// Calls an export, as [`Domain::call`] does; during a cooperative
    /// unload too (the unload waits for it).
    ///
    /// # Errors
    /// As [`Domain::call`]; [`CallError::NotRunning`] once the unload was
    /// forced or completed, or the ref was released with its holder (its
    /// [`cause`](crate::NotRunning::cause) says so).
    pub fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, CallError> {
        let shared = &self.inner.shared;
        if self.inner.released.load(Ordering::Acquire) {
            let cause = EndCause::new(
                "the ref was released with the domain that held it".into(),
                None,
            );
            return Err(CallError::from(NotRunning::new(
                shared.id,
                shared.state().load(),
                Some(Arc::new(cause)),
                Refused::Call,
            )));
        }
        Domain::call_shared(shared, name, args, Admit::WhileUnloading)
    }

    /// Releases the root now (a dependent ref whose holder completed its
    /// unload); later calls through it fail.
    pub(crate) fn release(&self) {
        self.inner.release();
    }
}

impl std::fmt::Debug for DomainRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainRef").field("id", &self.id()).finish()
    }
}

/// A reference that never keeps a domain alive ([`Domain::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakDomain {
    shared: Weak<DomainShared>,
}

impl WeakDomain {
    /// The domain, while it exists and has not finished unloading.
    pub fn upgrade(&self) -> Option<Domain> {
        let shared = self.shared.upgrade()?;
        (!shared.state().load().is_final()).then_some(Domain { shared })
    }
}

/// A host-held view of a domain's guest memory ([`Domain::memory_view`]):
/// reads and writes through it are bounds-checked, and it keeps a
/// cooperative unload from completing until it is dropped.
pub struct MemoryView {
    shared: Arc<DomainShared>,
    key: u64,
}

impl MemoryView {
    /// Copies `len` bytes at `offset` out of the first loaded module's
    /// `memory`; `None` if the range is outside it or the domain is gone.
    pub fn read(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        let mut guard = self.shared.lock();
        let loaded = guard.as_mut()?;
        let instance = loaded.modules.first()?.instance;
        let memory = instance.get_memory(&mut loaded.store, "memory")?;
        let data = memory.data(&loaded.store);
        data.get(offset..offset.checked_add(len)?)
            .map(<[u8]>::to_vec)
    }

    /// Writes `bytes` at `offset` into the first loaded module's `memory`;
    /// `false` if the range is outside it or the domain is gone.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        let mut guard = self.shared.lock();
        let Some(loaded) = guard.as_mut() else {
            return false;
        };
        let Some(instance) = loaded.modules.first().map(|m| m.instance) else {
            return false;
        };
        let Some(memory) = instance.get_memory(&mut loaded.store, "memory") else {
            return false;
        };
        let data = memory.data_mut(&mut loaded.store);
        match offset
            .checked_add(bytes.len())
            .and_then(|end| data.get_mut(offset..end))
        {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

impl Drop for MemoryView {
    fn drop(&mut self) {
        self.shared.roots.remove(self.key);
        root_released(&self.shared);
    }
}

impl Domain {
    /// A strong reference labelled `label` (see [`DomainRef`]). Its root
    /// names the label and where it was made (the caller's location, or a
    /// backtrace with `CUSTODY_TRACE_ROOTS=1`).
    ///
    /// # Errors
    /// [`RefError::NotRunning`] once an unload has begun.
    #[track_caller]
    pub fn strong_ref(&self, label: &str) -> Result<DomainRef, RefError> {
        let site = std::panic::Location::caller().to_string();
        self.make_ref(RootRecord::new(RootKind::Ref, label.to_string(), site))
    }

    /// A strong reference that `holder` keeps (code forwarding calls from
    /// `holder` into this domain): a `Dependent` root naming `holder`,
    /// released when `holder`'s unload completes, after which calls through
    /// it fail. Unloading `holder` completes `holder`, then this domain.
    ///
    /// # Errors
    /// [`RefError::NotRunning`] once an unload of this domain has begun,
    /// [`RefError::HolderNotRunning`] if `holder` is already unloading.
    #[track_caller]
    pub fn strong_ref_for(&self, holder: &Domain, label: &str) -> Result<DomainRef, RefError> {
        let site = std::panic::Location::caller().to_string();
        let mut record = RootRecord::new(RootKind::Dependent, label.to_string(), site);
        record.holder = Some(holder.id());
        let holder_not_running = || RefError::HolderNotRunning {
            holder: holder.id(),
            state: holder.state(),
        };
        if holder.state() != super::DomainState::Running {
            return Err(holder_not_running());
        }
        let r = self.make_ref(record)?;
        let held = r.clone();
        // Checked again under the lock that completion takes: a holder that
        // completed since the check above has released its refs already,
        // and one pushed now would never be.
        match lock(&holder.shared.owned_refs).as_mut() {
            Some(refs) => refs.push(Box::new(move || held.release())),
            None => {
                r.release();
                return Err(holder_not_running());
            }
        }
        Ok(r)
    }

    fn make_ref(&self, record: RootRecord) -> Result<DomainRef, RefError> {
        let key = self.take_root(record)?;
        Ok(DomainRef {
            inner: Arc::new(RefInner {
                shared: Arc::clone(&self.shared),
                key,
                released: AtomicBool::new(false),
            }),
        })
    }

    /// Takes a root described by `record` (while the domain runs); its key.
    fn take_root(&self, record: RootRecord) -> Result<u64, NotRunning> {
        let shared = &self.shared;
        shared
            .state()
            .acquire_root(Admit::Running)
            .map_err(|state| shared.not_running(state, Refused::Root))?;
        Ok(shared.roots.add(record))
    }

    /// A reference that never keeps the domain alive nor holds up its
    /// unload: [`WeakDomain::upgrade`] is `None` once the unload completed.
    pub fn downgrade(&self) -> WeakDomain {
        WeakDomain {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// A view of the guest memory labelled `label` (see [`MemoryView`]).
    ///
    /// # Errors
    /// [`RefError::NotRunning`] once an unload has begun.
    #[track_caller]
    pub fn memory_view(&self, label: &str) -> Result<MemoryView, RefError> {
        let site = std::panic::Location::caller().to_string();
        let record = RootRecord::new(RootKind::MemoryView, label.to_string(), site);
        let key = self.take_root(record)?;
        Ok(MemoryView {
            shared: Arc::clone(&self.shared),
            key,
        })
    }

    /// What holds the domain now: what would keep an unload from
    /// completing (SPEC D2). A running guest's stack is sampled at its next
    /// epoch check (this waits about two epoch ticks for it).
    pub fn roots(&self) -> Vec<Root> {
        self.shared.roots.list(&self.shared.ctx_shared, SAMPLE_WAIT)
    }
}

/// One of a domain's handles pinned by a host thread outside a call
/// ([`Domain::pin_handle`]): derefs to the resource, which stays open until
/// the guard drops, and is a `PinnedHandle` root until then, naming the
/// handle, its type, the thread and the site that pinned it.
#[must_use = "dropping the guard unpins the handle at once"]
pub struct PinnedHandle<'a, T: ReleaseHandle> {
    /// `Some` until the drop, which unpins before it gives the root back
    /// (the root's release may complete the unload and drain the table).
    guard: Option<TableRef<'a, T>>,
    shared: &'a DomainShared,
    key: u64,
}

impl<T: ReleaseHandle> PinnedHandle<'_, T> {
    /// The id of the pinned handle.
    pub fn id(&self) -> HandleId {
        self.guard.as_ref().map_or(HandleId::NULL, TableRef::id)
    }
}

impl<T: ReleaseHandle> std::ops::Deref for PinnedHandle<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `drop` empties the option.
        self.guard
            .as_deref()
            .expect("a live PinnedHandle holds its guard")
    }
}

impl<T: ReleaseHandle> Drop for PinnedHandle<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.shared.roots.remove(self.key);
        root_released(self.shared);
    }
}

/// Why [`Domain::pin_handle`] could not pin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The domain is unloading or unloaded: no new roots.
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
    /// The id is null, stale, closed or holds another kind.
    #[error(transparent)]
    Handle(#[from] HandleError),
}

impl Domain {
    /// Pins the handle `id` as a `T` for a host thread, outside any call
    /// (an embedder reading a guest's file from a worker thread, say): the
    /// resource stays open until the guard drops, even if the guest closes
    /// the id, and until then the guard is a `PinnedHandle` root that
    /// [`roots`](Self::roots) names with the handle, its type, `label`, the
    /// thread and the caller's location (a backtrace with
    /// `CUSTODY_TRACE_ROOTS=1`). A pin taken through
    /// [`table`](Self::table) holds the resource the same way but is not a
    /// root: prefer this one for anything held longer than a statement.
    ///
    /// # Errors
    /// [`PinError::NotRunning`] once an unload has begun;
    /// [`PinError::Handle`], the table's error, for a
    /// null, stale, closed or wrong-kind id (nothing is held then).
    #[track_caller]
    pub fn pin_handle<T: ReleaseHandle>(
        &self,
        id: HandleId,
        label: &str,
    ) -> Result<PinnedHandle<'_, T>, PinError> {
        let site = std::panic::Location::caller().to_string();
        let guard = self.shared.table().get::<T>(id)?;
        let mut record = RootRecord::new(RootKind::PinnedHandle, label.to_string(), site);
        record.detail = Some(format!(
            "handle {} ({})",
            id.raw(),
            custody_handle::short_type_name(std::any::type_name::<T>())
        ));
        let key = self.take_root(record)?;
        Ok(PinnedHandle {
            guard: Some(guard),
            shared: &self.shared,
            key,
        })
    }
}

impl std::os::fd::AsFd for PinnedHandle<'_, custody_handle::Fd> {
    /// The pinned fd, for std and rustix I/O (as the table's guard gives).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.guard
            .as_ref()
            .expect("a live PinnedHandle holds its guard")
            .as_fd()
    }
}
