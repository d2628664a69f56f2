//! The ways to run the router in production, checked: the systemd unit with
//! `systemd-analyze verify` (and its sandbox with `systemd-analyze security`),
//! the Dockerfile's essentials, and the Kubernetes manifests and sidecar
//! examples, parsed and cross-checked against each other, against the image
//! and against the router's own configuration parser; the manifests also go
//! through Kubernetes' schemas with `kubernetes-validate`.
//!
//! Tools: `systemd-analyze` (Debian package `systemd`) and the Python package
//! `kubernetes-validate` (`python3 -m pip install kubernetes-validate`);
//! `./scripts/test.sh` installs both when they are missing.

mod deploy_files;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deploy_files::{
    bytes_of_quantity, dockerfile, exec_form, port_number, repo, repo_file, str_at, systemd_unit,
    yaml_documents, Manifests, RouterPod,
};
use influxdb_router::config::{self, Config, DEFAULT_BUFFER_DIR};
use serde_json::Value;

const ROUTER_PORT: u16 = 5096;
const UNIT: &str = "systemd/influxdb-router.service";
const WORKER_UNIT: &str = "systemd/influxdb-router-worker.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/influxdb-router";
const CONFIG_PATH: &str = "/etc/influxdb-router/config.toml";

// ---------------------------------------------------------------- systemd

/// `systemd-analyze`, or a failure saying how to install it.
fn systemd_analyze() -> Command {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .find(|p| Path::new(p).is_file());
    let Some(path) = found else {
        panic!(
            "systemd-analyze not found: the systemd unit test needs it. Install it with \
             `apt-get install -y systemd` (or run ./scripts/test.sh, which does so)"
        )
    };
    Command::new(path)
}

/// A copy of the unit (with `edit` applied) in a temporary directory, its
/// binary path pointing at the freshly built binary: `verify` checks that
/// the programs a unit runs exist.
fn unit_copy(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    unit_copy_of(UNIT, edit)
}

/// [`unit_copy`] of the unit at `file`.
fn unit_copy_of(
    file: &str,
    edit: impl Fn(&str) -> String,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = repo_file(file).replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_influxdb-router"));
    let dir = tempfile::tempdir().unwrap();
    let name = Path::new(file).file_name().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, edit(&text)).unwrap();
    (dir, path)
}

