//! A protobuf wire-format reader over a borrowed buffer: fields one by one,
//! every length checked against the bytes at hand before anything is read,
//! nothing allocated. It is what the write path scans a `WriteRequest`
//! with (a body can hold millions of tiny messages, which a decoder into
//! structs would turn into many times its size in memory) and what finds
//! the metric names of a `ReadRequest`.
//!
//! It is as strict as a conforming decoder (gogo/protobuf in InfluxDB, prost
//! here): truncated fields, varints over 10 bytes, field number 0, wire
//! types 6 and 7, an end-group without its start and a known field with the
//! wrong wire type are errors; unknown fields of a valid wire type are
//! skipped (groups too, nested at most [`MAX_GROUP_DEPTH`] deep).

use std::fmt;

/// Deepest nesting of unknown groups skipped (prost's recursion limit).
const MAX_GROUP_DEPTH: usize = 100;

/// Why a buffer is not the protobuf message it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn error(message: impl Into<String>) -> WireError {
    WireError(message.into())
}

/// A field's wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    fn of(bits: u64) -> Result<WireType, WireError> {
        Ok(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            other => return Err(error(format!("illegal wire type {other}"))),
        })
    }
}

/// One field of a message: its number and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(&'a [u8]),
    Fixed32,
    /// An unknown group, skipped whole.
    Group,
}

impl Value<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Len(_) => 2,
            Value::Group => 3,
            Value::Fixed32 => 5,
        }
    }
}

/// Reads the fields of one message, front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    /// Where the next field starts.
    pub fn position(&self) -> usize {
        self.at
    }

    /// The next field as (number, value), `None` at the end of the message.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        if self.at == self.buf.len() {
            return Ok(None);
        }
        let (number, wire_type) = self.key()?;
        let value = match wire_type {
            WireType::Varint => Value::Varint(self.varint()?),
            WireType::Fixed64 => Value::Fixed64(self.fixed::<8>()?),
            WireType::Len => Value::Len(self.len_delimited()?),
            WireType::Fixed32 => {
                self.fixed::<4>()?;
                Value::Fixed32
            }
            WireType::StartGroup => {
                self.skip_group(number)?;
                Value::Group
            }
            WireType::EndGroup => return Err(error("end-group tag without a group")),
        };
        Ok(Some((number, value)))
    }

    #[inline]
    fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = self.varint()?;
        let wire_type = WireType::of(key & 7)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(error(format!("illegal field number {number}")));
        }
        Ok((number as u32, wire_type))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // one byte: every key and length below 128, most of them
        if let Some(&byte) = self.buf.get(self.at) {
            if byte < 0x80 {
                self.at += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.at) else {
                return Err(error("unexpected end of message"));
            };
            self.at += 1;
            if i == 9 && byte > 1 {
                return Err(error("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(error("varint overflows 64 bits"))
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.buf.len() - self.at)
            .ok_or_else(|| {
                error(format!(
                    "a field declares {len} bytes where {} remain",
                    self.buf.len() - self.at
                ))
            })?;
        self.take(len)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| error("unexpected end of message"))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    /// Skips an unknown group started by field `number`, nested groups
    /// included, up to its matching end-group tag.
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            let (field, wire_type) = self.key()?;
            match wire_type {
                WireType::Varint => drop(self.varint()?),
                WireType::Fixed64 => drop(self.fixed::<8>()?),
                WireType::Fixed32 => drop(self.fixed::<4>()?),
                WireType::Len => drop(self.len_delimited()?),
                WireType::StartGroup if open.len() >= MAX_GROUP_DEPTH => {
                    return Err(error("groups nested too deep"))
                }
                WireType::StartGroup => open.push(field),
                WireType::EndGroup if field == innermost => drop(open.pop()),
                WireType::EndGroup => return Err(error("end-group tag does not match its group")),
            }
        }
        Ok(())
    }
}

/// A field of a known number that came with the wrong wire type.
pub fn wrong_type(field: &str, value: &Value<'_>) -> WireError {
    error(format!(
        "field {field} has wire type {}, which is not its type",
        value.wire_type()
    ))
}

/// The value of a `bytes`/`string`/message field named `field`.
pub fn expect_len<'a>(field: &str, value: Value<'a>) -> Result<&'a [u8], WireError> {
    match value {
        Value::Len(bytes) => Ok(bytes),
        other => Err(wrong_type(field, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, WireError> {
        let mut reader = Reader::new(buf);
        let mut out = Vec::new();
        while let Some(field) = reader.next()? {
            out.push(field);
        }
        Ok(out)
    }

    #[test]
    fn every_wire_type_is_read() {
        let mut buf = vec![0x08, 0x96, 0x01]; // 1: varint 150
        buf.push(0x11); // 2: fixed64
        buf.extend_from_slice(&1.5f64.to_le_bytes());
        buf.extend_from_slice(&[0x1a, 0x02, b'h', b'i']); // 3: "hi"
        buf.extend_from_slice(&[0x25, 1, 2, 3, 4]); // 4: fixed32
        buf.extend_from_slice(&[0x2b, 0x08, 0x01, 0x33, 0x34, 0x2c]); // 5: group with a nested group
        let read = fields(&buf).unwrap();
        assert_eq!(read[0], (1, Value::Varint(150)));
        assert_eq!(read[1], (2, Value::Fixed64(1.5f64.to_le_bytes())));
        assert_eq!(read[2], (3, Value::Len(b"hi")));
        assert_eq!(read[3], (4, Value::Fixed32));
        assert_eq!(read[4], (5, Value::Group));
    }

    #[test]
    fn lengths_are_checked_before_anything_is_taken() {
        // 1: a field declaring 2^63 bytes
        let huge = [
            0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ];
        let e = fields(&huge).unwrap_err();
        assert!(e.0.contains("declares 9223372036854775808 bytes"), "{e}");
        assert!(fields(&[0x0a, 0x05, b'a']).is_err());
        assert!(fields(&[0x11, 1, 2, 3]).is_err());
    }

    #[test]
    fn malformed_keys_and_varints_are_errors() {
        assert!(fields(&[0x00]).is_err(), "field number 0");
        assert!(fields(&[0x0e]).is_err(), "wire type 6");
        assert!(fields(&[0x0c]).is_err(), "end group alone");
        assert!(fields(&[0x0b, 0x14]).is_err(), "end group of another field");
        assert!(fields(&[0x0b]).is_err(), "unterminated group");
        assert!(fields(&[0x08, 0xff]).is_err(), "truncated varint");
        let eleven = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(fields(&eleven).is_err(), "varint over 10 bytes");
        let overflow = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert!(fields(&overflow).is_err(), "10th byte over 1");
        let max = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(fields(&max).unwrap(), vec![(1, Value::Varint(u64::MAX))]);
    }

    #[test]
    fn deeply_nested_groups_are_refused_without_recursion() {
        let mut buf = vec![0x0b; 100_000];
        buf.extend(std::iter::repeat(0x0c).take(100_000));
        assert_eq!(fields(&buf).unwrap_err().0, "groups nested too deep");
    }
}
