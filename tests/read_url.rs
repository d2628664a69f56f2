//! A cluster's `read_url` (a Kubernetes Service in front of its nodes):
//! reads go there first, and when it fails before the first byte the
//! router picks among the nodes itself; writes and admin statements always
//! go to every node.

mod support;

use support::router::RouterBuilder;
use support::{free_port, FakeNode};

fn query_count(node: &FakeNode) -> usize {
    node.requests_to("/query").len()
}

async fn read(url: &str) -> (u16, String) {
    let response = reqwest::get(format!("{url}/query?db=d&q=SELECT%20*%20FROM%20m"))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_go_to_the_read_url_and_writes_to_every_node() {
    let (a, b, service) = (FakeNode::start(), FakeNode::start(), FakeNode::start());
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .cluster("read_url", &format!("{:?}", service.url()))
        .start()
        .await;
    let url = router.url();
    for _ in 0..3 {
        assert_eq!(read(&url).await.0, 200);
    }
    assert_eq!(query_count(&service), 3);
    assert_eq!(
        query_count(&a) + query_count(&b),
        0,
        "a read skipped the read_url"
    );
    let write = reqwest::Client::new()
        .post(format!("{url}/write?db=d"))
        .body("m v=1 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status().as_u16(), 204);
    assert_eq!(
        (a.write_count(), b.write_count(), service.write_count()),
        (1, 1, 0)
    );
    let create = reqwest::Client::new()
        .post(format!("{url}/query"))
        .form(&[("q", "CREATE DATABASE d")])
        .send()
        .await
        .unwrap();
    assert_eq!(create.status().as_u16(), 200);
    assert_eq!(
        query_count(&service),
        3,
        "an admin statement went to the read_url"
    );
    assert_eq!((query_count(&a), query_count(&b)), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_read_url_leaves_reads_to_the_nodes() {
    let a = FakeNode::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .cluster("read_url", &format!("{dead:?}"))
        .start()
        .await;
    let url = router.url();
    for _ in 0..3 {
        let (status, body) = read(&url).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(query_count(&a), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_url_answering_5xx_is_failed_over() {
    let a = FakeNode::start();
    let service = FakeNode::with_behaviour(support::Behaviour::Status(
        503,
        "{\"error\":\"no endpoints\"}",
    ));
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .cluster("read_url", &format!("{:?}", service.url()))
        .start()
        .await;
    let (status, body) = read(&router.url()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((query_count(&service), query_count(&a)), (1, 1));
    // left alone for a while after failing: the next read goes straight to a node
    assert_eq!(read(&router.url()).await.0, 200);
    assert_eq!((query_count(&service), query_count(&a)), (1, 2));
}

#[test]
fn a_bad_read_url_is_refused() {
    let text = "[[cluster]]\nname = \"main\"\nread_url = \"ftp://x\"\nnodes = [{ name = \"a\", url = \"http://127.0.0.1:1\" }]\n";
    let error = influxdb_router::config::Config::from_toml_str(text, "t.toml").unwrap_err();
    assert!(error.to_string().contains("cluster[0].read_url"), "{error}");
}
