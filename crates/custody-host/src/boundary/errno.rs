//! The guest's error codes (`E_*`, SPEC B1) and the one mapping from
//! custody's errors to them. Above `memory` alone (its `Fault` is
//! `E_FAULT`): every host function returns these.

use custody_handle::HandleError;

use super::memory::Fault;

/// An ABI error code: what a host function returns to the guest on failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum AbiError {
    /// The handle id is 0.
    Null = -1,
    /// The id was never issued to this domain or was closed by the guest.
    Stale = -2,
    /// The handle was closed by its owner (the host).
    Closed = -3,
    /// A live handle of a kind this function does not accept.
    Kind = -4,
    /// A pointer or length outside the guest's memory.
    Fault = -5,
    /// The domain's handle quota is used up.
    Quota = -6,
    /// A wait ended with nothing ready.
    TimedOut = -7,
    /// Refused by policy or by the pre-open sandbox.
    Denied = -8,
    /// A by-reference handle array changed during the call.
    NotSup = -9,
    /// An OS error; `last_error` returns its errno.
    Io = -10,
    /// Bad flags, a negative length, a count out of range.
    Inval = -11,
    /// The call is being aborted (deadline, unload).
    Aborted = -12,
}

impl AbiError {
    /// Every code, in numeric order (-1 first).
    pub const ALL: [AbiError; 12] = [
        AbiError::Null,
        AbiError::Stale,
        AbiError::Closed,
        AbiError::Kind,
        AbiError::Fault,
        AbiError::Quota,
        AbiError::TimedOut,
        AbiError::Denied,
        AbiError::NotSup,
        AbiError::Io,
        AbiError::Inval,
        AbiError::Aborted,
    ];

    /// The code as the guest sees it.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The error for a code, if it is one.
    pub fn from_code(code: i32) -> Option<AbiError> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }

    /// The C name, e.g. `E_STALE`.
    pub fn name(self) -> &'static str {
        match self {
            AbiError::Null => "E_NULL",
            AbiError::Stale => "E_STALE",
            AbiError::Closed => "E_CLOSED",
            AbiError::Kind => "E_KIND",
            AbiError::Fault => "E_FAULT",
            AbiError::Quota => "E_QUOTA",
            AbiError::TimedOut => "E_TIMEDOUT",
            AbiError::Denied => "E_DENIED",
            AbiError::NotSup => "E_NOTSUP",
            AbiError::Io => "E_IO",
            AbiError::Inval => "E_INVAL",
            AbiError::Aborted => "E_ABORTED",
        }
    }
}

impl std::fmt::Display for AbiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

impl From<Fault> for AbiError {
    fn from(_: Fault) -> Self {
        AbiError::Fault
    }
}

impl From<HandleError> for AbiError {
    /// What a handle-resolution failure is to the guest.
    fn from(error: HandleError) -> Self {
        match error {
            HandleError::Null => AbiError::Null,
            HandleError::Stale(_) => AbiError::Stale,
            HandleError::Closed => AbiError::Closed,
            HandleError::WrongKind { .. } => AbiError::Kind,
            HandleError::QuotaExceeded { .. } | HandleError::RefCountOverflow => AbiError::Quota,
            _ => AbiError::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_named() {
        for (i, e) in AbiError::ALL.into_iter().enumerate() {
            assert_eq!(e.code(), -(i as i32) - 1);
            assert_eq!(AbiError::from_code(e.code()), Some(e));
        }
        assert_eq!(AbiError::Denied.to_string(), "-8 (E_DENIED)");
    }
}
