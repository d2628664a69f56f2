//! Segment files: names, the 16-byte file header, and the scanner that walks
//! a file's records in large windows (recovery, the dead-letter file, and
//! commits of positions the replayer did not just read).
//!
//! In a version-2 file the scanner steps over a bad frame to the next good
//! one ([`Step::Skipped`]) and stops only at a bad tail: bytes after which
//! no good frame starts ([`Step::Corrupt`]). In a version-1 file it stops at
//! the first bad frame, as that release did. It never reads or allocates
//! more than the file holds, and at most one window plus one frame at a time.

use std::io;
use std::ops::Range;

use bytes::Bytes;

use super::fs::{read_exact_at, ReadFile};
use super::record::{self, Fields, Format, SYNC};
use super::Record;

/// Magic, format version and sequence number at the start of a segment.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// The format version this code writes (it reads 1 and 2).
pub const FORMAT_VERSION: u32 = 2;
pub const SEGMENT_MAGIC: [u8; 4] = *b"IRQS";
pub const DEAD_LETTER_MAGIC: [u8; 4] = *b"IRQD";

/// How much a scanner reads at a time.
const WINDOW: u64 = 1 << 20;

/// Sequence numbers at or above this are not ours (room to count up).
pub const MAX_SEQ: u64 = 1 << 62;

/// `00000000000000000042.seg`: zero-padded so names sort by sequence.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number in a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&seq| seq < MAX_SEQ)
}

/// The header of a new file: magic, [`FORMAT_VERSION`], sequence (0 in the
/// dead-letter file).
pub fn encode_header(magic: [u8; 4], seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0; SEGMENT_HEADER_LEN as usize];
    header[..4].copy_from_slice(&magic);
    header[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[8..].copy_from_slice(&seq.to_le_bytes());
    header
}

/// The sequence number and frame format in a file header, if the header is
/// one of `magic`.
pub fn check_header(header: &[u8], magic: [u8; 4]) -> Result<(u64, Format), record::Corrupt> {
    let Some(header) = header.get(..SEGMENT_HEADER_LEN as usize) else {
        return Err("file shorter than its header");
    };
    if header[..4] != magic {
        return Err("not a queue file (bad magic)");
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let format = Format::from_version(version).ok_or("unknown format version")?;
    let mut seq = [0; 8];
    seq.copy_from_slice(&header[8..]);
    Ok((u64::from_le_bytes(seq), format))
}

/// One step of a [`Scanner`].
#[derive(Debug)]
pub enum Step<'a> {
    /// A whole, valid record occupying `start..end` of the file.
    Record {
        start: u64,
        end: u64,
        fields: Fields<'a>,
        frame: &'a [u8],
    },
    /// `start..end` is not a record, and a valid one starts at `end`
    /// (version 2 only).
    Skipped {
        start: u64,
        end: u64,
        why: record::Corrupt,
    },
    /// The scan reached its end on a record boundary.
    End,
    /// The bytes from `at` on are not a whole record, and no valid one
    /// starts after `at`: a torn tail.
    Corrupt { at: u64, why: record::Corrupt },
}

/// What [`Scanner::next_frame`] found.
enum Next {
    Frame { start: u64, len: u64 },
    End,
    Bad { at: u64, why: record::Corrupt },
}

/// Walks the records of `file` between two offsets.
pub struct Scanner<'f> {
    file: &'f dyn ReadFile,
    end: u64,
    format: Format,
    dead_letter: bool,
    /// Bytes of the file from `window_start` on.
    window: Vec<u8>,
    window_start: u64,
    /// Cursor in `window`.
    at: usize,
}

