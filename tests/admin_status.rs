//! `admin status` against running routers in front of a real `influxd`:
//! the table and the JSON document name every node and its queue, and a
//! router that does not answer is a row that says so and exit status 1.

mod support;

use std::process::Command;

use support::router::RouterBuilder;
use support::Influxd;

const BIN: &str = env!("CARGO_BIN_EXE_influxdb-router");

fn admin(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("admin")
        .args(args)
        .env_remove("INFLUXDB_ROUTER_CONFIG")
        .output()
        .expect("binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_every_node_of_every_router_asked() {
    let a = tokio::task::block_in_place(Influxd::start);
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", "http://127.0.0.1:9")
        .start()
        .await;
    router.wait_for_health("b", false).await;
    let url = router.url();
    let (code, stdout, stderr) =
        tokio::task::block_in_place(|| admin(&["status", "--router", &url]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("router {url}: version ")),
        "{stdout}"
    );
    assert!(stdout.contains("CLUSTER  NODE  MODE"), "{stdout}");
    let row_a = stdout
        .lines()
        .find(|l| l.starts_with("main     a "))
        .unwrap_or_default();
    assert!(
        row_a.contains("read-write") && row_a.contains("healthy"),
        "{stdout}"
    );
    let row_b = stdout
        .lines()
        .find(|l| l.starts_with("main     b "))
        .unwrap_or_default();
    assert!(row_b.contains("unhealthy"), "{stdout}");

    let (code, stdout, _) =
        tokio::task::block_in_place(|| admin(&["status", "--router", &url, "--json"]));
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let nodes = doc["routers"][0]["status"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nodes.len(), 2, "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_that_does_not_answer_is_named_and_fails_the_command() {
    let router = RouterBuilder::new()
        .node("a", "http://127.0.0.1:9")
        .start()
        .await;
    let url = router.url();
    let dead = "http://127.0.0.1:9";
    let (code, stdout, _) =
        tokio::task::block_in_place(|| admin(&["status", "--router", &url, "--router", dead]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("router {url}: version")),
        "{stdout}"
    );
    assert!(
        stdout.contains("router http://127.0.0.1:9: NOT ANSWERING"),
        "{stdout}"
    );
}
