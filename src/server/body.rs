//! Reading a client's request body: size limit, deadline, gzip bomb check,
//! and for writes the line count, taken chunk by chunk as the body arrives.
//!
//! The body is kept as the chunks hyper delivered ([`Payload`]), never
//! concatenated. A gzip body is inflated once into a sink, only to count
//! its size against `max_body_size`: a bomb is refused without ever being
//! held in memory, and the compressed bytes are what nodes receive.

use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::error::ApiError;
use crate::payload::Payload;

/// Bodies at least this large are inflated on the blocking pool.
const INFLATE_INLINE_MAX: u64 = 256 * 1024;

/// Bounds on one request body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, compressed or inflated.
    pub max_size: u64,
    /// When the whole request must have arrived.
    pub deadline: Instant,
    /// The configured read timeout, for the error message.
    pub read_timeout: Duration,
}

/// Reads the whole body, refusing it past the size limit or the deadline.
pub async fn read(
    body: Incoming,
    headers: &HeaderMap,
    limits: Limits,
) -> Result<Payload, ApiError> {
    Ok(read_sized(body, headers, limits).await?.0)
}

/// Like [`read`], with the body's decoded size (inflated, when gzip).
pub async fn read_sized(
    body: Incoming,
    headers: &HeaderMap,
    limits: Limits,
) -> Result<(Payload, u64), ApiError> {
    let read = read_counting(body, headers, limits, false).await?;
    Ok((read.payload, read.decoded_size))
}

/// A write body, and its lines when it is not gzip (counting those would
/// mean inflating it, which the relay otherwise never does).
#[derive(Debug)]
pub struct WriteBody {
    pub payload: Payload,
    pub lines: Option<u64>,
    /// The body's size once decoded: inflated when gzip (what `[limits]` count).
    pub decoded_size: u64,
}

/// A body as read: its chunks, newlines counted if asked, decoded size.
struct ReadBody {
    payload: Payload,
    newlines: u64,
    decoded_size: u64,
}

/// Like [`read`], counting the body's lines as each chunk arrives, while its
/// bytes are still in the CPU's caches (a second pass over a 500 KB body
/// after it is all read costs about as much as sending it).
pub async fn read_write(
    body: Incoming,
    headers: &HeaderMap,
    limits: Limits,
) -> Result<WriteBody, ApiError> {
    check_encoding(headers)?;
    let count = !is_gzip(headers);
    let read = read_counting(body, headers, limits, count).await?;
    let lines = count.then(|| crate::monitor::http::lines_of(read.newlines, read.payload.chunks()));
    Ok(WriteBody {
        payload: read.payload,
        lines,
        decoded_size: read.decoded_size,
    })
}

async fn read_counting(
    body: Incoming,
    headers: &HeaderMap,
    limits: Limits,
    count_newlines: bool,
) -> Result<ReadBody, ApiError> {
    let Limits {
        max_size: limit,
        deadline,
        read_timeout,
    } = limits;
    if declared_length(headers).is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collected = tokio::time::timeout_at(deadline, collect(body, limit, count_newlines));
    let (payload, newlines) = match collected.await {
        Ok(result) => result?,
        Err(_) => return Err(ApiError::RequestTimeout(read_timeout)),
    };
    let decoded_size = match is_gzip(headers) {
        true => check_inflated_size(&payload, limit).await?,
        false => payload.len(),
    };
    Ok(ReadBody {
        payload,
        newlines,
        decoded_size,
    })
}

async fn collect(
    mut body: Incoming,
    limit: u64,
    count_newlines: bool,
) -> Result<(Payload, u64), ApiError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    let mut newlines: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("error reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            if count_newlines {
                newlines += memchr::memchr_iter(b'\n', &data).count() as u64;
            }
            chunks.push(data);
        }
    }
    Ok((Payload::from_chunks(chunks), newlines))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Refuses a write body in an encoding the router cannot read (anything
/// but gzip, `identity` or none): it could neither be split nor checked, and
/// a node would store its compressed bytes as lines or refuse them.
fn check_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let encoding = text.trim();
    if encoding.is_empty()
        || encoding.eq_ignore_ascii_case("gzip")
        || encoding.eq_ignore_ascii_case("identity")
    {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "unsupported Content-Encoding {:?}: send the body as gzip or unencoded",
        crate::protocol::response::truncate(encoding, 40)
    )))
}

