//! `Host`: one wasmtime engine, the policy, the `custody` ABI and the
//! registry of domains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use wasmtime::{Config, Engine, Linker, Module, Val, ValType};

use crate::abi::{self, AbiError};
use crate::domain::{Domain, DomainCtx, DomainShared, DomainState, Preopen};
use crate::embed::{self, ExtraFunction, GuestCall};
use crate::error::{HostError, LoadError};
use crate::policy::{Category, Policy};
use crate::sys;

/// How often running guests check whether they must stop (deadline, unload).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Where guest log lines go: `(domain, level 0..=4, text)`.
pub type LogSink = Arc<dyn Fn(u64, u8, &str) + Send + Sync>;

/// The default log sink: one line per message on stderr.
pub fn stderr_log() -> LogSink {
    Arc::new(|domain, level, text| {
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        let level = LEVELS.get(usize::from(level)).unwrap_or(&"?");
        eprintln!("custody: domain {domain}: {level}: {text}");
    })
}

pub(crate) struct HostShared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<DomainCtx>,
    /// Embedder functions: (module, name, categories).
    extras: Vec<(String, String, Vec<Category>)>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) log: LogSink,
    domains: Mutex<BTreeMap<u64, Weak<DomainShared>>>,
    next_domain: AtomicU64,
    /// Lives as long as any domain does (domains hold this state), so
    /// deadlines keep firing even if the `Host` value is dropped first.
    _ticker: Ticker,
}

impl HostShared {
    /// The host-protection categories of a host function guests may import,
    /// or `None` if the host defines no such function.
    pub(crate) fn categories_of(&self, module: &str, name: &str) -> Option<Vec<Category>> {
        if module == abi::MODULE {
            return abi::function(name).map(|f| f.categories.to_vec());
        }
        self.extras
            .iter()
            .find(|(m, n, _)| m == module && n == name)
            .map(|(_, _, categories)| categories.clone())
    }

    pub(crate) fn forget(&self, domain: u64) {
        self.domains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&domain);
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the host drops.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("custody-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A live domain, as [`Host::domains`] lists it.
#[derive(Clone, Debug, Serialize)]
pub struct DomainInfo {
    /// The domain's id.
    pub id: u64,
    /// Its state.
    pub state: DomainState,
    /// Handles its table holds.
    pub handles: usize,
}

/// The runtime that hosts domains: one per process is typical.
///
/// ```
/// use custody_host::{DomainConfig, Host, Policy};
///
/// let host = Host::new(Policy::default())?;
/// let module = host.compile(br#"(module (func (export "answer") (result i32) i32.const 42))"#)?;
/// let domain = host.create_domain(DomainConfig::new())?;
/// domain.load("main", &module)?;
/// let result = domain.call("answer", &[])?;
/// assert_eq!(result[0].unwrap_i32(), 42);
/// let report = domain.unload()?;
/// assert_eq!(report.ledger.opened, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Host {
    shared: Arc<HostShared>,
}

impl Host {
    /// A host applying `policy`, logging guests to stderr.
    ///
    /// # Errors
    /// [`HostError::Policy`] if the policy contradicts itself,
    /// [`HostError::Engine`] if wasmtime cannot be configured.
    pub fn new(policy: Policy) -> Result<Host, HostError> {
        Host::builder(policy).build()
    }

    /// A host applying `policy`, sending guest log lines to `log`.
    ///
    /// # Errors
    /// As [`Host::new`].
    pub fn with_log(policy: Policy, log: LogSink) -> Result<Host, HostError> {
        Host::builder(policy).log(log).build()
    }

    /// A builder, to add embedder host functions.
    pub fn builder(policy: Policy) -> HostBuilder {
        HostBuilder {
            policy,
            log: stderr_log(),
            functions: Vec::new(),
        }
    }

    /// The wasmtime engine every domain runs on.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// Compiles a module from WebAssembly binary or text (WAT). A compiled
    /// module can be loaded into any number of domains.
    ///
    /// # Errors
    /// [`LoadError::Malformed`] with the parser's message.
    pub fn compile(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        Module::new(&self.shared.engine, bytes).map_err(|e| LoadError::Malformed(format!("{e:#}")))
    }

    /// Compiles a `.wasm` or `.wat` file.
    ///
    /// # Errors
    /// [`LoadError::Read`] or [`LoadError::Malformed`].
    pub fn compile_file(&self, path: impl AsRef<Path>) -> Result<Module, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        self.compile(&bytes)
    }

