//! The requests of one plugin version that still have a domain: each
//! request enters the version's [`InFlight`] registry before its domain is
//! made and leaves it once the domain is unloaded. A reload waits on the
//! old version's registry to drain (its requests are roots of their own
//! domains and finish), and after `drain_timeout` stops what is left
//! through each entry's stop function; shutdown does the same for every
//! version. The same entries are what the admin API lists
//! (`/admin/requests`) and cancels by id: each names its request (id,
//! plugin, version, start) and holds its [`Abort`], which knows the
//! request's domain weakly. The registry knows nothing of HTTP, so every
//! interface registers the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::abort::Abort;
use crate::request_span::RequestId;

/// One request in flight, as the registry keeps it.
pub(crate) struct InFlightRequest {
    /// The request's id (the one its faults carry).
    pub(crate) id: RequestId,
    /// Its plugin (shared with its registry's every request).
    pub(crate) plugin: Arc<str>,
    /// The version serving it (shared likewise).
    pub(crate) version: Arc<str>,
    /// When it entered.
    pub(crate) started: Instant,
    /// Stops its guest (its call aborts, or never starts); knows its
    /// domain once made.
    pub(crate) abort: Abort,
}

/// The in-flight requests of one version.
pub struct InFlight {
    /// The plugin and version every entry names.
    plugin: Arc<str>,
    version: Arc<str>,
    entries: Mutex<Entries>,
    /// Woken (every waiter) when the last entry leaves.
    emptied: Notify,
}

#[derive(Default)]
struct Entries {
    next: u64,
    live: HashMap<u64, Arc<InFlightRequest>>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("len", &self.len())
            .finish()
    }
}

/// One request's place in its version's registry; dropping it leaves.
#[must_use = "the request leaves the registry when this drops"]
pub struct InFlightGuard {
    registry: Arc<InFlight>,
    key: u64,
}

impl std::fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightGuard")
            .field("key", &self.key)
            .finish()
    }
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry of `plugin`'s version `version`.
    pub fn new(plugin: &str, version: &str) -> InFlight {
        InFlight {
            plugin: Arc::from(plugin),
            version: Arc::from(version),
            entries: Mutex::default(),
            emptied: Notify::new(),
        }
    }

    /// Enters request `id`; its `abort` stops its guest if the drain is
    /// forced.
    pub(crate) fn enter(self: &Arc<Self>, id: RequestId, abort: Abort) -> InFlightGuard {
        let request = InFlightRequest {
            id,
            plugin: Arc::clone(&self.plugin),
            version: Arc::clone(&self.version),
            started: Instant::now(),
            abort,
        };
        let mut entries = self.lock();
        let key = entries.next;
        entries.next += 1;
        entries.live.insert(key, Arc::new(request));
        InFlightGuard {
            registry: Arc::clone(self),
            key,
        }
    }

    /// How many requests are in flight.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether no request is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes when no request is in flight (at once if none is).
    pub async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            let mut emptied = std::pin::pin!(emptied);
            // Registered before the check, so a last request leaving
            // between the check and the wait still wakes it.
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// Every request in flight now, oldest first.
    pub(crate) fn requests(&self) -> Vec<Arc<InFlightRequest>> {
        let mut requests: Vec<_> = self.lock().live.values().cloned().collect();
        requests.sort_by_key(|r| r.started);
        requests
    }

    /// Stops every request in flight; how many there were. They leave the
    /// registry as their domains unload.
    pub fn stop_all(&self) -> usize {
        // The aborts run outside the lock: one may take locks of its own
        // (the domain's), and a request may leave meanwhile.
        let requests: Vec<_> = self.lock().live.values().cloned().collect();
        for request in &requests {
            request.abort.abort();
        }
        requests.len()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut entries = self.registry.lock();
        entries.live.remove(&self.key);
        if entries.live.is_empty() {
            drop(entries);
            self.registry.emptied.notify_waiters();
        }
    }
}
