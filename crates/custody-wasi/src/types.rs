//! The types of `wasi_snapshot_preview1` as its witx defines them: the
//! errno values, the flag and enum words, and the byte layouts of the
//! structures that cross guest memory (all little-endian, at the offsets
//! the witx gives for wasm32). A leaf: nothing else of the crate.

/// A WASI errno: what every `wasi_snapshot_preview1` function returns (0 is
/// success).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[allow(missing_docs)] // The witx names say it all.
pub enum Errno {
    Success = 0,
    TooBig,
    Acces,
    Addrinuse,
    Addrnotavail,
    Afnosupport,
    Again,
    Already,
    Badf,
    Badmsg,
    Busy,
    Canceled,
    Child,
    Connaborted,
    Connrefused,
    Connreset,
    Deadlk,
    Destaddrreq,
    Dom,
    Dquot,
    Exist,
    Fault,
    Fbig,
    Hostunreach,
    Idrm,
    Ilseq,
    Inprogress,
    Intr,
    Inval,
    Io,
    Isconn,
    Isdir,
    Loop,
    Mfile,
    Mlink,
    Msgsize,
    Multihop,
    Nametoolong,
    Netdown,
    Netreset,
    Netunreach,
    Nfile,
    Nobufs,
    Nodev,
    Noent,
    Noexec,
    Nolck,
    Nolink,
    Nomem,
    Nomsg,
    Noprotoopt,
    Nospc,
    Nosys,
    Notconn,
    Notdir,
    Notempty,
    Notrecoverable,
    Notsock,
    Notsup,
    Notty,
    Nxio,
    Overflow,
    Ownerdead,
    Perm,
    Pipe,
    Proto,
    Protonosupport,
    Prototype,
    Range,
    Rofs,
    Spipe,
    Srch,
    Stale,
    Timedout,
    Txtbsy,
    Xdev,
    Notcapable,
}

impl Errno {
    /// The value the guest sees.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// `rights`: what an fd may be used for (a `u64` of flags).
pub(crate) mod rights {
    pub(crate) const FD_DATASYNC: u64 = 1 << 0;
    pub(crate) const FD_READ: u64 = 1 << 1;
    pub(crate) const FD_SEEK: u64 = 1 << 2;
    pub(crate) const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub(crate) const FD_SYNC: u64 = 1 << 4;
    pub(crate) const FD_TELL: u64 = 1 << 5;
    pub(crate) const FD_WRITE: u64 = 1 << 6;
    pub(crate) const FD_ADVISE: u64 = 1 << 7;
    pub(crate) const FD_ALLOCATE: u64 = 1 << 8;
    pub(crate) const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub(crate) const PATH_CREATE_FILE: u64 = 1 << 10;
    pub(crate) const PATH_LINK_SOURCE: u64 = 1 << 11;
    pub(crate) const PATH_LINK_TARGET: u64 = 1 << 12;
    pub(crate) const PATH_OPEN: u64 = 1 << 13;
    pub(crate) const FD_READDIR: u64 = 1 << 14;
    pub(crate) const PATH_READLINK: u64 = 1 << 15;
    pub(crate) const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub(crate) const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub(crate) const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub(crate) const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub(crate) const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    pub(crate) const FD_FILESTAT_GET: u64 = 1 << 21;
    pub(crate) const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub(crate) const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub(crate) const PATH_SYMLINK: u64 = 1 << 24;
    pub(crate) const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub(crate) const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub(crate) const POLL_FD_READWRITE: u64 = 1 << 27;
    pub(crate) const SOCK_SHUTDOWN: u64 = 1 << 28;
    pub(crate) const SOCK_ACCEPT: u64 = 1 << 29;
    /// Every right of the witx (its 30 flags, each named once).
    pub(crate) const ALL: u64 = FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_LINK_SOURCE
        | PATH_LINK_TARGET
        | PATH_OPEN
        | FD_READDIR
        | PATH_READLINK
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_SIZE
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | PATH_SYMLINK
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE
        | POLL_FD_READWRITE
        | SOCK_SHUTDOWN
        | SOCK_ACCEPT;

