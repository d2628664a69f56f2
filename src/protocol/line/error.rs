//! What the scanner reports when a line is not line protocol: [`LineError`]
//! and its messages, each lower-case, saying what was expected and quoting
//! the offending input cut to [`EXCERPT_BYTES`].

/// A line that is not line protocol, as far as the scanner checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based physical line number.
    pub line: usize,
    /// Lower-case; says what was expected and quotes the offending input
    /// (at most [`EXCERPT_BYTES`] bytes of it).
    pub message: String,
}

/// Longest excerpt of the input quoted in a [`LineError`], in bytes.
pub const EXCERPT_BYTES: usize = 40;

/// `bytes` cut to [`EXCERPT_BYTES`] (on a character boundary) with `…`,
/// control characters escaped, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let mut end = bytes.len().min(EXCERPT_BYTES);
    let back = end.saturating_sub(3);
    while end > back && end < bytes.len() && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 8);
    for c in String::from_utf8_lossy(&bytes[..end]).chars() {
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    if end < bytes.len() {
        out.push('…');
    }
    out
}

pub(super) fn missing_measurement(line: usize, text: &[u8]) -> LineError {
    let message = format!(
        "missing measurement: expected a name before the first ',' in '{}'",
        excerpt(text)
    );
    LineError { line, message }
}

pub(super) fn missing_field_set(line: usize, text: &[u8]) -> LineError {
    let message = format!(
        "missing field set: expected a space and field=value after the measurement \
         and tags in '{}'",
        excerpt(text)
    );
    LineError { line, message }
}

pub(super) fn unterminated_string(line: usize, from_quote: &[u8]) -> LineError {
    let message = format!(
        "unterminated string: expected a closing '\"' for the string that opens at '{}'",
        excerpt(from_quote)
    );
    LineError { line, message }
}

pub(super) fn runaway_comment(line: usize, text: &[u8]) -> LineError {
    let message = format!(
        "comment does not end at its newline (influxdb 1.x would read on past an open '\"' \
         or an escaped newline): expected a one-line comment in '{}'",
        excerpt(text)
    );
    LineError { line, message }
}
