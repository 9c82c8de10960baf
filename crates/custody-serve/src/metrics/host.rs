//! The scrape-time families: what the host and the pools hold when
//! `/metrics` is read. [`HostScrape::collect`] takes the numbers first
//! (the host's totals, its module cache's lookups, the process's
//! diagnostic counts, each pool's idle and lent domains), each behind at
//! most a short lock the request path also takes; encoding them happens
//! after, with no lock held. Nothing here is counted on the request path:
//! every number is one the host or a pool keeps anyway, so none can drift
//! from its source.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use custody_handle::diagnostics::{self, Assistant};
use custody_host::{Host, HostTotals};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::plugin::PluginVersion;

/// One pooled plugin's domains: idle, lent to a request.
#[derive(Debug, Default, Clone, Copy)]
struct PoolUse {
    idle: usize,
    in_use: usize,
}

/// The numbers of one scrape.
#[derive(Debug)]
pub(super) struct HostScrape {
    totals: HostTotals,
    /// Every handle type seen since the server started, open now or not
    /// (a type whose last handle closed reads 0 rather than vanishing).
    handle_types: BTreeSet<String>,
    cache_hits: u64,
    cache_misses: u64,
    /// The process's count of each assistant's condition.
    aborted: u64,
    blocked: u64,
    forced: u64,
    leaked: u64,
    /// By plugin: every live version's pool (the current one's, and a
    /// draining one's while its requests finish).
    pools: BTreeMap<String, PoolUse>,
}

/// A gauge's value from a count.
fn gauge(count: usize) -> ConstGauge {
    ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
}

impl HostScrape {
    /// The numbers now. `seen_types` gains the handle types open now and
    /// is read back whole.
    pub(super) fn collect(
        host: &Host,
        versions: &[Arc<PluginVersion>],
        seen_types: &mut BTreeSet<String>,
    ) -> HostScrape {
        let totals = host.totals();
        seen_types.extend(totals.handles_by_type.keys().cloned());
        let cache = host.cache_stats();
        let mut pools = BTreeMap::<String, PoolUse>::new();
        for version in versions {
            if let Some(pool) = &version.pool {
                let used = pools.entry(version.plugin.clone()).or_default();
                used.idle += pool.idle();
                used.in_use += pool.in_use();
            }
        }
        HostScrape {
            handle_types: seen_types.clone(),
            totals,
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            aborted: diagnostics::count(Assistant::CallAborted),
            blocked: diagnostics::count(Assistant::UnloadBlocked),
            forced: diagnostics::count(Assistant::UnloadForced),
            leaked: diagnostics::count(Assistant::DomainLeaked),
            pools,
        }
    }
}

/// An unlabelled counter family.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(family)
}

/// A counter family with one label, a sample per `(value, count)`.
fn labelled_counter(
    encoder: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    samples: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(value, count) in samples {
        ConstCounter::new(count).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

// Each help text is written without its final period: the encoder adds
// one.
impl Collector for HostScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = &self.totals;
        let mut family = encoder.encode_descriptor(
            "domains",
            "The host's live domains, by state (running: takes calls; unloading: its unload waits for what holds it)",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in [("running", totals.running), ("unloading", totals.unloading)] {
            gauge(count).encode(family.encode_family(&[("state", state)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "handles_open",
            "Handles the live domains hold, by resource type",
            None,
            MetricType::Gauge,
        )?;
        for kind in &self.handle_types {
            let count = totals.handles_by_type.get(kind).copied().unwrap_or(0);
            gauge(count).encode(family.encode_family(&[("type", kind.as_str())])?)?;
        }
        self.encode_ledger(&mut encoder)?;
        self.encode_events(&mut encoder)?;
        let mut family = encoder.encode_descriptor(
            "pool_domains",
            "Pooled plugins' long-lived domains, by plugin and state (idle, in_use: lent to a request)",
            None,
            MetricType::Gauge,
        )?;
        for (plugin, used) in &self.pools {
            for (state, count) in [("idle", used.idle), ("in_use", used.in_use)] {
                let labels = [("plugin", plugin.as_str()), ("state", state)];
                gauge(count).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl HostScrape {
    /// The host's ledger, every domain's added up (the ended ones' too).
    fn encode_ledger(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ledger = &self.totals.ledger;
        counter(
            encoder,
            "handles_opened",
            "Handles put in domains' tables (opened by guests or given to them), since the server started",
            ledger.opened,
        )?;
        labelled_counter(
            encoder,
            (
                "handles_closed",
                "Handles closed before their domain ended, by who closed them (guest, host)",
                "by",
            ),
            &[
                ("guest", ledger.closed_by_guest),
                ("host", ledger.closed_by_host),
            ],
        )?;
        labelled_counter(
            encoder,
            (
                "handles_released",
                "Handles their guest never closed, released by the host, by when (recycle, unload)",
                "at",
            ),
            &[
                ("recycle", ledger.released_at_recycle),
                ("unload", ledger.released_at_unload),
            ],
        )?;
        counter(
            encoder,
            "handle_release_failures",
            "Handle releases that failed (each a releaseHandleFailed diagnostic)",
            ledger.release_failures,
        )?;
        counter(
            encoder,
            "domain_recycles",
            "Domains recycled after a failed call (the policy's escalation)",
            ledger.recycles,
        )
    }

    /// The process's counts of the host's events, and the module cache's
    /// lookups.
    fn encode_events(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let events = [
            (
                "calls_aborted",
                "Guest calls that failed (a trap, the deadline, an abort), in this process",
                self.aborted,
            ),
            (
                "unloads_blocked",
                "Unloads still held past the policy's unload_grace (each an unloadBlocked diagnostic), in this process",
                self.blocked,
            ),
            (
                "unloads_forced",
                "Unloads forced: calls aborted, timers cancelled, refs invalidated (each an unloadForced diagnostic), in this process",
                self.forced,
            ),
            (
                "domains_leaked",
                "Unloads left waiting past unload_timeout (escalation.unload_blocked = wait), in this process",
                self.leaked,
            ),
            (
                "module_cache_hits",
                "Compilations answered from the host's module cache",
                self.cache_hits,
            ),
            (
                "module_cache_misses",
                "Compilations the host's module cache could not answer (compiled, or refused)",
                self.cache_misses,
            ),
        ];
        for (name, help, value) in events {
            counter(encoder, name, help, value)?;
        }
        Ok(())
    }
}
