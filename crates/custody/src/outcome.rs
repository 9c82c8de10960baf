//! How a run ends, apart from how it is run: a [`Failure`] (the one line
//! on stderr and the exit status), or what the call gave back
//! ([`Called`]). The lowest module of the CLI: everything else imports it.

use custody_host::{CallError, LoadError, ManifestError, Val};

/// A failure: the one line printed on stderr, and the exit status.
pub(crate) struct Failure {
    pub(crate) status: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            status: 2,
            message: message.into(),
        }
    }
}

/// A load error's exit status: 4 for a denied import, else 2.
fn load_status(error: Option<&LoadError>) -> u8 {
    match error {
        Some(LoadError::Denied { .. } | LoadError::DeniedModule { .. }) => 4,
        _ => 2,
    }
}

impl From<LoadError> for Failure {
    fn from(error: LoadError) -> Self {
        Failure {
            status: load_status(Some(&error)),
            message: error.to_string(),
        }
    }
}

impl From<ManifestError> for Failure {
    fn from(error: ManifestError) -> Self {
        Failure {
            status: load_status(error.load_error()),
            message: error.to_string(),
        }
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        let status = match error {
            CallError::Trap { .. } | CallError::Aborted { .. } | CallError::Escalated { .. } => 3,
            _ => 2,
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}

/// How the call ended, when it did not fail.
pub(crate) enum Called {
    /// The export returned these values.
    Results(Vec<Val>),
    /// The guest exited with this status: a command's `_start` returned
    /// (0), or the guest called WASI's `proc_exit(n)`.
    Exited(i32),
}
