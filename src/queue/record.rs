//! One record on disk: encoding, checked decoding, and the CRC.
//!
//! The layout is described in the module doc of [`crate::queue`]. Decoding
//! trusts nothing: a length is checked against [`MAX_PAYLOAD_LEN`] and the
//! bytes at hand before anything is read or allocated, the CRC is checked
//! before any field, and every field must be exactly what the encoder would
//! write (known kind, known flags, UTF-8 names), so a record that decodes
//! encodes back to the very same bytes.

use std::ops::Range;

use bytes::Bytes;

use super::{Record, RecordKind};
use crate::payload::Payload;

/// Length and CRC in front of every record.
pub const FRAME_HEADER_LEN: u64 = 8;

/// The largest record payload accepted, written or read (1 GiB).
pub const MAX_PAYLOAD_LEN: u64 = 1 << 30;

/// kind, flags, accepted_at_ms and the three name lengths.
const FIXED_LEN: u64 = 1 + 1 + 8 + 3 * 4;

const FLAG_GZIP: u8 = 0x01;
/// Set only in the dead-letter file: a reason follows the precision.
const FLAG_REASON: u8 = 0x02;
/// The client's credentials follow the precision.
const FLAG_AUTH: u8 = 0x04;

/// Why bytes are not a record (for logs and counters).
pub type Corrupt = &'static str;

impl Record {
    /// Bytes the record takes in a segment, frame header included.
    pub fn encoded_len(&self) -> u64 {
        FRAME_HEADER_LEN + self.payload_len(None)
    }

    fn payload_len(&self, reason: Option<&str>) -> u64 {
        let names = self.db.len() + self.rp.len() + self.precision.len();
        let auth = self.auth.as_ref().map_or(0, |a| 4 + a.expose().len());
        let reason = reason.map_or(0, |r| 4 + r.len());
        FIXED_LEN + (names + auth + reason) as u64 + self.body.len()
    }
}

/// The frame of `record` (as written in a segment).
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.encoded_len() as usize);
    encode_into(record, None, &mut out);
    out
}

/// Appends the frame of `record` to `out`; `reason` only in dead letters.
///
/// The caller keeps the payload under [`MAX_PAYLOAD_LEN`].
pub fn encode_into(record: &Record, reason: Option<&str>, out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve((FRAME_HEADER_LEN + record.payload_len(reason)) as usize);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN as usize]);
    out.push(record.kind as u8);
    let gzip = if record.gzip { FLAG_GZIP } else { 0 };
    let has_reason = if reason.is_some() { FLAG_REASON } else { 0 };
    let has_auth = if record.auth.is_some() { FLAG_AUTH } else { 0 };
    out.push(gzip | has_reason | has_auth);
    out.extend_from_slice(&record.accepted_at_ms.to_le_bytes());
    for name in [&record.db, &record.rp, &record.precision] {
        put_str(out, name);
    }
    if let Some(auth) = &record.auth {
        put_str(out, auth.expose());
    }
    if let Some(reason) = reason {
        put_str(out, reason);
    }
    for chunk in record.body.chunks() {
        out.extend_from_slice(chunk);
    }
    let payload = &out[start + FRAME_HEADER_LEN as usize..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The whole length of the frame starting at `buf[0]`: `None` while fewer
/// than [`FRAME_HEADER_LEN`] bytes are at hand, an error when the length on
/// disk is out of range.
pub fn frame_len(buf: &[u8]) -> Result<Option<u64>, Corrupt> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    if buf.len() < FRAME_HEADER_LEN as usize {
        return Ok(None);
    }
    let len = u64::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    if !(FIXED_LEN..=MAX_PAYLOAD_LEN).contains(&len) {
        return Err("record length out of range");
    }
    Ok(Some(FRAME_HEADER_LEN + len))
}

/// The checked fields of one frame, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    pub kind: RecordKind,
    pub gzip: bool,
    pub accepted_at_ms: u64,
    pub db: &'a str,
    pub rp: &'a str,
    pub precision: &'a str,
    /// The client's `Authorization` header value, when it sent one.
    pub auth: Option<&'a str>,
    /// Only in the dead-letter file.
    pub reason: Option<&'a str>,
    /// Where the body is in the frame.
    pub body: Range<usize>,
}

impl Fields<'_> {
    /// The record, its body sliced out of `frame` (no copy).
    pub fn to_record(&self, frame: &Bytes) -> Record {
        Record {
            kind: self.kind,
            accepted_at_ms: self.accepted_at_ms,
            db: self.db.to_string(),
            rp: self.rp.to_string(),
            precision: self.precision.to_string(),
            gzip: self.gzip,
            auth: self.auth.map(crate::config::Secret::new),
            body: Payload::from(frame.slice(self.body.clone())),
        }
    }
}

