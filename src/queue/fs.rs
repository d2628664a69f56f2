//! The queue's only door to the disk.
//!
//! Everything the queue does to files goes through [`Filesystem`], so tests
//! can put [`FaultFs`] in between and make writes short, tear them, fail an
//! fsync or fill the disk. [`RealFs`] is the plain `std::fs` implementation
//! (Unix: reads use `pread`, so one open file serves any offset without
//! seeking). Queue files hold client credentials: [`RealFs`] creates
//! directories `0700` and files `0600`, and [`Filesystem::make_private`]
//! takes group and other permissions off an existing one.
//!
//! This module never interprets bytes; it only moves them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// The file operations the queue needs, nothing more.
pub trait Filesystem: Send + Sync + 'static {
    /// Creates `dir` and its missing parents, readable by the owner only.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` (owner-only), or empties it if it exists, for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens `path` for appending, creating it (owner-only) if missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens the existing `path` to write over its bytes in place.
    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn RewriteFile>>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Cuts `path` to `len` bytes and makes the cut durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the group and other permissions off `path`; true when it had any.
    fn make_private(&self, path: &Path) -> io::Result<bool>;
}

/// A file open for writing at its end.
pub trait WriteFile: Send {
    /// Writes a prefix of `buf` and says how long it was (a short write is allowed).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// A file whose bytes are written over in place (no new disk space needed).
pub trait RewriteFile: Send {
    /// Writes a prefix of `buf` at `offset` and says how long it was.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize>;
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

/// Writes all of `buf` at `offset`, going on after short writes.
pub fn write_all_at(file: &mut dyn RewriteFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &buf[n..];
                offset += n as u64;
            }
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

/// Owner-only modes of what the queue creates.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

impl Filesystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
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
        let mut options = OpenOptions::new();
        options
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE);
        Ok(Box::new(options.open(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut options = OpenOptions::new();
        options.create(true).append(true).mode(FILE_MODE);
        Ok(Box::new(options.open(path)?))
    }

    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn RewriteFile>> {
        Ok(Box::new(OpenOptions::new().write(true).open(path)?))
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

    fn make_private(&self, path: &Path) -> io::Result<bool> {
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 == 0 {
            return Ok(false);
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7700))?;
        Ok(true)
    }
}

impl RewriteFile for File {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
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
/// to files opened for writing or rewriting: short writes, a write budget
/// after which writes tear (the budget's bytes are written, then an error),
/// failing fsyncs, and a full disk.
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
    /// The disk is full: writes that need new space fail with `ENOSPC`.
    full: AtomicBool,
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
            full: AtomicBool::new(false),
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

    /// Fills the disk (`true`) or frees it: while full, every write that
    /// needs new space fails with `ENOSPC` (appends, new files' contents);
    /// creating an empty file, renaming, removing and cutting still work.
    pub fn fill_disk(&self, full: bool) {
        self.faults.full.store(full, Ordering::SeqCst);
    }

    /// File syncs so far (directory syncs not counted).
    pub fn syncs(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }

    fn wrap(&self, file: Box<dyn WriteFile>) -> Box<dyn WriteFile> {
        let faults = Arc::clone(&self.faults);
        Box::new(FaultFile { file, faults })
    }

    fn wrap_rewrite(&self, file: Box<dyn RewriteFile>, size: u64) -> Box<dyn RewriteFile> {
        let faults = Arc::clone(&self.faults);
        Box::new(FaultRewrite { file, faults, size })
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

    fn open_rewrite(&self, path: &Path) -> io::Result<Box<dyn RewriteFile>> {
        let size = fs::metadata(path)?.len();
        Ok(self.wrap_rewrite(RealFs.open_rewrite(path)?, size))
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

    fn make_private(&self, path: &Path) -> io::Result<bool> {
        RealFs.make_private(path)
    }
}

impl Faults {
    /// How much of a write of `len` bytes may go through (0: none), or the
    /// injected error; `needs_space` when the write grows the file.
    fn admit(&self, len: usize, needs_space: bool) -> io::Result<usize> {
        if needs_space && self.full.load(Ordering::SeqCst) {
            return Err(no_space());
        }
        let budget = self.write_budget.load(Ordering::SeqCst);
        if budget == 0 {
            return Err(io::Error::other("injected write failure"));
        }
        let mut len = (len as u64).min(budget);
        let max = self.max_write.load(Ordering::SeqCst);
        if max > 0 {
            len = len.min(max);
        }
        Ok(len as usize)
    }

    /// `written` bytes went through: they come off the budget.
    fn spent(&self, written: usize) {
        let budget = self.write_budget.load(Ordering::SeqCst);
        if budget != u64::MAX {
            let left = budget.saturating_sub(written as u64);
            self.write_budget.store(left, Ordering::SeqCst);
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .failing_syncs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        match fail {
            true => Err(io::Error::other("injected fsync failure")),
            false => Ok(()),
        }
    }
}

struct FaultFile {
    file: Box<dyn WriteFile>,
    faults: Arc<Faults>,
}

impl WriteFile for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = self.faults.admit(buf.len(), true)?;
        let written = self.file.write(&buf[..len])?;
        self.faults.spent(written);
        Ok(written)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.faults.sync()?;
        self.file.sync()
    }
}

/// A file rewritten in place through [`FaultFs`]: only writes past its
/// size need space.
struct FaultRewrite {
    file: Box<dyn RewriteFile>,
    faults: Arc<Faults>,
    size: u64,
}

impl RewriteFile for FaultRewrite {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let grows = offset + buf.len() as u64 > self.size;
        let len = self.faults.admit(buf.len(), grows)?;
        let written = self.file.write_at(&buf[..len], offset)?;
        self.faults.spent(written);
        self.size = self.size.max(offset + written as u64);
        Ok(written)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.faults.sync()?;
        self.file.sync()
    }
}

/// What a full disk answers a write: `ENOSPC`.
fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}
