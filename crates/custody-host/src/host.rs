//! [`Host`] and [`HostBuilder`]: the embedder's entry point. A host owns the
//! runtime (engine, catalogue of host functions, policy, registry, library
//! modules) and creates [`Domain`]s from a [`DomainConfig`] (or a
//! [`Manifest`](crate::Manifest): `host/manifest.rs`).

mod manifest;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use wasmtime::{Engine, Module, Val, ValType};

use crate::abi;
use crate::boundary::embed::{self, EmbedderFn, EmbedderFunction, GuestCall};
use crate::boundary::errno::AbiError;
use crate::boundary::extensions::Extensions;
use crate::boundary::preopen::{Preopen, Preopens};
use crate::config::{Allocation, Category, Policy, PolicyError};
use crate::domain::{Domain, DomainShared, Resolver};
use crate::error::{HostError, LoadError};
use crate::extension::{DomainSetup, Extension};
use crate::log::{LogSink, stderr_log};
use crate::registry::{CacheStats, DomainInfo, HostTotals};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::sys;

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
    runtime: Arc<Runtime>,
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

    /// A builder, to add embedder host functions or a compile cache.
    pub fn builder(policy: Policy) -> HostBuilder {
        HostBuilder {
            policy,
            log: stderr_log(),
            functions: Vec::new(),
            extensions: Vec::new(),
            disk_cache: None,
        }
    }

    /// The wasmtime engine every domain runs on.
    pub fn engine(&self) -> &Engine {
        &self.runtime.engine
    }

    /// The host's policy: every domain's, unless its [`DomainConfig`] gives
    /// it its own.
    pub fn policy(&self) -> &Policy {
        &self.runtime.policy
    }

    /// The allocation strategy in effect: the policy's, or
    /// [`Allocation::OnDemand`] if the pool could not be reserved.
    pub fn allocation(&self) -> Allocation {
        self.runtime.allocation
    }

    /// Compiles a module from WebAssembly binary or text (WAT). A compiled
    /// module can be loaded into any number of domains. The same bytes
    /// compiled again come from the host's module cache (see
    /// [`Policy::module_cache_entries`]).
    ///
    /// # Errors
    /// [`LoadError::Malformed`] with the parser's message.
    pub fn compile(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        self.runtime.compiler.compile(bytes)
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

    /// How many compiled modules the host's cache holds.
    pub fn cached_modules(&self) -> usize {
        self.runtime.compiler.cached_modules()
    }

    /// Empties the host's module caches, the compiled modules and the
    /// modules prepared for instantiation (domains keep the modules they
    /// loaded).
    pub fn clear_module_cache(&self) {
        self.runtime.compiler.clear_module_cache();
    }

    /// What the host's module caches hold: entries, the code they keep
    /// mapped, and wasmtime's memory image fds in the process (see
    /// [`CacheStats`]).
    ///
    /// ```
    /// use custody_host::{Host, Policy};
    ///
    /// let host = Host::new(Policy { module_cache_entries: 2, ..Policy::default() })?;
    /// for answer in 0..5 {
    ///     let wat = format!("(module (func (export \"f\") (result i32) i32.const {answer}))");
    ///     host.compile(wat.as_bytes())?;
    /// }
    /// let stats = host.cache_stats();
    /// assert_eq!((stats.limit, stats.modules), (2, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache_stats(&self) -> CacheStats {
        self.runtime.compiler.cache_stats()
    }

    /// Adds a library module: a module every domain of this host may import
    /// under `name`. It is compiled once (by this host) and instantiated
    /// into each domain that imports it, once per domain, under `name`, so
    /// its state is the domain's own; a module of the domain or one its
    /// resolver supplies under the same name comes first, and the host's
    /// functions after (see [`Domain::load`]).
    ///
    /// ```
    /// use custody_host::{DomainConfig, Host, Policy};
    ///
    /// let host = Host::new(Policy::default())?;
    /// let lib = host.compile(br#"(module (func (export "seven") (result i32) i32.const 7))"#)?;
    /// host.add_library("util", &lib)?;
    /// let app = host.compile(br#"(module (import "util" "seven" (func (result i32)))
    ///     (export "run" (func 0)))"#)?;
    /// let domain = host.create_domain(DomainConfig::new())?;
    /// domain.load("app", &app)?;
    /// assert_eq!(domain.call("run", &[])?[0].unwrap_i32(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`HostError::Library`] if the host already has a library of that
    /// name, the name is empty or reserved, or another host compiled the
    /// module.
    pub fn add_library(&self, name: &str, module: &Module) -> Result<(), HostError> {
        self.runtime
            .add_library(name, module)
            .map_err(|reason| HostError::Library {
                name: name.to_string(),
                reason,
            })
    }

    /// Creates a domain.
    ///
    /// # Errors
    /// [`HostError::Preopen`] if a pre-opened directory cannot be opened,
    /// [`HostError::DuplicatePreopen`] if two share a name;
    /// [`HostError::Extension`] if an extension cannot set up its state for
    /// the domain (WASI: a stdio stream);
    /// [`HostError::Policy`] if the domain's own policy does not validate,
    /// changes an engine-wide setting
    /// ([`ENGINE_WIDE_KEYS`](crate::ENGINE_WIDE_KEYS)), or raises the
    /// memory limit above the host's under the pooling allocator (whose
    /// slots the host's limit sized).
    ///
    /// # Panics
    /// If 2^64 - 1 domains have been created: ids are never reused, so the
    /// host refuses to wrap (as wasmtime does for store ids).
    pub fn create_domain(&self, config: DomainConfig) -> Result<Domain, HostError> {
        let policy = match config.policy {
            None => Arc::clone(&self.runtime.policy),
            Some(policy) => {
                self.check_domain_policy(&policy)?;
                policy
            }
        };
        for (i, (name, _)) in config.preopens.iter().enumerate() {
            if config.preopens[..i].iter().any(|(other, _)| other == name) {
                return Err(HostError::DuplicatePreopen(name.clone()));
            }
        }
        // Loops, not collects into `Result`s: a domain is created per
        // request, and most have no pre-opens and one extension state.
        let mut preopens = Vec::with_capacity(config.preopens.len());
        for (name, path) in config.preopens {
            match sys::open_dir(&path) {
                Ok(dir) => preopens.push(Preopen { name, dir }),
                Err(error) => return Err(HostError::Preopen { name, path, error }),
            }
        }
        let registry = &self.runtime.registry;
        let id = registry.next_id();
        let setup = DomainSetup {
            id,
            policy: &policy,
            preopens: preopens.len(),
            configs: &config.extensions,
        };
        // Each extension's store slot and shared part, gathered as they
        // come (no list of `ExtensionState`s in between).
        let (mut slots, mut shared_extensions) = (Vec::new(), Vec::new());
        for extension in self.runtime.extensions.iter() {
            let state = extension
                .new_domain(&setup)
                .map_err(|source| HostError::Extension {
                    module: extension.module(),
                    source,
                })?;
            slots.extend(state.store);
            shared_extensions.extend(state.shared);
        }
        let preopens = Preopens::new(preopens);
        let domain = Domain::new(
            &self.runtime,
            id,
            preopens,
            Extensions::new(slots),
            shared_extensions,
            policy,
            config.resolver,
        );
        let listed: Weak<DomainShared> = Arc::downgrade(&domain.shared);
        registry.register(id, listed);
        Ok(domain)
    }

    /// Checks a domain's own policy against the host's.
    fn check_domain_policy(&self, policy: &Policy) -> Result<(), HostError> {
        policy.validate()?;
        let host = &self.runtime.policy;
        if let Some(key) = policy.engine_wide_change(host) {
            return Err(PolicyError(format!(
                "{key} is engine-wide: a domain's policy must keep the host's"
            ))
            .into());
        }
        if self.runtime.allocation == Allocation::Pooling
            && let Some(limit) = host.memory_limit
            && policy.memory_limit.is_none_or(|own| own > limit)
        {
            let own = policy
                .memory_limit
                .map_or("none".to_string(), |own| format!("{own} bytes"));
            return Err(PolicyError(format!(
                "a domain's memory_limit ({own}) may not exceed the host's ({limit} bytes) under the pooling allocator, whose slots the host's limit sized"
            ))
            .into());
        }
        Ok(())
    }

    /// Live and unloading domains, by id.
    pub fn domains(&self) -> Vec<DomainInfo> {
        self.runtime.registry.list()
    }

    /// The live or unloading domain `id` (an operator's tool acting on a
    /// domain it did not create: listing its roots, unloading it). `None`
    /// for an id never issued, or a domain that has finished unloading.
    /// The value returned is a `Domain` like the creator's: it is not a
    /// root, so holding it does not block an unload; dropped last, it
    /// unloads the domain as any last `Domain` does.
    pub fn domain(&self, id: u64) -> Option<Domain> {
        let listed = self.runtime.registry.get(id)?;
        let shared = listed.into_any().downcast::<DomainShared>().ok()?;
        (!shared.state().load().is_final()).then_some(Domain { shared })
    }

    /// How many domains are live or unloading.
    pub fn domain_count(&self) -> usize {
        self.runtime.registry.len()
    }

    /// The domains added up: how many run and unload, their handles by
    /// type, and every domain's ledger since the host was built (see
    /// [`HostTotals`]). Each domain is asked for its state, table counts
    /// and ledger only (never its store), so a call in flight does not
    /// delay it.
    pub fn totals(&self) -> HostTotals {
        self.runtime.registry.totals()
    }
}

