//! Configuration: the reliability [`Policy`] (its data and validation) and
//! the TOML file format it is read from.

mod policy;
mod policy_file;

pub use policy::{
    Action, Allocation, Category, CompileLimits, Escalation, Policy, PolicyError,
    UnloadBlockedAction,
};
