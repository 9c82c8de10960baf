//! The assistants: the kinds of diagnostic, their names and defaults, and
//! the `CUSTODY_DIAGNOSTICS` list syntax that turns them on and off.

use std::fmt;

use serde::Serialize;

/// One assistant: a kind of diagnostic that can be enabled or disabled.
///
/// Non-exhaustive: new kinds arrive with new host features, so match with a
/// wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Assistant {
    /// `release_handle` failed. On by default.
    ReleaseHandleFailed,
    /// A stale or never-issued table id was used. On by default.
    StaleHandleUse,
    /// A handle was released by its last clone's drop, not by `dispose`.
    /// Off by default (it is normal Rust style; turn it on to hunt leaks).
    HandleFinalized,
    /// The last clone dropped with add-refs outstanding: the resource leaks.
    /// On by default.
    OutstandingReferences,
    /// A domain's unload is blocked. On by default.
    UnloadBlocked,
    /// A guest call was aborted. On by default.
    CallAborted,
    /// A domain was recycled. On by default.
    DomainRecycled,
    /// A domain's unload was forced: what was cut short (calls aborted,
    /// timers cancelled, references invalidated, handles deferred). On by
    /// default.
    UnloadForced,
    /// A domain has stayed unloading for longer than its unload timeout
    /// without being forced. On by default.
    DomainLeaked,
    /// A guest's `memory.grow` or `table.grow` went past its domain's memory
    /// cap and returned -1 (the policy's `on_memory_limit = "fail-grow"`):
    /// once per call. On by default.
    MemoryLimitReached,
}

impl Assistant {
    /// Every assistant.
    pub const ALL: [Assistant; 10] = [
        Assistant::ReleaseHandleFailed,
        Assistant::StaleHandleUse,
        Assistant::HandleFinalized,
        Assistant::OutstandingReferences,
        Assistant::UnloadBlocked,
        Assistant::CallAborted,
        Assistant::DomainRecycled,
        Assistant::UnloadForced,
        Assistant::DomainLeaked,
        Assistant::MemoryLimitReached,
    ];

    /// The name used in configuration and reports, e.g. `releaseHandleFailed`.
    pub fn name(self) -> &'static str {
        match self {
            Assistant::ReleaseHandleFailed => "releaseHandleFailed",
            Assistant::StaleHandleUse => "staleHandleUse",
            Assistant::HandleFinalized => "handleFinalized",
            Assistant::OutstandingReferences => "outstandingReferences",
            Assistant::UnloadBlocked => "unloadBlocked",
            Assistant::CallAborted => "callAborted",
            Assistant::DomainRecycled => "domainRecycled",
            Assistant::UnloadForced => "unloadForced",
            Assistant::DomainLeaked => "domainLeaked",
            Assistant::MemoryLimitReached => "memoryLimitReached",
        }
    }

    /// The assistant with this name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Assistant> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether it is on when nothing configures it.
    pub fn enabled_by_default(self) -> bool {
        self != Assistant::HandleFinalized
    }

    /// Its bit in an [`EnabledSet`].
    pub(super) fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// Its index in [`Assistant::ALL`] (and in the counters).
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl Serialize for Assistant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Assistant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of enabled assistants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnabledSet(u32);

impl EnabledSet {
    /// The defaults: everything but `handleFinalized`.
    pub fn defaults() -> Self {
        Self(
            Assistant::ALL
                .into_iter()
                .filter(|a| a.enabled_by_default())
                .fold(0, |bits, a| bits | a.bit()),
        )
    }

    /// Whether `assistant` is in the set.
    pub fn contains(self, assistant: Assistant) -> bool {
        self.0 & assistant.bit() != 0
    }

    /// Applies a `CUSTODY_DIAGNOSTICS`-style list to this set.
    ///
    /// # Errors
    /// The first unknown name; the set is left unchanged.
    pub fn apply(self, spec: &str) -> Result<Self, UnknownAssistant> {
        let all = Assistant::ALL.into_iter().fold(0, |b, a| b | a.bit());
        let mut bits = self.0;
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (enable, name) = match token.strip_prefix('-') {
                Some(name) => (false, name),
                None => (true, token.strip_prefix('+').unwrap_or(token)),
            };
            let mask = match name.to_ascii_lowercase().as_str() {
                "all" => all,
                "none" => {
                    // "-none" would mean "all"; keep it simple and literal.
                    if enable {
                        bits = 0;
                        continue;
                    }
                    all
                }
                _ => Assistant::from_name(name)
                    .ok_or_else(|| UnknownAssistant(name.to_string()))?
                    .bit(),
            };
            if enable {
                bits |= mask;
            } else {
                bits &= !mask;
            }
        }
        Ok(Self(bits))
    }

    /// The set as a bit mask (bit `i` is `Assistant::ALL[i]`).
    pub(super) fn bits(self) -> u32 {
        self.0
    }

    /// The set with this bit mask.
    pub(super) fn from_bits(bits: u32) -> Self {
        Self(bits)
    }
}

/// A name in a diagnostics list that is not an assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAssistant(pub String);

impl fmt::Display for UnknownAssistant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown diagnostic {:?}; known: all, none", self.0)?;
        for assistant in Assistant::ALL {
            write!(f, ", {assistant}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownAssistant {}
