//! Pooled instances (`instances = "pooled"`, custody-ABI plugins only):
//! up to `pool` long-lived domains per plugin version, each serving one
//! request at a time and retired (unloaded) after a random count of
//! requests in `recycle_after` (so a fleet's domains do not all retire at
//! once), after a failed call (a trap, the deadline, an abort), or when a
//! request leaves a handle behind in it (the guest kept or duplicated one
//! of its two handles: a pooled domain keeps nothing of one request for
//! the next). A request that finds no idle domain gets a fresh one, kept
//! afterwards only if the pool has room.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use custody_host::Domain;

/// The default `recycle_after` range.
pub const DEFAULT_RECYCLE_AFTER: (u32, u32) = (500, 1000);

/// Reads `"500..1000"`: at least 1, the end above the start.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_recycle_after(text: &str) -> Result<(u32, u32), String> {
    let (low, high) = text
        .split_once("..")
        .ok_or_else(|| format!("recycle_after {text:?} is not `LOW..HIGH`"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("recycle_after {text:?}: {s:?} is not a count"))
    };
    let (low, high) = (number(low)?, number(high)?);
    if low == 0 || high <= low {
        return Err(format!(
            "recycle_after {text:?}: needs 1 <= LOW < HIGH (a domain serves LOW to HIGH - 1 requests)"
        ));
    }
    Ok((low, high))
}

/// One pooled domain, lent to one request at a time.
pub(crate) struct Pooled {
    pub(crate) domain: Domain,
    served: u32,
    retire_after: u32,
    /// While lent to a request: counted in the pool's domains in use.
    lent: Option<Lent>,
}

/// One domain in use, counted until dropped (given back, or dropped by a
/// request's task that panicked: the count cannot drift).
struct Lent(Arc<AtomicUsize>);

impl Lent {
    fn new(in_use: &Arc<AtomicUsize>) -> Lent {
        in_use.fetch_add(1, Ordering::Relaxed);
        Lent(Arc::clone(in_use))
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A version's pool.
pub struct Pool {
    idle: Mutex<Vec<Pooled>>,
    /// Domains lent to requests now.
    in_use: Arc<AtomicUsize>,
    size: usize,
    recycle_after: (u32, u32),
    random: Mutex<u64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.lock().len())
            .field("size", &self.size)
            .field("recycle_after", &self.recycle_after)
            .finish()
    }
}

impl Pool {
    /// A pool of at most `size` idle domains, each retired after a count
    /// in `recycle_after` (`low..high`).
    pub fn new(size: usize, recycle_after: (u32, u32)) -> Pool {
        let seed = RandomState::new().build_hasher().finish() | 1;
        Pool {
            idle: Mutex::default(),
            in_use: Arc::default(),
            size,
            recycle_after,
            random: Mutex::new(seed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Pooled>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A count in `recycle_after` (xorshift: spread, not secret).
    fn retire_after(&self) -> u32 {
        let mut x = self.random.lock().unwrap_or_else(PoisonError::into_inner);
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let (low, high) = self.recycle_after;
        low + (*x % u64::from(high - low)) as u32
    }

    /// An idle domain, else one `make` makes.
    ///
    /// # Errors
    /// `make`'s.
    pub(crate) fn take(
        &self,
        make: impl FnOnce() -> Result<Domain, String>,
    ) -> Result<Pooled, String> {
        // An idle domain an operator unloaded (the admin API) is gone:
        // dropped here (its unload completes, or it unloads with its last
        // `Domain`), never lent.
        loop {
            let Some(mut pooled) = self.lock().pop() else {
                break;
            };
            if pooled.domain.state() == custody_host::DomainState::Running {
                pooled.lent = Some(Lent::new(&self.in_use));
                return Ok(pooled);
            }
        }
        Ok(Pooled {
            domain: make()?,
            served: 0,
            retire_after: self.retire_after(),
            lent: Some(Lent::new(&self.in_use)),
        })
    }

    /// Takes the domain back after a request: kept for the next one if the
    /// call went well, the domain holds no handle and runs on, its count is
    /// not reached and the pool has room; else unloaded. Whether it was
    /// kept.
    pub(crate) fn give_back(&self, mut pooled: Pooled, call_ok: bool) -> bool {
        pooled.lent = None;
        pooled.served += 1;
        let domain = &pooled.domain;
        let reusable = call_ok
            && pooled.served < pooled.retire_after
            && domain.table().is_empty()
            && domain.state() == custody_host::DomainState::Running;
        if reusable {
            let mut idle = self.lock();
            if idle.len() < self.size {
                idle.push(pooled);
                return true;
            }
        }
        let _ = pooled.domain.unload();
        false
    }

    /// Unloads every idle domain (a reload's drain, a shutdown); how many.
    pub fn unload_idle(&self) -> usize {
        let idle = std::mem::take(&mut *self.lock());
        let count = idle.len();
        for pooled in idle {
            let _ = pooled.domain.unload();
        }
        count
    }

    /// The ids of the idle domains now.
    pub(crate) fn idle_domains(&self) -> Vec<u64> {
        self.lock().iter().map(|p| p.domain.id()).collect()
    }

    /// Idle domains now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Domains lent to requests now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.unload_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_after_is_a_range_of_counts() {
        assert_eq!(parse_recycle_after("500..1000"), Ok((500, 1000)));
        assert_eq!(parse_recycle_after(" 1 .. 2 "), Ok((1, 2)));
        for bad in ["", "5", "0..3", "3..3", "4..2", "a..b", "-1..2"] {
            assert!(parse_recycle_after(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_are_spread_over_the_range() {
        let pool = Pool::new(2, (10, 14));
        let counts: Vec<u32> = (0..200).map(|_| pool.retire_after()).collect();
        assert!(counts.iter().all(|c| (10..14).contains(c)));
        for c in 10..14 {
            assert!(counts.contains(&c), "{c} never drawn");
        }
    }
}
