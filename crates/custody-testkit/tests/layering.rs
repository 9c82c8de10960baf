//! Imports in each crate point one way, bottom to top of the order the
//! crate declares here (docs/ARCHITECTURE.md draws the same layers, and
//! each crate's `lib.rs` or `main.rs` lists them in its module map): no
//! import goes up, and none closes a cycle. The check lives here, not in
//! the crates, so that custody-handle's tests need no dependency on the
//! host (its loom build stays small).

use std::fs;
use std::path::{Path, PathBuf};

use custody_testkit::layering::{
    Layer, Violation, assert_acyclic, assert_layered, check_layered, module_table, names,
};

/// custody-handle, bottom to top.
const HANDLE: &[Layer] = &[
    Layer::of("sync"),
    Layer::of("env"),
    Layer::of("id"),
    Layer::of("release"),
    Layer::of("error"),
    Layer::of("history"),
    Layer::with(
        "diagnostics",
        &[
            Layer::of("assistant"),
            Layer::of("record"),
            Layer::of("rate"),
            Layer::of("sink"),
            Layer::of("handle_events"),
        ],
    ),
    Layer::of("safe_handle"),
    Layer::of("critical_handle"),
    Layer::with(
        "table",
        &[
            Layer::of("erased"),
            Layer::of("kinds"),
            Layer::of("slot"),
            Layer::of("insert"),
        ],
    ),
    Layer::with(
        "os",
        &[
            Layer::of("sys"),
            Layer::of("fd"),
            Layer::of("mapping"),
            Layer::of("child"),
        ],
    ),
    Layer::of("testing"),
];

/// custody-host, bottom to top. It names no ABI but its own: the others
/// (custody-wasi) are crates above it, on `extension`.
const HOST: &[Layer] = &[
    Layer::of("deadline"),
    Layer::of("sys"),
    Layer::of("config"),
    Layer::of("ledger"),
    Layer::of("log"),
    Layer::with(
        "boundary",
        &[
            Layer::of("memory"),
            Layer::of("errno"),
            Layer::of("cancel"),
            Layer::of("preopen"),
            Layer::of("blocked"),
            Layer::of("stack"),
            Layer::of("timer"),
            Layer::of("extensions"),
            Layer::of("throttle"),
            Layer::of("ctx"),
            Layer::of("marshal"),
            Layer::of("atomic_wait"),
            Layer::of("embed"),
        ],
    ),
    Layer::of("pipe"),
    Layer::of("catalogue"),
    Layer::of("extension"),
    Layer::of("abi"),
    Layer::of("registry"),
    Layer::of("error"),
    Layer::of("manifest"),
    Layer::of("compile"),
    Layer::of("runtime"),
    Layer::with(
        "domain",
        &[
            Layer::of("state"),
            Layer::of("store_lock"),
            Layer::of("guest_run"),
            Layer::of("link"),
            Layer::of("resolve"),
            Layer::of("roots"),
            Layer::of("report"),
            Layer::of("unload"),
            Layer::of("store_guard"),
            Layer::of("refs"),
            Layer::of("timers"),
            Layer::of("recycle"),
            Layer::of("call"),
        ],
    ),
    Layer::of("host"),
];

/// custody-http, bottom to top (the crate root, which declares the
/// catalogue and the extension, on top).
const HTTP: &[Layer] = &[Layer::of("exchange"), Layer::of("functions")];

/// custody-wasi, bottom to top (the crate root, which declares the
/// catalogue, on top).
const WASI: &[Layer] = &[
    Layer::of("sys"),
    Layer::of("types"),
    Layer::of("errno"),
    Layer::of("stdio"),
    Layer::of("fds"),
    Layer::of("state"),
    Layer::of("clock"),
    Layer::of("args"),
    Layer::of("fd_meta"),
    Layer::of("fd_io"),
    Layer::of("fd_table"),
    Layer::of("path"),
    Layer::of("dir"),
    Layer::of("poll"),
    Layer::of("proc"),
    Layer::of("sock"),
    Layer::of("host"),
];

/// The command line, bottom to top (the crate root, `main.rs`, on top).
const CLI: &[Layer] = &[
    Layer::of("outcome"),
    Layer::of("otlp"),
    Layer::of("args"),
    Layer::of("source"),
    Layer::of("output"),
    Layer::of("run"),
    Layer::of("serve"),
    Layer::of("table"),
    Layer::of("admin_client"),
    Layer::of("admin"),
];

