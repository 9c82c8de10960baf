//! The server's Prometheus metrics, through the Prometheus project's own
//! client (`prometheus-client`), in the OpenMetrics text format that
//! Prometheus scrapes. This module owns the registry; the server records a
//! request once its response head is made ([`Metrics::request`]), a reload
//! once it ends ([`Metrics::reload`]); the fault counters and the requests
//! in flight are read when scraped, so they are never a second count that
//! could drift from the first. What the host and the pools hold (domains
//! by state, handles by type, the ledger, the host's events, the module
//! cache, the pools' use) is read when scraped too, by [`host`]. Names
//! follow the Prometheus naming guide: the `custody_serve_` prefix, units
//! in names, `_total` counters; labels take bounded values only (no
//! request or domain ids).

mod host;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use custody_host::Host;

use crate::fault::{FaultCounters, FaultKind};
use crate::plugin::{Plugin, PluginVersion};
use crate::series::RequestFamilies;
use host::HostScrape;

/// The media type of [`Metrics::encode`]'s text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric's name begins with this.
const PREFIX: &str = "custody_serve";

/// A plugin's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

/// A reload's labels: the plugin and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    plugin: String,
    outcome: &'static str,
}

/// How a reload ended, for `custody_serve_plugin_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version serves.
    Swapped,
    /// The files hold the version serving.
    Unchanged,
    /// The new version was refused (or its load failed).
    Refused,
    /// A new version runs as a canary (`canary = N`).
    Canary,
}

impl ReloadOutcome {
    /// The `outcome` label.
    pub fn name(self) -> &'static str {
        match self {
            ReloadOutcome::Swapped => "swapped",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Refused => "refused",
            ReloadOutcome::Canary => "canary",
        }
    }
}

/// The registry and the metrics the server records into.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The request families, whose series each version keeps
    /// (`PluginVersion::series`).
    families: RequestFamilies,
    in_flight: Family<PluginLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    /// The handle types seen open so far (`custody_serve_handles_open`
    /// keeps each, at 0 once none is open).
    handle_types: Mutex<BTreeSet<String>>,
}

/// The server's fault counters, read when scraped.
#[derive(Debug)]
struct FaultsCollector(Arc<FaultCounters>);

impl Collector for FaultsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "faults",
            "Requests that ended in a fault, by kind (docs/SERVER.md, Faults)",
            None,
            MetricType::Counter,
        )?;
        for kind in FaultKind::ALL {
            let labels = [("kind", kind.name())];
            let counter = ConstCounter::new(self.0.get(kind));
            counter.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    // Each help text is written without its final period: the encoder
    // adds one.

    /// A registry with every metric of the server; the faults are read
    /// from `faults` when scraped.
    pub fn new(faults: Arc<FaultCounters>) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = RequestFamilies::default();
        registry.register(
            "requests",
            "Plugin requests answered, by plugin, version and status",
            families.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "From a plugin request's arrival to its response head",
            Unit::Seconds,
            families.durations.clone(),
        );
        let in_flight = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "requests_in_flight",
            "Plugin requests whose domain is not unloaded yet, by plugin",
            in_flight.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "plugin_reloads",
            "Plugin reloads, by plugin and outcome (swapped, unchanged, refused, canary)",
            reloads.clone(),
        );
        registry.register_collector(Box::new(FaultsCollector(faults)));
        Metrics {
            registry,
            families,
            in_flight,
            reloads,
            handle_types: Mutex::default(),
        }
    }

    /// Records one plugin request served by `version`: its status and how
    /// long its response head took.
    pub fn request(&self, version: &PluginVersion, status: u16, elapsed: Duration) {
        (version.series)
            .get_or_init(|| self.families.version(&version.plugin, &version.id))
            .record(status, elapsed);
    }

    /// Records how a reload of `plugin` ended.
    pub fn reload(&self, plugin: &str, outcome: ReloadOutcome) {
        let labels = ReloadLabels {
            plugin: plugin.to_string(),
            outcome: outcome.name(),
        };
        self.reloads.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text of every metric ([`METRICS_CONTENT_TYPE`]),
    /// the requests in flight read from `plugins` now, the domains,
    /// handles, ledger and module cache from `host`, the pools from
    /// `versions` (every live version).
    ///
    /// # Errors
    /// The encoder refused a metric (a bug: writing to a `String` cannot
    /// fail otherwise).
    pub fn encode(
        &self,
        host: &Host,
        plugins: &[Arc<Plugin>],
        versions: &[Arc<PluginVersion>],
    ) -> Result<String, std::fmt::Error> {
        for plugin in plugins {
            let labels = PluginLabels {
                plugin: plugin.config.name.clone(),
            };
            let in_flight = i64::try_from(plugin.in_flight()).unwrap_or(i64::MAX);
            self.in_flight.get_or_create(&labels).set(in_flight);
        }
        // The numbers first, then the text: no lock is held while encoding.
        let scrape = {
            let mut seen = (self.handle_types.lock()).unwrap_or_else(PoisonError::into_inner);
            HostScrape::collect(host, versions, &mut seen)
        };
        let mut scraped = Registry::with_prefix(PREFIX);
        scraped.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)?;
        prometheus_client::encoding::text::encode_registry(&mut text, &scraped)?;
        prometheus_client::encoding::text::encode_eof(&mut text)?;
        Ok(text)
    }
}
