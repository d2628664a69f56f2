//! The router against in-process fake nodes: what it forwards, and how it
//! behaves when a node is slow, failing, stalled or cut off mid-answer, and
//! when a client sends too much or too slowly.

mod support;

use std::time::{Duration, Instant};

use support::router::{gzip, RouterBuilder};
use support::{Behaviour, FakeNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fakes() -> (FakeNode, FakeNode) {
    (FakeNode::start(), FakeNode::start())
}

fn pair(a: &FakeNode, b: &FakeNode) -> RouterBuilder {
    RouterBuilder::new().node("a", &a.url()).node("b", &b.url())
}

#[tokio::test]
async fn write_goes_to_every_node_byte_for_byte_with_params_and_credentials() {
    let (a, b) = fakes();
    let router = pair(&a, &b).write("consistency", "\"all\"").start().await;
    let body = "cpu,host=a v=1 1\nmem,host=b v=2i 2\n";
    let request = router.client.post(format!(
        "{}/write?db=d&rp=r&precision=s&u=bob&p=pw",
        router.url()
    ));
    let response = request
        .header("authorization", "Token bob:pw")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for node in [&a, &b] {
        let writes = node.requests_to("/write");
        assert_eq!(writes.len(), 1);
        let write = &writes[0];
        assert_eq!(write.body_str(), body);
        assert_eq!(write.uri, "/write?db=d&rp=r&precision=s&u=bob&p=pw");
        assert_eq!(write.header("authorization"), Some("Basic Ym9iOnB3"));
    }
}

#[tokio::test]
async fn gzip_body_is_forwarded_compressed_as_it_came() {
    let (a, b) = fakes();
    let router = pair(&a, &b).write("consistency", "\"all\"").start().await;
    let zipped = gzip(&b"cpu v=1\n".repeat(1000));
    let response = router.post_gzip("/write?db=d", zipped.clone()).await;
    assert_eq!(response.status(), 204);
    for node in [&a, &b] {
        let write = &node.requests_to("/write")[0];
        assert_eq!(write.header("content-encoding"), Some("gzip"));
        assert_eq!(&write.body[..], &zipped[..]);
    }
}

#[tokio::test]
async fn a_slow_node_costs_at_most_the_write_timeout_and_gets_the_write_queued() {
    let (a, b) = fakes();
    b.set_behaviour(Behaviour::Slow(Duration::from_secs(3)));
    let router = pair(&a, &b).write("timeout", "\"300ms\"").start().await;
    let started = Instant::now();
    let answer = router.write("db=d&consistency=one", "cpu v=1 1\n").await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "took {took:?}"
    );

    // b now has a backlog (and fails its health checks): the next write goes
    // straight to its queue, behind the first
    let started = Instant::now();
    let answer = router.write("db=d&consistency=all", "cpu v=2 2\n").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer
            .error()
            .contains("1 of 2 nodes acknowledged and 1 queued, 2 needed; b: queued"),
        "{}",
        answer.body
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );

    b.set_behaviour(Behaviour::Ok);
    let delivered = support::wait_until(Duration::from_secs(15), || async {
        let bodies: Vec<String> = b
            .requests_to("/write")
            .iter()
            .map(|r| r.body_str())
            .collect();
        bodies.iter().any(|body| body.contains("cpu v=2 2"))
    })
    .await;
    assert!(
        delivered,
        "the queue was replayed to b: {:?} {}",
        b.requests_to("/write")
            .iter()
            .map(|r| r.body_str())
            .collect::<Vec<_>>(),
        router.get("/status").await.body
    );
    let replays: String = b
        .requests_to("/write")
        .iter()
        .skip(1)
        .map(|r| r.body_str())
        .collect();
    assert_eq!(replays.matches("cpu v=1 1").count(), 1, "{replays}");
    assert!(
        replays.find("cpu v=1 1") < replays.find("cpu v=2 2"),
        "order kept: {replays}"
    );
    assert_eq!(a.write_count(), 2);
}

