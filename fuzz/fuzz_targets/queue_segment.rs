//! Fuzzes the durable queue's segment reader.
//!
//! The first byte picks a mode, the rest is a segment file. Even: the file
//! as it is. Odd: the sync marker and CRC of every frame its lengths point
//! at are fixed up first (in the layout its header's version names), so
//! inputs get past the checksum into the field decoder.
//!
//! Invariants: never panics; records and skipped stretches come in file
//! order and tile the file from the end of the header without gaps; a
//! stretch is skipped only in a version-2 file and only when a record
//! follows it; a file read without complaint was read to its end; every
//! record encodes back to exactly the bytes it was read from; decoding the
//! same bytes as one chunk (the replayer's fast path) gives the records
//! before the first bad frame and stops at the same place.
//!
//! Run from the repository root (new inputs go to the git-ignored corpus,
//! the seeds are only read):
//!
//! ```text
//! cargo +nightly fuzz run queue_segment fuzz/corpus/queue_segment fuzz/seeds/queue_segment -- -max_total_time=120
//! ```

#![no_main]

use bytes::Bytes;
use influxdb_router::queue::record::{decode_chunk, encode_into, Format, Stop, SYNC};
use influxdb_router::queue::segment::{read_segment, SegmentImage, SEGMENT_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode & 1 == 1 {
        fix_frames(&mut file);
    }
    let file = Bytes::from(file);
    let image = read_segment(&file).expect("reading memory cannot fail");
    check_image(&file, &image);
    check_chunk(&file, &image);
});

/// Rewrites the marker and CRC of each frame the lengths walk through.
fn fix_frames(file: &mut [u8]) {
    let v1 = file.get(4..8) == Some(&1u32.to_le_bytes()[..]);
    let (header, len_at) = if v1 { (8, 0) } else { (12, 4) };
    let mut at = SEGMENT_HEADER_LEN as usize;
    while at + header <= file.len() {
        if !v1 {
            file[at..at + 4].copy_from_slice(&SYNC);
        }
        let l = &file[at + len_at..at + len_at + 4];
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
        let payload = at + header;
        let Some(end) = payload
            .checked_add(len as usize)
            .filter(|&e| e <= file.len())
        else {
            return;
        };
        let mut crc = crc32fast::Hasher::new();
        if !v1 {
            crc.update(&len.to_le_bytes());
        }
        crc.update(&file[payload..end]);
        let crc = crc.finalize().to_le_bytes();
        file[at + len_at + 4..payload].copy_from_slice(&crc);
        at = end;
    }
}

fn check_image(file: &Bytes, image: &SegmentImage) {
    let Some(format) = image.format else {
        assert!(image.records.is_empty(), "records from a file with a bad header");
        assert_eq!(image.valid_len, 0);
        assert!(image.corrupt.is_some());
        return;
    };
    if format == Format::V1 {
        assert!(image.skipped.is_empty(), "a version-1 file is never resynced");
    }
    let mut pieces: Vec<(u64, u64, bool)> = image
        .records
        .iter()
        .map(|(r, _)| (r.start, r.end, true))
        .chain(image.skipped.iter().map(|(r, _)| (r.start, r.end, false)))
        .collect();
    pieces.sort_unstable();
    let mut expected_start = SEGMENT_HEADER_LEN;
    for (i, &(start, end, _)) in pieces.iter().enumerate() {
        assert_eq!(start, expected_start, "a gap or an overlap at {start}");
        assert!(end > start);
        if !pieces[i].2 {
            let next = pieces.get(i + 1);
            assert!(next.is_some_and(|p| p.2), "a skipped stretch with no record after it");
        }
        expected_start = end;
    }
    for (range, record) in &image.records {
        let bytes = &file[range.start as usize..range.end as usize];
        let mut again = Vec::new();
        encode_into(record, None, format, &mut again);
        assert_eq!(again, bytes, "a record does not encode back to its bytes");
    }
    assert_eq!(image.valid_len, expected_start, "valid_len is not the end of the last piece");
    match image.corrupt {
        None => assert_eq!(image.valid_len, file.len() as u64, "a clean read stopped early"),
        Some(_) => assert!(image.valid_len < file.len() as u64, "corrupt, yet read to the end"),
    }
}

fn check_chunk(file: &Bytes, image: &SegmentImage) {
    let Some(format) = image.format else {
        return;
    };
    let chunk = file.slice(SEGMENT_HEADER_LEN as usize..);
    let mut decoded = Vec::new();
    let stop = decode_chunk(&chunk, format, usize::MAX, &mut decoded);
    let first_skip = image.skipped.first().map(|(r, _)| r.start);
    let before: Vec<_> = image
        .records
        .iter()
        .filter(|(r, _)| first_skip.map_or(true, |s| r.end <= s))
        .collect();
    assert_eq!(decoded.len(), before.len(), "the two readers disagree on the count");
    for ((end, record), (range, expected)) in decoded.iter().zip(before) {
        assert_eq!(*end as u64 + SEGMENT_HEADER_LEN, range.end);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_into(record, None, format, &mut a);
        encode_into(expected, None, format, &mut b);
        assert_eq!(a, b);
    }
    let clean = image.corrupt.is_none() && image.skipped.is_empty();
    assert_eq!(stop == Stop::End, clean, "the two readers stop differently");
}
