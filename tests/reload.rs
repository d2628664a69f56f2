//! The routing table changes at run time, from the watched config file and
//! on SIGHUP, without a restart and without failing a request; an invalid
//! update is refused and the last good table keeps serving.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use influxdb_router::server::{self, RunningRouter};
use serde_json::Value;
use support::router_process::{RouterProcess, BIND};
use support::{wait_until, FakeNode};

fn config(bind: &str, queues: &Path, watch: bool, nodes: &[(&str, &str, &str)]) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(n, u, m)| format!("{{ name = \"{n}\", url = \"{u}\", mode = \"{m}\" }}"))
        .collect();
    format!(
        "[server]\nbind = \"{bind}\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n[routing]\nwatch = {watch}\n[[cluster]]\nname = \"main\"\nnodes = [{}]\n",
        queues.display().to_string(),
        nodes.join(", ")
    )
}

/// Replaces the file the way editors do: write a new file, rename it over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn status(url: &str) -> Value {
    reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for_version(url: &str, version: u64) {
    let reached = wait_until(Duration::from_secs(10), || async {
        status(url).await["routing"]["version"] == version
    })
    .await;
    assert!(
        reached,
        "routing version {version} not reached: {}",
        status(url).await["routing"]
    );
}

async fn write(url: &str) -> u16 {
    let client = reqwest::Client::new();
    client
        .post(format!("{url}/write?db=d"))
        .body("m v=1 1\n")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

struct Watched {
    dir: tempfile::TempDir,
    router: RunningRouter,
}

impl Watched {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("router.toml")
    }

    fn queues(&self) -> std::path::PathBuf {
        self.dir.path().join("queues")
    }
}

async fn watched(nodes: &[(&str, &str, &str)]) -> Watched {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        config("127.0.0.1:0", &dir.path().join("queues"), true, nodes),
    )
    .unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    Watched { dir, router }
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_config_file_swaps_the_routing_table_without_a_restart() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let w = watched(&[("a", &a.url(), "read-write")]).await;
    let url = w.router.url();
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (1, 0));

    replace(
        &w.path(),
        &config(
            "127.0.0.1:0",
            &w.queues(),
            true,
            &[("b", &b.url(), "read-write")],
        ),
    );
    wait_for_version(&url, 2).await;
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (1, 1));
    let routing = &status(&url).await["routing"];
    assert_eq!(routing["swaps"], 1);
    assert!(
        routing["source"].as_str().unwrap().ends_with("router.toml"),
        "{routing}"
    );
}

