//! Talking InfluxDB 1.x to one [`Endpoint`]: statements with small answers
//! ([`Influx::query`], [`Influx::exec`]), queries whose rows stream by in
//! chunks ([`Influx::stream`]) and line-protocol writes ([`Influx::write`]).
//! Every error names the endpoint, and for InfluxDB's own errors the HTTP
//! status and InfluxDB's text.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::answer::{self, JsonSeries, Rows};
use super::endpoint::Endpoint;
use super::http::{read_body, HttpClient};
use super::msgpack;
use super::ControlError;

/// How long a node may take to start answering a statement.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a streaming answer may stall between two pieces.
const STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Rows per chunk of a streamed answer.
pub const CHUNK_ROWS: usize = 5000;
/// Largest small answer read whole.
const SMALL_ANSWER: usize = 64 << 20;
/// Largest single chunk of a streamed answer held at once.
const MAX_CHUNK: usize = 256 << 20;

/// A client of one InfluxDB server.
#[derive(Clone, Debug)]
pub struct Influx {
    pub endpoint: Endpoint,
    http: HttpClient,
}

/// Why a write failed; `retryable` when trying again may help (no answer, 5xx).
#[derive(Debug, Clone)]
pub struct WriteFailure {
    pub message: String,
    pub retryable: bool,
}

impl Influx {
    pub fn new(endpoint: Endpoint, http: HttpClient) -> Influx {
        Influx { endpoint, http }
    }

    pub fn label(&self) -> &str {
        &self.endpoint.label
    }

    fn request(&self, method: Method, path_and_query: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.endpoint.base, path_and_query))
            .header(http::header::USER_AGENT, "influxdb-router admin");
        if let Some(auth) = self.endpoint.authorization() {
            let mut value = http::HeaderValue::from_str(&auth)
                .unwrap_or_else(|_| http::HeaderValue::from_static(""));
            value.set_sensitive(true);
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        if !body.is_empty() {
            builder = builder.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        builder
            .body(Full::new(body))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    fn failed(&self, what: &str, why: impl std::fmt::Display) -> ControlError {
        ControlError::Failed(format!("{}: {what}: {why}", self.endpoint.label))
    }

    /// Runs `q` (with `db` as the default database) and returns each
    /// statement's series. Any InfluxDB error is a failure naming the statement.
    pub async fn query(
        &self,
        db: Option<&str>,
        q: &str,
    ) -> Result<Vec<Vec<JsonSeries>>, ControlError> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("q", q);
            if let Some(db) = db {
                form.append_pair("db", db);
            }
            form.finish()
        };
        let request = self.request(Method::POST, "/query", Bytes::from(form));
        let what = format!("`{}`", shorten(q));
        let response = self
            .http
            .send(request, ANSWER_TIMEOUT)
            .await
            .map_err(|e| self.failed(&what, e))?;
        let status = response.status();
        let body = read_body(response.into_body(), SMALL_ANSWER)
            .await
            .map_err(|e| self.failed(&what, e))?;
        if status != StatusCode::OK {
            return Err(self.failed(&what, http_error(status, &body)));
        }
        answer::statement_series(&body).map_err(|e| self.failed(&what, e))
    }

    /// The series of a single statement.
    pub async fn query_one(
        &self,
        db: Option<&str>,
        q: &str,
    ) -> Result<Vec<JsonSeries>, ControlError> {
        Ok(self
            .query(db, q)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Runs a statement whose answer holds no rows (CREATE, ALTER, GRANT…).
    pub async fn exec(&self, q: &str) -> Result<(), ControlError> {
        self.query(None, q).await.map(|_| ())
    }

    /// Starts `q` on `db` as a chunked MessagePack answer with nanosecond
    /// times; read it with [`RowStream::next_chunk`].
    pub async fn stream(&self, db: &str, q: &str) -> Result<RowStream, ControlError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .append_pair("db", db)
            .append_pair("epoch", "ns")
            .append_pair("chunked", "true")
            .append_pair("chunk_size", &CHUNK_ROWS.to_string())
            .finish();
        let mut request = self.request(Method::POST, "/query", Bytes::from(form));
        request.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/x-msgpack"),
        );
        let what = format!("`{}` on {db:?}", shorten(q));
        let response = self
            .http
            .send(request, ANSWER_TIMEOUT)
            .await
            .map_err(|e| self.failed(&what, e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = read_body(response.into_body(), SMALL_ANSWER)
                .await
                .unwrap_or_default();
            return Err(self.failed(&what, http_error(status, &body)));
        }
        Ok(RowStream {
            body: response.into_body(),
            buf: BytesMut::new(),
            scanner: msgpack::Scanner::default(),
            ended: false,
            bytes: 0,
            label: self.endpoint.label.clone(),
            what,
        })
    }

    /// `POST /write?db=&rp=&precision=ns` of a line-protocol batch.
    pub async fn write(&self, db: &str, rp: &str, body: Bytes) -> Result<(), WriteFailure> {
        let query = form_urlencoded::Serializer::new(String::from("/write?"))
            .append_pair("db", db)
            .append_pair("rp", rp)
            .append_pair("precision", "ns")
            .finish();
        let mut request = self.request(Method::POST, &query, Bytes::new());
        *request.body_mut() = Full::new(body);
        let failure = |message: String, retryable: bool| WriteFailure {
            message: format!("{}: write to {db:?}.{rp:?}: {message}", self.endpoint.label),
            retryable,
        };
        let response = self
            .http
            .send(request, ANSWER_TIMEOUT)
            .await
            .map_err(|e| failure(e, true))?;
        let status = response.status();
        let body = read_body(response.into_body(), SMALL_ANSWER)
            .await
            .map_err(|e| failure(e, true))?;
        if status.is_success() {
            return Ok(());
        }
        Err(failure(
            http_error(status, &body),
            status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
        ))
    }
}

