//! A domain that no longer runs, refusing a load, a call, an unload or a
//! ref: one [`NotRunning`] for all of them, with what ended the domain.

use std::sync::Arc;

use super::CallError;
use crate::registry::DomainState;

/// What a domain that is not running refused: it picks the wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A module load.
    Load,
    /// A call.
    Call,
    /// An unload (the domain is already unloading or gone).
    Unload,
    /// A new ref, view or pin: a root.
    Root,
}

/// The domain is unloading or unloaded (or recycled): it refused a load,
/// a call, an unload or a new ref. `source()` is the [`EndCause`], if an
/// escalation ended the domain.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NotRunning {
    /// The domain.
    pub domain: u64,
    /// Its state.
    pub state: DomainState,
    /// Why it ended, if an escalation ended it (the failure, kept through
    /// the recycle or unload), or why this ref no longer reaches it.
    pub cause: Option<Arc<EndCause>>,
    refused: Refused,
}

impl NotRunning {
    pub(crate) fn new(
        domain: u64,
        state: DomainState,
        cause: Option<Arc<EndCause>>,
        refused: Refused,
    ) -> NotRunning {
        NotRunning {
            domain,
            state,
            cause,
            refused,
        }
    }
}

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (domain, state) = (self.domain, self.state);
        match self.refused {
            Refused::Load => write!(f, "domain {domain} is {state:?}")?,
            Refused::Call => write!(f, "domain {domain} is {state:?}: it takes no calls")?,
            Refused::Unload => write!(f, "domain {domain} is already {state:?}")?,
            Refused::Root => write!(f, "domain {domain} is {state:?}: it takes no new refs")?,
        }
        match &self.cause {
            Some(cause) => write!(f, " ({cause})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for NotRunning {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Why a domain ended (or a ref stopped reaching it): what happened, and
/// the failed call an escalation ended it for, as `source()` (a
/// [`CallError`] itself, not its `Arc`).
#[derive(Debug)]
pub struct EndCause {
    description: String,
    failure: Option<Arc<CallError>>,
}

impl std::fmt::Display for EndCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for EndCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure
            .as_deref()
            .map(|failure| failure as &(dyn std::error::Error + 'static))
    }
}

impl EndCause {
    pub(crate) fn new(description: String, failure: Option<Arc<CallError>>) -> EndCause {
        EndCause {
            description,
            failure,
        }
    }

    /// What ended the domain, such as `unloaded: its call to f failed:
    /// unreachable`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The failed call (a [`CallError::Trap`] or [`CallError::Aborted`])
    /// an escalation ended the domain for; `None` for a call that returned
    /// with a critical region open, or an ending that was no call's.
    pub fn failure(&self) -> Option<&CallError> {
        self.failure.as_deref()
    }
}

/// Why a [`DomainRef`](crate::DomainRef) or a
/// [`MemoryView`](crate::MemoryView) could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// The domain is unloading or unloaded: no new roots.
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
    /// The holder of a dependent ref
    /// ([`strong_ref_for`](crate::Domain::strong_ref_for)) is not running:
    /// its unload would never release the ref.
    #[error("domain {holder} is {state:?}: the holder of a dependent ref must be running")]
    HolderNotRunning {
        /// The holder.
        holder: u64,
        /// Its state.
        state: DomainState,
    },
}