/// Builds a [`Host`], with host functions of the embedder's own beside the
/// `custody` ABI.
///
/// ```
/// use custody_host::{AbiError, Category, GuestCall, Host, HostLock, Policy};
///
/// static COUNTER: HostLock<i32> = HostLock::new_const(0);
/// let host = Host::builder(Policy::default())
///     .func_wrap(
///         "env",
///         "next",
///         &[Category::SharedState],
///         |call: &mut GuestCall<'_>, step: i32| -> Result<i32, AbiError> {
///             let mut counter = COUNTER.lock(call); // counted as a host lock
///             *counter += step;
///             Ok(*counter)
///         },
///     )
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HostBuilder {
    policy: Policy,
    log: LogSink,
    functions: Vec<EmbedderFunction>,
    extensions: Vec<Arc<dyn Extension>>,
    disk_cache: Option<PathBuf>,
}

impl HostBuilder {
    /// Adds an ABI extension (WASI: `custody_wasi::Wasi`): its functions
    /// join the catalogue, its module is reserved for it, and every domain
    /// of the host gets its state. The `custody` ABI is always there.
    pub fn extension(mut self, extension: impl Extension) -> Self {
        self.extensions.push(Arc::new(extension));
        self
    }

    /// Where guest log lines go (default: stderr).
    pub fn log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Keeps compiled code on disk in `dir` (wasmtime's compile cache), so
    /// a module compiled by an earlier process loads without compiling.
    pub fn disk_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.disk_cache = Some(dir.into());
        self
    }

