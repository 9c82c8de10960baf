//! The admin API's commands (`custody ps`, `roots`, `requests`, `cancel`,
//! `reload`, `promote`, `rollback`, `unload`): each one call of a running
//! server's admin API (docs/SERVER.md), drawn as a table or lines for
//! people, or with `--json` the server's JSON as it is. A refusal is the
//! server's error on stderr and a non-zero exit (`admin_client`).

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use crate::admin_client::{AdminArgs, AdminClient, segment, unavailable};
use crate::outcome::Failure;
use crate::table::{Table, bytes, cell, counts, millis};

/// The admin API's commands.
#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// List a running server's plugins (versions, canary, requests in
    /// flight) and its live domains (state, handles, roots, memory).
    Ps(AdminArgs),
    /// What holds domain ID: each root with its origin, the host call it
    /// is blocked in and the guest's stack.
    Roots(DomainArgs),
    /// List the requests in flight, with the host call each is blocked in.
    Requests(AdminArgs),
    /// Cancel a request in flight (its client gets 503 with its id).
    Cancel(RequestArgs),
    /// Reload plugin NAME from its files (the old version drains).
    Reload(PluginArgs),
    /// Promote plugin NAME's canary: it serves every request.
    Promote(PluginArgs),
    /// Roll plugin NAME's canary back (its domains drain).
    Rollback(PluginArgs),
    /// Unload domain ID: cooperatively (what still holds it is listed), or
    /// with --force at once (its requests end cancelled).
    Unload(UnloadArgs),
}