/// custody-serve, bottom to top (the crate root on top).
const SERVE: &[Layer] = &[
    Layer::of("body"),
    Layer::of("request_span"),
    Layer::of("abort"),
    Layer::of("route"),
    Layer::of("config"),
    Layer::of("examples"),
    Layer::of("recent_diagnostics"),
    Layer::of("fault"),
    Layer::of("wagi"),
    Layer::of("drain"),
    Layer::of("pool"),
    Layer::of("series"),
    Layer::of("plugin"),
    Layer::of("stdio"),
    Layer::of("outcome"),
    Layer::of("exec"),
    Layer::of("custody_run"),
    Layer::of("connection"),
    Layer::with("metrics", &[Layer::of("host")]),
    Layer::of("server"),
    Layer::of("reload"),
    Layer::of("canary"),
    Layer::of("watch"),
    Layer::with(
        "admin",
        &[
            Layer::of("token"),
            Layer::of("views"),
            Layer::of("requests"),
            Layer::of("actions"),
            Layer::of("diagnostics"),
            Layer::of("dashboard"),
        ],
    ),
    Layer::of("shutdown"),
];

/// custody-testkit, bottom to top.
const TESTKIT: &[Layer] = &[
    Layer::of("fds"),
    Layer::with(
        "layering",
        &[Layer::of("source"), Layer::of("graph"), Layer::of("order")],
    ),
    Layer::of("guests"),
    Layer::of("wasi_guests"),
];

fn src_of(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

#[test]
fn custody_handle_imports_point_down_its_order() {
    assert_layered(&src_of("custody-handle"), HANDLE);
    assert_acyclic(&src_of("custody-handle"));
}

#[test]
fn custody_host_imports_point_down_its_order() {
    assert_layered(&src_of("custody-host"), HOST);
    assert_acyclic(&src_of("custody-host"));
}

#[test]
fn custody_http_imports_point_down_its_order() {
    assert_layered(&src_of("custody-http"), HTTP);
    assert_acyclic(&src_of("custody-http"));
}

#[test]
fn custody_wasi_imports_point_down_its_order() {
    assert_layered(&src_of("custody-wasi"), WASI);
    assert_acyclic(&src_of("custody-wasi"));
}

#[test]
fn the_command_line_imports_point_down_its_order() {
    assert_layered(&src_of("custody"), CLI);
    assert_acyclic(&src_of("custody"));
}

#[test]
fn custody_serve_imports_point_down_its_order() {
    assert_layered(&src_of("custody-serve"), SERVE);
    assert_acyclic(&src_of("custody-serve"));
}

#[test]
fn custody_testkit_imports_point_down_its_order() {
    assert_layered(&src_of("custody-testkit"), TESTKIT);
    assert_acyclic(&src_of("custody-testkit"));
}

/// Each crate's module map (in `lib.rs` or `main.rs`) lists its modules in
/// the order declared here: custody-host's top first, the others bottom
/// first, as each map says.
#[test]
fn each_module_map_lists_the_declared_order() {
    for (krate, root, order, top_first) in [
        ("custody-handle", "lib.rs", HANDLE, false),
        ("custody-host", "lib.rs", HOST, true),
        ("custody-wasi", "lib.rs", WASI, false),
        ("custody-http", "lib.rs", HTTP, false),
        ("custody", "main.rs", CLI, false),
        ("custody-serve", "lib.rs", SERVE, false),
        ("custody-testkit", "lib.rs", TESTKIT, false),
    ] {
        let text = fs::read_to_string(src_of(krate).join(root)).unwrap();
        let mut map = module_table(&text, "# Module map");
        if top_first {
            map.reverse();
        }
        assert_eq!(map.concat(), names(order), "{krate}: {root}'s module map");
    }
}

/// custody-host's `boundary` lists its submodules in a table, lowest
/// first: the order declared here.
#[test]
fn the_boundary_table_lists_the_declared_order() {
    let text = fs::read_to_string(src_of("custody-host").join("boundary.rs")).unwrap();
    let boundary = HOST.iter().find(|l| l.name == "boundary").unwrap();
    assert_eq!(
        module_table(&text, "The guest boundary").concat(),
        names(boundary.inner)
    );
}

/// A copy of `krate`'s sources with `import` appended to the file `into`.
fn with_planted_import(krate: &str, into: &str, import: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                fs::copy(&path, &target).unwrap();
            }
        }
    }
    let src = custody_testkit::scratch(&format!("layering-{krate}"));
    copy(&src_of(krate), &src);
    let file = src.join(into);
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str(import);
    fs::write(&file, text).unwrap();
    src
}

