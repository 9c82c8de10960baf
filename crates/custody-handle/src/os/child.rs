//! `Child`: a child process, killed and reaped on release.

use std::io;
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, PoisonError};

use crate::release::ReleaseHandle;

/// A child process. Release kills it (`SIGKILL`) if it is still running and
/// reaps it, so a released child is neither a zombie nor an orphan.
///
/// `std::process::Child` does neither on drop; wrapped here, a plugin's
/// helper process cannot outlive the domain that spawned it.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    process: Mutex<Option<std::process::Child>>,
}

impl Child {
    /// Spawns `command`.
    ///
    /// # Errors
    /// The spawn error.
    pub fn spawn(command: &mut Command) -> io::Result<Child> {
        command.spawn().map(Child::from)
    }

    /// The process id (the raw value).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the child has exited, without blocking.
    ///
    /// # Errors
    /// The OS error, or `NotFound` after release.
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        match self
            .process
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(child) => child.try_wait(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "child already released",
            )),
        }
    }
}

impl From<std::process::Child> for Child {
    fn from(child: std::process::Child) -> Self {
        Child {
            pid: child.id(),
            process: Mutex::new(Some(child)),
        }
    }
}

impl ReleaseHandle for Child {
    fn is_invalid(&self) -> bool {
        self.pid == 0
    }

    fn release_handle(&self) -> io::Result<()> {
        let taken = self
            .process
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut child = taken
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "child already released"))?;
        // std returns Ok if the child has already exited; reap it either way.
        let killed = child.kill();
        child.wait()?;
        killed
    }

    fn raw_value(&self) -> u64 {
        u64::from(self.pid)
    }
}
