//! The wasmtime engine a host runs on, configured from its policy: epoch
//! interruption, the stack limit, parallel compilation, the on-disk compile
//! cache if asked, and the instance allocation strategy; and what will stop
//! the pool short of its size ([`map_budget`]).

use std::path::Path;
use std::sync::Arc;

use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use super::dense::DenseMemoryCreator;
use crate::config::{Allocation, Policy};
use crate::error::HostError;

/// A wasm page.
const PAGE: u64 = 64 * 1024;
/// Guard after a memory whose reservation the policy's cap sized.
const CAPPED_GUARD: u64 = PAGE;
/// Tables in the pool hold at most this many elements each.
const POOL_TABLE_ELEMENTS: usize = 1 << 16;

/// Builds the engine for `policy`. Returns it with the allocation actually
/// in effect, and why it differs from the policy's, if it does.
pub(crate) fn build(
    policy: &Policy,
    disk_cache: Option<&Path>,
) -> Result<(Engine, Allocation, Option<String>), HostError> {
    let engine = |allocation| {
        let mut config = base_config(policy, disk_cache)?;
        allocate(&mut config, policy, allocation);
        Engine::new(&config).map_err(|e| HostError::engine("configuring wasmtime", e))
    };
    if policy.threads && policy.allocation == Allocation::Pooling {
        let why = "the pooling allocator cannot hold shared memories; with threads = true the host allocates on demand";
        return Ok((
            engine(Allocation::OnDemand)?,
            Allocation::OnDemand,
            Some(why.to_string()),
        ));
    }
    match engine(policy.allocation) {
        Ok(engine) => Ok((engine, policy.allocation, None)),
        Err(HostError::Engine { message: why, .. }) if policy.allocation == Allocation::Pooling => {
            let fallback = format!(
                "the pooling allocator could not reserve its address space ({why}); falling back to on-demand allocation"
            );
            Ok((
                engine(Allocation::OnDemand)?,
                Allocation::OnDemand,
                Some(fallback),
            ))
        }
        Err(other) => Err(other),
    }
}

fn base_config(policy: &Policy, disk_cache: Option<&Path>) -> Result<Config, HostError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.max_wasm_stack(policy.stack_limit);
    // Atomic instructions are harmless on an unshared memory (a wait traps
    // at once); shared memories only with the policy's `threads`.
    config.wasm_threads(true);
    config.shared_memory(policy.threads);
    config.parallel_compilation(true);
    if let Some(dir) = disk_cache {
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache)
            .map_err(|e| HostError::engine(format!("compile cache in {}", dir.display()), e))?;
        config.cache(Some(cache));
    }
    Ok(config)
}

/// The policy's memory cap as a reservation: whole pages.
fn capped_reservation(policy: &Policy) -> Option<u64> {
    policy
        .memory_limit
        .map(|limit| (limit as u64).max(PAGE).next_multiple_of(PAGE))
}

fn allocate(config: &mut Config, policy: &Policy, allocation: Allocation) {
    match allocation {
        Allocation::Pooling => {
            let slots = policy.pool_size;
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .max_memories_per_module(4)
                .max_tables_per_module(4)
                .table_elements(POOL_TABLE_ELEMENTS)
                .linear_memory_keep_resident(policy.pool_keep_resident)
                .table_keep_resident(policy.pool_keep_resident);
            if let Some(bytes) = capped_reservation(policy) {
                pool.max_memory_size(bytes as usize);
                config.memory_reservation(bytes);
                config.memory_guard_size(CAPPED_GUARD);
            }
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Allocation::OnDemand => {
            if let Some(bytes) = capped_reservation(policy) {
                config.memory_reservation(bytes);
                config.memory_guard_size(CAPPED_GUARD);
            }
        }
        Allocation::Dense => {
            config.memory_reservation(0);
            config.memory_reservation_for_growth(0);
            config.memory_guard_size(0);
            config.memory_may_move(true);
            config.memory_init_cow(false);
            config.with_host_memory(Arc::new(DenseMemoryCreator));
        }
    }
}

/// Memory maps the kernel adds per live pooled memory: its slot's
/// accessible pages split the pool's reservation in two.
const MAPS_PER_POOLED_MEMORY: u64 = 2;

/// Why `pool_size` live pooled domains will not fit in the kernel's memory
/// maps (`vm.max_map_count`, with `in_use` maps taken already), naming the
/// count that will and the knobs that move it; `None` if they fit.
pub(crate) fn map_budget(pool_size: u32, max_map_count: u64, in_use: u64) -> Option<String> {
    let needed = u64::from(pool_size) * MAPS_PER_POOLED_MEMORY;
    let free = max_map_count.saturating_sub(in_use);
    if needed <= free {
        return None;
    }
    let reachable = free / MAPS_PER_POOLED_MEMORY;
    let raise_to = in_use + needed + 1024;
    Some(format!(
        "pool_size = {pool_size}: each live domain with a memory takes {MAPS_PER_POOLED_MEMORY} kernel memory maps, \
         and vm.max_map_count = {max_map_count} with {in_use} in use leaves room for about {reachable} live domains \
         (creating more fails with ENOMEM); raise it (sysctl -w vm.max_map_count={raise_to}) \
         or set allocation = \"dense\" (no map per domain)"
    ))
}

/// [`map_budget`] for this process and machine, with the pooling
/// allocator (`None` when `/proc` cannot say).
pub(crate) fn pool_map_budget(policy: &Policy, allocation: Allocation) -> Option<String> {
    if allocation != Allocation::Pooling {
        return None;
    }
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
    let in_use = std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .count();
    map_budget(policy.pool_size, max.trim().parse().ok()?, in_use as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_budget_names_the_reachable_count_and_the_knobs() {
        assert_eq!(map_budget(1000, 65530, 100), None);
        assert_eq!(map_budget(32_715, 65530, 100), None);
        let why = map_budget(100_000, 65530, 100).expect("past the budget");
        assert!(why.contains("about 32715 live domains"), "{why}");
        assert!(why.contains("vm.max_map_count = 65530"), "{why}");
        assert!(why.contains("sysctl -w vm.max_map_count=201124"), "{why}");
        assert!(why.contains("allocation = \"dense\""), "{why}");
        let full = map_budget(u32::MAX, 10, 20).expect("no room at all");
        assert!(full.contains("about 0 live domains"), "{full}");
    }
}
