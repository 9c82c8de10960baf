//! `custody serve`: the plugin server (`custody-serve`) on a tokio
//! runtime. Without `--config` it serves the bundled examples. It listens
//! first (`/health` answers 200, `/ready` 503), then loads the plugins
//! (one that fails ends the process, exit 2), then `/ready` turns 200 and
//! it prints one line per route (`GET http://127.0.0.1:8080/hello`), then,
//! with `[admin]`, the admin listener's (`ADMIN http://127.0.0.1:9090`).
//! SIGTERM or SIGINT stop it as docs/SERVER.md tells (ready 503,
//! `shutdown_delay`, drain, exit 0; a second signal forces), SIGHUP
//! reloads every plugin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use custody_serve::{
    AdminListener, Listeners, ServerConfig, ServerState, SpanParent, display_path, example_config,
};

use crate::outcome::Failure;

/// `custody serve`'s options.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free port, printed);
    /// overrides the configuration's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The server's configuration (docs/SERVER.md); without it, the
    /// bundled example plugins.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The host policy (TOML, docs/RELIABILITY.md): engine-wide settings
    /// such as `allocation` and `pool_size`, and the defaults each
    /// plugin's `policy` applies over.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// Serves until a signal; the process's exit status. `span_parent`, if
/// given, reads each request's trace context (the `otlp` feature).
pub(crate) fn serve(args: &ServeArgs, span_parent: Option<SpanParent>) -> Result<u8, Failure> {
    let (mut config, file) = match &args.config {
        Some(path) => (ServerConfig::from_file(path), path.clone()),
        None => (
            example_config(SocketAddr::from(([127, 0, 0, 1], 8080))),
            PathBuf::from("<built-in>"),
        ),
    };
    let config = config.as_mut().map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let policy = crate::run::policy_file(args.policy.as_deref())?;
    let state = ServerState::starting(config, policy, Path::new(&file))
        .map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(span_parent) = span_parent {
        state.set_span_parent(span_parent);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("the runtime: {e}")))?;
    let stopped = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::usage(e.to_string()))?;
        let admin = match &config.admin {
            Some(admin) => Some(
                AdminListener::bind(admin, Path::new(&file))
                    .await
                    .map_err(|e| Failure::usage(e.to_string()))?,
            ),
            None => None,
        };
        let admin_addr = (admin.as_ref())
            .map(AdminListener::local_addr)
            .transpose()
            .map_err(|e| Failure::usage(e.to_string()))?;
        // The handlers are in place before the lines are printed: a
        // supervisor that signals once it reads them is heard.
        let signals = custody_serve::os_signals()
            .map_err(|e| Failure::usage(format!("signal handlers: {e}")))?;
        tracing::info!(target: "custody::serve", %addr, "listening: loading the plugins");
        let listeners = Listeners {
            plugins: listener,
            admin,
        };
        let serving = tokio::spawn(custody_serve::serve_with_signals(
            Arc::clone(&state),
            listeners,
            signals,
        ));
        let mut serving = serving;
        let loading = {
            let (state, config) = (Arc::clone(&state), config.clone());
            tokio::task::spawn_blocking(move || state.load_plugins(&config))
        };
        let loaded = tokio::select! {
            loaded = loading => loaded,
            // SIGTERM or SIGINT while the plugins load: the server stopped
            // (never ready, so at once); the load is abandoned with the
            // process.
            stopped = &mut serving => {
                return stopped
                    .map_err(|e| Failure::usage(format!("the server: {e}")))?
                    .map_err(|e| Failure::usage(e.to_string()));
            }
        };
        let loaded = loaded
            .map_err(|e| Failure::usage(format!("loading the plugins: {e}")))
            .and_then(|loaded| loaded.map_err(|e| Failure::usage(e.to_string())));
        if let Err(failure) = loaded {
            // No plugin serves, so no domain is alive: nothing to drain.
            serving.abort();
            return Err(failure);
        }
        for (_, route) in state.routes() {
            println!("GET http://{addr}{}", display_path(&route));
        }
        if let Some(admin) = admin_addr {
            println!("ADMIN http://{admin}");
        }
        serving
            .await
            .map_err(|e| Failure::usage(format!("the server: {e}")))?
            .map_err(|e| Failure::usage(e.to_string()))
    });
    // A stop while the plugins load leaves the load running on the
    // blocking pool: the process does not wait for it.
    runtime.shutdown_background();
    stopped?;
    Ok(0)
}
