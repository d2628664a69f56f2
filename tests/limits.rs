//! `[limits]` end to end: the router in-process in front of fake nodes,
//! clients on two loopback addresses (127.0.0.1 and 127.0.0.2, both local
//! on Linux) so that each is a client address of its own.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use support::router::{gzip, RouterBuilder, TestRouter};
use support::{Behaviour, FakeNode};

const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const CLIENT_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A client whose connections come from `address`.
fn client_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .build()
        .expect("client")
}

/// Status, headers and body of one answer.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn error(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        json["error"].as_str().expect("an error").to_string()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("router answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.expect("body");
    Answer {
        status,
        retry_after,
        body,
    }
}

async fn write(
    client: &reqwest::Client,
    router: &TestRouter,
    params: &str,
    body: Vec<u8>,
) -> Answer {
    send(
        client
            .post(format!("{}/write?{params}", router.url()))
            .body(body),
    )
    .await
}

/// `size` bytes of line protocol, in lines of 100 bytes.
fn lines(size: usize) -> Vec<u8> {
    let line = format!("cpu,host=a value={}\n", "1".repeat(100 - 18));
    assert_eq!(line.len(), 100);
    line.repeat(size / 100).into_bytes()
}

/// Body bytes of every `/write` the node received.
fn received_bytes(node: &FakeNode) -> usize {
    node.requests_to("/write")
        .iter()
        .map(|r| r.body.len())
        .sum()
}

/// The count of refusals by `limit`, asked from an address of its own.
async fn limited_total(router: &TestRouter, limit: &str) -> u64 {
    let monitor = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    let metrics = send(monitor.get(format!("{}/metrics", router.url())))
        .await
        .body;
    let series = format!("influxdb_router_limited_total{{limit=\"{limit}\"}} ");
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test]
async fn a_client_over_its_request_limit_gets_429_and_another_client_is_not_slowed() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("client_requests", "\"5/s\"")
        .start()
        .await;
    let (a, b) = (client_from(CLIENT_A), client_from(CLIENT_B));
    let mut refused = Vec::new();
    for _ in 0..20 {
        // headers cannot make a client someone else
        let request = a
            .post(format!("{}/write?db=db", router.url()))
            .header("x-forwarded-for", "127.0.0.2")
            .header("x-real-ip", "127.0.0.2")
            .body("cpu value=1\n");
        let answer = send(request).await;
        if answer.status == 429 {
            refused.push(answer);
        } else {
            assert_eq!(answer.status, 204, "{}", answer.body);
        }
    }
    assert!(refused.len() >= 10, "only {} of 20 refused", refused.len());
    let first = &refused[0];
    assert_eq!(first.retry_after.as_deref(), Some("1"));
    let error = first.error();
    assert!(
        error.starts_with(
            "over limits.client_requests: client 127.0.0.1 may send 5 requests per second"
        ),
        "{error}"
    );
    assert_eq!(
        node.write_count(),
        20 - refused.len(),
        "a refused write was forwarded"
    );

    // B has its own bucket: its burst goes through at once
    let started = Instant::now();
    for _ in 0..5 {
        let answer = write(&b, &router, "db=db", b"cpu value=2\n".to_vec()).await;
        assert_eq!(answer.status, 204, "{}", answer.body);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "client B took {took:?} for 5 writes"
    );
    assert_eq!(
        limited_total(&router, "client_requests").await,
        refused.len() as u64
    );
}

#[tokio::test]
async fn a_bytes_limit_holds_within_ten_percent_over_ten_seconds() {
    const RATE: usize = 256 << 10;
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("client_bytes", "\"256KiB/s\"")
        .start()
        .await;
    let client = client_from(CLIENT_A);
    let body = lines(16 << 10);
    let until = Instant::now() + Duration::from_millis(11_500);
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, body) = (client.clone(), router.url(), body.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                while Instant::now() < until {
                    let answer =
                        send(client.post(format!("{url}/write?db=db")).body(body.clone())).await;
                    match answer.status {
                        204 => {}
                        429 => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        other => panic!("unexpected {other}: {}", answer.body),
                    }
                }
                refused
            })
        })
        .collect();
    // past the first second's burst, measure ten seconds of refill
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (start, before) = (Instant::now(), received_bytes(&node));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (elapsed, after) = (start.elapsed(), received_bytes(&node));
    let mut refused = 0;
    for writer in writers {
        refused += writer.await.unwrap();
    }
    let rate = (after - before) as f64 / elapsed.as_secs_f64();
    let ratio = rate / RATE as f64;
    eprintln!("{rate:.0} bytes/s reached the node ({ratio:.3} of the limit), {refused} refusals");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{rate:.0} bytes/s reached the node against a limit of {RATE} ({ratio:.3})"
    );
    assert!(refused > 0, "the writers were never refused");
}

