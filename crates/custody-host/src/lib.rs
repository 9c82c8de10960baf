//! Unloadable WebAssembly domains for code you do not trust to be correct.
//!
//! A [`Host`] runs guests in [`Domain`]s (.NET's AppDomains / collectible
//! load contexts). Guests reach the host only through the `custody` ABI
//! (module [`abi::MODULE`], documented for C in `guest/include/custody.h`),
//! whose handles are ids in the domain's
//! [`HandleTable`](custody_handle::HandleTable). Every handle argument is
//! pinned for the whole host call, out-handles never leak, guest pointers are
//! bounds-checked, and [`Domain::unload`] releases everything the domain's
//! guests still hold.
//!
//! | .NET | custody |
//! | --- | --- |
//! | AppDomain, collectible AssemblyLoadContext | [`Domain`] |
//! | assembly | a WebAssembly module |
//! | P/Invoke | a guest calling a `custody` host function |
//! | SafeHandle marshalling (AddRef/Release around the call) | handle ids pinned for the call ([`abi`]) |
//! | Thread.Abort / AppDomain.Unload | the epoch interrupt plus a cancellation signal that also wakes blocked host calls |
//! | `Unloading` event | the guest's `custody_unloading` export |
//! | HostProtectionAttribute | [`Category`] on every host function, denied at load |
#![deny(missing_docs)]

pub mod abi;
mod domain;
mod embed;
mod error;
mod host;
mod memory;
mod policy;
mod sys;

pub use domain::{Domain, DomainState, FailedRelease, HookOutcome, Ledger, UnloadReport};
pub use embed::{GuestCall, HostFunctionBody, HostLock, HostLockGuard};
pub use error::{CallError, HostError, LoadError, UnloadError};
pub use host::{DomainConfig, DomainInfo, EPOCH_TICK, Host, HostBuilder, LogSink, stderr_log};
pub use policy::{Action, Category, Escalation, Policy, PolicyError};
pub use wasmtime::{Module, Val, ValType};
