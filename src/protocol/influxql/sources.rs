//! What a statement reads from: its `ON` database, its `FROM` measurements
//! (subqueries included) and, for `SHOW` statements, what is shown.
//!
//! This is what routing by measurement needs: [`sources`] lists the
//! measurements a statement names and [`show_kind`] tells which `SHOW` it
//! is, so that a read can go to the cluster that owns its data, or to every
//! cluster when it spans several (see [`crate::protocol::merge`]).
//!
//! It works on the [`Lexer`]'s tokens, so quoted identifiers,
//! strings, regexes and comments are honoured, keywords match in any letter
//! case, and it never panics: on text that is not valid InfluxQL it returns
//! what it recognised, and the node that runs the statement reports the
//! parse error.
//!
//! Measurement names follow InfluxQL:
//!
//! | text | db | rp | measurement |
//! |---|---|---|---|
//! | `cpu`, `"cpu"` | – | – | `cpu` |
//! | `autogen.cpu` (two parts: **rp**.measurement) | – | `autogen` | `cpu` |
//! | `db..cpu` (default rp) | `db` | – | `cpu` |
//! | `"my db"."autogen"."cpu"` | `my db` | `autogen` | `cpu` |
//! | `/^cpu.*/` | – | – | regex `^cpu.*` |
//! | `db.rp./^cpu/`, `db../^cpu/` | `db` | `rp` / – | regex `^cpu` |
//!
//! ```
//! use influxdb_router::protocol::influxql::{sources, MeasurementRef, Source};
//!
//! let s = sources(r#"SELECT mean(v) FROM "my db"..cpu, /^mem/ WHERE time > now() - 1h"#);
//! assert_eq!(s.from, [
//!     Source { db: Some("my db".into()), rp: None, measurement: MeasurementRef::Name("cpu".into()) },
//!     Source { db: None, rp: None, measurement: MeasurementRef::Regex("^mem".into()) },
//! ]);
//! ```

use super::{is_keyword, Lexer, Token, TokenKind};

/// The measurement part of a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MeasurementRef {
    /// A measurement name, unquoted and unescaped (`"a \"b\""` is `a "b"`).
    Name(String),
    /// A regex: the source between the slashes, with `\/` unescaped to `/`
    /// (any other backslash is kept, as InfluxQL does).
    Regex(String),
}

/// One entry of a `FROM` list (or of `WITH MEASUREMENT`, or the measurement
/// of `DROP MEASUREMENT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// The database, when the source names one (`db.rp.m`, `db..m`).
    pub db: Option<String>,
    /// The retention policy, when the source names one (`rp.m`, `db.rp.m`).
    pub rp: Option<String>,
    /// The measurement or measurement regex.
    pub measurement: MeasurementRef,
}

/// What one statement reads from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    /// The database of an `ON` clause: `SHOW MEASUREMENTS ON db`, `SHOW TAG
    /// KEYS ON "db" FROM cpu`, `CREATE RETENTION POLICY rp ON db …`, `GRANT
    /// READ ON db …`. `ON *` (every database) is `Some("*")`; the retention
    /// policy of `ON db.rp` is not kept. `KILL QUERY n ON host` names a host,
    /// not a database, and is ignored.
    pub on: Option<String>,
    /// Every measurement named by a `FROM` list, at any depth (the sources
    /// of subqueries are included), by `SHOW MEASUREMENTS WITH MEASUREMENT =
    /// name` / `=~ /re/`, or by `DROP MEASUREMENT name`; in text order. Empty
    /// when the statement names none (no `FROM`). The target of `INTO` and
    /// the `FROM user` of `REVOKE` are not sources.
    pub from: Vec<Source>,
    /// Whether some `FROM` list holds a subquery, `FROM (SELECT …)`.
    pub subquery: bool,
}

