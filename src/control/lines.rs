//! Points as line protocol: [`Encoder`] turns the rows of a
//! `SELECT *::field … GROUP BY *` answer back into exact lines (tags stay
//! tags, integers get `i`, strings and names keep every character,
//! nanosecond times), and [`point_end`] finds where one point of such text
//! ends (a string field may hold newlines), for loading it back.

use std::io::Write as _;

use super::answer::{Rows, SeriesHead};
use super::msgpack::Scalar;

/// Builds line protocol from answer rows into one growing batch.
#[derive(Debug, Default)]
pub struct Encoder {
    out: Vec<u8>,
    /// The series the cached parts below belong to (0: none).
    series: u64,
    /// `measurement,tag=value…` of that series, escaped.
    key: Vec<u8>,
    /// Its field columns, escaped, each with `=` after it.
    fields: Vec<Vec<u8>>,
    /// Points in `out`.
    points: usize,
    /// Points encoded since creation.
    pub total_points: u64,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Points waiting in the batch.
    pub fn points(&self) -> usize {
        self.points
    }

    /// Bytes waiting in the batch.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Escapes the key and field names of `series` once for all its rows.
    fn learn(&mut self, series: &SeriesHead<'_>) -> Result<(), String> {
        let has_newline = |b: &[u8]| memchr::memchr(b'\n', b).is_some();
        if has_newline(series.name)
            || series
                .tags
                .iter()
                .any(|(k, v)| has_newline(k) || has_newline(v))
            || series.columns.iter().any(|c| has_newline(c))
        {
            return Err(format!(
                "series {:?} has a newline in a name or tag value, which line protocol cannot carry",
                String::from_utf8_lossy(series.name)
            ));
        }
        self.key.clear();
        escape(&mut self.key, series.name, b", ");
        for (key, value) in &series.tags {
            self.key.push(b',');
            escape(&mut self.key, key, b",= ");
            self.key.push(b'=');
            escape(&mut self.key, value, b",= ");
        }
        self.fields.clear();
        for column in &series.columns[1..] {
            let mut field = Vec::with_capacity(column.len() + 1);
            escape(&mut field, column, b",= ");
            field.push(b'=');
            self.fields.push(field);
        }
        self.series = series.serial;
        Ok(())
    }

    /// Hands over the batch and starts a new one.
    pub fn take(&mut self) -> Vec<u8> {
        self.points = 0;
        let capacity = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(capacity))
    }
}

impl Rows for Encoder {
    fn row(&mut self, series: &SeriesHead<'_>, values: &[Scalar<'_>]) -> Result<(), String> {
        let time = match values.first() {
            Some(Scalar::Int(t)) => *t,
            other => return Err(format!("a row's time is {other:?}, not an integer")),
        };
        if values[1..].iter().all(|v| matches!(v, Scalar::Nil)) {
            return Ok(());
        }
        if self.series != series.serial || series.serial == 0 {
            self.learn(series)?;
        }
        let start = self.out.len();
        self.out.extend_from_slice(&self.key);
        let mut separator = b' ';
        for (i, value) in values[1..].iter().enumerate() {
            if matches!(value, Scalar::Nil) {
                continue;
            }
            self.out.push(separator);
            separator = b',';
            self.out.extend_from_slice(&self.fields[i]);
            if let Err(e) = field_value(&mut self.out, value) {
                self.out.truncate(start);
                return Err(e);
            }
        }
        let _ = writeln!(self.out, " {time}");
        self.points += 1;
        self.total_points += 1;
        Ok(())
    }
}

fn field_value(out: &mut Vec<u8>, value: &Scalar<'_>) -> Result<(), String> {
    match value {
        Scalar::Int(v) => {
            let _ = write!(out, "{v}i");
        }
        Scalar::Uint(v) => {
            let _ = write!(out, "{v}u");
        }
        Scalar::Float(v) => {
            if !v.is_finite() {
                return Err(format!(
                    "a float field holds {v}, which line protocol cannot carry"
                ));
            }
            // shortest text that reads back as the same f64; never an integer look-alike
            let _ = write!(out, "{v:?}");
        }
        Scalar::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
        Scalar::Str(s) => {
            out.push(b'"');
            escape(out, s, b"\"\\");
            out.push(b'"');
        }
        Scalar::Nil => {}
    }
    Ok(())
}

