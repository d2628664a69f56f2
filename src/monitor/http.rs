//! Client-side HTTP metrics: requests by endpoint and status class, their
//! latency, and the bytes and lines that come in and go out.
//!
//! Every handle is registered once, when the router starts, in small fixed
//! arrays indexed by [`Endpoint`] and [`StatusClass`]: counting a request is
//! two array lookups and a few atomic adds, with no label strings, hashing or
//! allocation.

use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Histogram};

use super::{names, Registrar};

/// The endpoints requests are counted by (a fixed set: never a client's path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Write,
    WriteV2,
    Query,
    PromWrite,
    PromRead,
    Ping,
    Health,
    Status,
    Metrics,
    /// Anything else (answered 404 or 405).
    Other,
}

impl Endpoint {
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Write,
        Endpoint::WriteV2,
        Endpoint::Query,
        Endpoint::PromWrite,
        Endpoint::PromRead,
        Endpoint::Ping,
        Endpoint::Health,
        Endpoint::Status,
        Endpoint::Metrics,
        Endpoint::Other,
    ];

    /// The endpoint of a request path.
    pub fn of(path: &str) -> Endpoint {
        match path {
            "/write" => Endpoint::Write,
            "/api/v2/write" => Endpoint::WriteV2,
            "/query" => Endpoint::Query,
            "/api/v1/prom/write" => Endpoint::PromWrite,
            "/api/v1/prom/read" => Endpoint::PromRead,
            "/ping" => Endpoint::Ping,
            "/health" => Endpoint::Health,
            "/status" => Endpoint::Status,
            "/metrics" => Endpoint::Metrics,
            _ => Endpoint::Other,
        }
    }

    /// The `endpoint` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Write => "write",
            Endpoint::WriteV2 => "write_v2",
            Endpoint::Query => "query",
            Endpoint::PromWrite => "prom_write",
            Endpoint::PromRead => "prom_read",
            Endpoint::Ping => "ping",
            Endpoint::Health => "health",
            Endpoint::Status => "status",
            Endpoint::Metrics => "metrics",
            Endpoint::Other => "other",
        }
    }
}

/// `2xx` to `5xx`: the `status` label value of a response.
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The index into [`STATUS_CLASSES`] of `status` (a final answer is never
/// `1xx`: hyper answers `Expect: 100-continue` itself).
fn class_index(status: http::StatusCode) -> usize {
    (usize::from(status.as_u16() / 100)).clamp(2, 5) - 2
}

/// The handles of the client-side metrics.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: [[Counter; STATUS_CLASSES.len()]; Endpoint::ALL.len()],
    duration: [Histogram; Endpoint::ALL.len()],
    received: [Counter; Endpoint::ALL.len()],
    sent: [Counter; Endpoint::ALL.len()],
    lines: Counter,
}

impl HttpMetrics {
    pub(super) fn register(r: &Registrar<'_>) -> HttpMetrics {
        let endpoint = |i: usize| [("endpoint", Endpoint::ALL[i].as_str())];
        HttpMetrics {
            requests: std::array::from_fn(|e| {
                std::array::from_fn(|c| {
                    let labels = [
                        ("endpoint", Endpoint::ALL[e].as_str()),
                        ("status", STATUS_CLASSES[c]),
                    ];
                    r.counter(names::HTTP_REQUESTS, &labels)
                })
            }),
            duration: std::array::from_fn(|e| r.histogram(names::HTTP_DURATION, &endpoint(e))),
            received: std::array::from_fn(|e| r.counter(names::HTTP_RECEIVED, &endpoint(e))),
            sent: std::array::from_fn(|e| r.counter(names::HTTP_SENT, &endpoint(e))),
            lines: r.counter(names::WRITE_LINES, &[]),
        }
    }

    /// Counts one answered request and how long it took to answer.
    pub fn answered(&self, endpoint: Endpoint, status: http::StatusCode, took: Duration) {
        let e = endpoint as usize;
        self.requests[e][class_index(status)].increment(1);
        self.duration[e].record(took.as_secs_f64());
    }

    /// Counts a request body.
    pub fn received(&self, endpoint: Endpoint, bytes: u64) {
        self.received[endpoint as usize].increment(bytes);
    }

    /// Counts response body bytes sent now.
    pub fn sent(&self, endpoint: Endpoint, bytes: u64) {
        self.sent[endpoint as usize].increment(bytes);
    }

    /// The counter of response bytes of `endpoint`, for bodies that stream.
    pub fn sent_counter(&self, endpoint: Endpoint) -> Counter {
        self.sent[endpoint as usize].clone()
    }

    /// Counts the lines of an uncompressed write body ([`count_lines`], or
    /// [`lines_of`] the newlines counted as it arrived).
    pub fn write_lines_counted(&self, lines: u64) {
        self.lines.increment(lines);
    }
}

/// Lines in a body: its newlines, plus one for a last line without one.
///
/// Comment and blank lines count too: this is a cheap measure of volume
/// (a SIMD newline count, several GB/s), not a parse.
pub fn count_lines(chunks: &[Bytes]) -> u64 {
    let newlines: usize = chunks
        .iter()
        .map(|chunk| memchr::memchr_iter(b'\n', chunk).count())
        .sum();
    lines_of(newlines as u64, chunks)
}

/// The lines of a body of `chunks` that holds `newlines` newlines.
pub fn lines_of(newlines: u64, chunks: &[Bytes]) -> u64 {
    let unterminated = chunks
        .iter()
        .rev()
        .find(|c| !c.is_empty())
        .is_some_and(|last| !last.ends_with(b"\n"));
    newlines + u64::from(unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect()
    }

    #[test]
    fn lines_are_newlines_plus_an_unterminated_last_line() {
        assert_eq!(count_lines(&chunks(&[])), 0);
        assert_eq!(count_lines(&chunks(&["m v=1"])), 1);
        assert_eq!(count_lines(&chunks(&["m v=1\n"])), 1);
        assert_eq!(count_lines(&chunks(&["m v=1\nm v=2"])), 2);
        assert_eq!(count_lines(&chunks(&["m v=1\nm v", "=2\n", ""])), 2);
        assert_eq!(count_lines(&chunks(&["m v=1\nm v", "=2", ""])), 2);
    }

    #[test]
    fn every_status_falls_in_its_class() {
        let class =
            |code: u16| STATUS_CLASSES[class_index(http::StatusCode::from_u16(code).unwrap())];
        assert_eq!(class(204), "2xx");
        assert_eq!(class(307), "3xx");
        assert_eq!(class(404), "4xx");
        assert_eq!(class(503), "5xx");
        assert_eq!(class(599), "5xx");
    }

    #[test]
    fn paths_map_to_a_fixed_set_of_endpoints() {
        assert_eq!(Endpoint::of("/write"), Endpoint::Write);
        assert_eq!(Endpoint::of("/api/v2/write"), Endpoint::WriteV2);
        assert_eq!(Endpoint::of("/metrics"), Endpoint::Metrics);
        assert_eq!(Endpoint::of("/api/v1/prom/write"), Endpoint::PromWrite);
        assert_eq!(Endpoint::of("/api/v1/prom/read"), Endpoint::PromRead);
        assert_eq!(Endpoint::of("/mydb/secret"), Endpoint::Other);
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "ALL is in declaration order");
        }
    }
}