impl<'f> Scanner<'f> {
    /// Scans `start..end` of `file` (which must hold that much), whose
    /// frames are in `format`.
    pub fn new(
        file: &'f dyn ReadFile,
        start: u64,
        end: u64,
        format: Format,
        dead_letter: bool,
    ) -> Scanner<'f> {
        Scanner {
            file,
            end,
            format,
            dead_letter,
            window: Vec::new(),
            window_start: start,
            at: 0,
        }
    }

    /// The next record, a bad stretch skipped, the end, or a bad tail.
    pub fn next_step(&mut self) -> io::Result<Step<'_>> {
        let (start, len) = match self.next_frame()? {
            Next::Frame { start, len } => (start, len),
            Next::End => return Ok(Step::End),
            Next::Bad { at, why } => return self.bad(at, why),
        };
        let range = self.at..self.at + len as usize;
        let checked = record::check(&self.window[range.clone()], self.format).and_then(|()| {
            record::fields(&self.window[range.clone()], self.format, self.dead_letter)
        });
        if let Err(why) = checked.map(|_| ()) {
            return self.bad(start, why);
        }
        let frame = &self.window[range];
        let Ok(fields) = record::fields(frame, self.format, self.dead_letter) else {
            return Ok(Step::Corrupt {
                at: start,
                why: "record changed while read",
            });
        };
        self.at += len as usize;
        Ok(Step::Record {
            start,
            end: start + len,
            fields,
            frame,
        })
    }

    /// The next frame, whole in the window (not checked yet).
    fn next_frame(&mut self) -> io::Result<Next> {
        loop {
            let start = self.window_start + self.at as u64;
            if start >= self.end {
                return Ok(Next::End);
            }
            match record::frame_len(&self.window[self.at..], self.format) {
                Ok(Some(len)) if self.at as u64 + len <= self.window.len() as u64 => {
                    return Ok(Next::Frame { start, len })
                }
                Ok(len) => {
                    let need = len.unwrap_or(self.format.header_len());
                    if start + need > self.end {
                        let why = match len {
                            None => "torn record header",
                            Some(_) => "record runs past the end of the file",
                        };
                        return Ok(Next::Bad { at: start, why });
                    }
                    self.refill(need)?;
                }
                Err(why) => return Ok(Next::Bad { at: start, why }),
            }
        }
    }

    /// The frame at `at` is bad: skips to the next good one, or says the
    /// rest is a bad tail.
    fn bad(&mut self, at: u64, why: record::Corrupt) -> io::Result<Step<'static>> {
        if self.format == Format::V1 {
            return Ok(Step::Corrupt { at, why });
        }
        match find_frame(self.file, at + 1, self.end, self.dead_letter)? {
            Some(next) => {
                self.window.clear();
                self.window_start = next;
                self.at = 0;
                Ok(Step::Skipped {
                    start: at,
                    end: next,
                    why,
                })
            }
            None => Ok(Step::Corrupt { at, why }),
        }
    }

    /// Slides the window to the cursor and reads until at least `need`
    /// bytes (which the caller checked are in range) are in it.
    fn refill(&mut self, need: u64) -> io::Result<()> {
        self.window.drain(..self.at);
        self.window_start += self.at as u64;
        self.at = 0;
        let want = need.max(WINDOW).min(self.end - self.window_start) as usize;
        let have = self.window.len();
        if want > have {
            self.window.resize(want, 0);
            read_exact_at(
                self.file,
                &mut self.window[have..],
                self.window_start + have as u64,
            )?;
        }
        Ok(())
    }
}

/// The first offset in `from..end` of `file` where a whole, valid version-2
/// frame starts: each sync marker found is checked (length in range, the
/// frame inside `end`, CRC, fields).
pub fn find_frame(
    file: &dyn ReadFile,
    from: u64,
    end: u64,
    dead_letter: bool,
) -> io::Result<Option<u64>> {
    let header = Format::V2.header_len();
    let mut window = Vec::new();
    let mut window_start = from;
    while window_start + header <= end {
        let len = (end - window_start).min(WINDOW) as usize;
        window.resize(len, 0);
        read_exact_at(file, &mut window, window_start)?;
        let mut search = 0;
        while let Some(i) = memchr::memmem::find(&window[search..], &SYNC) {
            let at = window_start + (search + i) as u64;
            if is_frame_at(file, &window[search + i..], at, end, dead_letter)? {
                return Ok(Some(at));
            }
            search += i + 1;
        }
        if window_start + len as u64 >= end {
            break;
        }
        // a marker may straddle the two windows
        window_start += len as u64 - (SYNC.len() as u64 - 1);
    }
    Ok(None)
}

