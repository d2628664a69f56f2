//! Splits an InfluxQL `q` parameter into statements and classifies each one.
//!
//! This module owns the router's whole understanding of InfluxQL text:
//!
//! * [`split`] cuts a query on the `;` that are outside double-quoted
//!   identifiers, single-quoted strings, regex literals and `--` / `/* */`
//!   comments, trims each statement and drops the empty ones.
//! * [`classify`] says where a statement must go ([`StatementKind`]): one
//!   node (reads), every node (administrative statements), each node on its
//!   own (per-node statements such as `SHOW STATS`), or one node so that it
//!   returns its own parse error (anything unrecognised).
//! * [`parse`] does both in a single pass; [`summarize`] decides what a
//!   whole request is and refuses mixes that cannot be routed.
//! * [`Lexer`] is the token iterator underneath, reusable to look further
//!   into a statement (for example its `FROM` targets).
//! * [`sources`](sources()) says what a statement reads from (its `ON`
//!   database and `FROM` measurements, subqueries included) and
//!   [`sources::show_kind`] which `SHOW` it is, for routing by measurement.
//!
//! It is on the query hot path: scanning is byte-level with `memchr` for
//! literals and comments, never allocates per character or per token, and
//! returns borrowed slices of the input (one `Vec` per call). It never
//! panics: unterminated literals and comments run to the end of the input.
//!
//! ```
//! use influxdb_router::protocol::influxql::{parse, summarize, StatementKind};
//!
//! let statements = parse("SELECT * FROM cpu WHERE host =~ /a;b/; DROP DATABASE old;");
//! assert_eq!(statements.len(), 2);
//! assert_eq!(statements[0].kind, StatementKind::Read);
//! assert_eq!(statements[1].text, "DROP DATABASE old");
//! assert_eq!(statements[1].kind, StatementKind::Admin);
//! assert!(summarize(&statements).is_err());
//! ```

pub mod lexer;
pub mod sources;
#[cfg(test)]
mod tests;

use std::fmt;

use lexer::Upper;
pub use lexer::{is_keyword, tokens, Lexer, Token, TokenKind};
pub use sources::{sources, MeasurementRef, ShowKind, Source, Sources};

/// Where a statement has to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `SELECT` without `INTO`, `SHOW …` (except per-node ones), `EXPLAIN`:
    /// any one healthy node can answer.
    Read,
    /// `CREATE`, `DROP`, `ALTER`, `GRANT`, `REVOKE`, `SET PASSWORD`,
    /// `DELETE`, `SELECT … INTO`: must run on every node.
    Admin,
    /// `SHOW STATS`, `SHOW DIAGNOSTICS`, `SHOW QUERIES`, `KILL QUERY`: the
    /// answer is about one node, so each node is asked on its own.
    PerNode,
    /// Anything else: sent to one node, which returns its own parse error.
    Unknown,
}

impl StatementKind {
    /// A short lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Admin => "admin",
            StatementKind::PerNode => "per-node",
            StatementKind::Unknown => "unknown",
        }
    }

    /// How error messages name statements of this kind.
    fn plural(self) -> &'static str {
        match self {
            StatementKind::Read => "read statements",
            StatementKind::Admin => "administrative statements",
            StatementKind::PerNode => "per-node statements",
            StatementKind::Unknown => "unrecognized statements",
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One statement of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement, trimmed, without its `;`. Comments inside it are kept,
    /// so it may end with a `--` comment: join statements with `;\n`, not
    /// `;`, if they are ever glued back together.
    pub text: &'a str,
    /// Where it has to be sent.
    pub kind: StatementKind,
}

/// The statements of `q` in order, each trimmed and without its `;`.
/// Empty statements (`;;`, a trailing `;`, only comments) are dropped.
pub fn split(q: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for_each_statement(q, |text, _| out.push(text));
    out
}

/// Classifies one statement by its leading keywords (any letter case,
/// leading whitespace and comments skipped). If `statement` holds several
/// statements, the first non-empty one is classified; use [`parse`] for
/// whole queries.
pub fn classify(statement: &str) -> StatementKind {
    classify_first(statement).unwrap_or(StatementKind::Unknown)
}

