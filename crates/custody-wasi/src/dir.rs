//! `fd_readdir`: a directory's entries, with cookies stable across calls.
//!
//! As in wasmtime-wasi, a cookie is an index: 0 is `.`, 1 is `..`, and the
//! directory's other entries follow in the kernel's order. Each call reads
//! the directory afresh from its start (a new open of `.` beneath the fd,
//! so an `O_PATH` pre-open can be read and no position is shared) and
//! skips the entries before the cookie: no state is kept between calls,
//! nothing in host memory grows with the directory (entries are written to
//! the guest's buffer one by one), and the cookies stay valid as long as
//! the directory does not change (as with wasmtime, which also lists the
//! directory afresh on each call).

use std::os::fd::BorrowedFd;

use crate::errno::{Fail, WasiResult};
use crate::fd_io::write_size;
use crate::fd_meta::{filetype_of, wasi_filetype};
use crate::path::dir_fd;
use crate::state::wasi;
use crate::sys::{self, FileType};
use crate::types::{Dirent, Errno, filetype};
use custody_host::extension::GuestMemory;
use custody_host::extension::{HostCall, pointer};

/// The WASI file type of a directory entry: its `d_type`, or its `lstat`'s
/// when the file system does not say.
fn entry_type(dir: BorrowedFd<'_>, name: &str, kind: FileType) -> u8 {
    match kind {
        FileType::Unknown => match sys::stat_entry(dir, name) {
            Ok(stat) => filetype_of(&stat),
            // Gone since it was listed: still listed, of no known type.
            Err(_) => filetype::UNKNOWN,
        },
        kind => wasi_filetype(kind),
    }
}

/// Where the next entry goes in the guest's buffer, and how much is left.
struct Out<'m, 'g> {
    memory: &'m mut GuestMemory<'g>,
    at: u32,
    left: u32,
}

impl Out<'_, '_> {
    /// Writes one entry (header, then name), cut at the buffer's end as
    /// WASI says (a full buffer tells the guest to call again). Returns
    /// whether there is room left.
    fn entry(&mut self, dirent: Dirent, name: &[u8]) -> Result<bool, Fail> {
        let header = dirent.encode();
        for part in [&header[..Dirent::SIZE as usize], name] {
            let take = (part.len() as u32).min(self.left);
            self.memory.write(self.at, &part[..take as usize])?;
            self.at += take;
            self.left -= take;
            if self.left == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

pub(super) fn fd_readdir(
    call: &mut HostCall<'_, '_>,
    fd: i32,
    buf: i32,
    buf_len: i32,
    cookie: i64,
    used: i32,
) -> WasiResult {
    let table = call.table();
    let target = wasi(call.ctx())?.fds.resolve(table, fd)?;
    let (mut memory, ctx) = call.split();
    let dir = dir_fd(ctx, &target)?;
    let buf_len = buf_len as u32;
    memory.range(pointer(buf), buf_len)?;
    let used = memory.out_slot(pointer(used))?;
    let cookie = cookie as u64;
    let mut reader = sys::read_dir(dir)?;
    let own = sys::stat(dir)?.st_ino;
    let mut out = Out {
        memory: &mut memory,
        at: pointer(buf),
        left: buf_len,
    };
    let dirent = |index: u64, ino: u64, name: &[u8], kind: u8| Dirent {
        next: index + 1,
        ino,
        namlen: name.len() as u32,
        filetype: kind,
    };
    let mut room = buf_len > 0;
    // `.` and `..` first, as wasmtime lists them (with the directory's own
    // inode for both: the parent's may be outside what the guest can see).
    for (index, name) in [(0, &b"."[..]), (1, &b".."[..])] {
        if room && index >= cookie {
            room = out.entry(dirent(index, own, name, filetype::DIRECTORY), name)?;
        }
    }
    let mut index = 2;
    while room {
        let Some(entry) = reader.read() else { break };
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if index >= cookie {
            let text = std::str::from_utf8(name).map_err(|_| Errno::Ilseq)?;
            let kind = entry_type(dir, text, entry.file_type());
            room = out.entry(dirent(index, entry.ino(), name, kind), name)?;
        }
        index += 1;
    }
    let written = buf_len - out.left;
    write_size(&mut memory, used, written as usize);
    Ok(())
}
