//! Just enough MessagePack to read InfluxDB's query answers
//! (`Accept: application/x-msgpack`): a chunked answer is a sequence of
//! top-level maps, one per chunk. Unlike JSON, MessagePack keeps a field's
//! type per value (integer, float, string, boolean) and times as 64-bit
//! integers, which an exact copy needs.
//!
//! [`complete`] tells whether a buffer holds a whole value yet (so a chunk is
//! parsed only once it has fully arrived), and [`Cursor`] reads values in
//! place without allocating: strings are slices of the buffer.

/// A malformed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed MessagePack answer: {}", self.0)
    }
}

/// A scalar value, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    Uint(u64),
    Float(f64),
    Str(&'a [u8]),
}

/// How deep containers may nest (InfluxDB's answers need 6).
const MAX_DEPTH: usize = 32;

/// The length of the whole value at the start of `buf`, or `None` when the
/// buffer ends before the value does.
pub fn complete(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    Scanner::default().scan(buf)
}

/// Finds where a top-level value ends in a buffer that grows: each call
/// goes on from where the previous one stopped, so a value that arrives in
/// many pieces is scanned once.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Where the scan stopped (the start of an element not yet whole).
    pos: usize,
    /// Values still to skip at each open container level; empty before a
    /// scan has started.
    pending: Vec<u64>,
}

impl Scanner {
    /// The length of the value at the start of `buf` once it is whole, or
    /// `None` while it is not; `buf` must only have grown since the last
    /// call. After `Some`, the scanner starts over for the next value.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, Malformed> {
        if self.pending.is_empty() {
            self.pos = 0;
            self.pending.push(1);
        }
        let mut cursor = Cursor::new(buf);
        cursor.pos = self.pos;
        while let Some(top) = self.pending.last_mut() {
            if *top == 0 {
                self.pending.pop();
                continue;
            }
            let at = cursor.pos;
            match cursor.head() {
                Ok(Ok(children)) => {
                    *top -= 1;
                    if children > 0 {
                        if self.pending.len() >= MAX_DEPTH {
                            return Err(Malformed("nested too deeply".into()));
                        }
                        self.pending.push(children);
                    }
                }
                Ok(Err(marker)) => return Err(Malformed(format!("unknown marker 0x{marker:02x}"))),
                Err(Short) => {
                    self.pos = at;
                    return Ok(None);
                }
            }
        }
        let end = cursor.pos;
        self.pos = 0;
        Ok(Some(end))
    }
}

/// Ran past the end of the buffer.
struct Short;