/// The planted import is found, named by its file and modules, going from
/// the bottom of the order (position 1) up.
fn assert_planted_is_found(
    krate: &str,
    order: &[Layer],
    into: &str,
    import: &str,
    importer: &str,
    imported: &str,
) {
    let src = with_planted_import(krate, into, import);
    let violations = check_layered(&src, order).unwrap_err();
    let planted: Vec<&Violation> = violations
        .iter()
        .filter(|v| matches!(v, Violation::Upward { file, .. } if file == Path::new(into)))
        .collect();
    let expected = Violation::Upward {
        file: PathBuf::from(into),
        importer: importer.to_string(),
        imported: imported.to_string(),
        within: "crate".to_string(),
        importer_at: 1,
        imported_at: 1 + order
            .iter()
            .position(|l| imported.split("::").next() == Some(l.name))
            .unwrap(),
        of: order.len(),
    };
    assert_eq!(planted, vec![&expected], "{krate}: {violations:#?}");
    let message = expected.to_string();
    assert!(
        message.contains(into) && message.contains(imported),
        "{message}"
    );
    fs::remove_dir_all(src).unwrap();
}

#[test]
fn a_planted_upward_import_fails_custody_handle() {
    assert_planted_is_found(
        "custody-handle",
        HANDLE,
        "sync.rs",
        "\nuse crate::os::Fd;\n",
        "sync",
        "os::fd",
    );
}

#[test]
fn a_planted_upward_import_fails_custody_host() {
    // Through the crate root's re-export, to the module defining `Host`.
    assert_planted_is_found(
        "custody-host",
        HOST,
        "deadline.rs",
        "\nuse crate::Host;\n",
        "deadline",
        "host",
    );
    // An inline path, through the crate root's re-export.
    assert_planted_is_found(
        "custody-host",
        HOST,
        "deadline.rs",
        "\nfn planted() { let _ = crate::Exit(0); }\n",
        "deadline",
        "boundary::cancel",
    );
}

#[test]
fn a_planted_upward_import_fails_custody_wasi() {
    assert_planted_is_found(
        "custody-wasi",
        WASI,
        "sys.rs",
        "\nfn planted() { let _ = crate::WasiConfig::new(); }\n",
        "sys",
        "state",
    );
}

#[test]
fn a_planted_upward_import_fails_custody_http() {
    assert_planted_is_found(
        "custody-http",
        HTTP,
        "exchange.rs",
        "\nuse crate::functions::set_status as planted;\n",
        "exchange",
        "functions",
    );
}

#[test]
fn a_planted_upward_import_fails_the_command_line() {
    assert_planted_is_found(
        "custody",
        CLI,
        "outcome.rs",
        "\nuse super::run::run as planted;\n",
        "outcome",
        "run",
    );
}

#[test]
fn a_planted_upward_import_fails_custody_serve() {
    assert_planted_is_found(
        "custody-serve",
        SERVE,
        "body.rs",
        "\nuse crate::route::Route;\n",
        "body",
        "route",
    );
}

#[test]
fn a_planted_upward_import_fails_custody_testkit() {
    assert_planted_is_found(
        "custody-testkit",
        TESTKIT,
        "fds.rs",
        "\nuse crate::wasi_guests::*;\n",
        "fds",
        "wasi_guests",
    );
}

/// Each crate denies `unsafe_code` at its root, and a module that uses
/// `unsafe` allows it for itself, visibly; no module allows it without
/// using it.
#[test]
fn unsafe_is_denied_by_each_crate_and_allowed_only_where_it_is_used() {
    for (krate, root) in [
        ("custody-handle", "lib.rs"),
        ("custody-host", "lib.rs"),
        ("custody-wasi", "lib.rs"),
        ("custody-http", "lib.rs"),
        ("custody-testkit", "lib.rs"),
        ("custody-serve", "lib.rs"),
        ("custody", "main.rs"),
    ] {
        let src = src_of(krate);
        let root_text = std::fs::read_to_string(src.join(root)).unwrap();
        assert!(
            root_text.contains("#![deny(unsafe_code)]")
                || root_text.contains("#![forbid(unsafe_code)]"),
            "{krate}: its root does not deny unsafe_code"
        );
        let (used, allowed) = custody_testkit::layering::unsafe_modules(&src);
        assert_eq!(
            used, allowed,
            "{krate}: modules using unsafe vs modules allowing it"
        );
    }
}
