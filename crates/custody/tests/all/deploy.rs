//! The deployment files (docs/DEPLOY.md) agree with the configuration they
//! deploy, read by the server's own parser: the Kubernetes Deployment's
//! grace period covers the termination contract, its probes ask the
//! configured listener's health and ready endpoints, its scrape annotations
//! name the admin listener, and the files it mounts are where the
//! configuration looks; the Docker image's health check and ports are its
//! configuration's. (CI also validates `deploy/*.yaml` against the
//! Kubernetes schemas: `.ci/run`.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_serve::{FORCE_GRACE, HEALTH_PATH, READY_PATH, ServerConfig};
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::common::repo_root;

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// Every document of every `deploy/*.yaml`, with its file.
fn manifests() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no deploy/*.yaml");
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            documents.push((file.clone(), value));
        }
    }
    documents
}

/// The one manifest of `kind`.
fn the(kind: &str) -> Value {
    let mut found: Vec<Value> = (manifests().into_iter())
        .filter(|(_, m)| m["kind"].as_str() == Some(kind))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(found.len(), 1, "deploy/ must have one {kind}");
    found.remove(0)
}

fn text<'v>(value: &'v Value, what: &str) -> &'v str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn number(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value:?}"))
}

/// The Deployment's pod template's spec and its `custody` container.
struct Pod {
    template: Value,
    container: Value,
}

fn pod() -> Pod {
    let deployment = the("Deployment");
    let template = deployment["spec"]["template"].clone();
    let containers = template["spec"]["containers"].as_sequence().unwrap();
    let container = (containers.iter())
        .find(|c| c["name"].as_str() == Some("custody"))
        .expect("a container named custody")
        .clone();
    Pod {
        template,
        container,
    }
}

impl Pod {
    /// The path after `--config` in the container's arguments.
    fn config_path(&self) -> PathBuf {
        let args: Vec<&str> = (self.container["args"].as_sequence().unwrap().iter())
            .map(|a| text(a, "an argument"))
            .collect();
        let at = args
            .iter()
            .position(|&a| a == "--config")
            .expect("--config");
        PathBuf::from(args[at + 1])
    }

    /// The configuration the pod serves: the ConfigMap's key that
    /// `--config` names, through the volume mounted at its directory.
    fn config(&self) -> ServerConfig {
        let path = self.config_path();
        let volume = self.volume_holding(&path);
        let map = text(&volume["configMap"]["name"], "the configMap's name");
        let configmap = the("ConfigMap");
        assert_eq!(
            text(&configmap["metadata"]["name"], "the ConfigMap's name"),
            map
        );
        let key = path.file_name().unwrap().to_str().unwrap();
        let toml = text(&configmap["data"][key], "the ConfigMap's custody.toml");
        let named = deploy_dir().join(format!("configmap.yaml ({key})"));
        ServerConfig::from_toml(toml, &named, path.parent().unwrap())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The pod's volume mounted at a directory holding `path`.
    fn volume_holding(&self, path: &Path) -> Value {
        let mounts = self.container["volumeMounts"].as_sequence().unwrap();
        let mount = (mounts.iter())
            .find(|m| path.starts_with(text(&m["mountPath"], "a mountPath")))
            .unwrap_or_else(|| panic!("no volume of the container holds {}", path.display()));
        let name = &mount["name"];
        (self.template["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter())
        .find(|v| &v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name:?}"))
        .clone()
    }

    /// The container port a probe or a Service names (by name or number).
    fn port(&self, named: &Value) -> u16 {
        let ports = self.container["ports"].as_sequence().unwrap();
        let port = match named {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => number(
                &(ports.iter())
                    .find(|p| p["name"].as_str() == Some(name))
                    .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"],
                "containerPort",
            ),
            other => panic!("a port is a name or a number: {other:?}"),
        };
        u16::try_from(port).unwrap()
    }
}

#[test]
fn the_grace_period_covers_shutdown_delay_drain_timeout_and_the_forced_stop() {
    let pod = pod();
    let config = pod.config();
    let grace = number(
        &pod.template["spec"]["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    // The termination contract's longest run: ready 503 for
    // shutdown_delay, the drain for drain_timeout, then at most three
    // FORCE_GRACE waits (connections, domains, the admin API's
    // connections). Past the grace period the kubelet sends SIGKILL.
    let longest = config.shutdown_delay + config.drain_timeout + 3 * FORCE_GRACE;
    assert!(
        Duration::from_secs(grace) >= longest,
        "terminationGracePeriodSeconds = {grace} is under shutdown_delay {:?} + \
         drain_timeout {:?} + 3 x {FORCE_GRACE:?}",
        config.shutdown_delay,
        config.drain_timeout,
    );
}

#[test]
fn the_probes_ask_the_configured_listener_for_health_and_ready() {
    let pod = pod();
    let config = pod.config();
    for (probe, path) in [
        ("readinessProbe", READY_PATH),
        ("livenessProbe", HEALTH_PATH),
    ] {
        let get = &pod.container[probe]["httpGet"];
        assert_eq!(text(&get["path"], probe), path, "{probe}");
        assert_eq!(pod.port(&get["port"]), config.listen.port(), "{probe}");
    }
    // A stopping pod is seen not ready within shutdown_delay, while it
    // still accepts.
    let readiness = &pod.container["readinessProbe"];
    let noticed = number(&readiness["periodSeconds"], "periodSeconds")
        * number(&readiness["failureThreshold"], "failureThreshold");
    assert!(
        Duration::from_secs(noticed) <= config.shutdown_delay,
        "the readiness probe notices a stop after {noticed} s, over shutdown_delay {:?}",
        config.shutdown_delay
    );
    // The Service sends its traffic to the same listener.
    let service = the("Service");
    let ports = service["spec"]["ports"].as_sequence().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(pod.port(&ports[0]["targetPort"]), config.listen.port());
    assert!(
        !config.listen.ip().is_loopback(),
        "a pod's server must listen beyond loopback: {}",
        config.listen
    );
}

#[test]
fn the_scrape_annotations_name_the_admin_listener_and_its_metrics() {
    let pod = pod();
    let config = pod.config();
    let admin = config.admin.as_ref().expect("the ConfigMap's [admin]");
    admin.check().unwrap();
    let annotations = &pod.template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    let port: u16 = text(&annotations["prometheus.io/port"], "prometheus.io/port")
        .parse()
        .unwrap();
    assert_eq!(port, admin.listen.port());
    assert_ne!(port, config.listen.port());
    // The container declares it.
    let declared = (pod.container["ports"].as_sequence().unwrap().iter())
        .any(|p| p["containerPort"].as_u64() == Some(u64::from(port)));
    assert!(declared, "no container port {port}");
}

#[test]
fn the_plugins_and_the_admin_token_come_from_the_pod_s_volumes() {
    let pod = pod();
    let config = pod.config();
    assert!(!config.plugins.is_empty());
    for plugin in &config.plugins {
        let module = plugin.module.as_ref().expect("a module");
        let volume = pod.volume_holding(module);
        assert_eq!(volume["name"].as_str(), Some("plugins"), "{}", plugin.name);
        // The init container fills that volume with the modules.
        let init = &pod.template["spec"]["initContainers"][0];
        let copied = (init["command"].as_sequence().unwrap().iter()).any(|a| {
            a.as_str()
                .is_some_and(|a| a.ends_with(&*module_name(module)))
        });
        assert!(
            copied,
            "the init container does not copy {}",
            module.display()
        );
    }
    let token = (config.admin.as_ref().and_then(|a| a.token_file.as_ref()))
        .expect("admin.token_file: the admin listener is beyond loopback");
    let volume = pod.volume_holding(token);
    assert!(
        volume["secret"]["secretName"].as_str().is_some(),
        "{volume:?}"
    );
}

fn module_name(path: &Path) -> String {
    format!("/{}", path.file_name().unwrap().to_str().unwrap())
}

#[test]
fn the_image_s_health_check_and_ports_are_its_configuration_s() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let config = ServerConfig::from_file(&deploy_dir().join("custody.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = config.listen.port();
    let line = |start: &str| {
        (dockerfile.lines())
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line"))
    };
    assert!(
        dockerfile.contains("COPY deploy/custody.toml /etc/custody/custody.toml")
            && line("CMD").contains("\"--config\", \"/etc/custody/custody.toml\""),
        "the image serves deploy/custody.toml"
    );
    let check = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK")
        .split("\n#")
        .next()
        .unwrap();
    assert!(
        check.contains(&format!("/dev/tcp/127.0.0.1/{port}")) && check.contains(HEALTH_PATH),
        "{check}"
    );
    assert!(
        line("EXPOSE")
            .split_whitespace()
            .any(|p| p == port.to_string()),
        "EXPOSE {port}"
    );
    let user = line("USER ").trim_start_matches("USER ").split(':').next();
    assert!(
        !matches!(user, Some("0" | "root")),
        "the image runs as root"
    );
    for plugin in &config.plugins {
        let module = plugin.module.as_ref().expect("a module");
        let dir = module.parent().unwrap().display().to_string();
        let copied = (dockerfile.lines()).any(|l| {
            l.starts_with("COPY ")
                && l.trim_end().ends_with(&format!("{dir}/"))
                && l.contains(&module_name(module))
        });
        assert!(copied, "the image does not hold {}", module.display());
    }
}