/// A reading position in a buffer holding whole values.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short)?;
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> Result<u64, Short> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Consumes one marker with its length and payload bytes; for a
    /// container, returns how many values it holds (its elements are not
    /// consumed). `Err(marker)` inside for a reserved marker.
    fn head(&mut self) -> Result<Result<u64, u8>, Short> {
        let marker = self.take(1)?[0];
        let payload: u64 = match marker {
            0x80..=0x8f => return Ok(Ok(u64::from(marker & 0x0f) * 2)),
            0x90..=0x9f => return Ok(Ok(u64::from(marker & 0x0f))),
            0xde => return Ok(Ok(self.be(2)? * 2)),
            0xdf => return Ok(Ok(self.be(4)? * 2)),
            0xdc => return Ok(Ok(self.be(2)?)),
            0xdd => return Ok(Ok(self.be(4)?)),
            0xc1 => return Ok(Err(marker)),
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0xa0..=0xbf => u64::from(marker & 0x1f),
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 | 0xca => 4,
            0xcf | 0xd3 | 0xcb => 8,
            0xd9 | 0xc4 => self.be(1)?,
            0xda | 0xc5 => self.be(2)?,
            0xdb | 0xc6 => self.be(4)?,
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            0xc7 => self.be(1)? + 1,
            0xc8 => self.be(2)? + 1,
            0xc9 => self.be(4)? + 1,
        };
        let payload = usize::try_from(payload).map_err(|_| Short)?;
        self.take(payload)?;
        Ok(Ok(0))
    }

    fn short(&self) -> Malformed {
        Malformed(format!("value cut short at byte {}", self.pos))
    }

    /// Reads a map header: the number of pairs.
    pub fn map_len(&mut self) -> Result<usize, Malformed> {
        let marker = self.take(1).map_err(|_| self.short())?[0];
        let n = match marker {
            0x80..=0x8f => u64::from(marker & 0x0f),
            0xde => self.be(2).map_err(|_| self.short())?,
            0xdf => self.be(4).map_err(|_| self.short())?,
            _ => {
                return Err(Malformed(format!(
                    "expected a map, found marker 0x{marker:02x}"
                )))
            }
        };
        Ok(n as usize)
    }

    /// Reads an array header: the number of elements.
    pub fn array_len(&mut self) -> Result<usize, Malformed> {
        let marker = self.take(1).map_err(|_| self.short())?[0];
        let n = match marker {
            0x90..=0x9f => u64::from(marker & 0x0f),
            0xdc => self.be(2).map_err(|_| self.short())?,
            0xdd => self.be(4).map_err(|_| self.short())?,
            _ => {
                return Err(Malformed(format!(
                    "expected an array, found marker 0x{marker:02x}"
                )))
            }
        };
        Ok(n as usize)
    }

    /// Reads a string (or binary) value.
    pub fn str(&mut self) -> Result<&'a [u8], Malformed> {
        match self.scalar()? {
            Scalar::Str(s) => Ok(s),
            other => Err(Malformed(format!("expected a string, found {other:?}"))),
        }
    }

    /// Reads a scalar value; a container is an error.
    pub fn scalar(&mut self) -> Result<Scalar<'a>, Malformed> {
        let at = self.pos;
        let read = |c: &mut Self| -> Result<Scalar<'a>, Short> {
            let marker = c.take(1)?[0];
            Ok(match marker {
                0x00..=0x7f => Scalar::Int(i64::from(marker)),
                0xe0..=0xff => Scalar::Int(i64::from(marker as i8)),
                0xc0 => Scalar::Nil,
                0xc2 => Scalar::Bool(false),
                0xc3 => Scalar::Bool(true),
                0xa0..=0xbf => Scalar::Str(c.take((marker & 0x1f) as usize)?),
                0xd9 | 0xc4 => {
                    let n = c.be(1)? as usize;
                    Scalar::Str(c.take(n)?)
                }
                0xda | 0xc5 => {
                    let n = c.be(2)? as usize;
                    Scalar::Str(c.take(n)?)
                }
                0xdb | 0xc6 => {
                    let n = c.be(4)? as usize;
                    Scalar::Str(c.take(n)?)
                }
                0xcc => Scalar::Int(c.be(1)? as i64),
                0xcd => Scalar::Int(c.be(2)? as i64),
                0xce => Scalar::Int(c.be(4)? as i64),
                0xcf => {
                    let v = c.be(8)?;
                    i64::try_from(v).map_or(Scalar::Uint(v), Scalar::Int)
                }
                0xd0 => Scalar::Int(i64::from(c.be(1)? as u8 as i8)),
                0xd1 => Scalar::Int(i64::from(c.be(2)? as u16 as i16)),
                0xd2 => Scalar::Int(i64::from(c.be(4)? as u32 as i32)),
                0xd3 => Scalar::Int(c.be(8)? as i64),
                0xca => Scalar::Float(f64::from(f32::from_bits(c.be(4)? as u32))),
                0xcb => Scalar::Float(f64::from_bits(c.be(8)?)),
                _ => {
                    c.pos -= 1;
                    return Err(Short);
                }
            })
        };
        match read(self) {
            Ok(value) => Ok(value),
            Err(Short) if self.pos == at && self.pos < self.buf.len() => Err(Malformed(format!(
                "expected a scalar, found marker 0x{:02x}",
                self.buf[at]
            ))),
            Err(Short) => Err(self.short()),
        }
    }

    /// Skips one whole value, containers included.
    pub fn skip(&mut self) -> Result<(), Malformed> {
        match complete(&self.buf[self.pos..])? {
            Some(n) => {
                self.pos += n;
                Ok(())
            }
            None => Err(self.short()),
        }
    }

    /// Whether every byte has been read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_finds_whole_values_only() {
        // {"a": [1, "xy", nil]}
        let value = [0x81, 0xa1, b'a', 0x93, 0x01, 0xa2, b'x', b'y', 0xc0];
        assert_eq!(complete(&value), Ok(Some(value.len())));
        for cut in 0..value.len() {
            assert_eq!(complete(&value[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = value.to_vec();
        two.extend_from_slice(&value);
        assert_eq!(complete(&two), Ok(Some(value.len())));
    }

    #[test]
    fn a_scanner_goes_on_where_it_stopped() {
        let value = [0x81, 0xa1, b'a', 0x93, 0x01, 0xa2, b'x', b'y', 0xc0];
        let mut two = value.to_vec();
        two.extend_from_slice(&value);
        let mut scanner = Scanner::default();
        for cut in 0..value.len() {
            assert_eq!(scanner.scan(&two[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(scanner.scan(&two[..value.len()]), Ok(Some(value.len())));
        // the next value, in a new buffer
        let rest = &two[value.len()..];
        assert_eq!(scanner.scan(&rest[..3]), Ok(None));
        assert_eq!(scanner.scan(rest), Ok(Some(value.len())));
    }

    #[test]
    fn long_forms() {
        // array16 of 2: int64, float64; map32 of 1: str8 -> uint64 max
        let mut v = vec![0xdc, 0, 2, 0xd3];
        v.extend_from_slice(&(-5i64).to_be_bytes());
        v.push(0xcb);
        v.extend_from_slice(&1.5f64.to_be_bytes());
        let arr_len = v.len();
        v.extend_from_slice(&[0xdf, 0, 0, 0, 1, 0xd9, 1, b'k', 0xcf]);
        v.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(complete(&v), Ok(Some(arr_len)));
        let mut c = Cursor::new(&v);
        assert_eq!(c.array_len(), Ok(2));
        assert_eq!(c.scalar(), Ok(Scalar::Int(-5)));
        assert_eq!(c.scalar(), Ok(Scalar::Float(1.5)));
        assert_eq!(c.map_len(), Ok(1));
        assert_eq!(c.str(), Ok(&b"k"[..]));
        assert_eq!(c.scalar(), Ok(Scalar::Uint(u64::MAX)));
        assert!(c.at_end());
    }

    #[test]
    fn garbage_is_an_error_or_incomplete_never_a_panic() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (seed.rotate_left(i as u32 * 5) & 0xff) as u8)
                .collect();
            let _ = complete(&bytes);
            let mut c = Cursor::new(&bytes);
            let _ = c.map_len();
            let _ = c.scalar();
            let _ = c.skip();
        }
    }

    #[test]
    fn reserved_marker_is_malformed() {
        assert!(complete(&[0x91, 0xc1]).is_err());
    }
}
