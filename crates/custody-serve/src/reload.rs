//! Hot reload without losing a request. A new version of a plugin is
//! loaded as the first one was ([`PluginVersion::load`]: compiled through
//! the host's module cache, instantiated in a trial domain, its `_routes`
//! called, the domain unloaded); a version that fails is refused, logged
//! with its cause, and the old one keeps serving. Then new requests go to
//! the new version ([`Plugin::swap`]: one `Arc` replaced under a lock),
//! while the old version's requests, each holding the old version and
//! its own domain, finish: the drain waits for its [`InFlight`] registry
//! to empty, and past `drain_timeout` stops what is left, then logs how
//! it ended. A plugin with `canary = N` gets the new version as a canary
//! instead ([`Plugin::start_canary`]: N% of new requests, a canary it
//! replaces drained as above); `canary` promotes or rolls it back.
//!
//! [`InFlight`]: crate::drain::InFlight
//! [`Plugin::swap`]: crate::plugin::Plugin::swap
//! [`Plugin::start_canary`]: crate::plugin::Plugin::start_canary

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::config::ConfigError;
use crate::metrics::ReloadOutcome;
use crate::plugin::PluginVersion;
use crate::server::ServerState;

/// After a forced drain, how long the stopped requests get to unload
/// their domains (a guest stops at its next epoch check, a host wait
/// wakes at once: this is a bound, not a pause). A stop past
/// `drain_timeout` waits it at most three times, one after the other: the
/// plugins' connections, the domains, the admin API's connections; so a
/// deployment's grace period is `shutdown_delay + drain_timeout + 3 *
/// FORCE_GRACE` at least (deploy/, checked by the CLI's tests).
pub const FORCE_GRACE: Duration = Duration::from_secs(5);

/// A reload that was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No plugin has this name.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// The new version does not load; the old one keeps serving.
    #[error("plugin {plugin:?}: the new version is refused, the old one keeps serving")]
    Refused {
        /// The plugin.
        plugin: String,
        /// Why the new version does not load.
        #[source]
        cause: ConfigError,
    },
    /// The blocking task that loads the new version failed.
    #[error("plugin {plugin:?}: the reload's task failed")]
    Task {
        /// The plugin.
        plugin: String,
        /// The task's failure.
        #[source]
        cause: tokio::task::JoinError,
    },
}

/// How a reload ended.
#[derive(Debug)]
pub enum Reloaded {
    /// The files hold a version that serves already (same content id:
    /// the stable one or the canary): nothing was swapped.
    Unchanged {
        /// The plugin.
        plugin: String,
        /// The version serving.
        version: String,
    },
    /// New requests go to `current`; `previous` drains.
    Swapped {
        /// The plugin.
        plugin: String,
        /// The version replaced.
        previous: String,
        /// The version serving now.
        current: String,
        /// The old version's drain (it runs whether or not this is
        /// awaited).
        drain: JoinHandle<Drained>,
    },
    /// The plugin has `canary = N`: the new version takes `percent` of
    /// new requests beside `stable` until it is promoted or rolled back.
    Canary {
        /// The plugin.
        plugin: String,
        /// The version taking every other request.
        stable: String,
        /// The new version, tried.
        canary: String,
        /// Its share of new requests, in percent.
        percent: u8,
        /// The canary it replaced, if one ran.
        replaced: Option<String>,
        /// The replaced canary's drain.
        drain: Option<JoinHandle<Drained>>,
    },
}

impl Reloaded {
    /// The version the reload leaves serving from the files: the one
    /// swapped in or found unchanged, or the canary.
    pub fn version(&self) -> &str {
        match self {
            Reloaded::Unchanged { version, .. } => version,
            Reloaded::Swapped { current, .. } => current,
            Reloaded::Canary { canary, .. } => canary,
        }
    }
}

/// How an old version's drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Its requests in flight when it was replaced.
    pub in_flight: usize,
    /// Those still running at `drain_timeout`, stopped.
    pub forced: usize,
    /// Those still in flight after being stopped and `FORCE_GRACE`
    /// (a bug if ever nonzero: logged as an error).
    pub left: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