#[tokio::test]
async fn gzip_bodies_count_their_decoded_size() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("client_bytes", "\"100KiB/s\"")
        .start()
        .await;
    let body = gzip(&lines(60 << 10));
    assert!(body.len() < 10 << 10, "{} bytes compressed", body.len());
    let client = client_from(CLIENT_A);
    let post = || {
        client
            .post(format!("{}/write?db=db", router.url()))
            .header("content-encoding", "gzip")
            .body(body.clone())
    };
    assert_eq!(send(post()).await.status, 204);
    let answer = send(post()).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    let error = answer.error();
    assert!(error.starts_with("over limits.client_bytes: client 127.0.0.1 may send 102400 body bytes per second (this body: 61400 bytes)"), "{error}");
    assert_eq!(node.write_count(), 1);
}

#[tokio::test]
async fn users_are_limited_each_on_their_own_whatever_the_way_they_authenticate() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("user_bytes", "\"40KiB/s\"")
        .start()
        .await;
    let client = client_from(CLIENT_A);
    let body = lines(36 << 10);
    let url = format!("{}/write?db=db", router.url());
    let alice = write(&client, &router, "db=db&u=alice&p=secret", body.clone()).await;
    assert_eq!(alice.status, 204, "{}", alice.body);
    // alice again, now with a Token header: the same bucket
    let token = send(
        client
            .post(&url)
            .header("authorization", "Token alice:secret")
            .body(body.clone()),
    )
    .await;
    assert_eq!(token.status, 429, "{}", token.body);
    let error = token.error();
    assert!(
        error.starts_with(
            "over limits.user_bytes: user \"alice\" may send 40960 body bytes per second"
        ),
        "{error}"
    );
    // bob (Basic auth), someone naming alice without her password, and
    // anonymous writes are not alice
    let bob = send(
        client
            .post(&url)
            .basic_auth("bob", Some("pw"))
            .body(body.clone()),
    )
    .await;
    assert_eq!(bob.status, 204, "{}", bob.body);
    let spoof = write(&client, &router, "db=db&u=alice&p=guess", body.clone()).await;
    assert_eq!(spoof.status, 204, "{}", spoof.body);
    let anonymous = write(&client, &router, "db=db", body.clone()).await;
    assert_eq!(anonymous.status, 204, "{}", anonymous.body);
    assert_eq!(node.write_count(), 4);
    assert_eq!(limited_total(&router, "user_bytes").await, 1);
}

#[tokio::test]
async fn databases_matching_one_glob_share_its_limit() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits(
            "database_bytes",
            "{ \"telemetry*\" = \"40KiB/s\", \"*\" = \"1MiB/s\" }",
        )
        .start()
        .await;
    let (a, b) = (client_from(CLIENT_A), client_from(CLIENT_B));
    let body = lines(36 << 10);
    assert_eq!(
        write(&a, &router, "db=telemetry_a", body.clone())
            .await
            .status,
        204
    );
    // another database, another client: the same glob, the same bucket
    let answer = write(&b, &router, "db=telemetry_b", body.clone()).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    let error = answer.error();
    assert!(error.starts_with("over limits.database_bytes: databases matching \"telemetry*\" may receive 40960 body bytes per second"), "{error}");
    // "*" has a bucket of its own
    assert_eq!(
        write(&b, &router, "db=other", body.clone()).await.status,
        204
    );
    assert_eq!(node.write_count(), 2);
    assert_eq!(limited_total(&router, "database_bytes").await, 1);
}

#[tokio::test]
async fn queries_are_bounded_per_client_until_their_answers_have_streamed() {
    let node = FakeNode::with_behaviour(Behaviour::SlowQueryBody(Duration::from_secs(4)));
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("client_queries", "2")
        .start()
        .await;
    let (a, b) = (client_from(CLIENT_A), client_from(CLIENT_B));
    let query =
        |client: &reqwest::Client| client.get(format!("{}/query?q=SHOW+DATABASES", router.url()));
    // two answers whose heads have come and whose bodies have not
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = query(&a).send().await.expect("router answers");
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    node.set_behaviour(Behaviour::Ok);
    let third = send(query(&a)).await;
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(third.retry_after.as_deref(), Some("1"));
    let error = third.error();
    assert!(
        error.starts_with(
            "over limits.client_queries: client 127.0.0.1 may run 2 queries at a time"
        ),
        "{error}"
    );
    // another client's queries and this client's writes are not held back
    assert_eq!(send(query(&b)).await.status, 200);
    assert_eq!(
        write(&a, &router, "db=db", b"cpu value=1\n".to_vec())
            .await
            .status,
        204
    );
    for response in open {
        assert_eq!(
            response.text().await.unwrap(),
            support::fake_node::OK_QUERY_BODY
        );
    }
    let freed = support::wait_until(Duration::from_secs(5), || async {
        send(query(&a)).await.status == 200
    })
    .await;
    assert!(freed, "the finished answers did not give their places back");
    assert!(limited_total(&router, "client_queries").await >= 1);
}

