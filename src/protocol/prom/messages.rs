//! The messages of Prometheus's remote storage protocol that InfluxDB 1.x
//! speaks (`prometheus/remote/remote.proto` of InfluxDB 1.6), derived by
//! hand. Label names and values are `bytes` here where the `.proto` says
//! `string`: the wire format is the same, and InfluxDB does not check them
//! for UTF-8 (it stores what it gets), so neither may the router.
//!
//! The write path does not decode into these (see [`super::write`]); they
//! are what a merged `ReadResponse` is decoded into and encoded from, and
//! what tests and benchmarks build requests with.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
}

/// `prometheus.ReadResponse`: one result per query, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
}

/// `prometheus.LabelMatcher`; `type` is a [`MatchType`] value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// `prometheus.MatchType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    Equal = 0,
    NotEqual = 1,
    RegexMatch = 2,
    RegexNoMatch = 3,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.LabelPair`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
pub struct LabelPair {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp_ms: i64,
}

impl LabelPair {
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> LabelPair {
        LabelPair {
            name: name.into(),
            value: value.into(),
        }
    }
}
