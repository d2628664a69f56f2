//! Segment files: names, the 16-byte file header, and the scanner that walks
//! a file's records in large windows (recovery, the dead-letter file, and
//! commits of positions the replayer did not just read).
//!
//! The scanner stops at the first frame that is torn or not a record and
//! says where; it never reads or allocates more than the file holds.

use std::io;
use std::ops::Range;

use bytes::Bytes;

use super::fs::{read_exact_at, ReadFile};
use super::record::{self, Fields, FRAME_HEADER_LEN};
use super::Record;

/// Magic, format version and sequence number at the start of a segment.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
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

/// The file header: magic, version, sequence (0 in the dead-letter file).
pub fn encode_header(magic: [u8; 4], seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0; SEGMENT_HEADER_LEN as usize];
    header[..4].copy_from_slice(&magic);
    header[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[8..].copy_from_slice(&seq.to_le_bytes());
    header
}

/// The sequence number in a file header, if the header is one of `magic`.
pub fn check_header(header: &[u8], magic: [u8; 4]) -> Result<u64, record::Corrupt> {
    let Some(header) = header.get(..SEGMENT_HEADER_LEN as usize) else {
        return Err("file shorter than its header");
    };
    if header[..4] != magic {
        return Err("not a queue file (bad magic)");
    }
    if header[4..8] != FORMAT_VERSION.to_le_bytes() {
        return Err("unknown format version");
    }
    let mut seq = [0; 8];
    seq.copy_from_slice(&header[8..]);
    Ok(u64::from_le_bytes(seq))
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
    /// The scan reached its end on a record boundary.
    End,
    /// The bytes from `at` on are not a whole record.
    Corrupt { at: u64, why: record::Corrupt },
}

/// Walks the records of `file` between two offsets.
pub struct Scanner<'f> {
    file: &'f dyn ReadFile,
    end: u64,
    dead_letter: bool,
    /// Bytes of the file from `window_start` on.
    window: Vec<u8>,
    window_start: u64,
    /// Cursor in `window`.
    at: usize,
}

impl<'f> Scanner<'f> {
    /// Scans `start..end` of `file` (which must hold that much).
    pub fn new(file: &'f dyn ReadFile, start: u64, end: u64, dead_letter: bool) -> Scanner<'f> {
        Scanner {
            file,
            end,
            dead_letter,
            window: Vec::new(),
            window_start: start,
            at: 0,
        }
    }

    /// The next record, the end, or where the bytes stop being records.
    pub fn next_step(&mut self) -> io::Result<Step<'_>> {
        let (start, len) = loop {
            let start = self.window_start + self.at as u64;
            if start >= self.end {
                return Ok(Step::End);
            }
            match record::frame_len(&self.window[self.at..]) {
                Ok(Some(len)) if self.at as u64 + len <= self.window.len() as u64 => {
                    break (start, len)
                }
                Ok(len) => {
                    let need = len.unwrap_or(FRAME_HEADER_LEN);
                    if start + need > self.end {
                        let why = match len {
                            None => "torn record header",
                            Some(_) => "record runs past the end of the file",
                        };
                        return Ok(Step::Corrupt { at: start, why });
                    }
                    self.refill(need)?;
                }
                Err(why) => return Ok(Step::Corrupt { at: start, why }),
            }
        };
        let from = self.at;
        let frame = &self.window[from..from + len as usize];
        match record::decode(frame, self.dead_letter) {
            Ok(fields) => {
                self.at += len as usize;
                let end = start + len;
                Ok(Step::Record {
                    start,
                    end,
                    fields,
                    frame,
                })
            }
            Err(why) => Ok(Step::Corrupt { at: start, why }),
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

/// What a segment file holds, read the way recovery reads it.
#[derive(Debug)]
pub struct SegmentImage {
    /// The sequence number in the header; `None` when the header is bad.
    pub sequence: Option<u64>,
    /// Each whole record and where its frame is in the file.
    pub records: Vec<(Range<u64>, Record)>,
    /// Header and whole records: everything before the first bad byte.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file.
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
        records: Vec::new(),
        valid_len: 0,
        corrupt: None,
    };
    match check_header(&header, SEGMENT_MAGIC) {
        Ok(seq) => image.sequence = Some(seq),
        Err(why) => {
            image.corrupt = Some(why);
            return Ok(image);
        }
    }
    image.valid_len = SEGMENT_HEADER_LEN;
    let mut scanner = Scanner::new(file, SEGMENT_HEADER_LEN, size, false);
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
        assert_eq!(check_header(&header, SEGMENT_MAGIC), Ok(7));
        assert!(check_header(&header, DEAD_LETTER_MAGIC).is_err());
        assert!(check_header(&header[..15], SEGMENT_MAGIC).is_err());
        let mut future = header;
        future[4] = 2;
        assert_eq!(
            check_header(&future, SEGMENT_MAGIC),
            Err("unknown format version")
        );
    }
}
