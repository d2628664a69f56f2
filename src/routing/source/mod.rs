//! Sources of routing tables. A source only turns the outside world into
//! the text of a candidate configuration; validating and publishing it is
//! [`crate::server::reload`]'s job.
//!
//! * [`file`]: the config file, re-read when it changes (editors that
//!   replace the file included) and on SIGHUP.
//! * [`dns`]: DNS SRV records, the nodes of clusters with `srv`.
//! * [`redis`](mod@redis): the routing document in Redis, with RabbitMQ
//!   change notices and a poll (`source = "redis"`).

pub mod dns;
pub mod file;
pub mod redis;
