//! Configuration: the reliability [`Policy`] (its data and validation), the
//! TOML file format it is read from, and sizes as people write them. (A
//! domain's [`Manifest`](crate::Manifest) builds on them, above the errors,
//! in `manifest.rs`.)

mod policy;
mod policy_file;
mod size;

pub use policy::{
    Action, Allocation, Category, CompileLimits, Escalation, MAX_POOL_KEEP_RESIDENT,
    MIN_THROTTLE_SHARE, OnMemoryLimit, Policy, PolicyError, UnloadBlockedAction,
};
pub use policy_file::{ENGINE_WIDE_KEYS, PolicyOverrides};
pub use size::{SizeError, parse_size};
