//! Unit tests of the client: connection reuse by the pool, replaced
//! connections, and how a refused connection is reported.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// A node on 127.0.0.1 that answers every request 204 (closing the
/// connection after each answer unless `keep_alive`), and counts the
/// connections it accepted.
async fn fake_node(keep_alive: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    let mut response = Response::new(http_body_util::Empty::<Bytes>::new());
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, accepted)
}

async fn write(node: &Arc<Node>) -> StatusCode {
    let request = node.request(Method::POST, "/write?db=x");
    let response = node
        .send(
            RequestKind::Write,
            request,
            Payload::from("cpu v=1\n"),
            Some(Duration::from_secs(5)),
        )
        .await
        .expect("the node answers");
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (url, accepted) = fake_node(true).await;
    let node = crate::node::test_node(&url, dir.path());
    for _ in 0..50 {
        assert_eq!(write(&node).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(node.pool().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_open_a_connection_each_and_then_reuse_them() {
    let dir = tempfile::tempdir().unwrap();
    let (url, accepted) = fake_node(true).await;
    let node = crate::node::test_node(&url, dir.path());
    let writes = (0..16).map(|_| write(&node));
    for status in futures_util::future::join_all(writes).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!((1..=16).contains(&opened), "{opened} connections");
    for _ in 0..50 {
        assert_eq!(write(&node).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), opened, "no new connection");
}

#[tokio::test]
async fn connections_the_node_closes_are_replaced_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let (url, accepted) = fake_node(false).await;
    let node = crate::node::test_node(&url, dir.path());
    for _ in 0..20 {
        assert_eq!(write(&node).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn a_refused_connection_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let node = crate::node::test_node(&url, dir.path());
    let request = node.request(Method::GET, "/ping");
    let error = node
        .send(
            RequestKind::Health,
            request,
            Payload::default(),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(node.pool().is_empty());
}