/// Appends `bytes` with a backslash before each byte of `special`.
fn escape(out: &mut Vec<u8>, bytes: &[u8], special: &[u8]) {
    let mut from = 0;
    for (i, b) in bytes.iter().enumerate() {
        if special.contains(b) {
            out.extend_from_slice(&bytes[from..i]);
            out.push(b'\\');
            from = i;
        }
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Where the point starting at `buf[from]` ends: just past its newline, or
/// `None` when `buf` ends first. Knows line protocol's sections: a newline
/// inside a quoted string field does not end the point.
pub fn point_end(buf: &[u8], from: usize) -> Option<usize> {
    #[derive(PartialEq)]
    enum Section {
        Key,
        Fields,
        Time,
    }
    let mut section = Section::Key;
    let mut quoted = false;
    let mut i = from;
    while i < buf.len() {
        let b = buf[i];
        match b {
            b'\\' if section != Section::Time => {
                i += 2;
                continue;
            }
            b'"' if section == Section::Fields => quoted = !quoted,
            b' ' if !quoted => {
                section = match section {
                    Section::Key => Section::Fields,
                    _ => Section::Time,
                }
            }
            b'\n' if !quoted => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(
        name: &'a [u8],
        tags: Vec<(&'a [u8], &'a [u8])>,
        columns: Vec<&'a [u8]>,
    ) -> SeriesHead<'a> {
        SeriesHead {
            name,
            tags,
            columns,
            serial: 0,
        }
    }

    #[test]
    fn rows_become_exact_lines() {
        let mut e = Encoder::new();
        let s = head(
            b"we ird,m",
            vec![(b"t k", b"v=1,\\"), (b"z", b"\xc3\xa9")],
            vec![b"time", b"b", b"f", b"f2", b"i", b"s", b"n"],
        );
        let row = [
            Scalar::Int(1_000_000_000_123_456_789),
            Scalar::Bool(true),
            Scalar::Float(1.0),
            Scalar::Float(2e-7),
            Scalar::Int(-3),
            Scalar::Str(b"a \"q\"\\\nnext"),
            Scalar::Nil,
        ];
        e.row(&s, &row).unwrap();
        let text = String::from_utf8(e.take()).unwrap();
        assert_eq!(
            text,
            "we\\ ird\\,m,t\\ k=v\\=1\\,\\,z=é b=true,f=1.0,f2=2e-7,i=-3i,s=\"a \\\"q\\\"\\\\\nnext\" 1000000000123456789\n"
        );
        assert_eq!(point_end(text.as_bytes(), 0), Some(text.len()));
    }

    #[test]
    fn rows_without_fields_are_skipped() {
        let mut e = Encoder::new();
        let s = head(b"m", vec![], vec![b"time", b"v"]);
        e.row(&s, &[Scalar::Int(1), Scalar::Nil]).unwrap();
        assert!(e.is_empty());
        assert!(e.row(&s, &[Scalar::Str(b"x"), Scalar::Int(1)]).is_err());
    }

    #[test]
    fn point_end_respects_quotes_and_escapes() {
        let text = b"m,t=a\\ b v=\"x\ny\",w=1 5\nm v=2 6\nm v=\"open";
        let first = point_end(text, 0).unwrap();
        assert_eq!(&text[..first], b"m,t=a\\ b v=\"x\ny\",w=1 5\n");
        let second = point_end(text, first).unwrap();
        assert_eq!(&text[first..second], b"m v=2 6\n");
        assert_eq!(point_end(text, second), None);
        // a tag value holding a quote does not open a string
        let tag_quote = b"m,t=\"x v=1 1\nm v=2 2\n";
        assert_eq!(point_end(tag_quote, 0), Some(13));
    }
}
