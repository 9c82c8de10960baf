//! A canary's end. A plugin with `canary = N` gets each new version as a
//! canary (`reload`): N% of new requests go to it, the rest to the stable
//! version, until an operator decides. [`ServerState::promote`] makes the
//! canary the only version and drains the old stable one;
//! [`ServerState::rollback`] drains the canary and leaves the stable one
//! serving everything. Either is the same change as a reload's swap (one
//! `Arc` replaced, the version that leaves kept among the draining ones
//! and drained: cooperative, then stopped past `drain_timeout`), and runs
//! one at a time with reloads.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::plugin::{Plugin, PluginVersion};
use crate::reload::{Drained, retire};
use crate::server::ServerState;

/// A promote or a rollback that was refused.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// No plugin has this name.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// The plugin runs no canary: nothing to promote or roll back.
    #[error(
        "plugin {plugin:?} runs no canary (version {stable} serves alone): \
         a reload of a plugin with `canary = N` starts one"
    )]
    NoCanary {
        /// The plugin.
        plugin: String,
        /// The version serving.
        stable: String,
    },
}

/// How a canary ended.
#[derive(Debug)]
pub struct CanaryEnded {
    /// The plugin.
    pub plugin: String,
    /// The version serving every request now.
    pub version: String,
    /// The version that left (the old stable one after a promote, the
    /// canary after a rollback).
    pub left: String,
    /// The leaving version's drain (it runs whether or not this is
    /// awaited).
    pub drain: JoinHandle<Drained>,
}

impl ServerState {
    /// Makes the canary of plugin `name` its only version; the old stable
    /// version drains as after a reload. Must run on a tokio runtime.
    ///
    /// # Errors
    /// [`CanaryError`]: no such plugin, or it runs no canary.
    pub async fn promote(self: &Arc<Self>, name: &str) -> Result<CanaryEnded, CanaryError> {
        self.end_canary(name, "promoted", Plugin::promote).await
    }

    /// Ends the canary of plugin `name`: its version drains as an old
    /// version does after a reload (its requests finish, stopped past
    /// `drain_timeout`, its domains unloaded), the stable version serves
    /// everything. Must run on a tokio runtime.
    ///
    /// # Errors
    /// [`CanaryError`]: no such plugin, or it runs no canary.
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<CanaryEnded, CanaryError> {
        self.end_canary(name, "rolled back", Plugin::rollback).await
    }

    /// [`promote`](Self::promote) or [`rollback`](Self::rollback):
    /// `change` is the plugin's, `ended` names it in the log.
    async fn end_canary(
        self: &Arc<Self>,
        name: &str,
        ended: &str,
        change: fn(&Plugin) -> Option<Arc<PluginVersion>>,
    ) -> Result<CanaryEnded, CanaryError> {
        let plugin = (self.plugins().iter())
            .find(|p| p.config.name == name)
            .cloned()
            .ok_or_else(|| CanaryError::UnknownPlugin(name.to_string()))?;
        let _one_at_a_time = self.reloading.lock().await;
        let Some(left) = retire(self, || change(&plugin)) else {
            return Err(CanaryError::NoCanary {
                plugin: name.to_string(),
                stable: plugin.current().id.clone(),
            });
        };
        let version = plugin.current().id.clone();
        tracing::info!(
            target: "custody::serve::reload",
            plugin = name, version, left = left.id, in_flight = left.in_flight.len(),
            "canary {ended}: the version that left drains"
        );
        Ok(CanaryEnded {
            plugin: name.to_string(),
            version,
            left: left.id.clone(),
            drain: self.start_drain(name, left),
        })
    }
}
