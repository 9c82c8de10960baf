//! A domain's stdin, stdout and stderr (WASI fds 0, 1 and 2): where each
//! goes ([`Stdio`], the embedder's choice), and the stream a domain holds
//! for it ([`Stream`]). A capture buffer ([`Capture`]) is shared with the
//! domain, so the embedder can drain it during or after a call; it is
//! bounded by the policy's `stdio_capture_limit`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::sys::{self, FileType};
use crate::types::Errno;
use custody_host::pipe::{self, GuestSide, PipeReader, PipeWriter};

/// Where a domain's stdin, stdout or stderr goes (WASI fds 0, 1 and 2).
#[derive(Debug)]
pub enum Stdio {
    /// Nothing: reading sees the end of the file at once, writes are
    /// discarded (counted as written). The default for stdin.
    Null,
    /// The host process's own stream (the domain holds a duplicate of its
    /// fd 0, 1 or 2 from its creation to its end).
    Inherit,
    /// A host file, pipe or socket, owned by the domain from its creation
    /// to its end.
    File(File),
    /// A buffer the embedder drains with
    /// [`Domain::take_stdout`](crate::WasiDomain::take_stdout) and
    /// [`take_stderr`](crate::WasiDomain::take_stderr), bounded by the
    /// policy's `stdio_capture_limit` (writes past it fail with `EFBIG`).
    /// The default for stdout and stderr. As stdin it reads as
    /// [`Stdio::Null`].
    Capture,
    /// An in-process pipe to or from the embedder
    /// ([`Stdio::pipe_in`], [`Stdio::pipe_out`]):
    /// bounded, streaming, no OS fd. Every domain made from one
    /// configuration shares it.
    Pipe(GuestSide),
}

impl Stdio {
    /// An in-process pipe into a domain's stdin, and the embedder's
    /// writing end (dropping it is the end of the guest's stdin). At most
    /// `capacity` bytes wait in it ([`PIPE_CAPACITY`](crate::PIPE_CAPACITY) is a Linux pipe's).
    pub fn pipe_in(capacity: usize) -> (Stdio, PipeWriter) {
        let (side, writer) = pipe::into_guest(capacity);
        (Stdio::Pipe(side), writer)
    }

    /// An in-process pipe out of a domain's stdout or stderr, and the
    /// embedder's reading end (which reads the end once every domain given
    /// it ended).
    pub fn pipe_out(capacity: usize) -> (Stdio, PipeReader) {
        let (side, reader) = pipe::out_of_guest(capacity);
        (Stdio::Pipe(side), reader)
    }
}

/// A [`Stdio`] as a domain's configuration keeps it: cloneable (a file is
/// shared, and duplicated for each domain created from the configuration).
#[derive(Clone, Debug)]
pub(crate) enum StdioSpec {
    Null,
    Inherit,
    File(Arc<File>),
    Capture,
    Pipe(Arc<GuestSide>),
}

impl From<Stdio> for StdioSpec {
    fn from(stdio: Stdio) -> Self {
        match stdio {
            Stdio::Null => StdioSpec::Null,
            Stdio::Inherit => StdioSpec::Inherit,
            Stdio::File(file) => StdioSpec::File(Arc::new(file)),
            Stdio::Capture => StdioSpec::Capture,
            Stdio::Pipe(side) => StdioSpec::Pipe(Arc::new(side)),
        }
    }
}

/// The names of the three streams, for messages.
pub(crate) const NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];

/// One of a domain's stdio streams, as it holds it. Cloned (cheaply) out
/// of the store's data by a host call that waits on it: the wait borrows
/// the call, not the store's data.
#[derive(Clone, Debug)]
pub(crate) enum Stream {
    Null,
    /// The domain's own duplicate of a host fd (inherited or a file).
    /// `polled`: it may block (a pipe, socket or FIFO, not a regular file
    /// or a device), so it is written only once `poll` says it can be.
    Os {
        fd: Arc<OwnedFd>,
        polled: bool,
    },
    Capture(Arc<Capture>),
    /// An in-process pipe's guest side.
    Pipe(Arc<GuestSide>),
}

