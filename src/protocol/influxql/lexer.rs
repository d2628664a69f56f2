//! A byte-level InfluxQL lexer: just enough tokens to split and classify.
//!
//! It yields the significant tokens of a query (whitespace and comments are
//! skipped) as slices of the input. It never fails: unknown bytes become
//! [`TokenKind::Punct`] tokens and an unterminated literal or comment runs
//! to the end of the input. Literals are found with `memchr`, so long
//! strings, regexes and comments cost one vectorised search each.
//!
//! A `/` starts a regex literal unless the previous token is an operand (a
//! word that is not a keyword, a number, a string, a quoted identifier, a
//! regex or `)`), in which case it divides: `SELECT a / 2`, `"a"/"b"`, but
//! `FROM /cpu.*/`, `=~ /x/`, `GROUP BY /h/`. Only `\/` escapes inside a
//! regex, as in InfluxQL; a backslash escapes any byte in quoted literals.
//!
//! Every token boundary is a char boundary: delimiters are ASCII, and
//! non-ASCII characters are consumed whole.

use memchr::{memchr, memchr2};

/// What a [`Token`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword: `SELECT`, `cpu`, `mean`.
    Word,
    /// A number or duration literal: `10`, `1.5`, `.5`, `10m`.
    Number,
    /// A double-quoted identifier, quotes included: `"my field"`.
    QuotedIdent,
    /// A single-quoted string literal, quotes included: `'it\'s'`.
    String,
    /// A regex literal, slashes included: `/^cpu[0-9]+$/`.
    Regex,
    /// The `;` between statements.
    Semicolon,
    /// An operator or punctuation: one byte, or two for `=~ !~ != <> <= >= ::`.
    Punct,
}

/// One significant token of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// What the token is.
    pub kind: TokenKind,
    /// The token's text, delimiters included. A literal that is not
    /// terminated runs to the end of the input.
    pub text: &'a str,
    /// Byte offset of `text` in the lexed input.
    pub start: usize,
}

impl Token<'_> {
    /// Whether this is the unquoted word `keyword`, in any letter case.
    #[inline]
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// Byte offset just past the token in the lexed input.
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// What came before the current position, to tell division from a regex.
#[derive(Debug, Clone, Copy)]
enum Prev {
    /// Start of input, an operator, `(`, `,`, `;`...: a `/` starts a regex.
    Operator,
    /// A literal or `)`: a `/` divides.
    Operand,
    /// A word: a `/` divides unless the word is a keyword.
    Word { start: usize, end: usize },
}

/// An iterator over the significant [`Token`]s of an InfluxQL query.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    prev: Prev,
}

/// Returns a lexer over `q`.
pub fn tokens(q: &str) -> Lexer<'_> {
    Lexer::new(q)
}

