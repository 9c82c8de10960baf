//! The `custody` guest ABI, version 1 (SPEC B1; `guest/include/custody.h`).
//!
//! [`FUNCTIONS`] declares every function once: its signature, its
//! host-protection categories, the error codes it may return and its
//! handler. The handlers are grouped by theme (`files`: open, close, dup;
//! `io`: read, write, pipe, log, last_error; `wait`: poll, sleep;
//! `regions`: critical regions), and each goes through the boundary's
//! marshalling (`crate::boundary::marshal`): handle arguments pinned for the
//! call, out-handles written or taken back, guest pointers checked.

mod files;
mod io;
mod regions;
mod timers;
mod wait;

use wasmtime::Caller;

use crate::boundary::ctx::DomainCtx;
pub use crate::boundary::errno::AbiError;
use crate::boundary::marshal;
use crate::catalogue::{AbiType, HostFunction};
use crate::config::Category;

/// The import module name.
pub const MODULE: &str = "custody";

pub use crate::boundary::marshal::MAX_IO;
/// Longest path `open` accepts.
pub const MAX_PATH: u32 = 4096;
/// Longest log line kept (longer text is cut).
pub const MAX_LOG: u32 = 64 * 1024;
/// Most handles one `poll` waits on.
pub const MAX_POLL: i32 = 64;

/// The `custody` ABI as an extension: the core's own, always linked, through
/// the same door as any other ABI ([`Extension`](crate::extension::Extension)).
/// Its per-domain state (timers, the log budget, `last_error`) is the
/// core's, so it keeps none of its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct CustodyAbi;

impl crate::extension::Extension for CustodyAbi {
    fn module(&self) -> &'static str {
        MODULE
    }

    fn functions(&self) -> &'static [HostFunction] {
        FUNCTIONS
    }

    fn new_domain(
        &self,
        _setup: &crate::extension::DomainSetup<'_>,
    ) -> Result<crate::extension::ExtensionState, Box<dyn std::error::Error + Send + Sync>> {
        Ok(crate::extension::ExtensionState::none())
    }
}

/// Declares the ABI: one entry per function, in the order of `custody.h`.
/// `enter` marshals a function that touches guest memory, `enter_ctx` one
/// that does not (no memory lookup).
macro_rules! abi {
    ($(
        $name:ident($($param:ident),*) $summary:literal
            categories [$($category:ident),*]
            errors [$($error:ident),*]
            => $enter:ident $handler:path;
    )*) => {
        /// Every function of the ABI, in the order of `custody.h`.
        pub const FUNCTIONS: &[HostFunction] = &[$(
            HostFunction {
                module: MODULE,
                name: stringify!($name),
                params: &[$((stringify!($param), AbiType::I32)),*],
                results: &[AbiType::I32],
                categories: &[$(Category::$category),*],
                errors: &[$(AbiError::$error),*],
                summary: $summary,
                link: |linker| {
                    linker.func_wrap(
                        MODULE,
                        stringify!($name),
                        |mut caller: Caller<'_, DomainCtx>, $($param: i32),*| {
                            marshal::$enter(&mut caller, stringify!($name), |call| $handler(call, $($param),*))
                        },
                    )?;
                    Ok(())
                },
            },
        )*];
    };
}

abi! {
    log(level, ptr, len) "write a line to the host's log"
        categories []
        errors [Inval, Fault, Aborted]
        => enter io::log;
    open(path_ptr, path_len, flags, out_handle_ptr) "open a file under a pre-opened directory"
        categories [MayLeakOnAbort]
        errors [Inval, Fault, Denied, Quota, Io, Aborted]
        => enter files::open;
    read(handle, buf_ptr, buf_len, out_n_ptr) "read from a file or pipe"
        categories [MayLeakOnAbort]
        errors [Null, Stale, Closed, Kind, Inval, Fault, TimedOut, Io, Aborted]
        => enter io::read;
    write(handle, buf_ptr, buf_len, out_n_ptr) "write to a file or pipe"
        categories [MayLeakOnAbort]
        errors [Null, Stale, Closed, Kind, Inval, Fault, TimedOut, Io, Aborted]
        => enter io::write;
    close(handle) "close a handle"
        categories []
        errors [Null, Stale, Closed, Io, Aborted]
        => enter_ctx files::close;
    dup(handle, out_handle_ptr) "duplicate a handle"
        categories [MayLeakOnAbort]
        errors [Null, Stale, Closed, Kind, Fault, Quota, Io, Aborted]
        => enter files::dup;
    pipe(out_read_ptr, out_write_ptr) "create a pipe"
        categories [MayLeakOnAbort, Synchronization]
        errors [Inval, Fault, Quota, Io, Aborted]
        => enter io::pipe;
    poll(handles_ptr, count, timeout_ms, out_ready_index_ptr) "wait until one of several handles is readable"
        categories [Synchronization]
        errors [Null, Stale, Closed, Kind, Inval, Fault, TimedOut, Denied, NotSup, Io, Aborted]
        => enter wait::poll;
    sleep(ms) "sleep"
        categories [Synchronization]
        errors [Inval, Denied, Aborted]
        => enter wait::sleep;
    last_error() "the errno behind the last E_IO"
        categories []
        errors []
        => enter_ctx io::last_error;
    critical_enter() "enter a critical region"
        categories [Synchronization]
        errors [Aborted]
        => enter_ctx regions::critical_enter;
    critical_exit() "leave a critical region"
        categories [Synchronization]
        errors [Inval, Aborted]
        => enter_ctx regions::critical_exit;
    timer_set(delay_ms, period_ms, export_ptr, export_len, out_handle_ptr) "arm a timer that calls an export"
        categories [Synchronization, MayLeakOnAbort]
        errors [Inval, Fault, Denied, Quota, NotSup, Aborted]
        => enter timers::timer_set;
}

/// The ABI function with this import name.
pub fn function(name: &str) -> Option<&'static HostFunction> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod header_tests;
