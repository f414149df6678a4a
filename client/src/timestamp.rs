//! The RFC 3339 timestamps of the wire, read without a time library, and shown to people as
//! "in 43m" or "5m ago".
//!
//! `samld-helper` links this module too (to refuse expired credentials), which is why it is
//! hand-written instead of pulling in `time` or `chrono`: the wire only carries UTC
//! timestamps like `2026-11-28T11:16:07Z` or `2026-11-28T11:16:07.847634Z`, and offsets are
//! accepted for robustness.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
///
/// Returns `None` for anything else, including dates before 1970, which samld never sends.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    // 60 is a leap second; folding it into the next second is what every consumer does.
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut rest = &b[19..];
    let mut nanos: u64 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // Digits past nanoseconds carry nothing we can represent.
        for (i, &c) in frac[..len].iter().enumerate().take(9) {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &frac[len..];
    }

    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + m * 60);
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };

    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

/// Formats a UTC time as RFC 3339 with whole seconds, the way samld writes timestamps.
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The wall-clock date and time of `t` at `utc_offset_secs` east of UTC, as
/// (`YYYY-MM-DD`, `HH:MM:SS`): `samlctl audit` shows the time, and the date when it is not
/// today. The offset comes from the caller (the local zone, or a fixed one in tests).
pub fn wall_clock(t: SystemTime, utc_offset_secs: i64) -> (String, String) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + utc_offset_secs;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

/// Says how far `when` is from `now` the way people say it: `in 43m`, `in 1h 5m`,
/// `2d 3h ago`, `now`. Precision drops as the distance grows, since "in 5h 12m 7s" is noise.
pub fn relative(when: SystemTime, now: SystemTime) -> String {
    match when.duration_since(now) {
        Ok(ahead) if ahead.as_secs() == 0 => "now".to_owned(),
        Ok(ahead) => format!("in {}", human_duration(ahead)),
        Err(e) if e.duration().as_secs() == 0 => "now".to_owned(),
        Err(e) => format!("{} ago", human_duration(e.duration())),
    }
}

/// A duration in its two largest units: `45s`, `43m`, `1h 5m`, `2h`, `3d 4h`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil`: days since 1970-01-01 in the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// The inverse, also Hinnant's.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_the_forms_samld_and_sts_write() {
        // 2026-11-28T11:16:07Z, checked with `date -u -d 2026-11-28T11:16:07Z +%s`.
        let t = 1_795_864_567;
        // (text, the instant it names)
        let cases = [
            ("2026-11-28T11:16:07Z", at(t)),
            (
                "2026-11-28T11:16:07.847634Z",
                at(t) + Duration::from_nanos(847_634_000),
            ),
            ("2026-11-28T13:16:07+02:00", at(t)),
            ("2026-11-28T06:16:07-05:00", at(t)),
            ("1970-01-01T00:00:00Z", UNIX_EPOCH),
            ("2024-02-29T00:00:00Z", at(1_709_164_800)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn rejects_what_aws_consumers_reject() {
        for bad in [
            "",
            "2026-11-28T11:16:07",      // no offset: botocore raises TypeError
            "2026-11-28 11:16",         // truncated
            "2026-13-01T00:00:00Z",     // month
            "2025-02-29T00:00:00Z",     // not a leap year
            "2026-11-28T24:00:00Z",     // hour
            "2026-11-28T11:16:07.Z",    // empty fraction
            "2026-11-28T11:16:07+0200", // offset without colon
            "2026-11-28T11:16:07Zjunk", // trailing bytes
            "1795864567",               // epoch number
            "1969-12-31T23:59:59Z",     // before the epoch
            "２026-11-28T11:16:07Z",    // non-ASCII digit
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?} must be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for secs in [0, 951_782_400, 1_709_164_800, 1_795_864_567, 4_102_444_800] {
            let s = format_rfc3339(at(secs));
            assert_eq!(parse_rfc3339(&s), Some(at(secs)), "{s}");
        }
        assert_eq!(format_rfc3339(at(1_795_864_567)), "2026-11-28T11:16:07Z");
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = at(1_000_000);
        // (the instant, how it reads relative to now)
        let cases = [
            (at(1_000_000), "now"),
            (now + Duration::from_millis(300), "now"),
            (at(1_000_045), "in 45s"),
            (at(1_000_000 + 43 * 60 + 10), "in 43m"),
            (at(1_000_000 + 3600 + 5 * 60), "in 1h 5m"),
            (at(1_000_000 + 2 * 3600), "in 2h"),
            (at(1_000_000 + 2 * 86_400 + 3 * 3600 + 59), "in 2d 3h"),
            (at(1_000_000 + 86_400 + 120), "in 1d"),
            (at(1_000_000 - 5 * 60), "5m ago"),
            (at(1_000_000 - 90_000), "1d 1h ago"),
        ];
        for (when, want) in cases {
            assert_eq!(relative(when, now), want, "{when:?}");
        }
    }

    #[test]
    fn wall_clock_applies_the_offset_across_midnight() {
        // 2026-11-28T23:30:05Z
        let t = parse_rfc3339("2026-11-28T23:30:05Z").unwrap();
        let cases: [(i64, (&str, &str)); 3] = [
            (0, ("2026-11-28", "23:30:05")),
            (3600, ("2026-11-29", "00:30:05")),
            (-5 * 3600, ("2026-11-28", "18:30:05")),
        ];
        for (offset, (date, time)) in cases {
            assert_eq!(
                wall_clock(t, offset),
                (date.into(), time.into()),
                "{offset}"
            );
        }
    }
}
