//! A continuous query's text as `cq-backfill` uses it: the `SELECT … INTO`
//! between `BEGIN` and `END`, its `GROUP BY time(interval[, offset])`, and
//! the statement that runs it over one window of past time.
//!
//! The text comes from a server (`SHOW CONTINUOUS QUERIES`), so it is read
//! with the InfluxQL lexer, never by searching for words: quoted names,
//! strings, regexes and comments cannot fool it, and a text that is not one
//! `CREATE CONTINUOUS QUERY <name> ON <db> … BEGIN SELECT … INTO … END`
//! statement is refused. The window's time condition is put in at token
//! boundaries: `WHERE (<its condition>) AND time >= a AND time < b`, or
//! `WHERE time >= a AND time < b` before `GROUP BY`.
//!
//! Several intervals may run in one statement only when that writes exactly
//! what running them one by one (as the CQ service does) would. A CQ run
//! over one interval writes nothing for a series without data in it; over
//! several, `fill(0)` (any number), `fill(previous)` and `fill(linear)`
//! write rows for the empty intervals between data, and
//! `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET` count over the whole statement, so
//! such CQs run one interval per statement. With `fill(null)` (the default)
//! or `fill(none)` several intervals run at once, and the statement says
//! `fill(none)`: InfluxDB 1.6 already writes no all-null rows for `INTO`
//! (a plain `SELECT` fills an empty interval's `count()` with 0), and
//! `fill(none)` makes that explicit rather than a property of the version.

use crate::protocol::influxql::lexer::{tokens, Token, TokenKind};

use super::influx::ident;
use super::schema::defines_cq;
use super::time::{parse_influxql_duration, Range, MAX_TIME, MIN_TIME};

/// The `SELECT … INTO` of a continuous query, ready to run over windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqSelect {
    /// The statement between `BEGIN` and `END`, trimmed.
    select: String,
    /// `GROUP BY time(interval, …)` in nanoseconds (> 0).
    pub interval: i64,
    /// Its offset, in `[0, interval)`.
    pub offset: i64,
    /// The existing condition (byte span in `select`) and where its `WHERE` starts.
    condition: Option<(usize, usize, usize)>,
    /// Where `GROUP` starts.
    group: usize,
    fill: FillEdit,
    /// Why each statement covers one interval only, when it must.
    pub one_interval: Option<String>,
}

/// What becomes of the query's `fill()` in a backfill statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FillEdit {
    /// `fill(none)` is put in at this offset (after the GROUP BY dimensions).
    Add(usize),
    /// `fill(null)` at this span becomes `fill(none)`.
    Replace(usize, usize),
    /// Left as it is (`fill(none)`, or one interval per statement).
    Keep,
}

impl CqSelect {
    /// Reads the text of continuous query `name` on `db` (as
    /// `SHOW CONTINUOUS QUERIES` gives it).
    pub fn parse(text: &str, name: &str, db: &str) -> Result<CqSelect, String> {
        if !defines_cq(text, name, db) {
            return Err(format!(
                "its text is not one `CREATE CONTINUOUS QUERY {} ON {} …` statement: `{text}`",
                ident(name),
                ident(db)
            ));
        }
        let all: Vec<Token<'_>> = tokens(text).collect();
        let mut last = all.len() - 1;
        if all[last].kind == TokenKind::Semicolon {
            last -= 1;
        }
        if !all[last].is_keyword("END") {
            return Err("its text does not end with END".into());
        }
        let begin = all[6..last]
            .iter()
            .position(|t| t.is_keyword("BEGIN"))
            .map(|i| i + 6)
            .ok_or("its text has no BEGIN")?;
        if begin + 1 >= last {
            return Err("it has no statement between BEGIN and END".into());
        }
        parse_select(&text[all[begin + 1].start..all[last - 1].end()])
    }

    /// The statement between `BEGIN` and `END` as the CQ has it.
    pub fn select(&self) -> &str {
        &self.select
    }

