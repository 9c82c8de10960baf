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
#![deny(missing_docs)]

mod critical_handle;
pub mod diagnostics;
mod error;
pub mod history;
mod os;
mod release;
mod safe_handle;
mod sync;
mod table;

pub use critical_handle::CriticalHandle;
pub use error::HandleError;
pub use os::{Child, Fd, Mapping};
pub use release::{ReleaseHandle, format_raw};
pub use safe_handle::{HandleRef, MAX_REF_COUNT, SafeHandle};
pub use table::{
    CloseOutcome, DrainReport, GENERATION_BITS, HandleId, HandleTable, MAX_GENERATION, MAX_SLOTS,
    ReleaseFailure, SLOT_BITS, TableRef,
};