impl ServerState {
    /// Reloads the plugin `name` from its files (see the module docs).
    /// Must run on a tokio runtime: the load runs on the blocking pool and
    /// the drain on a task of its own.
    ///
    /// # Errors
    /// [`ReloadError`]: no such plugin, or the new version is refused
    /// (also logged, with its cause, as target `custody::serve::reload`).
    pub async fn reload(self: &Arc<Self>, name: &str) -> Result<Reloaded, ReloadError> {
        let reloaded = self.reload_plugin(name).await;
        let outcome = match &reloaded {
            Ok(Reloaded::Swapped { .. }) => Some(ReloadOutcome::Swapped),
            Ok(Reloaded::Canary { .. }) => Some(ReloadOutcome::Canary),
            Ok(Reloaded::Unchanged { .. }) => Some(ReloadOutcome::Unchanged),
            Err(ReloadError::Refused { .. } | ReloadError::Task { .. }) => {
                Some(ReloadOutcome::Refused)
            }
            // Not a plugin's: a name the metrics must not grow a series for.
            Err(ReloadError::UnknownPlugin(_)) => None,
        };
        if let Some(outcome) = outcome {
            self.metrics().reload(name, outcome);
        }
        reloaded
    }

    /// [`reload`](Self::reload) but for the metrics.
    async fn reload_plugin(self: &Arc<Self>, name: &str) -> Result<Reloaded, ReloadError> {
        let plugin = (self.plugins().iter())
            .find(|p| p.config.name == name)
            .cloned()
            .ok_or_else(|| ReloadError::UnknownPlugin(name.to_string()))?;
        let _one_at_a_time = self.reloading.lock().await;
        let loaded = {
            let (state, plugin) = (Arc::clone(self), Arc::clone(&plugin));
            tokio::task::spawn_blocking(move || {
                PluginVersion::load(state.host(), &plugin.config, &state.file)
            })
            .await
        };
        let version = match loaded {
            Ok(Ok(version)) => version,
            Ok(Err(cause)) => {
                tracing::error!(
                    target: "custody::serve::reload",
                    plugin = name, version = plugin.current().id, error = %cause,
                    "reload refused: the old version keeps serving"
                );
                self.reload_diagnostic(
                    "reload-refused",
                    name,
                    &plugin.current().id,
                    cause.to_string(),
                );
                return Err(ReloadError::Refused {
                    plugin: name.to_string(),
                    cause,
                });
            }
            Err(cause) => {
                return Err(ReloadError::Task {
                    plugin: name.to_string(),
                    cause,
                });
            }
        };
        let serving = plugin.serving();
        // The files hold a version served already (the stable one, or
        // the canary): nothing changes.
        if let Some(same) = serving.versions().find(|v| v.id == version.id) {
            tracing::info!(
                target: "custody::serve::reload",
                plugin = name, version = same.id, "reload: unchanged"
            );
            return Ok(Reloaded::Unchanged {
                plugin: name.to_string(),
                version: same.id.clone(),
            });
        }
        let stable = serving.stable.id.clone();
        drop(serving);
        let current = version.id.clone();
        if let Some(percent) = plugin.config.canary {
            let replaced = retire(self, || plugin.start_canary(version, percent));
            tracing::info!(
                target: "custody::serve::reload",
                plugin = name, stable, canary = current, percent,
                replaced = replaced.as_ref().map(|v| v.id.as_str()),
                "reloaded as a canary: it takes its share of new requests until promoted or rolled back"
            );
            return Ok(Reloaded::Canary {
                plugin: name.to_string(),
                stable,
                canary: current,
                percent,
                replaced: replaced.as_ref().map(|v| v.id.clone()),
                drain: replaced.map(|v| self.start_drain(name, v)),
            });
        }
        let previous = retire(self, || plugin.swap(version));
        tracing::info!(
            target: "custody::serve::reload",
            plugin = name, previous = previous.id, current, in_flight = previous.in_flight.len(),
            "reloaded: new requests go to the new version; the old one drains"
        );
        Ok(Reloaded::Swapped {
            plugin: name.to_string(),
            previous: previous.id.clone(),
            current,
            drain: self.start_drain(name, previous),
        })
    }

    /// Drains `old`, a version of `plugin` that left, on a task of its
    /// own (see the module docs).
    pub(crate) fn start_drain(
        self: &Arc<Self>,
        plugin: &str,
        old: Arc<PluginVersion>,
    ) -> JoinHandle<Drained> {
        tokio::spawn(drain(Arc::clone(self), plugin.to_string(), old))
    }

