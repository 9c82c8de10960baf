//! The path system calls of WASI's `path_*` functions and `fd_readdir`.
//!
//! Confinement: every lookup that may cross more than one component goes
//! through custody-host's [`open_beneath`] (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS`); the `*at` calls here are only ever given a
//! directory opened that way and one last component that holds no `/`, so
//! the kernel never walks anywhere the `openat2` did not check. Calls on a
//! whole path use an `O_PATH` fd and `AT_EMPTY_PATH` instead.

use std::ffi::CString;
use std::os::fd::BorrowedFd;

use custody_host::extension::open_beneath;
use rustix::fs::{AtFlags, Dir, Mode, OFlags, Stat, Timestamps};
use rustix::io::Errno;

/// `mkdirat` (mode 0777, less the umask, as `mkdir(2)` does).
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o777))
}

/// `unlinkat`: a directory (`AT_REMOVEDIR`) or anything else.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &str, directory: bool) -> Result<(), Errno> {
    let flags = if directory {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    rustix::fs::unlinkat(dir, name, flags)
}

/// `renameat`.
pub(crate) fn rename_at(
    old_dir: BorrowedFd<'_>,
    old: &str,
    new_dir: BorrowedFd<'_>,
    new: &str,
) -> Result<(), Errno> {
    rustix::fs::renameat(old_dir, old, new_dir, new)
}

/// `symlinkat`: a link named `name` in `dir` whose contents are `target`.
pub(crate) fn symlink_at(target: &str, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    rustix::fs::symlinkat(target, dir, name)
}

/// `linkat`, never following a symbolic link.
pub(crate) fn link_at(
    old_dir: BorrowedFd<'_>,
    old: &str,
    new_dir: BorrowedFd<'_>,
    new: &str,
) -> Result<(), Errno> {
    rustix::fs::linkat(old_dir, old, new_dir, new, AtFlags::empty())
}

/// `readlinkat(dir, name)`: the contents of the symbolic link `name` in
/// `dir` (`EINVAL` if it is not one, as Linux says).
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &str) -> Result<CString, Errno> {
    rustix::fs::readlinkat(dir, name, Vec::new())
}

/// `fstatat(fd, "", AT_EMPTY_PATH)`: works on an `O_PATH` fd, a symbolic
/// link's included.
pub(crate) fn stat_fd(fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
    rustix::fs::statat(fd, "", AtFlags::EMPTY_PATH)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: one entry of a directory.
pub(crate) fn stat_entry(dir: BorrowedFd<'_>, name: &str) -> Result<Stat, Errno> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// `utimensat(fd, "", AT_EMPTY_PATH)`: sets the times of whatever an
/// `O_PATH` fd names (a symbolic link itself, if it is one).
pub(crate) fn set_times_fd(fd: BorrowedFd<'_>, times: &Timestamps) -> Result<(), Errno> {
    rustix::fs::utimensat(fd, "", times, AtFlags::EMPTY_PATH)
}

/// A reader of the directory `dir` names, from its first entry: a fresh
/// open of `.` (so an `O_PATH` directory can be read, and no other
/// reader's position is moved).
pub(crate) fn read_dir(dir: BorrowedFd<'_>) -> Result<Dir, Errno> {
    let fd = open_beneath(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
        0,
    )?;
    Dir::new(fd)
}
