//! Prometheus remote storage as InfluxDB 1.x serves it
//! (`/api/v1/prom/write` and `/api/v1/prom/read`): snappy-compressed
//! protobuf.
//!
//! * [`snappy`]: the block format, with the declared length checked
//!   against the body limit before anything is allocated.
//! * [`wire`]: a protobuf field reader over a borrowed buffer, as strict as
//!   a conforming decoder, allocating nothing.
//! * [`write`](mod@write): checking a `WriteRequest` as InfluxDB would
//!   (its whole-request refusals included) and splitting it by measurement,
//!   series forwarded byte for byte.
//! * [`read`]: the metric names a `ReadRequest` pins, and merging
//!   `ReadResponse`s from several clusters.
//! * [`messages`]: the protocol's messages, derived with prost.

pub mod messages;
pub mod read;
pub mod snappy;
pub mod wire;
pub mod write;

/// The content type of remote write and read bodies and of read answers.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// The header Prometheus sends its remote writes with, and its value.
pub const WRITE_VERSION: (&str, &str) = ("x-prometheus-remote-write-version", "0.1.0");
