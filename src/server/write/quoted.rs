//! Naming, in a node's rejection of a split write, the line of the
//! client's body that the node quotes.
//!
//! After a split each node got only its cluster's batch, and InfluxDB's
//! errors name no line numbers; they quote the line (`unable to parse
//! '<line>': …`). The lines of a batch are the client's lines unchanged, so
//! the quote is found in the body the client sent, and the error gets
//! `(line N of the request body)` at its end, in the JSON body and in
//! `X-Influxdb-Error`.

use http::header::{HeaderName, HeaderValue};
use http::Response;
use http_body_util::{BodyExt, Either, Full};

use super::super::error::ApiError;
use super::super::{full, ResponseBody};
use crate::payload::Payload;
use crate::protocol::node_error;
use crate::protocol::response;

/// InfluxDB's copy of the error in the response head.
const ERROR_HEADER: HeaderName = HeaderName::from_static("x-influxdb-error");

/// How much of the error InfluxDB copies into [`ERROR_HEADER`].
const ERROR_HEADER_MAX: usize = 1024;

/// `answer`, with the client's line number added to a 4xx that quotes a
/// line of `body`.
pub(super) async fn name_line(
    answer: Result<Response<ResponseBody>, ApiError>,
    body: &Payload,
) -> Result<Response<ResponseBody>, ApiError> {
    let response = match answer {
        Ok(response) if response.status().is_client_error() => response,
        other => return other,
    };
    let (mut parts, relayed) = response.into_parts();
    let bytes = match relayed {
        Either::Left(own) => own.collect().await.map(|c| c.to_bytes()),
        Either::Right(stream) => return Ok(Response::from_parts(parts, Either::Right(stream))),
    };
    let bytes = bytes.unwrap_or_default();
    let Some(error) = named(&bytes, body) else {
        return Ok(Response::from_parts(parts, full(Full::new(bytes))));
    };
    if let Ok(value) = HeaderValue::from_str(head_part(&error)) {
        parts.headers.insert(ERROR_HEADER, value);
    }
    let rebuilt = response::error(parts.status, &error);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, full(rebuilt.into_body())))
}

/// The error of `answer` (InfluxDB's JSON) with the number of the line of
/// `body` it quotes, when it quotes one.
fn named(answer: &[u8], body: &Payload) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let error = value.get("error")?.as_str()?;
    let number = node_error::quoted_line(error, &body.to_contiguous())?;
    Some(format!("{error} (line {number} of the request body)"))
}

/// At most [`ERROR_HEADER_MAX`] bytes of `error`, cut on a character boundary.
fn head_part(error: &str) -> &str {
    let mut end = error.len().min(ERROR_HEADER_MAX);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}