/// Checks and decodes exactly one whole frame; `dead_letter` allows a reason.
pub fn decode(frame: &[u8], dead_letter: bool) -> Result<Fields<'_>, Corrupt> {
    if frame_len(frame)? != Some(frame.len() as u64) {
        return Err("record length does not match its frame");
    }
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let mut cursor = Cursor {
        buf: frame,
        at: FRAME_HEADER_LEN as usize,
    };
    if crc32fast::hash(&frame[cursor.at..]) != crc {
        return Err("checksum mismatch");
    }
    let kind = match cursor.u8()? {
        1 => RecordKind::Write,
        2 => RecordKind::Statement,
        _ => return Err("unknown record kind"),
    };
    let flags = cursor.u8()?;
    let allowed = if dead_letter {
        FLAG_GZIP | FLAG_AUTH | FLAG_REASON
    } else {
        FLAG_GZIP | FLAG_AUTH
    };
    if flags & !allowed != 0 {
        return Err("unknown record flags");
    }
    if dead_letter && flags & FLAG_REASON == 0 {
        return Err("dead letter without a reason");
    }
    let accepted_at_ms = cursor.u64()?;
    let (db, rp, precision) = (cursor.str()?, cursor.str()?, cursor.str()?);
    let auth = if flags & FLAG_AUTH != 0 {
        Some(cursor.str()?)
    } else {
        None
    };
    let reason = if flags & FLAG_REASON != 0 {
        Some(cursor.str()?)
    } else {
        None
    };
    Ok(Fields {
        kind,
        gzip: flags & FLAG_GZIP != 0,
        accepted_at_ms,
        db,
        rp,
        precision,
        auth,
        reason,
        body: cursor.at..frame.len(),
    })
}

/// Reads fields front to back, never past the end.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.at.checked_add(n).ok_or("field runs past the record")?;
        let bytes = self
            .buf
            .get(self.at..end)
            .ok_or("field runs past the record")?;
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut le = [0; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(le))
    }

    fn str(&mut self) -> Result<&'a str, Corrupt> {
        let len = usize::try_from(self.u32()?).map_err(|_| "field runs past the record")?;
        std::str::from_utf8(self.take(len)?).map_err(|_| "name is not UTF-8")
    }
}

/// Where decoding a buffer of frames stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every byte was a whole record.
    End,
    /// `max_records` were decoded.
    Full,
    /// A frame starts at `at` but only part of it is in the buffer; `len`
    /// is its whole length once the frame header is there.
    Partial { at: usize, len: Option<u64> },
    /// The frame at `at` is not a record.
    Corrupt { at: usize, why: Corrupt },
}

/// Decodes whole frames from the front of `chunk` into `out` as (end of the
/// frame in `chunk`, record); bodies are slices of `chunk`.
pub fn decode_chunk(chunk: &Bytes, max_records: usize, out: &mut Vec<(usize, Record)>) -> Stop {
    let mut at = 0;
    let mut decoded = 0;
    loop {
        if at == chunk.len() {
            return Stop::End;
        }
        if decoded == max_records {
            return Stop::Full;
        }
        let len = match frame_len(&chunk[at..]) {
            Ok(Some(len)) if len <= (chunk.len() - at) as u64 => len as usize,
            Ok(len) => return Stop::Partial { at, len },
            Err(why) => return Stop::Corrupt { at, why },
        };
        let frame = chunk.slice(at..at + len);
        match decode(&frame, false) {
            Ok(fields) => out.push((at + len, fields.to_record(&frame))),
            Err(why) => return Stop::Corrupt { at, why },
        }
        at += len;
        decoded += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(db: &str, body: Payload) -> Record {
        Record {
            kind: RecordKind::Write,
            accepted_at_ms: 1_700_000_000_123,
            db: db.into(),
            rp: "autogen".into(),
            precision: "ms".into(),
            gzip: true,
            auth: None,
            body,
        }
    }

    #[test]
    fn a_frame_decodes_to_the_fields_it_was_encoded_from() {
        let r = record("mesures_été", Payload::from("cpu v=1\n"));
        let frame = encode(&r);
        assert_eq!(frame.len() as u64, r.encoded_len());
        let fields = decode(&frame, false).unwrap();
        assert_eq!(fields.db, "mesures_été");
        assert_eq!((fields.rp, fields.precision), ("autogen", "ms"));
        assert!(fields.gzip);
        assert_eq!(&frame[fields.body], b"cpu v=1\n");
    }

    #[test]
    fn the_clients_credentials_travel_with_the_record() {
        let with = Record {
            auth: Some(crate::config::Secret::new("Basic Ym9iOnNlY3JldA==")),
            ..record("db", Payload::from("cpu v=1\n"))
        };
        let frame = encode(&with);
        assert_eq!(frame.len() as u64, with.encoded_len());
        let fields = decode(&frame, false).unwrap();
        assert_eq!(fields.auth, Some("Basic Ym9iOnNlY3JldA=="));
        assert_eq!(&frame[fields.body], b"cpu v=1\n");
        let without = encode(&record("db", Payload::from("cpu v=1\n")));
        assert_eq!(decode(&without, false).unwrap().auth, None);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let frame = encode(&record("db", Payload::from("cpu v=1\n")));
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, false).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn lengths_from_disk_are_capped() {
        let mut frame = encode(&record("db", Payload::from("x")));
        frame[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(frame_len(&frame), Err("record length out of range"));
        frame[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(frame_len(&frame), Err("record length out of range"));
    }

    #[test]
    fn a_dead_letter_reason_is_only_allowed_in_the_dead_letter_file() {
        let mut frame = Vec::new();
        encode_into(
            &record("db", Payload::from("x")),
            Some("400: bad"),
            &mut frame,
        );
        assert_eq!(decode(&frame, true).unwrap().reason, Some("400: bad"));
        assert_eq!(decode(&frame, false), Err("unknown record flags"));
    }

    #[test]
    fn a_chunk_stops_at_a_partial_frame_and_says_how_long_it_is() {
        let first = encode(&record("db", Payload::from("a")));
        let second = encode(&record("db", Payload::from("bb")));
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second[..10]);
        let mut out = Vec::new();
        let stop = decode_chunk(&Bytes::from(bytes), 10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, first.len());
        let len = Some(second.len() as u64);
        assert_eq!(
            stop,
            Stop::Partial {
                at: first.len(),
                len
            }
        );
    }
}
