//! Readers for the deployment files that tests/deploy.rs checks: YAML
//! manifests (several documents per file), a Dockerfile's stages, a systemd
//! unit's keys, and the router as a Kubernetes pod runs it. They panic with
//! the file and what is missing, which is the test failure.

use std::path::{Path, PathBuf};

use influxdb_router::config::Config;
use serde::Deserialize;
use serde_json::Value;

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The text of a repository file.
pub fn repo_file(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every non-empty YAML document of a file.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The string at a JSON pointer, or a panic naming it.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// Whether every label of `selector` is among `labels` (and there is one).
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(selector) = selector.as_object().filter(|s| !s.is_empty()) else {
        return false;
    };
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A port given as a number or as the name of one of the container's ports.
pub fn port_number(container: &Value, port: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).unwrap();
    }
    let name = port.as_str().unwrap_or_else(|| panic!("bad port {port}"));
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .map(|n| u16::try_from(n).unwrap())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// A Kubernetes quantity like `20Gi` or `500M`, in bytes.
pub fn bytes_of_quantity(quantity: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, factor) = units
        .iter()
        .find_map(|(suffix, factor)| Some((quantity.strip_suffix(suffix)?, *factor)))
        .unwrap_or((quantity, 1));
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("bad quantity {quantity}"));
    number * factor
}

/// The URL Telegraf's first `[[outputs.influxdb]]` writes to.
pub fn telegraf_output(conf: &str) -> String {
    let table: toml::Table = conf.parse().expect("telegraf.conf is not TOML");
    let urls = &table["outputs"]["influxdb"][0]["urls"];
    urls[0]
        .as_str()
        .expect("no outputs.influxdb urls")
        .to_owned()
}

/// The Kubernetes documents: deploy/kubernetes/ and the sidecar's.
pub struct Manifests {
    /// (file, document) in file order.
    pub docs: Vec<(String, Value)>,
}

impl Manifests {
    pub fn load_all() -> Manifests {
        let dir = repo("deploy/kubernetes");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
            .collect();
        files.sort();
        files.push(repo("deploy/sidecar/kubernetes.yaml"));
        let docs = files
            .iter()
            .flat_map(|path| {
                let name = path.strip_prefix(repo("")).unwrap().display().to_string();
                yaml_documents(path)
                    .into_iter()
                    .map(move |doc| (name.clone(), doc))
            })
            .collect();
        Manifests { docs }
    }

    /// The one document of this kind and name.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .docs
            .iter()
            .map(|(_, doc)| doc)
            .filter(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
            .collect();
        match found[..] {
            [doc] => doc,
            _ => panic!("{} documents of kind {kind} named {name}", found.len()),
        }
    }

    /// The file a document is in.
    pub fn file_of(&self, kind: &str, name: &str) -> &str {
        let doc = self.get(kind, name);
        self.docs
            .iter()
            .find(|(_, d)| d == doc)
            .map(|(f, _)| f.as_str())
            .unwrap()
    }
}

/// The router as a pod runs it: the pod template, the container, and the
/// configuration the container is started with (parsed by the router's own
/// parser, so the manifests follow the config as it evolves).
pub struct RouterPod<'a> {
    pub template: &'a Value,
    pub container: &'a Value,
    pub config: Config,
}

