//! Durations as people write them in the config file: `"1h"`, `"20m"`, `"45s"`, `"1h30m"`.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected; rendered into messages by the callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not of the form `1h30m` / `45s` / `90`.
    Malformed(String),
    /// Well-formed but larger than a `Duration` (or than the seconds a `u64` can hold).
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => f.write_str(why),
            Self::Overflow => f.write_str("the duration is too large"),
        }
    }
}

/// Parses a duration such as `"1h"`, `"20m"`, `"45s"`, `"1h30m"` or `"1h0m5s"`, or a bare
/// number of seconds such as `"3600"`.
///
/// Units are `h`, `m` and `s`, each at most once and in that order, so that a typo such as
/// `"1m1m"` or `"30m1h"` is reported rather than silently summed. Fractions, signs and spaces
/// are not accepted.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(samld_config::parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(samld_config::parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert!(samld_config::parse_duration("5x").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Malformed("it is empty".into()));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return number(text).map(Duration::from_secs);
    }

    let mut total: u64 = 0;
    // Index into UNITS of the next unit allowed, which enforces order and uniqueness.
    let mut next_unit = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Malformed(format!(
                "expected a number at {:?}",
                truncate(rest)
            )));
        }
        let (number_text, after) = rest.split_at(digits);
        let Some(unit) = after.chars().next() else {
            return Err(DurationError::Malformed(format!(
                "{number_text:?} has no unit; use h, m or s"
            )));
        };
        let Some(position) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::Malformed(format!(
                "unknown unit {unit:?}; use h, m or s"
            )));
        };
        if position < next_unit {
            return Err(DurationError::Malformed(
                "units must appear once each, in the order h, m, s".into(),
            ));
        }
        next_unit = position + 1;
        let seconds = number(number_text)?
            .checked_mul(UNITS[position].1)
            .ok_or(DurationError::Overflow)?;
        total = total.checked_add(seconds).ok_or(DurationError::Overflow)?;
        rest = &after[unit.len_utf8()..];
    }
    Ok(Duration::from_secs(total))
}

const UNITS: [(char, u64); 3] = [('h', 3600), ('m', 60), ('s', 1)];

fn number(digits: &str) -> Result<u64, DurationError> {
    // Only ASCII digits reach here, so the one possible failure is overflow.
    digits.parse().map_err(|_| DurationError::Overflow)
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(16) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Formats a duration the way [`parse_duration`] reads it: `"1h30m"`, `"45s"`, `"0s"`.
///
/// Zero components are left out (`"1h5s"`); a sub-second remainder is dropped, so
/// `parse_duration(&format_duration(d))` gives back `d` for every whole number of seconds.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = total;
    for (unit, size) in UNITS {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push(unit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_single_units() {
        // (input, expected seconds)
        const CASES: &[(&str, u64)] = &[
            ("1h", 3600),
            ("20m", 1200),
            ("45s", 45),
            ("90s", 90),
            ("0s", 0),
            ("0", 0),
            ("007m", 420),
        ];
        for &(input, want) in CASES {
            assert_eq!(parse_duration(input), Ok(secs(want)), "{input:?}");
        }
    }

    #[test]
    fn parses_compound_and_bare_seconds() {
        // (input, expected seconds)
        const CASES: &[(&str, u64)] = &[
            ("1h30m", 5400),
            ("1h0m5s", 3605),
            ("2h15s", 7215),
            ("3600", 3600),
            // Components need not be normalised: 90m is a fine way to say 1h30m.
            ("90m", 5400),
        ];
        for &(input, want) in CASES {
            assert_eq!(parse_duration(input), Ok(secs(want)), "{input:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "5x", "h", "1.5h", "-1h", "+1h", " 1h", "1h ", "1 h", "1H", "1h30", "1m1m",
            "30m1h", "1s1m", "1d", "1hm", "1ms", "٣s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        // (input, the whole error message)
        const CASES: &[(&str, &str)] = &[
            (
                "5x",
                "invalid duration \"5x\": unknown unit 'x'; use h, m or s",
            ),
            ("", "invalid duration \"\": it is empty"),
            (
                "1h30",
                "invalid duration \"1h30\": \"30\" has no unit; use h, m or s",
            ),
            (
                "30m1h",
                "invalid duration \"30m1h\": units must appear once each, in the order h, m, s",
            ),
        ];
        for &(input, want) in CASES {
            assert_eq!(parse_duration(input).unwrap_err(), want, "{input:?}");
        }
    }

    #[test]
    fn rejects_overflow_without_panicking() {
        let too_many_hours = format!("{}h", u64::MAX / 3600 + 1);
        let too_many_seconds = format!("{}0", u64::MAX);
        let sum_overflows = format!("{}h{}s", u64::MAX / 3600, u64::MAX);
        for bad in [too_many_hours, too_many_seconds, sum_overflows] {
            assert_eq!(parse(&bad), Err(DurationError::Overflow), "{bad}");
        }
        assert_eq!(
            parse_duration("99999999999999999999999h").unwrap_err(),
            "invalid duration \"99999999999999999999999h\": the duration is too large"
        );
        assert_eq!(parse(&u64::MAX.to_string()), Ok(secs(u64::MAX)));
    }

    #[test]
    fn formats_compactly() {
        // (duration, its compact text)
        let cases = [
            (secs(0), "0s"),
            (Duration::from_millis(999), "0s"),
            (Duration::from_millis(1500), "1s"),
            (secs(45), "45s"),
            (secs(90), "1m30s"),
            (secs(3600), "1h"),
            (secs(5400), "1h30m"),
            (secs(3605), "1h5s"),
            (secs(43200), "12h"),
            (secs(u64::MAX), "5124095576030431h15s"),
        ];
        for (duration, want) in cases {
            assert_eq!(format_duration(duration), want, "{duration:?}");
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for s in [
            0,
            1,
            59,
            60,
            61,
            899,
            900,
            3599,
            3600,
            3601,
            43200,
            86399,
            u64::MAX,
        ] {
            assert_eq!(
                parse_duration(&format_duration(secs(s))),
                Ok(secs(s)),
                "{s}"
            );
        }
    }
}
