//! Snappy block format (what Prometheus sends with `Content-Encoding:
//! snappy`, and what InfluxDB answers a remote read with), bounded: the
//! length a block declares is checked against the limit before anything is
//! allocated, so a few bytes claiming gigabytes cost nothing.

use std::fmt;

/// Why a snappy block could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnappyError {
    /// The block declares more bytes than allowed.
    TooLarge { declared: u64, limit: u64 },
    /// Not a snappy block, or a damaged one.
    Corrupt(String),
}

impl fmt::Display for SnappyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnappyError::TooLarge { declared, limit } => write!(
                f,
                "the snappy block decompresses to {declared} bytes, over the limit of {limit}"
            ),
            SnappyError::Corrupt(why) => write!(
                f,
                "not a snappy-compressed body (block format, as Prometheus sends it): {why}"
            ),
        }
    }
}

/// The length `input` says it decompresses to.
pub fn declared_len(input: &[u8]) -> Result<u64, SnappyError> {
    snap::raw::decompress_len(input)
        .map(|len| len as u64)
        .map_err(|e| SnappyError::Corrupt(e.to_string()))
}

/// Decompresses one snappy block of at most `limit` bytes.
pub fn decompress(input: &[u8], limit: u64) -> Result<Vec<u8>, SnappyError> {
    let declared = declared_len(input)?;
    if declared > limit {
        return Err(SnappyError::TooLarge { declared, limit });
    }
    let mut out = vec![0; declared as usize];
    let written = snap::raw::Decoder::new()
        .decompress(input, &mut out)
        .map_err(|e| SnappyError::Corrupt(e.to_string()))?;
    if written != out.len() {
        return Err(SnappyError::Corrupt(format!(
            "the block declares {declared} bytes but holds {written}"
        )));
    }
    Ok(out)
}

/// Compresses `input` as one snappy block.
pub fn compress(input: &[u8]) -> Vec<u8> {
    // only an input over ~4 GiB fails, which no caller builds
    snap::raw::Encoder::new()
        .compress_vec(input)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips() {
        let data = b"cpu value=1\n".repeat(1000);
        let block = compress(&data);
        assert!(block.len() < data.len() / 10);
        assert_eq!(decompress(&block, data.len() as u64).unwrap(), data);
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_any_allocation() {
        // varint 2^32 - 1, then nothing: a real decoder would allocate 4 GiB first
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        match decompress(&claim, 64 << 20) {
            Err(SnappyError::TooLarge { declared, .. }) => assert_eq!(declared, u32::MAX as u64),
            other => panic!("{other:?}"),
        }
        let block = compress(&[7u8; 1000]);
        assert_eq!(
            decompress(&block, 999),
            Err(SnappyError::TooLarge {
                declared: 1000,
                limit: 999
            })
        );
    }

    #[test]
    fn garbage_and_short_blocks_are_corrupt() {
        for bad in [&b""[..], b"\xff", b"\x05garbage", b"\x0a\x00\x01"] {
            assert!(
                matches!(decompress(bad, 1 << 20), Err(SnappyError::Corrupt(_))),
                "{bad:?}"
            );
        }
        let mut block = compress(&b"abcdefgh".repeat(100));
        block.truncate(block.len() - 3);
        assert!(matches!(
            decompress(&block, 1 << 20),
            Err(SnappyError::Corrupt(_))
        ));
    }
}
