//! Corrupt stretches in the middle of a version-2 segment: bytes a reader
//! stepped over because they are not a valid frame while a valid one
//! follows. Each is logged, counted by the caller, and its bytes are copied
//! as they are to `corrupt-<segment>-<offset>.bin` beside the segments, so
//! nothing leaves the queue unseen and an operator can look at it.
//!
//! A copy is made once per stretch (an existing copy is left alone, so a
//! restart does not make another), of at most [`MAX_KEPT`] bytes, and on a
//! best-effort basis: a copy that cannot be written (a full disk) is logged
//! and replay goes on. Copies are never removed by the queue.

use std::io;
use std::ops::Range;
use std::path::Path;

use super::fs::{read_exact_at, write_all, Filesystem, ReadFile};
use super::record::Corrupt;
use super::segment::segment_name;

/// The most bytes of one stretch that are copied.
pub const MAX_KEPT: u64 = 64 << 20;

/// The name of the copy of the stretch at `offset` of segment `seq`.
pub fn kept_name(seq: u64, offset: u64) -> String {
    format!("corrupt-{seq:020}-{offset}.bin")
}

/// Whether `name` is a copy, or an unfinished one.
pub fn is_kept_name(name: &str) -> bool {
    name.starts_with("corrupt-") && (name.ends_with(".bin") || name.ends_with(".bin.tmp"))
}

/// One corrupt stretch: `start..end` of segment `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub seq: u64,
    pub start: u64,
    pub end: u64,
    pub why: Corrupt,
}

impl Stretch {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Logs `stretch` (found `when`: "at open", "while reading") and copies its
/// bytes aside.
pub fn set_aside(fs: &dyn Filesystem, dir: &Path, stretch: &Stretch, when: &str) {
    let path = dir.join(segment_name(stretch.seq));
    let kept = kept_name(stretch.seq, stretch.start);
    tracing::error!(path = %path.display(), at = stretch.start, bytes = stretch.len(), reason = stretch.why, kept = %kept, "corrupt record in a queue segment {when}; skipped it, replaying the records after it");
    if let Err(e) = keep(fs, dir, stretch) {
        tracing::warn!(path = %dir.join(&kept).display(), error = %e, "cannot keep a copy of a corrupt queue record");
    }
}

fn keep(fs: &dyn Filesystem, dir: &Path, stretch: &Stretch) -> io::Result<()> {
    let name = kept_name(stretch.seq, stretch.start);
    let path = dir.join(&name);
    if fs.open_read(&path).is_ok() {
        return Ok(());
    }
    let segment = fs.open_read(&dir.join(segment_name(stretch.seq)))?;
    let end = stretch
        .end
        .min(stretch.start.saturating_add(MAX_KEPT))
        .min(segment.size()?);
    if end <= stretch.start {
        return Ok(()); // the bytes are gone
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let copied = copy(segment.as_ref(), stretch.start..end, fs, &tmp).and_then(|()| {
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir)
    });
    if copied.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    copied
}

fn copy(from: &dyn ReadFile, range: Range<u64>, fs: &dyn Filesystem, to: &Path) -> io::Result<()> {
    let mut out = fs.create(to)?;
    let mut buf = Vec::new();
    let mut at = range.start;
    while at < range.end {
        buf.resize((range.end - at).min(1 << 20) as usize, 0);
        read_exact_at(from, &mut buf, at)?;
        write_all(out.as_mut(), &buf)?;
        at += buf.len() as u64;
    }
    out.sync()
}
