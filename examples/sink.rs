//! A minimal write sink for load tests: reads every request body whole and
//! answers 204 (`/ping` included), like an InfluxDB node that is never the
//! bottleneck.
//!
//! `cargo run --release --example sink -- 127.0.0.1:18001 [more addresses…]`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addrs: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if addrs.is_empty() {
        eprintln!("usage: sink ADDR [ADDR…]   e.g. sink 127.0.0.1:18001 127.0.0.1:18002");
        std::process::exit(2);
    }
    let tasks: Vec<_> = addrs.into_iter().map(|a| tokio::spawn(serve(a))).collect();
    for task in tasks {
        if let Ok(Err(e)) = task.await {
            eprintln!("sink: {e}");
        }
    }
}
