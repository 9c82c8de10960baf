//! How many live slots hold each resource type: kept by the allocator,
//! under the lock it takes anyway to reserve and free a slot, so counting
//! costs a lookup nothing and an insert or removal a short scan of a
//! handful of entries.

/// Live slots by resource type (`type_name::<T>()`). A table holds few
/// types, so a short list beats a map.
#[derive(Debug, Default)]
pub(super) struct Kinds(Vec<(&'static str, usize)>);

impl Kinds {
    /// One more slot holds a `kind`.
    pub(super) fn add(&mut self, kind: &'static str) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.0.push((kind, 1)),
        }
    }

    /// One slot that held a `kind` was freed.
    pub(super) fn remove(&mut self, kind: &'static str) {
        if let Some(at) = self.0.iter().position(|(k, _)| *k == kind) {
            let n = &mut self.0[at].1;
            *n -= 1;
            if *n == 0 {
                self.0.swap_remove(at);
            }
        }
    }

    /// The counts, by type name (each above zero).
    pub(super) fn snapshot(&self) -> Vec<(&'static str, usize)> {
        let mut counts = self.0.clone();
        counts.sort_unstable();
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_up_and_down_and_zero_leaves_the_list() {
        let mut kinds = Kinds::default();
        assert!(kinds.snapshot().is_empty());
        for kind in ["b::Fd", "a::Timer", "b::Fd"] {
            kinds.add(kind);
        }
        assert_eq!(kinds.snapshot(), [("a::Timer", 1), ("b::Fd", 2)]);
        kinds.remove("a::Timer");
        kinds.remove("b::Fd");
        assert_eq!(kinds.snapshot(), [("b::Fd", 1)]);
        kinds.remove("never::Added");
        kinds.remove("b::Fd");
        assert!(kinds.snapshot().is_empty());
        assert!(kinds.0.is_empty(), "no zero entries are kept");
    }
}
