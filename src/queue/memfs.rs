//! An in-memory [`Filesystem`], for fuzzing and property tests: a whole
//! queue (recovery, writer, reader) runs on it without touching the disk,
//! and a test can change a file's bytes while the queue has it open.
//!
//! Files are shared byte vectors: an open file sees later changes, and a
//! removed file stays readable through the handles already open, as on
//! Unix. Syncs do nothing; modes do not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{Filesystem, ReadFile, RewriteFile, WriteFile};

type Data = Arc<Mutex<Vec<u8>>>;

/// The files and directories; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    tree: Arc<Mutex<Tree>>,
}

#[derive(Debug, Default)]
struct Tree {
    files: BTreeMap<PathBuf, Data>,
    dirs: BTreeSet<PathBuf>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl MemFs {
    /// Puts a file with `bytes` at `path` (replacing any).
    pub fn write_file(&self, path: &Path, bytes: Vec<u8>) {
        let data = Arc::new(Mutex::new(bytes));
        lock(&self.tree).files.insert(path.to_path_buf(), data);
    }

    /// A copy of the file at `path`.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let data = self.data(path).ok()?;
        let bytes = lock(&data).clone();
        Some(bytes)
    }

    /// Changes the bytes of the file at `path` in place; false if missing.
    pub fn modify(&self, path: &Path, change: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.data(path) {
            Ok(data) => {
                change(&mut lock(&data));
                true
            }
            Err(_) => false,
        }
    }

    fn data(&self, path: &Path) -> io::Result<Data> {
        let tree = lock(&self.tree);
        tree.files.get(path).cloned().ok_or_else(not_found)
    }
}

impl Filesystem for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        for parent in dir.ancestors() {
            tree.dirs.insert(parent.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let tree = lock(&self.tree);
        if !tree.dirs.contains(dir) {
            return Err(not_found());
        }
        let in_dir = tree.files.keys().filter(|p| p.parent() == Some(dir));
        let names = in_dir.filter_map(|p| p.file_name()?.to_str().map(String::from));
        Ok(names.collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.write_file(path, Vec::new());
        Ok(Box::new(MemFile(self.data(path)?)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut tree = lock(&self.tree);
        let data = tree.files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(MemFile(Arc::clone(data))))
    }

    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn RewriteFile>> {
        Ok(Box::new(MemFile(self.data(path)?)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(MemFile(self.data(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        let data = tree.files.remove(from).ok_or_else(not_found)?;
        tree.files.insert(to.to_path_buf(), data);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut tree = lock(&self.tree);
        tree.files.remove(path).map(drop).ok_or_else(not_found)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let data = self.data(path)?;
        lock(&data).truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn make_private(&self, _path: &Path) -> io::Result<bool> {
        Ok(false)
    }
}

/// An open file: the shared bytes.
struct MemFile(Data);

impl WriteFile for MemFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RewriteFile for MemFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut data = lock(&self.0);
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = start + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        Ok(buf.len())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ReadFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = lock(&self.0);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(lock(&self.0).len() as u64)
    }
}
