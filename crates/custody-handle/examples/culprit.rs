//! custody catching what the `releaseHandleFailed` seed describes.
//!
//! 1. A worker copies a handle's raw fd out and closes it directly. When the
//!    handle is disposed its release fails: `releaseHandleFailed` fires with
//!    the fd's history, which names the culprit.
//! 2. Two owners wrap one fd (double ownership): the second release fails and
//!    the history shows which owner released it first.
//! 3. A handle table rejects a stale id after its slot has been reused for an
//!    unrelated resource: the recycled-handle hazard cannot happen.
//!
//! Run: `cargo run --example culprit`

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use custody_handle::diagnostics::{self, Assistant};
use custody_handle::history::{self, Mode};
use custody_handle::{Fd, HandleError, HandleTable, SafeHandle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    history::set_mode(Mode::On);

    println!("== 1. a raw fd closed behind its handle's back ==");
    let log = SafeHandle::<Fd>::from(File::open("/dev/null")?);
    let raw = log.dangerous_get_handle().raw();
    std::thread::Builder::new()
        .name("careless-worker".into())
        .spawn(move || {
            // The bug: the raw value escapes the handle and is closed directly.
            // SAFETY: deliberately wrong, to show what custody reports.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        })?
        .join()
        .expect("worker");
    match log.dispose() {
        Err(HandleError::ReleaseFailed(e)) => println!("dispose() returned ReleaseFailed: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    println!("\n== 2. two owners of one fd ==");
    let first = SafeHandle::<Fd>::from(File::open("/dev/null")?);
    let raw = first.dangerous_get_handle().raw();
    // SAFETY: deliberately wrong: `first` already owns this fd.
    let second = SafeHandle::new(unsafe { Fd::from_raw_fd(raw) });
    first.dispose()?;
    if let Err(e) = second.dispose() {
        println!("the second owner's dispose() returned: {e}");
    }

    println!("\n== 3. a stale id after its slot was reused ==");
    diagnostics::set_enabled(Assistant::StaleHandleUse, true);
    let table = HandleTable::with_limit(1);
    let config = table.insert(Fd::from(File::open("/dev/null")?))?;
    table.close(config)?;
    let secret = table.insert(Fd::from(File::open("/dev/null")?))?;
    println!("closed id {config}; its slot now holds id {secret}");
    match table.get::<Fd>(config) {
        Err(e) => println!("lookup of the old id: {e}"),
        Ok(_) => println!("BUG: the stale id reached the new resource"),
    }
    println!(
        "\nreleaseHandleFailed fired {} time(s), staleHandleUse {} time(s); see the reports above (stderr).",
        diagnostics::count(Assistant::ReleaseHandleFailed),
        diagnostics::count(Assistant::StaleHandleUse)
    );
    Ok(())
}
