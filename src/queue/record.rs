//! One record on disk: encoding, checked decoding, and the CRC.
//!
//! The layout is described in the module doc of [`crate::queue`]. Decoding
//! trusts nothing: a length is checked against [`MAX_PAYLOAD_LEN`] and the
//! bytes at hand before anything is read or allocated, the CRC is checked
//! before any field, and every field must be exactly what the encoder would
//! write (known kind, known flags, UTF-8 names), so a record that decodes
//! encodes back to the very same bytes.
//!
//! Two frame layouts exist, named by the format version in the file header:
//! [`Format::V1`] (`len | crc(payload)`, the first release) is still read,
//! and written only to append to a version-1 dead-letter file;
//! [`Format::V2`] (`sync | len | crc(len ‖ payload)`) is what new files get.

use std::ops::Range;

use bytes::Bytes;

use super::{Record, RecordKind};
use crate::payload::Payload;

/// The frame header of the current format: sync marker, length and CRC.
pub const FRAME_HEADER_LEN: u64 = Format::V2.header_len();

/// Where the length is in a frame header of the current format.
pub const LEN_AT: usize = 4;

/// The first bytes of every version-2 frame: `0xff` and `0xfe` never occur
/// in UTF-8, so line protocol and statements cannot hold the marker.
pub const SYNC: [u8; 4] = [0xff, b'Q', b'R', 0xfe];

/// The largest record payload accepted, written or read (1 GiB).
pub const MAX_PAYLOAD_LEN: u64 = 1 << 30;

/// kind, flags, accepted_at_ms and the three name lengths.
const FIXED_LEN: u64 = 1 + 1 + 8 + 3 * 4;

const FLAG_GZIP: u8 = 0x01;
/// Set only in the dead-letter file: a reason follows the precision.
const FLAG_REASON: u8 = 0x02;
/// The client's credentials follow the precision.
const FLAG_AUTH: u8 = 0x04;

/// A frame layout, named by the format version of the file holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `u32 len | u32 crc(payload)`: a damaged length cannot be told from a
    /// damaged payload, so nothing after a bad frame can be trusted.
    V1,
    /// `sync | u32 len | u32 crc(len ‖ payload)`: a reader that meets a bad
    /// frame can find the next good one.
    V2,
}

impl Format {
    /// The format a file header's version names.
    pub fn from_version(version: u32) -> Option<Format> {
        match version {
            1 => Some(Format::V1),
            2 => Some(Format::V2),
            _ => None,
        }
    }

    pub const fn version(self) -> u32 {
        match self {
            Format::V1 => 1,
            Format::V2 => 2,
        }
    }

    pub const fn header_len(self) -> u64 {
        match self {
            Format::V1 => 8,
            Format::V2 => 12,
        }
    }

    const fn len_at(self) -> usize {
        match self {
            Format::V1 => 0,
            Format::V2 => LEN_AT,
        }
    }

    fn crc(self, len: [u8; 4], payload: &[u8]) -> u32 {
        match self {
            Format::V1 => crc32fast::hash(payload),
            Format::V2 => {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&len);
                hasher.update(payload);
                hasher.finalize()
            }
        }
    }
}

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

/// The frame of `record` (as written in a new segment).
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.encoded_len() as usize);
    encode_into(record, None, Format::V2, &mut out);
    out
}

/// Appends the frame of `record` to `out` in `format`; `reason` only in
/// dead letters.
///
/// The caller keeps the payload under [`MAX_PAYLOAD_LEN`].
pub fn encode_into(record: &Record, reason: Option<&str>, format: Format, out: &mut Vec<u8>) {
    let start = out.len();
    let header = format.header_len() as usize;
    out.reserve(header + record.payload_len(reason) as usize);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN as usize][..header]);
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
    let payload = &out[start + header..];
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = format.crc(len, payload).to_le_bytes();
    let frame = &mut out[start..start + header];
    if format == Format::V2 {
        frame[..4].copy_from_slice(&SYNC);
    }
    let at = format.len_at();
    frame[at..at + 4].copy_from_slice(&len);
    frame[at + 4..at + 8].copy_from_slice(&crc);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The whole length of the `format` frame starting at `buf[0]`: `None`
/// while its header is not all at hand, an error when the header is not one
/// (no sync marker, a length out of range).
pub fn frame_len(buf: &[u8], format: Format) -> Result<Option<u64>, Corrupt> {
    let header_len = format.header_len();
    let Some(header) = buf.get(..header_len as usize) else {
        return Ok(None);
    };
    if format == Format::V2 && header[..4] != SYNC {
        return Err("no frame marker");
    }
    let at = format.len_at();
    let len = u64::from(read_u32(&header[at..]));
    if !(FIXED_LEN..=MAX_PAYLOAD_LEN).contains(&len) {
        return Err("record length out of range");
    }
    Ok(Some(header_len + len))
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
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

/// Checks and decodes exactly one whole `format` frame; `dead_letter`
/// allows a reason.
pub fn decode(frame: &[u8], format: Format, dead_letter: bool) -> Result<Fields<'_>, Corrupt> {
    check(frame, format)?;
    fields(frame, format, dead_letter)
}

/// Checks that `frame` is exactly one frame with a matching CRC (not its
/// fields: [`fields`] does that).
pub fn check(frame: &[u8], format: Format) -> Result<(), Corrupt> {
    if frame_len(frame, format)? != Some(frame.len() as u64) {
        return Err("record length does not match its frame");
    }
    let at = format.len_at();
    let len = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
    let crc = read_u32(&frame[at + 4..]);
    let payload = &frame[format.header_len() as usize..];
    match format.crc(len, payload) == crc {
        true => Ok(()),
        false => Err("checksum mismatch"),
    }
}

