//! What WASI keeps per domain, in the store's data beside the custody
//! ABI's: the arguments and environment, the three stdio streams, and the
//! fds ([`WasiFds`]). A recycle keeps the first three and starts the fds
//! afresh (the new instances are a new process).

use std::io;
use std::sync::{Arc, Weak};

use crate::fds::WasiFds;
use crate::stdio::{Capture, Stdio, StdioSpec, Stream};
use crate::types::Errno;
use custody_host::pipe::GuestSide;

use custody_handle::HandleId;
use custody_host::extension::{DomainCtx, StoreState};

/// What a domain's WASI guests see: arguments, environment and stdio.
/// Given to a domain with
/// [`DomainConfig::extension`](custody_host::DomainConfig::extension); a
/// domain given none has no arguments, no environment, a null stdin and
/// captured stdout and stderr.
///
/// ```
/// use custody_host::DomainConfig;
/// use custody_wasi::{Stdio, WasiConfig};
///
/// let config = DomainConfig::new().extension(
///     WasiConfig::new()
///         .args(["prog", "--fast"])
///         .env("LANG", "C")
///         .stdout(Stdio::Inherit),
/// );
/// # let _ = config;
/// ```
///
/// Cloning one is cheap: the arguments and the environment are shared
/// (copied on the first change after a clone), as every domain made from
/// it shares them.
#[derive(Clone, Debug)]
pub struct WasiConfig {
    pub(crate) args: Arc<Vec<String>>,
    /// `NAME=VALUE`, in the order given.
    pub(crate) env: Arc<Vec<String>>,
    /// stdin, stdout, stderr.
    pub(crate) stdio: [StdioSpec; 3],
}

impl Default for WasiConfig {
    fn default() -> Self {
        WasiConfig {
            args: Arc::default(),
            env: Arc::default(),
            stdio: [StdioSpec::Null, StdioSpec::Capture, StdioSpec::Capture],
        }
    }
}

impl WasiConfig {
    /// No arguments, no environment, null stdin, captured stdout and stderr.
    pub fn new() -> Self {
        Self::default()
    }

    /// The arguments (`argv`), `argv[0]` included, as given.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = Arc::new(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds one environment variable (call once per variable; they are seen
    /// in this order).
    #[must_use]
    pub fn env(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let (name, value) = (name.as_ref(), value.as_ref());
        let mut entry = String::with_capacity(name.len() + 1 + value.len());
        entry.push_str(name);
        entry.push('=');
        entry.push_str(value);
        Arc::make_mut(&mut self.env).push(entry);
        self
    }

    /// Adds environment variables already written as `NAME=VALUE` (what
    /// the guest's `environ_get` returns), after those given before, in
    /// their order: a server that builds a whole environment per request (a
    /// CGI one) hands it over without copying a string.
    #[must_use]
    pub fn env_entries(mut self, entries: Vec<String>) -> Self {
        if self.env.is_empty() {
            self.env = Arc::new(entries);
        } else {
            Arc::make_mut(&mut self.env).extend(entries);
        }
        self
    }

    /// Where stdin (fd 0) reads from. Default [`Stdio::Null`].
    #[must_use]
    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.stdio[0] = stdin.into();
        self
    }

    /// Where stdout (fd 1) goes. Default [`Stdio::Capture`]
    /// ([`WasiDomain::take_stdout`](crate::WasiDomain::take_stdout)).
    #[must_use]
    pub fn stdout(mut self, stdout: Stdio) -> Self {
        self.stdio[1] = stdout.into();
        self
    }

    /// Where stderr (fd 2) goes. Default [`Stdio::Capture`]
    /// ([`WasiDomain::take_stderr`](crate::WasiDomain::take_stderr)).
    #[must_use]
    pub fn stderr(mut self, stderr: Stdio) -> Self {
        self.stdio[2] = stderr.into();
        self
    }
}

/// A domain's WASI state.
#[derive(Debug)]
pub(crate) struct WasiState {
    pub(crate) args: Arc<Vec<String>>,
    pub(crate) env: Arc<Vec<String>>,
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
            args: config.args,
            env: config.env,
            fds: WasiFds::new(preopens),
        })
    }

    /// No arguments, no environment, null stdio (a store with no WASI of
    /// its own, or one whose state moved on).
    pub(crate) fn empty(preopens: usize) -> Self {
        WasiState {
            args: Arc::default(),
            env: Arc::default(),
            stdio: [Stream::Null, Stream::Null, Stream::Null],
            fds: WasiFds::new(preopens),
        }
    }

    /// What the embedder keeps of the streams: the capture buffers of
    /// stdout and stderr, if they capture, and the guest's sides of the
    /// pipes.
    pub(crate) fn shared_stdio(&self) -> SharedStdio {
        SharedStdio {
            captures: [self.stdio[1].capture(), self.stdio[2].capture()],
            pipes: [
                self.stdio[0].pipe(),
                self.stdio[1].pipe(),
                self.stdio[2].pipe(),
            ],
        }
    }
}

impl StoreState for WasiState {
    /// A closed handle's fd state (its `NONBLOCK`) goes with it.
    fn forget(&mut self, id: HandleId) {
        self.fds.forget(id.raw());
    }

    /// The state for a recycled domain's fresh store: the same arguments,
    /// environment and streams (moved out of this one), every fd as at
    /// creation.
    fn renew(&mut self) -> Box<dyn StoreState> {
        let preopens = self.fds.preopens();
        let mut fresh = WasiState::empty(preopens);
        fresh.args = Arc::clone(&self.args);
        fresh.env = Arc::clone(&self.env);
        std::mem::swap(&mut fresh.stdio, &mut self.stdio);
        Box::new(fresh)
    }
}

/// What the embedder reaches of a domain's stdio beside its store
/// ([`WasiDomain`](crate::WasiDomain)): the capture buffers of stdout and
/// stderr (if they capture), and the guest's sides of its stdio pipes (the
/// same holders as the store's streams, so closing one here closes the
/// stream; weak, so they still close when the store goes, however long
/// the domain's handle lives).
#[derive(Debug)]
pub(crate) struct SharedStdio {
    pub(crate) captures: [Option<Arc<Capture>>; 2],
    pub(crate) pipes: [Option<Weak<GuestSide>>; 3],
}

/// The domain's WASI state, found through its extension slot. Every domain
/// of a host with the WASI extension has one (the extension makes it when
/// the domain is created, and a recycle renews it); without it the call is
/// `ENOSYS`, never a panic.
#[inline]
pub(crate) fn wasi(ctx: &mut DomainCtx) -> Result<&mut WasiState, Errno> {
    ctx.extension_mut::<WasiState>().ok_or(Errno::Nosys)
}

/// [`wasi`], shared.
#[inline]
pub(crate) fn wasi_ref(ctx: &DomainCtx) -> Result<&WasiState, Errno> {
    ctx.extension::<WasiState>().ok_or(Errno::Nosys)
}

#[cfg(test)]
mod tests {
    use super::WasiConfig;

    #[test]
    fn entries_join_the_environment_in_order_and_a_clone_changes_alone() {
        let base = WasiConfig::new().env("A", "1");
        let both = base
            .clone()
            .env_entries(vec!["B=2".into(), "C=x=y".into()])
            .env(String::from("D"), "");
        assert_eq!(*both.env, ["A=1", "B=2", "C=x=y", "D="]);
        assert_eq!(*base.env, ["A=1"], "the clone's changes are its own");
        let fresh = WasiConfig::new().env_entries(vec!["E=5".into()]);
        assert_eq!(*fresh.env, ["E=5"]);
    }
}
