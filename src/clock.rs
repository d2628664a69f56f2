//! The wall clock, as the router stamps things with it: queue records
//! (milliseconds) and self-monitoring points and events (nanoseconds).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 before it).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms() -> u64 {
    unix_ns() / 1_000_000
}
