//! The persisted read position: `read-position`, rewritten in place.
//!
//! The file is 1 KiB, written whole once (through `read-position.tmp`, a
//! rename and a directory sync) and then only rewritten in place, so
//! storing a position needs no new disk space: a full disk cannot stop it.
//! It holds two slots, at offsets 0 and 512 (different sectors):
//!
//! ```text
//! IRQP | version u32 (2) | counter u64 | segment u64 | offset u64 | CRC-32 of the 32 bytes before
//! ```
//!
//! Each store writes the slot not holding the newest position, with the
//! counter one higher, and syncs it. The valid slot with the highest counter
//! wins on load, so a torn write leaves the other slot, the previous
//! position, in force. A store that fails is tried again on the same slot.
//!
//! The first release wrote 28 bytes (`IRQP | 1 | segment | offset | CRC`)
//! replaced whole; that file is still read, and replaced by the new one when
//! the queue opens. A missing or damaged file means "nothing committed":
//! everything still on disk is replayed (at-least-once).

use std::io;
use std::path::Path;

use super::fs::{read_exact_at, write_all, write_all_at, Filesystem, RewriteFile};
use super::segment::MAX_SEQ;
use super::{io_error, Position, QueueError};

pub const POSITION_FILE: &str = "read-position";
pub const POSITION_TMP: &str = "read-position.tmp";

const MAGIC: [u8; 4] = *b"IRQP";
/// The whole file, and where each slot starts.
pub const FILE_LEN: u64 = 1024;
const SLOT_SPACING: u64 = 512;
const SLOT_LEN: usize = 36;
const VERSION: u32 = 2;
/// The first release's file.
const V1_LEN: u64 = 28;

/// The open position file and what is in it.
#[derive(Default)]
pub struct Store {
    /// `None` until the file in the current form exists.
    file: Option<Box<dyn RewriteFile>>,
    /// The counter of the newest valid slot.
    counter: u64,
    /// The slot to write next (0 or 1).
    slot: u64,
    /// What the file holds now, as far as we know.
    stored: Option<Position>,
}

fn encode_slot(counter: u64, pos: Position) -> [u8; SLOT_LEN] {
    let mut bytes = [0; SLOT_LEN];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..8].copy_from_slice(&VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&counter.to_le_bytes());
    bytes[16..24].copy_from_slice(&pos.segment.to_le_bytes());
    bytes[24..32].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..32]);
    bytes[32..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

fn crc_ok(bytes: &[u8], len: usize) -> bool {
    let crc = u32::from_le_bytes([bytes[len], bytes[len + 1], bytes[len + 2], bytes[len + 3]]);
    crc32fast::hash(&bytes[..len]) == crc
}

/// The counter and position in one slot, if it is valid.
fn decode_slot(bytes: &[u8]) -> Option<(u64, Position)> {
    let valid =
        bytes[..4] == MAGIC && bytes[4..8] == VERSION.to_le_bytes() && crc_ok(bytes, SLOT_LEN - 4);
    let pos = Position {
        segment: u64_at(bytes, 16),
        offset: u64_at(bytes, 24),
    };
    (valid && pos.segment < MAX_SEQ).then_some((u64_at(bytes, 8), pos))
}

/// The position in a first-release file.
fn decode_v1(bytes: &[u8]) -> Option<Position> {
    let valid = bytes[..4] == MAGIC && bytes[4..8] == 1u32.to_le_bytes() && crc_ok(bytes, 24);
    let pos = Position {
        segment: u64_at(bytes, 8),
        offset: u64_at(bytes, 16),
    };
    (valid && pos.segment < MAX_SEQ).then_some(pos)
}

impl Store {
    /// Reads the stored position of the queue in `dir`: `None` when there is
    /// none or it is damaged (logged), an error only when the file cannot be
    /// read at all. A file in the current form is kept open for rewriting.
    pub fn open(fs: &dyn Filesystem, dir: &Path) -> Result<(Store, Option<Position>), QueueError> {
        let path = dir.join(POSITION_FILE);
        let file = match fs.open_read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Store::default(), None)),
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        let size = file.size().map_err(io_error("read", &path))?;
        let mut bytes = vec![0; size.min(FILE_LEN) as usize];
        read_exact_at(file.as_ref(), &mut bytes, 0).map_err(io_error("read", &path))?;
        let mut store = Store::default();
        let found = match size {
            V1_LEN => decode_v1(&bytes),
            FILE_LEN => {
                store.file = fs.open_rewrite(&path).ok();
                store.load_slots(&bytes)
            }
            _ => None,
        };
        if found.is_none() {
            tracing::warn!(path = %path.display(), "damaged queue read position; replaying everything still queued");
        }
        Ok((store, found))
    }

    /// Takes the newest valid slot of a current-form file.
    fn load_slots(&mut self, bytes: &[u8]) -> Option<Position> {
        let slots = [0, 1].map(|i| {
            let at = (i * SLOT_SPACING) as usize;
            decode_slot(&bytes[at..at + SLOT_LEN])
        });
        let (newest, (counter, pos)) = match slots {
            [Some(a), Some(b)] if b.0 > a.0 => (1, b),
            [Some(a), _] => (0, a),
            [None, Some(b)] => (1, b),
            [None, None] => return None,
        };
        self.counter = counter;
        self.slot = 1 - newest;
        self.stored = Some(pos);
        Some(pos)
    }

    /// Whether the file is in the current form (rewritten in place).
    pub fn is_current(&self) -> bool {
        self.file.is_some()
    }

    /// Makes `pos` the durable read position of the queue in `dir`.
    pub fn save(
        &mut self,
        fs: &dyn Filesystem,
        dir: &Path,
        pos: Position,
    ) -> Result<(), QueueError> {
        if self.stored == Some(pos) && self.file.is_some() {
            return Ok(());
        }
        let Some(file) = self.file.as_mut() else {
            return self.create(fs, dir, pos);
        };
        let path = dir.join(POSITION_FILE);
        let counter = self.counter + 1;
        let slot = encode_slot(counter, pos);
        write_all_at(file.as_mut(), &slot, self.slot * SLOT_SPACING)
            .map_err(io_error("write", &path))?;
        file.sync().map_err(io_error("sync", &path))?;
        self.counter = counter;
        self.slot = 1 - self.slot;
        self.stored = Some(pos);
        Ok(())
    }

    /// Writes the whole file with `pos` in its first slot, durably, and
    /// keeps it open: the one store that needs new disk space.
    fn create(&mut self, fs: &dyn Filesystem, dir: &Path, pos: Position) -> Result<(), QueueError> {
        let tmp = dir.join(POSITION_TMP);
        let path = dir.join(POSITION_FILE);
        let mut bytes = vec![0; FILE_LEN as usize];
        let counter = self.counter + 1;
        bytes[..SLOT_LEN].copy_from_slice(&encode_slot(counter, pos));
        let mut file = fs.create(&tmp).map_err(io_error("create", &tmp))?;
        write_all(file.as_mut(), &bytes).map_err(io_error("write", &tmp))?;
        file.sync().map_err(io_error("sync", &tmp))?;
        drop(file);
        fs.rename(&tmp, &path).map_err(io_error("rename", &tmp))?;
        fs.sync_dir(dir).map_err(io_error("sync", dir))?;
        self.file = Some(fs.open_rewrite(&path).map_err(io_error("open", &path))?);
        self.counter = counter;
        self.slot = 1;
        self.stored = Some(pos);
        Ok(())
    }
}

