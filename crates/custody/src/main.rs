//! `custody`: run a WebAssembly guest in an unloadable domain and show what
//! happened to every handle it touched.
//!
//! ```text
//! custody run (MODULE | --manifest FILE) [--invoke NAME] [ARGS...] [--preopen [NAME=]DIR ...]
//!              [--deny CATEGORY ...] [--policy FILE] [--deadline DURATION] [--memory SIZE]
//!              [--json] [--no-cache] [--log-format text|json] [--log-level LEVEL]
//! ```
//!
//! With `--manifest`, the domain is the one the manifest describes (its
//! modules, pre-opens and `[policy]` over the host's); `--deadline`,
//! `--memory` and `--deny` apply over the manifest's policy too.
//!
//! Exit status: 0 success, 2 usage or load error, 3 trap or abort, 4 denied
//! import.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

mod source;

use clap::{Args, Parser, Subcommand, ValueEnum};
use custody_handle::diagnostics::{self, Collector};
use custody_host::{
    AbiError, CallError, Domain, DomainConfig, Host, Ledger, LoadError, LogSink, ManifestError,
    Module, Policy, Val, ValType, parse_size,
};
use serde::Serialize;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(
    name = "custody",
    version,
    about = "Host untrusted WebAssembly without leaking an OS resource"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How custody's own log is written on stderr: `text` (diagnostics as
    /// reports, guest log lines as they are) or `json` (one JSON object per
    /// line for every event: lifecycle steps, diagnostics, guest log lines).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The least severe lifecycle event written on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Warn)]
    log_level: LogLevel,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// Sends custody's `tracing` events to stderr. In text form, diagnostics and
/// guest log lines keep their own renderings (a report per diagnostic, a
/// line per guest message) and `tracing` adds the lifecycle events; in JSON
/// form every event, those included, is one JSON line.
fn install_log(format: LogFormat, level: LogLevel) {
    let level = level.filter();
    let result = match format {
        LogFormat::Text => {
            let targets = Targets::new()
                .with_default(level)
                .with_target("custody::diagnostics", LevelFilter::OFF)
                .with_target("custody::guest", LevelFilter::OFF);
            tracing_subscriber::registry()
                .with(
                    fmt::layer()
                        .with_writer(std::io::stderr)
                        // Colours only for a terminal, not a file or a pipe.
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .with_target(true)
                        .with_filter(targets),
                )
                .try_init()
        }
        LogFormat::Json => {
            diagnostics::set_stderr(false);
            let targets = Targets::new()
                .with_default(level)
                .with_target("custody::diagnostics", LevelFilter::TRACE)
                .with_target("custody::guest", LevelFilter::TRACE);
            tracing_subscriber::registry()
                .with(
                    fmt::layer()
                        .json()
                        .with_writer(std::io::stderr)
                        .with_filter(targets),
                )
                .try_init()
        }
    };
    // A subscriber already installed (never, in the binary) is not an error.
    drop(result);
}

#[derive(Subcommand)]
enum Command {
    /// Load MODULE (.wasm or .wat), or the modules of a manifest, into a
    /// fresh domain, call one export, unload the domain and print the result
    /// and the handle ledger.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The module to run (.wasm or .wat); or give --manifest.
    #[arg(allow_negative_numbers = true)]
    module: Option<PathBuf>,
    /// Run the domain a manifest describes (TOML: its modules, pre-opens and
    /// policy) instead of one MODULE; the export is found across its modules.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The export to call [default: `_start`, `main` or `run`, the first the module (or a module of the manifest) has].
    #[arg(long, value_name = "NAME")]
    invoke: Option<String>,
    /// Arguments for the export, parsed by its parameter types.
    #[arg(allow_negative_numbers = true, value_name = "ARGS")]
    args: Vec<String>,
    /// Pre-open a directory for the guest: `NAME=DIR`, or `DIR` (named after
    /// its last path component). Guests open files as `NAME/rel/path`.
    #[arg(long = "preopen", value_name = "[NAME=]DIR")]
    preopens: Vec<String>,
    /// Deny a host-protection category: a module importing a function that
    /// carries it fails to load.
    #[arg(long = "deny", value_name = "CATEGORY")]
    denied: Vec<String>,
    /// Read the policy from a TOML file (the flags below override it).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Abort the call after this long: `500ms`, `2s`, or milliseconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    deadline: Option<Duration>,
    /// How long the unload at the end waits for what still holds the domain
    /// (an armed timer, say) before it forces it: `500ms`, `2s`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    unload_timeout: Option<Duration>,
    /// Cap the domain's linear memory: `64MiB`, `64M`, `1G`, `512K` or bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<usize>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Compile without the on-disk cache of compiled modules (kept in
    /// `$CUSTODY_CACHE_DIR`, else `$XDG_CACHE_HOME/custody`, else
    /// `~/.cache/custody`).
    #[arg(long)]
    no_cache: bool,
}

/// Where compiled modules are cached between runs, if anywhere.
fn cache_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("CUSTODY_CACHE_DIR")
        .or_else(|| from("XDG_CACHE_HOME").map(|d| d.join("custody")))
        .or_else(|| from("HOME").map(|d| d.join(".cache").join("custody")))
}

