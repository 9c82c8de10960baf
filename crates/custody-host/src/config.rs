//! Configuration: the reliability [`Policy`] (its data and validation), the
//! TOML file format it is read from, sizes as people write them, and the
//! [`Manifest`] that describes a domain.

mod manifest;
mod policy;
mod policy_file;
mod size;

pub use manifest::{Manifest, ManifestModule};
pub use policy::{
    Action, Allocation, Category, CompileLimits, Escalation, OnMemoryLimit, Policy, PolicyError,
    UnloadBlockedAction,
};
pub use policy_file::{ENGINE_WIDE_KEYS, PolicyOverrides};
pub use size::{SizeError, parse_size};