/// True when the body says it is gzip-encoded.
pub fn is_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// The inflated size of a gzip body, refused past `limit`.
async fn check_inflated_size(payload: &Payload, limit: u64) -> Result<u64, ApiError> {
    let inflated = if payload.len() < INFLATE_INLINE_MAX {
        inflated_size(payload, limit)
    } else {
        let payload = payload.clone();
        tokio::task::spawn_blocking(move || inflated_size(&payload, limit))
            .await
            .map_err(|e| ApiError::BadRequest(format!("gzip check failed: {e}")))?
    };
    match inflated {
        Ok(size) if size > limit => Err(ApiError::PayloadTooLarge { limit }),
        Ok(size) => Ok(size),
        Err(e) => Err(ApiError::BadRequest(format!("invalid gzip body: {e}"))),
    }
}

/// The decoded body of a gzip payload (already checked against `limit`),
/// for the rare path that must look at the lines.
pub async fn inflate(payload: &Payload, limit: u64) -> Result<Bytes, ApiError> {
    let payload = payload.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let mut decoded = Vec::new();
        let decoder = flate2::read::MultiGzDecoder::new(ChunkReader::new(payload.chunks()));
        decoder
            .take(limit + 1)
            .read_to_end(&mut decoded)
            .map(|_| decoded)
    })
    .await
    .map_err(|e| ApiError::BadRequest(format!("gzip decoding failed: {e}")))?
    .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
    if decoded.len() as u64 > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(decoded))
}

/// Inflates into nothing, stopping one byte past `limit`; returns the size seen.
pub fn inflated_size(payload: &Payload, limit: u64) -> io::Result<u64> {
    let decoder = flate2::read::MultiGzDecoder::new(ChunkReader::new(payload.chunks()));
    io::copy(&mut decoder.take(limit + 1), &mut io::sink())
}

/// `Read` over a list of chunks, without joining them.
struct ChunkReader<'a> {
    chunks: &'a [Bytes],
    offset: usize,
}

impl<'a> ChunkReader<'a> {
    fn new(chunks: &'a [Bytes]) -> Self {
        ChunkReader { chunks, offset: 0 }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(first) = self.chunks.first() {
            let rest = &first[self.offset..];
            if rest.is_empty() {
                self.chunks = &self.chunks[1..];
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn split_payload(data: Vec<u8>, pieces: usize) -> Payload {
        let bytes = Bytes::from(data);
        let step = bytes.len().div_ceil(pieces).max(1);
        let chunks = (0..bytes.len())
            .step_by(step)
            .map(|i| bytes.slice(i..(i + step).min(bytes.len())))
            .collect();
        Payload::from_chunks(chunks)
    }

    #[test]
    fn inflated_size_counts_a_gzip_body_split_over_chunks() {
        let data = b"cpu,host=a value=1 1\n".repeat(1000);
        let payload = split_payload(gzip(&data), 7);
        assert_eq!(inflated_size(&payload, 1 << 20).unwrap(), data.len() as u64);
    }

    #[test]
    fn a_gzip_bomb_stops_one_byte_past_the_limit() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(
            bomb.len() < 100 << 10,
            "50 MiB of zeros compresses to {} bytes",
            bomb.len()
        );
        let size = inflated_size(&Payload::from(Bytes::from(bomb)), 1 << 20).unwrap();
        assert_eq!(size, (1 << 20) + 1);
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut data = gzip(&b"cpu value=1\n".repeat(100));
        data.truncate(data.len() / 2);
        assert!(inflated_size(&Payload::from(Bytes::from(data)), 1 << 20).is_err());
    }

    #[test]
    fn gzip_header_is_recognised_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "GZip".parse().unwrap());
        assert!(is_gzip(&headers));
        headers.insert(CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(!is_gzip(&headers));
    }
}