/// A chunked answer being read.
pub struct RowStream {
    body: Incoming,
    buf: BytesMut,
    scanner: msgpack::Scanner,
    ended: bool,
    bytes: u64,
    label: String,
    what: String,
}

impl RowStream {
    /// Reads the next whole chunk and hands its rows to `rows`; `false`
    /// once the answer has ended.
    pub async fn next_chunk(&mut self, rows: &mut dyn Rows) -> Result<bool, ControlError> {
        loop {
            let found = self.scanner.scan(&self.buf).map_err(|e| self.failed(e))?;
            if let Some(len) = found {
                let chunk = self.buf.split_to(len).freeze();
                answer::read_chunk(&chunk, rows).map_err(|e| self.failed(e))?;
                return Ok(true);
            }
            if self.ended {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                return Err(self.failed("the answer ended in the middle of a chunk"));
            }
            if self.buf.len() > MAX_CHUNK {
                return Err(self.failed(format!("a chunk is larger than {MAX_CHUNK} bytes")));
            }
            match tokio::time::timeout(STALL_TIMEOUT, self.body.frame()).await {
                Err(_) => return Err(self.failed(format!("no data for {STALL_TIMEOUT:?}"))),
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => return Err(self.failed(format!("answer broke off: {e}"))),
                Ok(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        self.bytes += data.remaining() as u64;
                        while data.has_remaining() {
                            let piece = data.chunk();
                            self.buf.extend_from_slice(piece);
                            let n = piece.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }

    /// Bytes of answer read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn failed(&self, why: impl std::fmt::Display) -> ControlError {
        ControlError::Failed(format!("{}: {}: {why}", self.label, self.what))
    }
}

/// "HTTP 401: authorization failed": InfluxDB's error text when the body
/// holds one, else the body's start.
pub fn http_error(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Error {
        error: Option<String>,
    }
    let text = match serde_json::from_slice::<Error>(body) {
        Ok(Error { error: Some(e) }) => e,
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
            text.trim().to_string()
        }
    };
    if text.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {text}", status.as_u16())
    }
}

/// A statement cut to one readable line for messages.
pub fn shorten(q: &str) -> String {
    let one_line: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 160 {
        let cut: String = one_line.chars().take(157).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// `"name"` with InfluxQL's escapes, for any identifier.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `'text'` with InfluxQL's escapes, for a string literal.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(ident(r#"a "b"\c"#), r#""a \"b\"\\c""#);
        assert_eq!(string_literal("it's\\"), r"'it\'s\\'");
    }

    #[test]
    fn http_errors_carry_influxdb_text() {
        assert_eq!(
            http_error(
                StatusCode::UNAUTHORIZED,
                br#"{"error":"authorization failed"}"#
            ),
            "HTTP 401: authorization failed"
        );
        assert_eq!(http_error(StatusCode::BAD_GATEWAY, b""), "HTTP 502");
    }
}
