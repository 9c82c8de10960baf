//! `custody run`'s options, and the parsing of their values: durations,
//! pre-opened directories, environment variables, an export's arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use custody_host::{Val, ValType, parse_size};

use crate::outcome::Failure;

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The module to run (.wasm or .wat); or give --manifest.
    #[arg(allow_negative_numbers = true)]
    pub(crate) module: Option<PathBuf>,
    /// Run the domain a manifest describes (TOML: its modules, pre-opens and
    /// policy) instead of one MODULE; the export is found across its modules.
    #[arg(long, value_name = "FILE")]
    pub(crate) manifest: Option<PathBuf>,
    /// The export to call, ARGS being its parameters [default: `_start` (a
    /// WASI command: ARGS are its arguments), else `main` or `run`, the
    /// first the module (or a module of the manifest) has].
    #[arg(long, value_name = "NAME")]
    pub(crate) invoke: Option<String>,
    /// A WASI command's arguments (after `argv[0]`, MODULE as given), or the
    /// export's parameters, parsed by their types. Those starting with `-`
    /// (other than negative numbers) go after `--`.
    #[arg(allow_negative_numbers = true, value_name = "ARGS")]
    pub(crate) args: Vec<String>,
    /// Pre-open HOST_DIR for the guest under the name GUEST_DIR (default:
    /// HOST_DIR as written), as wasmtime's `--dir`. WASI guests see it
    /// under that name; custody-ABI guests open `GUEST_DIR/rel/path`, so
    /// give them a one-component name (`--dir examples/data::data`).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    pub(crate) dirs: Vec<String>,
    /// Pre-open a directory: `NAME=DIR`, or `DIR` (named after its last
    /// path component). Guests open files as `NAME/rel/path`.
    #[arg(long = "preopen", value_name = "[NAME=]DIR")]
    pub(crate) preopens: Vec<String>,
    /// Set a WASI environment variable for the guest (the guest sees none
    /// of custody's own environment).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub(crate) env: Vec<String>,
    /// Deny a host-protection category: a module importing a function that
    /// carries it fails to load.
    #[arg(long = "deny", value_name = "CATEGORY")]
    pub(crate) denied: Vec<String>,
    /// Read the policy from a TOML file (the flags below override it).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Abort the call after this long: `500ms`, `2s`, or milliseconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) deadline: Option<Duration>,
    /// How long the unload at the end waits for what still holds the domain
    /// (an armed timer, say) before it forces it: `500ms`, `2s`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) unload_timeout: Option<Duration>,
    /// Cap the domain's linear memory: `64MiB`, `64M`, `1G`, `512K` or bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memory: Option<usize>,
    /// Print one JSON object on stdout instead of text (with `exit_code`
    /// for a WASI command).
    #[arg(long)]
    pub(crate) json: bool,
    /// With --json: capture the guest's stdout and stderr (bounded by the
    /// policy's `stdio_capture_limit`) into the JSON object as `stdout` and
    /// `stderr`, instead of letting it write to custody's own.
    #[arg(long, requires = "json")]
    pub(crate) capture: bool,
    /// Compile without the on-disk cache of compiled modules (kept in
    /// `$CUSTODY_CACHE_DIR`, else `$XDG_CACHE_HOME/custody`, else
    /// `~/.cache/custody`).
    #[arg(long)]
    pub(crate) no_cache: bool,
}

/// Where compiled modules are cached between runs, if anywhere.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("CUSTODY_CACHE_DIR")
        .or_else(|| from("XDG_CACHE_HOME").map(|d| d.join("custody")))
        .or_else(|| from("HOME").map(|d| d.join(".cache").join("custody")))
}

/// A duration flag: the server's duration syntax (`500ms`, `2s`; a bare
/// number is milliseconds), and more than zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = custody_serve::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?}: a duration must be positive"));
    }
    Ok(duration)
}

/// `--preopen [NAME=]DIR`: the name and the directory.
pub(crate) fn preopen(spec: &str) -> Result<(String, PathBuf), Failure> {
    let (name, dir) = match spec.split_once('=') {
        Some((name, dir)) => (name.to_string(), PathBuf::from(dir)),
        None => {
            let dir = PathBuf::from(spec);
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .ok_or_else(|| {
                    if dir.is_dir() {
                        Failure::usage(format!("--preopen {spec}: give it a name, as NAME=DIR"))
                    } else {
                        Failure::usage(format!("--preopen {spec}: no such directory"))
                    }
                })?;
            (name, dir)
        }
    };
    if name.is_empty() || name.contains('/') {
        return Err(Failure::usage(format!(
            "--preopen {spec}: the name must be one path component"
        )));
    }
    Ok((name, dir))
}

/// `--dir HOST_DIR[::GUEST_DIR]`: the guest's name and the host directory.
/// Unlike `--preopen`'s, the name is a WASI guest path and may hold `/`
/// (`::/sandbox`), as wasmtime allows.
pub(crate) fn dir(spec: &str) -> Result<(String, PathBuf), Failure> {
    let (host, guest) = spec.split_once("::").unwrap_or((spec, spec));
    if host.is_empty() || guest.is_empty() {
        return Err(Failure::usage(format!(
            "--dir {spec}: give HOST_DIR or HOST_DIR::GUEST_DIR, neither empty"
        )));
    }
    // Checked here so that the message names the flag and the real cause.
    if !PathBuf::from(host).is_dir() {
        return Err(Failure::usage(format!("--dir {spec}: no such directory")));
    }
    Ok((guest.to_string(), PathBuf::from(host)))
}

/// `--env NAME=VALUE`: the name and the value.
pub(crate) fn env(spec: &str) -> Result<(&str, &str), Failure> {
    match spec.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name, value)),
        _ => Err(Failure::usage(format!(
            "--env {spec}: give NAME=VALUE, with a non-empty NAME"
        ))),
    }
}

/// One of an export's arguments, parsed by its parameter type; unsigned
/// spellings are accepted too (`4294967295` for an `i32` -1).
pub(crate) fn parse_arg(text: &str, ty: &ValType) -> Option<Val> {
    match ty {
        ValType::I32 => text
            .parse::<i32>()
            .ok()
            .or_else(|| text.parse::<u32>().ok().map(|v| v as i32))
            .map(Val::I32),
        ValType::I64 => text
            .parse::<i64>()
            .ok()
            .or_else(|| text.parse::<u64>().ok().map(|v| v as i64))
            .map(Val::I64),
        ValType::F32 => text.parse::<f32>().ok().map(|v| Val::F32(v.to_bits())),
        ValType::F64 => text.parse::<f64>().ok().map(|v| Val::F64(v.to_bits())),
        _ => None,
    }
}
