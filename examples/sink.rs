//! A minimal node for load tests: like an InfluxDB node that is never the
//! bottleneck. On every address it reads each request body whole and answers
//! 204 (`/ping` and `/write`), or, for `/query`, a fixed result of 100 rows
//! in InfluxDB's JSON shape. Addresses given after `--stall` accept
//! connections and read requests but never answer: a node that hangs.
//!
//! `cargo run --release --example sink -- 127.0.0.1:18001 [more…] [--stall 127.0.0.1:18009 …]`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The answer to every `/query`: one series, 100 rows of (time, value).
fn query_answer() -> Bytes {
    static ANSWER: OnceLock<Bytes> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let mut rows = String::new();
            for i in 0..100 {
                if i > 0 {
                    rows.push(',');
                }
                rows.push_str(&format!(
                    "[\"2026-11-26T00:{:02}:{:02}Z\",{}.5]",
                    i / 60,
                    i % 60,
                    i
                ));
            }
            Bytes::from(format!(
                "{{\"results\":[{{\"statement_id\":0,\"series\":[{{\"name\":\"cpu\",\
                 \"columns\":[\"time\",\"usage_idle\"],\"values\":[{rows}]}}]}}]}}\n"
            ))
        })
        .clone()
}

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let is_query = request.uri().path() == "/query";
    let _ = request.into_body().collect().await;
    if is_query {
        let mut response = Response::new(Full::new(query_answer()));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

async fn stall(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    std::future::pending::<()>().await;
    unreachable!("a pending future never completes")
}

async fn serve(addr: SocketAddr, stalled: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        tokio::spawn(async move {
            let builder = http1::Builder::new();
            let _ = match stalled {
                false => builder.serve_connection(io, service_fn(answer)).await,
                true => builder.serve_connection(io, service_fn(stall)).await,
            };
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut addrs: Vec<(SocketAddr, bool)> = Vec::new();
    let mut stalled = false;
    for arg in std::env::args().skip(1) {
        if arg == "--stall" {
            stalled = true;
            continue;
        }
        match arg.parse() {
            Ok(addr) => addrs.push((addr, stalled)),
            Err(_) => {
                eprintln!("sink: not an address: {arg:?}");
                std::process::exit(2);
            }
        }
    }
    if addrs.is_empty() {
        eprintln!(
            "usage: sink ADDR [ADDR…] [--stall ADDR…]   e.g. sink 127.0.0.1:18001 127.0.0.1:18002"
        );
        std::process::exit(2);
    }
    let tasks: Vec<_> = addrs
        .into_iter()
        .map(|(addr, stalled)| tokio::spawn(serve(addr, stalled)))
        .collect();
    for task in tasks {
        if let Ok(Err(e)) = task.await {
            eprintln!("sink: {e}");
        }
    }
}
