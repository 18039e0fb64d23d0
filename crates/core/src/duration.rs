//! How spans of time and instants are written, read and shown: one grammar for every
//! flag and key that takes a duration.
//!
//! `lifetime:`, `up --wait`, `exec --timeout` and the span form of `pcap-fetch --since`
//! all read durations here, and everything labctl prints about a duration is rendered
//! here, so what a user reads can be pasted back into any of them.
//!
//! The grammar: a whole number with a unit, `s`, `m`, `h` or `d` (`90s`, `10m`, `4h`,
//! `2d`); units combined from largest to smallest, each at most once (`1h30m`,
//! `1d2h`); or a bare number, which is seconds (`90`). No spaces, signs or fractions.

use std::time::{Duration, SystemTime};

/// The units, largest first: the letter and its length in seconds.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Reads a duration in the grammar above. The error says what is wrong with `text`
/// without repeating it, so callers can put it after their own context.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(
            "it is empty; write a number with a unit, such as `90s`, `10m` or `1h30m`".into(),
        );
    }
    let mut total: u64 = 0;
    let mut rest = text;
    // The rank (index into UNITS) of the last unit read, to keep them in order.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, after) = rest.split_at(digits);
        let letters = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(letters);
        if number.is_empty() {
            return Err(match after.chars().next().filter(|_| unit.is_empty()) {
                Some(c @ ('-' | '+')) => format!("`{c}`: a duration has no sign"),
                Some(' ') => "write it without spaces, such as `1h30m`".into(),
                Some(c) => {
                    format!("unexpected `{c}`; write whole numbers with units, such as `1m30s`")
                }
                None => format!("`{unit}` needs a number before it, such as `1{unit}`"),
            });
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{number} is too large a number"))?;
        let rank = match unit {
            // A bare number: seconds, but only on its own (`1h30` is a slip, not 1h30s).
            "" if last.is_none() && after.is_empty() => 3,
            "" => {
                return Err(match after.chars().next() {
                    Some(c @ ('.' | ',')) => format!(
                        "`{c}`: a duration is whole numbers, such as `1m30s` for a minute and a half"
                    ),
                    Some(' ') => "write it without spaces, such as `1h30m`".into(),
                    Some(c) => format!("unexpected `{c}` after {number}"),
                    None => format!("{number} needs a unit: s, m, h or d"),
                });
            }
            _ => UNITS
                .iter()
                .position(|(letter, _)| unit.len() == 1 && unit.starts_with(*letter))
                .ok_or_else(|| format!("unknown unit `{unit}`; use s, m, h or d"))?,
        };
        match last {
            Some(prev) if prev == rank => {
                return Err(format!("`{unit}` appears twice"));
            }
            Some(prev) if prev > rank => {
                return Err(format!(
                    "units go from largest to smallest (`1h30m`, not `30m1h`); `{unit}` comes too late"
                ));
            }
            _ => {}
        }
        total = n
            .checked_mul(UNITS[rank].1)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| "it is too long".to_owned())?;
        last = Some(rank);
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

/// Shows a duration the one way labctl prints them: each unit from days to seconds
/// that is not zero (`1h30m`, `1m30s`, `2d`), `0s` for nothing. Fractions of a second
/// are dropped. [`parse`] reads the result back to the same whole seconds.
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (letter, size) in UNITS {
        let n = secs / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(letter);
        }
        secs %= size;
    }
    out
}

