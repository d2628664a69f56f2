//! The record of finished pieces that lets a long command resume: after
//! Ctrl-C, `kill -9` or a failure, running the same command again skips
//! every piece recorded here. A piece is recorded only once all of its data
//! is safe at the destination, so redoing an unrecorded one is harmless.
//!
//! [`FileLedger`] keeps the record in a file of JSON lines (a header naming
//! the work, then one line per piece, each written and synced before the
//! next piece starts); a line cut short by a crash is ignored. The header is
//! written with the first piece, so a run that failed before finishing any
//! (bad flags, an unknown database) leaves the file free for other work. The job
//! queue keeps the same record in Redis through the same [`Ledger`] trait.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ControlError;

/// Where finished pieces are recorded.
pub trait Ledger: Send {
    /// What was recorded for `piece`, if it is finished.
    fn done(&self, piece: &str) -> Option<&serde_json::Value>;
    /// Records `piece` as finished, with what the command wants to keep about it.
    fn record(&mut self, piece: &str, detail: serde_json::Value) -> Result<(), ControlError>;
    /// Every finished piece, in the order recorded.
    fn finished(&self) -> Vec<(String, serde_json::Value)>;
}

/// A ledger that remembers nothing (`--state none`-like uses, tests).
#[derive(Debug, Default)]
pub struct Forgetful {
    pieces: Vec<(String, serde_json::Value)>,
}

impl Ledger for Forgetful {
    fn done(&self, _piece: &str) -> Option<&serde_json::Value> {
        None
    }
    fn record(&mut self, piece: &str, detail: serde_json::Value) -> Result<(), ControlError> {
        self.pieces.push((piece.to_string(), detail));
        Ok(())
    }
    fn finished(&self) -> Vec<(String, serde_json::Value)> {
        self.pieces.clone()
    }
}

/// The part of another ledger whose pieces start with a prefix, for a
/// command made of steps that each keep pieces (recover-node: the restore's
/// files, the copy's pieces) in the one ledger of the command.
pub struct Prefixed<'a> {
    inner: &'a mut dyn Ledger,
    prefix: String,
}

impl<'a> Prefixed<'a> {
    pub fn new(inner: &'a mut dyn Ledger, prefix: &str) -> Prefixed<'a> {
        Prefixed {
            inner,
            prefix: prefix.to_string(),
        }
    }
}

impl Ledger for Prefixed<'_> {
    fn done(&self, piece: &str) -> Option<&serde_json::Value> {
        self.inner.done(&format!("{}{piece}", self.prefix))
    }
    fn record(&mut self, piece: &str, detail: serde_json::Value) -> Result<(), ControlError> {
        let key = format!("{}{piece}", self.prefix);
        self.inner.record(&key, detail)
    }
    fn finished(&self) -> Vec<(String, serde_json::Value)> {
        self.inner
            .finished()
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&self.prefix)?.to_string(), v)))
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    work: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    piece: String,
    #[serde(default)]
    detail: serde_json::Value,
}

/// A ledger in a file of JSON lines.
#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    file: File,
    /// The header to write before the first piece, while none is written.
    header: Option<String>,
    index: HashMap<String, usize>,
    entries: Vec<(String, serde_json::Value)>,
}

impl FileLedger {
    /// Opens (or creates) the ledger at `path` for `work`, a text naming the
    /// command and its arguments; a file recorded for other work is refused.
    pub fn open(path: &Path, work: &str) -> Result<FileLedger, ControlError> {
        let failed = |what: &str, e: std::io::Error| {
            ControlError::Failed(format!(
                "state file {}: {what}: {e} (give another with --state FILE)",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| failed("cannot create its directory", e))?;
        }
        let mut entries = Vec::new();
        let mut index = HashMap::new();
        let mut valid_len: u64 = 0;
        let mut has_header = false;
        if let Ok(existing) = File::open(path) {
            let mut reader = BufReader::new(existing);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| failed("cannot read it", e))?;
                if n == 0 || !line.ends_with('\n') {
                    break; // end, or a line cut short by a crash
                }
                if !has_header {
                    let header: Header = serde_json::from_str(&line).map_err(|_| {
                        ControlError::Failed(format!(
                            "state file {} is not a state file of this tool; give another --state",
                            path.display()
                        ))
                    })?;
                    if header.work != work {
                        return Err(ControlError::Usage(format!(
                            "state file {} records other work ({}); start over with --restart, \
                             or give this work another state file",
                            path.display(),
                            header.work
                        )));
                    }
                    has_header = true;
                } else {
                    let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
                        break;
                    };
                    index.insert(entry.piece.clone(), entries.len());
                    entries.push((entry.piece, entry.detail));
                }
                valid_len += n as u64;
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| failed("cannot open it", e))?;
        // drop a torn tail so new lines start clean
        file.set_len(valid_len)
            .map_err(|e| failed("cannot trim it", e))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| failed("cannot seek", e))?;
        let header = (!has_header).then(|| {
            serde_json::to_string(&Header {
                work: work.to_string(),
            })
            .unwrap_or_default()
        });
        Ok(FileLedger {
            path: path.to_path_buf(),
            file,
            header,
            index,
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, line: &str) -> Result<(), ControlError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| {
                ControlError::Failed(format!(
                    "state file {}: cannot write: {e}",
                    self.path.display()
                ))
            })
    }
}

