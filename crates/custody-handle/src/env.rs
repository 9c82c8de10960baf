//! The process environment's voice: how a bad `CUSTODY_*` variable is
//! reported.
//!
//! A leaf, shared by [`crate::history`] (`CUSTODY_TRACE_HANDLES`) and
//! [`crate::diagnostics`] (`CUSTODY_DIAGNOSTICS`,
//! `CUSTODY_DIAGNOSTICS_FORMAT`, `CUSTODY_DIAGNOSTICS_RATE`), so that neither imports the other to
//! complain about its configuration.

use std::io::{self, Write as _};

/// Prints a configuration problem once to stderr (never panics).
///
/// This bypasses the diagnostics sinks on purpose: it is printed while the
/// sinks themselves are being configured.
pub(crate) fn config_warning(message: &str) {
    let _ = writeln!(io::stderr(), "custody: configuration: {message}");
}
