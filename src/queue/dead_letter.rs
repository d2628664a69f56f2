//! The dead-letter file: records a node refused for good, with the reason.
//!
//! `dead-letter.log` beside the segments has the segment layout with magic
//! `IRQD` and sequence 0; each entry is a record frame with the reason flag
//! set and the reason (at most [`MAX_REASON_LEN`] bytes) after the
//! precision. Every entry is fsynced before `dead_letter` returns. When the
//! file would grow past `max(max_size, 1 MiB)` it is renamed to
//! `dead-letter.old.log` (replacing the previous one), so dead letters take
//! at most about twice that.
//!
//! Entries are appended in the format version of the file's header: a
//! version-1 file (the first release) keeps getting version-1 frames until
//! it is rotated; a new file is version 2. As in segments, a corrupt
//! version-2 entry followed by a valid one is stepped over (counted, left
//! in place); a torn tail is cut.

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::fs::{read_exact_at, write_all, Filesystem, WriteFile};
use super::record::{encode_into, Format};
use super::segment::{
    check_header, encode_header, Scanner, Step, DEAD_LETTER_MAGIC, SEGMENT_HEADER_LEN,
};
use super::state::Shared;
use super::{io_error, QueueError, Record};

pub const DEAD_LETTER_FILE: &str = "dead-letter.log";
pub const DEAD_LETTER_OLD: &str = "dead-letter.old.log";

/// Longer reasons are cut (on a character boundary).
pub const MAX_REASON_LEN: usize = 4096;

/// The open dead-letter file.
pub struct DeadLetters {
    file: Option<Box<dyn WriteFile>>,
    /// Bytes of whole entries in the file (0: no file yet).
    len: u64,
    /// The frame format of the file's entries.
    format: Format,
}

impl Default for DeadLetters {
    fn default() -> DeadLetters {
        DeadLetters {
            file: None,
            len: 0,
            format: Format::V2,
        }
    }
}

impl DeadLetters {
    /// Checks the existing file, cutting a torn tail; returns the bytes cut
    /// or skipped.
    pub fn open(fs: &dyn Filesystem, dir: &Path) -> Result<(DeadLetters, u64), QueueError> {
        let path = dir.join(DEAD_LETTER_FILE);
        let Some(checked) = check(fs, &path)? else {
            return Ok((DeadLetters::default(), 0));
        };
        let Checked {
            len,
            size,
            why,
            format,
            skipped,
        } = checked;
        if len < size {
            let why = why.unwrap_or("bad bytes");
            tracing::warn!(path = %path.display(), at = len, cut = size - len, reason = why, "cut a torn or corrupt dead-letter file tail");
            fs.truncate(&path, len)
                .map_err(io_error("truncate", &path))?;
        }
        let file = None;
        Ok((DeadLetters { file, len, format }, size - len + skipped))
    }

    /// Appends one entry and syncs it.
    pub fn append(
        &mut self,
        shared: &Shared,
        record: &Record,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut frame = Vec::new();
        let format = self.format;
        encode_into(record, Some(cut(reason)), format, &mut frame);
        let path = shared.dir.join(DEAD_LETTER_FILE);
        let limit = shared.config.max_size.max(1 << 20);
        if self.len > SEGMENT_HEADER_LEN && self.len + frame.len() as u64 > limit {
            self.rotate(shared)?;
        }
        if self.len == 0 {
            self.create(shared)?;
        }
        if self.format != format {
            // a new file replaced a version-1 one
            frame.clear();
            encode_into(record, Some(cut(reason)), self.format, &mut frame);
        }
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => self.file.insert(
                shared
                    .fs
                    .open_append(&path)
                    .map_err(io_error("open", &path))?,
            ),
        };
        let written = write_all(file.as_mut(), &frame).and_then(|()| file.sync());
        if let Err(e) = written {
            self.file = None;
            let _ = shared.fs.truncate(&path, self.len);
            return Err(io_error("write", &path)(e));
        }
        self.len += frame.len() as u64;
        shared.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Starts the file with its header, durably.
    fn create(&mut self, shared: &Shared) -> Result<(), QueueError> {
        let path = shared.dir.join(DEAD_LETTER_FILE);
        let mut file = shared.fs.create(&path).map_err(io_error("create", &path))?;
        let header = encode_header(DEAD_LETTER_MAGIC, 0);
        write_all(file.as_mut(), &header).map_err(io_error("write", &path))?;
        file.sync().map_err(io_error("sync", &path))?;
        shared
            .fs
            .sync_dir(&shared.dir)
            .map_err(io_error("sync", &shared.dir))?;
        self.file = Some(file);
        self.len = SEGMENT_HEADER_LEN;
        self.format = Format::V2;
        Ok(())
    }

