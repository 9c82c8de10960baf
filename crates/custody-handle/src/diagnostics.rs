//! Diagnostics: custody's managed debugging assistants.
//!
//! .NET's MDAs (`releaseHandleFailed` and friends) are opt-in, debugger-only
//! and say little. custody's fire in production, name the type, the value and
//! the likely cause, and can be routed anywhere.
//!
//! | assistant | default | fires when |
//! | --- | --- | --- |
//! | `releaseHandleFailed` | on | `release_handle` returned `Err` |
//! | `staleHandleUse` | on | a table id that is closed or was never issued is used |
//! | `handleFinalized` | off | a handle was released by dropping its last clone instead of `dispose` |
//! | `outstandingReferences` | on | the last clone dropped while manual add-refs were outstanding |
//! | `unloadBlocked`, `callAborted`, `domainRecycled` | on | host events |
//! | `unloadForced` | on | host event: a domain's unload was forced; says what was cut short |
//! | `domainLeaked` | on | host event: a domain has stayed unloading past its unload timeout |
//! | `memoryLimitReached` | on | host event: a guest's `memory.grow` or `table.grow` passed its domain's memory cap and returned -1 (once per call) |
//!
//! [`Assistant`] and [`Diagnostic`] are non-exhaustive: new kinds and fields
//! arrive with new host features.
//!
//! # Configuration
//! `CUSTODY_DIAGNOSTICS` is a comma-separated list applied left to right to
//! the defaults: `all`, `none`, `NAME` (enable), `-NAME` (disable). For
//! example `none,releaseHandleFailed` or `all,-staleHandleUse`. The API
//! equivalents are [`configure`], [`set_enabled`] and [`is_enabled`].
//!
//! # Rate limit
//! A guest that triggers a diagnostic in a loop must not flood the host's
//! output or memory, so each assistant delivers at most a burst of
//! diagnostics per window: 100 per second by default. Occurrences past it are
//! *suppressed*: counted ([`count`], [`suppressed`]) but not built or sent.
//! The assistant's first delivery in a later window is preceded by one
//! summary of the same assistant, for example
//! `300 more staleHandleUse diagnostics suppressed (rate limit: 100 per second)`,
//! with `detail` `{"suppressed": 300}`; [`flush_suppressed`] sends the
//! pending summaries at once (call it before exiting). Every suppressed
//! occurrence is reported in exactly one summary.
//!
//! `CUSTODY_DIAGNOSTICS_RATE` sets the limit: `N` (per second) or `off`. The
//! API equivalents are [`set_rate_limit`] (with any [`RateLimit`] window) and
//! [`rate_limit`]. What is retained in-process is bounded separately by
//! [`Collector::bounded`].
//!
//! # Sinks
//! Every enabled diagnostic within the rate limit goes to all of them:
//! - stderr, on by default: a human-readable report per diagnostic, or one
//!   JSON object per line with `CUSTODY_DIAGNOSTICS_FORMAT=json` (or
//!   [`set_format`]). [`set_stderr`] turns it off.
//! - in-process: [`subscribe`] registers a callback that receives every
//!   enabled [`Diagnostic`]; [`Collector`] keeps them for inspection.
//! - `tracing`: an event with target `custody::diagnostics`
//!   ([`TRACING_TARGET`]), level `INFO` for `handleFinalized` and `WARN` for
//!   every other assistant, and the fields `assistant` (its name),
//!   `message`, and, where present, `domain`, `handle_id`, `handle_type`,
//!   `raw_hex`, `errno`, `function` and `reason`. With no `tracing`
//!   subscriber installed it costs a cached check.
//!
//! Every assistant also has a counter, incremented whether or not it is
//! enabled or suppressed: [`count`].
//!
//! In tests, call `capture_for_tests` (with the `testing` feature) first:
//! it routes diagnostics through libtest's output capture, so a passing test
//! prints nothing.
//!
//! # JSON fields
//! One object per diagnostic; absent fields are omitted.
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `assistant` | string | e.g. `"releaseHandleFailed"` |
//! | `message` | string | the one-paragraph human summary |
//! | `thread` | string | the thread it fired on |
//! | `handle_type` | string | the resource type (Rust path) |
//! | `raw_value` | number | the raw value |
//! | `raw_hex` | string | the raw value as `0x%08X` |
//! | `handle_id` | number | a table id |
//! | `errno` | number | the OS error number |
//! | `error` | string | the error text |
//! | `causes` | array of strings | the likely causes, most likely first |
//! | `history` | array of events | the raw value's handle history (see [`crate::history::Event`]) |
//! | `culprit` | string | what the history points at: who released the value first, or where it was copied out |
//! | `outstanding` | number | references that can no longer be released |
//! | `domain` | number | the host domain id |
//! | `function` | string | the guest or host function |
//! | `reason` | string | why a call was aborted or a domain recycled |
//! | `backtrace` | string | a guest or host backtrace |
//! | `detail` | any JSON value | host-defined structured data ([`Diagnostic::with_detail`]) |
//!
//! # Layout
//! - `assistant`: [`Assistant`], [`EnabledSet`] and the list syntax;
//! - `record`: [`Diagnostic`] and its human and JSON forms;
//! - `rate`: [`RateLimit`] and the per-assistant limiter (its packed window
//!   word and transitions);
//! - `sink`: the global configuration, counters, subscribers, the
//!   `tracing` events and [`fire`];
//! - `handle_events`: the diagnostics this crate fires about handles.
//!
//! This module imports only the leaves below it (ids, the release contract,
//! the history and the environment), never the handles or the table, which
//! call into it.

mod assistant;
mod handle_events;
mod rate;
mod record;
mod sink;

pub use assistant::{Assistant, EnabledSet, UnknownAssistant};
pub use handle_events::RELEASE_FAILED_CAUSES;
pub(crate) use handle_events::{
    handle_finalized, release_handle_failed, stale_handle_use, unbalanced_references,
};
pub use rate::RateLimit;
pub use record::{Diagnostic, escape_control};
#[cfg(any(test, feature = "testing"))]
pub use sink::capture_for_tests;
pub use sink::{
    Collector, Format, Subscription, TRACING_TARGET, configure, count, enabled_set, fire,
    flush_suppressed, is_enabled, rate_limit, set_enabled, set_format, set_rate_limit, set_stderr,
    subscribe, suppressed,
};

#[cfg(all(test, not(loom)))]
mod rate_tests;
#[cfg(all(test, not(loom)))]
pub(crate) mod tests;
