//! What a WASI function body fails with ([`Fail`]), and the one mapping
//! from OS errnos and custody's own errors to WASI errnos.

use custody_handle::HandleError;
use rustix::io::Errno as OsErrno;

use crate::types::Errno;
use custody_host::extension::AbiError;
use custody_host::extension::Fault;

/// Why a WASI function body failed: an errno for the guest, or the call is
/// being aborted (deadline, host abort, unload), which ends it as a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    Errno(Errno),
    Aborted,
}

/// What a WASI function body returns.
pub(crate) type WasiResult = Result<(), Fail>;

impl From<Errno> for Fail {
    fn from(errno: Errno) -> Self {
        Fail::Errno(errno)
    }
}

impl From<Fault> for Fail {
    /// A pointer or length outside guest memory.
    fn from(_: Fault) -> Self {
        Fail::Errno(Errno::Fault)
    }
}

impl From<HandleError> for Fail {
    fn from(error: HandleError) -> Self {
        Fail::Errno(from_handle_error(&error))
    }
}

impl From<OsErrno> for Fail {
    fn from(errno: OsErrno) -> Self {
        Fail::Errno(from_os(errno))
    }
}

impl From<std::io::Error> for Fail {
    fn from(error: std::io::Error) -> Self {
        Fail::Errno(
            error
                .raw_os_error()
                .map_or(Errno::Io, |raw| from_os(OsErrno::from_raw_os_error(raw))),
        )
    }
}

/// A handle that does not resolve is a bad fd; a full table is too many
/// open files.
pub(crate) fn from_handle_error(error: &HandleError) -> Errno {
    match error {
        HandleError::QuotaExceeded { .. } | HandleError::RefCountOverflow => Errno::Mfile,
        HandleError::Io(e) | HandleError::ReleaseFailed(e) => e
            .raw_os_error()
            .map_or(Errno::Io, |raw| from_os(OsErrno::from_raw_os_error(raw))),
        _ => Errno::Badf,
    }
}

/// An error of the custody boundary (a wait, a marshalled handle) as a WASI
/// failure; `last_errno` is the domain's errno behind an `E_IO`.
pub(crate) fn from_abi(error: AbiError, last_errno: i32) -> Fail {
    Fail::Errno(match error {
        AbiError::Aborted => return Fail::Aborted,
        AbiError::Null | AbiError::Stale | AbiError::Closed | AbiError::Kind => Errno::Badf,
        AbiError::Fault => Errno::Fault,
        AbiError::Quota => Errno::Mfile,
        AbiError::TimedOut => Errno::Timedout,
        AbiError::Denied => Errno::Notcapable,
        AbiError::NotSup => Errno::Notsup,
        AbiError::Inval => Errno::Inval,
        AbiError::Io => from_os(OsErrno::from_raw_os_error(last_errno)),
    })
}

/// An OS errno as WASI numbers it (WASI's list is POSIX's; what it lacks is
/// `EIO`).
pub(crate) fn from_os(errno: OsErrno) -> Errno {
    use Errno as W;
    match errno.raw_os_error() {
        libc::E2BIG => W::TooBig,
        libc::EACCES => W::Acces,
        libc::EADDRINUSE => W::Addrinuse,
        libc::EADDRNOTAVAIL => W::Addrnotavail,
        libc::EAFNOSUPPORT => W::Afnosupport,
        libc::EAGAIN => W::Again,
        libc::EALREADY => W::Already,
        libc::EBADF => W::Badf,
        libc::EBADMSG => W::Badmsg,
        libc::EBUSY => W::Busy,
        libc::ECANCELED => W::Canceled,
        libc::ECHILD => W::Child,
        libc::ECONNABORTED => W::Connaborted,
        libc::ECONNREFUSED => W::Connrefused,
        libc::ECONNRESET => W::Connreset,
        libc::EDEADLK => W::Deadlk,
        libc::EDESTADDRREQ => W::Destaddrreq,
        libc::EDOM => W::Dom,
        libc::EDQUOT => W::Dquot,
        libc::EEXIST => W::Exist,
        libc::EFAULT => W::Fault,
        libc::EFBIG => W::Fbig,
        libc::EHOSTUNREACH => W::Hostunreach,
        libc::EIDRM => W::Idrm,
        libc::EILSEQ => W::Ilseq,
        libc::EINPROGRESS => W::Inprogress,
        libc::EINTR => W::Intr,
        libc::EINVAL => W::Inval,
        libc::EISCONN => W::Isconn,
        libc::EISDIR => W::Isdir,
        libc::ELOOP => W::Loop,
        libc::EMFILE => W::Mfile,
        libc::EMLINK => W::Mlink,
        libc::EMSGSIZE => W::Msgsize,
        libc::EMULTIHOP => W::Multihop,
        libc::ENAMETOOLONG => W::Nametoolong,
        libc::ENETDOWN => W::Netdown,
        libc::ENETRESET => W::Netreset,
        libc::ENETUNREACH => W::Netunreach,
        libc::ENFILE => W::Nfile,
        libc::ENOBUFS => W::Nobufs,
        libc::ENODEV => W::Nodev,
        libc::ENOENT => W::Noent,
        libc::ENOEXEC => W::Noexec,
        libc::ENOLCK => W::Nolck,
        libc::ENOLINK => W::Nolink,
        libc::ENOMEM => W::Nomem,
        libc::ENOMSG => W::Nomsg,
        libc::ENOPROTOOPT => W::Noprotoopt,
        libc::ENOSPC => W::Nospc,
        libc::ENOSYS => W::Nosys,
        libc::ENOTCONN => W::Notconn,
        libc::ENOTDIR => W::Notdir,
        libc::ENOTEMPTY => W::Notempty,
        libc::ENOTRECOVERABLE => W::Notrecoverable,
        libc::ENOTSOCK => W::Notsock,
        libc::EOPNOTSUPP => W::Notsup,
        libc::ENOTTY => W::Notty,
        libc::ENXIO => W::Nxio,
        libc::EOVERFLOW => W::Overflow,
        libc::EOWNERDEAD => W::Ownerdead,
        libc::EPERM => W::Perm,
        libc::EPIPE => W::Pipe,
        libc::EPROTO => W::Proto,
        libc::EPROTONOSUPPORT => W::Protonosupport,
        libc::EPROTOTYPE => W::Prototype,
        libc::ERANGE => W::Range,
        libc::EROFS => W::Rofs,
        libc::ESPIPE => W::Spipe,
        libc::ESRCH => W::Srch,
        libc::ESTALE => W::Stale,
        libc::ETIMEDOUT => W::Timedout,
        libc::ETXTBSY => W::Txtbsy,
        libc::EXDEV => W::Xdev,
        _ => W::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errnos_map_by_name() {
        assert_eq!(from_os(OsErrno::NOENT), Errno::Noent);
        assert_eq!(from_os(OsErrno::AGAIN), Errno::Again);
        assert_eq!(from_os(OsErrno::PIPE), Errno::Pipe);
        assert_eq!(from_os(OsErrno::IO), Errno::Io);
        assert_eq!(from_os(OsErrno::NOTSUP), Errno::Notsup);
        assert_eq!(
            from_handle_error(&HandleError::Stale(custody_handle::HandleId::NULL)),
            Errno::Badf
        );
        assert_eq!(
            from_handle_error(&HandleError::QuotaExceeded { limit: 1 }),
            Errno::Mfile
        );
        assert_eq!(from_abi(AbiError::Aborted, 0), Fail::Aborted);
        assert_eq!(
            from_abi(AbiError::Io, libc::ENOSPC),
            Fail::Errno(Errno::Nospc)
        );
    }
}