impl<'a> RouterPod<'a> {
    /// The shared router of deploy/kubernetes/router.yaml.
    pub fn deployment(k8s: &'a Manifests) -> RouterPod<'a> {
        let deployment = k8s.get("Deployment", "influxdb-router");
        RouterPod::new(k8s, deployment, "containers")
    }

    /// The router beside the application in deploy/sidecar/kubernetes.yaml.
    pub fn sidecar(k8s: &'a Manifests) -> RouterPod<'a> {
        let deployment = k8s.get("Deployment", "telegraf");
        RouterPod::new(k8s, deployment, "initContainers")
    }

    fn new(k8s: &'a Manifests, workload: &'a Value, list: &str) -> RouterPod<'a> {
        let template = &workload["spec"]["template"];
        let container = template["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "influxdb-router")
            .unwrap_or_else(|| panic!("no {list} entry named influxdb-router"));
        let mut pod = RouterPod {
            template,
            container,
            config: Config::embedded_default(),
        };
        pod.config = pod.load_config(k8s);
        pod
    }

    /// The path after `--config` in the container's arguments.
    pub fn config_path(&self) -> String {
        let args: Vec<&str> = self.container["args"]
            .as_array()
            .expect("no args")
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let at = args.iter().position(|a| *a == "--config" || *a == "-c");
        let path = at
            .and_then(|i| args.get(i + 1))
            .expect("no --config in args");
        (*path).to_owned()
    }

    /// Finds the ConfigMap mounted where `--config` points and parses its key.
    fn load_config(&self, k8s: &Manifests) -> Config {
        let path = PathBuf::from(self.config_path());
        let dir = path.parent().unwrap().to_str().unwrap();
        let key = path.file_name().unwrap().to_str().unwrap();
        let volume = self.volume_mounted_at(dir);
        let map_name = str_at(volume, "/configMap/name");
        assert!(
            volume["configMap"].get("items").is_none(),
            "items remap the keys"
        );
        let map = k8s.get("ConfigMap", map_name);
        let text = str_at(map, &format!("/data/{key}"));
        let origin = format!(
            "{} ConfigMap {map_name} {key}",
            k8s.file_of("ConfigMap", map_name)
        );
        Config::from_toml_str(text, &origin).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The pod volume the container mounts at `path`.
    fn volume_mounted_at(&self, path: &str) -> &'a Value {
        let mount = self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        self.template["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]))
    }

    /// The volume the queues ([buffer] dir) are on, mounted writable.
    pub fn queue_volume(&self) -> &'a Value {
        let dir = self.config.buffer.dir.to_str().unwrap();
        let mount = self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("the queue dir {dir} is not on a volume"));
        assert_ne!(mount["readOnly"], true, "the queue volume is read-only");
        self.volume_mounted_at(dir)
    }

    /// The path and port of a probe's HTTP GET.
    pub fn probe(&self, which: &str) -> (String, u16) {
        let get = &self.container[which]["httpGet"];
        let path = get["path"].as_str().unwrap_or_else(|| panic!("no {which}"));
        (path.to_owned(), port_number(self.container, &get["port"]))
    }

    /// A securityContext key: the container's, else the pod's.
    pub fn security(&self, key: &str) -> Option<&'a Value> {
        let container = self.container["securityContext"].get(key);
        container.or_else(|| self.template["spec"]["securityContext"].get(key))
    }

    pub fn pod_labels(&self) -> Value {
        self.template["metadata"]["labels"].clone()
    }

    /// Checks that a cluster discovers the InfluxDB StatefulSet through the
    /// SRV records of its headless Service; returns that cluster's name.
    pub fn discovers_the_statefulset(&self, k8s: &Manifests) -> String {
        let set = k8s.get("StatefulSet", "influxdb");
        let service = k8s.get("Service", str_at(set, "/spec/serviceName"));
        let http = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "http")
            .expect("the headless service has no port named http");
        let expected = format!(
            "_{}._tcp.{}.{}.svc.cluster.local",
            str_at(http, "/name"),
            str_at(service, "/metadata/name"),
            str_at(service, "/metadata/namespace"),
        );
        let cluster = self
            .config
            .clusters
            .iter()
            .find(|c| c.srv.is_some())
            .expect("no cluster with srv");
        assert_eq!(cluster.srv.as_ref().unwrap().name, expected);
        cluster.name.clone()
    }

    /// Checks that the kubelet waits longer than the router drains.
    pub fn outwaits_the_drain(&self) {
        let grace = self.template["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("no terminationGracePeriodSeconds");
        let drain = self.config.server.shutdown_timeout;
        assert!(
            std::time::Duration::from_secs(grace) > drain,
            "terminationGracePeriodSeconds {grace} does not outlast shutdown_timeout {drain:?}"
        );
    }
}

/// A Dockerfile, by stage.
pub struct Dockerfile {
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
pub struct Stage {
    pub name: Option<String>,
    /// (keyword in upper case, arguments)
    pub instructions: Vec<(String, String)>,
}

impl Stage {
    /// The arguments of every instruction with this keyword.
    pub fn args<'s>(&'s self, keyword: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
    }
}

/// Splits a Dockerfile into stages: comments dropped, continued lines joined.
pub fn dockerfile(text: &str) -> Dockerfile {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in joined.iter().filter(|l| !l.trim().is_empty()) {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (keyword, args) = (keyword.to_ascii_uppercase(), args.trim().to_owned());
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words[..] {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_owned()),
                _ => None,
            };
            stages.push(Stage {
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, args));
        }
    }
    Dockerfile { stages }
}

/// The words of an exec-form (JSON array) instruction.
pub fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("not in exec form: {args}"))
}

/// A systemd unit's `Key=value` lines (sections are not told apart: the
/// keys checked occur in one section only).
pub struct Unit {
    entries: Vec<(String, String)>,
}

pub fn systemd_unit(text: &str) -> Unit {
    let entries = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Unit { entries }
}

impl Unit {
    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a key that must occur once.
    pub fn one(&self, key: &str) -> &str {
        match self.all(key)[..] {
            [value] => value,
            ref values => panic!("{key} occurs {} times in the unit", values.len()),
        }
    }
}
