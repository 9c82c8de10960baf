//! Compilation: the bytes of a module nobody vouches for become a
//! [`Module`], bounded in memory and time by the policy (SPEC C1), and the
//! caches that keep the results.
//!
//! | module | owns |
//! | --- | --- |
//! | [`bounded`] | the bounded map both caches are |
//! | [`precheck`] | the structural limits, the compile memory estimate and the shared-memory rules, checked on the bytes before anything compiles |
//! | [`export_names`] | a name for every exported function the name section leaves unnamed, so guest stacks name it |
//! | [`atomic_wait`] | with the policy's `threads`, each `memory.atomic.wait` rewritten into a call of the host function `boundary/atomic_wait` |
//! | [`timeout`] | compilation on its own thread, under `compile_timeout`, and the overruns it leaves |
//! | [`module_cache`] | compiled modules by content |
//! | [`pre_cache`] | modules prepared for instantiation (imports resolved against the host's functions) |
//!
//! [`Compiler`] runs the pipeline: text to binary, the structural check,
//! export names, the atomic-wait rewrite, then the compiler under its time
//! bound, each result kept in the module cache.

pub(crate) mod atomic_wait;
mod bounded;
mod export_names;
mod module_cache;
pub(crate) mod pre_cache;
mod precheck;
mod timeout;

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::{Engine, Module};

use crate::config::Policy;
use crate::error::LoadError;
use crate::registry::CacheStats;

/// The compile pipeline and its caches, one per host.
pub(crate) struct Compiler {
    engine: Engine,
    policy: Arc<Policy>,
    modules: module_cache::ModuleCache,
    /// Modules prepared for instantiation.
    pub(crate) prepared: pre_cache::PreCache,
    /// Compilations that passed the compile timeout and still run.
    overruns: Arc<timeout::Overruns>,
}

impl Compiler {
    pub(crate) fn new(engine: Engine, policy: Arc<Policy>) -> Compiler {
        Compiler {
            modules: module_cache::ModuleCache::new(policy.module_cache_entries),
            prepared: pre_cache::PreCache::new(policy.module_cache_entries),
            engine,
            policy,
            overruns: Arc::default(),
        }
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
                atomic_wait::rewrite(&wasm)
                    .map_err(LoadError::limits)?
                    .into_owned()
            } else {
                wasm.into_owned()
            };
            self.overruns
                .compile(&self.engine, wasm, self.policy.compile_timeout)
                .map_err(|failed| match failed {
                    timeout::Failed::Compile(e) => self.compile_error(e),
                    timeout::Failed::Refused(why) => LoadError::limits(why),
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
        let (hits, misses) = self.modules.lookups();
        CacheStats {
            limit: self.policy.module_cache_entries,
            modules: modules_len,
            prepared: prepared_len,
            distinct_modules: seen.len(),
            code_bytes,
            process_memory_image_fds: images.map(|(fds, _)| fds),
            process_memory_image_bytes: images.map(|(_, bytes)| bytes),
            hits,
            misses,
        }
    }
}
