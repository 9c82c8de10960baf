//! How a request's guest call ended, as the request's task learns it: the
//! [`Outcome`], sent by the blocking task the moment the call ended (before
//! its domain unloads: [`CallOutcome`]), and whether it ended soon enough
//! for its whole output to leave as one response ([`short_call`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use custody_host::CallError;
use tokio::sync::oneshot;
use tokio::task::JoinError;

use crate::stdio::PIPE_CAPACITY;

/// How the guest's call ended.
pub(crate) enum Outcome {
    /// Returned, or exited with `status`.
    Exited(i32),
    /// Failed with this error.
    Failed(CallError),
    /// The domain could not be made or loaded.
    NotRun(String),
}

/// How long a WAGI response is held for the call to end, so a short
/// call's output leaves as one response with its length; a plugin running
/// longer (or writing more than half its pipe's room) streams from then
/// on.
pub const FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// A short call's outcome, if `call` ends within [`FLUSH_DELAY`] before its
/// output fills half of `reader`'s pipe: then its whole output is one
/// response with its length. `None`: it runs on, and its output streams.
/// A delay that rang as the guest's side closed (its domain unloading, a
/// moment before the call's task ends) still counts as ended: the output
/// is whole. Both request interfaces answer through this.
pub(crate) async fn short_call<F: Future + Unpin>(
    reader: &custody_wasi::PipeReader,
    call: &mut F,
) -> Option<F::Output> {
    let ended = tokio::select! {
        biased;
        outcome = &mut *call => Some(outcome),
        () = reader.filled(PIPE_CAPACITY / 2) => None,
        () = tokio::time::sleep(FLUSH_DELAY) => None,
    };
    match ended {
        None if reader.guest_closed() => Some(call.await),
        ended => ended,
    }
}

/// The call's outcome as the request's task awaits it: sent by the
/// blocking task before it unloads the domain. A task that ended without
/// sending one (it panicked) is an internal fault.
pub(crate) struct CallOutcome(pub oneshot::Receiver<Outcome>);

impl Future for CallOutcome {
    type Output = Result<Outcome, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|sent| {
            Ok(sent.unwrap_or_else(|_| {
                Outcome::NotRun("the call's task ended without an outcome".into())
            }))
        })
    }
}