/// The fields of a frame that passed [`check`], checked one by one.
pub fn fields(frame: &[u8], format: Format, dead_letter: bool) -> Result<Fields<'_>, Corrupt> {
    let mut cursor = Cursor {
        buf: frame,
        at: (format.header_len() as usize).min(frame.len()),
    };
    let kind = match cursor.u8()? {
        1 => RecordKind::Write,
        2 => RecordKind::Statement,
        3 => RecordKind::PromWrite,
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

/// Decodes whole `format` frames from the front of `chunk` into `out` as
/// (end of the frame in `chunk`, record); bodies are slices of `chunk`.
pub fn decode_chunk(
    chunk: &Bytes,
    format: Format,
    max_records: usize,
    out: &mut Vec<(usize, Record)>,
) -> Stop {
    let mut at = 0;
    let mut decoded = 0;
    loop {
        if at == chunk.len() {
            return Stop::End;
        }
        if decoded == max_records {
            return Stop::Full;
        }
        let len = match frame_len(&chunk[at..], format) {
            Ok(Some(len)) if len <= (chunk.len() - at) as u64 => len as usize,
            Ok(len) => return Stop::Partial { at, len },
            Err(why) => return Stop::Corrupt { at, why },
        };
        let frame = chunk.slice(at..at + len);
        match decode(&frame, format, false) {
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
        let fields = decode(&frame, Format::V2, false).unwrap();
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
        let fields = decode(&frame, Format::V2, false).unwrap();
        assert_eq!(fields.auth, Some("Basic Ym9iOnNlY3JldA=="));
        assert_eq!(&frame[fields.body], b"cpu v=1\n");
        let without = encode(&record("db", Payload::from("cpu v=1\n")));
        assert_eq!(decode(&without, Format::V2, false).unwrap().auth, None);
    }

    #[test]
    fn a_prometheus_remote_write_keeps_its_kind_and_its_snappy_body() {
        let body = Bytes::from_static(b"\x02\x04\x0a\x00");
        let prom = Record {
            kind: RecordKind::PromWrite,
            precision: String::new(),
            gzip: false,
            ..record("db", Payload::from(body.clone()))
        };
        let frame = Bytes::from(encode(&prom));
        let fields = decode(&frame, Format::V2, false).unwrap();
        assert_eq!(fields.kind, RecordKind::PromWrite);
        assert_eq!(fields.to_record(&frame).body.to_contiguous(), body);
        let mut unknown = frame.to_vec();
        unknown[FRAME_HEADER_LEN as usize] = 4;
        assert!(fields_of_unknown_kind(&unknown));
    }

    /// A frame whose kind is not known (CRC fixed up) is refused.
    fn fields_of_unknown_kind(frame: &[u8]) -> bool {
        let mut frame = frame.to_vec();
        let header = FRAME_HEADER_LEN as usize;
        let len = frame[LEN_AT..LEN_AT + 4].to_vec();
        let crc = Format::V2.crc([len[0], len[1], len[2], len[3]], &frame[header..]);
        frame[LEN_AT + 4..LEN_AT + 8].copy_from_slice(&crc.to_le_bytes());
        decode(&frame, Format::V2, false) == Err("unknown record kind")
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught_in_either_format() {
        let r = record("db", Payload::from("cpu v=1\n"));
        for format in [Format::V1, Format::V2] {
            let mut frame = Vec::new();
            encode_into(&r, None, format, &mut frame);
            assert!(decode(&frame, format, false).is_ok());
            for i in 0..frame.len() {
                let mut bad = frame.clone();
                bad[i] ^= 0x10;
                let caught = decode(&bad, format, false).is_err();
                assert!(caught, "{format:?}: flip at {i} went unnoticed");
            }
        }
    }

    #[test]
    fn a_version_2_crc_covers_the_length() {
        let mut frame = encode(&record("db", Payload::from("cpu v=1\n")));
        // one byte less, with a CRC of the payload alone as version 1 had it
        frame.pop();
        let len = (frame.len() as u32 - 12).to_le_bytes();
        frame[LEN_AT..LEN_AT + 4].copy_from_slice(&len);
        let crc = crc32fast::hash(&frame[12..]);
        frame[8..12].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&frame, Format::V2, false), Err("checksum mismatch"));
    }

    #[test]
    fn lengths_from_disk_are_capped_and_the_marker_is_checked() {
        let mut frame = encode(&record("db", Payload::from("x")));
        let len = LEN_AT..LEN_AT + 4;
        frame[len.clone()].copy_from_slice(&u32::MAX.to_le_bytes());
        let out_of_range = Err("record length out of range");
        assert_eq!(frame_len(&frame, Format::V2), out_of_range);
        frame[len].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(frame_len(&frame, Format::V2), out_of_range);
        frame[0] = b'x';
        assert_eq!(frame_len(&frame, Format::V2), Err("no frame marker"));
    }

    #[test]
    fn a_dead_letter_reason_is_only_allowed_in_the_dead_letter_file() {
        let mut frame = Vec::new();
        let r = record("db", Payload::from("x"));
        encode_into(&r, Some("400: bad"), Format::V2, &mut frame);
        let reason = decode(&frame, Format::V2, true).unwrap().reason;
        assert_eq!(reason, Some("400: bad"));
        let refused = decode(&frame, Format::V2, false);
        assert_eq!(refused, Err("unknown record flags"));
    }

    #[test]
    fn a_chunk_stops_at_a_partial_frame_and_says_how_long_it_is() {
        let first = encode(&record("db", Payload::from("a")));
        let second = encode(&record("db", Payload::from("bb")));
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second[..14]);
        let mut out = Vec::new();
        let stop = decode_chunk(&Bytes::from(bytes), Format::V2, 10, &mut out);
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