/// Whether a valid version-2 frame starts at `at`; `head` is what the
/// window holds from there (maybe less than the frame).
fn is_frame_at(
    file: &dyn ReadFile,
    head: &[u8],
    at: u64,
    end: u64,
    dead_letter: bool,
) -> io::Result<bool> {
    let header = Format::V2.header_len();
    let mut buf = Vec::new();
    let len = match record::frame_len(head, Format::V2) {
        Ok(Some(len)) => len,
        Ok(None) if at + header <= end => {
            buf.resize(header as usize, 0);
            read_exact_at(file, &mut buf, at)?;
            match record::frame_len(&buf, Format::V2) {
                Ok(Some(len)) => len,
                _ => return Ok(false),
            }
        }
        Ok(None) | Err(_) => return Ok(false),
    };
    if at + len > end {
        return Ok(false);
    }
    let frame = match head.get(..len as usize) {
        Some(frame) => frame,
        None => {
            buf.resize(len as usize, 0);
            read_exact_at(file, &mut buf, at)?;
            &buf
        }
    };
    Ok(record::decode(frame, Format::V2, dead_letter).is_ok())
}

/// What a segment file holds, read the way recovery reads it.
#[derive(Debug)]
pub struct SegmentImage {
    /// The sequence number in the header; `None` when the header is bad.
    pub sequence: Option<u64>,
    /// The frame format the header names.
    pub format: Option<Format>,
    /// Each whole record and where its frame is in the file.
    pub records: Vec<(Range<u64>, Record)>,
    /// Bad stretches stepped over, in file order (version 2 only).
    pub skipped: Vec<(Range<u64>, record::Corrupt)>,
    /// Everything before the bad tail (the file's length when there is none).
    pub valid_len: u64,
    /// Why the file has a bad tail.
    pub corrupt: Option<&'static str>,
}

/// Reads a whole segment file into memory (for tools and fuzzing; the queue
/// itself never holds a segment in memory).
pub fn read_segment(file: &dyn ReadFile) -> io::Result<SegmentImage> {
    let size = file.size()?;
    let mut header = vec![0; SEGMENT_HEADER_LEN.min(size) as usize];
    read_exact_at(file, &mut header, 0)?;
    let mut image = SegmentImage {
        sequence: None,
        format: None,
        records: Vec::new(),
        skipped: Vec::new(),
        valid_len: 0,
        corrupt: None,
    };
    let format = match check_header(&header, SEGMENT_MAGIC) {
        Ok((seq, format)) => {
            image.sequence = Some(seq);
            image.format = Some(format);
            format
        }
        Err(why) => {
            image.corrupt = Some(why);
            return Ok(image);
        }
    };
    image.valid_len = SEGMENT_HEADER_LEN;
    let mut scanner = Scanner::new(file, SEGMENT_HEADER_LEN, size, format, false);
    loop {
        match scanner.next_step()? {
            Step::Record {
                start,
                end,
                fields,
                frame,
            } => {
                let record = fields.to_record(&Bytes::copy_from_slice(frame));
                image.records.push((start..end, record));
                image.valid_len = end;
            }
            Step::Skipped { start, end, why } => {
                image.skipped.push((start..end, why));
                image.valid_len = end;
            }
            Step::End => return Ok(image),
            Step::Corrupt { why, .. } => {
                image.corrupt = Some(why);
                return Ok(image);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_sequence_and_parse_back() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(
            parse_segment_name(&segment_name(MAX_SEQ - 1)),
            Some(MAX_SEQ - 1)
        );
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), None);
        for other in [
            "42.seg",
            "0000000000000000004x.seg",
            "read-position",
            "a.seg.tmp",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_header_of_the_wrong_kind_or_version_is_refused() {
        let header = encode_header(SEGMENT_MAGIC, 7);
        assert_eq!(check_header(&header, SEGMENT_MAGIC), Ok((7, Format::V2)));
        assert!(check_header(&header, DEAD_LETTER_MAGIC).is_err());
        assert!(check_header(&header[..15], SEGMENT_MAGIC).is_err());
        let mut old = header;
        old[4] = 1;
        assert_eq!(check_header(&old, SEGMENT_MAGIC), Ok((7, Format::V1)));
        let mut future = header;
        future[4] = 3;
        assert_eq!(
            check_header(&future, SEGMENT_MAGIC),
            Err("unknown format version")
        );
    }
}
