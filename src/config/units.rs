//! Human-friendly durations (`"250ms"`, `"2h30m"`), sizes (`"64MiB"`) and
//! rates (`"2000/s"`, `"64MiB/s"`).
//!
//! The parsers are strict: a value is either understood exactly or refused
//! with a message that quotes it and shows the expected form.

use std::time::Duration;

const DURATION_FORM: &str = r#"a duration like "250ms", "10s", "5m" or "2h30m""#;
const SIZE_FORM: &str = r#"a size like "64MiB", "10GB", "512KB" or "100B""#;
const RATE_FORM: &str = r#"a rate per second like "2000/s""#;
const BYTE_RATE_FORM: &str = r#"a rate per second like "64MiB/s", "512KB/s" or "100000B/s""#;

/// Parses a duration made of one or more `<integer><unit>` parts, units
/// `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`; for example `"2h30m"`.
/// A bare `"0"` is also accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("expected {DURATION_FORM}{why}, got {s:?}");
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad(""));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let (number, after) = split_number(rest).ok_or_else(|| bad(""))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let part = duration_part(number, unit).map_err(&bad)?;
        total = total
            .checked_add(part)
            .ok_or_else(|| bad(" (this one is too large)"))?;
        rest = after;
    }
    Ok(total)
}

fn duration_part(number: u64, unit: &str) -> Result<Duration, &'static str> {
    let too_large = " (this one is too large)";
    let per_unit_nanos: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => return Err(" (the unit is missing)"),
        _ => return Err(""),
    };
    let nanos = u128::from(number) * u128::from(per_unit_nanos);
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large)?;
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Parses a size: `<integer>` bytes, optionally followed by a unit. `B`,
/// `KB`/`MB`/`GB`/`TB` (powers of 1000) and `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024); units are case-insensitive and may follow a space.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("expected {SIZE_FORM}{why}, got {s:?}");
    let (number, unit) = split_number(s.trim()).ok_or_else(|| bad(""))?;
    let multiplier = size_unit(unit.trim_start()).ok_or_else(|| bad(""))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| bad(" (this one is too large)"))
}

/// Parses a count per second, `"<integer>/s"`, greater than zero; for
/// example `"2000/s"`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("expected {RATE_FORM}{why}, got {s:?}");
    let per_second = per_second(s).ok_or_else(|| bad(""))?;
    match split_number(per_second) {
        Some((0, "")) => Err(bad(" greater than zero")),
        Some((n, "")) => Ok(n),
        _ => Err(bad("")),
    }
}

/// Parses bytes per second, `"<size>/s"` with a size as [`parse_size`]
/// reads it, greater than zero; for example `"64MiB/s"`.
pub fn parse_byte_rate(s: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("expected {BYTE_RATE_FORM}{why}, got {s:?}");
    let per_second = per_second(s).ok_or_else(|| bad(""))?;
    match parse_size(per_second) {
        Ok(0) => Err(bad(" greater than zero")),
        Ok(n) => Ok(n),
        Err(e) if e.contains("too large") => Err(bad(" (this one is too large)")),
        Err(_) => Err(bad("")),
    }
}

/// What comes before a final `/s` (spaces around the `/` allowed).
fn per_second(s: &str) -> Option<&str> {
    let (amount, unit) = s.trim().rsplit_once('/')?;
    (unit.trim() == "s").then(|| amount.trim_end())
}

fn size_unit(unit: &str) -> Option<u64> {
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    Some(multiplier)
}

/// Splits leading ASCII digits off `s`; `None` when there are none or the
/// number does not fit in a `u64`.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    let (number, rest) = s.split_at(digits);
    Some((number.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_accept_every_documented_unit() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn durations_combine_parts() {
        assert_eq!(parse_duration("2h30m"), Ok(ms(9_000_000)));
        assert_eq!(parse_duration("1m30s500ms"), Ok(ms(90_500)));
    }

    #[test]
    fn zero_durations_are_accepted() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_quote_the_value_and_show_the_form() {
        for bad in ["", "10", "10x", "s", "1.5s", "-1s", "10 s", "ten seconds"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("\"250ms\""), "{err}");
        }
    }

    #[test]
    fn a_duration_without_unit_says_the_unit_is_missing() {
        let err = parse_duration("30").unwrap_err();
        assert!(err.contains("unit is missing"), "{err}");
    }

    #[test]
    fn huge_durations_are_refused_not_wrapped() {
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
    }

    #[test]
    fn sizes_use_decimal_and_binary_units() {
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3KiB"), Ok(3 << 10));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
    }

    #[test]
    fn size_units_are_case_insensitive_and_may_follow_a_space() {
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("10 gb"), Ok(10_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
    }

    #[test]
    fn bad_sizes_quote_the_value_and_show_the_form() {
        for bad in ["", "MiB", "1.5GiB", "-1KB", "10 PB", "ten"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("\"64MiB\""), "{err}");
        }
    }

    #[test]
    fn rates_are_counts_or_sizes_per_second() {
        assert_eq!(parse_rate("2000/s"), Ok(2000));
        assert_eq!(parse_rate(" 1 / s "), Ok(1));
        assert_eq!(parse_byte_rate("64MiB/s"), Ok(64 << 20));
        assert_eq!(parse_byte_rate("512KB/s"), Ok(512_000));
        assert_eq!(parse_byte_rate("100 B/s"), Ok(100));
        assert_eq!(parse_byte_rate("1000/s"), Ok(1000));
    }

    #[test]
    fn bad_rates_quote_the_value_and_show_the_form() {
        for bad in [
            "", "2000", "2000/m", "2000/", "/s", "-1/s", "1.5/s", "2k/s", "2000/s/s",
        ] {
            let err = parse_rate(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("\"2000/s\""), "{err}");
        }
        for bad in ["", "64MiB", "64MiB/min", "64 PB/s", "MiB/s", "1.5MiB/s"] {
            let err = parse_byte_rate(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("\"64MiB/s\""), "{err}");
        }
    }

    #[test]
    fn zero_rates_are_refused() {
        assert!(parse_rate("0/s").unwrap_err().contains("greater than zero"));
        assert!(parse_byte_rate("0MiB/s")
            .unwrap_err()
            .contains("greater than zero"));
    }

    #[test]
    fn huge_byte_rates_are_refused_not_wrapped() {
        let err = parse_byte_rate("99999999TiB/s").unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn huge_sizes_are_refused_not_wrapped() {
        let err = parse_size("99999999TiB").unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }
}