/// What a `SHOW` statement shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShowKind {
    /// `SHOW MEASUREMENTS`
    Measurements,
    /// `SHOW MEASUREMENT [EXACT] CARDINALITY`
    MeasurementCardinality,
    /// `SHOW TAG KEYS`
    TagKeys,
    /// `SHOW TAG KEY [EXACT] CARDINALITY`
    TagKeyCardinality,
    /// `SHOW TAG VALUES`
    TagValues,
    /// `SHOW TAG VALUES [EXACT] CARDINALITY`
    TagValuesCardinality,
    /// `SHOW FIELD KEYS`
    FieldKeys,
    /// `SHOW FIELD KEY [EXACT] CARDINALITY`
    FieldKeyCardinality,
    /// `SHOW SERIES`
    Series,
    /// `SHOW SERIES [EXACT] CARDINALITY`
    SeriesCardinality,
    /// `SHOW DATABASES`
    Databases,
    /// `SHOW RETENTION POLICIES`
    RetentionPolicies,
    /// `SHOW USERS`
    Users,
    /// `SHOW GRANTS`
    Grants,
    /// `SHOW CONTINUOUS QUERIES`
    ContinuousQueries,
    /// `SHOW SHARDS`
    Shards,
    /// `SHOW SHARD GROUPS`
    ShardGroups,
    /// `SHOW SUBSCRIPTIONS`
    Subscriptions,
    /// `SHOW STATS`
    Stats,
    /// `SHOW DIAGNOSTICS`
    Diagnostics,
    /// `SHOW QUERIES`
    Queries,
    /// Any other `SHOW …`, including incomplete ones.
    Other,
}

impl ShowKind {
    /// What `statement` shows; `None` when it is not a `SHOW` statement.
    /// Same as [`show_kind`].
    pub fn of(statement: &str) -> Option<ShowKind> {
        show_kind(statement)
    }

    /// Whether the answer is a count (`… CARDINALITY`), which is summed
    /// rather than unioned when several clusters answer.
    pub fn is_cardinality(self) -> bool {
        matches!(
            self,
            ShowKind::MeasurementCardinality
                | ShowKind::TagKeyCardinality
                | ShowKind::TagValuesCardinality
                | ShowKind::FieldKeyCardinality
                | ShowKind::SeriesCardinality
        )
    }

    /// Whether the answer is about one node (`SHOW STATS`, `DIAGNOSTICS`,
    /// `QUERIES`) rather than about the data.
    pub fn is_per_node(self) -> bool {
        matches!(
            self,
            ShowKind::Stats | ShowKind::Diagnostics | ShowKind::Queries
        )
    }
}

/// The significant tokens of the first statement of `statement` (leading
/// `;` skipped, everything from the next `;` on ignored).
fn statement_tokens(statement: &str) -> Vec<Token<'_>> {
    Lexer::new(statement)
        .skip_while(|t| t.kind == TokenKind::Semicolon)
        .take_while(|t| t.kind != TokenKind::Semicolon)
        .collect()
}

/// What `SHOW` statement `statement` is; `None` when it is not one.
/// Keywords match in any letter case; comments are skipped.
///
/// ```
/// use influxdb_router::protocol::influxql::{sources::show_kind, ShowKind};
///
/// assert_eq!(show_kind("show tag keys on db from cpu"), Some(ShowKind::TagKeys));
/// assert_eq!(show_kind("SHOW SERIES EXACT CARDINALITY"), Some(ShowKind::SeriesCardinality));
/// assert_eq!(show_kind("SELECT * FROM cpu"), None);
/// ```
pub fn show_kind(statement: &str) -> Option<ShowKind> {
    let tokens = statement_tokens(statement);
    if !tokens.first()?.is_keyword("SHOW") {
        return None;
    }
    let word = |i: usize, keyword: &str| tokens.get(i).is_some_and(|t| t.is_keyword(keyword));
    // `[EXACT] CARDINALITY` starting at token `i`.
    let cardinality = |i: usize| word(i, "CARDINALITY") || word(i, "EXACT");
    use ShowKind::*;
    let kind = if word(1, "MEASUREMENTS") {
        Measurements
    } else if word(1, "MEASUREMENT") && cardinality(2) {
        MeasurementCardinality
    } else if word(1, "TAG") && word(2, "KEYS") {
        TagKeys
    } else if word(1, "TAG") && word(2, "KEY") && cardinality(3) {
        TagKeyCardinality
    } else if word(1, "TAG") && word(2, "VALUES") {
        if cardinality(3) {
            TagValuesCardinality
        } else {
            TagValues
        }
    } else if word(1, "FIELD") && word(2, "KEYS") {
        FieldKeys
    } else if word(1, "FIELD") && word(2, "KEY") && cardinality(3) {
        FieldKeyCardinality
    } else if word(1, "SERIES") {
        if cardinality(2) {
            SeriesCardinality
        } else {
            Series
        }
    } else if word(1, "DATABASES") {
        Databases
    } else if word(1, "RETENTION") && word(2, "POLICIES") {
        RetentionPolicies
    } else if word(1, "USERS") {
        Users
    } else if word(1, "GRANTS") {
        Grants
    } else if word(1, "CONTINUOUS") && word(2, "QUERIES") {
        ContinuousQueries
    } else if word(1, "SHARDS") {
        Shards
    } else if word(1, "SHARD") && word(2, "GROUPS") {
        ShardGroups
    } else if word(1, "SUBSCRIPTIONS") {
        Subscriptions
    } else if word(1, "STATS") {
        Stats
    } else if word(1, "DIAGNOSTICS") {
        Diagnostics
    } else if word(1, "QUERIES") {
        Queries
    } else {
        Other
    };
    Some(kind)
}