#[tokio::test]
async fn without_limits_nothing_is_ever_refused() {
    let node = FakeNode::start();
    let router = RouterBuilder::new().node("a", &node.url()).start().await;
    assert!(router.router.shared().limiter.is_none());
    let client = client_from(CLIENT_A);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), router.url());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..50 {
                    let write = client
                        .post(format!("{url}/write?db=db"))
                        .body(lines(64 << 10));
                    statuses.push(send(write).await.status);
                    let read = client.get(format!("{url}/query?q=SHOW+DATABASES"));
                    statuses.push(send(read).await.status);
                }
                statuses
            })
        })
        .collect();
    for task in tasks {
        let statuses = task.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 204 || *s == 200),
            "{statuses:?}"
        );
    }
    assert_eq!(node.write_count(), 400);
    for limit in [
        "client_requests",
        "client_bytes",
        "user_bytes",
        "database_bytes",
        "client_queries",
    ] {
        assert_eq!(limited_total(&router, limit).await, 0, "{limit}");
    }
}

/// A snappy `WriteRequest` of `series` series with long label values
/// (which compress well), and its decompressed size.
fn remote_write(series: usize) -> (Vec<u8>, usize) {
    use influxdb_router::protocol::prom::messages::{LabelPair, Sample, TimeSeries, WriteRequest};
    use prost::Message;
    let timeseries = (0..series)
        .map(|i| TimeSeries {
            labels: vec![
                LabelPair::new("__name__", "up"),
                LabelPair::new("job", format!("{i:04}{}", "x".repeat(80))),
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp_ms: 1_700_000_000_000,
            }],
        })
        .collect();
    let encoded = WriteRequest { timeseries }.encode_to_vec();
    let compressed = influxdb_router::protocol::prom::snappy::compress(&encoded);
    (compressed, encoded.len())
}

#[tokio::test]
async fn prometheus_remote_writes_count_decompressed_and_remote_reads_are_queries() {
    let node = FakeNode::with_behaviour(Behaviour::SlowQueryBody(Duration::from_secs(3)));
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("client_bytes", "\"100KiB/s\"")
        .limits("client_queries", "1")
        .start()
        .await;
    let client = client_from(CLIENT_A);
    let (body, decoded) = remote_write(600);
    assert!(
        decoded > 60_000 && body.len() < 20_000,
        "{decoded} {}",
        body.len()
    );
    let post = || {
        client
            .post(format!("{}/api/v1/prom/write?db=prom", router.url()))
            .body(body.clone())
    };
    // forwarded (the fake node does not know the path: its 404 comes back)
    assert_eq!(send(post()).await.status, 404);
    let refused = send(post()).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let expected = format!("(this body: {decoded} bytes)");
    assert!(refused.error().contains(&expected), "{}", refused.error());
    assert_eq!(node.requests_to("/api/v1/prom/write").len(), 1);

    // a remote read holds the client's one query place while it streams
    let read = || {
        client
            .post(format!("{}/api/v1/prom/read?db=prom", router.url()))
            .body(vec![0u8])
    };
    let open = read().send().await.expect("router answers");
    assert_eq!(open.status(), 200);
    node.set_behaviour(Behaviour::Ok);
    for request in [
        read(),
        client.get(format!("{}/query?q=SHOW+DATABASES", router.url())),
    ] {
        let answer = send(request).await;
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert!(
            answer.error().starts_with("over limits.client_queries"),
            "{}",
            answer.error()
        );
    }
    open.text().await.unwrap();
    let freed = support::wait_until(Duration::from_secs(5), || async {
        send(client.get(format!("{}/query?q=SHOW+DATABASES", router.url())))
            .await
            .status
            == 200
    })
    .await;
    assert!(
        freed,
        "the finished remote read did not give its place back"
    );
}

#[test]
fn bad_limits_are_refused_before_listening_naming_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        "[limits]\nclient_requests = \"2000\"\nuser_bytes = \"lots\"\ndatabase_bytes = { \"db[\" = \"1MiB/s\" }\nclient_queries = -1\nrequests = \"1/s\"\n\
         [[cluster]]\nname = \"main\"\nnodes = [{ name = \"a\", url = \"http://127.0.0.1:8086\" }]\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_influxdb-router"))
        .args(["check-config", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "limits.requests: unknown key",
        "limits.client_requests: expected a rate per second like \"2000/s\", got \"2000\"",
        "limits.user_bytes: expected a rate per second like \"64MiB/s\"",
        "limits.database_bytes.\"db[\": bad glob",
        "limits.client_queries: expected a whole number from 1",
    ] {
        assert!(stderr.contains(key), "{key:?} not in:\n{stderr}");
    }
}

#[tokio::test]
async fn a_request_refused_before_its_body_is_read_still_gets_its_429() {
    let node = FakeNode::start();
    let router = RouterBuilder::new()
        .node("a", &node.url())
        .limits("client_requests", "\"1/s\"")
        .start()
        .await;
    let client = client_from(CLIENT_A);
    let body = lines(8 << 20);
    assert_eq!(
        write(&client, &router, "db=db", body.clone()).await.status,
        204
    );
    for _ in 0..3 {
        let answer = write(&client, &router, "db=db", body.clone()).await;
        assert_eq!(answer.status, 429, "{}", answer.body);
    }
    assert_eq!(node.write_count(), 1);
}
