//! A plugin and its loaded versions. A [`PluginVersion`] is everything a
//! request needs, fixed when it is loaded: the compiled modules, their
//! content hash (the `custody-plugin-version` header), the interface, the
//! domains' policy and the routes. A [`Plugin`] holds the versions it
//! serves ([`Serving`]: the stable one and, with `canary = N`, a canary
//! beside it) behind a lock that is held only to clone or replace an
//! `Arc`, so a reload (`reload`), a promote or a rollback (`canary`)
//! changes them atomically while requests keep the version they started
//! with. Which of the two a request gets is one atomic counter
//! ([`Canary::takes_next`]): no lock is taken to split.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use custody_host::{Domain, DomainConfig, Host, Manifest, Module, OnMemoryLimit, Policy};
use custody_wasi::{Stdio, WasiConfig, WasiDomain};
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::config::{ConfigError, Instances, Interface, PluginConfig};
use crate::drain::InFlight;
use crate::fault::FaultCounters;
use crate::pool::{DEFAULT_RECYCLE_AFTER, Pool, parse_recycle_after};
use crate::route::{self, Route, RouteMatch};
use crate::series::VersionSeries;

/// The export that makes a module a custody-ABI plugin.
pub const HANDLE_EXPORT: &str = "handle";

/// The default `pool` of a pooled plugin.
pub const DEFAULT_POOL: u32 = 8;

/// One loaded version of a plugin.
#[derive(Debug)]
pub struct PluginVersion {
    /// The plugin's name.
    pub plugin: String,
    /// The content hash, short (12 hex digits of SHA-256 over the module
    /// bytes, or over the manifest and its modules').
    pub id: String,
    /// The modules, in load order, with the names they load under.
    pub modules: Vec<(String, Module)>,
    /// The request interface.
    pub interface: Interface,
    /// The policy of each request's domain (shared by them all).
    pub policy: Arc<Policy>,
    /// Pre-opens: guest path, host directory.
    pub preopens: Vec<(String, std::path::PathBuf)>,
    /// The routes and the export each calls, the plugin's own first.
    pub routes: Vec<(Route, String)>,
    /// Its requests that still have a domain (a reload drains them).
    pub in_flight: Arc<InFlight>,
    /// Its long-lived domains, with `instances = "pooled"`.
    pub pool: Option<Arc<Pool>>,
    /// Its requests answered (counted when the response head is made,
    /// as the metrics count them).
    pub served: AtomicU64,
    /// Its request metrics' series, found at its first request.
    pub(crate) series: OnceLock<VersionSeries>,
    /// `id` as the `custody-plugin-version` header's value, made once.
    pub(crate) id_header: HeaderValue,
}

/// Whether request `k` of a canary's (counted from 0 when the canary
/// began) goes to the canary: when `(k * percent) % 100 < percent`, so
/// every 100 consecutive requests send exactly `percent` to it, spread
/// out (25: requests 0, 4, 8, ...).
pub fn canary_takes(k: u64, percent: u8) -> bool {
    let percent = u64::from(percent.min(100));
    (k % 100) * percent % 100 < percent
}

/// A version being tried beside the stable one.
#[derive(Debug)]
pub struct Canary {
    /// The version tried.
    pub version: Arc<PluginVersion>,
    /// The share of new requests it takes, in percent.
    pub percent: u8,
    /// The plugin's requests since the canary began: the split's counter.
    next: AtomicU64,
}

impl Canary {
    /// A canary taking `percent` of new requests, its counter at 0.
    pub fn new(version: Arc<PluginVersion>, percent: u8) -> Canary {
        Canary {
            version,
            percent: percent.min(100),
            next: AtomicU64::new(0),
        }
    }

    /// Counts one more request of the plugin; whether it goes to the
    /// canary ([`canary_takes`]).
    pub fn takes_next(&self) -> bool {
        canary_takes(self.next.fetch_add(1, Ordering::Relaxed), self.percent)
    }
}

/// The versions a plugin serves now: the stable one, and a canary if one
/// runs.
#[derive(Debug)]
pub struct Serving {
    /// The version that takes every request the canary does not.
    pub stable: Arc<PluginVersion>,
    /// The version tried beside it, if any (shared: the stable version
    /// swapped under it keeps the canary and its counter).
    pub canary: Option<Arc<Canary>>,
}

impl Serving {
    /// The stable version alone.
    fn stable(version: Arc<PluginVersion>) -> Arc<Serving> {
        Arc::new(Serving {
            stable: version,
            canary: None,
        })
    }

