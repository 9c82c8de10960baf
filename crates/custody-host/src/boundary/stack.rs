//! Guest stacks as custody shows them, in traps, roots, `unloadBlocked` and
//! `callAborted`: one frame a line, innermost first,
//! `N: 0xOFFSET - [module!]function`.
//!
//! A frame is named by the module's name section, which the compile
//! pipeline completes with export names (`compile/export_names.rs`), else
//! `<wasm function N>`. Names are shown as the module gives them; only
//! Rust's mangled symbols are demangled. (wasmtime's own rendering also
//! tries C++ demangling on every name, which turns a function named `a`
//! into `signed char`.)
//!
//! A running guest's stack is taken on its own thread (wasmtime captures
//! a backtrace only there): asked for from another one ([`StackSample`]),
//! taken at the guest's next epoch check.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::{FrameInfo, WasmBacktrace};

/// A running guest's stack, asked for by [`take`](Self::take) and handed
/// over by the guest's epoch check ([`deliver`](Self::deliver)).
#[derive(Default)]
pub(crate) struct StackSample {
    /// Raised by `take`, read at every epoch check.
    wanted: AtomicBool,
    stack: Mutex<Option<String>>,
    delivered: Condvar,
}

impl StackSample {
    /// Whether a stack is asked for.
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// The epoch check hands over the stack it captured.
    pub(crate) fn deliver(&self, stack: String) {
        self.wanted.store(false, Ordering::Relaxed);
        *self.stack.lock().unwrap_or_else(PoisonError::into_inner) = Some(stack);
        self.delivered.notify_all();
    }

    /// Asks for the guest's stack and waits for it at most `wait`, and
    /// only while `running()` (a call that ended reaches no epoch check).
    pub(crate) fn take(&self, wait: Duration, running: impl Fn() -> bool) -> Option<String> {
        let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
        *stack = None;
        self.wanted.store(true, Ordering::Relaxed);
        let until = crate::deadline::after(wait);
        while stack.is_none() {
            let now = Instant::now();
            if now >= until || !running() {
                break;
            }
            stack = self
                .delivered
                .wait_timeout(stack, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.wanted.store(false, Ordering::Relaxed);
        stack.take()
    }
}

/// The frames of `trace`, one a line (empty for no frames).
pub(crate) fn render(trace: &WasmBacktrace) -> String {
    let mut out = String::new();
    for (i, frame) in trace.frames().iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{i}: ");
        write_frame(&mut out, frame);
    }
    out
}

fn write_frame(out: &mut String, frame: &FrameInfo) {
    if let Some(offset) = frame.module_offset() {
        let _ = write!(out, "{offset:#x} - ");
    }
    if let Some(module) = frame.module().name() {
        let _ = write!(out, "{module}!");
    }
    match frame.func_name() {
        Some(name) => match rustc_demangle::try_demangle(name) {
            Ok(symbol) => {
                let _ = write!(out, "{symbol:#}");
            }
            Err(_) => out.push_str(name),
        },
        None => {
            let _ = write!(out, "<wasm function {}>", frame.func_index());
        }
    }
}

/// A failure's cause and its guest stack, apart: the cause is every
/// message of the error's chain but the backtrace's, joined by `: ` on
/// one line; the stack is the backtrace, rendered.
pub(crate) fn cause_and_stack(error: &wasmtime::Error) -> (String, String) {
    let trace = error.downcast_ref::<WasmBacktrace>();
    // The backtrace is a context layer of the chain, seen there as text.
    let heading = trace.map(ToString::to_string);
    let cause = error
        .chain()
        .map(ToString::to_string)
        .filter(|message| Some(message) != heading.as_ref())
        .collect::<Vec<_>>()
        .join(": ");
    (cause, trace.map(render).unwrap_or_default())
}
