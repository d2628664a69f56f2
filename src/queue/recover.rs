//! Opening a queue directory after a clean stop or a crash.
//!
//! Every segment at or after the stored read position is scanned whole: a
//! bad header drops the file; a corrupt record followed by a valid one
//! (version 2) is stepped over, logged, counted and kept aside, and later
//! skipped by the reader; a torn or corrupt tail (and, in a version-1 file,
//! everything from the first bad record on) is cut (logged, counted in
//! `corrupt_bytes_cut`); the records after the read position are counted.
//! Segments wholly before the read position, and segments with nothing left
//! to replay, are removed. The read position is moved onto the record
//! boundary at or before it, or to the next segment that still exists.
//!
//! The directory and the queue's files in it lose any group and other
//! permissions they had (an older release, or a hand, may have made them).

use std::path::Path;

use super::corrupt::{self, Stretch};
use super::fs::{read_exact_at, Filesystem};
use super::position::{self, Store, POSITION_TMP};
use super::record::Format;
use super::segment::{
    check_header, parse_segment_name, segment_name, Scanner, Step, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC,
};
use super::state::{SegmentMeta, State};
use super::{dead_letter, io_error, Position, QueueError};

/// The state found on disk.
pub struct Recovered {
    pub state: State,
    /// The sequence number for the next segment: above every one ever seen.
    pub next_seq: u64,
    /// Bytes cut or skipped, and corrupt stretches skipped.
    pub corrupt_bytes: u64,
    pub corrupt_regions: u64,
    /// The read position file, open.
    pub position: Store,
}

/// Reads the queue in `dir` (created if missing) back into memory.
pub fn recover(fs: &dyn Filesystem, dir: &Path) -> Result<Recovered, QueueError> {
    fs.create_dir_all(dir).map_err(io_error("create", dir))?;
    let names = fs.list_dir(dir).map_err(io_error("list", dir))?;
    make_private(fs, dir, &names);
    for name in names.iter().filter(|n| is_leftover(n)) {
        remove(fs, &dir.join(name));
    }
    let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    seqs.sort_unstable();
    let (store, saved) = Store::open(fs, dir)?;
    let highest = seqs
        .last()
        .copied()
        .max(saved.map(|p| p.segment))
        .unwrap_or(0);
    let mut found = Recovered {
        state: State::default(),
        next_seq: highest.saturating_add(1),
        corrupt_bytes: 0,
        corrupt_regions: 0,
        position: store,
    };
    for seq in seqs {
        recover_one(fs, dir, seq, saved, &mut found)?;
    }
    let state = &mut found.state;
    if state.segments.is_empty() {
        state.read = Position::start_of(found.next_seq);
    }
    state.bytes = state.segments.iter().map(|s| s.len).sum();
    state.records = state.segments.iter().map(|s| s.records_left).sum();
    Ok(found)
}

/// Files a crash may leave behind half-written.
fn is_leftover(name: &str) -> bool {
    name == POSITION_TMP || (corrupt::is_kept_name(name) && name.ends_with(".tmp"))
}

/// Takes group and other permissions off the directory and the queue's
/// files in it (logged once).
fn make_private(fs: &dyn Filesystem, dir: &Path, names: &[String]) {
    let ours = names.iter().filter(|n| {
        parse_segment_name(n).is_some()
            || corrupt::is_kept_name(n)
            || [position::POSITION_FILE, dead_letter::DEAD_LETTER_FILE].contains(&n.as_str())
            || n.as_str() == dead_letter::DEAD_LETTER_OLD
    });
    let mut changed = 0;
    for path in std::iter::once(dir.to_path_buf()).chain(ours.map(|n| dir.join(n))) {
        match fs.make_private(&path) {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot make a queue file private")
            }
        }
    }
    if changed > 0 {
        tracing::info!(queue = %dir.display(), files = changed, "queue files were readable by others; made them private to the owner");
    }
}

