//! A corrupt record found while reading: the disk changed after recovery,
//! or a segment file went missing or shrank.
//!
//! The rest of the segment, from the bad record to its published end, is
//! surveyed once: its valid records are counted, and every stretch that is
//! not a record becomes a skip the reader steps over (logged, counted, kept
//! aside like those found at open). In a version-1 segment everything from
//! the bad record on is one stretch, as that release had it. Bytes after the
//! last valid frame cannot be cut from a segment that may still be written,
//! so they are a stretch too. Records published after the reader looked are
//! not surveyed and stay counted.

use std::io;

use super::corrupt::{self, Stretch};
use super::fs::ReadFile;
use super::record::Corrupt;
use super::segment::{Scanner, Step};
use super::state::{SegmentView, Shared};
use super::{io_error, QueueError};

/// The part of a segment surveyed after a bad record.
#[derive(Debug, Default)]
struct Survey {
    /// Valid records, and when the first was accepted.
    records: u64,
    head: Option<u64>,
    stretches: Vec<(u64, u64, Corrupt)>,
}

/// Deals with the bad record at `at` of the segment `view` shows: false
/// when the bytes at `at` read as a record after all (nothing was done).
pub fn after_corrupt(
    shared: &Shared,
    view: SegmentView,
    at: u64,
    why: Corrupt,
) -> Result<bool, QueueError> {
    let path = shared.segment_path(view.at.segment);
    let survey = match shared.fs.open_read(&path) {
        Ok(file) => survey(file.as_ref(), view, at).map_err(io_error("read", &path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Survey {
            stretches: vec![(at, view.len, "segment file is missing")],
            ..Survey::default()
        },
        Err(e) => return Err(io_error("open", &path)(e)),
    };
    if survey.stretches.first().map(|s| s.0) != Some(at) {
        tracing::debug!(path = %path.display(), at, reason = why, "a queue record read as corrupt is whole on a second look");
        return Ok(false);
    }
    register(shared, view, survey);
    Ok(true)
}

fn survey(file: &dyn ReadFile, view: SegmentView, at: u64) -> io::Result<Survey> {
    let end = view.len.min(file.size()?);
    let mut survey = Survey::default();
    let mut scanner = Scanner::new(file, at, end, view.format, false);
    loop {
        match scanner.next_step()? {
            Step::Record { fields, .. } => {
                survey.records += 1;
                survey.head.get_or_insert(fields.accepted_at_ms);
            }
            Step::Skipped { start, end, why } => survey.stretches.push((start, end, why)),
            Step::End => {
                if end < view.len {
                    let why = "segment file is shorter than written";
                    survey.stretches.push((end.max(at), view.len, why));
                }
                return Ok(survey);
            }
            Step::Corrupt { at: tail, why } => {
                survey.stretches.push((tail, view.len, why));
                return Ok(survey);
            }
        }
    }
}

/// Makes the stretches skips of the segment and counts what they cost.
fn register(shared: &Shared, view: SegmentView, survey: Survey) {
    let seq = view.at.segment;
    let mut state = shared.lock();
    let Some(seg) = state.segment_mut(seq) else {
        return; // dropped meanwhile
    };
    let new: Vec<Stretch> = survey
        .stretches
        .iter()
        .filter(|(start, _, _)| !seg.skips.iter().any(|(s, _)| s == start))
        .map(|&(start, end, why)| Stretch {
            seq,
            start,
            end,
            why,
        })
        .collect();
    let since = seg.published.saturating_sub(view.published);
    let left = (survey.records + since).min(seg.records_left);
    let lost = seg.records_left - left;
    seg.records_left = left;
    seg.skips.extend(new.iter().map(|s| (s.start, s.end)));
    seg.skips.sort_unstable();
    match (survey.head, left) {
        (Some(head), _) => seg.head_accepted_at_ms = Some(head),
        (None, 0) => seg.head_accepted_at_ms = None,
        (None, _) => {}
    }
    state.records = state.records.saturating_sub(lost);
    drop(state);
    shared.forget_records(lost);
    let counters = &shared.counters;
    let bytes: u64 = new.iter().map(Stretch::len).sum();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    counters.corrupt_bytes_cut.fetch_add(bytes, relaxed);
    let regions = new.len() as u64;
    counters.corrupt_regions_skipped.fetch_add(regions, relaxed);
    for stretch in &new {
        corrupt::set_aside(shared.fs.as_ref(), &shared.dir, stretch, "while reading");
    }
}
