//! Reads the clauses of a statement's outermost query that a merge depends
//! on: `LIMIT`, `OFFSET`, `SLIMIT`, `SOFFSET` ([`limits`]) and `ORDER BY …
//! DESC`, and rewrites the statement as each cluster must run it
//! ([`rewrite_for_fanout`]). Subqueries, strings and comments are left to the
//! nodes: only depth-0 tokens of the first statement are read.

use super::Limits;
use crate::protocol::influxql::{Lexer, Token, TokenKind};

/// The `LIMIT`, `OFFSET`, `SLIMIT` and `SOFFSET` of `statement`'s outermost
/// query (those of subqueries are the nodes' business). Only the first
/// statement is read when there are several.
pub fn limits(statement: &str) -> Limits {
    outer_clauses(statement).limits()
}

/// `statement` as each cluster must run it when the answers are merged:
/// `LIMIT n OFFSET m` becomes `LIMIT n+m`, a lone `OFFSET m` is removed,
/// and the same for `SLIMIT`/`SOFFSET`, in the outermost query only (see the
/// [`merge`](super) module documentation). `None` when there is nothing to
/// change (no `OFFSET`/`SOFFSET`, or zero ones). Only the first statement is
/// rewritten when there are several; the rest of the text is kept as it is.
pub fn rewrite_for_fanout(statement: &str) -> Option<String> {
    let clauses = outer_clauses(statement);
    // (start, end, replacement) edits of the text, in any order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (limit, offset) in [
        (clauses.limit, clauses.offset),
        (clauses.slimit, clauses.soffset),
    ] {
        let Some(offset) = offset.filter(|o| o.value > 0) else {
            continue;
        };
        if let Some(limit) = limit.filter(|l| l.value > 0) {
            let sum = limit
                .value
                .saturating_add(offset.value)
                .min(i64::MAX as u64);
            edits.push((limit.number_start, limit.number_end, sum.to_string()));
        }
        // Remove the clause with the space (and comments) before it.
        edits.push((offset.preceding_end, offset.number_end, String::new()));
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.0));
    let mut text = statement.to_string();
    for (start, end, replacement) in edits {
        text.replace_range(start..end, &replacement);
    }
    Some(text)
}

/// A `LIMIT n`-like clause found in a statement.
#[derive(Debug, Clone, Copy)]
struct Clause {
    /// The number's value.
    value: u64,
    /// Where the number starts.
    number_start: usize,
    /// Where the number ends.
    number_end: usize,
    /// Where the token before the keyword ends.
    preceding_end: usize,
}

/// The clauses of a statement's outermost query that matter to a merge.
#[derive(Debug, Default, Clone)]
pub(super) struct OuterClauses {
    limit: Option<Clause>,
    offset: Option<Clause>,
    slimit: Option<Clause>,
    soffset: Option<Clause>,
    pub(super) descending: bool,
}

impl OuterClauses {
    pub(super) fn limits(&self) -> Limits {
        let get = |clause: Option<Clause>| {
            clause
                .filter(|c| c.value > 0)
                .map(|c| usize::try_from(c.value).unwrap_or(usize::MAX))
        };
        Limits {
            limit: get(self.limit),
            offset: get(self.offset),
            slimit: get(self.slimit),
            soffset: get(self.soffset),
        }
    }
}

/// Reads the depth-0 `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET <integer>` clauses
/// and `ORDER BY … DESC` of the first statement of `statement`.
pub(super) fn outer_clauses(statement: &str) -> OuterClauses {
    let tokens: Vec<Token<'_>> = Lexer::new(statement)
        .skip_while(|t| t.kind == TokenKind::Semicolon)
        .take_while(|t| t.kind != TokenKind::Semicolon)
        .collect();
    let mut out = OuterClauses::default();
    let mut depth = 0usize;
    let mut in_order_by = false;
    for (i, token) in tokens.iter().enumerate() {
        if token.kind == TokenKind::Punct {
            match token.text {
                "(" => depth += 1,
                ")" => depth = depth.saturating_sub(1),
                _ => {}
            }
            continue;
        }
        if depth > 0 || token.kind != TokenKind::Word {
            continue;
        }
        if token.is_keyword("ORDER") && tokens.get(i + 1).is_some_and(|t| t.is_keyword("BY")) {
            in_order_by = true;
            continue;
        }
        if in_order_by && token.is_keyword("DESC") {
            out.descending = true;
            continue;
        }
        let slot = if token.is_keyword("LIMIT") {
            &mut out.limit
        } else if token.is_keyword("OFFSET") {
            &mut out.offset
        } else if token.is_keyword("SLIMIT") {
            &mut out.slimit
        } else if token.is_keyword("SOFFSET") {
            &mut out.soffset
        } else {
            continue;
        };
        in_order_by = false;
        let Some(number) = tokens.get(i + 1).filter(|t| t.kind == TokenKind::Number) else {
            continue;
        };
        // Durations (`FUTURE LIMIT 1h`) and fractions are not row counts.
        let Ok(value) = number.text.parse::<u64>() else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(Clause {
                value,
                number_start: number.start,
                number_end: number.end(),
                preceding_end: if i == 0 { 0 } else { tokens[i - 1].end() },
            });
        }
    }
    out
}
