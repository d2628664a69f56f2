//! The queue's only door to the disk.
//!
//! Everything the queue does to files goes through [`Filesystem`], so tests
//! can put [`FaultFs`] in between and make writes short, tear them, or fail
//! an fsync. [`RealFs`] is the plain `std::fs` implementation (Unix: reads
//! use `pread`, so one open file serves any offset without seeking).
//!
//! This module never interprets bytes; it only moves them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// The file operations the queue needs, nothing more.
pub trait Filesystem: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path`, or empties it if it exists, for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens `path` for appending, creating it if missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Cuts `path` to `len` bytes and makes the cut durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A file open for writing at its end.
pub trait WriteFile: Send {
    /// Writes a prefix of `buf` and says how long it was (a short write is allowed).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// A file open for reading at any offset.
pub trait ReadFile: Send + Sync {
    /// Reads into `buf` from `offset`; fewer bytes (0 at the end) are allowed.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The current length of the file.
    fn size(&self) -> io::Result<u64>;
}

/// Writes all of `buf`, going on after short writes and interruptions.
pub fn write_all(file: &mut dyn WriteFile, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `offset`; a file that ends first is `UnexpectedEof`.
pub fn read_exact_at(file: &dyn ReadFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The real disk, through `std::fs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Filesystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(File::create(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(file))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(File::open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl WriteFile for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

impl ReadFile for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// An in-memory file image (fuzzing, tools).
impl ReadFile for Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// [`RealFs`] with faults switched on from the outside, for tests.
///
/// Clones share their knobs: keep one, hand the queue another. Faults apply
/// to files opened for writing: short writes, a write budget after which
/// writes tear (the budget's bytes are written, then an error), and failing
/// fsyncs.
#[derive(Debug, Clone)]
pub struct FaultFs {
    faults: Arc<Faults>,
}

#[derive(Debug)]
struct Faults {
    /// Each write writes at most this many bytes (0: no limit).
    max_write: AtomicU64,
    /// Bytes that may still be written before writes fail (`u64::MAX`: no limit).
    write_budget: AtomicU64,
    /// File syncs still to fail.
    failing_syncs: AtomicU64,
    /// File syncs done (successful or not).
    syncs: AtomicU64,
}

impl Default for FaultFs {
    fn default() -> FaultFs {
        FaultFs::new()
    }
}

impl FaultFs {
    /// A filesystem without faults until one is switched on.
    pub fn new() -> FaultFs {
        let faults = Faults {
            max_write: AtomicU64::new(0),
            write_budget: AtomicU64::new(u64::MAX),
            failing_syncs: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        };
        FaultFs {
            faults: Arc::new(faults),
        }
    }

    /// Every later write writes at most `bytes` bytes (a short write).
    pub fn limit_writes_to(&self, bytes: u64) {
        self.faults.max_write.store(bytes, Ordering::SeqCst);
    }

    /// Writes succeed for `bytes` more bytes, then fail (tearing the write
    /// that crosses the budget); `u64::MAX` lifts the limit.
    pub fn fail_writes_after(&self, bytes: u64) {
        self.faults.write_budget.store(bytes, Ordering::SeqCst);
    }

    /// The next `count` file syncs fail.
    pub fn fail_next_syncs(&self, count: u64) {
        self.faults.failing_syncs.store(count, Ordering::SeqCst);
    }

    /// File syncs so far (directory syncs not counted).
    pub fn syncs(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }

    fn wrap(&self, file: Box<dyn WriteFile>) -> Box<dyn WriteFile> {
        let faults = Arc::clone(&self.faults);
        Box::new(FaultFile { file, faults })
    }
}

impl Filesystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list_dir(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(self.wrap(RealFs.create(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(self.wrap(RealFs.open_append(path)?))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        RealFs.open_read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        RealFs.truncate(path, len)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

struct FaultFile {
    file: Box<dyn WriteFile>,
    faults: Arc<Faults>,
}

impl WriteFile for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let budget = self.faults.write_budget.load(Ordering::SeqCst);
        if budget == 0 {
            return Err(io::Error::other("injected write failure"));
        }
        let mut len = (buf.len() as u64).min(budget);
        let max = self.faults.max_write.load(Ordering::SeqCst);
        if max > 0 {
            len = len.min(max);
        }
        let written = self.file.write(&buf[..len as usize])?;
        if budget != u64::MAX {
            let left = budget.saturating_sub(written as u64);
            self.faults.write_budget.store(left, Ordering::SeqCst);
        }
        Ok(written)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        let failing = &self.faults.failing_syncs;
        let fail = failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync()
    }
}
