//! The server's configuration file (TOML): the top-level keys, the HTTP
//! limits and one `[[plugin]]` table per plugin. Unknown keys are errors
//! naming the key and the file, so a typo never silently changes what is
//! served. Durations are written `"5s"`, `"250ms"` or `"2m"`; sizes as
//! [`custody_host::parse_size`] reads them (`"1MiB"`); relative paths are
//! relative to the configuration file's directory. docs/SERVER.md lists
//! every key with its default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_host::PolicyOverrides;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A configuration that cannot be used: the file (when there is one) and
/// what is wrong, with the key and its line where the TOML says so.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ConfigError {
    /// The configuration file (`<built-in>` for the bundled examples).
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Reads a duration as people write it: a number followed by `ms`, `s` or
/// `m` (`"250ms"`, `"5s"`, `"1.5s"`, `"2m"`); a bare number is
/// milliseconds. Zero is allowed (`shutdown_delay = "0s"`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(custody_serve::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(custody_serve::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(custody_serve::parse_duration("soon").is_err());
/// ```
///
/// # Errors
/// A message quoting the text when it is not a duration, is negative or
/// out of range.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, scale) = if let Some(ms) = trimmed.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = trimmed.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = trimmed.strip_suffix('m') {
        (m, 60.0)
    } else {
        (trimmed, 1e-3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 250ms, 5s or 2m)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!(
            "{text:?}: a duration must be zero or more, and finite"
        ));
    }
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{text:?}: a duration that long is out of range"))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(de::Error::custom)
}

fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => custody_host::parse_size(&text).map_err(de::Error::custom),
    }
}

/// `canary = N`: a whole number from 0 to 100, the key named in the
/// error (the TOML error names only the line).
fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    let value = toml::Value::deserialize(deserializer)?;
    value
        .as_integer()
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| *n <= 100)
        .map(Some)
        .ok_or_else(|| {
            de::Error::custom(format!(
                "canary = {value}: a percentage is a whole number from 0 to 100 (`canary = 10`)"
            ))
        })
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address the plugins and the health endpoints are served on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// On SIGTERM, how long `/ready` is 503 before accepting stops.
    #[serde(default = "defaults::shutdown_delay", deserialize_with = "duration")]
    pub shutdown_delay: Duration,
    /// On reload and shutdown, how long in-flight requests get.
    #[serde(default = "defaults::drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// The bounds on HTTP clients (of the admin listener too).
    #[serde(default)]
    pub limits: HttpLimits,
    /// `[admin]`: the admin API's listener; absent, there is none.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The plugins, in the file's order.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
}

/// `[limits]`: what one HTTP client may cost the server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// A request's head must arrive within this once it has begun
    /// (slowloris).
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no new request for this long is
    /// closed (after the response in flight, if any).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// The largest request head, in bytes (hyper's read buffer; at least
    /// 8 KiB).
    #[serde(deserialize_with = "size")]
    pub max_header_size: usize,
    /// The most request headers.
    pub max_headers: usize,
    /// The most connections open at once; one more is closed at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_size: 64 << 10,
            max_headers: 100,
            max_connections: 1024,
        }
    }
}

/// `[admin]`: the admin API and `/metrics`, on a listener of their own
/// (never the plugins').
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin listener's address.
    pub listen: SocketAddr,
    /// A file holding the bearer token every call but `/healthz` and
    /// `/readyz` must present. Without it the listener must be on
    /// loopback.
    pub token_file: Option<PathBuf>,
}

impl AdminConfig {
    /// Refuses an admin listener beyond loopback without a token: anyone
    /// who reaches the address could read (and, later, act on) the server.
    ///
    /// # Errors
    /// A message naming `admin.listen` and `admin.token_file`.
    pub fn check(&self) -> Result<(), String> {
        if self.token_file.is_none() && !self.listen.ip().to_canonical().is_loopback() {
            return Err(format!(
                "admin.listen = \"{}\" is beyond loopback: set admin.token_file \
                 (a bearer token) or listen on 127.0.0.1 or [::1]",
                self.listen
            ));
        }
        Ok(())
    }
}

/// The request interface of a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    /// A WASI command: CGI 1.1 environment, body on stdin, response on
    /// stdout.
    Wagi,
    /// The custody ABI's `handle(request, response)` export: the bodies
    /// are two handles, the heads go through the `custody_http` functions.
    Custody,
}

impl Interface {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Interface::Wagi => "wagi",
            Interface::Custody => "custody",
        }
    }
}

/// How a plugin's domains live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instances {
    /// A fresh domain per request, unloaded when the request ends.
    #[default]
    PerRequest,
    /// Long-lived domains (`pool`, `recycle_after`): only for interfaces
    /// whose export may be called more than once per instance.
    Pooled,
}

impl Instances {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Instances::PerRequest => "per-request",
            Instances::Pooled => "pooled",
        }
    }
}