    fn rotate(&mut self, shared: &Shared) -> Result<(), QueueError> {
        self.file = None;
        let path = shared.dir.join(DEAD_LETTER_FILE);
        let old = shared.dir.join(DEAD_LETTER_OLD);
        shared
            .fs
            .rename(&path, &old)
            .map_err(io_error("rename", &path))?;
        self.len = 0;
        tracing::info!(path = %old.display(), "dead-letter file full; kept as the old one, starting a new one");
        Ok(())
    }
}

fn cut(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// An existing dead-letter file, checked.
struct Checked {
    /// Header and whole entries (and stretches skipped between them).
    len: u64,
    size: u64,
    /// Why the good part ends before `size`.
    why: Option<&'static str>,
    format: Format,
    /// Bytes of corrupt entries skipped before the end.
    skipped: u64,
}

/// Checks the file at `path`; `None` when there is none.
fn check(fs: &dyn Filesystem, path: &Path) -> Result<Option<Checked>, QueueError> {
    let file = match fs.open_read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open", path)(e)),
    };
    let size = file.size().map_err(io_error("read", path))?;
    let mut header = vec![0; SEGMENT_HEADER_LEN.min(size) as usize];
    read_exact_at(file.as_ref(), &mut header, 0).map_err(io_error("read", path))?;
    let mut checked = Checked {
        len: 0,
        size,
        why: None,
        format: Format::V2,
        skipped: 0,
    };
    match check_header(&header, DEAD_LETTER_MAGIC) {
        Ok((_, format)) => checked.format = format,
        Err(why) => {
            checked.why = Some(why);
            return Ok(Some(checked));
        }
    }
    let mut scanner = Scanner::new(
        file.as_ref(),
        SEGMENT_HEADER_LEN,
        size,
        checked.format,
        true,
    );
    loop {
        match scanner.next_step().map_err(io_error("read", path))? {
            Step::Record { .. } => {}
            Step::Skipped { start, end, why } => {
                tracing::warn!(path = %path.display(), at = start, bytes = end - start, reason = why, "corrupt entry in the dead-letter file; skipped it");
                checked.skipped += end - start;
            }
            Step::End => {
                checked.len = size;
                return Ok(Some(checked));
            }
            Step::Corrupt { at, why } => {
                (checked.len, checked.why) = (at, Some(why));
                return Ok(Some(checked));
            }
        }
    }
}

/// Every entry of the dead-letter file in `dir`, oldest first (the rotated
/// old file is not included).
pub fn read_all(fs: &dyn Filesystem, dir: &Path) -> Result<Vec<(Record, String)>, QueueError> {
    let path = dir.join(DEAD_LETTER_FILE);
    let file = match fs.open_read(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("open", &path)(e)),
    };
    let size = file.size().map_err(io_error("read", &path))?;
    let mut header = vec![0; SEGMENT_HEADER_LEN.min(size) as usize];
    read_exact_at(file.as_ref(), &mut header, 0).map_err(io_error("read", &path))?;
    let Ok((_, format)) = check_header(&header, DEAD_LETTER_MAGIC) else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    let mut scanner = Scanner::new(file.as_ref(), SEGMENT_HEADER_LEN, size, format, true);
    loop {
        match scanner.next_step().map_err(io_error("read", &path))? {
            Step::Record { fields, frame, .. } => {
                let record = fields.to_record(&Bytes::copy_from_slice(frame));
                entries.push((record, fields.reason.unwrap_or_default().to_string()));
            }
            Step::Skipped { .. } => {}
            Step::End | Step::Corrupt { .. } => return Ok(entries),
        }
    }
}