impl Ledger for FileLedger {
    fn done(&self, piece: &str) -> Option<&serde_json::Value> {
        self.index.get(piece).map(|&i| &self.entries[i].1)
    }

    fn record(&mut self, piece: &str, detail: serde_json::Value) -> Result<(), ControlError> {
        let line = serde_json::to_string(&Entry {
            piece: piece.to_string(),
            detail: detail.clone(),
        })
        .map_err(|e| ControlError::Failed(format!("cannot record a piece: {e}")))?;
        if let Some(header) = self.header.take() {
            self.append(&header)?;
        }
        self.append(&line)?;
        self.index.insert(piece.to_string(), self.entries.len());
        self.entries.push((piece.to_string(), detail));
        Ok(())
    }

    fn finished(&self) -> Vec<(String, serde_json::Value)> {
        self.entries.clone()
    }
}

/// The ledger a command records its pieces in: `given` (a job's) when there
/// is one, else the file at `state` (or the default one under `buffer_dir`,
/// named after `kind` and `work`), forgotten first with `restart`. The file
/// ledger lives in `slot`.
pub fn given_or_file<'a, 'b: 'a>(
    given: Option<&'a mut (dyn Ledger + 'b)>,
    slot: &'a mut Option<FileLedger>,
    state: Option<&Path>,
    restart: bool,
    buffer_dir: &Path,
    kind: &str,
    work: &str,
) -> Result<&'a mut (dyn Ledger + 'b), ControlError> {
    if let Some(ledger) = given {
        return Ok(ledger);
    }
    let path = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_path(buffer_dir, kind, work));
    if restart {
        forget(&path)?;
    }
    Ok(slot.insert(FileLedger::open(&path, work)?))
}

/// Removes the ledger at `path` (`--restart`); a missing one is fine.
pub fn forget(path: &Path) -> Result<(), ControlError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ControlError::Failed(format!(
            "state file {}: cannot remove it: {e}",
            path.display()
        ))),
    }
}

/// The default state file of a command: `<[buffer] dir>/admin/<kind>-<hash of work>.state`.
pub fn default_path(buffer_dir: &Path, kind: &str, work: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(work.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    buffer_dir.join("admin").join(format!("{kind}-{hex}.state"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_survive_reopening_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let mut l = FileLedger::open(&path, "work A").unwrap();
        l.record("p1", serde_json::json!({"points": 3})).unwrap();
        l.record("p2", serde_json::Value::Null).unwrap();
        drop(l);
        // a crash in the middle of a line
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"piece\":\"p3\",\"det").unwrap();
        drop(f);
        let mut l = FileLedger::open(&path, "work A").unwrap();
        assert_eq!(l.done("p1"), Some(&serde_json::json!({"points": 3})));
        assert!(l.done("p2").is_some());
        assert!(l.done("p3").is_none());
        l.record("p3", serde_json::Value::Null).unwrap();
        drop(l);
        let mut l = FileLedger::open(&path, "work A").unwrap();
        assert_eq!(l.finished().len(), 3);
        let mut part = Prefixed::new(&mut l, "copy:");
        assert!(part.done("p1").is_none());
        part.record("p1", serde_json::json!(7)).unwrap();
        assert_eq!(part.done("p1"), Some(&serde_json::json!(7)));
        assert_eq!(part.finished().len(), 1);
        assert!(l.done("copy:p1").is_some());
        drop(l);
        assert!(matches!(
            FileLedger::open(&path, "work B"),
            Err(ControlError::Usage(_))
        ));
        // a run that recorded nothing leaves the file to any work
        let fresh = dir.path().join("y.state");
        drop(FileLedger::open(&fresh, "work A").unwrap());
        let mut other = FileLedger::open(&fresh, "work B").unwrap();
        other.record("p", serde_json::Value::Null).unwrap();
        drop(other);
        assert!(FileLedger::open(&fresh, "work A").is_err());
    }
}
