//! The guest boundary: everything between a guest's call of a host function
//! and the host code that serves it.
//!
//! | module | owns |
//! | --- | --- |
//! | [`memory`] | bounds-checked access to guest memory (`unsafe`: atomic access to shared memories) |
//! | [`errno`] | the guest's error codes (`E_*`) and the mapping from handle errors |
//! | [`cancel`] | the cancellation signal that abort and unload raise, and why a call stopped |
//! | [`preopen`] | the pre-opened directories a domain may reach, and guest path splitting |
//! | [`blocked`] | which host function a call is blocked in, and the guest's stack when it began to wait |
//! | [`stack`] | guest stacks as custody shows them (frames named), and a failure's cause apart from its stack |
//! | [`timer`] | what `timer_set` asks of the domain ([`Timers`](timer::Timers)), and the timer handle |
//! | [`extensions`] | each ABI extension's slot in the store ([`StoreState`](extensions::StoreState)), found by type |
//! | [`throttle`] | a call past the policy's `throttle_after`: paused at its epoch checks to a share of a core |
//! | [`ctx`] | the store data a host call sees ([`DomainCtx`](ctx::DomainCtx)): limits, the one wait, errno |
//! | [`marshal`] | one host call: memory resolved once per instance, handle arguments pinned, out-handles written (`unsafe`: the table borrowed apart from the caller) |
//! | [`atomic_wait`] | `memory.atomic.wait` under the deadline and the signal (the policy's `threads`) |
//! | [`embed`] | the same guarantees for embedder functions ([`GuestCall`](embed::GuestCall)), and host locks |
//!
//! Lowest first: a module imports only those listed before it (`embed`
//! builds on `marshal`, which builds on `ctx`, and so on); nothing here
//! imports the domain, the runtime or the host.

pub(crate) mod atomic_wait;
pub(crate) mod blocked;
pub(crate) mod cancel;
pub(crate) mod ctx;
pub(crate) mod embed;
pub(crate) mod errno;
pub(crate) mod extensions;
pub(crate) mod marshal;
pub(crate) mod memory;
pub(crate) mod preopen;
pub(crate) mod stack;
pub(crate) mod throttle;
pub(crate) mod timer;
