//! WASI preview 1 (`wasi_snapshot_preview1`) for custody: the standard
//! import module of programs built for `wasm32-wasi` (C with wasi-libc,
//! Rust, Go, Zig, AssemblyScript), implemented over the domain's handle
//! table, beside the `custody` ABI, as a host extension ([`Wasi`]: see
//! custody-host's `extension` module).
//!
//! ```text
//! let host = Host::builder(policy).extension(Wasi).build()?;
//! let domain = host.create_domain(DomainConfig::new().extension(WasiConfig::new().args(["prog"])))?;
//! domain.load("main", &module)?;
//! domain.call("_start", &[])?;   // Err(CallError::Exit(n)) after proc_exit(n)
//! let out = domain.take_stdout(); // WasiDomain
//! ```
//!
//! Every promise of the custody ABI holds for a WASI guest: each file
//! descriptor it opens is a handle in the domain's table, pinned for every
//! call that uses it, counted in the ledger and released at unload; every
//! wait goes through the domain's one cancellable, deadline-bounded wait;
//! guest pointers are bounds-checked (a wild one is `EFAULT`, never a
//! panic). The reference for behaviour is wasmtime-wasi's preview 1; where
//! custody differs (CPU-time clocks answer, `fd_allocate` works), the
//! function's doc says so. Rights are advisory, as in wasmtime: reported
//! by `fd_fdstat_get`, never checked, `fd_fdstat_set_rights` is
//! `ENOTSUP`; what an fd can do is how it was opened (`fd_meta`, `path`).
//! Confinement rests on `openat2` beneath the dir fd, not on rights.
//!
//! # The fd model
//! - fds 0, 1, 2 are stdin, stdout and stderr: each a [`Stdio`] of the
//!   domain (null, the host's own, a host file, a bounded capture
//!   buffer, or an in-process pipe to or from the embedder: custody-host's
//!   [`pipe`](custody_host::pipe), re-exported here).
//! - fds 3, 4, ... are the domain's pre-opened directories, in the order
//!   of [`DomainConfig::preopen`](custody_host::DomainConfig::preopen); each is
//!   announced (`fd_prestat_dir_name`) under its name.
//! - every other fd is the raw id of a `custody_handle::Fd` handle in the
//!   domain's table: generational, never reused, always a positive `i32`
//!   and at least 2^20, so it never meets a small fd. The custody ABI's
//!   `read`, `write` and `close` work on it, and WASI's functions on the
//!   ABI's handles. A stale or forged id is `EBADF` and fires
//!   `staleHandleUse`.
//! - `fd_renumber(from, to)` makes `to` name `from`'s open file and closes
//!   `from`; what `to` named is released. Never onto a handle the embedder
//!   shares with the domain (`ENOTSUP`): that would replace the file behind
//!   the embedder's own fd.
//! - per-fd state (the guest's `NONBLOCK`) is kept in a
//!   side map (`fds`), never larger than the handle quota.
//!
//! # The catalogue
//! [`FUNCTIONS`] declares all of `wasi_snapshot_preview1` once, as the
//! `custody` ABI does: names and types of the parameters, the errno result
//! (`proc_exit` returns nothing), categories (`proc_exit`:
//! `SelfAffectingProcessMgmt`, `sched_yield`: `SelfAffectingThreading`)
//! and the handler, grouped by theme: `args` (arguments, environment),
//! `clock`, `fd_io` (read, write, seek), `fd_meta` (stat, flags, rights,
//! sync), `fd_table` (close, renumber, the pre-opens), `dir` (`fd_readdir`), `path` (the
//! `path_*` functions), `poll` (`poll_oneoff`), `proc` (exit, raise,
//! yield, random) and `sock`. A policy with `wasi = false` refuses every
//! import of the module at load.
//!
//! # Module map
//! Bottom to top: a module imports only those above it in this table
//! (the layering test in custody-testkit checks it).
//!
//! | module | owns |
//! | --- | --- |
//! | `sys` | every system call beyond the core's, through rustix (`unsafe`: `dup_onto`) |
//! | `types` | the witx's errnos, flags and guest layouts |
//! | `errno` | OS and custody errors as WASI errnos |
//! | `stdio` | [`Stdio`], the streams, the bounded capture |
//! | `fds` | small fds, table ids, the per-fd side map |
//! | `state` | [`WasiConfig`] and the store slot (`WasiState`) |
//! | `clock` | `clock_res_get`, `clock_time_get` |
//! | `args` | `args_*`, `environ_*` |
//! | `fd_meta` | stat, flags, rights, sync, advice, allocation, times |
//! | `fd_io` | read, write, seek, tell |
//! | `fd_table` | close, renumber, the pre-opens |
//! | `path` | the `path_*` functions |
//! | `dir` | `fd_readdir` |
//! | `poll` | `poll_oneoff` |
//! | `proc` | exit, raise, yield, random |
//! | `sock` | the socket functions on handles the embedder gives |
//! | `host` | [`Wasi`] (the extension), [`WasiDomainConfig`], [`WasiDomain`] |