/// Runs `systemd-analyze verify` on a unit: its exit status and the stderr
/// lines that are about that unit.
fn verify(unit: &Path) -> (bool, Vec<String>, String) {
    let output = systemd_analyze()
        .arg("verify")
        .arg(unit)
        .output()
        .expect("cannot run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let about_unit = stderr
        .lines()
        .filter(|line| line.contains("influxdb-router"))
        .map(str::to_owned)
        .collect();
    (output.status.success(), about_unit, stderr)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let (_dir, unit) = unit_copy(str::to_owned);
    let (ok, warnings, stderr) = verify(&unit);
    assert!(ok, "systemd-analyze verify failed:\n{stderr}");
    assert!(
        warnings.is_empty(),
        "systemd-analyze verify warns about the unit:\n{stderr}"
    );
}

#[test]
fn worker_unit_passes_systemd_analyze_verify_and_runs_the_worker_sandboxed() {
    let (_dir, unit) = unit_copy_of(WORKER_UNIT, str::to_owned);
    let (ok, warnings, stderr) = verify(&unit);
    assert!(ok, "systemd-analyze verify failed:\n{stderr}");
    assert!(
        warnings.is_empty(),
        "systemd-analyze verify warns:\n{stderr}"
    );
    let text = repo_file(WORKER_UNIT);
    let parsed = systemd_unit(&text);
    let start: Vec<&str> = parsed.one("ExecStart").split_whitespace().collect();
    assert_eq!(
        start,
        [INSTALLED_BINARY, "admin", "worker", "--config", CONFIG_PATH]
    );
    assert_eq!(parsed.one("DynamicUser"), "yes");
    assert_eq!(parsed.one("Restart"), "always");
    let output = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("cannot run systemd-analyze");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|line| {
            line.split_once("Overall exposure level for influxdb-router-worker.service:")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    assert!(score <= 2.0, "exposure {score} above 2.0:\n{stdout}");
}

#[test]
fn systemd_analyze_verify_reports_a_broken_unit() {
    // The check above must be able to fail: an unknown key only warns, a
    // missing binary fails.
    let (_dir, unit) = unit_copy(|text| text.replace("LimitNOFILE=", "LimitNOFILES="));
    let (_, warnings, stderr) = verify(&unit);
    assert!(
        warnings.iter().any(|w| w.contains("LimitNOFILES")),
        "an unknown key went unnoticed:\n{stderr}"
    );
    let (_dir, unit) = unit_copy(|text| {
        text.replace(
            env!("CARGO_BIN_EXE_influxdb-router"),
            "/nonexistent/influxdb-router",
        )
    });
    let (ok, _, stderr) = verify(&unit);
    assert!(!ok, "a unit without its binary verified:\n{stderr}");
}

#[test]
fn systemd_unit_sandbox_has_a_low_exposure_score() {
    let (_dir, unit) = unit_copy(str::to_owned);
    let output = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("cannot run systemd-analyze");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let score: f64 = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for influxdb-router.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}\n{stderr}"));
    // 0 is fully locked down, 10 unprotected; a network service that must
    // reach any host scores about 1.2 at best.
    assert!(score <= 2.0, "exposure {score} above 2.0:\n{stdout}");
}

#[test]
fn systemd_unit_runs_as_its_own_user_with_the_queue_in_its_state_directory() {
    let unit = systemd_unit(&repo_file(UNIT));
    assert_eq!(unit.one("DynamicUser"), "yes");
    assert_eq!(unit.one("User"), "influxdb-router");
    let state = format!("/var/lib/{}", unit.one("StateDirectory"));
    assert_eq!(
        state, DEFAULT_BUFFER_DIR,
        "the queue is not in the state directory"
    );
    assert_eq!(unit.one("ProtectSystem"), "strict");
    assert_eq!(unit.one("NoNewPrivileges"), "yes");
    assert_eq!(unit.one("Restart"), "on-failure");
    let files: u64 = unit.one("LimitNOFILE").parse().unwrap();
    let connections = Config::embedded_default().server.max_connections as u64;
    assert!(files > 2 * connections, "LimitNOFILE {files} too low");
    let start: Vec<&str> = unit.one("ExecStart").split_whitespace().collect();
    assert_eq!(start, [INSTALLED_BINARY, "serve", "--config", CONFIG_PATH]);
}

#[test]
fn systemd_unit_reloads_with_sighup_and_outwaits_the_drain() {
    let unit = systemd_unit(&repo_file(UNIT));
    let reload = unit.all("ExecReload");
    assert!(
        reload.iter().any(|r| r.ends_with("kill -HUP $MAINPID")),
        "no SIGHUP in {reload:?}"
    );
    let stop = config::parse_duration(unit.one("TimeoutStopSec")).unwrap();
    let drain = Config::embedded_default().server.shutdown_timeout;
    assert!(
        stop >= drain + Duration::from_secs(10),
        "TimeoutStopSec {stop:?} does not outlast shutdown_timeout {drain:?}"
    );
}

// ---------------------------------------------------------------- container image

#[test]
fn dockerfile_builds_in_stages_and_runs_non_root_with_the_queue_on_a_volume() {
    let image = dockerfile(&repo_file("Dockerfile"));
    assert!(image.stages.len() >= 2, "not a multi-stage build");
    let names: Vec<&str> = image
        .stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    for stage in &image.stages {
        for source in stage.args("COPY").filter_map(|a| a.strip_prefix("--from=")) {
            let source = source.split_whitespace().next().unwrap();
            assert!(
                names.contains(&source),
                "COPY --from={source}: no such stage"
            );
        }
    }
    let runtime = image.stages.last().unwrap();
    let user = runtime.args("USER").last().expect("the image runs as root");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("USER is not numeric");
    assert_ne!(uid, 0, "the image runs as root");
    assert!(runtime.args("VOLUME").any(|v| v == DEFAULT_BUFFER_DIR));
    let exposed: Vec<&str> = runtime
        .args("EXPOSE")
        .flat_map(str::split_whitespace)
        .collect();
    assert!(exposed.contains(&"5096/tcp") || exposed.contains(&"5096"));
    let entrypoint = exec_form(runtime.args("ENTRYPOINT").last().unwrap());
    assert!(entrypoint.last().unwrap().ends_with("influxdb-router"));
    let command = exec_form(runtime.args("CMD").last().unwrap());
    assert_eq!(command, ["serve", "--config", CONFIG_PATH]);
}

#[test]
fn image_config_is_valid_and_queues_on_the_volume() {
    let image = dockerfile(&repo_file("Dockerfile"));
    let runtime = image.stages.last().unwrap();
    let copy = runtime
        .args("COPY")
        .find(|a| a.ends_with(CONFIG_PATH))
        .expect("the image has no config at its --config path");
    let source = copy.split_whitespace().next().unwrap();
    let config =
        Config::from_toml_str(&repo_file(source), source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.buffer.dir, Path::new(DEFAULT_BUFFER_DIR));
    assert_eq!(config.server.bind.port(), ROUTER_PORT);
    assert!(
        config.server.bind.ip().is_unspecified(),
        "unreachable from outside the container"
    );
}

#[test]
fn dockerignore_keeps_build_output_out_and_every_copied_source_in() {
    let ignored: Vec<String> = repo_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for must in ["target", "fuzz/target", ".git"] {
        assert!(
            ignored.iter().any(|i| i == must),
            "{must} is sent to the build"
        );
    }
    let image = dockerfile(&repo_file("Dockerfile"));
    for stage in &image.stages {
        for copy in stage.args("COPY").filter(|a| !a.starts_with("--")) {
            let words: Vec<&str> = copy.split_whitespace().collect();
            for source in &words[..words.len() - 1] {
                assert!(repo(source).exists(), "COPY {source}: no such file");
                let excluded = ignored
                    .iter()
                    .any(|i| *source == i || source.starts_with(&format!("{i}/")));
                assert!(!excluded, "COPY {source}: excluded by .dockerignore");
            }
        }
    }
}

// ---------------------------------------------------------------- Kubernetes

#[test]
fn every_kubernetes_document_names_its_api_version_kind_and_name() {
    let manifests = Manifests::load_all();
    assert!(
        manifests.docs.len() >= 8,
        "too few documents: {}",
        manifests.docs.len()
    );
    for (file, doc) in &manifests.docs {
        for key in ["/apiVersion", "/kind", "/metadata/name"] {
            assert!(
                doc.pointer(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
                "{file}: a document without {key}"
            );
        }
        if doc["kind"] != "Namespace" {
            assert_eq!(str_at(doc, "/metadata/namespace"), "monitoring", "{file}");
        }
    }
}

#[test]
fn kustomization_lists_every_manifest_of_its_directory() {
    let dir = repo("deploy/kubernetes");
    let docs = yaml_documents(&dir.join("kustomization.yaml"));
    let listed: BTreeSet<&str> = docs[0]["resources"]
        .as_array()
        .expect("no resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present);
}

#[test]
fn headless_service_publishes_srv_records_for_the_statefulset_pods() {
    let k8s = Manifests::load_all();
    let service = k8s.get("Service", "influxdb");
    assert_eq!(service["spec"]["clusterIP"], "None", "not headless");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
    let ports = service["spec"]["ports"].as_array().unwrap();
    let http = ports
        .iter()
        .find(|p| p["name"] == "http")
        .expect("no port named http");
    assert_eq!(http["protocol"], "TCP");
    let set = k8s.get("StatefulSet", "influxdb");
    assert_eq!(str_at(set, "/spec/serviceName"), "influxdb");
    let pod_labels = &set["spec"]["template"]["metadata"]["labels"];
    assert!(deploy_files::selects(
        &service["spec"]["selector"],
        pod_labels
    ));
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(port_number(container, &http["targetPort"]), 8086);
    let claims = set["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("no volumeClaimTemplates");
    for claim in claims {
        let name = str_at(claim, "/metadata/name");
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert!(
            mounts.iter().any(|m| m["name"] == name),
            "claim {name} is not mounted"
        );
    }
}

#[test]
fn every_workload_selector_matches_its_pod_labels() {
    let k8s = Manifests::load_all();
    let mut seen = 0;
    for (file, doc) in &k8s.docs {
        if doc["kind"] == "Deployment" || doc["kind"] == "StatefulSet" {
            let selector = &doc["spec"]["selector"]["matchLabels"];
            let labels = &doc["spec"]["template"]["metadata"]["labels"];
            assert!(
                deploy_files::selects(selector, labels),
                "{file}: {}",
                doc["metadata"]["name"]
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 4);
}

#[test]
fn worker_deployment_runs_admin_worker_with_a_valid_config_naming_the_job_queue() {
    let k8s = Manifests::load_all();
    let deployment = k8s.get("Deployment", "influxdb-router-worker");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "admin",
            "worker",
            "--config",
            "/etc/influxdb-router/config.toml"
        ]
    );
    assert_eq!(
        container["image"],
        k8s.get("Deployment", "influxdb-router")["spec"]["template"]["spec"]["containers"][0]
            ["image"],
        "the workers run the router's image"
    );
    let map = k8s.get("ConfigMap", "influxdb-router-worker");
    let text = map["data"]["config.toml"].as_str().unwrap();
    let config = Config::from_toml_str(text, "workers.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(config.routing.redis_url.contains("redis"));
    assert!(config.routing.amqp_url.starts_with("amqp://"));
    assert_eq!(config.control.max_attempts, 3);
}

#[test]
fn router_config_map_is_a_valid_config_discovering_the_headless_service() {
    let k8s = Manifests::load_all();
    let router = RouterPod::deployment(&k8s);
    let srv_cluster = router.discovers_the_statefulset(&k8s);
    assert_eq!(router.config.routing.default_cluster, srv_cluster);
}

#[test]
fn router_deployment_probes_ping_and_health_on_5096() {
    let k8s = Manifests::load_all();
    let router = RouterPod::deployment(&k8s);
    assert_eq!(
        router.probe("livenessProbe"),
        ("/ping".to_owned(), ROUTER_PORT)
    );
    assert_eq!(
        router.probe("readinessProbe"),
        ("/health".to_owned(), ROUTER_PORT)
    );
    assert_eq!(router.config.server.bind.port(), ROUTER_PORT);
    assert!(
        router.config.server.bind.ip().is_unspecified(),
        "probes cannot reach it"
    );
}

#[test]
fn router_deployment_keeps_its_queue_on_a_claim_of_its_own() {
    let k8s = Manifests::load_all();
    let router = RouterPod::deployment(&k8s);
    let volume = router.queue_volume();
    let claim = k8s.get(
        "PersistentVolumeClaim",
        str_at(volume, "/persistentVolumeClaim/claimName"),
    );
    let deployment = k8s.get("Deployment", "influxdb-router");
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "routers would share one queue"
    );
    assert_eq!(str_at(deployment, "/spec/strategy/type"), "Recreate");
    let capacity = bytes_of_quantity(str_at(claim, "/spec/resources/requests/storage"));
    let nodes = k8s.get("StatefulSet", "influxdb")["spec"]["replicas"]
        .as_u64()
        .unwrap();
    let needed = router.config.buffer.max_size_per_node * nodes;
    assert!(
        capacity >= needed,
        "claim of {capacity} bytes, full queues take {needed}"
    );
}

#[test]
fn router_pod_gets_its_config_from_the_config_map_and_outwaits_the_drain() {
    let k8s = Manifests::load_all();
    let router = RouterPod::deployment(&k8s);
    assert!(router.config_path().starts_with("/etc/influxdb-router/"));
    router.outwaits_the_drain();
}

#[test]
fn router_runs_as_the_image_user_and_never_as_root() {
    let k8s = Manifests::load_all();
    let router = RouterPod::deployment(&k8s);
    let image = dockerfile(&repo_file("Dockerfile"));
    let user = image
        .stages
        .last()
        .unwrap()
        .args("USER")
        .last()
        .unwrap()
        .to_owned();
    let uid: u64 = user.split(':').next().unwrap().parse().unwrap();
    assert_eq!(router.security("runAsNonRoot"), Some(&Value::Bool(true)));
    assert_eq!(
        router.security("runAsUser").and_then(Value::as_u64),
        Some(uid)
    );
    let container = &router.container["securityContext"];
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(container["readOnlyRootFilesystem"], true);
}

#[test]
fn router_service_exposes_5096_to_the_router_pods() {
    let k8s = Manifests::load_all();
    let service = k8s.get("Service", "influxdb-router");
    let router = RouterPod::deployment(&k8s);
    assert!(deploy_files::selects(
        &service["spec"]["selector"],
        &router.pod_labels()
    ));
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["port"], ROUTER_PORT);
    assert_eq!(
        port_number(router.container, &port["targetPort"]),
        ROUTER_PORT
    );
}

#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let mut files: Vec<String> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    files.push(repo("deploy/sidecar/kubernetes.yaml").display().to_string());
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .args(&files)
        .output()
        .expect("cannot run python3 (apt-get install -y python3 python3-pip)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stderr.contains("No module named kubernetes_validate"),
        "the Python package kubernetes-validate is missing: install it with \
         `python3 -m pip install kubernetes-validate` (or run ./scripts/test.sh, which does so)"
    );
    assert!(
        output.status.success(),
        "schema validation failed:\n{stdout}{stderr}"
    );
    assert!(
        !stdout.contains("WARN") && !stderr.contains("WARN"),
        "{stdout}{stderr}"
    );
}

// ---------------------------------------------------------------- sidecar

#[test]
fn sidecar_pod_runs_the_router_as_a_native_sidecar_beside_the_app() {
    let k8s = Manifests::load_all();
    let router = RouterPod::sidecar(&k8s);
    assert_eq!(
        router.container["restartPolicy"], "Always",
        "not a native sidecar"
    );
    assert_eq!(
        router.probe("startupProbe"),
        ("/ping".to_owned(), ROUTER_PORT)
    );
    assert_eq!(
        router.probe("livenessProbe"),
        ("/ping".to_owned(), ROUTER_PORT)
    );
    assert_eq!(
        router.probe("readinessProbe"),
        ("/health".to_owned(), ROUTER_PORT)
    );
    assert_eq!(router.security("runAsNonRoot"), Some(&Value::Bool(true)));
    assert!(router.queue_volume()["emptyDir"].is_object());
    router.discovers_the_statefulset(&k8s);
    router.outwaits_the_drain();
    let telegraf = k8s.get("ConfigMap", "telegraf");
    let app = deploy_files::telegraf_output(str_at(telegraf, "/data/telegraf.conf"));
    assert_eq!(app, format!("http://127.0.0.1:{ROUTER_PORT}"));
}

#[test]
fn sidecar_compose_runs_the_router_in_the_app_network_namespace() {
    let compose = &yaml_documents(&repo("deploy/sidecar/docker-compose.yml"))[0];
    let services = &compose["services"];
    let router = &services["router"];
    assert_eq!(router["network_mode"], "service:app");
    let context = repo("deploy/sidecar").join(str_at(router, "/build/context"));
    assert!(context.join(str_at(router, "/build/dockerfile")).is_file());

    let volumes = router["volumes"].as_array().unwrap();
    let mount = |target: &str| {
        volumes
            .iter()
            .filter_map(Value::as_str)
            .find_map(|v| {
                let mut parts = v.split(':');
                let source = parts.next()?;
                (parts.next()? == target).then_some(source)
            })
            .unwrap_or_else(|| panic!("nothing mounted at {target}"))
    };
    let config_file = mount(CONFIG_PATH);
    let config_path = repo("deploy/sidecar").join(config_file);
    let config = config::load(Some(&config_path))
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let queue = config.buffer.dir.display().to_string();
    let queue_volume = mount(&queue);
    assert!(
        compose["volumes"].get(queue_volume).is_some(),
        "the queue is not on a named volume"
    );
    for node in &config.clusters[0].nodes {
        let host = node.url.host().unwrap();
        assert!(services.get(host).is_some(), "node {host} is not a service");
    }
    let grace = config::parse_duration(str_at(router, "/stop_grace_period")).unwrap();
    assert!(grace > config.server.shutdown_timeout);

    let telegraf = &services["app"]["volumes"][0];
    let telegraf_conf = str_at(telegraf, "").split(':').next().unwrap();
    let app = deploy_files::telegraf_output(&repo_file(&format!("deploy/sidecar/{telegraf_conf}")));
    assert_eq!(app, format!("http://{}", config.server.bind));
}
