//! The runtime shared by a host and all its domains: the engine (configured
//! from the policy), the linker with every host function of the
//! [catalogue](crate::catalogue), the policy, the log sink, the registry of
//! domains, the module caches (compiled modules by content, and modules
//! prepared for instantiation: both bounded by the policy's
//! `module_cache_entries`), the library modules and the epoch ticker.
//!
//! Domains hold the runtime (an `Arc`), so deadlines keep firing and host
//! functions stay linked even if the `Host` value is dropped first.

pub(crate) mod atomic_waits;
mod bounded;
mod compile_timeout;
mod dense;
mod engine;
mod export_names;
mod module_cache;
mod pre_cache;
mod precheck;
pub(crate) mod ticker;
pub(crate) mod timer_thread;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use wasmtime::{Engine, Linker, Module};

use crate::boundary::ctx::DomainCtx;
use crate::boundary::embed::EmbedderFunction;
use crate::catalogue::{Catalogue, HostFunction};
use crate::config::{Allocation, Policy};
use crate::error::{HostError, LoadError};
use crate::log::LogSink;
use crate::registry::{CacheStats, Registry};

pub use ticker::EPOCH_TICK;

/// What a host is built from.
pub(crate) struct RuntimeConfig {
    pub(crate) policy: Policy,
    pub(crate) log: LogSink,
    pub(crate) builtin: Vec<&'static [HostFunction]>,
    pub(crate) embedder: Vec<EmbedderFunction>,
    pub(crate) disk_cache: Option<PathBuf>,
}

/// The runtime (see the module docs).
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<DomainCtx>,
    pub(crate) catalogue: Catalogue,
    pub(crate) policy: Arc<Policy>,
    pub(crate) log: LogSink,
    pub(crate) registry: Registry,
    pub(crate) modules: module_cache::ModuleCache,
    /// Modules prepared for instantiation.
    pub(crate) prepared: pre_cache::PreCache,
    /// The allocation in effect (the policy's, unless it had to fall back).
    pub(crate) allocation: Allocation,
    /// Library modules by name, instantiated into each domain that imports
    /// them.
    libraries: RwLock<BTreeMap<String, Module>>,
    /// Compilations that passed the compile timeout and still run.
    overruns: Arc<compile_timeout::Overruns>,
    /// Runs guest timer callbacks and deferred completions.
    pub(crate) timers: Arc<timer_thread::TimerThread>,
    _ticker: ticker::Ticker,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.timers.stop();
    }
}

impl Runtime {
    pub(crate) fn new(config: RuntimeConfig) -> Result<Runtime, HostError> {
        let RuntimeConfig {
            policy,
            log,
            builtin,
            embedder,
            disk_cache,
        } = config;
        policy.validate()?;
        // A guest writing to a pipe with no reader gets EPIPE, never kills
        // the host.
        crate::sys::ignore_sigpipe();
        let (engine, allocation, fallback) = engine::build(&policy, disk_cache.as_deref())?;
        if let Some(why) = fallback {
            // `Host::allocation()` tells an embedder which is in effect.
            tracing::warn!(target: "custody::host", "{why}");
        }
        let mut linker = Linker::new(&engine);
        let catalogue =
            Catalogue::link(&mut linker, &builtin, embedder).map_err(HostError::Engine)?;
        let ticker = ticker::Ticker::start(engine.clone())
            .map_err(|e| HostError::Engine(format!("starting the epoch thread: {e}")))?;
        tracing::debug!(target: "custody::host", allocation = allocation.name(), "host created");
        Ok(Runtime {
            engine,
            linker,
            catalogue,
            modules: module_cache::ModuleCache::new(policy.module_cache_entries),
            prepared: pre_cache::PreCache::new(policy.module_cache_entries),
            policy: Arc::new(policy),
            log,
            registry: Registry::default(),
            allocation,
            libraries: RwLock::default(),
            overruns: Arc::default(),
            timers: Arc::default(),
            _ticker: ticker,
        })
    }

