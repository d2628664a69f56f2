//! The queues open in this process, by directory, so that a directory is
//! never written by two writer threads (a routing table rebuilt while an old
//! handle of the same node is still alive opens it again).
//!
//! A second `open` gets the queue already open. If the last handle of that
//! queue is being dropped right now, `open` waits for the close to finish
//! (at most [`CLOSE_WAIT`]). A queue closed explicitly but still held is
//! replaced by a freshly opened one: its writer thread is gone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{lock, Handle, QueueError};

/// How long `open` waits for an earlier handle of the same directory to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

static OPEN: Mutex<Vec<(PathBuf, Weak<Handle>)>> = Mutex::new(Vec::new());

/// The queue open on `key`, or the one `open` opens (under the registry
/// lock, so two callers never both open it).
pub(super) fn open_once(
    key: &Path,
    open: impl FnOnce() -> Result<Arc<Handle>, QueueError>,
) -> Result<Arc<Handle>, QueueError> {
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        let mut queues = lock(&OPEN);
        let entry = queues.iter().position(|(k, _)| k == key);
        let Some(i) = entry else {
            let handle = open()?;
            queues.push((key.to_path_buf(), Arc::downgrade(&handle)));
            return Ok(handle);
        };
        match queues[i].1.upgrade() {
            Some(handle) if !handle.is_closed() => return Ok(handle),
            Some(closed) => {
                let opened = open();
                if let Ok(handle) = &opened {
                    queues[i].1 = Arc::downgrade(handle);
                }
                // `closed` may be the last handle: its drop takes the lock
                drop(queues);
                drop(closed);
                return opened;
            }
            None => {
                drop(queues);
                if Instant::now() > deadline {
                    return Err(QueueError::StillClosing(key.to_path_buf()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Forgets `key` once its last handle is gone (called at the end of its drop).
pub(super) fn forget(key: &Path) {
    lock(&OPEN).retain(|(k, handle)| k != key || handle.strong_count() > 0);
}