    /// What a pre-opened directory announces (wasmtime's set, which many
    /// userlands expect).
    pub(crate) const PREOPEN_BASE: u64 = PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_LINK_SOURCE
        | PATH_LINK_TARGET
        | PATH_OPEN
        | FD_READDIR
        | PATH_READLINK
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_SYMLINK
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_TIMES;
    /// What files opened beneath a pre-opened directory may have.
    pub(crate) const PREOPEN_INHERITING: u64 = PREOPEN_BASE
        | FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | POLL_FD_READWRITE;
}

/// `filetype` (a `u8`).
pub(crate) mod filetype {
    pub(crate) const UNKNOWN: u8 = 0;
    pub(crate) const BLOCK_DEVICE: u8 = 1;
    pub(crate) const CHARACTER_DEVICE: u8 = 2;
    pub(crate) const DIRECTORY: u8 = 3;
    pub(crate) const REGULAR_FILE: u8 = 4;
    pub(crate) const SOCKET_DGRAM: u8 = 5;
    pub(crate) const SOCKET_STREAM: u8 = 6;
    pub(crate) const SYMBOLIC_LINK: u8 = 7;
}

/// `fdflags` (a `u16`).
pub(crate) mod fdflags {
    pub(crate) const APPEND: u16 = 1 << 0;
    pub(crate) const DSYNC: u16 = 1 << 1;
    pub(crate) const NONBLOCK: u16 = 1 << 2;
    pub(crate) const RSYNC: u16 = 1 << 3;
    pub(crate) const SYNC: u16 = 1 << 4;
    /// Every flag.
    pub(crate) const ALL: u16 = (1 << 5) - 1;
}

/// `oflags` (a `u16`), for `path_open`.
pub(crate) mod oflags {
    pub(crate) const CREAT: u16 = 1 << 0;
    pub(crate) const DIRECTORY: u16 = 1 << 1;
    pub(crate) const EXCL: u16 = 1 << 2;
    pub(crate) const TRUNC: u16 = 1 << 3;
    /// Every flag.
    pub(crate) const ALL: u16 = (1 << 4) - 1;
}

/// `lookupflags` (a `u32`), for the `path_*` functions.
pub(crate) mod lookupflags {
    pub(crate) const SYMLINK_FOLLOW: u32 = 1 << 0;
}

/// `fstflags` (a `u16`): which timestamps `*_set_times` sets.
pub(crate) mod fstflags {
    pub(crate) const ATIM: u16 = 1 << 0;
    pub(crate) const ATIM_NOW: u16 = 1 << 1;
    pub(crate) const MTIM: u16 = 1 << 2;
    pub(crate) const MTIM_NOW: u16 = 1 << 3;
}

/// `whence` (a `u8`), for `fd_seek`.
pub(crate) mod whence {
    pub(crate) const SET: u8 = 0;
    pub(crate) const CUR: u8 = 1;
    pub(crate) const END: u8 = 2;
}

/// `clockid` (a `u32`).
pub(crate) mod clockid {
    pub(crate) const REALTIME: u32 = 0;
    pub(crate) const MONOTONIC: u32 = 1;
    pub(crate) const PROCESS_CPUTIME: u32 = 2;
    pub(crate) const THREAD_CPUTIME: u32 = 3;
}

/// `advice` (a `u8`), for `fd_advise`: normal, sequential, random,
/// willneed, dontneed, noreuse.
pub(crate) const ADVICE_MAX: u8 = 5;

/// `eventtype` (a `u8`), for `poll_oneoff`.
pub(crate) mod eventtype {
    pub(crate) const CLOCK: u8 = 0;
    pub(crate) const FD_READ: u8 = 1;
    pub(crate) const FD_WRITE: u8 = 2;
}

/// `subclockflags` (a `u16`): the clock subscription's timeout is absolute.
pub(crate) const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;
/// `eventrwflags` (a `u16`): the peer hung up.
pub(crate) const EVENT_FD_READWRITE_HANGUP: u16 = 1;

/// `sdflags` (a `u8`), for `sock_shutdown`.
pub(crate) mod sdflags {
    pub(crate) const RD: u8 = 1 << 0;
    pub(crate) const WR: u8 = 1 << 1;
}

/// `riflags` (a `u16`), for `sock_recv`.
pub(crate) mod riflags {
    pub(crate) const RECV_PEEK: u16 = 1 << 0;
    pub(crate) const RECV_WAITALL: u16 = 1 << 1;
}
/// `roflags` (a `u16`): the message was cut to the buffers.
pub(crate) const RECV_DATA_TRUNCATED: u16 = 1;

/// `fdstat` (24 bytes): an fd's type, flags and rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fdstat {
    pub(crate) filetype: u8,
    pub(crate) flags: u16,
    pub(crate) rights_base: u64,
    pub(crate) rights_inheriting: u64,
}

impl Fdstat {
    pub(crate) const SIZE: u32 = 24;

    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[0] = self.filetype;
        out[2..4].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.rights_base.to_le_bytes());
        out[16..24].copy_from_slice(&self.rights_inheriting.to_le_bytes());
        out
    }
}

/// `filestat` (64 bytes): what `stat` says of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filestat {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) filetype: u8,
    pub(crate) nlink: u64,
    pub(crate) size: u64,
    pub(crate) atim: u64,
    pub(crate) mtim: u64,
    pub(crate) ctim: u64,
}

impl Filestat {
    pub(crate) const SIZE: u32 = 64;

    pub(crate) fn encode(&self) -> [u8; 64] {
        let mut out = [0; 64];
        out[0..8].copy_from_slice(&self.dev.to_le_bytes());
        out[8..16].copy_from_slice(&self.ino.to_le_bytes());
        out[16] = self.filetype;
        out[24..32].copy_from_slice(&self.nlink.to_le_bytes());
        out[32..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..48].copy_from_slice(&self.atim.to_le_bytes());
        out[48..56].copy_from_slice(&self.mtim.to_le_bytes());
        out[56..64].copy_from_slice(&self.ctim.to_le_bytes());
        out
    }
}

