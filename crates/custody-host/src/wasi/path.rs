//! The `path_*` functions: paths resolved beneath a directory fd (a
//! pre-open or a directory the guest opened) with `openat2`'s
//! `RESOLVE_BENEATH`, as the custody ABI's `open` is.
//!
//! path helper: not implemented yet. Every function answers `ENOSYS`; the
//! helper implementing them replaces this file (the fd model it builds on
//! is `fds.rs`: `WasiFds::resolve` gives a pre-open's index or a pinned
//! directory handle).

use super::errno::WasiResult;
use super::types::Errno;
use crate::boundary::marshal::HostCall;

/// What every function here answers until it is implemented.
fn not_yet() -> WasiResult {
    Err(Errno::Nosys.into())
}

pub(super) fn path_create_directory(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _path: i32,
    _len: i32,
) -> WasiResult {
    not_yet()
}

pub(super) fn path_filestat_get(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _flags: i32,
    _path: i32,
    _len: i32,
    _buf: i32,
) -> WasiResult {
    not_yet()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn path_filestat_set_times(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _flags: i32,
    _path: i32,
    _len: i32,
    _atim: i64,
    _mtim: i64,
    _fst_flags: i32,
) -> WasiResult {
    not_yet()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn path_link(
    _: &mut HostCall<'_, '_>,
    _old_fd: i32,
    _old_flags: i32,
    _old_path: i32,
    _old_len: i32,
    _new_fd: i32,
    _new_path: i32,
    _new_len: i32,
) -> WasiResult {
    not_yet()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn path_open(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _dirflags: i32,
    _path: i32,
    _len: i32,
    _oflags: i32,
    _base: i64,
    _inheriting: i64,
    _fdflags: i32,
    _opened: i32,
) -> WasiResult {
    not_yet()
}

pub(super) fn path_readlink(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _path: i32,
    _len: i32,
    _buf: i32,
    _buf_len: i32,
    _used: i32,
) -> WasiResult {
    not_yet()
}

pub(super) fn path_remove_directory(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _path: i32,
    _len: i32,
) -> WasiResult {
    not_yet()
}

pub(super) fn path_rename(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _old_path: i32,
    _old_len: i32,
    _new_fd: i32,
    _new_path: i32,
    _new_len: i32,
) -> WasiResult {
    not_yet()
}

pub(super) fn path_symlink(
    _: &mut HostCall<'_, '_>,
    _old_path: i32,
    _old_len: i32,
    _fd: i32,
    _new_path: i32,
    _new_len: i32,
) -> WasiResult {
    not_yet()
}

pub(super) fn path_unlink_file(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _path: i32,
    _len: i32,
) -> WasiResult {
    not_yet()
}