/// Adds segment `seq` to `found` if anything in it is left to replay.
fn recover_one(
    fs: &dyn Filesystem,
    dir: &Path,
    seq: u64,
    saved: Option<Position>,
    found: &mut Recovered,
) -> Result<(), QueueError> {
    let path = dir.join(segment_name(seq));
    if saved.is_some_and(|p| seq < p.segment) {
        remove(fs, &path);
        return Ok(());
    }
    let committed_upto = saved.filter(|p| p.segment == seq).map(|p| p.offset);
    let scan = scan(fs, dir, seq, committed_upto)?;
    for stretch in &scan.skips {
        corrupt::set_aside(fs, dir, stretch, "at open");
        found.corrupt_bytes += stretch.len();
        found.corrupt_regions += 1;
    }
    found.corrupt_bytes += scan.cut;
    if scan.cut > 0 {
        let (at, why) = (scan.len, scan.why.unwrap_or("bad bytes"));
        tracing::warn!(path = %path.display(), at, cut = scan.cut, reason = why, "cut a torn or corrupt queue segment tail");
        if at < SEGMENT_HEADER_LEN {
            remove(fs, &path);
            return Ok(());
        }
        fs.truncate(&path, at)
            .map_err(io_error("truncate", &path))?;
    }
    if scan.records_left == 0 {
        remove(fs, &path);
        return Ok(());
    }
    if let Some(wanted) = committed_upto.filter(|&o| o != scan.read_from && o < scan.len) {
        let path = path.display();
        tracing::warn!(path = %path, wanted, from = scan.read_from, "queue read position is not on a record boundary; replaying from the record before it");
    }
    let state = &mut found.state;
    if state.segments.is_empty() {
        state.read = Position {
            segment: seq,
            offset: scan.read_from,
        };
    }
    let mut meta = SegmentMeta::new(seq, scan.len, scan.records_left, scan.format);
    meta.head_accepted_at_ms = scan.head_accepted_at_ms;
    meta.skips = scan.skips.iter().map(|s| (s.start, s.end)).collect();
    state.segments.push_back(meta);
    Ok(())
}

/// One segment file as recovery sees it.
#[derive(Debug)]
struct Scan {
    format: Format,
    /// Header and whole records (and stretches skipped between them).
    len: u64,
    /// Bytes after `len` (torn tail or corruption), and why.
    cut: u64,
    why: Option<&'static str>,
    /// Corrupt stretches after the committed offset, followed by records.
    skips: Vec<Stretch>,
    /// Where replay starts in this file: the record boundary at or before
    /// the committed offset.
    read_from: u64,
    records_left: u64,
    head_accepted_at_ms: Option<u64>,
}

fn scan(
    fs: &dyn Filesystem,
    dir: &Path,
    seq: u64,
    committed_upto: Option<u64>,
) -> Result<Scan, QueueError> {
    let path = dir.join(segment_name(seq));
    let file = fs.open_read(&path).map_err(io_error("open", &path))?;
    let size = file.size().map_err(io_error("read", &path))?;
    let mut header = vec![0; SEGMENT_HEADER_LEN.min(size) as usize];
    read_exact_at(file.as_ref(), &mut header, 0).map_err(io_error("read", &path))?;
    let mut scan = Scan {
        format: Format::V2,
        len: SEGMENT_HEADER_LEN,
        cut: 0,
        why: None,
        skips: Vec::new(),
        read_from: SEGMENT_HEADER_LEN,
        records_left: 0,
        head_accepted_at_ms: None,
    };
    match check_header(&header, SEGMENT_MAGIC) {
        Ok((found, format)) if found == seq => scan.format = format,
        bad => {
            let why = bad
                .err()
                .unwrap_or("sequence number does not match the file name");
            (scan.len, scan.cut, scan.why) = (0, size, Some(why));
            return Ok(scan);
        }
    }
    let committed_upto = committed_upto.unwrap_or(0);
    let mut scanner = Scanner::new(file.as_ref(), SEGMENT_HEADER_LEN, size, scan.format, false);
    loop {
        match scanner.next_step().map_err(io_error("read", &path))? {
            Step::Record { end, fields, .. } => {
                scan.len = end;
                if end <= committed_upto {
                    scan.read_from = end;
                } else {
                    scan.records_left += 1;
                    let head = &mut scan.head_accepted_at_ms;
                    head.get_or_insert(fields.accepted_at_ms);
                }
            }
            Step::Skipped { start, end, why } => {
                scan.len = end;
                if end > committed_upto {
                    scan.skips.push(Stretch {
                        seq,
                        start,
                        end,
                        why,
                    });
                }
            }
            Step::End => return Ok(scan),
            Step::Corrupt { at, why } => {
                scan.cut = size - at;
                scan.why = Some(why);
                return Ok(scan);
            }
        }
    }
}

fn remove(fs: &dyn Filesystem, path: &Path) {
    if let Err(e) = fs.remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a queue file");
        }
    }
}
