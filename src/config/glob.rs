//! Shell-style globs for `[[route]]` database and measurement patterns.
//!
//! Syntax: `*` (any run of characters, also none), `?` (exactly one
//! character), `[abc]`, `[a-z]`, `[!a-z]` (one character in or not in the
//! set; a `]` right after `[` or `[!` is literal), and `\` to take the next
//! character literally (`\*`). Everything else matches itself, case
//! sensitively, as InfluxDB names are.
//!
//! A pattern is parsed once, when the configuration is checked, into the
//! cheapest matcher that fits it: `*` alone, an exact name, a prefix
//! (`telemetry*`), a suffix (`*_tmp`), or a general token list. Before any
//! of them runs, a name is checked against the byte-length bounds and the
//! leading literal byte of the pattern, both stored inline, so most names a
//! rule does not match are refused without reading the pattern itself.
//! Matching never allocates and never panics.

use std::fmt;

/// A parsed glob pattern; compare and print it as the text it came from.
#[derive(Clone)]
pub struct Glob {
    /// Shortest and longest name (in bytes) that can match.
    min_len: usize,
    max_len: usize,
    /// The byte every match starts with, when the pattern starts literally.
    first: Option<u8>,
    matcher: Matcher,
    pattern: String,
}

#[derive(Debug, Clone)]
enum Matcher {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
    General(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    AnyChar,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses `pattern`; the error says what is wrong, quoting the pattern.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("expected a name or a glob like \"telemetry*\", got \"\"".to_owned());
        }
        let tokens = tokenize(pattern).map_err(|why| format!("bad glob {pattern:?}: {why}"))?;
        let (min_len, max_len) = length_bounds(&tokens);
        let first = match tokens.first() {
            Some(Token::Char(c)) => Some(c.encode_utf8(&mut [0; 4]).as_bytes()[0]),
            _ => None,
        };
        Ok(Glob {
            min_len,
            max_len,
            first,
            matcher: Matcher::from_tokens(tokens),
            pattern: pattern.to_owned(),
        })
    }

    /// A glob matching exactly `name` (its `*`, `?`, `[`, `]`, `!` and
    /// `\\` taken literally).
    pub fn literal(name: &str) -> Result<Glob, String> {
        let mut pattern = String::with_capacity(name.len() + 2);
        for c in name.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '!' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        Glob::new(&pattern)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern is `*` (or `**`…), matching every name.
    pub fn matches_everything(&self) -> bool {
        matches!(self.matcher, Matcher::Any)
    }

    /// Whether `name` matches the whole pattern.
    pub fn is_match(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        if bytes.len() < self.min_len || bytes.len() > self.max_len {
            return false;
        }
        if self.first.is_some() && bytes.first() != self.first.as_ref() {
            return false;
        }
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Exact(exact) => name == exact,
            Matcher::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => name.ends_with(suffix.as_str()),
            Matcher::General(tokens) => general_match(tokens, name),
        }
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl Matcher {
    /// The fast path that fits `tokens`, else the general matcher.
    fn from_tokens(mut tokens: Vec<Token>) -> Matcher {
        tokens.dedup_by(|a, b| *a == Token::AnyRun && *b == Token::AnyRun);
        let (star_first, star_last) = (
            tokens.first() == Some(&Token::AnyRun),
            tokens.last() == Some(&Token::AnyRun),
        );
        match (tokens.len(), star_first, star_last) {
            (1, true, _) => Some(Matcher::Any),
            (_, false, false) => literal(&tokens).map(Matcher::Exact),
            (_, true, false) => literal(&tokens[1..]).map(Matcher::Suffix),
            (n, false, true) => literal(&tokens[..n - 1]).map(Matcher::Prefix),
            (_, true, true) => None,
        }
        .unwrap_or(Matcher::General(tokens))
    }
}

/// The text of `tokens` when they are all plain characters.
fn literal(tokens: &[Token]) -> Option<String> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Char(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// The shortest and longest match in bytes: a literal counts its UTF-8
/// length, `?` and classes 1 to 4 bytes, and a `*` lifts the upper bound.
fn length_bounds(tokens: &[Token]) -> (usize, usize) {
    tokens.iter().fold((0, 0), |(min, max), token| match token {
        Token::Char(c) => (min + c.len_utf8(), max.saturating_add(c.len_utf8())),
        Token::AnyChar | Token::Class { .. } => (min + 1, max.saturating_add(4)),
        Token::AnyRun => (min, usize::MAX),
    })
}

fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let token = match chars[i] {
            '*' => Token::AnyRun,
            '?' => Token::AnyChar,
            '[' => {
                let (token, end) = class(&chars, i + 1)?;
                i = end;
                token
            }
            '\\' => {
                i += 1;
                Token::Char(*chars.get(i).ok_or("\"\\\" at the end escapes nothing")?)
            }
            c => Token::Char(c),
        };
        tokens.push(token);
        i += 1;
    }
    Ok(tokens)
}

