//! Safe handles for OS resources held by code you do not trust to be correct.
//!
//! This crate brings .NET's `SafeHandle` model to Rust and fixes what .NET
//! left broken. Every resource (file descriptor, mapping, child process) lives
//! inside a handle from creation to release, and is released **exactly once**
//! under any interleaving of threads.
//!
//! | .NET | custody | difference |
//! | --- | --- | --- |
//! | `SafeHandle` | [`SafeHandle<T>`] | count never wraps; failed releases are returned and reported |
//! | `CriticalHandle` | [`CriticalHandle<T>`] | single owner: the double-release race cannot compile |
//! | `ReleaseHandle()` returning `false` | [`ReleaseHandle::release_handle`] returning `Err` | never silent, never retried |
//! | `DangerousAddRef` / `DangerousRelease` / `DangerousGetHandle` | [`SafeHandle::dangerous_add_ref`] / [`dangerous_release`](SafeHandle::dangerous_release) / [`dangerous_get_handle`](SafeHandle::dangerous_get_handle), plus the RAII [`SafeHandle::acquire`] | |
//! | `DuplicateHandle` | [`SafeHandle::dup`] (fds) | |
//! | `SafeFileHandle`, memory-mapped view, `Process` | [`Fd`], [`Mapping`], [`Child`] | a child is killed and reaped |
//! | handle values in a shared namespace, recycled | [`HandleTable`] ids | generational: a stale id never reaches a recycled slot |
//! | the `releaseHandleFailed` MDA, `<mdaConfig>` | [`diagnostics`], `CUSTODY_DIAGNOSTICS` | on in production, with causes and [`history`] |
//!
//! # Example: catching a raw fd closed behind the handle's back
//! ```
//! use custody_handle::{diagnostics, Fd, HandleError, SafeHandle};
//!
//! let handle = SafeHandle::<Fd>::from(std::fs::File::open("/dev/null")?);
//! let raw = handle.dangerous_get_handle().raw();
//! // Someone copies the raw value out and closes it directly...
//! drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
//! // ...so the handle's own release fails, loudly.
//! # diagnostics::set_stderr(false);
//! assert!(matches!(handle.dispose(), Err(HandleError::ReleaseFailed(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Module map
//! Bottom first: a module imports only modules listed above it (the
//! layering test declares the same order and fails on an import going up).
//!
//! | module | owns |
//! | --- | --- |
//! | `sync` | the atomics and locks, std's or loom's (`--cfg loom`) |
//! | `env` | how a bad `CUSTODY_*` variable is reported |
//! | `id` | [`HandleId`] and the id bit layout ([`SLOT_BITS`], [`GENERATION_BITS`], ...) |
//! | `release` | the [`ReleaseHandle`] contract, [`format_raw`] and [`short_type_name`] |
//! | `error` | [`HandleError`] |
//! | [`history`] | the per-value handle history (`CUSTODY_TRACE_HANDLES`) |
//! | [`diagnostics`] | the assistants, [`Diagnostic`](diagnostics::Diagnostic), the sinks (stderr, subscribers, `tracing`), the per-assistant rate limit; `diagnostics/rate.rs`: the window word and its transitions |
//! | `safe_handle` | [`SafeHandle`] and [`HandleRef`]; `safe_handle/state.rs`: the `(n, D, C)` state word and its transitions |
//! | `critical_handle` | [`CriticalHandle`] |
//! | `table` | [`HandleTable`], [`TableRef`], the reports and [`TableCounters`]; `table/slot.rs`: the slot word, the slots and every `unsafe` of the table; `table/kinds.rs`: the live slots by resource type |
//! | `os` | [`Fd`], [`Mapping`], [`Child`] and the system calls behind them |
//! | `testing` | resource doubles for tests (the `testing` feature): `Counted`, `AnotherKind`, `Inert` |
//!
//! # Features
//! - `testing` (off by default), for other crates' tests (this crate's own
//!   tests always have it): `diagnostics::capture_for_tests`, which routes
//!   diagnostics through libtest's output capture instead of writing to
//!   stderr directly, so passing tests print nothing; and the `testing`
//!   module's resource doubles (a resource that counts its releases, one
//!   whose release fails, ...).
#![deny(missing_docs)]
// `unsafe` is allowed only in the modules that say so (`#![allow(unsafe_code)]`),
// each with a SAFETY argument beside every block: a new one is a visible decision.
#![deny(unsafe_code)]

mod critical_handle;
pub mod diagnostics;
mod env;
mod error;
pub mod history;
mod id;
mod os;
mod release;
mod safe_handle;
mod sync;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use critical_handle::CriticalHandle;
pub use error::HandleError;
pub use id::{GENERATION_BITS, HandleId, MAX_GENERATION, MAX_SLOTS, SLOT_BITS};
pub use os::{Child, Fd, Mapping};
pub use release::{ReleaseHandle, format_raw, short_type_name};
pub use safe_handle::{HandleRef, MAX_REF_COUNT, SafeHandle};
pub use table::{
    CloseOutcome, DrainReport, Either, HandleTable, ReleaseFailure, TableCounters, TableRef,
};
