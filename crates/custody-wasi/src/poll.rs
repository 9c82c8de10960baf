//! `poll_oneoff`: waiting for clocks, and for fds to become readable or
//! writable, through the domain's one cancellable, deadline-bounded wait.
//!
//! The subscriptions are read once (never re-read mid-call). The wait is
//! the earliest clock's timeout, refused (`ENOTCAPABLE`) past the policy's
//! `max_wait`, as the custody ABI's `poll` refuses it; with no clock it has
//! no end, which only a policy with `allow_infinite_wait` grants. An abort,
//! an unload or the call's deadline ends it at once. As wasmtime's: no
//! subscription is `EINVAL`, an fd that does not resolve fails the call
//! with `EBADF`, and a ready fd's event says 1 byte (with `HANGUP` at the
//! end of a file or a pipe whose writer went away).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use crate::clock::{clock, nanos};
use crate::errno::{Fail, WasiResult, from_abi};
use crate::fds::Target;
use crate::state::wasi_ref;
use crate::stdio::Stream;
use crate::sys::{self, FileType};
use crate::types::{
    EVENT_FD_READWRITE_HANGUP, Errno, Event, Subscribed, Subscription, clockid, eventtype,
};
use custody_host::extension::AbiError;
use custody_host::extension::DomainCtx;
use custody_host::extension::{HostCall, pointer};
use custody_host::extension::{Waited, WakeFd};

/// Most subscriptions one call takes.
pub(crate) const MAX_SUBSCRIPTIONS: u32 = 1024;

/// A subscription with its fd resolved (the handle pinned).
enum Resolved<'t> {
    Clock {
        id: u32,
        timeout: u64,
        absolute: bool,
    },
    Fd(Target<'t>, PollFlags),
}

/// How one subscription is waited for.
enum Watch<'t> {
    /// A clock that rings after this long.
    Clock(Duration),
    /// Ready now, whatever the wait (a null or captured stdio stream).
    Now,
    /// An OS fd, for this interest. `file` says whether it is a regular
    /// file (its read end is at the end of the file when nothing is left).
    Fd {
        fd: Watched<'t>,
        interest: PollFlags,
        file: bool,
    },
}

/// The fd a watch waits on: a pinned handle's, or a stdio stream's (held
/// by the watch, so the wait borrows the call and not the store's data).
enum Watched<'t> {
    Handle(BorrowedFd<'t>),
    Stdio(Arc<OwnedFd>),
    /// An in-process pipe's bell, armed: rung when it is ready.
    Pipe(Arc<WakeFd>),
}

impl Watched<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Watched::Handle(fd) => *fd,
            Watched::Stdio(fd) => fd.as_fd(),
            Watched::Pipe(bell) => bell.as_fd(),
        }
    }
}