/// A command on one domain.
#[derive(Args)]
pub(crate) struct DomainArgs {
    /// The domain's id (as `custody ps` lists it).
    id: u64,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A command on one request.
#[derive(Args)]
pub(crate) struct RequestArgs {
    /// The request's id (as `custody requests` and fault bodies give it).
    request: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A command on one plugin.
#[derive(Args)]
pub(crate) struct PluginArgs {
    /// The plugin's name (as the configuration gives it).
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `custody unload`.
#[derive(Args)]
pub(crate) struct UnloadArgs {
    /// The domain's id (as `custody ps` lists it).
    id: u64,
    /// Force it: running guest code stops, a host wait wakes, its
    /// requests end cancelled.
    #[arg(long)]
    force: bool,
    /// How long a cooperative unload is waited for before what still
    /// holds it is listed (the server's `wait_ms`: `500ms`, `5s`; it takes
    /// at most 60 s) [default: the server's, 1 s].
    #[arg(long, value_name = "DURATION", value_parser = custody_serve::parse_duration, conflicts_with = "force")]
    wait: Option<std::time::Duration>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Runs `command`; the exit status.
pub(crate) fn run(command: &AdminCommand) -> Result<u8, Failure> {
    match command {
        AdminCommand::Ps(admin) => ps(admin),
        AdminCommand::Roots(args) => {
            let path = format!("{}/{}/roots", custody_serve::ADMIN_DOMAINS_PATH, args.id);
            let roots = ask(&args.admin, Method::GET, &path)?;
            show(&args.admin, || render_roots(&roots))
        }
        AdminCommand::Requests(admin) => {
            let requests = ask(admin, Method::GET, custody_serve::ADMIN_REQUESTS_PATH)?;
            show(admin, || render_requests(&requests))
        }
        AdminCommand::Cancel(args) => {
            let path = format!(
                "{}/{}/cancel",
                custody_serve::ADMIN_REQUESTS_PATH,
                segment(&args.request)
            );
            let cancelled = ask(&args.admin, Method::POST, &path)?;
            show(&args.admin, || {
                format!(
                    "request {} cancelled (plugin {}, domain {}): its client gets 503\n",
                    cell(&cancelled["id"]),
                    cell(&cancelled["plugin"]),
                    cell(&cancelled["domain"]),
                )
            })
        }
        AdminCommand::Reload(args) => plugin_action(args, "reload"),
        AdminCommand::Promote(args) => plugin_action(args, "promote"),
        AdminCommand::Rollback(args) => plugin_action(args, "rollback"),
        AdminCommand::Unload(args) => unload(args),
    }
}

/// One call; its JSON answer (printed as it is with `--json`, a refusal's
/// too, before the failure).
fn ask(admin: &AdminArgs, method: Method, path: &str) -> Result<Value, Failure> {
    let client = AdminClient::new(admin)?;
    let answer = client.send(method.clone(), path)?;
    if admin.json && answer.json.is_some() {
        println!("{}", answer.body.trim_end());
    }
    if !answer.status.is_success() {
        return Err(client.refused(&method, path, &answer));
    }
    answer.json.ok_or_else(|| {
        unavailable(format!(
            "{method} {path}: the admin API answered {} but not JSON: {}",
            answer.status,
            answer.body.trim()
        ))
    })
}

/// Prints `render()` unless `--json` printed the answer already: exit 0.
fn show(admin: &AdminArgs, render: impl FnOnce() -> String) -> Result<u8, Failure> {
    if !admin.json {
        print!("{}", render());
    }
    Ok(0)
}

fn ps(admin: &AdminArgs) -> Result<u8, Failure> {
    let plugins = ask_quietly(admin, custody_serve::ADMIN_PLUGINS_PATH)?;
    let domains = ask_quietly(admin, custody_serve::ADMIN_DOMAINS_PATH)?;
    if admin.json {
        // One JSON object: the two answers' fields (`loaded`, `plugins`,
        // `domains`) as they are.
        let mut both = plugins;
        if let (Some(both), Value::Object(domains)) = (both.as_object_mut(), domains) {
            both.extend(domains);
        }
        println!("{both}");
        return Ok(0);
    }
    print!("{}\n{}", render_plugins(&plugins), render_domains(&domains));
    Ok(0)
}

/// A GET whose JSON `--json` does not print as it is (`ps` prints two
/// answers as one object).
fn ask_quietly(admin: &AdminArgs, path: &str) -> Result<Value, Failure> {
    let quiet = AdminArgs {
        url: admin.url.clone(),
        json: false,
    };
    ask(&quiet, Method::GET, path)
}

fn render_plugins(answer: &Value) -> String {
    let plugins = answer["plugins"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // The canary column only when a plugin has one.
    let canaries = plugins.iter().any(|p| !p["canary"].is_null());
    let mut headings = vec!["PLUGIN", "VERSION"];
    if canaries {
        headings.push("CANARY");
    }
    headings.extend(["INTERFACE", "INSTANCES", "IN FLIGHT", "FAULTS", "ROUTES"]);
    let mut table = Table::new(&headings);
    for plugin in plugins {
        let mut row = vec![cell(&plugin["name"]), cell(&plugin["version"])];
        if canaries {
            row.push(canary(&plugin["canary"]));
        }
        let faults: u64 = (plugin["faults"].as_object())
            .map(|f| f.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let routes: Vec<String> = (plugin["routes"].as_array().into_iter().flatten())
            .map(|r| cell(&r["route"]))
            .collect();
        row.extend([
            cell(&plugin["interface"]),
            cell(&plugin["instances"]),
            format!(
                "{}/{}",
                cell(&plugin["in_flight"]),
                cell(&plugin["max_concurrency"])
            ),
            faults.to_string(),
            routes.join(" "),
        ]);
        table.row(row);
    }
    let mut out = String::new();
    if answer["loaded"] == false {
        out.push_str("the plugins are loading\n");
    }
    if table.is_empty() {
        out.push_str("no plugins\n");
    } else {
        out.push_str(&table.render());
    }
    out
}

/// A canary's split, whatever its shape: a percentage, or fields.
fn canary(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::Number(percent) => format!("{percent}%"),
        Value::Object(fields) => (fields.iter())
            .map(|(name, value)| format!("{name}={}", cell(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => cell(other),
    }
}

fn render_domains(answer: &Value) -> String {
    let mut table = Table::new(&[
        "DOMAIN", "STATE", "NAME", "ROLE", "AGE", "HANDLES", "ROOTS", "MEMORY", "REQUEST",
    ]);
    for domain in answer["domains"].as_array().into_iter().flatten() {
        let with_counts = |n: &Value, by: &Value| {
            let by = counts(by);
            if by.is_empty() {
                cell(n)
            } else {
                format!("{} ({by})", cell(n))
            }
        };
        table.row(vec![
            cell(&domain["id"]),
            cell(&domain["state"]).to_lowercase(),
            cell(&domain["name"]),
            cell(&domain["role"]),
            millis(&domain["age_ms"]),
            with_counts(&domain["handles"], &domain["handles_by_type"]),
            with_counts(&domain["roots"], &domain["roots_by_kind"]),
            bytes(&domain["memory_bytes"]),
            cell(&domain["request"]),
        ]);
    }
    if table.is_empty() {
        "no live domains\n".into()
    } else {
        table.render()
    }
}

/// `/admin/domains/{id}/roots`' answer: a line for the domain, then each
/// root.
fn render_roots(answer: &Value) -> String {
    let roots = answer["roots"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut out = format!(
        "domain {} ({}): {} root(s)\n",
        cell(&answer["domain"]),
        cell(&answer["state"]).to_lowercase(),
        roots.len()
    );
    out.push_str(&render_root_list(roots));
    out
}

/// Each root: its kind and label, where it blocks, then its origin, its
/// detail and its stack, indented.
fn render_root_list(roots: &[Value]) -> String {
    use custody_handle::diagnostics::escape_control;
    let mut out = String::new();
    for root in roots {
        let mut line = format!("  {} {:?}", cell(&root["kind"]), cell(&root["label"]));
        if let Some(function) = root["blocked_in"].as_str() {
            line.push_str(&format!("  blocked in {function}"));
        }
        line.push_str(&format!("  held {}", millis(&root["held_ms"])));
        out.push_str(&escape_control(&line));
        out.push('\n');
        for (name, value) in [
            ("thread", &root["thread"]),
            ("holder", &root["holder"]),
            ("site", &root["site"]),
            ("detail", &root["detail"]),
        ] {
            if !value.is_null() {
                let text = format!("{name}: {}", cell(value));
                out.push_str(&format!("    {}\n", escape_control(&text)));
            }
        }
        if let Some(stack) = root["stack"].as_str() {
            out.push_str("    stack:\n");
            for frame in stack.lines() {
                out.push_str(&format!("      {}\n", escape_control(frame.trim_start())));
            }
        }
    }
    out
}

fn render_requests(answer: &Value) -> String {
    let mut table = Table::new(&["REQUEST", "PLUGIN", "VERSION", "DOMAIN", "AGE", "CALL"]);
    for request in answer["requests"].as_array().into_iter().flatten() {
        let mut call = match (request["blocked_in"].as_str(), request["call"].is_null()) {
            (Some(function), _) => format!("blocked in {function}"),
            (None, false) => "running".into(),
            (None, true) => "not begun".into(),
        };
        if request["cancelled"] == true {
            call.push_str(" (cancelled)");
        }
        table.row(vec![
            cell(&request["id"]),
            cell(&request["plugin"]),
            cell(&request["version"]),
            cell(&request["domain"]),
            millis(&request["age_ms"]),
            call,
        ]);
    }
    if table.is_empty() {
        "no request in flight\n".into()
    } else {
        table.render()
    }
}

/// `reload`, `promote` or `rollback` of one plugin: the version serving
/// after it.
fn plugin_action(args: &PluginArgs, action: &str) -> Result<u8, Failure> {
    let path = format!(
        "{}/{}/{action}",
        custody_serve::ADMIN_PLUGINS_PATH,
        segment(&args.name)
    );
    let answer = ask(&args.admin, Method::POST, &path)?;
    show(&args.admin, || {
        let name = &args.name;
        match (answer["outcome"].as_str(), answer["version"].as_str()) {
            (Some("swapped"), Some(version)) => format!(
                "{name}: {action}: swapped: version {version} serves (was {})\n",
                cell(&answer["previous"])
            ),
            (Some(outcome), Some(version)) => {
                format!("{name}: {action}: {outcome}: version {version} serves\n")
            }
            // An answer of another shape: its fields, one per line.
            _ => {
                let mut out = format!("{name}: {action}\n");
                for (field, value) in answer.as_object().into_iter().flatten() {
                    out.push_str(&format!("  {field}: {}\n", cell(value)));
                }
                out
            }
        }
    })
}

fn unload(args: &UnloadArgs) -> Result<u8, Failure> {
    let action = if args.force { "force" } else { "unload" };
    let mut path = format!("{}/{}/{action}", custody_serve::ADMIN_DOMAINS_PATH, args.id);
    if let Some(wait) = args.wait {
        path.push_str(&format!("?wait_ms={}", wait.as_millis()));
    }
    let answer = ask(&args.admin, Method::POST, &path)?;
    show(&args.admin, || {
        let id = args.id;
        if answer["unloaded"] == true {
            let report = &answer["report"];
            let failed = report["failed"].as_array().map_or(0, Vec::len);
            let mut out = format!(
                "domain {id} unloaded{}: {} handle(s) released, {failed} release(s) failed\n",
                if args.force { " (forced)" } else { "" },
                cell(&report["released"]),
            );
            let cancelled: Vec<String> = (answer["cancelled"].as_array().into_iter().flatten())
                .map(cell)
                .collect();
            if !cancelled.is_empty() {
                out.push_str(&format!("cancelled: {}\n", cancelled.join(" ")));
            }
            out
        } else {
            let roots = answer["roots"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            format!(
                "domain {id} is unloading; {} root(s) hold it (it completes when they go; \
                 `custody unload {id} --force` stops them):\n{}",
                roots.len(),
                render_root_list(roots)
            )
        }
    })
}