    /// The stable version, then the canary's if one runs.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<PluginVersion>> {
        std::iter::once(&self.stable).chain(self.canary.as_ref().map(|c| &c.version))
    }

    /// The version the next request goes to (one atomic step of the
    /// canary's counter), then the other one (the same without a canary).
    pub fn next(&self) -> (&Arc<PluginVersion>, &Arc<PluginVersion>) {
        match &self.canary {
            Some(canary) if canary.takes_next() => (&canary.version, &self.stable),
            Some(canary) => (&self.stable, &canary.version),
            None => (&self.stable, &self.stable),
        }
    }
}

/// A plugin: its configuration, its concurrency limit and its current
/// version.
#[derive(Debug)]
pub struct Plugin {
    /// The configuration it was loaded from.
    pub config: PluginConfig,
    /// `max_concurrency` permits.
    pub permits: Arc<Semaphore>,
    /// Its faults, every version's (each also counted by the server's
    /// counters, their parent).
    pub faults: Arc<FaultCounters>,
    serving: RwLock<Arc<Serving>>,
}

impl Plugin {
    /// Loads the first version of a plugin; its fault counters count into
    /// `server_faults` too.
    ///
    /// # Errors
    /// As [`PluginVersion::load`].
    pub fn load(
        host: &Host,
        config: PluginConfig,
        file: &Path,
        server_faults: Arc<FaultCounters>,
    ) -> Result<Plugin, ConfigError> {
        let version = PluginVersion::load(host, &config, file)?;
        Ok(Plugin {
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            faults: Arc::new(FaultCounters::child_of(server_faults)),
            config,
            serving: RwLock::new(Serving::stable(Arc::new(version))),
        })
    }

    /// Its requests in flight, of every version: those holding one of its
    /// `max_concurrency` permits (a request holds one until its domain
    /// is unloaded).
    pub fn in_flight(&self) -> usize {
        (self.config.max_concurrency).saturating_sub(self.permits.available_permits())
    }

