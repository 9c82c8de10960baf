//! Compilation under the policy's `compile_timeout`. The compiler cannot be
//! interrupted, so it runs on its own thread: past the timeout the caller
//! gets its error at once and the compilation finishes in the background
//! (its memory and time bounded by the structural check that came first).
//! While such an overrun compilation runs, the host refuses to start
//! another, so a stream of slow modules cannot pile up compiler threads.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Module};

/// Where one compilation stands.
enum Progress {
    Running,
    Done(wasmtime::Result<Module>),
    /// The caller gave up waiting: the thread drops the result.
    Abandoned,
}

/// One compilation's rendezvous between its thread and its caller.
type Slot = (Mutex<Progress>, Condvar);

/// Compilations that passed their timeout and are still running.
#[derive(Default)]
pub(crate) struct Overruns {
    running: Mutex<usize>,
}

/// Why a compilation did not produce a module.
pub(crate) enum Failed {
    /// The compiler's own error.
    Compile(wasmtime::Error),
    /// Past the timeout, or refused because an overrun still runs.
    Refused(String),
}

impl Overruns {
    fn count(&self) -> std::sync::MutexGuard<'_, usize> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Compiles `wasm` on its own thread, waiting at most `timeout`.
    pub(crate) fn compile(
        self: &Arc<Self>,
        engine: &Engine,
        wasm: Vec<u8>,
        timeout: Duration,
    ) -> Result<Module, Failed> {
        if *self.count() > 0 {
            return Err(Failed::Refused(format!(
                "an earlier compilation passed the policy's compile_timeout of {timeout:?} and is still running; no other starts until it ends"
            )));
        }
        let slot: Arc<Slot> = Arc::new((Mutex::new(Progress::Running), Condvar::new()));
        let (engine, theirs, overruns) = (engine.clone(), Arc::clone(&slot), Arc::clone(self));
        std::thread::Builder::new()
            .name("custody-compile".into())
            .spawn(move || {
                let result = Module::new(&engine, &wasm);
                let (progress, done) = &*theirs;
                let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
                if let Progress::Abandoned = *progress {
                    *overruns.count() -= 1;
                } else {
                    *progress = Progress::Done(result);
                    done.notify_one();
                }
            })
            .map_err(|e| Failed::Refused(format!("starting the compiler thread: {e}")))?;
        let (progress, done) = &*slot;
        let until = crate::deadline::after(timeout);
        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match std::mem::replace(&mut *progress, Progress::Running) {
                Progress::Done(result) => return result.map_err(Failed::Compile),
                Progress::Running | Progress::Abandoned => {}
            }
            let now = Instant::now();
            if now >= until {
                // Under the slot's lock: the thread sees either this or
                // nothing, so the count is given back exactly once.
                *progress = Progress::Abandoned;
                *self.count() += 1;
                return Err(Failed::Refused(format!(
                    "compiling took longer than the policy's compile_timeout of {timeout:?}"
                )));
            }
            progress = done
                .wait_timeout(progress, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// How many overrun compilations are still running.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        *self.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn functions(n: usize) -> Vec<u8> {
        let body = "(func (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))";
        wat::parse_str(format!("(module {})", body.repeat(n))).unwrap()
    }

    #[test]
    fn a_slow_compilation_times_out_and_blocks_others_until_it_ends() {
        let engine = Engine::default();
        let overruns = Arc::new(Overruns::default());
        let fast = overruns.compile(&engine, functions(1), Duration::from_secs(60));
        assert!(fast.is_ok());
        let slow = overruns.compile(&engine, functions(4_000), Duration::from_millis(1));
        let Err(Failed::Refused(why)) = slow else {
            panic!("not refused")
        };
        assert!(why.contains("compile_timeout of 1ms"), "{why}");
        assert_eq!(overruns.running(), 1);
        let Err(Failed::Refused(why)) =
            overruns.compile(&engine, functions(1), Duration::from_secs(60))
        else {
            panic!("not refused while the overrun runs")
        };
        assert!(why.contains("still running"), "{why}");
        let waited = Instant::now();
        while overruns.running() > 0 {
            assert!(waited.elapsed() < Duration::from_secs(120), "never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            overruns
                .compile(&engine, functions(1), Duration::from_secs(60))
                .is_ok()
        );
    }
}