    /// Intervals per statement: as many as fit in a day, at most 1000, at
    /// least one (one when [`CqSelect::one_interval`] says why).
    pub fn intervals_per_statement(&self) -> i64 {
        if self.one_interval.is_some() {
            return 1;
        }
        (DAY / self.interval).clamp(1, 1000)
    }

    /// `range` widened to whole intervals: start aligned down, end up.
    pub fn aligned(&self, range: Range) -> Range {
        let (iv, off) = (i128::from(self.interval), i128::from(self.offset));
        let down = |t: i64| (i128::from(t) - off).div_euclid(iv) * iv + off;
        let start = down(range.start);
        let mut end = down(range.end);
        if end < i128::from(range.end) {
            end += iv;
        }
        let clamp = |t: i128| t.clamp(i128::from(MIN_TIME), i128::from(MAX_TIME)) as i64;
        Range {
            start: clamp(start),
            end: clamp(end),
        }
    }

    /// The windows covering `range` aligned (see [`CqSelect::aligned`]), each
    /// [`CqSelect::intervals_per_statement`] intervals long (the last may be
    /// shorter); `Err` when there would be more than `max` of them.
    pub fn windows(&self, range: Range, max: usize) -> Result<Vec<Range>, String> {
        let aligned = self.aligned(range);
        let step = i128::from(self.interval) * i128::from(self.intervals_per_statement());
        let span = i128::from(aligned.end) - i128::from(aligned.start);
        let count = (span + step - 1) / step;
        if count > max as i128 {
            return Err(format!(
                "{range} needs {count} statements of {} (more than {max}); give a narrower --start/--end",
                super::time::influxql_duration(step.min(i128::from(i64::MAX)) as i64)
            ));
        }
        let mut out = Vec::with_capacity(count.max(0) as usize);
        let mut at = i128::from(aligned.start);
        while at < i128::from(aligned.end) {
            let next = (at + step).min(i128::from(aligned.end));
            out.push(Range {
                start: at as i64,
                end: next as i64,
            });
            at = next;
        }
        Ok(out)
    }

    /// The statement that runs the query over `window`.
    pub fn statement(&self, window: Range) -> String {
        let time = window.condition();
        let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(2);
        match self.condition {
            Some((at, from, to)) => edits.push((
                at,
                self.group,
                format!("WHERE ({}) AND {time} ", &self.select[from..to]),
            )),
            None => edits.push((self.group, self.group, format!("WHERE {time} "))),
        }
        match self.fill {
            FillEdit::Add(at) => edits.push((at, at, " fill(none)".into())),
            FillEdit::Replace(from, to) => edits.push((from, to, "fill(none)".into())),
            FillEdit::Keep => {}
        }
        let mut out = self.select.clone();
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (from, to, text) in edits {
            out.replace_range(from..to, &text);
        }
        out
    }
}

const DAY: i64 = 86_400_000_000_000;

fn is_punct(t: Option<&Token<'_>>, text: &str) -> bool {
    t.is_some_and(|t| t.kind == TokenKind::Punct && t.text == text)
}

