//! What WASI keeps per domain, in the store's data beside the custody
//! ABI's: the arguments and environment, the three stdio streams, and the
//! fds ([`WasiFds`]). A recycle keeps the first three and starts the fds
//! afresh (the new instances are a new process).

use std::io;
use std::sync::Arc;

use super::fds::WasiFds;
use super::stdio::{Capture, StdioSpec, Stream};

/// What a domain's configuration says of WASI.
#[derive(Clone, Debug)]
pub(crate) struct WasiConfig {
    pub(crate) args: Vec<String>,
    /// `NAME=VALUE`, in the order given.
    pub(crate) env: Vec<String>,
    /// stdin, stdout, stderr.
    pub(crate) stdio: [StdioSpec; 3],
}

impl Default for WasiConfig {
    fn default() -> Self {
        WasiConfig {
            args: Vec::new(),
            env: Vec::new(),
            stdio: [StdioSpec::Null, StdioSpec::Capture, StdioSpec::Capture],
        }
    }
}

/// A domain's WASI state.
#[derive(Debug)]
pub(crate) struct WasiState {
    pub(crate) args: Arc<[String]>,
    pub(crate) env: Arc<[String]>,
    /// stdin, stdout, stderr.
    pub(crate) stdio: [Stream; 3],
    pub(crate) fds: WasiFds,
}

impl WasiState {
    /// The state `config` describes, for a domain with `preopens`
    /// pre-opens; capture buffers hold at most `capture_limit` bytes.
    ///
    /// # Errors
    /// Which stream's fd could not be duplicated (0, 1 or 2), and why.
    pub(crate) fn new(
        config: WasiConfig,
        capture_limit: usize,
        preopens: usize,
    ) -> Result<Self, (usize, io::Error)> {
        let open = |which: usize| {
            Stream::open(&config.stdio[which], which, capture_limit).map_err(|e| (which, e))
        };
        Ok(WasiState {
            stdio: [open(0)?, open(1)?, open(2)?],
            args: config.args.into(),
            env: config.env.into(),
            fds: WasiFds::new(preopens),
        })
    }

    /// No arguments, no environment, null stdio (a store with no WASI of
    /// its own, or one whose state moved on).
    pub(crate) fn empty(preopens: usize) -> Self {
        WasiState {
            args: Arc::new([]),
            env: Arc::new([]),
            stdio: [Stream::Null, Stream::Null, Stream::Null],
            fds: WasiFds::new(preopens),
        }
    }

    /// The capture buffers of stdout and stderr, if they capture.
    pub(crate) fn captures(&self) -> [Option<Arc<Capture>>; 2] {
        [self.stdio[1].capture(), self.stdio[2].capture()]
    }

    /// The state for a recycled domain's fresh store: the same arguments,
    /// environment and streams (moved out of this one), every fd as at
    /// creation.
    pub(crate) fn renew(&mut self) -> WasiState {
        let preopens = self.fds.preopens();
        let mut fresh = WasiState::empty(preopens);
        fresh.args = Arc::clone(&self.args);
        fresh.env = Arc::clone(&self.env);
        std::mem::swap(&mut fresh.stdio, &mut self.stdio);
        fresh
    }
}