/// The kind of the first non-empty statement of `s`; `None` if it has none.
fn classify_first(s: &str) -> Option<StatementKind> {
    let mut classifier = Classifier::Start;
    let mut lexer = Lexer::new(s);
    while let Some(token) = lexer.next() {
        let first = classifier == Classifier::Start;
        if token.kind == TokenKind::Semicolon {
            if first {
                continue;
            }
            break;
        }
        classifier.feed(&token);
        if classifier.is_done() {
            break;
        }
        // A SELECT without the letters of INTO anywhere is a read: no need
        // to lex the rest of it.
        if first && classifier == Classifier::Select && !contains_into(&s[lexer.offset()..]) {
            return Some(StatementKind::Read);
        }
    }
    (classifier != Classifier::Start).then(|| classifier.finish())
}

/// Whether `text` contains `into` in any letter case (a quick, conservative
/// test: it also finds it inside literals and longer words).
fn contains_into(text: &str) -> bool {
    let into = u32::from_le_bytes(*b"into");
    text.as_bytes().windows(4).any(|w| {
        // `| 0x20` lower-cases ASCII letters and maps no other byte onto one.
        u32::from_le_bytes([w[0], w[1], w[2], w[3]]) | 0x2020_2020 == into
    })
}

/// [`split`] and [`classify`] in one pass.
pub fn parse(q: &str) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    for_each_statement(q, |text, kind| out.push(Statement { text, kind }));
    out
}

/// Calls `emit` with each non-empty statement of `q` and its kind.
fn for_each_statement<'a>(q: &'a str, mut emit: impl FnMut(&'a str, StatementKind)) {
    let Some(last_semicolon) = memchr::memrchr(b';', q.as_bytes()) else {
        // One statement at most (the usual case): classify it on its own.
        let text = q.trim();
        if let Some(kind) = classify_first(text) {
            emit(text, kind);
        }
        return;
    };
    let mut lexer = Lexer::new(q);
    let mut start = 0;
    let mut classifier = Classifier::Start;
    while let Some(token) = lexer.next() {
        if token.kind == TokenKind::Semicolon {
            flush(&q[start..token.start], classifier, &mut emit);
            start = token.end();
            classifier = Classifier::Start;
            continue;
        }
        classifier.feed(&token);
        // Once the kind is known and no `;` is left, the rest cannot matter.
        if classifier.is_done() && lexer.offset() > last_semicolon {
            break;
        }
    }
    flush(&q[start..], classifier, &mut emit);
}

fn flush<'a>(
    segment: &'a str,
    classifier: Classifier,
    emit: &mut impl FnMut(&'a str, StatementKind),
) {
    let text = segment.trim();
    if classifier != Classifier::Start && !text.is_empty() {
        emit(text, classifier.finish());
    }
}

/// A tiny state machine fed with a statement's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Classifier {
    /// No token yet.
    Start,
    /// After `SHOW`.
    Show,
    /// After `KILL`.
    Kill,
    /// After `SET`.
    Set,
    /// Inside a `SELECT`, looking for `INTO`.
    Select,
    /// Decided; later tokens do not matter.
    Done(StatementKind),
}

impl Classifier {
    /// Takes the next token of the statement into account. Kept tiny for
    /// the states most tokens meet (decided, or inside a SELECT).
    #[inline(always)]
    fn feed(&mut self, token: &Token<'_>) {
        match *self {
            Classifier::Done(_) => {}
            Classifier::Select => {
                if token.is_keyword("INTO") {
                    *self = Classifier::Done(StatementKind::Admin);
                }
            }
            _ => self.feed_leading(token),
        }
    }

    /// `feed` for the first and second tokens of a statement.
    #[inline(never)]
    fn feed_leading(&mut self, token: &Token<'_>) {
        use StatementKind::*;
        *self = match *self {
            Classifier::Start => Self::first(token),
            Classifier::Show => Classifier::Done(show_kind(token)),
            Classifier::Kill if token.is_keyword("QUERY") => Classifier::Done(PerNode),
            Classifier::Set if token.is_keyword("PASSWORD") => Classifier::Done(Admin),
            Classifier::Kill | Classifier::Set => Classifier::Done(Unknown),
            other => other,
        };
    }