    /// Adds a typed host function guests may import as `module.name`,
    /// carrying host-protection `categories` (a module importing it fails
    /// to load if the policy denies one). `body` takes the call and up to
    /// eight wasm values, and returns a value, a tuple of values or `()`;
    /// an `Err` traps the guest's call (`E_ABORTED` from a wait ends it as
    /// an abort). As with wasmtime's `Linker::func_wrap`, the closure's
    /// parameter types are written out: `|call: &mut GuestCall<'_>, x: i32|
    /// -> Result<i32, AbiError>`.
    pub fn func_wrap<Params, Results>(
        self,
        module: &str,
        name: &str,
        categories: &[Category],
        body: impl EmbedderFn<Params, Results>,
    ) -> Self {
        let link = body.into_link(module.to_string(), name.to_string()).0;
        self.add(module, name, categories, link)
    }

    /// Adds an untyped host function (its signature known only at run
    /// time): `body` receives the arguments as [`Val`]s and fills the
    /// results.
    pub fn func_new(
        self,
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
        let link = embed::link_untyped(
            module.to_string(),
            name.to_string(),
            params.to_vec(),
            results.to_vec(),
            Arc::new(body),
        );
        self.add(module, name, categories, link)
    }

    fn add(
        mut self,
        module: &str,
        name: &str,
        categories: &[Category],
        link: embed::LinkFn,
    ) -> Self {
        self.functions.push(EmbedderFunction {
            module: module.to_string(),
            name: name.to_string(),
            categories: categories.to_vec(),
            link,
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
        let runtime = Runtime::new(RuntimeConfig {
            policy: self.policy,
            log: self.log,
            extensions: std::iter::once(Arc::new(abi::CustodyAbi) as Arc<dyn Extension>)
                .chain(self.extensions)
                .collect(),
            embedder: self.functions,
            disk_cache: self.disk_cache,
        })?;
        Ok(Host {
            runtime: Arc::new(runtime),
        })
    }
}

/// How to create a domain: its pre-opened directories, its own policy (else
/// the host's), its resolver, and what each extension should set up for it
/// (WASI: arguments, environment, stdio).
#[derive(Clone, Default)]
pub struct DomainConfig {
    preopens: Vec<(String, PathBuf)>,
    policy: Option<Arc<Policy>>,
    resolver: Option<Resolver>,
    extensions: Vec<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for DomainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainConfig")
            .field("preopens", &self.preopens)
            .field("policy", &self.policy)
            .field("resolver", &self.resolver.is_some())
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

impl DomainConfig {
    /// No pre-opened directories: the guests reach no filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pre-opens `dir` under `name`: the guests may open `name/rel/path`
    /// beneath it and nothing outside it. To a WASI guest the pre-opens are
    /// fds 3, 4, ... in the order given, each announced under its `name`
    /// (`"."`, `"/sandbox"`, `"data"`).
    pub fn preopen(mut self, name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        self.preopens.push((name.into(), dir.into()));
        self
    }

    /// Configures an extension for this domain: `config` is a value of
    /// the extension's own configuration type (WASI: `custody_wasi::WasiConfig`),
    /// which it reads when the domain is created. One per type: a second
    /// of the same type replaces the first.
    pub fn extension<C: Any + Send + Sync>(mut self, config: C) -> Self {
        self.extensions.retain(|c| !c.is::<C>());
        self.extensions.push(Arc::new(config));
        self
    }

    /// The configuration of type `C` given with
    /// [`extension`](Self::extension), if any.
    pub fn extension_config<C: Any + Send + Sync>(&self) -> Option<&C> {
        self.extensions.iter().find_map(|c| c.downcast_ref::<C>())
    }

    /// The domain's own policy, in place of the host's: its deadline,
    /// waits, memory limit, handle quota, unload hook timeout, denied
    /// categories, escalation and log rate are the domain's. Its
    /// engine-wide settings ([`ENGINE_WIDE_KEYS`](crate::ENGINE_WIDE_KEYS))
    /// must be the host's. To change a few keys of the host's policy, start
    /// from it: `let mut p = host.policy().clone(); p.apply_toml(...)?`.
    /// An embedder that makes many domains under one policy gives it as an
    /// `Arc<Policy>`: each domain shares it (checked as each is made, never
    /// copied).
    pub fn policy(mut self, policy: impl Into<Arc<Policy>>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// The domain's resolver (.NET: the load context's `Resolving`
    /// event): asked, with the import's module name, for an import that no
    /// module of the domain satisfies, before the host's libraries and
    /// functions. The module it returns (compiled by the same host) is
    /// loaded into the domain under that name, its own imports resolved the
    /// same way; `None` passes the import on. A module it returns for a
    /// name still being loaded is an [`ImportCycle`](LoadError::ImportCycle).
    /// It runs with the domain's lock held, so it must not call into the
    /// same domain.
    ///
    /// ```
    /// use custody_host::{DomainConfig, Host, Policy};
    ///
    /// let host = Host::new(Policy::default())?;
    /// let png = host.compile(br#"(module (func (export "decode") (result i32) i32.const 1))"#)?;
    /// let config = DomainConfig::new()
    ///     .resolver(move |name| (name == "png").then(|| png.clone()));
    /// let app = host.compile(br#"(module (import "png" "decode" (func (result i32)))
    ///     (export "run" (func 0)))"#)?;
    /// let domain = host.create_domain(config)?;
    /// domain.load("app", &app)?; // loads "png" first
    /// assert_eq!(domain.call("run", &[])?[0].unwrap_i32(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolver(
        mut self,
        resolver: impl Fn(&str) -> Option<Module> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }
}
