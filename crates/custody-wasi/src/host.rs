//! The WASI extension: how a host gets WASI preview 1 ([`Wasi`]), what a
//! domain's configuration says of it ([`WasiConfig`](crate::WasiConfig)),
//! and what the embedder reads back ([`WasiDomain`]: captured output).

use std::error::Error;
use std::io;
use std::sync::{Arc, Weak};

use custody_host::extension::{DomainSetup, Extension, ExtensionState, HostFunction};
use custody_host::{Domain, DomainConfig, Policy};

use crate::state::{SharedStdio, WasiConfig, WasiState};
use crate::stdio::{NAMES, Stdio};

/// WASI preview 1 as a host extension: add it to a host with
/// [`HostBuilder::extension`](custody_host::HostBuilder::extension), as
/// wasmtime's embedders add `wasmtime-wasi` to their linker.
///
/// ```
/// use custody_host::{DomainConfig, Host, Policy};
/// use custody_wasi::{Wasi, WasiConfig, WasiDomain};
///
/// let host = Host::builder(Policy::default()).extension(Wasi).build()?;
/// let module = host.compile(br#"(module
///     (import "wasi_snapshot_preview1" "fd_write"
///         (func $fd_write (param i32 i32 i32 i32) (result i32)))
///     (memory (export "memory") 1)
///     (data (i32.const 8) "\10\00\00\00\03\00\00\00hi\n")
///     (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 0)))))"#)?;
/// let domain = host.create_domain(DomainConfig::new().extension(WasiConfig::new()))?;
/// domain.load("main", &module)?;
/// domain.call("_start", &[])?;
/// assert_eq!(domain.take_stdout(), b"hi\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Wasi;

impl Extension for Wasi {
    fn module(&self) -> &'static str {
        crate::MODULE
    }

    fn functions(&self) -> &'static [HostFunction] {
        crate::FUNCTIONS
    }

    /// A policy with `wasi = false` refuses every import of the module.
    fn denied_by(&self, policy: &Policy) -> Option<String> {
        (!policy.wasi).then(|| "WASI is off (wasi = false)".to_string())
    }

    /// The domain's arguments, environment and streams (its
    /// [`WasiConfig`], else the default), its pre-opens as fds 3, 4, ...,
    /// and its capture buffers shared with the embedder. Nothing for a
    /// domain whose policy has WASI off: no module that imports it loads
    /// there, so nothing would use it (its streams are not opened, its
    /// captures stay empty).
    fn new_domain(
        &self,
        setup: &DomainSetup<'_>,
    ) -> Result<ExtensionState, Box<dyn Error + Send + Sync>> {
        if !setup.policy().wasi {
            // As `denied_by` says (without making its message).
            return Ok(ExtensionState::none());
        }
        let config = setup.config::<WasiConfig>().cloned().unwrap_or_default();
        let state = WasiState::new(config, setup.policy().stdio_capture_limit, setup.preopens())
            .map_err(|(which, source)| StdioError {
                stream: NAMES[which],
                source,
            })?;
        let shared = Arc::new(state.shared_stdio());
        Ok(ExtensionState::store(state).with_shared(shared))
    }
}

/// A domain's stdio stream could not be set up (its host fd could not be
/// duplicated): the domain is not created.
#[derive(Debug, thiserror::Error)]
#[error("cannot give the domain its {stream}: {source}")]
pub struct StdioError {
    /// `stdin`, `stdout` or `stderr`.
    pub stream: &'static str,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// [`WasiConfig`]'s settings on a [`DomainConfig`] directly:
/// `DomainConfig::new().preopen("data", dir).args(["prog"]).stdout(Stdio::Inherit)`.
/// Each changes the domain's `WasiConfig` (the default one if it has none).
pub trait WasiDomainConfig: Sized {
    /// [`WasiConfig::args`].
    #[must_use]
    fn args<I: IntoIterator<Item = S>, S: Into<String>>(self, args: I) -> Self;
    /// [`WasiConfig::env`].
    #[must_use]
    fn env(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self;
    /// [`WasiConfig::stdin`].
    #[must_use]
    fn stdin(self, stdin: Stdio) -> Self;
    /// [`WasiConfig::stdout`].
    #[must_use]
    fn stdout(self, stdout: Stdio) -> Self;
    /// [`WasiConfig::stderr`].
    #[must_use]
    fn stderr(self, stderr: Stdio) -> Self;
}

impl WasiDomainConfig for DomainConfig {
    fn args<I: IntoIterator<Item = S>, S: Into<String>>(self, args: I) -> Self {
        with_wasi(self, |c| c.args(args))
    }

    fn env(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        with_wasi(self, |c| c.env(name, value))
    }

    fn stdin(self, stdin: Stdio) -> Self {
        with_wasi(self, |c| c.stdin(stdin))
    }

    fn stdout(self, stdout: Stdio) -> Self {
        with_wasi(self, |c| c.stdout(stdout))
    }

    fn stderr(self, stderr: Stdio) -> Self {
        with_wasi(self, |c| c.stderr(stderr))
    }
}

fn with_wasi(config: DomainConfig, change: impl FnOnce(WasiConfig) -> WasiConfig) -> DomainConfig {
    let wasi = config
        .extension_config::<WasiConfig>()
        .cloned()
        .unwrap_or_default();
    config.extension(change(wasi))
}

/// What an embedder reads of a domain's WASI guests.
pub trait WasiDomain {
    /// What the domain's guests wrote to stdout since the last call of
    /// this, if stdout is [`Stdio::Capture`](crate::Stdio::Capture) (the
    /// default); empty otherwise, and on a host without [`Wasi`]. It drains
    /// the buffer: a guest whose writes failed with `EFBIG` (the buffer held
    /// the policy's `stdio_capture_limit`) may write again.
    fn take_stdout(&self) -> Vec<u8>;

    /// As [`take_stdout`](Self::take_stdout), for stderr.
    fn take_stderr(&self) -> Vec<u8>;

    /// Closes the guest's side of its stdio pipes
    /// ([`Stdio::pipe_in`](crate::Stdio::pipe_in),
    /// [`Stdio::pipe_out`](crate::Stdio::pipe_out)) now rather than when the
    /// domain ends: the embedder's reader sees the end of the output once
    /// it has read what is there, its writer sees the input closed. A guest
    /// that writes to one after (its unloading hook) gets `EPIPE`, one that
    /// reads the end of its input. A server calls it when the guest's call
    /// ended, to answer before the domain unloads.
    fn close_pipes(&self);
}

impl WasiDomain for Domain {
    fn take_stdout(&self) -> Vec<u8> {
        take(self, 0)
    }

    fn take_stderr(&self) -> Vec<u8> {
        take(self, 1)
    }

    fn close_pipes(&self) {
        if let Some(shared) = self.extension::<SharedStdio>() {
            for side in shared.pipes.iter().flatten().filter_map(Weak::upgrade) {
                side.close();
            }
        }
    }
}

fn take(domain: &Domain, which: usize) -> Vec<u8> {
    domain
        .extension::<SharedStdio>()
        .and_then(|shared| {
            shared.captures[which]
                .as_ref()
                .map(|capture| capture.take())
        })
        .unwrap_or_default()
}
