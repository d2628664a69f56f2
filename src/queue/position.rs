//! The persisted read position: `read-position`, 28 bytes, replaced whole.
//!
//! `IRQP` | version u32 | segment u64 | offset u64 | CRC32 of the first 24
//! bytes, little-endian. It is written to `read-position.tmp`, fsynced,
//! renamed over `read-position`, and the directory is fsynced, so after a
//! crash the file holds either the old or the new position, never a mix. A
//! missing or damaged file means "nothing committed": everything still on
//! disk is replayed (at-least-once).

use std::io;
use std::path::Path;

use super::fs::{read_exact_at, write_all, Filesystem};
use super::segment::{FORMAT_VERSION, MAX_SEQ};
use super::{io_error, Position, QueueError};

pub const POSITION_FILE: &str = "read-position";
pub const POSITION_TMP: &str = "read-position.tmp";

const MAGIC: [u8; 4] = *b"IRQP";
const LEN: usize = 28;

fn encode(pos: Position) -> [u8; LEN] {
    let mut bytes = [0; LEN];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&pos.segment.to_le_bytes());
    bytes[16..24].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..24]);
    bytes[24..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8; LEN]) -> Option<Position> {
    let crc = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let valid = bytes[..4] == MAGIC
        && bytes[4..8] == FORMAT_VERSION.to_le_bytes()
        && crc32fast::hash(&bytes[..24]) == crc;
    let mut segment = [0; 8];
    let mut offset = [0; 8];
    segment.copy_from_slice(&bytes[8..16]);
    offset.copy_from_slice(&bytes[16..24]);
    let segment = u64::from_le_bytes(segment);
    let offset = u64::from_le_bytes(offset);
    (valid && segment < MAX_SEQ).then_some(Position { segment, offset })
}

/// Makes `pos` the durable read position of the queue in `dir`.
pub fn store(fs: &dyn Filesystem, dir: &Path, pos: Position) -> Result<(), QueueError> {
    let tmp = dir.join(POSITION_TMP);
    let path = dir.join(POSITION_FILE);
    let mut file = fs.create(&tmp).map_err(io_error("create", &tmp))?;
    write_all(file.as_mut(), &encode(pos)).map_err(io_error("write", &tmp))?;
    file.sync().map_err(io_error("sync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(io_error("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io_error("sync", dir))
}

/// The stored read position: `None` when there is none or it is damaged
/// (logged), an error only when the file cannot be read at all.
pub fn load(fs: &dyn Filesystem, dir: &Path) -> Result<Option<Position>, QueueError> {
    let path = dir.join(POSITION_FILE);
    let file = match fs.open_read(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open", &path)(e)),
    };
    let mut bytes = [0; LEN];
    let size = file.size().map_err(io_error("read", &path))?;
    let read = if size == LEN as u64 {
        read_exact_at(file.as_ref(), &mut bytes, 0).map_err(io_error("read", &path))?;
        decode(&bytes)
    } else {
        None
    };
    if read.is_none() {
        tracing::warn!(path = %path.display(), "damaged queue read position; replaying everything still queued");
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_beyond_the_sequence_range_is_refused() {
        let far = Position {
            segment: MAX_SEQ,
            offset: 16,
        };
        assert_eq!(decode(&encode(far)), None);
        let last = Position {
            segment: MAX_SEQ - 1,
            offset: 16,
        };
        assert_eq!(decode(&encode(last)), Some(last));
    }

    #[test]
    fn a_position_round_trips_and_any_damage_is_refused() {
        let pos = Position {
            segment: 7,
            offset: 4242,
        };
        let bytes = encode(pos);
        assert_eq!(decode(&bytes), Some(pos));
        for i in 0..LEN {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
    }
}
