//! `custody`: run a WebAssembly guest in an unloadable domain and show what
//! happened to every handle it touched.
//!
//! ```text
//! custody serve [--listen ADDR] [--config FILE] [--policy FILE]
//! custody ps | requests                       [--admin URL] [--json]
//! custody roots ID | unload ID [--force]      [--admin URL] [--json]
//! custody cancel REQUEST | reload NAME | promote NAME | rollback NAME
//! custody run [OPTIONS] (MODULE | --manifest FILE) [ARGS...]
//!   --invoke NAME                 the export to call (ARGS are its parameters)
//!   --dir HOST_DIR[::GUEST_DIR]   pre-open a directory (also --preopen [NAME=]DIR)
//!   --env NAME=VALUE              a WASI environment variable
//!   --deny CATEGORY  --policy FILE  --deadline DURATION  --memory SIZE
//!   --unload-timeout DURATION  --json [--capture]  --no-cache
//!   --log-format text|json  --log-level LEVEL
//! ```
//!
//! The CLI follows wasmtime's conventions (SPEC W2): without `--invoke`, a
//! module exporting `_start` is a WASI command: ARGS are its `argv` (after
//! `argv[0]`, MODULE as given), it inherits custody's stdin, stdout and
//! stderr, and custody exits with its exit status. Its stdout is its own:
//! custody prints nothing there, and on stderr only what went wrong (the
//! handles it left open, a failed release). Otherwise the export called is
//! `main` or `run` (or `--invoke NAME`), ARGS are its parameters, and the
//! result and the handle ledger are printed. Guest arguments that start
//! with `-` (other than negative numbers) follow `--`, since custody's own
//! options may come after MODULE.
//!
//! With `--manifest`, the domain is the one the manifest describes (its
//! modules, pre-opens and `[policy]` over the host's); `--deadline`,
//! `--memory` and `--deny` apply over the manifest's policy too.
//!
//! Exit status: a command's own (0 when `_start` returns, `n` for
//! `proc_exit(n)`; outside 0..=255, 255), else 0 success; 2 usage or load
//! error, 3 trap or abort, 4 denied import.
//!
//! The admin commands (`ps`, `roots`, ...) are clients of a running
//! server's admin API (`--admin URL`, the token from
//! `CUSTODY_ADMIN_TOKEN`): tables for people, `--json` the server's JSON.
//! Their exit status has the same meanings: 0 done, 2 what was asked is
//! wrong (a usage error, an id or name the server refuses, a version that
//! does not load), 3 the server could not be reached or failed, 4 the
//! token was refused.
//!
//! # Module map
//! Bottom first: a module imports only modules listed above it, and this
//! file (the command line itself) sits on top (the layering test declares
//! the same order and fails on an import going up).
//!
//! | module | owns |
//! | --- | --- |
//! | `outcome` | how a run ends: a failure (its line and exit status), or what the call gave back |
//! | `otlp` | (feature `otlp`) `custody serve`'s spans over OTLP/HTTP, configured by `OTEL_*` variables; `traceparent` as the request span's parent |
//! | `args` | `custody run`'s options and the parsing of their values |
//! | `source` | what runs (a module or a manifest's domain) and the policy flags |
//! | `output` | what is printed once the domain is unloaded: result or status, ledger, diagnostics |
//! | `run` | `custody run`: host, domain, load, call, unload |
//! | `serve` | `custody serve`: the plugin server (docs/SERVER.md) on a tokio runtime |
//! | `table` | tables for people (aligned, control characters escaped) and their cells' formats |
//! | `admin_client` | the admin API's client: one HTTP/1 request through hyper, the token, refusals as failures with their exit status |
//! | `admin` | the admin commands: `ps`, `roots`, `requests`, `cancel`, `reload`, `promote`, `rollback`, `unload` |
// The command line needs no `unsafe`: everything unsafe is in the libraries.
#![forbid(unsafe_code)]

use std::process::ExitCode;

mod admin;
mod admin_client;
mod args;
#[cfg(feature = "otlp")]
mod otlp;
mod outcome;
mod output;
mod run;
mod serve;
mod source;
mod table;

use clap::{Parser, Subcommand, ValueEnum};
use custody_handle::diagnostics;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::Registry;

use crate::args::RunArgs;

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

/// A layer that sends spans elsewhere (the `otlp` feature's export).
type SpanLayer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;

/// Sends custody's `tracing` events to stderr, and its spans to `spans` if
/// given. In text form, diagnostics and
/// guest log lines keep their own renderings (a report per diagnostic, a
/// line per guest message) and `tracing` adds the lifecycle events; in JSON
/// form every event, those included, is one JSON line.
fn install_log(format: LogFormat, level: LogLevel, spans: Option<SpanLayer>) {
    let level = level.filter();
    let result = match format {
        LogFormat::Text => {
            let targets = Targets::new()
                .with_default(level)
                .with_target("custody::diagnostics", LevelFilter::OFF)
                .with_target("custody::guest", LevelFilter::OFF);
            tracing_subscriber::registry()
                .with(spans)
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
                .with(spans)
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
    /// fresh domain and run it: a WASI command (an export `_start`) with
    /// ARGS as its arguments, exiting with its status; else one export with
    /// ARGS as its parameters, printing the result and the handle ledger.
    /// The domain is unloaded at the end.
    Run(Box<RunArgs>),
    /// Serve WAGI plugins over HTTP, each request in a fresh domain: the
    /// bundled examples without --config (one line per route is printed).
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `custody serve` exports its spans if built with `otlp` and the
    // environment names a collector.
    #[cfg(feature = "otlp")]
    let export = match &cli.command {
        Command::Serve(_) => match otlp::Export::from_env() {
            Ok(export) => export,
            Err(failure) => return exit(Err(failure)),
        },
        _ => None,
    };
    #[cfg(feature = "otlp")]
    let (export, spans, span_parent) = match export {
        Some((export, layer)) => (
            Some(export),
            Some(layer),
            Some(otlp::span_parent as custody_serve::SpanParent),
        ),
        None => (None, None, None),
    };
    #[cfg(not(feature = "otlp"))]
    let (spans, span_parent) = (None, None);
    install_log(cli.log_format, cli.log_level, spans);
    let log_format = cli.log_format;
    let result = match cli.command {
        Command::Run(args) => run::run(&args, log_format),
        Command::Serve(args) => serve::serve(&args, span_parent),
        Command::Admin(command) => admin::run(&command),
    };
    // The spans still batched leave before the process does.
    #[cfg(feature = "otlp")]
    if let Some(export) = export {
        export.shutdown();
    }
    exit(result)
}

/// The process's exit status for `result`, a failure's line printed.
fn exit(result: Result<u8, outcome::Failure>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            // One line, whatever the error says; a guest's names in it
            // (exports, functions of a backtrace) are escaped.
            let line = failure.message.replace('\n', " ");
            eprintln!("custody: {}", diagnostics::escape_control(&line));
            ExitCode::from(failure.status)
        }
    }
}