/// A failure: the one line printed on stderr, and the exit status.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            status: 2,
            message: message.into(),
        }
    }
}

impl From<LoadError> for Failure {
    fn from(error: LoadError) -> Self {
        let status = if matches!(
            error,
            LoadError::Denied { .. } | LoadError::DeniedModule { .. }
        ) {
            4
        } else {
            2
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}

impl From<ManifestError> for Failure {
    fn from(error: ManifestError) -> Self {
        let status = if matches!(
            error.load_error(),
            Some(LoadError::Denied { .. } | LoadError::DeniedModule { .. })
        ) {
            4
        } else {
            2
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        let status = match error {
            CallError::Trap { .. } | CallError::Aborted { .. } | CallError::Escalated { .. } => 3,
            _ => 2,
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}

#[derive(Serialize)]
struct JsonLedger {
    opened: u64,
    closed_by_guest: u64,
    released_at_unload: u64,
    release_failures: u64,
}

#[derive(Serialize)]
struct JsonOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    ledger: JsonLedger,
    diagnostics: Vec<custody_handle::diagnostics::Diagnostic>,
    /// Diagnostics past the first `MAX_DIAGNOSTICS` kept, not shown.
    #[serde(skip_serializing_if = "is_zero")]
    diagnostics_dropped: u64,
}

/// The most diagnostics `--json` output keeps (the most recent).
const MAX_DIAGNOSTICS: usize = 1000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_log(cli.log_format, cli.log_level);
    let log_format = cli.log_format;
    match cli.command {
        Command::Run(args) => match run(&args, log_format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                // One line, whatever the error says; a guest's names in it
                // (exports, functions of a backtrace) are escaped.
                let line = failure.message.replace('\n', " ");
                eprintln!("custody: {}", diagnostics::escape_control(&line));
                ExitCode::from(failure.status)
            }
        },
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1e-3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 500ms or 2s)"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("{text:?}: a deadline must be positive and finite"));
    }
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{text:?}: a deadline that long is out of range"))
}

fn preopen(spec: &str) -> Result<(String, PathBuf), Failure> {
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

fn parse_arg(text: &str, ty: &ValType) -> Option<Val> {
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

fn json_value(value: &Val) -> serde_json::Value {
    match value {
        Val::I32(v) => (*v).into(),
        Val::I64(v) => (*v).into(),
        Val::F32(bits) => f64::from(f32::from_bits(*bits)).into(),
        Val::F64(bits) => f64::from_bits(*bits).into(),
        other => format!("{other:?}").into(),
    }
}

fn run(args: &RunArgs, log_format: LogFormat) -> Result<(), Failure> {
    let mut policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            Policy::from_toml(&text)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?
        }
        None => Policy::default(),
    };
    let flags = source::Flags::parse(args)?;
    flags.apply(&mut policy);
    let (source, call_args) = source::source(args)?;
    // Bounded: a guest firing diagnostics in a loop cannot grow the CLI.
    let collector = Collector::bounded(MAX_DIAGNOSTICS);
    if args.json {
        // Diagnostics go into the JSON object, not onto stderr.
        diagnostics::set_stderr(false);
    }
    // In JSON form guest lines go through `tracing`, not a plain sink.
    let log: LogSink = match log_format {
        LogFormat::Text => custody_host::stderr_log(),
        LogFormat::Json => Arc::new(|_, _, _| {}),
    };
    let mut builder = Host::builder(policy).log(log);
    if !args.no_cache
        && let Some(dir) = cache_dir()
        && std::fs::create_dir_all(&dir).is_ok()
    {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build().map_err(|e| Failure::usage(e.to_string()))?;
    let mut config = DomainConfig::new();
    let modules = match &source {
        source::Source::Manifest(manifest) => {
            // The manifest's policy over the host's, then the flags over both.
            let mut own = manifest.domain_policy(host.policy())?;
            flags.apply(&mut own);
            config = config.policy(own);
            for (name, dir) in manifest.preopens() {
                config = config.preopen(name, dir);
            }
            host.compile_manifest(manifest)?
        }
        source::Source::Module(path) => {
            let module = host.compile_file(path)?;
            let name = module
                .name()
                .or_else(|| path.file_stem().and_then(|s| s.to_str()))
                .unwrap_or("main")
                .to_string();
            vec![(name, module)]
        }
    };
    for spec in &args.preopens {
        let (name, dir) = preopen(spec)?;
        config = config.preopen(name, dir);
    }
    let domain = host
        .create_domain(config)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let outcome = load_and_call(args, &call_args, &domain, &modules);
    // Unload whatever happened: every handle comes back, and the ledger and
    // diagnostics are printed on every path.
    let ledger = match domain.unload() {
        Ok(report) => report.ledger,
        Err(_) => domain.ledger(),
    };
    // Floods cut by the rate limit are summed up before the report.
    diagnostics::flush_suppressed();
    let codes = modules.iter().any(|(_, module)| {
        module
            .imports()
            .any(|i| i.module() == custody_host::abi::MODULE)
    });
    print_outcome(args, &outcome, ledger, &collector, codes);
    outcome.map(drop)
}

/// Loads the modules in order and calls the export (the first module's of
/// that name, as [`Domain::call`] finds it) with the command line's
/// arguments.
fn load_and_call(
    args: &RunArgs,
    call_args: &[String],
    domain: &Domain,
    modules: &[(String, Module)],
) -> Result<Vec<Val>, Failure> {
    for (name, module) in modules {
        domain.load(name, module).map_err(|error| {
            let mut failure = Failure::from(error);
            if args.manifest.is_some() {
                // Which of the manifest's modules failed.
                failure.message = format!("module {name:?}: {}", failure.message);
            }
            failure
        })?;
    }
    let func = |name: &str| {
        modules
            .iter()
            .find_map(|(_, m)| m.get_export(name).and_then(|e| e.func().cloned()))
    };
    let export = match &args.invoke {
        Some(export) => export.clone(),
        None => ["_start", "main", "run"]
            .into_iter()
            .find(|e| func(e).is_some())
            .ok_or_else(|| {
                let exports: Vec<_> = modules
                    .iter()
                    .flat_map(|(_, m)| m.exports())
                    .filter(|e| e.ty().func().is_some())
                    .map(|e| e.name().to_string())
                    .collect();
                Failure::usage(format!(
                    "no --invoke given and no _start, main or run export; functions: {}",
                    exports.join(", ")
                ))
            })?
            .to_string(),
    };
    let func_ty =
        func(&export).ok_or_else(|| Failure::from(CallError::NoSuchExport(export.clone())))?;
    let params: Vec<_> = func_ty.params().collect();
    if params.len() != call_args.len() {
        return Err(Failure::usage(format!(
            "{export} takes {} argument(s), got {}",
            params.len(),
            call_args.len()
        )));
    }
    let values = params
        .iter()
        .zip(call_args)
        .map(|(ty, text)| {
            parse_arg(text, ty)
                .ok_or_else(|| Failure::usage(format!("{export}: {text:?} is not a valid {ty}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(domain.call(&export, &values)?)
}

/// A result as text. From a guest of the custody ABI, a negative `i32`
/// that is one of its error codes is shown with its name: `-8 (E_DENIED)`.
fn shown(value: &Val, codes: bool) -> String {
    match value {
        Val::I32(n) if codes => match AbiError::from_code(*n) {
            Some(error) => error.to_string(),
            None => n.to_string(),
        },
        other => json_value(other).to_string(),
    }
}

/// Prints the outcome on stdout: the result or the error, the ledger and
/// (with `--json`) the diagnostics. A closed stdout (a reader that went
/// away: `EPIPE`, since Rust ignores SIGPIPE) ends the output quietly
/// instead of panicking as `println!` would.
fn print_outcome(
    args: &RunArgs,
    outcome: &Result<Vec<Val>, Failure>,
    ledger: Ledger,
    collector: &Collector,
    codes: bool,
) {
    let text = if args.json {
        let output = JsonOutput {
            result: outcome
                .as_ref()
                .ok()
                .map(|results| results.iter().map(json_value).collect()),
            error: outcome.as_ref().err().map(|f| f.message.replace('\n', " ")),
            ledger: JsonLedger {
                opened: ledger.opened,
                closed_by_guest: ledger.closed_by_guest,
                released_at_unload: ledger.released_at_unload,
                release_failures: ledger.release_failures,
            },
            diagnostics: collector.take(),
            diagnostics_dropped: collector.dropped(),
        };
        serde_json::to_string(&output).expect("serializable") + "\n"
    } else {
        let ledger = format!(
            "ledger: opened {}, closed by the guest {}, released at unload {}, release failures {}\n",
            ledger.opened,
            ledger.closed_by_guest,
            ledger.released_at_unload,
            ledger.release_failures
        );
        match outcome {
            Ok(results) => {
                let shown: Vec<String> = results.iter().map(|v| shown(v, codes)).collect();
                let shown = if shown.is_empty() {
                    "(none)".to_string()
                } else {
                    shown.join(" ")
                };
                format!("result: {shown}\n{ledger}")
            }
            // The error itself goes to stderr, as one line.
            Err(_) => ledger,
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