impl<'a> Lexer<'a> {
    /// Returns a lexer positioned at the start of `src`.
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            prev: Prev::Operator,
        }
    }

    /// Byte offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes().get(self.pos + ahead).copied()
    }

    /// Skips whitespace (ASCII and Unicode) and comments.
    #[inline(always)]
    fn skip_trivia(&mut self) {
        while let Some(b) = self.peek(0) {
            match b {
                _ if is_class(b, WS) => self.pos += 1,
                b'-' if self.peek(1) == Some(b'-') => self.skip_line_comment(),
                b'/' if self.peek(1) == Some(b'*') => self.skip_block_comment(),
                0x80.. => match unicode_space_len(&self.src[self.pos..]) {
                    Some(len) => self.pos += len,
                    None => return,
                },
                _ => return,
            }
        }
    }

    fn skip_line_comment(&mut self) {
        let rest = &self.bytes()[self.pos..];
        self.pos += memchr(b'\n', rest).unwrap_or(rest.len());
    }

    fn skip_block_comment(&mut self) {
        let bytes = self.bytes();
        let mut i = self.pos + 2;
        self.pos = loop {
            match memchr(b'*', &bytes[i..]) {
                None => break bytes.len(),
                Some(off) if bytes.get(i + off + 1) == Some(&b'/') => break i + off + 2,
                Some(off) => i += off + 1,
            }
        };
    }

    /// Consumes a `"…"` or `'…'` literal whose backslash escapes any byte.
    fn scan_quoted(&mut self, quote: u8) {
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        self.pos = loop {
            match memchr2(quote, b'\\', &bytes[i..]) {
                None => break bytes.len(),
                Some(off) if bytes[i + off] == quote => break i + off + 1,
                Some(off) => i = (i + off + 2).min(bytes.len()),
            }
        };
    }

    /// Consumes a `/…/` regex. As in InfluxQL, only `\/` is an escape; any
    /// other backslash is literal (so `/a\\/` is unterminated).
    fn scan_regex(&mut self) {
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        self.pos = loop {
            match memchr2(b'/', b'\\', &bytes[i..]) {
                None => break bytes.len(),
                Some(off) if bytes[i + off] == b'/' => break i + off + 1,
                Some(off) if bytes.get(i + off + 1) == Some(&b'/') => i += off + 2,
                Some(off) => i += off + 1,
            }
        };
    }

    fn scan_number(&mut self) {
        let bytes = self.bytes();
        let mut i = self.pos + 1;
        while i < bytes.len() && (is_class(bytes[i], WORD) || bytes[i] == b'.') {
            i += 1;
        }
        self.pos = i;
    }

    /// Consumes a word: ASCII letters, digits, `_` and non-ASCII characters
    /// other than whitespace.
    fn scan_word(&mut self) {
        let bytes = self.bytes();
        let mut i = self.pos;
        while let Some(&b) = bytes.get(i) {
            if is_class(b, WORD) {
                i += 1;
            } else if b < 0x80 {
                break;
            } else {
                match self.src[i..].chars().next() {
                    Some(c) if !c.is_whitespace() => i += c.len_utf8(),
                    _ => break,
                }
            }
        }
        self.pos = i;
    }

    fn scan_punct(&mut self, b: u8) {
        let pair = matches!(
            (b, self.peek(1)),
            (b'=' | b'!', Some(b'~'))
                | (b'!' | b'<' | b'>', Some(b'='))
                | (b'<', Some(b'>'))
                | (b':', Some(b':'))
        );
        self.pos += if pair { 2 } else { 1 };
    }

    /// Whether a `/` here is division rather than the start of a regex.
    fn slash_divides(&self) -> bool {
        match self.prev {
            Prev::Operator => false,
            Prev::Operand => true,
            Prev::Word { start, end } => !is_keyword(&self.src[start..end]),
        }
    }

    /// Consumes the token starting with byte `b` and says what it is.
    #[inline(always)]
    fn scan_token(&mut self, b: u8) -> TokenKind {
        match b {
            b'"' => {
                self.scan_quoted(b'"');
                TokenKind::QuotedIdent
            }
            b'\'' => {
                self.scan_quoted(b'\'');
                TokenKind::String
            }
            b';' => {
                self.pos += 1;
                TokenKind::Semicolon
            }
            b'/' if !self.slash_divides() => {
                self.scan_regex();
                TokenKind::Regex
            }
            b'0'..=b'9' => {
                self.scan_number();
                TokenKind::Number
            }
            b'.' if self.peek(1).is_some_and(|n| n.is_ascii_digit()) => {
                self.scan_number();
                TokenKind::Number
            }
            _ if is_class(b, WORD) || b >= 0x80 => {
                self.scan_word();
                TokenKind::Word
            }
            _ => {
                self.scan_punct(b);
                TokenKind::Punct
            }
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_trivia();
        let start = self.pos;
        let b = *self.bytes().get(start)?;
        let kind = self.scan_token(b);
        let text = &self.src[start..self.pos];
        self.prev = match kind {
            TokenKind::Word => Prev::Word {
                start,
                end: self.pos,
            },
            TokenKind::Punct if b != b')' => Prev::Operator,
            TokenKind::Semicolon => Prev::Operator,
            _ => Prev::Operand,
        };
        Some(Token { kind, text, start })
    }
}