#![deny(missing_docs)]
// `unsafe` is allowed only in the modules that say so (`#![allow(unsafe_code)]`),
// each with a SAFETY argument beside every block: a new one is a visible decision.
#![deny(unsafe_code)]

mod args;
mod clock;
mod dir;
pub(crate) mod errno;
mod fd_io;
mod fd_meta;
mod fd_table;
pub(crate) mod fds;
mod host;
mod path;
mod poll;
pub(crate) mod proc;
mod sock;
pub(crate) mod state;
pub(crate) mod stdio;
mod sys;
pub(crate) mod types;

use wasmtime::Caller;

use self::errno::{Fail, WasiResult};
use self::fds::Target;
use self::state::wasi;
use custody_host::Category;
use custody_host::extension::{self, AbiError, AbiType, DomainCtx, HostCall, HostFunction};
/// In-process pipes live in custody-host ([`custody_host::pipe`]), shared
/// with the `custody` ABI; their names stay here for WASI's embedders.
pub use custody_host::pipe::{GuestSide, PIPE_CAPACITY, PipeReader, PipeWriter};
pub use host::{StdioError, Wasi, WasiDomain, WasiDomainConfig};
pub use state::WasiConfig;
pub use stdio::Stdio;
pub use types::Errno;

/// The import module name.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// Runs a WASI function body: marshalled as the custody ABI's are (an
/// abort raised before the call ends it at once, handles pinned by the
/// body), its errno returned to the guest. An abort from a wait ends the
/// call as a trap; in the unloading hook, which can still observe it, it
/// is `ECANCELED`.
#[inline]
fn enter(
    caller: &mut Caller<'_, DomainCtx>,
    name: &'static str,
    body: impl FnOnce(&mut HostCall<'_, '_>) -> WasiResult,
) -> wasmtime::Result<i32> {
    let code = extension::enter(caller, name, |call| match body(call) {
        Ok(()) => Ok(0),
        Err(Fail::Errno(errno)) => Ok(errno.code()),
        Err(Fail::Aborted) => Err(AbiError::Aborted),
    })?;
    Ok(if code == AbiError::Aborted.code() {
        Errno::Canceled.code()
    } else {
        code
    })
}

/// Resolves a WASI fd for the rest of the call (a table handle pinned),
/// before any guest memory is looked up.
#[inline]
fn target<'a>(call: &mut HostCall<'a, '_>, fd: i32) -> Result<Target<'a>, Errno> {
    let table = call.table();
    wasi(call.ctx())?.fds.resolve(table, fd)
}

/// A failure of the boundary (a wait, a marshalled handle) as the guest's
/// errno; an `E_IO` is the errno the domain recorded for it.
fn fail(call: &mut HostCall<'_, '_>, error: AbiError) -> Fail {
    errno::from_abi(error, call.ctx().last_errno())
}

/// The Rust type of a parameter's [`AbiType`].
macro_rules! rust_type {
    (I32) => {
        i32
    };
    (I64) => {
        i64
    };
}

/// The linker entry of one function: `errno` functions return their errno,
/// `noreturn` ones (`proc_exit`) end the call themselves.
macro_rules! link_one {
    (errno $linker:ident $name:ident($($param:ident: $ty:ident),*) $handler:path) => {
        $linker.func_wrap(
            MODULE,
            stringify!($name),
            |mut caller: Caller<'_, DomainCtx>, $($param: rust_type!($ty)),*| {
                enter(&mut caller, stringify!($name), |call| $handler(call, $($param),*))
            },
        )?
    };
    (noreturn $linker:ident $name:ident($($param:ident: $ty:ident),*) $handler:path) => {
        $linker.func_wrap(
            MODULE,
            stringify!($name),
            |mut caller: Caller<'_, DomainCtx>, $($param: rust_type!($ty)),*| -> wasmtime::Result<()> {
                $handler(&mut caller, $($param),*)
            },
        )?
    };
}

