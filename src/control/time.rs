//! Times and durations as the control plane reads and writes them:
//! `--start`/`--end` (RFC 3339 or integer nanoseconds), the Go durations
//! InfluxDB prints (`168h0m0s`), InfluxQL durations for statements, and
//! shard-group windows aligned the way InfluxDB aligns them.

/// The earliest and latest timestamps InfluxDB 1.x stores.
pub const MIN_TIME: i64 = i64::MIN + 2;
pub const MAX_TIME: i64 = i64::MAX - 1;

const NS_PER_SEC: i64 = 1_000_000_000;
const NS_PER_DAY: i128 = 86_400 * NS_PER_SEC as i128;

/// A half-open time range `[start, end)` in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Range {
    pub start: i64,
    pub end: i64,
}

impl Range {
    pub const ALL: Range = Range {
        start: MIN_TIME,
        end: MAX_TIME,
    };

    /// `--start`/`--end` as given (either may be left out).
    pub fn from_flags(start: Option<&str>, end: Option<&str>) -> Result<Range, String> {
        let start = start.map(parse_time).transpose()?.unwrap_or(MIN_TIME);
        let end = end.map(parse_time).transpose()?.unwrap_or(MAX_TIME);
        if start >= end {
            return Err(format!(
                "--start ({}) must be before --end ({})",
                format_time(start),
                format_time(end)
            ));
        }
        Ok(Range { start, end })
    }

    /// The overlap of two ranges, if any.
    pub fn intersect(self, other: Range) -> Option<Range> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(Range { start, end })
    }

    /// The InfluxQL condition `time >= start AND time < end`.
    pub fn condition(&self) -> String {
        format!("time >= {} AND time < {}", self.start, self.end)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {})",
            format_time(self.start),
            format_time(self.end)
        )
    }
}

/// RFC 3339 (`2024-01-02T03:04:05.123456789Z`, any offset) or integer nanoseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    rfc3339(text).ok_or_else(|| {
        format!("invalid time {text:?}: use RFC 3339 (2024-01-02T03:04:05Z) or integer nanoseconds")
    })
}

fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut pos = 19;
    let mut frac: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let digits = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        frac = num(pos, digits)? * 10i64.pow(9 - digits as u32);
        pos += digits;
    }
    let offset_s: i64 = match &s[pos..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && matches!(&tz[..1], "+" | "-") && &tz[3..4] == ":" => {
            let h = num(pos + 1, 2)?;
            let m = num(pos + 4, 2)?;
            let sign = if &tz[..1] == "-" { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second)
        - i128::from(offset_s);
    let ns = seconds * i128::from(NS_PER_SEC) + i128::from(frac);
    i64::try_from(ns).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 in UTC with as many fraction digits as needed; the extremes
/// print as `-inf`/`+inf`.
pub fn format_time(ns: i64) -> String {
    if ns <= MIN_TIME {
        return "-inf".into();
    }
    if ns >= MAX_TIME {
        return "+inf".into();
    }
    let secs = ns.div_euclid(NS_PER_SEC);
    let frac = ns.rem_euclid(NS_PER_SEC);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// A Go duration as InfluxDB prints it (`168h0m0s`, `1h30m0s`, `0s`,
/// `500ms`, `1.5s`) in nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}");
    if text == "0" || text == "0s" {
        return Ok(0);
    }
    let mut rest = text;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let value = match number.split_once('.') {
            None => number.parse::<i128>().map_err(|_| bad())? * per,
            Some((whole, frac)) => {
                let whole: i128 = if whole.is_empty() {
                    0
                } else {
                    whole.parse().map_err(|_| bad())?
                };
                let scale = 10i128.pow(frac.len() as u32);
                let frac: i128 = frac.parse().map_err(|_| bad())?;
                whole * per + frac * per / scale
            }
        };
        total += value;
        rest = tail;
    }
    i64::try_from(total).map_err(|_| bad())
}

/// An InfluxQL duration literal (`1m`, `90s`, `1h30m`, `500ms`, `10u`,
/// `2w`) in nanoseconds. A bare number is not a duration.
pub fn parse_influxql_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}");
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per: i128 = match unit {
            "ns" => 1,
            "u" | "µ" | "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            _ => return Err(bad()),
        };
        let n: i128 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(per)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(bad)?;
        rest = tail;
    }
    i64::try_from(total).map_err(|_| bad())
}

