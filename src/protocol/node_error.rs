//! What a node's error answer says, for relaying it to the client: the
//! `error` text of InfluxDB's JSON body, also when only its first part was
//! read, and which line of the client's body a parse error quotes.
//!
//! InfluxDB copies a line it cannot parse into its error (`unable to parse
//! '<line>': <why>`), so a node's 400 can be as large as the body it was
//! given. The router reads a bounded part of such an answer; from a JSON
//! string cut in the middle it decodes what it has, and marks the text with
//! [`TRUNCATED`]. It never builds anything but valid JSON from it.
//!
//! A node's error names no line number. When the router split the client's
//! body over several clusters, each node saw only a batch of it, so the
//! router finds the quoted line in the client's body ([`quoted_line`]) and
//! says which line it was there.

use super::line;

/// Ends an error text that was cut short.
pub const TRUNCATED: &str = "… (truncated)";

/// How InfluxDB quotes a line it cannot parse.
const UNABLE_TO_PARSE: &str = "unable to parse '";

/// The error text of a node's answer `body`, of which only the first bytes
/// may have been read (`complete` false): the `error` string of InfluxDB's
/// `{"error":"..."}`, decoded as far as it goes, or else the body as text.
/// The text ends with [`TRUNCATED`] when it was cut.
pub fn error_text(body: &[u8], complete: bool) -> String {
    let (text, whole) = match json_error_prefix(body) {
        Some((text, closed)) => (text, closed),
        None => (lossy_prefix(body), complete),
    };
    match whole {
        true => text,
        false => format!("{text}{TRUNCATED}"),
    }
}

/// The 1-based number of the physical line of `body` that `error` quotes
/// (the first line InfluxDB could not parse), if a line of `body` matches
/// the quote, or its first part when the error was cut short.
pub fn quoted_line(error: &str, body: &[u8]) -> Option<usize> {
    let start = error.find(UNABLE_TO_PARSE)? + UNABLE_TO_PARSE.len();
    let quoted = &error[start..];
    let (quoted, cut) = match quoted.strip_suffix(TRUNCATED) {
        Some(prefix) if !prefix.contains("': ") => (prefix, true),
        _ => (quoted, false),
    };
    let quoted = quoted.as_bytes();
    let matches = |text: &[u8]| {
        [&b"': "[..], b"\r': "].iter().any(|end| {
            let whole = [text, end].concat();
            quoted.starts_with(&whole) || (cut && whole.starts_with(quoted))
        })
    };
    line::lines(body)
        .map_while(Result::ok)
        .find(|l| matches(l.text))
        .map(|l| l.number)
}

/// The `error` string of `{"error":"...` at the start of `body`, decoded,
/// and whether its closing quote was reached.
fn json_error_prefix(body: &[u8]) -> Option<(String, bool)> {
    let rest = expect(body, b"{")?;
    let rest = expect(rest, b"\"error\"")?;
    let rest = expect(rest, b":")?;
    let rest = expect(rest, b"\"")?;
    Some(decode_string_prefix(rest))
}

/// `body` after leading whitespace and `token`.
fn expect<'a>(body: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    body.trim_ascii_start().strip_prefix(token)
}

/// Decodes a JSON string's contents up to its closing quote, or as far as
/// `raw` goes (dropping an escape or character cut at the end).
fn decode_string_prefix(raw: &[u8]) -> (String, bool) {
    let text = lossy_prefix(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return (out, true),
            '\\' => match unescape(&mut chars) {
                Some(decoded) => out.push(decoded),
                None => break,
            },
            c => out.push(c),
        }
    }
    (out, false)
}

/// The character of the escape after a backslash; `None` at the end.
fn unescape(chars: &mut std::str::Chars<'_>) -> Option<char> {
    Some(match chars.next()? {
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'u' => return unicode_escape(chars),
        other => other,
    })
}

/// The character of `XXXX` (and of a low surrogate's `\uXXXX` after a high one).
fn unicode_escape(chars: &mut std::str::Chars<'_>) -> Option<char> {
    let high = hex4(chars)?;
    if !(0xD800..0xDC00).contains(&high) {
        return Some(char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    let (backslash, u) = (chars.next()?, chars.next()?);
    let low = hex4(chars)?;
    if backslash != '\\' || u != 'u' || !(0xDC00..0xE000).contains(&low) {
        return Some(char::REPLACEMENT_CHARACTER);
    }
    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let digits: String = chars.take(4).collect();
    match digits.len() {
        4 => Some(u32::from_str_radix(&digits, 16).unwrap_or(0xFFFD)),
        _ => None,
    }
}

/// `bytes` as text, without a character cut at the end.
fn lossy_prefix(bytes: &[u8]) -> String {
    let end = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_influxdb_error_is_its_text() {
        let body = br#"{"error":"unable to parse 'a \"b\"': \u003c bad \\ \ud83d\ude00"}"#;
        assert_eq!(
            error_text(body, true),
            "unable to parse 'a \"b\"': < bad \\ \u{1F600}"
        );
    }

    #[test]
    fn a_cut_json_error_is_decoded_as_far_as_it_goes_and_marked() {
        let body = br#"{"error":"unable to parse 'cpu,t=x\"y\u00"#;
        assert_eq!(
            error_text(body, false),
            "unable to parse 'cpu,t=x\"y… (truncated)"
        );
        let cut_in_a_character = "{\"error\":\"caf\u{e9}".as_bytes();
        let cut_in_a_character = &cut_in_a_character[..cut_in_a_character.len() - 1];
        assert_eq!(error_text(cut_in_a_character, false), "caf… (truncated)");
    }

    #[test]
    fn a_body_that_is_not_influxdbs_json_is_taken_as_text() {
        assert_eq!(error_text(b"<html>bad gateway", true), "<html>bad gateway");
        assert_eq!(error_text(b"<html>bad", false), "<html>bad… (truncated)");
    }

    #[test]
    fn the_quoted_line_is_found_by_its_text_and_numbered_in_the_body() {
        let body = b"mem v=1\n\n# c\n  cpu v=1x 2\r\ncpu v=1x 3\n";
        let error = "partial write: unable to parse 'cpu v=1x 3': invalid number dropped=0";
        assert_eq!(quoted_line(error, body), Some(5));
        let crlf = "unable to parse 'cpu v=1x 2\r': invalid number";
        assert_eq!(quoted_line(crlf, body), Some(4));
        let unknown = "unable to parse 'cpu v=9': invalid number";
        assert_eq!(quoted_line(unknown, body), None);
        assert_eq!(quoted_line("field type conflict", body), None);
    }

    #[test]
    fn a_cut_quote_matches_the_line_it_starts() {
        let body = b"cpu v=1 1\ncpu,t=xxxxxxxx v=1.5 2\n";
        let error = format!("unable to parse 'cpu,t=xxxx{TRUNCATED}");
        assert_eq!(quoted_line(&error, body), Some(2));
    }
}
