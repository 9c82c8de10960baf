//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`], so
//! running guests check whether they must stop (deadline, abort, unload).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often running guests check whether they must stop.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// When the process's first ticker started: the origin of [`coarse_ms`].
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since [`origin`], as of the last tick.
static COARSE_MS: AtomicU64 = AtomicU64::new(0);

/// A clock one load cheap, [`EPOCH_TICK`] coarse: milliseconds since the
/// first host started, as of the last epoch tick. For what the call path
/// records on every call (when a call began), where `Instant::now` would
/// cost a clock read each time.
#[inline]
pub(crate) fn coarse_ms() -> u64 {
    COARSE_MS.load(Ordering::Relaxed)
}

/// [`coarse_ms`], read from the clock now (for when it is reported).
pub(crate) fn precise_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

/// The ticker thread; it stops when this value drops.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        COARSE_MS.store(precise_ms(), Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name("custody-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                    COARSE_MS.store(precise_ms(), Ordering::Relaxed);
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
