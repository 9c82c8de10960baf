//! `fd_readdir`: a directory's entries, with cookies stable across calls.
//!
//! path helper: not implemented yet (`ENOSYS`); the helper implementing
//! the `path_*` functions implements it here, keeping its per-fd state in
//! the side map of `fds.rs`.

use super::errno::WasiResult;
use super::types::Errno;
use crate::boundary::marshal::HostCall;

pub(super) fn fd_readdir(
    _: &mut HostCall<'_, '_>,
    _fd: i32,
    _buf: i32,
    _buf_len: i32,
    _cookie: i64,
    _used: i32,
) -> WasiResult {
    Err(Errno::Nosys.into())
}
