//! The OS resources custody ships: file descriptors, memory mappings and
//! child processes. All system calls live in the private `sys` module.

mod child;
mod fd;
mod mapping;
pub(crate) mod sys;

pub use child::Child;
pub use fd::Fd;
pub use mapping::Mapping;
