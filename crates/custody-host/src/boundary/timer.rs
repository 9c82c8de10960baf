//! Guest timers as handles (SPEC D6): what `timer_set` needs from the
//! domain, and the resource its handle names. The domain implements
//! [`Timers`] (arming is the domain's business: roots, the timer thread);
//! the boundary only sees this trait, so imports keep pointing down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use custody_handle::ReleaseHandle;

use super::errno::AbiError;

/// A timer to arm: which export to call, when, how often, and the guest
/// stack that asked (for `roots()` and `unloadBlocked`).
#[derive(Debug)]
pub(crate) struct TimerSpec {
    pub(crate) export: String,
    pub(crate) delay: Duration,
    pub(crate) period: Option<Duration>,
    pub(crate) stack: String,
}

/// What a domain offers `timer_set`.
pub(crate) trait Timers: Send + Sync {
    /// Arms a timer; its handle disarms it when released.
    fn arm(&self, spec: TimerSpec) -> Result<Timer, AbiError>;
}

/// One armed timer, shared by its handle and its scheduled callbacks.
#[derive(Default)]
pub(crate) struct Armed {
    disarmed: AtomicBool,
    /// The guest's id for the timer's handle (its callbacks' argument).
    pub(crate) id: OnceLock<u32>,
    /// What disarming gives back (the domain's root), run once.
    on_disarm: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Armed {
    /// An armed timer whose disarming runs `on_disarm`.
    pub(crate) fn new(on_disarm: Box<dyn FnOnce() + Send>) -> Self {
        Armed {
            disarmed: AtomicBool::new(false),
            id: OnceLock::new(),
            on_disarm: Mutex::new(Some(on_disarm)),
        }
    }

    /// Whether it was disarmed.
    pub(crate) fn is_disarmed(&self) -> bool {
        self.disarmed.load(Ordering::Acquire)
    }

    /// Disarms it (once): its callbacks stop, its root goes.
    pub(crate) fn disarm(&self) {
        if !self.disarmed.swap(true, Ordering::AcqRel) {
            let give_back = self
                .on_disarm
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(give_back) = give_back {
                give_back();
            }
        }
    }
}

/// The resource a timer's handle names: releasing it (a guest `close`, the
/// unload's drain) disarms the timer.
pub(crate) struct Timer(pub(crate) std::sync::Arc<Armed>);

impl ReleaseHandle for Timer {
    fn is_invalid(&self) -> bool {
        false
    }

    fn release_handle(&self) -> std::io::Result<()> {
        self.0.disarm();
        Ok(())
    }

    fn raw_value(&self) -> u64 {
        u64::from(self.0.id.get().copied().unwrap_or(0))
    }
}
