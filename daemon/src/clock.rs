//! Wall-clock time, injectable so that refresh, backoff and expiry logic can be tested.
//!
//! Deadlines are wall-clock instants, and waiting for one is the clock's job: the monotonic
//! clock stops while a laptop sleeps, so a plain `tokio::time::sleep` set for "in 40
//! minutes" would fire 40 *awake* minutes later, long after the credentials expired.

use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::future::BoxFuture;

/// A source of wall-clock time. Expiry is judged by the wall clock (not the monotonic one)
/// so that a laptop waking from suspend sees at once that credentials ran out.
pub trait Clock: Send + Sync + 'static {
    /// The current time in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Completes at `deadline` by this clock, or earlier when the clock jumps (a suspend and
    /// resume, or the time being set), so that the caller re-checks its deadlines at once.
    fn sleep_until(&self, deadline: OffsetDateTime) -> BoxFuture<'_, ()>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep_until(&self, deadline: OffsetDateTime) -> BoxFuture<'_, ()> {
        Box::pin(wall_sleep_until(deadline))
    }
}

/// On Linux, a `CLOCK_REALTIME` timerfd armed with `TFD_TIMER_CANCEL_ON_SET`: it fires at
/// the wall-clock deadline even across suspend, and wakes early when the clock is set.
#[cfg(target_os = "linux")]
async fn wall_sleep_until(deadline: OffsetDateTime) {
    match timerfd::WallTimer::new(deadline) {
        Ok(timer) => timer.wait().await,
        Err(e) => {
            tracing::warn!(error = %e, "no wall-clock timer; falling back to a capped sleep");
            capped_sleep_until(deadline).await
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn wall_sleep_until(deadline: OffsetDateTime) {
    capped_sleep_until(deadline).await
}

/// Sleeps on the monotonic clock, but never longer than a few minutes at a time, so that a
/// wall-clock jump is noticed within that bound where no better timer exists.
#[cfg_attr(target_os = "linux", allow(dead_code))]
async fn capped_sleep_until(deadline: OffsetDateTime) {
    const CAP: Duration = Duration::from_secs(300);
    let left = deadline - OffsetDateTime::now_utc();
    if left.is_positive() {
        let left = Duration::try_from(left).unwrap_or(CAP).min(CAP);
        tokio::time::sleep(left).await;
    }
}

#[cfg(target_os = "linux")]
mod timerfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use time::OffsetDateTime;
    use tokio::io::unix::AsyncFd;

    pub(super) struct WallTimer(AsyncFd<OwnedFd>);

    impl WallTimer {
        pub(super) fn new(deadline: OffsetDateTime) -> io::Result<Self> {
            // SAFETY: plain syscalls on a descriptor we own; `spec` lives across the call.
            unsafe {
                let fd = libc::timerfd_create(
                    libc::CLOCK_REALTIME,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let nanos = deadline.unix_timestamp_nanos().max(1);
                let spec = libc::itimerspec {
                    it_interval: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: libc::timespec {
                        tv_sec: (nanos / 1_000_000_000) as libc::time_t,
                        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
                    },
                };
                let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
                if libc::timerfd_settime(fd.as_raw_fd(), flags, &spec, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The OwnedFd stays inside the AsyncFd, open and unchanged, until both drop.
                let fd = AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)?;
                Ok(Self(fd))
            }
        }

        /// Returns when the timer fires or the clock was set (ECANCELED); both mean
        /// "look at the clock again".
        pub(super) async fn wait(self) {
            loop {
                let Ok(mut ready) = self.0.readable().await else {
                    return;
                };
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into a local buffer of 8 bytes.
                let n = unsafe {
                    libc::read(
                        self.0.get_ref().as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        expirations.len(),
                    )
                };
                if n >= 0 {
                    return;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => ready.clear_ready(),
                    // ECANCELED: the clock was set discontinuously. Anything else: give up
                    // waiting rather than spin; the caller recomputes.
                    _ => return,
                }
            }
        }
    }
}

/// A clock that only moves when told to, for tests. Sleepers wake when it passes their
/// deadline or jumps.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
    moved: watch::Sender<u64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
            moved: watch::Sender::new(0),
        }
    }

    /// Moves the clock forward (a negative jump is made with [`ManualClock::set`]).
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) += by;
        self.moved.send_modify(|n| *n += 1);
    }

    /// Sets the clock to an instant, like a wall-clock jump after suspend.
    pub fn set(&self, to: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
        self.moved.send_modify(|n| *n += 1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, deadline: OffsetDateTime) -> BoxFuture<'_, ()> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            if self.now() >= deadline {
                return;
            }
            // Any move wakes the sleeper, like a jump wakes the real timer: the caller
            // re-reads the clock and goes back to sleep if it is still early.
            let _ = moved.changed().await;
        })
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

    /// The real timer, not the manual clock: a `CLOCK_REALTIME` timerfd armed for a deadline
    /// a little ahead fires at it, neither early nor long after. (Its other half, waking early
    /// when the clock is set, needs the system clock changed: CAP_SYS_TIME, and a jump every
    /// other process on the machine would see, so it is not tested here.)
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_wall_clock_timer_fires_at_its_deadline() {
        const AHEAD: Duration = Duration::from_millis(300);
        // Generous: the timer itself is exact, but a loaded machine may run the woken task
        // late. A timer that never fired, or one armed for the wrong instant, misses it by
        // far more.
        const TOLERANCE: Duration = Duration::from_secs(5);
        let deadline = OffsetDateTime::now_utc() + AHEAD;
        let timer = timerfd::WallTimer::new(deadline).expect("a CLOCK_REALTIME timerfd");
        let waited = tokio::time::timeout(AHEAD + TOLERANCE * 2, timer.wait()).await;
        let woke = OffsetDateTime::now_utc();
        assert!(waited.is_ok(), "the timer never fired");
        assert!(woke >= deadline, "fired {} early", deadline - woke);
        assert!(
            woke - deadline < TOLERANCE,
            "fired {} after its deadline",
            woke - deadline
        );

        // And through the Clock trait, as the scheduler uses it.
        let deadline = OffsetDateTime::now_utc() + AHEAD;
        let slept =
            tokio::time::timeout(AHEAD + TOLERANCE * 2, SystemClock.sleep_until(deadline)).await;
        let woke = OffsetDateTime::now_utc();
        assert!(slept.is_ok(), "SystemClock::sleep_until never returned");
        assert!(woke >= deadline, "woke {} early", deadline - woke);
        assert!(woke - deadline < TOLERANCE, "woke {} late", woke - deadline);
    }

    #[test]
    fn rfc3339_is_utc_whole_seconds() {
        let t = datetime!(2026-11-28 10:00:05.847 +02:00);
        assert_eq!(rfc3339(t), "2026-11-28T08:00:05Z");
    }
}
