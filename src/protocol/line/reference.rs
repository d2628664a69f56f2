//! A byte-by-byte port of InfluxDB 1.8's line splitting, used only to check
//! the scanner against (unit tests and the `line` fuzz target, which is
//! built with `--cfg fuzzing`). Never on a request path.

/// `(number, start, end, measurement end)` per line, and the error's line.
pub type Expected = (Vec<(usize, usize, usize, usize)>, Option<usize>);

/// What InfluxDB 1.8 does with `body`, ported byte by byte from
/// `models/points.go` (`ParsePointsWithPrecision`, `scanLine`,
/// `scanMeasurement`, `scanTags`, `scanFields`' emptiness check) plus this
/// module's documented additions (CRLF, the comment rule): per line
/// `(number, start, end, measurement end)`, up to the first error's line.
pub fn reference(body: &[u8]) -> Expected {
    let number_at = |i: usize| 1 + body[..i].iter().filter(|&&b| b == b'\n').count();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (end, open) = reference_scan_line(body, pos);
        let mut start = pos;
        while start < end && matches!(body[start], b' ' | b'\t' | 0) {
            start += 1;
        }
        let text_end = match end < body.len() && end > start && body[end - 1] == b'\r' {
            true => end - 1,
            false => end,
        };
        let spans_lines = body[pos..end].contains(&b'\n');
        let number = number_at(pos);
        pos = end + 1;
        if start >= text_end {
            continue;
        }
        if body[start] == b'#' {
            if spans_lines {
                return (out, Some(number));
            }
            continue;
        }
        let Some(m_end) = reference_key(&body[..text_end], start) else {
            return (out, Some(number));
        };
        if let Some(quote) = open {
            return (out, Some(number_at(quote)));
        }
        out.push((number, start, text_end, m_end));
    }
    (out, None)
}

/// `scanLine` from `i`: the end, and the last opening quote if still open.
fn reference_scan_line(buf: &[u8], mut i: usize) -> (usize, Option<usize>) {
    let (mut quoted, mut fields, mut equals, mut commas) = (None, false, 0, 0);
    while i < buf.len() {
        if buf[i] == b'\\' && i + 2 < buf.len() {
            i += 2;
            continue;
        }
        if buf[i] == b' ' {
            fields = true;
        }
        if fields {
            if quoted.is_none() && buf[i] == b'=' {
                equals += 1;
            } else if quoted.is_none() && buf[i] == b',' {
                commas += 1;
            } else if buf[i] == b'"' && equals > commas {
                quoted = if quoted.is_some() { None } else { Some(i) };
            }
        }
        if buf[i] == b'\n' && quoted.is_none() {
            break;
        }
        i += 1;
    }
    (i, quoted)
}

/// The measurement end if the key at `start` is followed by a field set.
fn reference_key(buf: &[u8], start: usize) -> Option<usize> {
    if buf[start] == b',' {
        return None;
    }
    let unescaped = |i: usize, c: u8| buf[i] == c && buf[i - 1] != b'\\';
    let mut i = start + 1;
    while i < buf.len() && !unescaped(i, b',') && !unescaped(i, b' ') {
        i += 1;
    }
    let m_end = i;
    while i < buf.len() && !unescaped(i, b' ') {
        i += 1;
    }
    i += 1;
    while i < buf.len() && matches!(buf[i], b' ' | b'\t' | 0) {
        i += 1;
    }
    (i < buf.len()).then_some(m_end)
}