/// Lays `text` out the way the kubelet mounts a ConfigMap: `router.toml` is a
/// symlink to `..data/router.toml`, and `..data` a symlink to a timestamped
/// directory; an update writes a new directory and swaps `..data` by rename.
fn configmap_update(dir: &Path, generation: u32, text: &str) {
    let version = dir.join(format!("..2026_11_26_{generation}"));
    std::fs::create_dir(&version).unwrap();
    std::fs::write(version.join("router.toml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("router.toml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/router.toml", &link).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let dir = tempfile::tempdir().unwrap();
    let queues = dir.path().join("queues");
    let first = config(
        "127.0.0.1:0",
        &queues,
        true,
        &[("a", &a.url(), "read-write")],
    );
    configmap_update(dir.path(), 1, &first);
    let router = server::spawn_watching(&dir.path().join("router.toml"))
        .await
        .unwrap();
    let url = router.url();
    assert_eq!(write(&url).await, 204);
    let second = config(
        "127.0.0.1:0",
        &queues,
        true,
        &[("b", &b.url(), "read-write")],
    );
    configmap_update(dir.path(), 2, &second);
    wait_for_version(&url, 2).await;
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_is_refused_and_the_last_good_table_keeps_serving() {
    let a = FakeNode::start();
    let w = watched(&[("a", &a.url(), "read-write")]).await;
    let url = w.router.url();
    replace(
        &w.path(),
        "[[cluster]]\nname = \"main\"\nnodes = [{ name = \"a\", url = \"ftp://nowhere\" }]\n",
    );
    let refused = wait_until(Duration::from_secs(10), || async {
        status(&url).await["routing"]["refused"] == 1
    })
    .await;
    let routing = status(&url).await["routing"].clone();
    assert!(refused, "{routing}");
    assert_eq!(routing["version"], 1);
    let problems = routing["last_refused"]["problems"].to_string();
    assert!(problems.contains("cluster[0].nodes[0].url"), "{problems}");
    assert_eq!(write(&url).await, 204);
    assert_eq!(a.write_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rereads_the_file_when_watching_is_off() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let queues = tempfile::tempdir().unwrap();
    let router = RouterProcess::start(&config(
        BIND,
        queues.path(),
        false,
        &[("a", &a.url(), "read-write")],
    ));
    let url = router.url();
    let edited = config(
        &router.addr().to_string(),
        queues.path(),
        false,
        &[("b", &b.url(), "read-write")],
    );
    replace(&router.config_path(), &edited);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status(&url).await["routing"]["version"],
        1,
        "not watched: no swap without SIGHUP"
    );
    let pid = router.pid().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for_version(&url, 2).await;
    assert_eq!(write(&url).await, 204);
    assert_eq!((a.write_count(), b.write_count()), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_swaps_under_load_fail_no_request() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let modes = ["read-write", "write-only"];
    let w = watched(&[("a", &a.url(), "read-write"), ("b", &b.url(), modes[0])]).await;
    let url = w.router.url();
    let stop = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for i in 0..4 {
        let (url, stop, failures, acked) =
            (url.clone(), stop.clone(), failures.clone(), acked.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut done = 0;
            while stop.load(Ordering::Relaxed) == 0 {
                let ok = if i % 2 == 0 {
                    let r = client
                        .post(format!("{url}/write?db=d"))
                        .body(format!("m,writer={i} v={done} {done}\n"))
                        .send()
                        .await;
                    let ok = r.map(|r| r.status() == 204).unwrap_or(false);
                    acked.fetch_add(usize::from(ok), Ordering::Relaxed);
                    ok
                } else {
                    let r = client
                        .get(format!("{url}/query?q=SHOW+DATABASES"))
                        .send()
                        .await;
                    r.map(|r| r.status() == 200).unwrap_or(false)
                };
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done += 1;
            }
            done
        }));
    }
    for swap in 1..=100u64 {
        let mode = modes[(swap % 2) as usize];
        replace(
            &w.path(),
            &config(
                "127.0.0.1:0",
                &w.queues(),
                true,
                &[("a", &a.url(), "read-write"), ("b", &b.url(), mode)],
            ),
        );
        wait_for_version(&url, swap + 1).await;
    }
    stop.store(1, Ordering::Relaxed);
    let mut requests = 0;
    for task in load {
        requests += task.await.unwrap();
    }
    println!(
        "100 swaps under {requests} requests; {} failed",
        failures.load(Ordering::Relaxed)
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(requests > 100);
    assert_eq!(status(&url).await["routing"]["swaps"], 100);

    // every acknowledged write reached both nodes exactly once, and nothing else did
    let queues_empty = wait_until(Duration::from_secs(10), || async {
        let nodes = status(&url).await["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        nodes.iter().all(|n| n["queue"]["records"] == 0)
    })
    .await;
    assert!(queues_empty, "{}", status(&url).await["nodes"]);
    let lines = |node: &FakeNode| {
        let mut lines = node.written_lines();
        lines.sort();
        lines
    };
    let (on_a, on_b) = (lines(&a), lines(&b));
    let written: usize = on_a.len();
    assert_eq!(
        written,
        acked.load(Ordering::Relaxed),
        "every acknowledged write arrived"
    );
    assert_eq!(on_a, on_b, "both nodes got the same writes");
    let mut unique = on_a.clone();
    unique.dedup();
    assert_eq!(unique.len(), written, "no write arrived twice");
    println!("{written} acknowledged writes on each node");
}

/// Two clusters of one fake node each; database `d` is routed to `target`.
fn two_clusters(queues: &Path, a: &str, b: &str, target: &str) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[health]\ninterval = \"100ms\"\n[buffer]\ndir = {:?}\n\
         [routing]\nwatch = false\ndefault_cluster = \"c1\"\n\
         [[cluster]]\nname = \"c1\"\nnodes = [{{ name = \"a\", url = \"{a}\" }}]\n\
         [[cluster]]\nname = \"c2\"\nnodes = [{{ name = \"b\", url = \"{b}\" }}]\n\
         [[route]]\ndatabase = \"d\"\ncluster = \"{target}\"\n",
        queues.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_sighup_swaps_moving_a_database_between_clusters_put_each_write_on_exactly_one() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let dir = tempfile::tempdir().unwrap();
    let (path, queues) = (dir.path().join("router.toml"), dir.path().join("queues"));
    std::fs::write(&path, two_clusters(&queues, &a.url(), &b.url(), "c1")).unwrap();
    let router = server::spawn_watching(&path).await.unwrap();
    let url = router.url();
    let load = support::load::Load::start(&url, "d", 3);
    let pid = std::process::id().to_string();
    for swap in 1..=100u64 {
        let target = if swap % 2 == 1 { "c2" } else { "c1" };
        replace(&path, &two_clusters(&queues, &a.url(), &b.url(), target));
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
        wait_for_version(&url, swap + 1).await;
    }
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(5)]
    );
    let (on_a, on_b) = (a.written_lines(), b.written_lines());
    let mut everywhere: Vec<&String> = on_a.iter().chain(on_b.iter()).collect();
    everywhere.sort();
    let mut acked: Vec<&String> = report.acked.iter().collect();
    acked.sort();
    println!(
        "100 SIGHUP swaps: {} writes acknowledged, {} on c1, {} on c2",
        acked.len(),
        on_a.len(),
        on_b.len()
    );
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both clusters were written to"
    );
    assert_eq!(
        everywhere, acked,
        "each acknowledged write is on exactly one cluster, nothing else is"
    );
}