/// The results of an `errno` or a `noreturn` function.
macro_rules! results {
    (errno) => {
        &[AbiType::I32]
    };
    (noreturn) => {
        &[]
    };
}

/// Declares the module: one entry per function, in the witx's order.
macro_rules! wasi {
    ($(
        $name:ident($($param:ident: $ty:ident),*) $summary:literal
            categories [$($category:ident),*]
            => $kind:ident $handler:path;
    )*) => {
        /// Every function of `wasi_snapshot_preview1`, in the witx's order.
        pub const FUNCTIONS: &[HostFunction] = &[$(
            HostFunction {
                module: MODULE,
                name: stringify!($name),
                params: &[$((stringify!($param), AbiType::$ty)),*],
                results: results!($kind),
                categories: &[$(Category::$category),*],
                // WASI errnos, not the custody ABI's codes.
                errors: &[],
                summary: $summary,
                link: |linker| {
                    link_one!($kind linker $name($($param: $ty),*) $handler);
                    Ok(())
                },
            },
        )*];
    };
}

wasi! {
    args_get(argv: I32, argv_buf: I32) "the command-line arguments"
        categories [] => errno args::args_get;
    args_sizes_get(argc: I32, argv_buf_size: I32) "how many arguments, and their bytes"
        categories [] => errno args::args_sizes_get;
    environ_get(environ: I32, environ_buf: I32) "the environment variables"
        categories [] => errno args::environ_get;
    environ_sizes_get(count: I32, buf_size: I32) "how many variables, and their bytes"
        categories [] => errno args::environ_sizes_get;
    clock_res_get(id: I32, resolution: I32) "a clock's resolution"
        categories [] => errno clock::clock_res_get;
    clock_time_get(id: I32, precision: I64, time: I32) "a clock's time"
        categories [] => errno clock::clock_time_get;
    fd_advise(fd: I32, offset: I64, len: I64, advice: I32) "advise how a file will be used"
        categories [] => errno fd_meta::fd_advise;
    fd_allocate(fd: I32, offset: I64, len: I64) "allocate a file's space"
        categories [] => errno fd_meta::fd_allocate;
    fd_close(fd: I32) "close an fd"
        categories [] => errno fd_table::fd_close;
    fd_datasync(fd: I32) "write a file's data to disk"
        categories [] => errno fd_meta::fd_datasync;
    fd_fdstat_get(fd: I32, stat: I32) "an fd's type, flags and rights"
        categories [] => errno fd_meta::fd_fdstat_get;
    fd_fdstat_set_flags(fd: I32, flags: I32) "set an fd's flags"
        categories [] => errno fd_meta::fd_fdstat_set_flags;
    fd_fdstat_set_rights(fd: I32, fs_rights_base: I64, fs_rights_inheriting: I64) "change an fd's rights (ENOTSUP: rights are advisory)"
        categories [] => errno fd_meta::fd_fdstat_set_rights;
    fd_filestat_get(fd: I32, buf: I32) "an open file's attributes"
        categories [] => errno fd_meta::fd_filestat_get;
    fd_filestat_set_size(fd: I32, size: I64) "truncate or extend an open file"
        categories [] => errno fd_meta::fd_filestat_set_size;
    fd_filestat_set_times(fd: I32, atim: I64, mtim: I64, fst_flags: I32) "set an open file's times"
        categories [] => errno fd_meta::fd_filestat_set_times;
    fd_pread(fd: I32, iovs: I32, iovs_len: I32, offset: I64, nread: I32) "read at an offset"
        categories [] => errno fd_io::fd_pread;
    fd_prestat_get(fd: I32, buf: I32) "describe a pre-opened directory"
        categories [] => errno fd_table::fd_prestat_get;
    fd_prestat_dir_name(fd: I32, path: I32, path_len: I32) "a pre-opened directory's name"
        categories [] => errno fd_table::fd_prestat_dir_name;
    fd_pwrite(fd: I32, iovs: I32, iovs_len: I32, offset: I64, nwritten: I32) "write at an offset"
        categories [] => errno fd_io::fd_pwrite;
    fd_read(fd: I32, iovs: I32, iovs_len: I32, nread: I32) "read"
        categories [] => errno fd_io::fd_read;
    fd_readdir(fd: I32, buf: I32, buf_len: I32, cookie: I64, bufused: I32) "read directory entries"
        categories [] => errno dir::fd_readdir;
    fd_renumber(fd: I32, to: I32) "move an fd onto another number"
        categories [] => errno fd_table::fd_renumber;
    fd_seek(fd: I32, offset: I64, whence: I32, newoffset: I32) "move a file's offset"
        categories [] => errno fd_io::fd_seek;
    fd_sync(fd: I32) "write a file's data and metadata to disk"
        categories [] => errno fd_meta::fd_sync;
    fd_tell(fd: I32, offset: I32) "a file's offset"
        categories [] => errno fd_io::fd_tell;
    fd_write(fd: I32, iovs: I32, iovs_len: I32, nwritten: I32) "write"
        categories [] => errno fd_io::fd_write;
    path_create_directory(fd: I32, path: I32, path_len: I32) "create a directory"
        categories [] => errno path::path_create_directory;
    path_filestat_get(fd: I32, flags: I32, path: I32, path_len: I32, buf: I32) "a file's attributes, by path"
        categories [] => errno path::path_filestat_get;
    path_filestat_set_times(fd: I32, flags: I32, path: I32, path_len: I32, atim: I64, mtim: I64, fst_flags: I32) "set a file's times, by path"
        categories [] => errno path::path_filestat_set_times;
    path_link(old_fd: I32, old_flags: I32, old_path: I32, old_path_len: I32, new_fd: I32, new_path: I32, new_path_len: I32) "create a hard link"
        categories [] => errno path::path_link;
    path_open(fd: I32, dirflags: I32, path: I32, path_len: I32, oflags: I32, fs_rights_base: I64, fs_rights_inheriting: I64, fdflags: I32, opened_fd: I32) "open a file or directory"
        categories [] => errno path::path_open;
    path_readlink(fd: I32, path: I32, path_len: I32, buf: I32, buf_len: I32, bufused: I32) "read a symbolic link"
        categories [] => errno path::path_readlink;
    path_remove_directory(fd: I32, path: I32, path_len: I32) "remove an empty directory"
        categories [] => errno path::path_remove_directory;
    path_rename(fd: I32, old_path: I32, old_path_len: I32, new_fd: I32, new_path: I32, new_path_len: I32) "rename a file or directory"
        categories [] => errno path::path_rename;
    path_symlink(old_path: I32, old_path_len: I32, fd: I32, new_path: I32, new_path_len: I32) "create a symbolic link"
        categories [] => errno path::path_symlink;
    path_unlink_file(fd: I32, path: I32, path_len: I32) "remove a file"
        categories [] => errno path::path_unlink_file;
    poll_oneoff(subscriptions: I32, events: I32, nsubscriptions: I32, nevents: I32) "wait for clocks and fds"
        categories [] => errno poll::poll_oneoff;
    proc_exit(rval: I32) "end the program with an exit status"
        categories [SelfAffectingProcessMgmt] => noreturn proc::proc_exit;
    proc_raise(sig: I32) "raise a signal (not supported)"
        categories [] => errno proc::proc_raise;
    sched_yield() "let other threads run"
        categories [SelfAffectingThreading] => errno proc::sched_yield;
    random_get(buf: I32, buf_len: I32) "random bytes"
        categories [] => errno proc::random_get;
    sock_accept(fd: I32, flags: I32, accepted_fd: I32) "accept a connection on a socket the host gave"
        categories [] => errno sock::sock_accept;
    sock_recv(fd: I32, ri_data: I32, ri_data_len: I32, ri_flags: I32, ro_datalen: I32, ro_flags: I32) "receive from a socket"
        categories [] => errno sock::sock_recv;
    sock_send(fd: I32, si_data: I32, si_data_len: I32, si_flags: I32, so_datalen: I32) "send on a socket"
        categories [] => errno sock::sock_send;
    sock_shutdown(fd: I32, how: I32) "shut a socket down"
        categories [] => errno sock::sock_shutdown;
}

/// The WASI function with this import name.
pub fn function(name: &str) -> Option<&'static HostFunction> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod catalogue_tests;