    /// Creates a domain.
    ///
    /// # Errors
    /// [`HostError::Preopen`] if a pre-opened directory cannot be opened.
    ///
    /// # Panics
    /// If 2^64 - 1 domains have been created: ids are never reused, so the
    /// host refuses to wrap (as wasmtime does for store ids).
    pub fn create_domain(&self, config: DomainConfig) -> Result<Domain, HostError> {
        let preopens = config
            .preopens
            .into_iter()
            .map(|(name, path)| match sys::open_dir(&path) {
                Ok(dir) => Ok(Preopen { name, dir }),
                Err(error) => Err(HostError::Preopen { name, path, error }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id = self.shared.next_domain.fetch_add(1, Ordering::Relaxed);
        assert!(
            id != u64::MAX,
            "domain ids exhausted: they are never reused"
        );
        let domain = Domain::new(&self.shared, id, preopens);
        self.shared
            .domains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::downgrade(domain.shared()));
        Ok(domain)
    }

    /// Live and unloading domains, by id.
    pub fn domains(&self) -> Vec<DomainInfo> {
        let domains = self
            .shared
            .domains
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        domains
            .values()
            .filter_map(Weak::upgrade)
            .map(|d| DomainInfo {
                id: d.id,
                state: d.state(),
                handles: d.handle_count(),
            })
            .collect()
    }
}

/// Builds a [`Host`], with host functions of the embedder's own beside the
/// `custody` ABI.
///
/// ```
/// use custody_host::{Category, Host, HostLock, Policy, Val, ValType};
///
/// static COUNTER: HostLock<i32> = HostLock::new_const(0);
/// let host = Host::builder(Policy::default())
///     .function("env", "next", &[Category::SharedState], &[], &[ValType::I32], |call, _, results| {
///         let mut counter = COUNTER.lock(call); // counted as a host lock
///         *counter += 1;
///         results[0] = Val::I32(*counter);
///         Ok(())
///     })
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HostBuilder {
    policy: Policy,
    log: LogSink,
    functions: Vec<ExtraFunction>,
}

impl HostBuilder {
    /// Where guest log lines go (default: stderr).
    pub fn log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Adds a host function guests may import as `module.name`, carrying
    /// host-protection `categories` (a module importing it fails to load if
    /// the policy denies one).
    pub fn function(
        mut self,
        module: &str,
        name: &str,
        categories: &[Category],
        params: &[ValType],
        results: &[ValType],
        body: impl Fn(&mut GuestCall<'_>, &[Val], &mut [Val]) -> Result<(), AbiError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.functions.push(ExtraFunction {
            module: module.to_string(),
            name: name.to_string(),
            categories: categories.to_vec(),
            params: params.to_vec(),
            results: results.to_vec(),
            body: Arc::new(body),
        });
        self
    }

    /// Builds the host.
    ///
    /// # Errors
    /// [`HostError::Policy`] if the policy contradicts itself;
    /// [`HostError::Engine`] if wasmtime cannot be configured or a function
    /// is defined in the reserved `custody` module or twice.
    pub fn build(self) -> Result<Host, HostError> {
        let HostBuilder {
            policy,
            log,
            functions,
        } = self;
        policy.validate()?;
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(policy.stack_limit);
        config.wasm_threads(true);
        config.shared_memory(true);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        abi::define(&mut linker).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut extras = Vec::new();
        for function in functions {
            if function.module == abi::MODULE {
                return Err(HostError::Engine(format!(
                    "{}::{}: the custody module is reserved for the ABI",
                    function.module, function.name
                )));
            }
            let ty = embed::func_type(&engine, &function);
            let body = Arc::clone(&function.body);
            linker
                .func_new(
                    &function.module,
                    &function.name,
                    ty,
                    move |caller, params, results| embed::call(caller, &*body, params, results),
                )
                .map_err(|e| HostError::Engine(format!("{e:#}")))?;
            extras.push((function.module, function.name, function.categories));
        }
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| HostError::Engine(format!("starting the epoch thread: {e}")))?;
        Ok(Host {
            shared: Arc::new(HostShared {
                engine,
                linker,
                extras,
                policy: Arc::new(policy),
                log,
                domains: Mutex::new(BTreeMap::new()),
                next_domain: AtomicU64::new(1),
                _ticker: ticker,
            }),
        })
    }
}

/// How to create a domain.
#[derive(Clone, Debug, Default)]
pub struct DomainConfig {
    preopens: Vec<(String, PathBuf)>,
}

impl DomainConfig {
    /// No pre-opened directories: the guests reach no filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pre-opens `dir` under `name`: the guests may open `name/rel/path`
    /// beneath it and nothing outside it.
    pub fn preopen(mut self, name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        self.preopens.push((name.into(), dir.into()));
        self
    }
}
