//! Waiting: `poll` over a by-reference handle array, and `sleep`. Both wait
//! through the domain's one cancellable, deadline-bounded wait.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::MAX_POLL;
use super::io::{Stream, pin_stream};
use crate::boundary::cancel::{Waited, WakeFd};
use crate::boundary::errno::AbiError;
use crate::boundary::marshal::{AbiResult, HostCall, pointer};

/// The by-reference array is read once (never re-read mid-call: no
/// time-of-check/time-of-use), every element pinned, and on return compared
/// with what was read: a changed element fails the call with `E_NOTSUP`,
/// because the ready index would name a different handle.
///
/// An element may be an fd's handle or the guest's side of an in-process
/// pipe ([`pin_stream`]): a pipe end is waited on through its bell, and a
/// rung bell is checked again (it also rings for changes that do not make
/// the end readable), with the time left.
pub(super) fn poll(
    call: &mut HostCall<'_, '_>,
    handles: i32,
    count: i32,
    timeout_ms: i32,
    out: i32,
) -> AbiResult {
    let table = call.table;
    if !(1..=MAX_POLL).contains(&count) || timeout_ms < -1 {
        return Err(AbiError::Inval);
    }
    let (memory, ctx) = call.split();
    let timeout = ctx.policy.wait_for(timeout_ms).ok_or(AbiError::Denied)?;
    let snapshot = memory.read(pointer(handles), count as u32 * 4)?;
    let out = memory.out_slot(pointer(out))?;
    let pinned = snapshot
        .chunks_exact(4)
        .map(|raw| pin_stream(table, i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = wait_readable(call, &pinned, timeout);
    // Every element was pinned until here.
    drop(pinned);
    let outcome = outcome?;
    let (mut memory, _) = call.split();
    if memory.read(pointer(handles), count as u32 * 4)? != snapshot {
        return Err(AbiError::NotSup);
    }
    match outcome {
        Waited::Ready(index) => {
            memory.put_i32(out, index as i32);
            Ok(0)
        }
        _ => Err(AbiError::TimedOut),
    }
}

/// Waits until one of `streams` is readable, at most `timeout`: the index
/// of the first readable one.
fn wait_readable(
    call: &mut HostCall<'_, '_>,
    streams: &[Stream<'_>],
    timeout: Duration,
) -> Result<Waited, AbiError> {
    let deadline = crate::deadline::after(timeout);
    loop {
        // What to wait on for each element, up to a pipe end readable now
        // (then a look without waiting finds an fd before it that is
        // readable too): an fd, or a pipe end's bell, armed.
        let mut watches = Vec::with_capacity(streams.len());
        let mut pipe_ready = None;
        for (index, stream) in streams.iter().enumerate() {
            watches.push(match stream {
                Stream::Fd(fd) => Watch::Fd(fd.as_fd()),
                Stream::Pipe(side) => match side.ready(false) {
                    Ok(Some(bell)) => Watch::Bell(bell),
                    Ok(None) => {
                        pipe_ready = Some(index);
                        break;
                    }
                    Err(error) => return Err(call.split().1.io_error(&error)),
                },
            });
        }
        let fds: Vec<_> = watches
            .iter()
            .map(|watch| match watch {
                Watch::Fd(fd) => (*fd, PollFlags::IN),
                Watch::Bell(bell) => (bell.as_fd(), PollFlags::IN),
            })
            .collect();
        let left = match pipe_ready {
            Some(_) => Duration::ZERO,
            None => deadline.saturating_duration_since(Instant::now()),
        };
        match (call.wait(&fds, left)?, pipe_ready) {
            (Waited::Ready(index), _) if matches!(streams[index], Stream::Fd(_)) => {
                return Ok(Waited::Ready(index));
            }
            // A rung bell: look again (the pipe end may be readable now).
            (Waited::Ready(_), _) => {}
            (_, Some(index)) => return Ok(Waited::Ready(index)),
            (outcome, None) => return Ok(outcome),
        }
    }
}

pub(super) fn sleep(call: &mut HostCall<'_, '_>, ms: i32) -> AbiResult {
    if ms < 0 {
        return Err(AbiError::Inval);
    }
    let duration = call.split().1.policy.wait_for(ms).ok_or(AbiError::Denied)?;
    call.wait(&[], duration).map(|_| 0)
}

/// What `poll` waits on for one element.
enum Watch<'a> {
    Fd(BorrowedFd<'a>),
    Bell(Arc<WakeFd>),
}
