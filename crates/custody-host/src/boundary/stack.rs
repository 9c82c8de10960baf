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

use std::fmt::Write;

use wasmtime::{FrameInfo, WasmBacktrace};

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