    /// Compiles `bytes` (binary or WAT), or finds them in the module cache.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        self.modules.get_or_compile(bytes, || {
            // Text is turned into a binary first, so that the structural
            // check sees what the compiler would.
            let wasm = wat::parse_bytes(bytes).map_err(|e| LoadError::Malformed {
                message: format!("{e:#}"),
                source: Box::new(e),
            })?;
            precheck::check(&wasm, &self.policy).map_err(LoadError::limits)?;
            let wasm = export_names::with_export_names(&wasm);
            let wasm = if self.policy.threads {
                atomic_waits::rewrite(&wasm)
                    .map_err(LoadError::limits)?
                    .into_owned()
            } else {
                wasm.into_owned()
            };
            self.overruns
                .compile(&self.engine, wasm, self.policy.compile_timeout)
                .map_err(|failed| match failed {
                    compile_timeout::Failed::Compile(e) => self.compile_error(e),
                    compile_timeout::Failed::Refused(why) => LoadError::limits(why),
                })
        })
    }

    /// A compilation error, named: a module the pooling allocator refuses
    /// is a `Limits` error that says which knob governs it.
    fn compile_error(&self, error: wasmtime::Error) -> LoadError {
        let message = format!("{error:#}");
        if !message.contains("pooling allocator") {
            return LoadError::Malformed {
                message,
                source: error.into(),
            };
        }
        let limit = match self.policy.memory_limit {
            Some(bytes) => format!("the policy's memory limit is {bytes} bytes"),
            None => "the policy sets no memory limit".to_string(),
        };
        LoadError::Limits {
            message: format!(
                "{message} ({limit}; shared memories need allocation = \"on-demand\" or \"dense\")"
            ),
            source: Some(error.into()),
        }
    }

    /// The library module named `name`, if the host has one.
    pub(crate) fn library(&self, name: &str) -> Option<Module> {
        let libraries = self
            .libraries
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        libraries.get(name).cloned()
    }

    /// Adds a library module; `Err` says why it cannot be.
    pub(crate) fn add_library(&self, name: &str, module: &Module) -> Result<(), String> {
        if name.is_empty() {
            return Err("a library needs a name".to_string());
        }
        if name == atomic_waits::MODULE {
            return Err(format!("{name:?} is reserved for the host"));
        }
        if !Engine::same(module.engine(), &self.engine) {
            return Err("the module was compiled by another host's engine".to_string());
        }
        let mut libraries = self
            .libraries
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if libraries.contains_key(name) {
            return Err("the host already has a library of that name".to_string());
        }
        libraries.insert(name.to_string(), module.clone());
        Ok(())
    }

    /// How many compiled modules the cache holds.
    pub(crate) fn cached_modules(&self) -> usize {
        self.modules.len()
    }

    /// Empties the module cache and the prepared-instance cache.
    pub(crate) fn clear_module_cache(&self) {
        self.modules.clear();
        self.prepared.clear();
    }

    /// What the two caches hold.
    pub(crate) fn cache_stats(&self) -> CacheStats {
        let modules = self.modules.modules();
        let prepared = self.prepared.modules();
        let (modules_len, prepared_len) = (modules.len(), prepared.len());
        // A module's code address is unique while it lives (the pre-cache's
        // key too): a module in both caches counts once.
        let mut seen = HashSet::new();
        let code_bytes = modules
            .iter()
            .chain(&prepared)
            .map(Module::image_range)
            .filter(|range| seen.insert(range.start as usize))
            .map(|range| range.end as usize - range.start as usize)
            .sum();
        let images = crate::sys::memory_image_fds().ok();
        CacheStats {
            limit: self.policy.module_cache_entries,
            modules: modules_len,
            prepared: prepared_len,
            distinct_modules: seen.len(),
            code_bytes,
            process_memory_image_fds: images.map(|(fds, _)| fds),
            process_memory_image_bytes: images.map(|(_, bytes)| bytes),
        }
    }
}
