//! Wall-clock time, injectable so that refresh, backoff and expiry logic can be tested.

use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of wall-clock time. Expiry is judged by the wall clock (not the monotonic one)
/// so that a laptop waking from suspend sees at once that credentials ran out.
pub trait Clock: Send + Sync + 'static {
    /// The current time in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the clock forward (a negative jump is made with [`ManualClock::set`]).
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the clock to an instant, like a wall-clock jump after suspend.
    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Formats an instant as RFC 3339 in UTC with whole seconds, as the AWS tools expect.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(datetime!(2026-11-28 10:00 UTC));
        assert_eq!(c.now(), datetime!(2026-11-28 10:00 UTC));
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now(), datetime!(2026-11-28 10:01:30 UTC));
        c.set(datetime!(2026-11-28 09:00 UTC));
        assert_eq!(c.now(), datetime!(2026-11-28 09:00 UTC));
    }

    #[test]
    fn rfc3339_is_utc_whole_seconds() {
        let t = datetime!(2026-11-28 10:00:05.847 +02:00);
        assert_eq!(rfc3339(t), "2026-11-28T08:00:05Z");
    }
}
