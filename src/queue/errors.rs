//! What can go wrong: an append that did not queue its record, and a queue
//! operation that failed on the disk.

use std::io;
use std::path::{Path, PathBuf};

use super::Position;

/// Why a record was not queued.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("queue is full ({max} bytes, on_full = reject)")]
    Full { max: u64 },
    #[error("queue write failed: {0}")]
    Io(String),
    #[error("queue is closed")]
    Closed,
}

/// A queue operation that failed on the disk, or a bad commit.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot commit up to {}:{}: not the end of a queued record after the read position", .0.segment, .0.offset)]
    BadPosition(Position),
    #[error("queue directory {} is still being closed by its previous handle", .0.display())]
    StillClosing(PathBuf),
}

/// Turns an `io::Error` on `path` into a [`QueueError`].
pub(super) fn io_error<'p>(
    op: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> QueueError + 'p {
    move |source| QueueError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
