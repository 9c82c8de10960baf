//! The server's recent diagnostics: a bounded ring of what it reported
//! with an id or a domain (every fault, with its request's id; the host's
//! diagnostics (release failures, forced and blocked unloads, aborted
//! calls), with their domain; refused reloads; forced drains), each a JSON
//! object numbered in order (`seq`). `/admin/diagnostics` reads the ring,
//! `?follow` the entries pushed after it asks (a broadcast channel, as
//! bounded: a follower too slow for it is told how many it missed). A
//! leaf above `body`: it knows no request, only JSON.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use custody_handle::diagnostics::{self, Diagnostic, Subscription};
use serde_json::{Map, Value};
use tokio::sync::broadcast;

/// How many diagnostics the ring keeps (and a follower may fall behind
/// by): the newest, the oldest dropped first. A power of two, as the
/// followers' channel's room is.
pub const RECENT_DIAGNOSTICS: usize = 256;

/// The ring and its followers.
pub(crate) struct RecentDiagnostics {
    ring: Mutex<Ring>,
    followers: broadcast::Sender<Arc<Value>>,
    capacity: usize,
}

struct Ring {
    next_seq: u64,
    entries: VecDeque<Arc<Value>>,
    /// Pushed out by newer entries.
    dropped: u64,
}

impl std::fmt::Debug for RecentDiagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentDiagnostics")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RecentDiagnostics {
    /// A ring of `capacity` entries (at least 1).
    pub(crate) fn new(capacity: usize) -> RecentDiagnostics {
        let capacity = capacity.max(1);
        RecentDiagnostics {
            ring: Mutex::new(Ring {
                next_seq: 1,
                entries: VecDeque::with_capacity(capacity),
                dropped: 0,
            }),
            followers: broadcast::channel(capacity).0,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `entry` (its `source` and `kind` set by the caller) with its
    /// `seq` and `time_ms` (Unix milliseconds), and sends it to the
    /// followers.
    pub(crate) fn push(&self, mut entry: Map<String, Value>) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut ring = self.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        entry.insert("seq".into(), seq.into());
        entry.insert("time_ms".into(), time_ms.into());
        let entry = Arc::new(Value::Object(entry));
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
            ring.dropped += 1;
        }
        ring.entries.push_back(Arc::clone(&entry));
        // Under the lock, so followers see the ring's order. No follower
        // is not an error.
        let _ = self.followers.send(entry);
    }

    /// The entries kept, oldest first, and how many were dropped before
    /// them.
    pub(crate) fn recent(&self) -> (Vec<Arc<Value>>, u64) {
        let ring = self.lock();
        (ring.entries.iter().cloned().collect(), ring.dropped)
    }

    /// The entries pushed from now on.
    pub(crate) fn follow(&self) -> broadcast::Receiver<Arc<Value>> {
        self.followers.subscribe()
    }

    /// Keeps the host's diagnostics (custody-handle's, process-wide) in
    /// `this` ring until the subscription drops. The ring is held weakly:
    /// the subscription never keeps it alive.
    pub(crate) fn subscribe_to_host(this: &Arc<RecentDiagnostics>) -> Subscription {
        let ring: Weak<RecentDiagnostics> = Arc::downgrade(this);
        diagnostics::subscribe(move |diagnostic| {
            if let Some(ring) = ring.upgrade() {
                ring.push(host_entry(diagnostic));
            }
        })
    }
}

/// A host diagnostic as an entry: its assistant as the kind, its domain,
/// its message, and the whole diagnostic as custody-handle serializes it.
fn host_entry(diagnostic: &Diagnostic) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("source".into(), "host".into());
    entry.insert("kind".into(), diagnostic.assistant.name().into());
    entry.insert("id".into(), Value::Null);
    entry.insert("domain".into(), diagnostic.domain.into());
    entry.insert("message".into(), diagnostic.message.clone().into());
    let whole = serde_json::to_value(diagnostic).unwrap_or(Value::Null);
    entry.insert("diagnostic".into(), whole);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str) -> Map<String, Value> {
        let mut entry = Map::new();
        entry.insert("kind".into(), kind.into());
        entry
    }

    #[test]
    fn the_ring_keeps_the_newest_in_order_and_counts_the_rest() {
        // A power of two: the broadcast channel rounds its room up to one.
        let ring = RecentDiagnostics::new(4);
        let mut follower = ring.follow();
        for n in 0..6 {
            ring.push(entry(&format!("k{n}")));
        }
        let (kept, dropped) = ring.recent();
        let kinds: Vec<&str> = kept.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["k2", "k3", "k4", "k5"]);
        let seqs: Vec<u64> = kept.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(dropped, 2);
        // A follower as slow as the ring is long is told what it missed.
        assert!(matches!(
            follower.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(2))
        ));
        assert_eq!(follower.try_recv().unwrap()["seq"], 3);
    }
}
