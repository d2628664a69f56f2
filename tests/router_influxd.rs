//! The router in front of two real `influxd` nodes: what a client sees and
//! what each node ends up holding.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::router::{gzip, two_influxd as two_nodes, RouterBuilder};
use support::Influxd;

/// A read straight from a node with timestamps as integers in `epoch` units.
async fn query_epoch(node: &Influxd, q: &str, db: &str, epoch: &str) -> Value {
    let url = format!("{}/query", node.url());
    let request = reqwest::Client::new()
        .get(url)
        .query(&[("q", q), ("db", db), ("epoch", epoch)]);
    request.send().await.unwrap().json().await.unwrap()
}

fn series(answer: &Value) -> Value {
    answer
        .pointer("/results/0/series")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn database_created_through_the_router_exists_on_both_nodes() {
    let (a, b, router) = two_nodes().await;
    let answer = router.query("CREATE DATABASE \"metrics db\"", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"results":[{"statement_id":0}]}));
    for node in [&a, &b] {
        assert!(
            node.databases().await.contains(&"metrics db".to_string()),
            "missing on {}",
            node.url()
        );
    }
    let answer = router
        .query(
            "CREATE RETENTION POLICY week ON \"metrics db\" DURATION 7d REPLICATION 1",
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for node in [&a, &b] {
        let policies = node
            .query("SHOW RETENTION POLICIES ON \"metrics db\"", None)
            .await;
        assert!(policies.to_string().contains("\"week\""), "{policies}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn points_written_through_the_router_are_on_both_nodes_with_their_types() {
    let (a, b, router) = two_nodes().await;
    router.query("CREATE DATABASE db", None).await;
    let body = "cpu,host=web1,region=eu usage=0.5,cores=8i,name=\"x y\",up=true 1700000000000000001\n\
                cpu,host=web2,region=eu usage=1.5,cores=4i,name=\"z\",up=false 1700000000000000002\n";
    let answer = router.write("db=db", body).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    let expected_points = json!([{
        "name": "cpu",
        "columns": ["time", "cores", "host", "name", "region", "up", "usage"],
        "values": [
            [1700000000000000001u64, 8, "web1", "x y", "eu", true, 0.5],
            [1700000000000000002u64, 4, "web2", "z", "eu", false, 1.5]
        ]
    }]);
    let expected_types = json!([{
        "name": "cpu",
        "columns": ["fieldKey", "fieldType"],
        "values": [["cores", "integer"], ["name", "string"], ["up", "boolean"], ["usage", "float"]]
    }]);
    for node in [&a, &b] {
        let points = node.query("SELECT * FROM cpu", Some("db")).await;
        let exact = query_epoch(node, "SELECT * FROM cpu", "db", "ns").await;
        assert_eq!(
            series(&exact),
            expected_points,
            "points on {} ({points})",
            node.url()
        );
        let types = node.query("SHOW FIELD KEYS FROM cpu", Some("db")).await;
        assert_eq!(
            series(&types),
            expected_types,
            "field types on {}",
            node.url()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_through_the_router_equals_the_same_read_on_a_node_chunked_and_not() {
    let (a, _b, router) = two_nodes().await;
    router.query("CREATE DATABASE db", None).await;
    let lines: String = (0..500)
        .map(|i| {
            format!(
                "mem,host=h{} used={}i,free={}.5 {}\n",
                i % 7,
                i,
                i,
                1_600_000_000_000_000_000u64 + i
            )
        })
        .collect();
    assert_eq!(router.write("db=db&precision=ns", lines).await.status, 204);
    for params in [
        "",
        "&chunked=true&chunk_size=100",
        "&epoch=ms",
        "&pretty=true",
    ] {
        let path = format!("/query?db=db&q=SELECT+*+FROM+mem+GROUP+BY+host{params}");
        let through = router.get(&path).await;
        let direct = reqwest::get(format!("{}{path}", a.url())).await.unwrap();
        assert_eq!(through.status, direct.status().as_u16());
        let direct = direct.text().await.unwrap();
        assert_eq!(through.body, direct, "answers differ for {path}");
        assert!(
            through.body.len() > 1000,
            "the read returned data: {}",
            through.body
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_survive_one_node_stopped() {
    let (a, b, router) = two_nodes().await;
    router.query("CREATE DATABASE db", None).await;
    assert_eq!(
        router
            .write("db=db&consistency=all", "disk free=1i 1\n")
            .await
            .status,
        204
    );
    for stopped in [&a, &b] {
        stopped.stop();
        for _ in 0..5 {
            let answer = router
                .query("SELECT count(free) FROM disk", Some("db"))
                .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(
                answer.json().pointer("/results/0/series/0/values/0/1"),
                Some(&json!(1))
            );
        }
        tokio::task::block_in_place(|| stopped.start_again());
        let name = if std::ptr::eq(stopped, &a) { "a" } else { "b" };
        router.wait_for_health(name, true).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_fails_over_before_the_health_check_notices_a_node_is_down() {
    let (a, b, _unused) = two_nodes().await;
    let router = RouterBuilder::new()
        .node("a", &a.url())
        .node("b", &b.url())
        .health("interval", "\"1h\"")
        .start()
        .await;
    router.query("CREATE DATABASE db", None).await;
    a.stop();
    for _ in 0..4 {
        let answer = router.query("SHOW DATABASES", None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    b.stop();
    let answer = router.query("SHOW DATABASES", None).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let error = answer.error();
    assert!(
        error.starts_with("no node could answer the query"),
        "{error}"
    );
    assert!(error.contains("a: ") && error.contains("b: "), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_errors_for_a_write_come_back_as_the_node_sent_them() {
    let (a, _b, router) = two_nodes().await;
    let missing = router.write("db=nowhere", "cpu v=1 1\n").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.error(), "database not found: \"nowhere\"");

    router.query("CREATE DATABASE db", None).await;
    assert_eq!(router.write("db=db", "cpu v=1 1\n").await.status, 204);
    let conflict = router.write("db=db", "cpu v=\"text\" 2\n").await;
    assert_eq!(conflict.status, 400, "{}", conflict.body);
    assert!(
        conflict.error().contains("field type conflict"),
        "{}",
        conflict.body
    );
    let garbage = router.write("db=db", "this is not line protocol\n").await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert!(
        garbage.error().contains("unable to parse"),
        "{}",
        garbage.body
    );
    let count = a.query("SELECT count(v) FROM cpu", Some("db")).await;
    assert_eq!(
        count.pointer("/results/0/series/0/values/0/1"),
        Some(&json!(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_v2_writes_reach_both_nodes() {
    let (a, b, router) = two_nodes().await;
    router.query("CREATE DATABASE db", None).await;
    router
        .query(
            "CREATE RETENTION POLICY hot ON db DURATION 1d REPLICATION 1",
            None,
        )
        .await;

    let zipped = gzip(b"zipped value=1 1000\nzipped value=2 2000\n");
    let response = router.post_gzip("/write?db=db&precision=ms", zipped).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);

    let request = router.client.post(format!(
        "{}/api/v2/write?org=any&bucket=db/hot&precision=s",
        router.url()
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let response = request
        .body(format!("v2 value=3 {now}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{:?}", response.text().await);

    for node in [&a, &b] {
        let zipped = query_epoch(node, "SELECT value FROM zipped", "db", "ms").await;
        assert_eq!(series(&zipped)[0]["values"], json!([[1000, 1], [2000, 2]]));
        let v2 = query_epoch(node, "SELECT value FROM hot.v2", "db", "s").await;
        assert_eq!(series(&v2)[0]["values"], json!([[now, 3]]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_statement_for_a_down_node_is_answered_by_the_others_and_queued_for_it() {
    let (a, b, router) = two_nodes().await;
    b.stop();
    let answer = router.query("CREATE DATABASE later", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"results":[{"statement_id":0}]}));
    assert!(a.databases().await.contains(&"later".to_string()));
    tokio::task::block_in_place(|| b.start_again());
    let arrived = support::wait_until(Duration::from_secs(30), || async {
        b.databases().await.contains(&"later".to_string())
    })
    .await;
    assert!(arrived, "the queued statement reached b");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_error_common_to_all_nodes_is_their_answer() {
    let (_a, _b, router) = two_nodes().await;
    let answer = router
        .query(
            "CREATE RETENTION POLICY r ON nowhere DURATION 1d REPLICATION 1",
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json().pointer("/results/0/error"),
        Some(&json!("database not found: nowhere"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn write_with_consistency_all_fails_with_503_when_a_node_is_down() {
    let (a, b, router) = two_nodes().await;
    router.query("CREATE DATABASE db", None).await;
    b.stop();
    let answer = router.write("db=db&consistency=all", "cpu v=1 1\n").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.headers["retry-after"], "1");
    assert!(
        answer.error().contains("consistency \"all\""),
        "{}",
        answer.body
    );
    let answer = router.write("db=db&consistency=one", "cpu v=1 1\n").await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    let answer = router
        .write("db=db&consistency=quorum", "cpu v=1 1\n")
        .await;
    assert_eq!(answer.status, 503, "quorum of 2 is 2: {}", answer.body);
    drop(a);
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_reports_the_nodes_version() {
    let (_a, _b, router) = two_nodes().await;
    router.wait_for_health("a", true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ping = router.get("/ping").await;
    assert_eq!(ping.status, 204);
    let version = ping.headers["x-influxdb-version"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(version.starts_with("1."), "{version}");
    let verbose = router.get("/ping?verbose=true").await;
    assert_eq!(verbose.status, 200);
    assert_eq!(verbose.json(), json!({ "version": version }));
}