/// Reads the `--since` of `pcap-fetch`: an RFC 3339 date-time with any offset
/// (`2026-03-01T14:00:00Z`, `2026-03-01T15:00:00+01:00`, lowercase `t` and `z`
/// included), a date alone (`2026-03-01`, midnight UTC), or a duration back from `now`.
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    let date_time = |s: &str| OffsetDateTime::parse(s, &Rfc3339).map(SystemTime::from);
    let why_not = match date_time(text) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let looks_like_a_date = text.len() >= 10
        && text.is_char_boundary(10)
        && text[..10].bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if looks_like_a_date {
        if text.len() == 10 {
            return date_time(&format!("{text}T00:00:00Z"))
                .map_err(|_| format!("`{text}` is not a calendar date"));
        }
        if date_time(&format!("{text}Z")).is_ok() {
            return Err(format!(
                "`{text}` has no UTC offset; add `Z` for UTC, or the offset, such as `+01:00`"
            ));
        }
        return Err(format!(
            "`{text}` is not an RFC 3339 time such as `2026-03-01T14:00:00Z` ({why_not})"
        ));
    }
    match parse(text) {
        Ok(span) => now
            .checked_sub(span)
            .filter(|t| *t >= SystemTime::UNIX_EPOCH)
            .ok_or_else(|| format!("{} back from now is before 1970", format(span))),
        Err(why) => Err(format!(
            "`{text}` is neither an RFC 3339 time (`2026-03-01T14:00:00Z`), a date \
             (`2026-03-01`) nor a duration back from now (`90m`, `2h`, `1d`): {why}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Result<u64, String> {
        parse(text).map(|d| d.as_secs())
    }

    #[test]
    fn units_bare_seconds_and_combinations() {
        for (text, want) in [
            ("90", 90),
            ("0", 0),
            ("90s", 90),
            ("10m", 600),
            ("4h", 14_400),
            ("2d", 172_800),
            ("1h30m", 5_400),
            ("1d2h3m4s", 93_784),
            ("90m", 5_400),
        ] {
            assert_eq!(secs(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (text, fragment) in [
            ("", "empty"),
            ("1h30", "30 needs a unit"),
            ("30m1h", "largest to smallest"),
            ("1m1m", "`m` appears twice"),
            ("5min", "unknown unit `min`"),
            ("1ms", "unknown unit `ms`"),
            ("4H", "unknown unit `H`"),
            ("1.5h", "whole numbers"),
            ("-5m", "no sign"),
            ("1h 30m", "without spaces"),
            ("h", "`h` needs a number"),
            ("99999999999999999999s", "too large"),
            ("999999999999999999d", "too long"),
        ] {
            let err = secs(text).expect_err(text);
            assert!(err.contains(fragment), "{text}: {err}");
        }
    }

    #[test]
    fn formatting_is_canonical() {
        for (secs, shown) in [
            (0, "0s"),
            (59, "59s"),
            (90, "1m30s"),
            (3_600, "1h"),
            (5_400, "1h30m"),
            (3_609, "1h9s"),
            (93_784, "1d2h3m4s"),
        ] {
            assert_eq!(format(Duration::from_secs(secs)), shown);
        }
        assert_eq!(format(Duration::from_millis(1_999)), "1s");
    }

    #[test]
    fn what_is_shown_reads_back_as_the_same_duration() {
        for secs in (0..200_000).step_by(97).chain([u64::MAX / 2, u64::MAX]) {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d), "{secs}");
        }
    }

    fn since(text: &str) -> Result<SystemTime, String> {
        parse_since(
            text,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_373_600),
        )
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn since_takes_every_rfc_3339_offset() {
        // 2026-03-01T14:00:00Z.
        let two_pm = 1_772_373_600;
        for (text, want) in [
            ("2026-03-01T14:00:00Z", two_pm),
            ("2026-03-01t14:00:00z", two_pm),
            ("2026-03-01T14:00:00+00:00", two_pm),
            ("2026-03-01T14:00:00+01:00", two_pm - 3_600),
            ("2026-03-01T14:00:00-05:00", two_pm + 5 * 3_600),
            ("2026-03-01 14:00:00Z", two_pm),
        ] {
            assert_eq!(since(text), Ok(at(want)), "{text}");
        }
        assert_eq!(
            since("2026-03-01T14:00:00.250Z"),
            Ok(at(two_pm) + Duration::from_millis(250))
        );
    }

    #[test]
    fn since_takes_a_date_or_a_duration_back() {
        assert_eq!(since("2026-03-01"), Ok(at(1_772_323_200)));
        let now = 1_772_373_600;
        assert_eq!(since("90m"), Ok(at(now - 5_400)));
        assert_eq!(since("90"), Ok(at(now - 90)));
        assert_eq!(since("1d"), Ok(at(now - 86_400)));
        assert_eq!(since("1h30m"), Ok(at(now - 5_400)));
    }

    #[test]
    fn since_says_what_is_wrong() {
        for (text, fragment) in [
            ("2026-03-01T14:00:00", "no UTC offset"),
            ("2026-13-01", "not a calendar date"),
            ("2026-03-01T25:00:00Z", "not an RFC 3339 time"),
            ("yesterday", "neither an RFC 3339 time"),
            ("-5m", "no sign"),
            ("", "empty"),
            ("100000d", "before 1970"),
        ] {
            let err = since(text).expect_err(text);
            assert!(err.contains(fragment), "{text}: {err}");
        }
    }
}