    /// Reloads every plugin (SIGHUP), one after the other; each result
    /// is logged by [`reload`](Self::reload).
    pub async fn reload_all(self: &Arc<Self>) -> Vec<Result<Reloaded, ReloadError>> {
        let mut results = Vec::new();
        for plugin in self.plugins() {
            results.push(self.reload(&plugin.config.name).await);
        }
        results
    }

    /// Keeps a reload's event (`reload-refused`, `drain-forced`) among the
    /// recent diagnostics, with its plugin and version.
    fn reload_diagnostic(&self, kind: &str, plugin: &str, version: &str, message: String) {
        let mut entry = serde_json::Map::new();
        entry.insert("source".into(), "reload".into());
        entry.insert("kind".into(), kind.into());
        entry.insert("id".into(), serde_json::Value::Null);
        entry.insert("plugin".into(), plugin.into());
        entry.insert("version".into(), version.into());
        entry.insert("message".into(), message.into());
        self.recent.push(entry);
    }

    /// The versions replaced (by a reload, a promote or a rollback) whose
    /// requests are still draining.
    pub(crate) fn draining_versions(&self) -> Vec<Arc<PluginVersion>> {
        (self.draining.lock().unwrap_or_else(PoisonError::into_inner)).clone()
    }

    /// Every version with requests that may be in flight: each plugin's
    /// stable one and canary, and those still draining.
    pub(crate) fn live_versions(&self) -> Vec<Arc<PluginVersion>> {
        let mut versions: Vec<_> = (self.plugins().iter())
            .flat_map(|p| p.serving().versions().cloned().collect::<Vec<_>>())
            .collect();
        versions.extend(self.draining_versions());
        versions
    }
}

/// Changes the versions a plugin serves (`change`, one of
/// [`Plugin`](crate::plugin::Plugin)'s swaps), the version that leaves, if any, kept among the draining ones
/// at once, under the same lock (so a shutdown that begins meanwhile
/// finds it); `change`'s result is returned.
pub(crate) fn retire<Left>(state: &ServerState, change: impl FnOnce() -> Left) -> Left
where
    Left: Clone + Into<Option<Arc<PluginVersion>>>,
{
    let mut draining = state
        .draining
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let left = change();
    if let Some(version) = left.clone().into() {
        draining.push(version);
    }
    left
}

/// Waits for `old`'s requests, stops them past `drain_timeout`, logs the
/// outcome.
async fn drain(state: Arc<ServerState>, plugin: String, old: Arc<PluginVersion>) -> Drained {
    let begun = Instant::now();
    let in_flight = old.in_flight.len();
    let mut forced = 0;
    if tokio::time::timeout(state.drain_timeout, old.in_flight.drained())
        .await
        .is_err()
    {
        forced = old.in_flight.stop_all();
        let _ = tokio::time::timeout(FORCE_GRACE, old.in_flight.drained()).await;
    }
    let left = old.in_flight.len();
    // Its pool's idle domains serve no one now.
    if let Some(pool) = old.pool.clone() {
        let _ = tokio::task::spawn_blocking(move || pool.unload_idle()).await;
    }
    (state
        .draining
        .lock()
        .unwrap_or_else(PoisonError::into_inner))
    .retain(|v| !Arc::ptr_eq(v, &old));
    let drained = Drained {
        in_flight,
        forced,
        left,
        elapsed: begun.elapsed(),
    };
    let elapsed_ms = drained.elapsed.as_millis() as u64;
    if forced > 0 {
        let message = format!(
            "{forced} of {in_flight} requests were still running at drain_timeout and were stopped ({left} left after)"
        );
        state.reload_diagnostic("drain-forced", &plugin, &old.id, message);
    }
    if left > 0 {
        tracing::error!(
            target: "custody::serve::reload",
            plugin, version = old.id, in_flight, forced, left, elapsed_ms,
            "drain: requests still in flight after being stopped"
        );
    } else if forced > 0 {
        tracing::warn!(
            target: "custody::serve::reload",
            plugin, version = old.id, in_flight, forced, elapsed_ms,
            "drained: requests still running at drain_timeout were stopped"
        );
    } else {
        tracing::info!(
            target: "custody::serve::reload",
            plugin, version = old.id, in_flight, elapsed_ms,
            "drained: every request of the old version finished"
        );
    }
    drained
}