/// The value of the counter `name{labels}` (written as they appear in the
/// exposition, e.g. `source="file"`) on the router at `url`; 0 when absent.
async fn counter(url: &str, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn file_reads(url: &str) -> f64 {
    counter(
        url,
        "influxdb_router_routing_reloads_total",
        "source=\"file\"",
    )
    .await
}

async fn refusals(url: &str) -> f64 {
    counter(url, "influxdb_router_routing_updates_refused_total", "").await
}

/// A router watching its config file, routing to `node`, in its own process
/// (so that no other test's SIGHUP reaches it).
fn watched_process(queues: &Path, node: &FakeNode) -> RouterProcess {
    RouterProcess::start(&config(
        BIND,
        queues,
        true,
        &[("a", &node.url(), "read-write")],
    ))
}

/// Waits until the file has been read `reads` times, then checks that it is
/// not read again over the next two seconds.
async fn assert_read_exactly(url: &str, reads: f64) {
    let reached = wait_until(Duration::from_secs(10), || async {
        file_reads(url).await >= reads
    })
    .await;
    assert!(reached, "the file was read {} times", file_reads(url).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        file_reads(url).await,
        reads,
        "the file is read once per change, not again because it was read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_change_of_the_watched_file_is_read_once_and_not_again() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let queues = tempfile::tempdir().unwrap();
    let router = watched_process(queues.path(), &a);
    let url = router.url();
    let edited = router
        .config_text()
        .replace(&a.url(), &b.url())
        .replace("\"a\"", "\"b\"");
    std::fs::write(router.config_path(), edited).unwrap();
    wait_for_version(&url, 2).await;
    assert_read_exactly(&url, 1.0).await;
    assert_eq!(status(&url).await["routing"]["swaps"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_editor_style_replace_of_the_watched_file_is_read_once() {
    let (a, b) = (FakeNode::start(), FakeNode::start());
    let queues = tempfile::tempdir().unwrap();
    let router = watched_process(queues.path(), &a);
    let url = router.url();
    let edited = router
        .config_text()
        .replace(&a.url(), &b.url())
        .replace("\"a\"", "\"b\"");
    replace(&router.config_path(), &edited);
    wait_for_version(&url, 2).await;
    assert_read_exactly(&url, 1.0).await;
    assert_eq!(status(&url).await["routing"]["swaps"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_rereads_the_watched_file_once() {
    let a = FakeNode::start();
    let queues = tempfile::tempdir().unwrap();
    let router = watched_process(queues.path(), &a);
    let url = router.url();
    let pid = router.pid().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    assert_read_exactly(&url, 1.0).await;
    assert_eq!(
        status(&url).await["routing"]["version"],
        1,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_change_is_refused_and_logged_once() {
    let a = FakeNode::start();
    let queues = tempfile::tempdir().unwrap();
    let router = watched_process(queues.path(), &a);
    let url = router.url();
    replace(&router.config_path(), "[[cluster]\nname = \"main\"\n");
    let refused = wait_until(Duration::from_secs(10), || async {
        refusals(&url).await >= 1.0
    })
    .await;
    assert!(refused, "the broken file was not refused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refusals(&url).await, 1.0, "refused once, not on every read");
    let logged = router
        .stderr_text()
        .matches("routing update refused")
        .count();
    assert_eq!(logged, 1, "{}", router.stderr_text());
    assert_eq!(write(&url).await, 204);
}