/// One `[[plugin]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Its name, unique: logs, faults and the version header name it.
    pub name: String,
    /// `/hello` (that path) or `/hello/...` (the path and its subpaths).
    pub route: String,
    /// The module (`.wasm` or `.wat`).
    pub module: Option<PathBuf>,
    /// A Part D manifest: its modules, pre-opens and `[policy]`.
    pub manifest: Option<PathBuf>,
    /// The export a request calls (WAGI).
    #[serde(default = "defaults::entrypoint")]
    pub entrypoint: String,
    /// WAGI's argv template: `${SCRIPT_NAME}` and `${ARGS}`.
    #[serde(default = "defaults::argv")]
    pub argv: String,
    /// Environment variables after the CGI ones.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Guest path = host directory (WAGI's `volumes`).
    #[serde(default)]
    pub dirs: BTreeMap<String, PathBuf>,
    /// `wagi` or `custody`; unset: `custody` when the module exports
    /// `handle`, else `wagi`.
    pub interface: Option<Interface>,
    /// `per-request` or `pooled`.
    #[serde(default)]
    pub instances: Instances,
    /// The pool's size (`instances = "pooled"`).
    pub pool: Option<u32>,
    /// `"500..1000"`: a pooled domain is retired after a random count in
    /// this range.
    pub recycle_after: Option<String>,
    /// Requests in flight at once; beyond it: 503.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// The call's deadline; past it: 504.
    #[serde(default = "defaults::request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// The largest request body; beyond it: 413.
    #[serde(default = "defaults::max_body", deserialize_with = "size")]
    pub max_body: usize,
    /// The most the plugin may write (head and body); beyond it: 502, or
    /// the body cut once the head is sent.
    #[serde(default = "defaults::max_response", deserialize_with = "size")]
    pub max_response: usize,
    /// Reload when the module (or the manifest, or its modules) changes.
    #[serde(default)]
    pub watch: bool,
    /// A percentage (0 to 100): a reload's new version becomes a canary
    /// taking that share of new requests, beside the stable version,
    /// until it is promoted or rolled back; unset, a reload swaps.
    #[serde(default, deserialize_with = "percent")]
    pub canary: Option<u8>,
    /// Part C policy keys over the server's host policy.
    #[serde(default)]
    pub policy: Option<PolicyOverrides>,
    /// The module's bytes when they are built into the program (the
    /// bundled examples); `module` then only names them.
    #[serde(skip)]
    pub embedded: Option<&'static [u8]>,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub(super) fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub(super) fn shutdown_delay() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn entrypoint() -> String {
        "_start".into()
    }
    pub(super) fn argv() -> String {
        "${SCRIPT_NAME} ${ARGS}".into()
    }
    pub(super) fn max_concurrency() -> usize {
        64
    }
    pub(super) fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn max_body() -> usize {
        16 << 20
    }
    pub(super) fn max_response() -> usize {
        64 << 20
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ServerConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file: unreadable, not TOML, an unknown
    /// key (named, with its line), a value of the wrong type, or a check of
    /// [`ServerConfig::from_toml`] failed.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read it: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        ServerConfig::from_toml(&text, path, base)
    }

    /// Reads a configuration from TOML: `file` names it in errors, `base`
    /// is the directory relative paths are resolved against.
    ///
    /// # Errors
    /// A [`ConfigError`] for TOML that does not parse or keys that do not
    /// check: a plugin without a name, route, or exactly one of `module`
    /// and `manifest`; a duplicate name; a route that is not a path;
    /// `max_concurrency = 0`.
    pub fn from_toml(text: &str, file: &Path, base: &Path) -> Result<ServerConfig, ConfigError> {
        let mut config: ServerConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let at = line.map_or(String::new(), |l| format!("line {l}: "));
            ConfigError::new(file, format!("{at}{}", e.message().trim_end()))
        })?;
        let fail = |message: String| ConfigError::new(file, message);
        if config.limits.max_connections == 0 || config.limits.max_headers == 0 {
            return Err(fail(
                "limits: max_connections and max_headers must be at least 1".into(),
            ));
        }
        if let Some(admin) = &mut config.admin {
            admin.check().map_err(fail)?;
            if let Some(token_file) = &mut admin.token_file {
                *token_file = base.join(&*token_file);
            }
        }
        for (i, plugin) in config.plugins.iter_mut().enumerate() {
            let at = format!("plugin {:?}", plugin.name);
            if plugin.name.is_empty()
                || !(plugin.name.bytes())
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(fail(format!(
                    "[[plugin]] #{}: name {:?} must be letters, digits, '-' or '_'",
                    i + 1,
                    plugin.name
                )));
            }
            match (&plugin.module, &plugin.manifest) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(fail(format!(
                        "{at}: set exactly one of `module` and `manifest`"
                    )));
                }
            }
            crate::route::Route::parse(&plugin.route)
                .map_err(|e| fail(format!("{at}: route: {e}")))?;
            if plugin.max_concurrency == 0 {
                return Err(fail(format!("{at}: max_concurrency must be at least 1")));
            }
            if plugin.instances == Instances::PerRequest
                && (plugin.pool.is_some() || plugin.recycle_after.is_some())
            {
                return Err(fail(format!(
                    "{at}: pool and recycle_after apply only to instances = \"pooled\""
                )));
            }
            if let Some(policy) = &plugin.policy
                && policy.keys().contains(&"deadline_ms")
            {
                return Err(fail(format!(
                    "{at}: policy.deadline_ms: the deadline of a request is `request_timeout`"
                )));
            }
            for path in [&mut plugin.module, &mut plugin.manifest]
                .into_iter()
                .flatten()
            {
                *path = base.join(&*path);
            }
            for (guest, host) in &mut plugin.dirs {
                if !guest.starts_with('/') {
                    return Err(fail(format!(
                        "{at}: dirs: the guest path {guest:?} must be absolute"
                    )));
                }
                *host = base.join(&*host);
            }
        }
        for (i, plugin) in config.plugins.iter().enumerate() {
            if config.plugins[..i].iter().any(|p| p.name == plugin.name) {
                return Err(fail(format!(
                    "plugin {:?}: the name is used twice",
                    plugin.name
                )));
            }
        }
        Ok(config)
    }
}
