//! The errors of loading modules, calling exports and unloading domains.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Action, Category};

mod not_running;

pub(crate) use not_running::Refused;
pub use not_running::{EndCause, NotRunning, RefError};

/// An error kept as the source of a custody error: wasmtime's (a
/// [`wasmtime::Trap`] when it is one), the text parser's, or custody's own.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// wasmtime's error as a source: the [`wasmtime::Trap`] itself when it is
/// a trap (so `source()` downcasts to it), else the whole error.
pub(crate) fn wasmtime_source(error: wasmtime::Error) -> BoxError {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => Box::new(*trap),
        None => error.into(),
    }
}

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
        #[source]
        error: io::Error,
    },
    /// The bytes are not a valid WebAssembly module (or WAT text).
    #[error("malformed module: {message}")]
    Malformed {
        /// What the parser or compiler said.
        message: String,
        /// The parser's or wasmtime's error.
        #[source]
        source: BoxError,
    },
    /// The module is valid but does not fit the host's limits (its initial
    /// memory is past the policy's `memory_limit`, or it needs something
    /// the allocation strategy cannot give, such as a shared memory under
    /// the pooling allocator).
    #[error("the module does not fit the host's limits: {message}")]
    Limits {
        /// Which limit, and by how much.
        message: String,
        /// wasmtime's error, when wasmtime refused the module.
        #[source]
        source: Option<BoxError>,
    },
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
    /// An import of an extension's module that the policy refuses whole
    /// (WASI's while the policy's `wasi` is off).
    #[error("import {module}::{name} is denied by the host's policy: {reason}")]
    DeniedModule {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// Why, in the extension's words.
        reason: Box<str>,
    },
    /// Instantiation failed (a type mismatch between import and export, a
    /// trap in the start function, ...).
    #[error("instantiating {module} failed: {message}")]
    Instantiate {
        /// The module's name in the domain.
        module: String,
        /// What wasmtime said.
        message: String,
        /// wasmtime's error (a [`wasmtime::Trap`] of a start function), or
        /// the failed call of a WASI reactor's `_initialize`.
        #[source]
        source: Option<BoxError>,
    },
    /// A module of that name is already loaded in this domain.
    #[error("a module named {0:?} is already loaded in this domain")]
    Duplicate(String),
    /// The domain is unloading or unloaded.
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
}

impl LoadError {
    /// A [`LoadError::Limits`] of custody's own checks (no source).
    pub(crate) fn limits(message: String) -> LoadError {
        LoadError::Limits {
            message,
            source: None,
        }
    }
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
        /// wasmtime's error: the [`wasmtime::Trap`] itself for a trap of
        /// the guest's code, else the host function's error.
        #[source]
        source: BoxError,
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
        /// What stopped it: an [`Interrupt`](crate::Interrupt), or the
        /// [`wasmtime::Trap::StackOverflow`] of the policy's stack limit.
        #[source]
        source: BoxError,
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
        /// re-creation, typed), or unloaded.
        outcome: EscalationOutcome,
        /// Handles released by the escalation.
        released: usize,
        /// The failed call itself (a [`CallError::Trap`] or
        /// [`CallError::Aborted`]; `source()` is this `Arc`); `None` when
        /// the call returned with a critical region open.
        #[source]
        failure: Option<Arc<CallError>>,
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
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
}

/// What an escalation made of the domain ([`CallError::Escalated`]).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EscalationOutcome {
    /// The policy's action was to abort the call only.
    #[error("not touched")]
    NotTouched,
    /// The domain was unloaded.
    #[error("unloaded")]
    Unloaded,
    /// The domain was recycled and its modules instantiated afresh.
    #[error("recycled and re-created from its modules")]
    Recreated,
    /// The domain was recycled and not re-created: the policy's
    /// `recreate` is off.
    #[error("recycled (not re-created: the policy's recreate is off)")]
    RecreateOff,
    /// The domain was recycled, and it had no store to re-create (it was
    /// ending already).
    #[error("recycled (not re-created)")]
    NothingToRecreate,
    /// The domain was recycled, and re-creating a module failed (its
    /// start function trapped, say): the domain ended `Recycled`.
    #[error("recycled (re-creating it failed: {0})")]
    RecreationFailed(#[source] Arc<LoadError>),
}

impl EscalationOutcome {
    /// Whether the domain runs on (re-created, or not touched).
    pub fn runs_on(&self) -> bool {
        matches!(
            self,
            EscalationOutcome::NotTouched | EscalationOutcome::Recreated
        )
    }
}

/// Why an unload could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnloadError {
    /// The domain was already unloading or unloaded.
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
}

/// Why a host or domain could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The WebAssembly engine could not be configured, or a host function
    /// could not be linked.
    #[error("engine: {message}")]
    Engine {
        /// What failed, with wasmtime's own words.
        message: String,
        /// wasmtime's error (or the OS error starting a host thread), if
        /// one caused it.
        #[source]
        source: Option<BoxError>,
    },
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
        #[source]
        error: io::Error,
    },
    /// An extension could not set up its state for the domain (WASI: a
    /// stdio stream's host fd could not be duplicated).
    #[error("{module}: {source}")]
    Extension {
        /// The extension's import module.
        module: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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
        #[source]
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
        /// The TOML parser's error.
        #[source]
        source: Option<BoxError>,
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
        #[source]
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
        #[source]
        error: LoadError,
    },
    /// The domain could not be created (a pre-opened directory cannot be
    /// opened, the domain's policy does not fit the host).
    #[error("{}: {error}", label(file))]
    Host {
        /// The manifest file.
        file: Option<PathBuf>,
        /// Why.
        #[source]
        error: HostError,
    },
}

impl HostError {
    /// An [`Engine`](HostError::Engine) error whose cause is wasmtime's
    /// `error`, named in `context`.
    pub(crate) fn engine(context: impl std::fmt::Display, error: wasmtime::Error) -> HostError {
        HostError::Engine {
            message: format!("{context}: {error:#}"),
            source: Some(wasmtime_source(error)),
        }
    }
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