/// What `statement` reads from: its `ON` database, the measurements of its
/// `FROM` lists (subqueries included) and whether it has a subquery. Only
/// the first statement is looked at when `statement` holds several.
///
/// Never fails: on text that is not valid InfluxQL the sources recognised
/// so far are returned (a source cut short, such as `FROM db.`, is left
/// out).
pub fn sources(statement: &str) -> Sources {
    let tokens = statement_tokens(statement);
    let mut scan = Scan {
        tokens: &tokens,
        closing: matching_parens(&tokens),
        resume_at: Vec::new(),
        out: Sources::default(),
    };
    scan.run();
    scan.out
}

/// `closing[i]` is the index of the `)` matching a `(` at `i` (or
/// `tokens.len()` when it is never closed); other entries are unused.
fn matching_parens(tokens: &[Token<'_>]) -> Vec<usize> {
    let mut closing = vec![tokens.len(); tokens.len()];
    let mut open = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if is_punct(token, "(") {
            open.push(i);
        } else if is_punct(token, ")") {
            if let Some(start) = open.pop() {
                closing[start] = i;
            }
        }
    }
    closing
}

fn is_punct(token: &Token<'_>, text: &str) -> bool {
    token.kind == TokenKind::Punct && token.text == text
}

/// One walk over a statement's tokens.
struct Scan<'t, 'a> {
    tokens: &'t [Token<'a>],
    closing: Vec<usize>,
    /// Indices of the `)` closing subqueries whose `FROM` list goes on after
    /// them (`FROM (SELECT …), cpu`), innermost last.
    resume_at: Vec<usize>,
    out: Sources,
}

impl Scan<'_, '_> {
    fn word(&self, i: usize, keyword: &str) -> bool {
        self.tokens.get(i).is_some_and(|t| t.is_keyword(keyword))
    }