/// `dirent` (24 bytes, followed by the name's bytes): one entry of
/// `fd_readdir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dirent {
    /// The cookie of the next entry.
    pub(crate) next: u64,
    pub(crate) ino: u64,
    pub(crate) namlen: u32,
    pub(crate) filetype: u8,
}

impl Dirent {
    pub(crate) const SIZE: u32 = 24;

    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[0..8].copy_from_slice(&self.next.to_le_bytes());
        out[8..16].copy_from_slice(&self.ino.to_le_bytes());
        out[16..20].copy_from_slice(&self.namlen.to_le_bytes());
        out[20] = self.filetype;
        out
    }
}

/// `prestat` (8 bytes): a pre-opened directory and the length of its name.
pub(crate) fn encode_prestat_dir(name_len: u32) -> [u8; 8] {
    let mut out = [0; 8];
    // Tag 0: `preopentype::dir`.
    out[4..8].copy_from_slice(&name_len.to_le_bytes());
    out
}

/// `iovec` / `ciovec` (8 bytes): a buffer in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Iovec {
    pub(crate) buf: u32,
    pub(crate) len: u32,
}

impl Iovec {
    pub(crate) const SIZE: u32 = 8;

    pub(crate) fn decode(bytes: &[u8]) -> Iovec {
        Iovec {
            buf: u32_at(bytes, 0),
            len: u32_at(bytes, 4),
        }
    }
}

/// What a `subscription` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subscribed {
    /// A clock: its id, its timeout (ns), whether absolute.
    Clock {
        id: u32,
        timeout: u64,
        absolute: bool,
    },
    /// An fd becoming readable.
    FdRead(u32),
    /// An fd becoming writable.
    FdWrite(u32),
}

/// `subscription` (48 bytes): one thing `poll_oneoff` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) userdata: u64,
    pub(crate) what: Subscribed,
}

impl Subscription {
    pub(crate) const SIZE: u32 = 48;

    /// `None` for an unknown tag.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Subscription> {
        let userdata = u64_at(bytes, 0);
        let what = match bytes[8] {
            eventtype::CLOCK => Subscribed::Clock {
                id: u32_at(bytes, 16),
                timeout: u64_at(bytes, 24),
                absolute: u16_at(bytes, 40) & SUBSCRIPTION_CLOCK_ABSTIME != 0,
            },
            eventtype::FD_READ => Subscribed::FdRead(u32_at(bytes, 16)),
            eventtype::FD_WRITE => Subscribed::FdWrite(u32_at(bytes, 16)),
            _ => return None,
        };
        Some(Subscription { userdata, what })
    }
}

/// `event` (32 bytes): one thing `poll_oneoff` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) userdata: u64,
    pub(crate) error: Errno,
    pub(crate) kind: u8,
    pub(crate) nbytes: u64,
    pub(crate) flags: u16,
}

impl Event {
    pub(crate) const SIZE: u32 = 32;

    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        out[8..10].copy_from_slice(&(self.error as u16).to_le_bytes());
        out[10] = self.kind;
        out[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        out[24..26].copy_from_slice(&self.flags.to_le_bytes());
        out
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_the_witx() {
        assert_eq!(Errno::Notcapable.code(), 76);
        assert_eq!(Errno::Badf.code(), 8);
        assert_eq!(Errno::Fbig.code(), 22);
        assert_eq!(Errno::Nosys.code(), 52);
        let stat = Fdstat {
            filetype: filetype::REGULAR_FILE,
            flags: fdflags::APPEND,
            rights_base: 7,
            rights_inheriting: 9,
        }
        .encode();
        assert_eq!((stat[0], stat[2], stat[8], stat[16]), (4, 1, 7, 9));
        let mut sub = [0u8; 48];
        sub[0] = 5;
        sub[8] = eventtype::CLOCK;
        sub[16] = 1;
        sub[24] = 100;
        sub[40] = 1;
        assert_eq!(
            Subscription::decode(&sub),
            Some(Subscription {
                userdata: 5,
                what: Subscribed::Clock {
                    id: 1,
                    timeout: 100,
                    absolute: true
                }
            })
        );
        sub[8] = 3;
        assert_eq!(Subscription::decode(&sub), None);
        let event = Event {
            userdata: 1,
            error: Errno::Badf,
            kind: eventtype::FD_WRITE,
            nbytes: 3,
            flags: EVENT_FD_READWRITE_HANGUP,
        }
        .encode();
        assert_eq!((event[8], event[10], event[16], event[24]), (8, 2, 3, 1));
        assert_eq!(encode_prestat_dir(3), [0, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(rights::ALL, (1 << 30) - 1, "the 30 rights, each bit once");
    }
}
