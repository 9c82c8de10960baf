//! The errors of loading modules, calling exports and unloading domains.

use std::io;
use std::path::PathBuf;

use crate::config::{Action, Category};
use crate::domain::state::DomainState;

/// Why a module could not be compiled or loaded into a domain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The module file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The bytes are not a valid WebAssembly module (or WAT text).
    #[error("malformed module: {0}")]
    Malformed(String),
    /// The module is valid but does not fit the host's limits (its initial
    /// memory is past the policy's `memory_limit`, or it needs something
    /// the allocation strategy cannot give, such as a shared memory under
    /// the pooling allocator).
    #[error("the module does not fit the host's limits: {0}")]
    Limits(String),
    /// An import resolves nowhere. `tried` says what every place it was
    /// looked for answered, in the order of resolution: a module loaded in
    /// the domain under that name, the domain's resolver, the host's
    /// libraries, the host's functions. (When the domain has a module of
    /// that name, `tried` says it lacks the export.)
    #[error("unresolved import {module}::{name}: {}", tried.join(", "))]
    #[non_exhaustive]
    UnresolvedImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// Each place looked in and its answer, such as `not a module in
        /// this domain` or `no host library named "png"`.
        tried: Vec<String>,
    },
    /// Loading a module on demand (from the domain's resolver or a host
    /// library) would load a module that is still being loaded: the modules
    /// import each other in a cycle.
    #[error("import cycle: {}", cycle.join(" -> "))]
    ImportCycle {
        /// The modules, from the first to the one importing it again.
        cycle: Vec<String>,
    },
    /// An import names a function that a host module (such as `custody`)
    /// does not have: a typo, or a guest built for another ABI version.
    #[error(
        "unknown host function {module}::{name}: the {module} module has no function of that name"
    )]
    UnknownHostFunction {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// An import is a host function whose category the policy denies.
    #[error(
        "import {module}::{name} is denied by the host's policy: it carries the {category} category"
    )]
    Denied {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// The denied category.
        category: Category,
    },
    /// An import of the WASI module (`wasi_snapshot_preview1`) while the
    /// policy's `wasi` is off.
    #[error("import {module}::{name} is denied by the host's policy: WASI is off (wasi = false)")]
    DeniedModule {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// Instantiation failed (a type mismatch between import and export, a
    /// trap in the start function, ...).
    #[error("instantiating {module} failed: {message}")]
    Instantiate {
        /// The module's name in the domain.
        module: String,
        /// What wasmtime said.
        message: String,
    },
    /// A module of that name is already loaded in this domain.
    #[error("a module named {0:?} is already loaded in this domain")]
    Duplicate(String),
    /// The domain is unloading or unloaded.
    #[error("domain {domain} is {state:?}{}", ended_by(cause))]
    NotRunning {
        /// The domain.
        domain: u64,
        /// Its state.
        state: DomainState,
        /// The failure an escalation ended it for, if one did.
        cause: Option<String>,
    },
}

/// Why a call into a domain failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No loaded module exports a function of that name.
    #[error("no function named {0:?} is exported by this domain")]
    NoSuchExport(String),
    /// The arguments do not match the function's parameters.
    #[error("{export} takes {expected}, got {got}")]
    Signature {
        /// The export.
        export: String,
        /// Its parameter types.
        expected: String,
        /// What was passed.
        got: String,
    },
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow,
    /// ...). The call is over; the domain's handles are untouched.
    #[error("{export} trapped: {message}")]
    Trap {
        /// The export.
        export: String,
        /// The trap.
        message: String,
        /// The guest's stack at the trap.
        backtrace: String,
    },
    /// The call was aborted by the host (deadline, unload).
    #[error("{export} was aborted: {reason}")]
    Aborted {
        /// The export.
        export: String,
        /// Why.
        reason: String,
        /// The guest's stack when it was stopped.
        backtrace: String,
    },
    /// The call failed where the policy escalates: the domain was recycled
    /// (every handle released; re-created from its modules if the policy
    /// says so) or unloaded. `reason` says what failed, and whether a
    /// critical region was open.
    #[error("{export} failed ({reason}); escalated to {}: the domain was {outcome}; {released} handle(s) released", action.name())]
    Escalated {
        /// The export.
        export: String,
        /// What failed.
        reason: String,
        /// The guest's stack at the failure.
        backtrace: String,
        /// What the domain went through.
        action: Action,
        /// What became of it: re-created, or why not (the error of the
        /// re-creation), or unloaded.
        outcome: String,
        /// Handles released by the escalation.
        released: usize,
    },
    /// The calling thread's stack is too small for the policy's
    /// `stack_limit` (plus the host's margin): the call was refused before
    /// any guest code ran, and the domain is untouched.
    #[error("{export} was not called: {reason}")]
    HostStack {
        /// The export.
        export: String,
        /// How much stack is left and how much is needed.
        reason: String,
    },
    /// The guest ended the call with WASI's `proc_exit` and this exit
    /// status (`exit(n)` in C). Not a failure of the domain: no trap, no
    /// escalation, the domain goes on running. A command's `_start` that
    /// returns normally exited with 0 and is `Ok`.
    #[error("the guest exited with status {0}")]
    Exit(i32),
    /// The domain is unloading or unloaded: no new calls.
    #[error("domain {domain} is {state:?}: it takes no calls{}", ended_by(cause))]
    NotRunning {
        /// The domain.
        domain: u64,
        /// Its state.
        state: DomainState,
        /// The failure an escalation ended it for, if one did (the trap or
        /// limit, kept through the recycle or unload).
        cause: Option<String>,
    },
}