    fn run(&mut self) {
        let tokens = self.tokens;
        let Some(first) = tokens.first() else {
            return;
        };
        // `REVOKE … FROM user` and `GRANT … TO user` name users, not data.
        let from_lists = !(first.is_keyword("REVOKE") || first.is_keyword("GRANT"));
        let on_is_database = !first.is_keyword("KILL");
        if first.is_keyword("DROP") && self.word(1, "MEASUREMENT") {
            if let Some((source, _)) = parse_source(tokens, 2) {
                self.out.from.push(source);
            }
        }
        let mut i = 0;
        while i < tokens.len() {
            if self.resume_at.last() == Some(&i) {
                // The end of a subquery in a FROM list: the list may go on.
                self.resume_at.pop();
                i = if tokens.get(i + 1).is_some_and(|t| is_punct(t, ",")) {
                    self.read_from_list(i + 2)
                } else {
                    i + 1
                };
                continue;
            }
            let token = &tokens[i];
            if from_lists && token.is_keyword("FROM") {
                i = self.read_from_list(i + 1);
                continue;
            }
            if on_is_database && token.is_keyword("ON") && self.out.on.is_none() {
                self.out.on = tokens.get(i + 1).and_then(database);
            }
            if token.is_keyword("WITH")
                && self.word(i + 1, "MEASUREMENT")
                && tokens
                    .get(i + 2)
                    .is_some_and(|t| is_punct(t, "=") || is_punct(t, "=~"))
            {
                if let Some((source, next)) = parse_source(tokens, i + 3) {
                    self.out.from.push(source);
                    i = next;
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Reads a `FROM` list starting at token `i`; returns the index of the
    /// first token after it, or just inside a subquery's `(` (the walk goes
    /// through the subquery and comes back to the list at its `)`).
    fn read_from_list(&mut self, mut i: usize) -> usize {
        loop {
            let Some(token) = self.tokens.get(i) else {
                return i;
            };
            if is_punct(token, "(") {
                self.out.subquery = true;
                self.resume_at.push(self.closing[i]);
                return i + 1;
            }
            let Some((source, next)) = parse_source(self.tokens, i) else {
                return i;
            };
            self.out.from.push(source);
            i = next;
            if !self.tokens.get(i).is_some_and(|t| is_punct(t, ",")) {
                return i;
            }
            i += 1;
        }
    }
}

/// The database named by the token after `ON`.
fn database(token: &Token<'_>) -> Option<String> {
    if is_punct(token, "*") {
        return Some("*".to_string());
    }
    identifier(token)
}

/// An identifier token, unquoted: a word that is not a keyword, or a
/// double-quoted identifier.
fn identifier(token: &Token<'_>) -> Option<String> {
    match token.kind {
        TokenKind::Word if !is_keyword(token.text) => Some(token.text.to_string()),
        TokenKind::QuotedIdent => Some(unquote(token.text)),
        _ => None,
    }
}

/// One dot-separated part of a source.
enum Part {
    Ident(String),
    Regex(String),
}

/// Parses one source (`m`, `rp.m`, `db.rp.m`, `db..m`, `/re/`, `db.rp./re/`)
/// starting at token `i`; returns it and the index of the token after it.
fn parse_source(tokens: &[Token<'_>], mut i: usize) -> Option<(Source, usize)> {
    let mut parts: Vec<Option<Part>> = Vec::new();
    let mut expect_part = true;
    while let Some(token) = tokens.get(i) {
        if expect_part {
            if let Some(name) = identifier(token) {
                parts.push(Some(Part::Ident(name)));
                expect_part = false;
                i += 1;
                continue;
            }
            if token.kind == TokenKind::Regex {
                // A regex is always the last part.
                parts.push(Some(Part::Regex(regex_source(token.text))));
                expect_part = false;
                i += 1;
                break;
            }
        }
        if is_punct(token, ".") && !parts.is_empty() {
            if expect_part {
                // `db..m`: an empty (default) retention policy.
                parts.push(None);
            }
            expect_part = true;
            i += 1;
            continue;
        }
        break;
    }
    if expect_part {
        // Nothing, or a trailing dot: no measurement.
        return None;
    }
    let measurement = match parts.pop()?? {
        Part::Ident(name) => MeasurementRef::Name(name),
        Part::Regex(re) => MeasurementRef::Regex(re),
    };
    // InfluxQL allows three parts at most; keep the last ones of longer
    // (invalid) names so that routing still sees the measurement.
    let mut qualifiers = parts.into_iter().rev().map(|part| match part {
        Some(Part::Ident(name)) if !name.is_empty() => Some(name),
        _ => None,
    });
    let rp = qualifiers.next().flatten();
    let db = qualifiers.next().flatten();
    Some((
        Source {
            db,
            rp,
            measurement,
        },
        i,
    ))
}

/// The value of a double-quoted identifier: quotes removed, `\n`, `\\`,
/// `\"` and `\'` unescaped as InfluxQL does (other backslashes are kept).
/// An unterminated identifier runs to the end of the text.
fn unquote(text: &str) -> String {
    let inner = text.strip_prefix('"').unwrap_or(text);
    let inner = match inner.strip_suffix('"') {
        Some(stripped) if closes(inner) => stripped,
        _ => inner,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(e @ ('\\' | '"' | '\'')) => out.push(e),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Whether `inner` (an identifier's text after its opening quote) ends with
/// a closing quote rather than an escaped one.
fn closes(inner: &str) -> bool {
    let Some(body) = inner.strip_suffix('"') else {
        return false;
    };
    let backslashes = body.bytes().rev().take_while(|&b| b == b'\\').count();
    backslashes % 2 == 0
}

/// The source of a regex literal: slashes removed and `\/` unescaped. An
/// unterminated regex runs to the end of the text.
fn regex_source(text: &str) -> String {
    let inner = text.strip_prefix('/').unwrap_or(text);
    let inner = match inner.strip_suffix('/') {
        // The lexer ends a regex at the first `/` not preceded by `\`.
        Some(stripped) if !stripped.ends_with('\\') => stripped,
        _ => inner,
    };
    inner.replace("\\/", "/")
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
