//! Fuzzes the durable queue's segment reader.
//!
//! The first byte picks a mode, the rest is a segment file. Even: the file
//! as it is. Odd: the CRC of every frame its lengths point at is fixed up
//! first, so inputs get past the checksum into the field decoder.
//!
//! Invariants: never panics; records come back in file order, back to back
//! from the end of the header; reading stops at the first bad record and
//! returns nothing after it; a file read without complaint was read to its
//! end; every record encodes back to exactly the bytes it was read from;
//! decoding the same bytes as one chunk (the replayer's path) gives the same
//! records and stops at the same place.
//!
//! Run from the repository root (new inputs go to the git-ignored corpus,
//! the seeds are only read):
//!
//! ```text
//! cargo +nightly fuzz run queue_segment fuzz/corpus/queue_segment fuzz/seeds/queue_segment -- -max_total_time=120
//! ```

#![no_main]

use bytes::Bytes;
use influxdb_router::queue::record::{decode_chunk, encode, Stop, FRAME_HEADER_LEN};
use influxdb_router::queue::segment::{read_segment, SegmentImage, SEGMENT_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut file);
    }
    let file = Bytes::from(file);
    let image = read_segment(&file).expect("reading memory cannot fail");
    check_image(&file, &image);
    check_chunk(&file, &image);
});

/// Rewrites the CRC of each frame the lengths walk through.
fn fix_crcs(file: &mut [u8]) {
    let mut at = SEGMENT_HEADER_LEN as usize;
    while at + FRAME_HEADER_LEN as usize <= file.len() {
        let len = u32::from_le_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]);
        let payload = at + FRAME_HEADER_LEN as usize;
        let Some(end) = payload
            .checked_add(len as usize)
            .filter(|&e| e <= file.len())
        else {
            return;
        };
        let crc = crc32fast::hash(&file[payload..end]);
        file[at + 4..payload].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

fn check_image(file: &Bytes, image: &SegmentImage) {
    let Some(_) = image.sequence else {
        assert!(
            image.records.is_empty(),
            "records from a file with a bad header"
        );
        assert_eq!(image.valid_len, 0);
        assert!(image.corrupt.is_some());
        return;
    };
    let mut expected_start = SEGMENT_HEADER_LEN;
    for (range, record) in &image.records {
        assert_eq!(range.start, expected_start, "records are not back to back");
        let bytes = &file[range.start as usize..range.end as usize];
        assert_eq!(
            encode(record),
            bytes,
            "a record does not encode back to its bytes"
        );
        expected_start = range.end;
    }
    assert_eq!(
        image.valid_len, expected_start,
        "valid_len is not the end of the last record"
    );
    match image.corrupt {
        None => assert_eq!(
            image.valid_len,
            file.len() as u64,
            "a clean read stopped early"
        ),
        Some(_) => assert!(
            image.valid_len < file.len() as u64,
            "corrupt, yet read to the end"
        ),
    }
}

fn check_chunk(file: &Bytes, image: &SegmentImage) {
    if image.sequence.is_none() {
        return;
    }
    let chunk = file.slice(SEGMENT_HEADER_LEN as usize..);
    let mut decoded = Vec::new();
    let stop = decode_chunk(&chunk, usize::MAX, &mut decoded);
    assert_eq!(
        decoded.len(),
        image.records.len(),
        "the two readers disagree on the count"
    );
    for ((end, record), (range, expected)) in decoded.iter().zip(&image.records) {
        assert_eq!(*end as u64 + SEGMENT_HEADER_LEN, range.end);
        assert_eq!(encode(record), encode(expected));
    }
    assert_eq!(
        stop == Stop::End,
        image.corrupt.is_none(),
        "the two readers stop differently"
    );
}
