//! The errors handlers return, and the one function that turns them into
//! InfluxDB-shaped HTTP responses.

use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;

use super::{full, ResponseBody};
use crate::protocol::response;

/// Seconds a client is asked to wait before retrying a write we could not take.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// A request the router answers itself with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large: the limit is {limit} bytes (server.max_body_size)")]
    PayloadTooLarge { limit: u64 },
    #[error("request body too large: it decompresses to {size} bytes, the limit is {limit} bytes (server.max_body_size)")]
    DecodedTooLarge { size: u64, limit: u64 },
    #[error("request URI too long: its path is {0} bytes")]
    UriTooLong(usize),
    #[error("request body not received within {0:?} (server.read_timeout)")]
    RequestTimeout(Duration),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a `[limits]` limit; `retry_after` is in whole seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } | ApiError::DecodedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The one place an error becomes a response.
    pub fn into_response(self) -> http::Response<ResponseBody> {
        let mut response = response::error(self.status(), &self.to_string());
        match self {
            ApiError::Unavailable(_) => {
                let value = HeaderValue::from_static(RETRY_AFTER_SECONDS);
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, retry_after.into());
            }
            _ => {}
        }
        if let ApiError::RequestTimeout(_) | ApiError::PayloadTooLarge { .. } = self {
            // the rest of the body is not read: the connection cannot be reused
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.map(full)
    }
}