/// Why an unload could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnloadError {
    /// The domain was already unloading or unloaded.
    #[error("domain {domain} is already {state:?}{}", ended_by(cause))]
    NotRunning {
        /// The domain.
        domain: u64,
        /// Its state.
        state: DomainState,
        /// The failure an escalation ended it for, if one did.
        cause: Option<String>,
    },
}

/// Why a host or domain could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The WebAssembly engine could not be configured.
    #[error("engine: {0}")]
    Engine(String),
    /// The policy contradicts itself.
    #[error(transparent)]
    Policy(#[from] crate::config::PolicyError),
    /// Two pre-opens share a guest name: the guest could not tell which
    /// directory `NAME/...` means.
    #[error("two pre-opens are named {0:?}: each needs its own name")]
    DuplicatePreopen(String),
    /// A pre-opened directory could not be opened.
    #[error("cannot pre-open {path} as {name:?}: {error}")]
    Preopen {
        /// The name the guest would use.
        name: String,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A WASI stdio stream could not be set up (its host fd could not be
    /// duplicated for the domain).
    #[error("cannot give the domain its {stream}: {error}")]
    Stdio {
        /// `stdin`, `stdout` or `stderr`.
        stream: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// A library module could not be added to the host
    /// ([`Host::add_library`](crate::Host::add_library)).
    #[error("cannot add the library {name:?}: {reason}")]
    Library {
        /// The library's name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Why a [`Manifest`](crate::Manifest) could not be read, or its domain
/// created. Each error names the manifest file (when it was read from one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read manifest {}: {error}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The TOML is malformed, or a key is unknown, missing or of the wrong
    /// type.
    #[error("{}{}: {message}", label(file), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        /// The manifest file.
        file: Option<PathBuf>,
        /// Where, if known.
        line: Option<usize>,
        /// What is wrong (naming the key).
        message: String,
    },
    /// A value is well-typed but unusable (an empty or repeated module name,
    /// a pre-open name that is not one path component).
    #[error("{}: {message}", label(file))]
    Invalid {
        /// The manifest file.
        file: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
    /// The manifest has no `[[module]]`.
    #[error("{}: no [[module]]: a manifest loads at least one module", label(file))]
    NoModules {
        /// The manifest file.
        file: Option<PathBuf>,
    },
    /// A module's file does not exist.
    #[error("{}: module {module:?}: no such file {}", label(file), path.display())]
    MissingModule {
        /// The manifest file.
        file: Option<PathBuf>,
        /// The module's name.
        module: String,
        /// The file it names, resolved against the manifest's directory.
        path: PathBuf,
    },
    /// The `[policy]` table sets a key that configures the host's engine
    /// ([`ENGINE_WIDE_KEYS`](crate::ENGINE_WIDE_KEYS)): only the host's
    /// policy may.
    #[error(
        "{}: [policy] {key} is engine-wide: only the host's policy sets it, not a domain's",
        label(file)
    )]
    EngineWide {
        /// The manifest file.
        file: Option<PathBuf>,
        /// The key.
        key: String,
    },
    /// The `[policy]` table, applied over the host's policy, does not
    /// validate.
    #[error("{}: [policy]: {error}", label(file))]
    Policy {
        /// The manifest file.
        file: Option<PathBuf>,
        /// What is wrong.
        error: crate::config::PolicyError,
    },
    /// The manifest's modules import each other in a cycle.
    #[error("{}: the modules import each other in a cycle: {}", label(file), cycle.join(" -> "))]
    ImportCycle {
        /// The manifest file.
        file: Option<PathBuf>,
        /// The modules, from the first to the one importing it again.
        cycle: Vec<String>,
    },
    /// A module could not be compiled or loaded into the domain.
    #[error("{}: module {module:?}: {error}", label(file))]
    Load {
        /// The manifest file.
        file: Option<PathBuf>,
        /// The module's name.
        module: String,
        /// Why.
        error: LoadError,
    },
    /// The domain could not be created (a pre-opened directory cannot be
    /// opened, the domain's policy does not fit the host).
    #[error("{}: {error}", label(file))]
    Host {
        /// The manifest file.
        file: Option<PathBuf>,
        /// Why.
        error: HostError,
    },
}

impl ManifestError {
    /// The [`LoadError`] inside, if a module failed to compile or load.
    pub fn load_error(&self) -> Option<&LoadError> {
        match self {
            ManifestError::Load { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// How a manifest error names its manifest.
fn label(file: &Option<PathBuf>) -> String {
    match file {
        Some(file) => format!("manifest {}", file.display()),
        None => "manifest".to_string(),
    }
}

/// The tail of a `NotRunning` message: what ended the domain.
fn ended_by(cause: &Option<String>) -> String {
    cause
        .as_ref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}
