//! The runtime shared by a host and all its domains, and the process
//! services it runs: the engine (configured from the policy: `engine.rs`,
//! with `dense.rs`, the arena-backed memories of `allocation = "dense"`),
//! the linker with every host function of the
//! [catalogue](crate::catalogue), the [compiler](crate::compile) and its
//! caches, the policy, the log sink, the registry of domains, the library
//! modules, the epoch ticker (`ticker.rs`) and the timer thread
//! (`timer_thread.rs`).
//!
//! Domains hold the runtime (an `Arc`), so deadlines keep firing and host
//! functions stay linked even if the `Host` value is dropped first.

mod dense;
mod engine;
pub(crate) mod ticker;
pub(crate) mod timer_thread;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use wasmtime::{Engine, Linker, Module};

use crate::compile::{Compiler, atomic_wait};

use crate::boundary::ctx::DomainCtx;
use crate::boundary::embed::EmbedderFunction;
use crate::catalogue::Catalogue;
use crate::config::{Allocation, Policy};
use crate::error::HostError;
use crate::extension::Extension;
use crate::log::LogSink;
use crate::registry::Registry;

pub use ticker::EPOCH_TICK;

/// What a host is built from.
pub(crate) struct RuntimeConfig {
    pub(crate) policy: Policy,
    pub(crate) log: LogSink,
    /// The `custody` ABI first, then the host's other extensions.
    pub(crate) extensions: Vec<Arc<dyn Extension>>,
    pub(crate) embedder: Vec<EmbedderFunction>,
    pub(crate) disk_cache: Option<PathBuf>,
}

/// The runtime (see the module docs).
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<DomainCtx>,
    pub(crate) catalogue: Catalogue,
    /// The ABIs whose functions the catalogue holds (the `custody` ABI first).
    pub(crate) extensions: Vec<Arc<dyn Extension>>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) log: LogSink,
    pub(crate) registry: Registry,
    /// The compile pipeline and the module caches.
    pub(crate) compiler: Compiler,
    /// The allocation in effect (the policy's, unless it had to fall back).
    pub(crate) allocation: Allocation,
    /// Library modules by name, instantiated into each domain that imports
    /// them.
    libraries: RwLock<BTreeMap<String, Module>>,
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
            extensions,
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
        if let Some(why) = engine::pool_map_budget(&policy, allocation) {
            tracing::warn!(target: "custody::host", "{why}");
        }
        let mut linker = Linker::new(&engine);
        let functions: Vec<_> = extensions.iter().map(|e| e.functions()).collect();
        let catalogue =
            Catalogue::link(&mut linker, &functions, embedder).map_err(|e| match e.source {
                Some(source) => HostError::engine(e.message, source),
                None => HostError::Engine {
                    message: e.message,
                    source: None,
                },
            })?;
        let ticker = ticker::Ticker::start(engine.clone()).map_err(|e| HostError::Engine {
            message: format!("starting the epoch thread: {e}"),
            source: Some(Box::new(e)),
        })?;
        tracing::debug!(target: "custody::host", allocation = allocation.name(), "host created");
        let policy = Arc::new(policy);
        Ok(Runtime {
            compiler: Compiler::new(engine.clone(), Arc::clone(&policy)),
            engine,
            linker,
            catalogue,
            extensions,
            policy,
            log,
            registry: Registry::default(),
            allocation,
            libraries: RwLock::default(),
            timers: Arc::default(),
            _ticker: ticker,
        })
    }

    /// Whether any library module was added.
    pub(crate) fn has_libraries(&self) -> bool {
        let libraries = self
            .libraries
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        !libraries.is_empty()
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
        if name == atomic_wait::MODULE {
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
}