/// A duration as an InfluxQL literal in its largest exact unit (`168h`, `90m`, `0s`).
pub fn influxql_duration(ns: i64) -> String {
    for (unit, per) in [
        ("w", 604_800 * NS_PER_SEC),
        ("d", 86_400 * NS_PER_SEC),
        ("h", 3_600 * NS_PER_SEC),
        ("m", 60 * NS_PER_SEC),
        ("s", NS_PER_SEC),
        ("ms", 1_000_000),
        ("u", 1_000),
    ] {
        if ns != 0 && ns % per == 0 {
            return format!("{}{unit}", ns / per);
        }
    }
    if ns == 0 {
        "0s".into()
    } else {
        format!("{ns}ns")
    }
}

/// Nanoseconds from Go's zero time (0001-01-01) to the Unix epoch: InfluxDB
/// truncates shard group starts relative to Go's zero time.
const GO_ZERO_TO_UNIX: i128 = 719_162 * NS_PER_DAY;

/// The start of the shard group of duration `group` that holds `t`.
pub fn group_start(t: i64, group: i64) -> i64 {
    let group = i128::from(group.max(1));
    let since_zero = i128::from(t) + GO_ZERO_TO_UNIX;
    let start = since_zero.div_euclid(group) * group - GO_ZERO_TO_UNIX;
    start.clamp(i128::from(MIN_TIME), i128::from(MAX_TIME)) as i64
}

/// `range` cut at shard-group boundaries of duration `group`.
pub fn windows(range: Range, group: i64) -> Vec<Range> {
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let next = i128::from(group_start(start, group)) + i128::from(group.max(1));
        let end = next.min(i128::from(range.end)) as i64;
        out.push(Range { start, end });
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_integers() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("-5"), Ok(-5));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2001-09-09T01:46:40.123456789Z"),
            Ok(1_000_000_000_123_456_789)
        );
        assert_eq!(
            parse_time("2001-09-09T03:46:40+02:00"),
            Ok(1_000_000_000 * NS_PER_SEC)
        );
        assert_eq!(parse_time("1969-12-31T23:59:59.5Z"), Ok(-500_000_000));
        for bad in [
            "2001-13-01T00:00:00Z",
            "2001-02-30T00:00:00Z",
            "yesterday",
            "2001-01-01",
            "2001-01-01T00:00:00.Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ns in [
            0,
            1,
            -1,
            1_000_000_000_123_456_789,
            -86_400_000_000_001,
            1_700_000_000_000_000_000,
        ] {
            assert_eq!(parse_time(&format_time(ns)), Ok(ns), "{}", format_time(ns));
        }
        assert_eq!(format_time(MIN_TIME), "-inf");
    }

    #[test]
    fn ranges_need_start_before_end() {
        assert!(Range::from_flags(Some("10"), Some("10")).is_err());
        assert_eq!(Range::from_flags(None, None), Ok(Range::ALL));
        assert_eq!(
            Range::from_flags(Some("1"), Some("2")).unwrap().condition(),
            "time >= 1 AND time < 2"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("168h0m0s"), Ok(168 * 3_600 * NS_PER_SEC));
        assert_eq!(parse_go_duration("1h30m0s"), Ok(90 * 60 * NS_PER_SEC));
        assert_eq!(parse_go_duration("0s"), Ok(0));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("500ms"), Ok(500_000_000));
        assert!(parse_go_duration("5x").is_err());
        assert_eq!(influxql_duration(168 * 3_600 * NS_PER_SEC), "1w");
        assert_eq!(influxql_duration(90 * 60 * NS_PER_SEC), "90m");
        assert_eq!(influxql_duration(0), "0s");
        assert_eq!(parse_influxql_duration("1h30m"), Ok(90 * 60 * NS_PER_SEC));
        assert_eq!(parse_influxql_duration("2w"), Ok(14 * 86_400 * NS_PER_SEC));
        assert_eq!(parse_influxql_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_influxql_duration("10u"), Ok(10_000));
        for bad in ["", "5", "m", "1x", "1.5s", "99999999999999999999w"] {
            assert!(parse_influxql_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_groups_start_like_influxdb() {
        // seen on influxd 1.6: week groups start on Mondays (1969-12-29)
        let week = 7 * 86_400 * NS_PER_SEC;
        assert_eq!(format_time(group_start(1, week)), "1969-12-29T00:00:00Z");
        assert_eq!(
            format_time(group_start(1_000_000_000_123_456_789, week)),
            "2001-09-03T00:00:00Z"
        );
        let day = 86_400 * NS_PER_SEC;
        let w = windows(
            Range {
                start: -day / 2,
                end: day + 5,
            },
            day,
        );
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[0],
            Range {
                start: -day / 2,
                end: 0
            }
        );
        assert_eq!(
            w[2],
            Range {
                start: day,
                end: day + 5
            }
        );
    }
}