    /// The versions it serves now.
    pub fn serving(&self) -> Arc<Serving> {
        Arc::clone(&self.serving.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The stable version: the one every new request goes to but the
    /// canary's share.
    pub fn current(&self) -> Arc<PluginVersion> {
        Arc::clone(&self.serving().stable)
    }

    /// Replaces the versions served with what `change` makes of them,
    /// unless it makes nothing; the versions served before, returned.
    fn change(&self, change: impl FnOnce(&Serving) -> Option<Serving>) -> Option<Arc<Serving>> {
        let mut serving = self.serving.write().unwrap_or_else(PoisonError::into_inner);
        let next = change(&serving)?;
        Some(std::mem::replace(&mut *serving, Arc::new(next)))
    }

    /// Makes `version` the stable one (a canary, if any, runs on beside
    /// it); the old stable one, returned, lives on in the requests that
    /// hold it.
    pub fn swap(&self, version: PluginVersion) -> Arc<PluginVersion> {
        let mut serving = self.serving.write().unwrap_or_else(PoisonError::into_inner);
        let next = Serving {
            stable: Arc::new(version),
            canary: serving.canary.clone(),
        };
        Arc::clone(&std::mem::replace(&mut *serving, Arc::new(next)).stable)
    }

    /// Makes `version` a canary beside the stable version, taking
    /// `percent` of new requests (its counter from 0); the version of the
    /// canary it replaces, if one ran.
    pub fn start_canary(&self, version: PluginVersion, percent: u8) -> Option<Arc<PluginVersion>> {
        let canary = Arc::new(Canary::new(Arc::new(version), percent));
        let old = self.change(|serving| {
            Some(Serving {
                stable: Arc::clone(&serving.stable),
                canary: Some(canary),
            })
        })?;
        old.canary.as_ref().map(|c| Arc::clone(&c.version))
    }

    /// Makes the canary the stable version, alone; the old stable one
    /// returned. `None` (nothing changed) without a canary.
    pub fn promote(&self) -> Option<Arc<PluginVersion>> {
        let old = self.change(|serving| {
            Some(Serving {
                stable: Arc::clone(&serving.canary.as_ref()?.version),
                canary: None,
            })
        })?;
        Some(Arc::clone(&old.stable))
    }

    /// Ends the canary: the stable version serves alone; the canary's
    /// version returned. `None` (nothing changed) without a canary.
    pub fn rollback(&self) -> Option<Arc<PluginVersion>> {
        let old = self.change(|serving| {
            serving.canary.as_ref()?;
            Some(Serving {
                stable: Arc::clone(&serving.stable),
                canary: None,
            })
        })?;
        old.canary.as_ref().map(|c| Arc::clone(&c.version))
    }
}

/// The short content hash of some bytes.
pub fn content_id(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl PluginVersion {
    /// Compiles a plugin's module (or manifest), checks it against its
    /// configuration, instantiates it once in a domain (so a module that
    /// cannot load is refused here, not at its first request), and calls
    /// `_routes` there if the module exports it.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the plugin: the file cannot be read or
    /// compiled, the policy is refused, `pooled` is asked (not in this
    /// build), a custody-ABI module exports no `handle`, the entrypoint
    /// is not exported, the module does not instantiate, `_routes` fails
    /// or writes a bad line.
    pub fn load(
        host: &Host,
        config: &PluginConfig,
        file: &Path,
    ) -> Result<PluginVersion, ConfigError> {
        let fail = |message: String| {
            ConfigError::new(file, format!("plugin {:?}: {message}", config.name))
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
        };
        let mut policy = host.policy().clone();
        // A guest over its memory limit is stopped, not left to trap on a
        // failed `memory.grow`: the fault is then `memory`, not `trap`.
        policy.on_memory_limit = OnMemoryLimit::Abort;
        let mut preopens = Vec::new();
        let (id, modules) = match (&config.module, &config.manifest) {
            (Some(path), _) => {
                let bytes = match config.embedded {
                    Some(bytes) => bytes.to_vec(),
                    None => read(path)?,
                };
                let module = host
                    .compile(&bytes)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
                (content_id(&[&bytes]), vec![(config.name.clone(), module)])
            }
            (None, Some(path)) => {
                let manifest = Manifest::from_file(path).map_err(|e| fail(e.to_string()))?;
                let mut parts = vec![read(path)?];
                for module in manifest.modules() {
                    parts.push(read(&module.path)?);
                }
                let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                policy = manifest
                    .domain_policy(&policy)
                    .map_err(|e| fail(e.to_string()))?;
                preopens.extend(manifest.preopens().iter().cloned());
                let modules = host
                    .compile_manifest(&manifest)
                    .map_err(|e| fail(e.to_string()))?;
                (content_id(&parts), modules)
            }
            (None, None) => return Err(fail("neither `module` nor `manifest` is set".into())),
        };
        if let Some(overrides) = &config.policy {
            overrides
                .apply_to(&mut policy)
                .map_err(|e| fail(format!("policy: {e}")))?;
        }
        policy.deadline = Some(config.request_timeout);
        let exports = |modules: &[(String, Module)], name: &str| {
            modules
                .iter()
                .any(|(_, m)| m.get_export(name).is_some_and(|e| e.func().is_some()))
        };
        let interface = config
            .interface
            .unwrap_or(if exports(&modules, HANDLE_EXPORT) {
                Interface::Custody
            } else {
                Interface::Wagi
            });
        match (interface, config.instances) {
            (Interface::Custody, _) => {
                if !exports(&modules, HANDLE_EXPORT) {
                    return Err(fail(format!(
                        "interface \"custody\": the module exports no `{HANDLE_EXPORT}` function"
                    )));
                }
                // A plugin that imports no WASI runs in domains without it:
                // no WASI state is made (nor dropped) per request.
                let imports_wasi = (modules.iter())
                    .any(|(_, m)| m.imports().any(|i| i.module() == custody_wasi::MODULE));
                if !imports_wasi {
                    policy.wasi = false;
                }
            }
            (Interface::Wagi, Instances::Pooled) => {
                return Err(fail(
                    "instances = \"pooled\" with interface = \"wagi\": a WASI command runs its \
                     entrypoint once per instance, so every request needs a fresh domain \
                     (use \"per-request\")"
                        .into(),
                ));
            }
            (Interface::Wagi, Instances::PerRequest) => {}
        }
        preopens.extend(
            config
                .dirs
                .iter()
                .map(|(guest, dir)| (guest.clone(), dir.clone())),
        );
        let base = Route::parse(&config.route).map_err(|e| fail(format!("route: {e}")))?;
        // Hex digits: always a header value.
        let id_header =
            HeaderValue::from_str(&id).map_err(|e| fail(format!("version id {id:?}: {e}")))?;
        let mut version = PluginVersion {
            plugin: config.name.clone(),
            in_flight: Arc::new(InFlight::new(&config.name, &id)),
            id,
            modules,
            interface,
            policy: Arc::new(policy),
            preopens,
            // A custody-ABI plugin is always called at `handle`.
            routes: vec![(
                base.clone(),
                match interface {
                    Interface::Custody => HANDLE_EXPORT.to_string(),
                    Interface::Wagi => config.entrypoint.clone(),
                },
            )],
            served: AtomicU64::new(0),
            series: OnceLock::new(),
            id_header,
            pool: match config.instances {
                Instances::Pooled => {
                    let range = match &config.recycle_after {
                        Some(text) => parse_recycle_after(text).map_err(fail)?,
                        None => DEFAULT_RECYCLE_AFTER,
                    };
                    let size = config.pool.unwrap_or(DEFAULT_POOL).max(1) as usize;
                    Some(Arc::new(Pool::new(size, range)))
                }
                Instances::PerRequest => None,
            },
        };
        let probe = version
            .domain(host, || {
                WasiConfig::new()
                    .stdout(Stdio::Capture)
                    .stderr(Stdio::Capture)
            })
            .map_err(|e| fail(format!("does not instantiate: {e}")))?;
        let routes = if interface == Interface::Wagi && exports(&version.modules, "_routes") {
            let called = probe.call("_routes", &[]);
            let output = probe.take_stdout();
            let _ = probe.unload();
            match called {
                Ok(_) | Err(custody_host::CallError::Exit(0)) => {}
                Err(e) => return Err(fail(format!("_routes: {e}"))),
            }
            let text = String::from_utf8(output)
                .map_err(|_| fail("_routes wrote invalid UTF-8".into()))?;
            route::parse_sub_routes(&base, &text).map_err(fail)?
        } else {
            let _ = probe.unload();
            Vec::new()
        };
        version.routes.extend(routes);
        for (route, export) in &version.routes {
            if !exports(&version.modules, export) {
                return Err(fail(format!(
                    "route {route}: no exported function {export:?}"
                )));
            }
        }
        Ok(version)
    }

    /// Its most specific route matching `path`: the route's index in
    /// `routes`, and the match.
    pub fn route_for(&self, path: &str) -> Option<(usize, RouteMatch)> {
        let at = self.best_route(path)?;
        Some((at, self.routes[at].0.matches(path)?))
    }

    /// The index of the most specific of this version's routes that `path`
    /// matches, found without building a [`RouteMatch`].
    pub fn best_route(&self, path: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (at, (route, _)) in self.routes.iter().enumerate() {
            if route.rest_of(path).is_some()
                && best.is_none_or(|i| route.specificity() > self.routes[i].0.specificity())
            {
                best = Some(at);
            }
        }
        best
    }

    /// Counts one request it answered.
    pub fn count_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// A fresh domain of this version with `wasi()` as its WASI setup, its
    /// modules loaded (a module that fails to load unloads the domain). A
    /// version whose policy has WASI off (a custody-ABI plugin that
    /// imports none) has no WASI setup: `wasi` is not called.
    ///
    /// # Errors
    /// The host's or the load's error, as text.
    pub fn domain(&self, host: &Host, wasi: impl FnOnce() -> WasiConfig) -> Result<Domain, String> {
        let mut config = DomainConfig::new().policy(Arc::clone(&self.policy));
        if self.policy.wasi {
            config = config.extension(wasi());
        }
        for (guest, dir) in &self.preopens {
            config = config.preopen(guest.clone(), dir.clone());
        }
        let domain = host.create_domain(config).map_err(|e| e.to_string())?;
        for (name, module) in &self.modules {
            if let Err(e) = domain.load(name, module) {
                let _ = domain.unload();
                return Err(format!("module {name:?}: {e}"));
            }
        }
        Ok(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::canary_takes;

    #[test]
    fn every_hundred_requests_send_exactly_the_percentage_to_the_canary() {
        for percent in 0..=100u8 {
            for start in [0u64, 1, 37, 100, u64::MAX - 250] {
                let taken = (start..start + 100)
                    .filter(|k| canary_takes(*k, percent))
                    .count();
                assert_eq!(taken, usize::from(percent), "{percent}% from {start}");
            }
        }
        let first: Vec<bool> = (0..8).map(|k| canary_takes(k, 25)).collect();
        assert_eq!(
            first,
            [true, false, false, false, true, false, false, false]
        );
    }
}
