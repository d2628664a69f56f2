//! Fuzzes the replayer's frame reader with flipped bytes.
//!
//! Records are encoded into a segment, bytes chosen by the input are flipped
//! or overwritten (with false sync markers too), before the queue opens
//! (recovery meets them) or while it is open (the reader meets them), and
//! the queue is drained on an in-memory filesystem in batches whose limits
//! the input sets.
//!
//! Invariants (see `influxdb_router::queue::flips`): never panics; every
//! record whose bytes were untouched is replayed, in order; nothing is
//! replayed that was not written; the drained queue counts itself empty and
//! a reopen replays nothing.
//!
//! Needs `--cfg fuzzing` (cargo fuzz sets it). Run from the repository root:
//!
//! ```text
//! cargo +nightly fuzz run queue_flips fuzz/corpus/queue_flips fuzz/seeds/queue_flips -- -max_total_time=120
//! ```
//!
//! Where the nightly cannot build a dependency (rustix 0.37 sets
//! `rustc_attrs` on nightly), `cargo +stable fuzz run -s none queue_flips …`
//! fuzzes without a sanitizer.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    influxdb_router::queue::flips::check(data);
});