pub(super) fn poll_oneoff(
    call: &mut HostCall<'_, '_>,
    subscriptions: i32,
    events: i32,
    nsubscriptions: i32,
    nevents: i32,
) -> WasiResult {
    let table = call.table();
    let count = nsubscriptions as u32;
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Err(Errno::Inval.into());
    }
    let (memory, ctx) = call.split();
    let snapshot = memory.read(pointer(subscriptions), count * Subscription::SIZE)?;
    memory.range(pointer(events), count * Event::SIZE)?;
    let nevents = memory.out_slot(pointer(nevents))?;
    let subs = snapshot
        .chunks_exact(Subscription::SIZE as usize)
        .map(|bytes| Subscription::decode(bytes).ok_or(Errno::Inval))
        .collect::<Result<Vec<_>, _>>()?;
    // Each fd resolved, and pinned until the events are written: what the
    // guest named stays open.
    let fd_watched = |fd: u32, interest| -> Result<Resolved<'_>, Fail> {
        Ok(Resolved::Fd(
            wasi_ref(ctx)?.fds.resolve(table, fd as i32)?,
            interest,
        ))
    };
    let mut resolved = Vec::with_capacity(subs.len());
    for sub in &subs {
        resolved.push(match sub.what {
            Subscribed::Clock {
                id,
                timeout,
                absolute,
            } => Resolved::Clock {
                id,
                timeout,
                absolute,
            },
            Subscribed::FdRead(fd) => fd_watched(fd, PollFlags::IN)?,
            Subscribed::FdWrite(fd) => fd_watched(fd, PollFlags::OUT)?,
        });
    }
    let started = Instant::now();
    let mut watches = Vec::with_capacity(subs.len());
    for what in &resolved {
        watches.push(match what {
            Resolved::Clock {
                id,
                timeout,
                absolute,
            } => Watch::Clock(clock_wait(*id, *timeout, *absolute)?),
            Resolved::Fd(target, interest) => watch(ctx, target, *interest)?,
        });
    }
    let fds: Vec<(BorrowedFd<'_>, PollFlags)> = watches
        .iter()
        .filter_map(|w| match w {
            Watch::Fd { fd, interest, .. } => Some((fd.as_fd(), *interest)),
            _ => None,
        })
        .collect();
    let now_ready = watches.iter().any(|w| matches!(w, Watch::Now));
    let earliest = watches
        .iter()
        .filter_map(|w| match w {
            Watch::Clock(after) => Some(*after),
            _ => None,
        })
        .min();
    let wait = if now_ready {
        Duration::ZERO
    } else {
        ctx.policy()
            .wait_up_to(earliest)
            .ok_or_else(|| from_abi(AbiError::Denied, 0))?
    };
    let ready = match call.wait(&fds, wait) {
        Ok(Waited::Ready(_)) => sys::ready_now(&fds)?,
        Ok(_) => vec![PollFlags::empty(); fds.len()],
        Err(error) => return Err(crate::fail(call, error)),
    };
    let elapsed = started.elapsed();
    let mut found = Vec::new();
    let mut next_fd = 0;
    for (sub, watch) in subs.iter().zip(&watches) {
        let kind = match sub.what {
            Subscribed::Clock { .. } => eventtype::CLOCK,
            Subscribed::FdRead(_) => eventtype::FD_READ,
            Subscribed::FdWrite(_) => eventtype::FD_WRITE,
        };
        let event = |nbytes, flags| Event {
            userdata: sub.userdata,
            error: Errno::Success,
            kind,
            nbytes,
            flags,
        };
        match watch {
            Watch::Clock(after) if *after <= elapsed => found.push(event(0, 0)),
            Watch::Clock(_) => {}
            Watch::Now => found.push(event(1, 0)),
            Watch::Fd { fd, interest, file } => {
                let revents = ready[next_fd];
                next_fd += 1;
                if revents.is_empty() {
                    continue;
                }
                let at_end = *interest == PollFlags::IN && *file && at_end_of_file(fd.as_fd());
                let hangup = revents.contains(PollFlags::HUP) || at_end;
                found.push(event(1, if hangup { EVENT_FD_READWRITE_HANGUP } else { 0 }));
            }
        }
    }
    drop(fds);
    drop(watches);
    drop(resolved);
    let (mut memory, _) = call.split();
    for (i, event) in found.iter().enumerate() {
        memory.write(pointer(events) + i as u32 * Event::SIZE, &event.encode())?;
    }
    memory.put_i32(nevents, found.len() as i32);
    Ok(())
}

/// How long from now a clock subscription rings. An absolute time is on
/// its clock (realtime or monotonic); the CPU-time clocks cannot be waited
/// on (`EINVAL`, as wasmtime says).
fn clock_wait(id: u32, timeout: u64, absolute: bool) -> Result<Duration, Fail> {
    let os = clock(id as i32)?;
    if !matches!(id, clockid::REALTIME | clockid::MONOTONIC) {
        return Err(Errno::Inval.into());
    }
    let nanos_left = if absolute {
        timeout.saturating_sub(nanos(sys::clock_now(os)))
    } else {
        timeout
    };
    Ok(Duration::from_nanos(nanos_left))
}

/// How to wait for `target` to be ready for `interest`.
fn watch<'t>(
    ctx: &DomainCtx,
    target: &'t Target<'_>,
    interest: PollFlags,
) -> Result<Watch<'t>, Fail> {
    let state = wasi_ref(ctx)?;
    let stream = |which: usize| -> Result<Watch<'t>, Fail> {
        Ok(match &state.stdio[which] {
            Stream::Os { fd, .. } => Watch::Fd {
                fd: Watched::Stdio(Arc::clone(fd)),
                interest,
                file: false,
            },
            Stream::Pipe(side) => match side.ready(which != 0)? {
                // The bell is readable once the pipe is ready either way.
                Some(bell) => Watch::Fd {
                    fd: Watched::Pipe(bell),
                    interest: PollFlags::IN,
                    file: false,
                },
                None => Watch::Now,
            },
            _ => Watch::Now,
        })
    };
    Ok(match (target, interest == PollFlags::IN) {
        (Target::Stdio(0), true) => stream(0)?,
        (Target::Stdio(i @ (1 | 2)), false) => stream(*i)?,
        (Target::Stdio(_) | Target::Preopen(_), _) => return Err(Errno::Badf.into()),
        (Target::Handle(file), _) => {
            let fd = file.as_fd();
            let kind = FileType::from_raw_mode(sys::stat(fd)?.st_mode);
            if kind == FileType::Directory {
                return Err(Errno::Badf.into());
            }
            Watch::Fd {
                fd: Watched::Handle(fd),
                interest,
                file: kind == FileType::RegularFile,
            }
        }
    })
}

/// Whether a regular file's offset is at (or past) its end.
fn at_end_of_file(fd: BorrowedFd<'_>) -> bool {
    let size = sys::stat(fd).map(|s| s.st_size as u64);
    let offset = sys::seek(fd, sys::SeekFrom::Current(0));
    matches!((size, offset), (Ok(size), Ok(offset)) if offset >= size)
}
