//! A map that holds at most `limit` entries, dropping the oldest first: the
//! shape of every host-side cache, so none grows without bound.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The map.
pub(crate) struct BoundedMap<K, V> {
    limit: usize,
    entries: HashMap<K, V>,
    /// Insertion order, for eviction.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub(crate) fn new(limit: usize) -> Self {
        BoundedMap {
            limit,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    /// Inserts `value` (replacing an entry under `key`), first dropping the
    /// oldest entries if the map is full. A limit of 0 keeps nothing.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.limit == 0 {
            return;
        }
        if self.entries.insert(key.clone(), value).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.limit {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The values, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries() {
        let mut map = BoundedMap::new(2);
        map.insert(1, "a");
        map.insert(2, "b");
        map.insert(1, "a2");
        map.insert(3, "c");
        assert_eq!(
            (map.get(&1), map.get(&2), map.get(&3)),
            (None, Some(&"b"), Some(&"c"))
        );
        assert_eq!(map.len(), 2);
        let mut none = BoundedMap::new(0);
        none.insert(1, ());
        assert_eq!(none.len(), 0);
    }
}
