//! The configuration: errors name the key and the file; what this build
//! refuses (the custody interface, pooled WAGI) says why.

use std::path::Path;

use custody_serve::{Interface, ServerConfig, ServerState};

use crate::support::*;
use custody_testkit::serial;

fn read(toml: &str) -> Result<ServerConfig, String> {
    ServerConfig::from_toml(toml, Path::new("/etc/custody.toml"), Path::new("/srv"))
        .map_err(|e| e.to_string())
}

#[test]
fn keys_defaults_durations_sizes_and_paths() {
    let _serial = serial();
    let config = read(
        r#"
        listen = "127.0.0.1:9000"
        shutdown_delay = "250ms"
        [[plugin]]
        name = "hello"
        route = "/hello/..."
        module = "plugins/hello.wasm"
        dirs = { "/data" = "plugins/data" }
        max_body = "1MiB"
        request_timeout = "2s"
        interface = "wagi"
        policy = { memory_limit = "64MiB" }
        "#,
    )
    .unwrap();
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.shutdown_delay.as_millis(), 250);
    assert_eq!(config.drain_timeout.as_secs(), 30);
    let plugin = &config.plugins[0];
    assert_eq!(
        plugin.module.as_deref(),
        Some(Path::new("/srv/plugins/hello.wasm"))
    );
    assert_eq!(plugin.dirs["/data"], Path::new("/srv/plugins/data"));
    assert_eq!(plugin.max_body, 1 << 20);
    assert_eq!(plugin.request_timeout.as_secs(), 2);
    assert_eq!(plugin.interface, Some(Interface::Wagi));
    assert_eq!(plugin.entrypoint, "_start");
    assert_eq!(plugin.argv, "${SCRIPT_NAME} ${ARGS}");
    assert_eq!(plugin.max_concurrency, 64);
    assert_eq!(plugin.canary, None);
    let canary =
        read("[[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wasm\"\ncanary = 10\n");
    assert_eq!(canary.unwrap().plugins[0].canary, Some(10));
}

#[test]
fn bad_configurations_name_the_key_and_the_file() {
    let _serial = serial();
    let plugin = "[[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wasm\"\n";
    for (toml, expect) in [
        ("listn = \"x\"".to_string(), "listn"),
        (format!("{plugin}modul = \"x\""), "modul"),
        (format!("{plugin}request_timeout = \"soon\""), "soon"),
        (format!("{plugin}max_body = \"lots\""), "lots"),
        (
            format!("{plugin}policy = {{ memory = \"1MiB\" }}"),
            "memory",
        ),
        (
            format!("{plugin}policy = {{ deadline_ms = 5 }}"),
            "request_timeout",
        ),
        (format!("{plugin}watch = \"yes\""), "boolean"),
        (format!("{plugin}pool = 4"), "pooled"),
        (format!("{plugin}{plugin}"), "used twice"),
        (
            "[[plugin]]\nname = \"p\"\nroute = \"p\"\nmodule = \"p.wasm\"\n".into(),
            "route",
        ),
        (
            "[[plugin]]\nname = \"p\"\nroute = \"/p\"\n".into(),
            "exactly one of `module` and `manifest`",
        ),
        (format!("{plugin}dirs = {{ \"data\" = \"d\" }}"), "absolute"),
        (format!("{plugin}canary = 150"), "canary = 150"),
        (format!("{plugin}canary = -1"), "canary = -1"),
        (format!("{plugin}canary = 12.5"), "canary = 12.5"),
        (format!("{plugin}canary = \"10%\""), "from 0 to 100"),
        (format!("{plugin}canery = 10"), "canery"),
    ] {
        let error = read(&toml).unwrap_err();
        assert!(error.starts_with("/etc/custody.toml: "), "{error}");
        assert!(error.contains(expect), "{toml}: {error}");
    }
}

fn load(toml: &str, files: &[(&str, &str)]) -> String {
    let dir = write_files(files);
    let file = dir.join("custody.toml");
    let config = ServerConfig::from_toml(toml, &file, &dir).unwrap();
    let error = ServerState::load(&config, custody_host::Policy::default(), &file).unwrap_err();
    let _ = std::fs::remove_dir_all(dir);
    error.to_string()
}

#[test]
fn what_this_build_cannot_run_is_refused_at_load_saying_why() {
    let _serial = serial();
    custody_testkit::quiet();
    // A module exporting `handle` is a custody-ABI plugin by default; a pool
    // needs a sane `recycle_after`; `interface = "custody"` needs `handle`.
    let handle = "(module (func (export \"handle\") (param i32 i32) (result i32) i32.const 0))";
    let error = load(
        "[[plugin]]\nname = \"h\"\nroute = \"/h\"\nmodule = \"h.wat\"\ninstances = \"pooled\"\npool = 2\nrecycle_after = \"5..5\"\n",
        &[("h.wat", handle)],
    );
    assert!(error.contains("recycle_after \"5..5\""), "{error}");
    let error = load(
        "[[plugin]]\nname = \"h\"\nroute = \"/h\"\nmodule = \"h.wat\"\ninterface = \"custody\"\n",
        &[("h.wat", "(module (func (export \"_start\")))")],
    );
    assert!(error.contains("exports no `handle`"), "{error}");
    let wagi = guest(b"content-type: text/plain\n\n", "");
    let error = load(
        "[[plugin]]\nname = \"w\"\nroute = \"/w\"\nmodule = \"w.wat\"\ninstances = \"pooled\"\npool = 2\n",
        &[("w.wat", &wagi)],
    );
    assert!(error.contains("once per instance"), "{error}");
    let error = load(
        "[[plugin]]\nname = \"w\"\nroute = \"/w\"\nmodule = \"w.wat\"\nentrypoint = \"nope\"\n",
        &[("w.wat", &wagi)],
    );
    assert!(error.contains("\"nope\""), "{error}");
    let error = load(
        "[[plugin]]\nname = \"w\"\nroute = \"/w\"\nmodule = \"w.wat\"\n",
        &[(
            "w.wat",
            "(module (import \"nowhere\" \"f\" (func)) (func (export \"_start\")))",
        )],
    );
    assert!(
        error.contains("plugin \"w\"") && error.contains("does not instantiate"),
        "{error}"
    );
}
