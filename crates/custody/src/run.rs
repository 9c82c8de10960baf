//! `custody run`: build the host and the domain, load the modules, call the
//! export (or run the WASI command), unload, and say how it ended.

use std::path::Path;
use std::sync::Arc;

use custody_handle::diagnostics::{self, Collector};
use custody_host::{CallError, Domain, DomainConfig, Host, LogSink, Module, Policy, Val};
use custody_wasi::{Stdio, Wasi, WasiDomain, WasiDomainConfig};

use crate::LogFormat;
use crate::args::{self, RunArgs};
use crate::outcome::{Called, Failure};
use crate::output::{self, MAX_DIAGNOSTICS, Report};
use crate::source;

/// A guest's exit status as a process's: one outside 0..=255 is 255, so
/// that a failure is never read as a success (`exit(256)` would wrap to 0).
fn process_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

/// The host policy in `path` (TOML, docs/RELIABILITY.md), or the default
/// one: `custody run`'s and `custody serve`'s `--policy`.
pub(crate) fn policy_file(path: Option<&std::path::Path>) -> Result<Policy, Failure> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    Policy::from_toml(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// Runs the domain the arguments describe; the process's exit status.
pub(crate) fn run(args: &RunArgs, log_format: LogFormat) -> Result<u8, Failure> {
    let mut policy = policy_file(args.policy.as_deref())?;
    let flags = source::Flags::parse(args)?;
    flags.apply(&mut policy);
    let (source, call_args) = source::source(args)?;
    // Flag values are checked before anything is compiled: a usage error
    // costs no compilation.
    let mut dirs = Vec::new();
    for spec in &args.dirs {
        dirs.push(args::dir(spec)?);
    }
    for spec in &args.preopens {
        dirs.push(args::preopen(spec)?);
    }
    let env = (args.env.iter())
        .map(|spec| args::env(spec))
        .collect::<Result<Vec<_>, _>>()?;
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
    let mut builder = Host::builder(policy).log(log).extension(Wasi);
    if !args.no_cache
        && let Some(dir) = args::cache_dir()
        && std::fs::create_dir_all(&dir).is_ok()
    {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build().map_err(|e| Failure::usage(e.to_string()))?;
    let mut config = DomainConfig::new();
    let (modules, argv0) = match &source {
        source::Source::Manifest(manifest) => {
            // The manifest's policy over the host's, then the flags over both.
            let mut own = manifest.domain_policy(host.policy())?;
            flags.apply(&mut own);
            config = config.policy(own);
            for (name, dir) in manifest.preopens() {
                config = config.preopen(name, dir);
            }
            let argv0 = args.manifest.as_deref().unwrap_or(Path::new(""));
            (host.compile_manifest(manifest)?, argv0)
        }
        source::Source::Module(path) => {
            let module = host.compile_file(path)?;
            let name = module
                .name()
                .or_else(|| path.file_stem().and_then(|s| s.to_str()))
                .unwrap_or("main")
                .to_string();
            (vec![(name, module)], *path)
        }
    };
    for (name, dir) in dirs {
        config = config.preopen(name, dir);
    }
    for (name, value) in env {
        config = config.env(name, value);
    }
    // A command, as wasmtime runs one: ARGS are its argv, not parameters.
    let command = args.invoke.is_none() && exported(&modules, "_start");
    if command {
        let argv0 = argv0.to_string_lossy().into_owned();
        config = config.args(std::iter::once(argv0).chain(call_args.iter().cloned()));
    }
    // The CLI's guests write where custody does, as wasmtime's do, unless
    // the output is asked for in the JSON object.
    config = config.stdin(Stdio::Inherit);
    if args.capture {
        config = config.stdout(Stdio::Capture).stderr(Stdio::Capture);
    } else {
        config = config.stdout(Stdio::Inherit).stderr(Stdio::Inherit);
    }
    let domain = host
        .create_domain(config)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let outcome = load_and_call(args, command, &call_args, &domain, &modules);
    // Unload whatever happened: every handle comes back, and the ledger and
    // diagnostics are printed on every path.
    let ledger = match domain.unload() {
        Ok(report) => report.ledger,
        Err(_) => domain.ledger(),
    };
    // After the unload, so that what the unloading hook wrote is included.
    let captured = args
        .capture
        .then(|| (domain.take_stdout(), domain.take_stderr()));
    // Floods cut by the rate limit are summed up before the report.
    diagnostics::flush_suppressed();
    let codes = modules.iter().any(|(_, module)| {
        module
            .imports()
            .any(|i| i.module() == custody_host::abi::MODULE)
    });
    let report = Report {
        outcome,
        ledger,
        codes,
        command,
        captured,
    };
    output::print(&report, args.json, &collector);
    match report.outcome {
        Ok(Called::Results(_)) => Ok(0),
        Ok(Called::Exited(code)) => Ok(process_status(code)),
        Err(failure) => Err(failure),
    }
}

/// Whether one of the modules exports a function `name`.
fn exported(modules: &[(String, Module)], name: &str) -> bool {
    modules
        .iter()
        .any(|(_, m)| m.get_export(name).is_some_and(|e| e.func().is_some()))
}

/// Loads the modules in order and calls the export (the first module's of
/// that name, as [`Domain::call`] finds it): a command's `_start`, or the
/// export named or found, with the command line's arguments.
fn load_and_call(
    args: &RunArgs,
    command: bool,
    call_args: &[String],
    domain: &Domain,
    modules: &[(String, Module)],
) -> Result<Called, Failure> {
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
    let ended = |result: Result<Vec<Val>, CallError>| match result {
        // `_start` has no results; returning is exiting with 0.
        Ok(_) if command => Ok(Called::Exited(0)),
        Ok(values) => Ok(Called::Results(values)),
        // `proc_exit` is how a WASI guest ends: not a failure of the call.
        Err(CallError::Exit(code)) => Ok(Called::Exited(code)),
        Err(error) => Err(Failure::from(error)),
    };
    if command {
        return ended(domain.call("_start", &[]));
    }
    let func = |name: &str| {
        modules
            .iter()
            .find_map(|(_, m)| m.get_export(name).and_then(|e| e.func().cloned()))
    };
    let export = match &args.invoke {
        Some(export) => export.clone(),
        None => ["main", "run"]
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
            args::parse_arg(text, ty)
                .ok_or_else(|| Failure::usage(format!("{export}: {text:?} is not a valid {ty}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    ended(domain.call(&export, &values))
}