impl std::iter::FusedIterator for Lexer<'_> {}

const WS: u8 = 1;
const WORD: u8 = 2;

/// Byte classes: ASCII whitespace (as `char::is_whitespace` sees it) and
/// ASCII word bytes.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = match b {
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => WS,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => WORD,
            _ => 0,
        };
        i += 1;
    }
    table
};

fn is_class(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

/// Length of the Unicode whitespace character `rest` starts with, if any.
fn unicode_space_len(rest: &str) -> Option<usize> {
    rest.chars()
        .next()
        .filter(|c| c.is_whitespace())
        .map(char::len_utf8)
}

/// Whether `word` is an InfluxQL keyword (reserved word or `AND`/`OR`/`IN`).
/// A keyword is never an operand, so a `/` after one starts a regex
/// (`SELECT /u/`, `FROM /cpu.*/`, `GROUP BY /host/`).
pub fn is_keyword(word: &str) -> bool {
    let Some(upper) = Upper::new(word) else {
        return false;
    };
    matches!(
        upper.as_bytes(),
        b"ALL"
            | b"ALTER"
            | b"ANALYZE"
            | b"AND"
            | b"ANY"
            | b"AS"
            | b"ASC"
            | b"BEGIN"
            | b"BY"
            | b"CARDINALITY"
            | b"CONTINUOUS"
            | b"CREATE"
            | b"DATABASE"
            | b"DATABASES"
            | b"DEFAULT"
            | b"DELETE"
            | b"DESC"
            | b"DESTINATIONS"
            | b"DIAGNOSTICS"
            | b"DISTINCT"
            | b"DROP"
            | b"DURATION"
            | b"END"
            | b"EVERY"
            | b"EXACT"
            | b"EXPLAIN"
            | b"FIELD"
            | b"FOR"
            | b"FROM"
            | b"GRANT"
            | b"GRANTS"
            | b"GROUP"
            | b"GROUPS"
            | b"IN"
            | b"INF"
            | b"INSERT"
            | b"INTO"
            | b"KEY"
            | b"KEYS"
            | b"KILL"
            | b"LIMIT"
            | b"MEASUREMENT"
            | b"MEASUREMENTS"
            | b"NAME"
            | b"OFFSET"
            | b"ON"
            | b"OR"
            | b"ORDER"
            | b"PASSWORD"
            | b"POLICIES"
            | b"POLICY"
            | b"PRIVILEGES"
            | b"QUERIES"
            | b"QUERY"
            | b"READ"
            | b"REPLICATION"
            | b"RESAMPLE"
            | b"RETENTION"
            | b"REVOKE"
            | b"SELECT"
            | b"SERIES"
            | b"SET"
            | b"SHARD"
            | b"SHARDS"
            | b"SHOW"
            | b"SLIMIT"
            | b"SOFFSET"
            | b"STATS"
            | b"SUBSCRIPTION"
            | b"SUBSCRIPTIONS"
            | b"TAG"
            | b"TO"
            | b"USER"
            | b"USERS"
            | b"VALUES"
            | b"WHERE"
            | b"WITH"
            | b"WRITE"
    )
}

/// An ASCII-uppercased copy of a word short enough to be a keyword, kept on
/// the stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upper {
    buf: [u8; 16],
    len: usize,
}

impl Upper {
    /// Returns `None` when `word` is longer than any keyword.
    #[inline]
    pub(crate) fn new(word: &str) -> Option<Self> {
        let bytes = word.as_bytes();
        let mut buf = [0u8; 16];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        buf.make_ascii_uppercase();
        Some(Upper {
            buf,
            len: bytes.len(),
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