/// Reads a class starting after its `[`; returns it and the index of its `]`.
fn class(chars: &[char], mut i: usize) -> Result<(Token, usize), String> {
    let unclosed = || "unclosed \"[\"; write \"\\[\" for a literal \"[\"".to_owned();
    let negated = chars.get(i) == Some(&'!');
    i += usize::from(negated);
    let start = i;
    let mut ranges = Vec::new();
    loop {
        let lo = match *chars.get(i).ok_or_else(unclosed)? {
            ']' if i > start => return Ok((Token::Class { negated, ranges }, i)),
            '\\' => {
                i += 1;
                *chars.get(i).ok_or_else(unclosed)?
            }
            c => c,
        };
        let hi = match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                i += 2;
                hi
            }
            _ => lo,
        };
        if hi < lo {
            return Err(format!("empty range \"{lo}-{hi}\" in \"[…]\""));
        }
        ranges.push((lo, hi));
        i += 1;
    }
}

/// `*`-backtracking match: on a mismatch, the last `*` takes one more
/// character and matching resumes after it. O(pattern × name) at worst.
fn general_match(tokens: &[Token], name: &str) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        let next = name[t..].chars().next();
        match (tokens.get(p), next) {
            (Some(Token::AnyRun), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(token), Some(c)) if token_matches(token, c) => {
                p += 1;
                t += c.len_utf8();
            }
            (None, None) => return true,
            _ => match star {
                Some((sp, st)) if st < name.len() => {
                    let step = name[st..].chars().next().map_or(1, char::len_utf8);
                    star = Some((sp, st + step));
                    (p, t) = (sp + 1, st + step);
                }
                _ => return false,
            },
        }
    }
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(want) => *want == c,
        Token::AnyChar => true,
        Token::AnyRun => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        let g = glob(pattern);
        for name in yes {
            assert!(g.is_match(name), "{pattern} should match {name:?}");
        }
        for name in no {
            assert!(!g.is_match(name), "{pattern} should not match {name:?}");
        }
    }

    #[test]
    fn a_literal_glob_matches_only_its_name() {
        for name in ["cpu", "a*b", "x?[y]!", "back\\slash", "[", "*"] {
            let g = Glob::literal(name).unwrap();
            assert!(g.is_match(name), "{name:?} via {:?}", g.as_str());
            assert!(!g.is_match(&format!("{name}z")), "{name:?}");
        }
        assert!(!Glob::literal("a*b").unwrap().is_match("axxb"));
    }

    #[test]
    fn plain_names_match_only_themselves() {
        check(
            "telegraf",
            &["telegraf"],
            &["telegraf2", "Telegraf", "tele", ""],
        );
        assert!(matches!(glob("telegraf").matcher, Matcher::Exact(_)));
    }

    #[test]
    fn a_star_matches_any_run_including_none() {
        check("*", &["", "a", "anything at all"], &[]);
        check("cpu*", &["cpu", "cpu_load", "cpu*"], &["cp", "xcpu"]);
        check("*_tmp", &["_tmp", "x_tmp"], &["x_tmp2"]);
        check(
            "a*b*c",
            &["abc", "aXbYc", "abbbc", "acbc"],
            &["ab", "acb", "abcx"],
        );
        check("**x", &["x", "yyx"], &["xy"]);
        assert!(glob("**").matches_everything());
        assert!(matches!(glob("cpu*").matcher, Matcher::Prefix(_)));
        assert!(matches!(glob("*_tmp").matcher, Matcher::Suffix(_)));
    }

    #[test]
    fn a_question_mark_matches_exactly_one_character() {
        check("db?", &["db1", "dbx", "dbé"], &["db", "db12"]);
        check("?", &["a", "ü"], &["", "ab"]);
    }

    #[test]
    fn classes_match_sets_ranges_and_their_negation() {
        check("db[abc]", &["dba", "dbc"], &["dbd", "db", "dbab"]);
        check("db[a-c0-9]", &["dbb", "db7"], &["dbd", "db-"]);
        check("db[!x]", &["dba", "db-"], &["dbx", "db"]);
        check("db[!a-z]", &["db1", "dbA"], &["dbq"]);
        check("[]x]", &["]", "x"], &["a"]);
        check("[!]]", &["a"], &["]"]);
        check("[a-]", &["a", "-"], &["b"]);
        check("[\\]]", &["]"], &["\\"]);
        check("[é-ü]z", &["ñz"], &["az"]);
    }

    #[test]
    fn a_backslash_makes_the_next_character_literal() {
        check("a\\*", &["a*"], &["a", "ab"]);
        check("\\[x\\]", &["[x]"], &["x"]);
        check("\\?", &["?"], &["a"]);
    }

    #[test]
    fn general_patterns_backtrack_over_multibyte_text() {
        check("*é?[0-9]", &["ééx1", "é€5"], &["é5", "ée5x"]);
        check(
            "t*[0-9]*z",
            &["t1z", "tab2cdz", "t9z9z"],
            &["t1", "tz", "taz"],
        );
    }

    #[test]
    fn length_bounds_and_first_byte_only_refuse_names_that_cannot_match() {
        let g = glob("é[a-z]?x*");
        assert_eq!((g.min_len, g.max_len, g.first), (5, usize::MAX, Some(0xc3)));
        let g = glob("[é]?");
        assert_eq!((g.min_len, g.max_len, g.first), (2, 8, None));
        check("[é]?", &["éü", "é1"], &["é", "éüx"]);
        check("é?", &["éé"], &["e1", "é"]);
    }

    #[test]
    fn bad_patterns_are_refused_quoting_the_pattern() {
        for (pattern, why) in [
            ("cpu[", "unclosed \"[\""),
            ("cpu[ab", "unclosed \"[\""),
            ("[]", "unclosed \"[\""),
            ("[!]", "unclosed \"[\""),
            ("x[a\\", "unclosed \"[\""),
            ("x\\", "escapes nothing"),
            ("[z-a]", "empty range \"z-a\""),
        ] {
            let err = Glob::new(pattern).unwrap_err();
            let quoted = format!("bad glob {pattern:?}: ");
            assert!(err.starts_with(&quoted) && err.contains(why), "{err}");
        }
        assert!(Glob::new("").unwrap_err().contains("got \"\""));
    }

    #[test]
    fn globs_compare_and_print_as_their_pattern() {
        assert_eq!(glob("a*"), glob("a*"));
        assert_ne!(glob("a*"), glob("a**"));
        assert_eq!(glob("a[b]").to_string(), "a[b]");
        assert_eq!(format!("{:?}", glob("a?")), "Glob(\"a?\")");
    }
}