/// Writes `pos` the way the first release did (28 bytes), for tests of
/// reading it.
#[cfg(test)]
pub fn store_v1(dir: &Path, pos: Position) {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&pos.segment.to_le_bytes());
    bytes.extend_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join(POSITION_FILE), bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::super::memfs::MemFs;
    use super::*;

    fn pos(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }

    #[test]
    fn a_position_beyond_the_sequence_range_is_refused() {
        assert_eq!(decode_slot(&encode_slot(1, pos(MAX_SEQ, 16))), None);
        let last = pos(MAX_SEQ - 1, 16);
        assert_eq!(decode_slot(&encode_slot(1, last)), Some((1, last)));
    }

    #[test]
    fn a_slot_round_trips_and_any_damage_is_refused() {
        let bytes = encode_slot(9, pos(7, 4242));
        assert_eq!(decode_slot(&bytes), Some((9, pos(7, 4242))));
        for i in 0..SLOT_LEN {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert_eq!(decode_slot(&bad), None, "flip at {i}");
        }
    }

    #[test]
    fn stores_alternate_slots_and_the_newest_valid_one_wins() {
        let fs = MemFs::default();
        let dir = Path::new("/q");
        fs.create_dir_all(dir).unwrap();
        let mut store = Store::default();
        for n in 1..=5 {
            store.save(&fs, dir, pos(3, 100 * n)).unwrap();
        }
        let path = dir.join(POSITION_FILE);
        assert_eq!(fs.read_file(&path).unwrap().len() as u64, FILE_LEN);
        assert_eq!(Store::open(&fs, dir).unwrap().1, Some(pos(3, 500)));
        // the newest slot (the first: the fifth store) torn: the fourth wins
        fs.modify(&path, |b| b[20] ^= 0xff);
        let (mut reopened, found) = Store::open(&fs, dir).unwrap();
        assert_eq!(found, Some(pos(3, 400)));
        // the next store goes over the torn slot, never over the good one
        reopened.save(&fs, dir, pos(3, 600)).unwrap();
        assert_eq!(Store::open(&fs, dir).unwrap().1, Some(pos(3, 600)));
        fs.modify(&path, |b| b[512 + 20] ^= 0xff);
        assert_eq!(Store::open(&fs, dir).unwrap().1, Some(pos(3, 600)));
        // a longer file is no position file, even if it starts like one
        fs.modify(&path, |b| b.push(0));
        assert_eq!(Store::open(&fs, dir).unwrap().1, None);
    }
}
