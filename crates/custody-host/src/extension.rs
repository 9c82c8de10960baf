//! ABIs as extensions: the one door through which an ABI joins a host.
//!
//! The core (boundary, domain, runtime, host) names no ABI. An ABI is an
//! [`Extension`]: an import module, its functions declared once
//! ([`HostFunction`]: names, signature, categories, handler), and what it
//! keeps per domain. The `custody` ABI comes through this door
//! ([`CustodyAbi`](crate::abi::CustodyAbi), always present); WASI preview 1
//! is the crate `custody-wasi`; an embedder's server adds its own. The host
//! links every extension's functions into its catalogue, so host
//! protection, denial at load and the documented category tables treat them
//! all alike.
//!
//! Per domain, an extension has two places ([`ExtensionState`]):
//! - a slot in the store ([`StoreState`]), which its host functions find by
//!   type ([`DomainCtx::extension`]), as wasmtime-wasi finds its context
//!   through `WasiView`: the core tells it when a guest closes a handle and
//!   when the domain is recycled;
//! - optionally, a part shared with the embedder outside the store
//!   ([`Domain::extension`](crate::Domain::extension)), such as WASI's
//!   capture buffers.
//!
//! An embedder configures an extension per domain with a value of the
//! extension's own type ([`DomainConfig::extension`](crate::DomainConfig::extension)),
//! which the extension reads back in [`Extension::new_domain`].
//!
//! A host function body runs inside [`enter`]: an abort raised before the
//! call ends it at once, handle arguments are pinned ([`pin`]) before the
//! caller's memory is borrowed ([`HostCall::split`]), guest input is checked
//! ([`length`], [`GuestMemory`]'s ranges), new handles are made only once
//! their out slot and the table's room are checked ([`out_handle`],
//! [`give`]), and every wait goes through the domain's one cancellable,
//! deadline-bounded wait ([`HostCall::wait`]). A host function that ends
//! the guest's call with a status returns [`Exit`].

use std::any::Any;
use std::error::Error;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::OFlags;
use rustix::io::Errno;

pub use crate::boundary::cancel::{Exit, Waited, WakeFd};
pub use crate::boundary::ctx::DomainCtx;
pub use crate::boundary::errno::AbiError;
pub use crate::boundary::extensions::StoreState;
pub use crate::boundary::marshal::{
    AbiResult, HostCall, MAX_IO, OutHandle, OutPair, Pinned, enter, give, give_pair, handle_id,
    length, out_handle, out_pair, pin, pointer,
};
pub use crate::boundary::memory::{Fault, GuestMemory, OutSlot};
pub use crate::boundary::preopen::Preopens;
pub use crate::catalogue::{AbiType, HostFunction, assert_declared, assert_documented};
use crate::config::Policy;

/// An ABI: one import module, its functions, and what it keeps per domain.
pub trait Extension: Send + Sync + 'static {
    /// The import module its functions are defined in. The module is
    /// reserved: an embedder function may not be defined in it.
    fn module(&self) -> &'static str;

    /// Its functions, each in [`module`](Self::module), declared once.
    fn functions(&self) -> &'static [HostFunction];

    /// Why `policy` refuses every import of this module, if it does
    /// (checked when a module that imports it loads: the load fails with
    /// [`LoadError::DeniedModule`](crate::LoadError::DeniedModule)).
    fn denied_by(&self, policy: &Policy) -> Option<String> {
        let _ = policy;
        None
    }

    /// What a new domain keeps of this extension: its store slot and its
    /// shared part. Called once per domain, when it is created; an error
    /// fails the creation
    /// ([`HostError::Extension`](crate::HostError::Extension)).
    ///
    /// # Errors
    /// Whatever keeps the extension from serving the domain (a stream that
    /// cannot be opened, a configuration it refuses).
    fn new_domain(
        &self,
        setup: &DomainSetup<'_>,
    ) -> Result<ExtensionState, Box<dyn Error + Send + Sync>>;
}

/// What an extension keeps of one domain ([`Extension::new_domain`]).
#[derive(Default)]
pub struct ExtensionState {
    pub(crate) store: Option<Box<dyn StoreState>>,
    pub(crate) shared: Option<Arc<dyn Any + Send + Sync>>,
}

impl ExtensionState {
    /// Nothing: the extension keeps no state per domain.
    pub fn none() -> Self {
        Self::default()
    }

    /// `state` in the domain's store, found by its type from host calls.
    pub fn store(state: impl StoreState) -> Self {
        ExtensionState {
            store: Some(Box::new(state)),
            shared: None,
        }
    }

    /// Adds `shared`, kept beside the store for the embedder
    /// ([`Domain::extension`](crate::Domain::extension)), found by its type.
    #[must_use]
    pub fn with_shared(mut self, shared: Arc<impl Any + Send + Sync>) -> Self {
        self.shared = Some(shared);
        self
    }
}

impl std::fmt::Debug for ExtensionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionState")
            .field("store", &self.store.is_some())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

/// What an extension knows of a domain being created.
#[derive(Debug)]
pub struct DomainSetup<'a> {
    pub(crate) id: u64,
    pub(crate) policy: &'a Policy,
    pub(crate) preopens: usize,
    pub(crate) configs: &'a [Arc<dyn Any + Send + Sync>],
}

impl DomainSetup<'_> {
    /// The new domain's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The domain's policy (its own, else the host's).
    pub fn policy(&self) -> &Policy {
        self.policy
    }

    /// How many directories the domain pre-opens.
    pub fn preopens(&self) -> usize {
        self.preopens
    }

    /// The configuration of type `C` the embedder gave the domain
    /// ([`DomainConfig::extension`](crate::DomainConfig::extension)), if any.
    pub fn config<C: Any>(&self) -> Option<&C> {
        self.configs.iter().find_map(|c| c.downcast_ref::<C>())
    }
}

/// Opens `path` beneath the directory `dir` (a pre-open, or a directory
/// opened through this function): `openat2` with `RESOLVE_BENEATH |
/// RESOLVE_NO_MAGICLINKS`, close-on-exec, no controlling terminal, retried
/// when a concurrent rename disturbed the lookup. An escape (`..`, an
/// absolute path or a symlink out) is `EXDEV`. `flags` should hold
/// `NONBLOCK` for anything that is not `O_PATH`, so that opening a FIFO
/// never blocks; `mode` applies when `flags` holds `CREATE`.
///
/// # Errors
/// The OS error.
///
/// # References
/// - [openat2(2)](https://man7.org/linux/man-pages/man2/openat2.2.html)
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    path: impl rustix::path::Arg + Copy,
    flags: OFlags,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    crate::sys::open_beneath_raw(dir, path, flags, mode)
}