    /// The state after a statement's first token.
    fn first(token: &Token<'_>) -> Self {
        use StatementKind::*;
        let upper = match Upper::new(token.text) {
            Some(upper) if token.kind == TokenKind::Word => upper,
            _ => return Classifier::Done(Unknown),
        };
        match upper.as_bytes() {
            b"SELECT" => Classifier::Select,
            b"SHOW" => Classifier::Show,
            b"KILL" => Classifier::Kill,
            b"SET" => Classifier::Set,
            b"EXPLAIN" => Classifier::Done(Read),
            b"CREATE" | b"DROP" | b"ALTER" | b"GRANT" | b"REVOKE" | b"DELETE" => {
                Classifier::Done(Admin)
            }
            _ => Classifier::Done(Unknown),
        }
    }

    fn is_done(self) -> bool {
        matches!(self, Classifier::Done(_))
    }

    fn finish(self) -> StatementKind {
        match self {
            Classifier::Show | Classifier::Select => StatementKind::Read,
            Classifier::Done(kind) => kind,
            Classifier::Start | Classifier::Kill | Classifier::Set => StatementKind::Unknown,
        }
    }
}

/// The kind of `SHOW <token> …`.
fn show_kind(token: &Token<'_>) -> StatementKind {
    let per_node = ["STATS", "DIAGNOSTICS", "QUERIES"];
    if per_node.iter().any(|keyword| token.is_keyword(keyword)) {
        StatementKind::PerNode
    } else {
        StatementKind::Read
    }
}

/// Why a request's statements cannot be routed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixError {
    /// The kind of the first statement.
    pub first: StatementKind,
    /// An excerpt of the first statement.
    pub first_text: String,
    /// The kind of the first statement that differs from `first`.
    pub second: StatementKind,
    /// An excerpt of that statement.
    pub second_text: String,
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mixing {} (\"{}\") and {} (\"{}\") in one request is not supported; \
             send them separately",
            self.first.plural(),
            self.first_text,
            self.second.plural(),
            self.second_text,
        )
    }
}

impl std::error::Error for MixError {}

/// Longest statement excerpt in a [`MixError`], in characters.
const EXCERPT_CHARS: usize = 40;

/// What a whole request is, which decides where it goes.
///
/// * No statement, or any [`StatementKind::Unknown`] one: `Unknown` (one node
///   parses the whole query and returns its error; nothing runs).
/// * Only admin statements: `Admin` (every node).
/// * Only per-node statements: `PerNode`; reads, or reads with per-node
///   statements: `Read` (one node answers them all).
/// * Admin statements together with any other kind: a [`MixError`] naming
///   the first admin statement and the first other one, in query order.
pub fn summarize(statements: &[Statement<'_>]) -> Result<StatementKind, MixError> {
    use StatementKind::{Admin, PerNode, Read, Unknown};
    if statements.is_empty() || statements.iter().any(|s| s.kind == Unknown) {
        return Ok(Unknown);
    }
    let admin = statements.iter().position(|s| s.kind == Admin);
    let other = statements.iter().position(|s| s.kind != Admin);
    match (admin, other) {
        (Some(a), Some(o)) => {
            let (first, second) = (&statements[a.min(o)], &statements[a.max(o)]);
            Err(MixError {
                first: first.kind,
                first_text: excerpt(first.text),
                second: second.kind,
                second_text: excerpt(second.text),
            })
        }
        (Some(_), None) => Ok(Admin),
        _ if statements.iter().all(|s| s.kind == PerNode) => Ok(PerNode),
        _ => Ok(Read),
    }
}

/// `text` on one line (whitespace runs become one space), cut to
/// [`EXCERPT_CHARS`] characters with `…` when longer.
fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => {
            out.truncate(cut);
            out.push('…');
            out
        }
        None => out,
    }
}
