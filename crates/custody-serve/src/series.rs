//! The request metrics' series: the families `custody_serve_requests_total`
//! (by plugin, version and status) and `custody_serve_request_duration_seconds`
//! (by plugin and version), which `metrics` registers, and each plugin
//! version's own series of them ([`VersionSeries`]), found once and kept
//! by the version: recording a request is then an atomic add and a
//! histogram observation, with no label set built, hashed and looked up
//! per request. The version keeps the very series the registry encodes
//! (a `prometheus-client` metric is a shared handle), so nothing is
//! counted twice.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The latency buckets, in seconds: from half a millisecond (a bundled
/// example's call) to the default `request_timeout` (30 s).
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A request's labels: its plugin, the version that served it, its
/// status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    plugin: String,
    version: String,
    status: u16,
}

/// A plugin version's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VersionLabels {
    pub(crate) plugin: String,
    pub(crate) version: String,
}

/// The latency family: a histogram per version.
pub(crate) type LatencyFamily = Family<VersionLabels, Histogram, fn() -> Histogram>;

/// The two request families (shared handles: a clone is the same
/// family).
#[derive(Clone, Debug)]
pub(crate) struct RequestFamilies {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) durations: LatencyFamily,
}

impl Default for RequestFamilies {
    fn default() -> Self {
        RequestFamilies {
            requests: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        }
    }
}

impl RequestFamilies {
    /// `plugin`'s version `version`'s series.
    pub(crate) fn version(&self, plugin: &str, version: &str) -> VersionSeries {
        let labels = VersionLabels {
            plugin: plugin.to_string(),
            version: version.to_string(),
        };
        VersionSeries {
            latency: self.durations.get_or_create(&labels).clone(),
            by_status: RwLock::default(),
            labels,
            requests: self.requests.clone(),
        }
    }
}

/// One plugin version's series: its latency histogram, and its request
/// counter of each status it answered with so far.
#[derive(Debug)]
pub(crate) struct VersionSeries {
    latency: Histogram,
    /// Few statuses (200, a fault's): a list, searched in place.
    by_status: RwLock<Vec<(u16, Counter)>>,
    labels: VersionLabels,
    requests: Family<RequestLabels, Counter>,
}

impl VersionSeries {
    /// Records one request: its status and how long its response head
    /// took.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        self.count(status);
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts a request answered with `status` (its counter is found in
    /// the family once, then kept).
    fn count(&self, status: u16) {
        let known = self
            .by_status
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = known.iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        drop(known);
        let mut known = self
            .by_status
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !known.iter().any(|(s, _)| *s == status) {
            let labels = RequestLabels {
                plugin: self.labels.plugin.clone(),
                version: self.labels.version.clone(),
                status,
            };
            known.push((status, self.requests.get_or_create(&labels).clone()));
        }
        if let Some((_, counter)) = known.iter().find(|(s, _)| *s == status) {
            counter.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_version_counts_each_status_in_the_registered_family_once() {
        let families = RequestFamilies::default();
        let mut registry = Registry::default();
        registry.register("requests", "", families.requests.clone());
        registry.register("duration", "", families.durations.clone());
        let series = families.version("hello", "abc123");
        for status in [200, 200, 404, 200] {
            series.record(status, Duration::from_millis(1));
        }
        // A second series of the same version shares the same counters.
        families
            .version("hello", "abc123")
            .record(404, Duration::ZERO);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"requests_total{plugin="hello",version="abc123",status="200"} 3"#,
            r#"requests_total{plugin="hello",version="abc123",status="404"} 2"#,
            r#"duration_count{plugin="hello",version="abc123"} 5"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