/// The index of the `)` closing the `(` at `open`.
fn closing(toks: &[Token<'_>], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        if t.kind != TokenKind::Punct {
            continue;
        }
        match t.text {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err("its parentheses do not match".into())
}

fn parse_select(select: &str) -> Result<CqSelect, String> {
    let toks: Vec<Token<'_>> = tokens(select).collect();
    if !toks.first().is_some_and(|t| t.is_keyword("SELECT")) {
        return Err(format!("its statement is not a SELECT: `{select}`"));
    }
    // the top-level clauses of the outer SELECT
    let mut into = false;
    let mut where_at = None;
    let mut group = None;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if is_punct(Some(t), "(") {
            i = closing(&toks, i)? + 1;
            continue;
        }
        if is_punct(Some(t), ")") {
            return Err("its parentheses do not match".into());
        }
        if t.is_keyword("INTO") {
            into = true;
        } else if t.is_keyword("WHERE") && where_at.is_none() && group.is_none() {
            where_at = Some(i);
        } else if t.is_keyword("GROUP") && toks.get(i + 1).is_some_and(|n| n.is_keyword("BY")) {
            group = Some(i);
            break;
        }
        i += 1;
    }
    if !into {
        return Err("its SELECT has no INTO".into());
    }
    let group = group.ok_or("it has no GROUP BY time(…), so it has no interval to backfill by")?;
    // the dimensions, up to the first clause after them
    let mut interval = None;
    let mut j = group + 2;
    let mut dims_end = toks[group + 1].end();
    while j < toks.len() {
        let t = &toks[j];
        let call = is_punct(toks.get(j + 1), "(");
        let clause = ["ORDER", "LIMIT", "OFFSET", "SLIMIT", "SOFFSET"]
            .iter()
            .any(|k| t.is_keyword(k))
            || (call
                && t.kind == TokenKind::Word
                && (t.text.eq_ignore_ascii_case("fill") || t.text.eq_ignore_ascii_case("tz")));
        if clause {
            break;
        }
        if is_punct(Some(t), "(") {
            j = closing(&toks, j)?;
            dims_end = toks[j].end();
            j += 1;
            continue;
        }
        if call && t.kind == TokenKind::Word && t.text.eq_ignore_ascii_case("time") {
            let close = closing(&toks, j + 1)?;
            if interval.is_some() {
                return Err("its GROUP BY has time() twice".into());
            }
            interval = Some(time_arguments(&toks[j + 2..close])?);
            dims_end = toks[close].end();
            j = close + 1;
            continue;
        }
        dims_end = t.end();
        j += 1;
    }
    let (interval, offset) =
        interval.ok_or("it has no GROUP BY time(…), so it has no interval to backfill by")?;
    // what follows the dimensions
    let mut fill = FillEdit::Add(dims_end);
    let mut one_interval = None;
    while j < toks.len() {
        let t = &toks[j];
        if is_punct(Some(t), "(") {
            j = closing(&toks, j)? + 1;
            continue;
        }
        let call = is_punct(toks.get(j + 1), "(") && t.kind == TokenKind::Word;
        if call && t.text.eq_ignore_ascii_case("tz") {
            return Err(
                "it groups by local time (tz()), whose intervals cq-backfill cannot align".into(),
            );
        }
        if call && t.text.eq_ignore_ascii_case("fill") {
            let close = closing(&toks, j + 1)?;
            let option: String = toks[j + 2..close]
                .iter()
                .map(|t| t.text.to_ascii_lowercase())
                .collect();
            fill = match option.as_str() {
                "none" => FillEdit::Keep,
                "null" => FillEdit::Replace(t.start, toks[close].end()),
                other => {
                    one_interval = Some(format!(
                        "fill({other}) fills across intervals, so each statement covers one"
                    ));
                    FillEdit::Keep
                }
            };
            j = close + 1;
            continue;
        }
        for k in ["LIMIT", "OFFSET", "SLIMIT", "SOFFSET"] {
            if t.is_keyword(k) && one_interval.is_none() {
                one_interval = Some(format!(
                    "{k} counts over a whole statement, so each statement covers one interval"
                ));
            }
        }
        j += 1;
    }
    if one_interval.is_some() {
        fill = FillEdit::Keep;
    }
    let condition = match where_at {
        None => None,
        Some(w) if w + 1 < group => Some((toks[w].start, toks[w + 1].start, toks[group - 1].end())),
        Some(_) => return Err("its WHERE has no condition".into()),
    };
    Ok(CqSelect {
        select: select.to_string(),
        interval,
        offset,
        condition,
        group: toks[group].start,
        fill,
        one_interval,
    })
}

