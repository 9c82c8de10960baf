//! Unloadable WebAssembly domains for code you do not trust to be correct.
//!
//! A [`Host`] runs guests in [`Domain`]s (.NET's AppDomains / collectible
//! load contexts). Guests reach the host only through host functions: the
//! `custody` ABI (module [`abi::MODULE`], documented for C in
//! `guest/include/custody.h`), the ABIs added as extensions
//! ([`extension`]: WASI preview 1 is the crate `custody-wasi`) and the
//! embedder's own ([`HostBuilder::func_wrap`]). The core names no ABI: the
//! `custody` ABI comes through the same door as the others. Their handles are ids in the domain's
//! [`HandleTable`](custody_handle::HandleTable). Every handle argument is
//! pinned for the whole host call, out-handles never leak, guest pointers are
//! bounds-checked, and [`Domain::unload`] releases everything the domain's
//! guests still hold.
//!
//! | .NET | custody |
//! | --- | --- |
//! | AppDomain, collectible AssemblyLoadContext | [`Domain`] |
//! | assembly | a WebAssembly module |
//! | P/Invoke | a guest calling a host function |
//! | SafeHandle marshalling (AddRef/Release around the call) | handle ids pinned for the call (the boundary's marshalling) |
//! | Thread.Abort / AppDomain.Unload | the epoch interrupt plus a cancellation signal that also wakes blocked host calls |
//! | `Unloading` event | the guest's `custody_unloading` export |
//! | HostProtectionAttribute | [`Category`] on every host function, denied at load |
//!
//! # Module map
//! Top first: imports point down this list (the layering test declares the
//! same order, bottom to top, and fails on an import going up);
//! docs/ARCHITECTURE.md draws the same map with the path of one call and of
//! one unload.
//!
//! | module | owns |
//! | --- | --- |
//! | `host` | [`Host`], [`HostBuilder`], [`DomainConfig`]: the entry point; a domain from a [`Manifest`] |
//! | `domain` | [`Domain`]: load (the import resolution order), call, recycle, the one unload procedure, the state word |
//! | `runtime` | the engine (allocation, disk cache, dense memories), the linker, the epoch ticker, the timer thread |
//! | `compile` | the compile pipeline under the policy's bounds (structure check, estimate, export names, atomic-wait rewrite, time bound) and the module caches |
//! | `manifest` | the domain [`Manifest`], read and checked, and the load order of its modules |
//! | `error` | the error types (they name the domain's state and the policy's categories) |
//! | `registry` | the live domains ([`DomainInfo`]), their totals ([`HostTotals`]) and where each is in its life ([`DomainState`]) |
//! | [`abi`] | the `custody` ABI: its catalogue entries and handlers, an extension like any other |
//! | [`extension`] | the door for ABIs: [`Extension`](extension::Extension), per-domain state, and the safe facade over the boundary that an ABI's functions use |
//! | `catalogue` | every host function, declared once ([`HostFunction`]) |
//! | [`pipe`] | in-process pipes between a guest and the embedder ([`GuestSide`](pipe::GuestSide), [`PipeReader`](pipe::PipeReader), [`PipeWriter`](pipe::PipeWriter)): WASI's stdio, the `custody` ABI's pipe-end handles |
//! | `boundary` | one host call: context, cancellation, marshalling, guest memory, guest stacks, pre-opens, embedder functions |
//! | `ledger`, `log` | the [`Ledger`], the guest log sink |
//! | `config` | [`Policy`] and its TOML format ([`PolicyOverrides`]), sizes ([`parse_size`]) |
//! | `sys` | every system call, through rustix |
//! | `deadline` | instants from any duration a user, a policy or a guest chose, saturated |
#![deny(missing_docs)]
// `unsafe` is allowed only in the modules that say so (`#![allow(unsafe_code)]`),
// each with a SAFETY argument beside every block: a new one is a visible decision.
#![deny(unsafe_code)]

pub mod abi;
mod boundary;
mod catalogue;
mod compile;
mod config;
mod deadline;
mod domain;
mod error;
pub mod extension;
mod host;
mod ledger;
mod log;
mod manifest;
pub mod pipe;
mod registry;
mod runtime;
mod sys;

pub use boundary::cancel::{Exit, Interrupt};
pub use boundary::embed::{EmbedderFn, GuestCall, HostFunctionBody, HostLock, HostLockGuard};
pub use boundary::errno::AbiError;
pub use boundary::marshal::Pinned;
pub use catalogue::{AbiType, HostFunction};
pub use config::{
    Action, Allocation, Category, ENGINE_WIDE_KEYS, Escalation, MAX_POOL_KEEP_RESIDENT,
    MIN_THROTTLE_SHARE, OnMemoryLimit, Policy, PolicyError, PolicyOverrides, SizeError,
    UnloadBlockedAction, parse_size,
};
pub use domain::Domain;
pub use domain::refs::{DomainRef, MemoryView, PinError, PinnedHandle, WeakDomain};
pub use domain::report::{FailedRelease, Forced, HookOutcome, ModuleHook, UnloadReport};
pub use domain::roots::{Root, RootKind};
pub use domain::unload::{UnloadBlocked, UnloadTicket};
pub use error::{
    CallError, EndCause, EscalationOutcome, HostError, LoadError, ManifestError, NotRunning,
    RefError, UnloadError,
};
pub use host::{DomainConfig, Host, HostBuilder};
pub use ledger::Ledger;
pub use log::{LogSink, stderr_log};
pub use manifest::{Manifest, ManifestModule};
pub use registry::{CacheStats, DomainInfo, DomainState, HostTotals};
pub use runtime::EPOCH_TICK;
pub use wasmtime::{Module, Val, ValType};