impl Stream {
    /// The stream for stdio fd `which` (0, 1 or 2) as `spec` says.
    pub(crate) fn open(spec: &StdioSpec, which: usize, limit: usize) -> io::Result<Stream> {
        Ok(match spec {
            StdioSpec::Null => Stream::Null,
            StdioSpec::Capture if which == 0 => Stream::Null,
            StdioSpec::Capture => Stream::Capture(Arc::new(Capture::new(NAMES[which], limit))),
            StdioSpec::Pipe(side) if side.goes_into_guest() != (which == 0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a pipe {} the guest cannot be its {}",
                        if side.goes_into_guest() {
                            "into"
                        } else {
                            "out of"
                        },
                        NAMES[which]
                    ),
                ));
            }
            StdioSpec::Pipe(side) => Stream::Pipe(Arc::new(side.open())),
            StdioSpec::File(file) => Stream::os(file.as_fd().try_clone_to_owned()?),
            StdioSpec::Inherit => Stream::os(match which {
                0 => io::stdin().as_fd().try_clone_to_owned()?,
                1 => io::stdout().as_fd().try_clone_to_owned()?,
                _ => io::stderr().as_fd().try_clone_to_owned()?,
            }),
        })
    }

    fn os(fd: OwnedFd) -> Stream {
        let polled = match sys::stat(fd.as_fd()) {
            Ok(stat) => !matches!(
                FileType::from_raw_mode(stat.st_mode),
                FileType::RegularFile | FileType::CharacterDevice | FileType::BlockDevice
            ),
            Err(_) => true,
        };
        Stream::Os {
            fd: Arc::new(fd),
            polled,
        }
    }

    /// The capture buffer, if this stream is one.
    pub(crate) fn capture(&self) -> Option<Arc<Capture>> {
        match self {
            Stream::Capture(capture) => Some(Arc::clone(capture)),
            _ => None,
        }
    }

    /// The guest's side, if this is an in-process pipe: weak, so the
    /// embedder's copy never keeps it open.
    pub(crate) fn pipe(&self) -> Option<Weak<GuestSide>> {
        match self {
            Stream::Pipe(side) => Some(Arc::downgrade(side)),
            _ => None,
        }
    }
}

/// A bounded capture buffer.
#[derive(Debug)]
pub(crate) struct Capture {
    name: &'static str,
    bytes: Mutex<Vec<u8>>,
    limit: usize,
    /// Whether the guest was told once that the buffer is full.
    reported: AtomicBool,
}

impl Capture {
    pub(crate) fn new(name: &'static str, limit: usize) -> Capture {
        Capture {
            name,
            bytes: Mutex::new(Vec::new()),
            limit,
            reported: AtomicBool::new(false),
        }
    }

    /// Appends as much of `data` as the limit leaves room for; how much.
    /// A full buffer is `EFBIG` (and said once, as a `tracing` warning for
    /// `domain`).
    pub(crate) fn push(&self, domain: u64, data: &[u8]) -> Result<usize, Errno> {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.limit.saturating_sub(bytes.len());
        if room == 0 && !data.is_empty() {
            if !self.reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "custody::wasi",
                    domain,
                    stream = self.name,
                    limit = self.limit,
                    "the {} capture buffer of domain {domain} is full ({} bytes, the policy's stdio_capture_limit): further writes fail with EFBIG until the embedder drains it",
                    self.name,
                    self.limit
                );
            }
            return Err(Errno::Fbig);
        }
        let n = room.min(data.len());
        bytes.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Everything captured so far; the buffer is empty again.
    pub(crate) fn take(&self) -> Vec<u8> {
        let taken = std::mem::take(&mut *self.bytes.lock().unwrap_or_else(PoisonError::into_inner));
        self.reported.store(false, Ordering::Relaxed);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_is_bounded_and_drained() {
        let capture = Capture::new("stdout", 5);
        assert_eq!(capture.push(1, b"abc"), Ok(3));
        assert_eq!(
            capture.push(1, b"defg"),
            Ok(2),
            "a short write up to the limit"
        );
        assert_eq!(capture.push(1, b"h"), Err(Errno::Fbig));
        assert_eq!(capture.push(1, b""), Ok(0));
        assert_eq!(capture.take(), b"abcde");
        assert_eq!(capture.push(1, b"h"), Ok(1));
    }
}
