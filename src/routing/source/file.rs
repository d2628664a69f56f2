//! The config file as a routing source: watched with `notify` (the parent
//! directory, so an editor's write-and-rename is seen too), debounced, and
//! re-read on SIGHUP as well.
//!
//! Only events that can change what the file holds count ([`changes_content`]):
//! data written, a writer closing it, a name created or renamed. Opening,
//! reading and closing it unwritten do not — the router's own read would
//! otherwise wake the watcher again, and the file would be re-read (and an
//! invalid one refused and logged) about 20 times a second for ever.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// Changes closer together than this are read once.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Why the file could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {message}")]
    Watch { path: PathBuf, message: String },
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(std::io::Error),
}

/// What woke the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    FileChanged,
    Hangup,
}

/// Starts watching: from when this returns, every change of the file (when
/// `watch`) and every SIGHUP calls `changed` with the file's text, until
/// `stop` changes.
pub fn start(
    path: PathBuf,
    watch: bool,
    mut changed: impl FnMut(String, Trigger) + Send + 'static,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WatchError> {
    let (events, mut incoming) = mpsc::channel::<()>(64);
    let watcher = if watch {
        Some(watch_file(&path, events)?)
    } else {
        None
    };
    let mut hangup = signal(SignalKind::hangup()).map_err(WatchError::Signal)?;
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let trigger = tokio::select! {
                Some(()) = incoming.recv() => Trigger::FileChanged,
                _ = hangup.recv() => Trigger::Hangup,
                _ = stop.changed() => return,
            };
            tokio::time::sleep(DEBOUNCE).await;
            while incoming.try_recv().is_ok() {}
            match tokio::fs::read_to_string(&path).await {
                Ok(text) => changed(text, trigger),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the config file; the last good table stays")
                }
            }
        }
    });
    Ok(())
}

/// Watches the directory of `path` and signals events that concern it.
fn watch_file(
    path: &Path,
    events: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let error = |message: String| WatchError::Watch {
        path: path.to_path_buf(),
        message,
    };
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .ok_or_else(|| error("not a file path".into()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Kubernetes updates a mounted ConfigMap by pointing the `..data`
        // symlink at a new directory: the file's name sees no event then.
        let concerns_us = event.is_ok_and(|e| {
            e.need_rescan()
                || changes_content(&e.kind)
                    && e.paths.iter().any(|p| {
                        p.file_name() == Some(name.as_os_str())
                            || p.file_name() == Some(std::ffi::OsStr::new("..data"))
                    })
        });
        if concerns_us {
            let _ = events.try_send(());
        }
    })
    .map_err(|e| error(e.to_string()))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| error(e.to_string()))?;
    Ok(watcher)
}

/// Whether an event of this kind may have changed what the file reads as:
/// not opening, reading or closing it unwritten (the router's own read),
/// nor a change of its metadata only.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) | EventKind::Create(_) => true,
        EventKind::Remove(_) => false,
        EventKind::Any | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn writing_renaming_and_creating_change_the_content() {
        for kind in [
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Create(CreateKind::File),
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn opening_reading_and_closing_unwritten_do_not() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
    }
}