/// `interval[, [-]offset]` of `time(…)`.
fn time_arguments(args: &[Token<'_>]) -> Result<(i64, i64), String> {
    let text: Vec<&str> = args.iter().map(|t| t.text).collect();
    let bad = || {
        format!(
            "its GROUP BY time({}) is not time(interval[, offset]) with durations",
            text.join(" ")
        )
    };
    let duration = |t: &Token<'_>| {
        if t.kind != TokenKind::Number {
            return Err(bad());
        }
        parse_influxql_duration(t.text).map_err(|_| bad())
    };
    let interval = match args.first() {
        Some(t) => duration(t)?,
        None => return Err(bad()),
    };
    if interval <= 0 {
        return Err(bad());
    }
    let offset = match &args[1..] {
        [] => 0,
        [comma, t] if is_punct(Some(comma), ",") => duration(t)?,
        [comma, minus, t] if is_punct(Some(comma), ",") && is_punct(Some(minus), "-") => {
            -duration(t)?
        }
        _ => return Err(bad()),
    };
    Ok((interval, offset.rem_euclid(interval)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn cq(select: &str) -> Result<CqSelect, String> {
        CqSelect::parse(
            &format!("CREATE CONTINUOUS QUERY cq ON db BEGIN {select} END"),
            "cq",
            "db",
        )
    }

    fn window(start: i64, end: i64) -> Range {
        Range { start, end }
    }

    #[test]
    fn the_time_condition_goes_before_group_by_and_fill_none_is_added() {
        let q = cq("SELECT mean(v) AS v, count(v) AS n INTO db.autogen.m_1m FROM db.autogen.m GROUP BY time(1m), host").unwrap();
        assert_eq!((q.interval, q.offset), (MIN, 0));
        assert_eq!(
            q.statement(window(0, 10 * MIN)),
            "SELECT mean(v) AS v, count(v) AS n INTO db.autogen.m_1m FROM db.autogen.m \
             WHERE time >= 0 AND time < 600000000000 GROUP BY time(1m), host fill(none)"
        );
        assert_eq!(q.intervals_per_statement(), 1000);
    }

    #[test]
    fn an_existing_condition_is_parenthesised_and_fill_null_replaced() {
        let q = cq("SELECT max(v) INTO m2 FROM m WHERE host = 'a' OR host = 'b' GROUP BY time(1h, -15m) fill(null) LIMIT 5").unwrap();
        assert_eq!(q.offset, 45 * MIN);
        assert!(q.one_interval.is_some());
        assert_eq!(
            q.statement(window(1, 2)),
            "SELECT max(v) INTO m2 FROM m WHERE (host = 'a' OR host = 'b') AND time >= 1 AND time < 2 \
             GROUP BY time(1h, -15m) fill(null) LIMIT 5"
        );
        let q =
            cq("SELECT max(v) INTO m2 FROM m WHERE x > 1 GROUP BY time(1h) fill(null)").unwrap();
        assert_eq!(
            q.statement(window(1, 2)),
            "SELECT max(v) INTO m2 FROM m WHERE (x > 1) AND time >= 1 AND time < 2 GROUP BY time(1h) fill(none)"
        );
        assert_eq!(q.intervals_per_statement(), 24);
    }

    #[test]
    fn quotes_comments_and_subqueries_do_not_fool_it() {
        let q = cq(r#"SELECT "GROUP BY"(v) INTO "x WHERE" FROM (SELECT v FROM m WHERE a = 'GROUP BY time(1s)' GROUP BY time(1s)) WHERE "where" = 'WHERE ) (' -- GROUP BY time(1d)
GROUP /* fill(previous) */ BY time(10s), /h/ fill(previous)"#)
        .unwrap();
        assert_eq!(q.interval, 10_000_000_000);
        assert!(q
            .one_interval
            .as_deref()
            .unwrap()
            .contains("fill(previous)"));
        let s = q.statement(window(0, 10_000_000_000));
        assert!(
            s.contains(
                r#"WHERE ("where" = 'WHERE ) (') AND time >= 0 AND time < 10000000000 GROUP"#
            ),
            "{s}"
        );
        // a comment at the very end does not swallow what is added
        let q = cq("SELECT mean(v) INTO m2 FROM m GROUP BY time(1m) -- note\n").unwrap();
        assert!(q
            .statement(window(0, MIN))
            .starts_with("SELECT mean(v) INTO m2 FROM m WHERE time >= 0 AND time < 60000000000 GROUP BY time(1m) fill(none)"));
    }

    #[test]
    fn texts_that_cannot_be_backfilled_are_refused() {
        for (select, why) in [
            (
                "SELECT mean(v) INTO m2 FROM m GROUP BY host",
                "no GROUP BY time",
            ),
            ("SELECT mean(v) INTO m2 FROM m", "no GROUP BY time"),
            ("SELECT mean(v) FROM m GROUP BY time(1m)", "no INTO"),
            ("DROP DATABASE db", "not a SELECT"),
            (
                "SELECT mean(v) INTO m2 FROM m GROUP BY time(now())",
                "not time(interval",
            ),
            (
                "SELECT mean(v) INTO m2 FROM m GROUP BY time(0s)",
                "not time(interval",
            ),
            (
                "SELECT mean(v) INTO m2 FROM m GROUP BY time(1m) tz('Europe/Paris')",
                "tz()",
            ),
            (
                "SELECT mean(v) INTO m2 FROM (m GROUP BY time(1m)",
                "parentheses",
            ),
            (
                "SELECT mean(v) INTO m2 FROM m WHERE GROUP BY time(1m)",
                "no condition",
            ),
        ] {
            match cq(select) {
                Err(e) => assert!(e.contains(why), "{select}: {e}"),
                Ok(q) => panic!("{select}: {q:?}"),
            }
        }
        for text in [
            "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO m2 FROM m GROUP BY time(1m) END; DROP DATABASE db",
            "CREATE CONTINUOUS QUERY other ON db BEGIN SELECT mean(v) INTO m2 FROM m GROUP BY time(1m) END",
            "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO m2 FROM m GROUP BY time(1m)",
            "CREATE CONTINUOUS QUERY cq ON db RESAMPLE EVERY 1m END",
            "CREATE CONTINUOUS QUERY cq ON db BEGIN END",
            "",
        ] {
            assert!(CqSelect::parse(text, "cq", "db").is_err(), "{text}");
        }
        let resample = "CREATE CONTINUOUS QUERY \"c q\" ON \"d b\" RESAMPLE EVERY 1m FOR 1h BEGIN SELECT mean(v) INTO m2 FROM m GROUP BY time(5m) END";
        assert_eq!(
            CqSelect::parse(resample, "c q", "d b").unwrap().interval,
            5 * MIN
        );
    }

    #[test]
    fn windows_are_aligned_to_intervals_and_their_offset() {
        let q = cq("SELECT mean(v) INTO m2 FROM m GROUP BY time(1h, 30m)").unwrap();
        let h = 60 * MIN;
        let range = window(2 * h + 1, 5 * h);
        assert_eq!(q.aligned(range), window(h + 30 * MIN, 5 * h + 30 * MIN));
        let w = q.windows(range, 100).unwrap();
        assert_eq!(w, vec![window(h + 30 * MIN, 5 * h + 30 * MIN)]);
        // small intervals: at most 1000 per statement
        let q = cq("SELECT mean(v) INTO m2 FROM m GROUP BY time(1s)").unwrap();
        let s = 1_000_000_000;
        let w = q.windows(window(-1, 2500 * s), 100).unwrap();
        assert_eq!(
            w,
            vec![
                window(-s, 999 * s),
                window(999 * s, 1999 * s),
                window(1999 * s, 2500 * s)
            ]
        );
        // large intervals: one per statement, never less
        let q = cq("SELECT mean(v) INTO m2 FROM m GROUP BY time(2w)").unwrap();
        assert_eq!(q.intervals_per_statement(), 1);
        assert!(q.windows(Range::ALL, 100).is_err());
        let q = cq("SELECT mean(v) INTO m2 FROM m GROUP BY time(1ns)").unwrap();
        assert!(q.windows(Range::ALL, 1_000_000).is_err());
    }
}
