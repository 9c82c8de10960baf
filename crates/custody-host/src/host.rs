//! `Host`: one wasmtime engine, the policy, the `custody` ABI and the
//! registry of domains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use wasmtime::{Config, Engine, Linker, Module};

use crate::abi;
use crate::domain::{Domain, DomainCtx, DomainShared, DomainState, Preopen};
use crate::error::{HostError, LoadError};
use crate::policy::Policy;
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
    pub(crate) policy: Arc<Policy>,
    pub(crate) log: LogSink,
    domains: Mutex<BTreeMap<u64, Weak<DomainShared>>>,
    next_domain: AtomicU64,
}

impl HostShared {
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
    fn start(engine: Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("custody-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Ticker {
            stop,
            thread: Some(thread),
        }
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
    _ticker: Ticker,
}

impl Host {
    /// A host applying `policy`, logging guests to stderr.
    ///
    /// # Errors
    /// [`HostError::Policy`] if the policy contradicts itself,
    /// [`HostError::Engine`] if wasmtime cannot be configured.
    pub fn new(policy: Policy) -> Result<Host, HostError> {
        Host::with_log(policy, stderr_log())
    }

    /// A host applying `policy`, sending guest log lines to `log`.
    ///
    /// # Errors
    /// As [`Host::new`].
    pub fn with_log(policy: Policy, log: LogSink) -> Result<Host, HostError> {
        policy.validate()?;
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(policy.stack_limit);
        config.wasm_threads(true);
        config.shared_memory(true);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        abi::define(&mut linker).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(engine.clone());
        Ok(Host {
            shared: Arc::new(HostShared {
                engine,
                linker,
                policy: Arc::new(policy),
                log,
                domains: Mutex::new(BTreeMap::new()),
                next_domain: AtomicU64::new(1),
            }),
            _ticker: ticker,
        })
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