#[tokio::test]
async fn node_500_fails_a_write_and_a_read_fails_over_to_the_next_node() {
    let (a, b) = fakes();
    a.set_behaviour(Behaviour::Status(500, "{\"error\":\"engine on fire\"}"));
    let router = pair(&a, &b).start().await;
    let answer = router.write("db=d&consistency=all", "cpu v=1\n").await;
    assert_eq!(answer.status, 503);
    assert!(
        answer.error().contains(
            "a: answered 500 Internal Server Error: {\"error\":\"engine on fire\"}; queued"
        ),
        "{}",
        answer.body
    );

    for _ in 0..3 {
        let answer = router.get("/query?q=SHOW+DATABASES").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert!(!b.requests_to("/query").is_empty());

    b.set_behaviour(Behaviour::Status(503, "busy"));
    let answer = router.get("/query?q=SHOW+DATABASES").await;
    assert_eq!(answer.status, 502);
    assert!(
        answer.error().contains("a: answered 500") && answer.error().contains("b: answered 503"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_4xx_from_a_node_is_relayed_unchanged() {
    let (a, b) = fakes();
    a.set_behaviour(Behaviour::Status(
        401,
        "{\"error\":\"authorization failed\"}",
    ));
    b.set_behaviour(Behaviour::Status(
        401,
        "{\"error\":\"authorization failed\"}",
    ));
    let router = pair(&a, &b).start().await;
    let answer = router.write("db=d", "cpu v=1\n").await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, "{\"error\":\"authorization failed\"}");
    let answer = router.get("/query?q=SHOW+DATABASES").await;
    assert_eq!(answer.status, 401);
}

#[tokio::test]
async fn a_node_reset_mid_answer_breaks_only_that_answer() {
    let (a, b) = fakes();
    a.set_behaviour(Behaviour::ResetMidBody);
    b.set_behaviour(Behaviour::ResetMidBody);
    let router = pair(&a, &b).start().await;
    let response = router
        .client
        .get(format!("{}/query?q=SELECT+*+FROM+cpu", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "headers were already sent");
    assert!(
        response.text().await.is_err(),
        "the client must see a broken body, not a short one"
    );
    a.set_behaviour(Behaviour::Ok);
    b.set_behaviour(Behaviour::Ok);
    assert_eq!(router.get("/query?q=SHOW+DATABASES").await.status, 200);
}

#[tokio::test]
async fn reads_avoid_a_node_the_health_check_found_stalled() {
    let (a, b) = fakes();
    a.set_behaviour(Behaviour::Stall);
    let router = pair(&a, &b).start().await;
    router.wait_for_health("a", false).await;
    b.clear();
    for _ in 0..3 {
        assert_eq!(router.get("/query?q=SHOW+DATABASES").await.status, 200);
    }
    assert_eq!(b.requests_to("/query").len(), 3);
    let answer = router.write("db=d&consistency=all", "cpu v=1\n").await;
    assert_eq!(answer.status, 503);
    assert!(answer.error().contains("a: queued"), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_go_to_the_node_with_fewest_requests_in_flight() {
    let (a, b) = fakes();
    let router = pair(&a, &b).health("interval", "\"1h\"").start().await;
    // the one health check each node gets (at start) must pass before they turn slow
    let checked =
        || async { !a.requests_to("/ping").is_empty() && !b.requests_to("/ping").is_empty() };
    assert!(support::wait_until(Duration::from_secs(2), checked).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.set_behaviour(Behaviour::Slow(Duration::from_millis(1500)));
    b.set_behaviour(Behaviour::Slow(Duration::from_millis(1500)));
    let slow = {
        let url = format!("{}/query?q=SHOW+DATABASES", router.url());
        tokio::spawn(async move { reqwest::get(url).await.unwrap().status() })
    };
    assert!(
        support::wait_until(Duration::from_secs(2), || async {
            a.requests_to("/query").len() + b.requests_to("/query").len() >= 1
        })
        .await
    );
    let busy_is_a = a.requests_to("/query").len() == 1;
    let idle = if busy_is_a { &b } else { &a };
    idle.set_behaviour(Behaviour::Ok);
    for _ in 0..3 {
        assert_eq!(router.get("/query?q=SHOW+DATABASES").await.status, 200);
    }
    assert_eq!(
        idle.requests_to("/query").len(),
        3,
        "every read while one is in flight goes to the idle node"
    );
    assert_eq!(slow.await.unwrap(), 200);
}

#[tokio::test]
async fn node_modes_decide_who_gets_reads_writes_and_admin() {
    let (rw, wo) = fakes();
    let (ro, off) = fakes();
    let router = RouterBuilder::new()
        .node("rw", &rw.url())
        .node_mode("wo", &wo.url(), "write-only")
        .node_mode("ro", &ro.url(), "read-only")
        .node_mode("off", &off.url(), "off")
        .write("consistency", "\"all\"")
        .health("interval", "\"1h\"")
        .start()
        .await;
    assert_eq!(router.write("db=d", "cpu v=1\n").await.status, 204);
    assert_eq!(
        (
            rw.write_count(),
            wo.write_count(),
            ro.write_count(),
            off.write_count()
        ),
        (1, 1, 0, 0)
    );
    for _ in 0..4 {
        assert_eq!(router.get("/query?q=SHOW+DATABASES").await.status, 200);
    }
    assert_eq!(
        wo.requests_to("/query").len() + off.requests_to("/query").len(),
        0
    );
    assert_eq!(
        rw.requests_to("/query").len() + ro.requests_to("/query").len(),
        4
    );
    assert_eq!(router.query("CREATE DATABASE d", None).await.status, 200);
    for node in [&rw, &wo, &ro] {
        assert!(node
            .requests_to("/query")
            .iter()
            .any(|r| r.param("q").as_deref() == Some("CREATE DATABASE d")));
    }
    assert!(
        off.requests().iter().all(|r| r.path() == "/ping"),
        "an off node gets nothing but health checks"
    );
}

#[tokio::test]
async fn admin_statement_goes_to_every_node_with_the_clients_form_and_credentials() {
    let (a, b) = fakes();
    let router = pair(&a, &b).start().await;
    let request = router
        .client
        .post(format!("{}/query?u=admin&p=secret", router.url()));
    let response = request
        .form(&[(
            "q",
            "CREATE USER \"x\" WITH PASSWORD 'p;w'; GRANT ALL TO \"x\"",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "{\"results\":[{\"statement_id\":0}]}"
    );
    for node in [&a, &b] {
        let query = &node.requests_to("/query")[0];
        assert_eq!(
            query.param("q").as_deref(),
            Some("CREATE USER \"x\" WITH PASSWORD 'p;w'; GRANT ALL TO \"x\"")
        );
        assert_eq!(query.param("u").as_deref(), Some("admin"));
        assert_eq!(query.method, "POST");
    }
}

#[tokio::test]
async fn request_errors_use_influxdb_shape_and_status() {
    let (a, b) = fakes();
    let router = pair(&a, &b).start().await;
    let cases = [
        (
            router.write("", "cpu v=1\n").await,
            400,
            "database is required",
        ),
        (
            router.write("db=d&precision=y", "cpu v=1\n").await,
            400,
            "invalid precision \"y\": use n, ns, u, us, ms, s, m or h",
        ),
        (
            router.get("/query").await,
            400,
            "missing required parameter \"q\"",
        ),
        (router.get("/nope").await, 404, "not found"),
        (router.get("/write?db=d").await, 405, "method not allowed"),
    ];
    for (answer, status, error) in cases {
        assert_eq!((answer.status, answer.error()), (status, error.to_string()));
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    let mixed = router
        .query("SELECT * FROM cpu; DROP DATABASE d", None)
        .await;
    assert_eq!(mixed.status, 400);
    assert!(mixed.error().starts_with("mixing read statements (\"SELECT * FROM cpu\") and administrative statements (\"DROP DATABASE d\")"), "{}", mixed.body);
    assert!(
        a.requests_to("/query").is_empty() && a.write_count() == 0,
        "nothing reached a node"
    );
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_or_without_a_length() {
    let (a, b) = fakes();
    let router = pair(&a, &b)
        .server("max_body_size", "\"1KiB\"")
        .start()
        .await;
    let answer = router.write("db=d", "x".repeat(1025)).await;
    assert_eq!(answer.status, 413);
    assert!(
        answer
            .error()
            .starts_with("request body too large: the limit is 1024 bytes"),
        "{}",
        answer.body
    );
    let stream =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 400])));
    let answer = router
        .write("db=d", reqwest::Body::wrap_stream(stream))
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(router.write("db=d", "x".repeat(1024)).await.status, 204);
    assert_eq!(a.write_count(), 1);
}

#[tokio::test]
async fn gzip_bomb_is_413_and_broken_gzip_is_400() {
    let (a, b) = fakes();
    let router = pair(&a, &b)
        .server("max_body_size", "\"1MiB\"")
        .start()
        .await;
    let bomb = gzip(&vec![b'a'; 64 << 20]);
    assert!(
        bomb.len() < 1 << 20,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let response = router.post_gzip("/write?db=d", bomb).await;
    assert_eq!(response.status(), 413);
    let response = router
        .post_gzip("/write?db=d", b"not gzip at all".to_vec())
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("invalid gzip body"));
    assert_eq!(a.write_count() + b.write_count(), 0);
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_body_gets_408() {
    let (a, b) = fakes();
    let router = pair(&a, &b)
        .server("read_timeout", "\"300ms\"")
        .start()
        .await;
    let mut stream = TcpStream::connect(router.router.addr()).await.unwrap();
    let head = "POST /write?db=d HTTP/1.1\r\nHost: r\r\nContent-Length: 100\r\n\r\ncpu v=1";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received within 300ms"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(a.write_count(), 0);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (a, b) = fakes();
    let router = pair(&a, &b).server("max_connections", "1").start().await;
    let holder = TcpStream::connect(router.router.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = format!("{}/ping", router.url());
    let waiting = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served while the cap was reached"
    );
    drop(holder);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_ones() {
    let (a, b) = fakes();
    a.set_behaviour(Behaviour::Slow(Duration::from_millis(800)));
    b.set_behaviour(Behaviour::Slow(Duration::from_millis(800)));
    let router = pair(&a, &b).health("interval", "\"1h\"").start().await;
    let addr = router.router.addr();
    let url = format!("{}/write?db=d", router.url());
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .body("cpu v=1\n")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(
        support::wait_until(Duration::from_secs(2), || async {
            a.write_count() + b.write_count() > 0
        })
        .await
    );
    let started = Instant::now();
    router.router.shutdown().await;
    assert_eq!(in_flight.await.unwrap().unwrap(), 204);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "shutdown waited for the request"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_chunked_answer_streams_through_before_the_node_finishes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 || !buf.starts_with(b"GET /query") {
                    let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                    return;
                }
                let first = "{\"results\":[{\"statement_id\":0,\"partial\":true}]}\n";
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n", first.len());
                let _ = socket.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let last = "{\"results\":[{\"statement_id\":0}]}\n";
                let _ = socket
                    .write_all(format!("{:x}\r\n{last}\r\n0\r\n\r\n", last.len()).as_bytes())
                    .await;
            });
        }
    });
    let router = RouterBuilder::new()
        .node("slowpoke", &node_url)
        .health("interval", "\"1h\"")
        .start()
        .await;
    let started = Instant::now();
    let mut response = router
        .client
        .get(format!(
            "{}/query?q=SELECT+*+FROM+m&chunked=true",
            router.url()
        ))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "first chunk after {:?}",
        started.elapsed()
    );
    assert_eq!(
        &first[..],
        b"{\"results\":[{\"statement_id\":0,\"partial\":true}]}\n"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(rest, b"{\"results\":[{\"statement_id\":0}]}\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_waits_for_node_sends_of_a_client_that_went_away() {
    let (a, b) = fakes();
    a.set_behaviour(Behaviour::Slow(Duration::from_millis(800)));
    b.set_behaviour(Behaviour::Slow(Duration::from_millis(800)));
    let router = pair(&a, &b).health("interval", "\"1h\"").start().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("{}/write?db=d", router.url()))
        .body("cpu v=1\n")
        .send()
        .await;
    assert!(
        gone.is_err(),
        "the client gave up before the nodes answered"
    );
    let started = Instant::now();
    router.router.shutdown().await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "shutdown returned after {:?}",
        started.elapsed()
    );
    assert_eq!((a.write_count(), b.write_count()), (1, 1));
}
