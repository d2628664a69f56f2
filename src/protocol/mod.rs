//! What the router must understand of InfluxDB's wire formats.
//!
//! * [`influxql`]: splits a `q` parameter into statements and classifies
//!   each one (read, admin broadcast, per node).
//! * [`line`](mod@line): the line-protocol scanner: lines and their measurements,
//!   ending where InfluxDB 1.x ends them, and zero-copy per-key batches.
//! * [`response`]: InfluxDB's JSON error shape and the statuses that go with it.
//! * [`node_error`]: the text of a node's error answer read only in part,
//!   and the line of the client's body that a parse error quotes.
//! * [`merge`]: merges the `/query` answers of several clusters into the
//!   answer one server would have given (series concatenated, `SHOW` lists
//!   unioned and sorted, `LIMIT`/`OFFSET` applied over the union).
//! * [`prom`]: Prometheus remote write and read (snappy protobuf): checking,
//!   splitting by measurement, merging read answers.

pub mod influxql;
pub mod line;
pub mod merge;
pub mod node_error;
pub mod prom;
pub mod response;
