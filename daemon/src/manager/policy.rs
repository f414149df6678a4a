//! The retry policy: one pure function from (state, outcome, now) to what happens next.
//!
//! Everything the manager does by itself goes through [`decide`] (for an account) and
//! [`after_login`] (for an IdP session). Both are pure, so the rules below are tested as
//! tables, and the deterministic simulation (`daemon/tests/simulation.rs`) checks that the
//! manager that calls them never breaks them:
//!
//! - anything that reaches the person (a password, a push, a code) is tried at most once per
//!   need, and after a refusal nothing more until the person's `samlctl login` (the
//!   refusal itself is kept by the session; the gate (`gate.rs`) enforces it for every asker);
//! - permanent refusals are never retried on a schedule; transient failures back off;
//! - at least [`REFRESH_FLOOR`] between two automatic trips for one role, and at most
//!   [`UNATTENDED_LOGINS_PER_HOUR`] unattended logins per IdP session, whatever STS, the IdP
//!   or the clock does;
//! - no arithmetic here can overflow: every instant is built with checked operations.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use crate::idp::IdpError;
use crate::saml::SamlError;
use crate::sts::StsError;

/// The least time between two automatic trips for one role, whatever the credentials' life:
/// STS handing out credentials that expire at once (a clock far ahead, a proxy, a bug) must
/// not turn into a loop. 360 trips an hour per role is the most this allows; real STS
/// sessions last at least 15 minutes, so a healthy account makes a handful.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(10);

/// The most unattended logins one IdP session makes in any hour. Each needs the IdP to have
/// ended the session again after the person approved the last one; past this, the next one
/// waits for the oldest to leave the window.
pub const UNATTENDED_LOGINS_PER_HOUR: usize = 6;

/// First retry after a transient failure; doubles per attempt up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);

/// The longest wait between two retries of a transient failure.
pub const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);

/// The longest a `Retry-After` is honoured: a server asking for more is treated as asking
/// for this, so that a bogus header cannot park an account for a year.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);

/// What every backoff wait is divided by: 1, except in a debug build of the `samld` binary
/// started with `SAMLD_TEST_BACKOFF_DIVISOR` (see [`divide_backoff_for_tests`]).
static BACKOFF_DIVISOR: AtomicU32 = AtomicU32::new(1);

/// Test-only: divides every wait [`decide`] puts before a retry (the doubling steps, a
/// `Retry-After` and the floor alike, so the schedule keeps its shape) by `divisor`, so that
/// an end-to-end test can watch the real daemon make several retries in a minute instead of
/// half an hour. Only the debug `samld` binary calls it, from `SAMLD_TEST_BACKOFF_DIVISOR`;
/// it is no setting for users, and release builds never read that variable.
pub fn divide_backoff_for_tests(divisor: u32) {
    BACKOFF_DIVISOR.store(divisor.max(1), Ordering::Relaxed);
}

/// What a failure means for what may happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying by itself later: network trouble, a 5xx, throttling, a locked keyring.
    Transient {
        /// How long the server asked to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// Only a person can fix this (a refused password, a denied push, no secret to be had
    /// without a terminal): nothing is sent to the IdP until they act.
    NeedsPerson,
    /// A permanent refusal (STS AccessDenied, a role the assertion does not offer, an IdP 4xx,
    /// an unusable assertion): not retried on a schedule.
    Refused,
    /// The IdP session has ended: an unattended login may restore it, once.
    SessionEnded,
}

/// Classifies an IdP failure: the one place that decides, for every kind of IdP error,
/// whether samld may try again by itself. Every variant is spelled out, so that a new one
/// has to be decided here.
pub fn classify_idp(error: &IdpError) -> Failure {
    let transient = Failure::Transient {
        retry_after: error.retry_after(),
    };
    match error {
        IdpError::SessionExpired => Failure::SessionEnded,
        IdpError::Network { .. } | IdpError::Throttled { .. } | IdpError::IdpUnavailable { .. } => {
            transient
        }
        IdpError::UnexpectedStatus { status, .. } if *status >= 500 || *status == 429 => transient,
        IdpError::UnexpectedHtml { status, .. } if *status >= 500 => transient,
        // A page without the SAML form is what an outage or maintenance page looks like;
        // asking again later costs the person nothing.
        IdpError::Saml(SamlError::NoSamlResponse | SamlError::EmptySamlResponse) => transient,
        IdpError::AuthFailed { .. }
        | IdpError::MfaCodeRejected { .. }
        | IdpError::PushDenied
        | IdpError::PushExpired
        | IdpError::MfaCodeUnavailable { .. }
        | IdpError::PasswordUnavailable { .. }
        | IdpError::MfaUnsupported { .. }
        | IdpError::NoUsableFactor { .. }
        | IdpError::MfaUnnamed { .. }
        | IdpError::IdentityMismatch(_)
        | IdpError::Cancelled => Failure::NeedsPerson,
        IdpError::UnexpectedStatus { .. }
        | IdpError::UnexpectedHtml { .. }
        | IdpError::Saml(_)
        | IdpError::Config(_)
        | IdpError::JumpCloudError { .. }
        | IdpError::SentToLoginPage { .. }
        | IdpError::BrowserRequired { .. }
        | IdpError::TooLarge { .. } => Failure::Refused,
    }
}

/// Classifies an STS failure (after the manager's own recoveries: a shorter duration, a
/// fresh assertion).
pub fn classify_sts(error: &StsError) -> Failure {
    match error {
        e if e.is_transient() => Failure::Transient { retry_after: None },
        // Left over only when the refresh's one retry went to a fresh assertion: the manager
        // has learnt the shorter duration, so the next trip asks for one the role accepts.
        e if e.is_duration_too_long() => Failure::Transient { retry_after: None },
        // Not an STS document at all: a proxy or a captive portal, not a verdict on the role.
        StsError::BadResponse { .. } => Failure::Transient { retry_after: None },
        StsError::Service { .. } => Failure::Refused,
        StsError::Network { .. } => Failure::Transient { retry_after: None },
    }
}

/// Where an account stands between trips: the centre of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not logged in since the daemon started or the account was (re)configured. A request
    /// may log it in unattended when the account allows it.
    Idle,
    /// A person logged out: nothing logs it in again until a person does.
    LoggedOut,
    /// Credentials are held; the next automatic trip is due at `refresh_at` (none when no
    /// role needs refreshing).
    Active {
        /// When the scheduler makes the next trip.
        refresh_at: Option<OffsetDateTime>,
    },
    /// The last trip failed transiently; the next try is at `retry_at`.
    Backoff {
        /// Failed trips in a row.
        attempts: u32,
        /// When the scheduler tries again.
        retry_at: OffsetDateTime,
    },
    /// The IdP session has ended and this account may not sign in again by itself (the
    /// session needs a person, or the account has no unattended login). It moves on as soon
    /// as the session is live again: a person's login, or another account's.
    AwaitingSession,
    /// Refused for good (STS AccessDenied, an IdP 4xx, an unusable assertion): only a
    /// person (login, refresh, a config change) moves it on.
    Refused,
}

impl Phase {
    /// When the scheduler must next look at the account, if ever by itself.
    pub fn wake_at(self) -> Option<OffsetDateTime> {
        match self {
            Phase::Active { refresh_at } => refresh_at,
            Phase::Backoff { retry_at, .. } => Some(retry_at),
            Phase::Idle | Phase::LoggedOut | Phase::AwaitingSession | Phase::Refused => None,
        }
    }

    /// Whether the manager may make a trip for this account without a person.
    pub fn unattended(self) -> Unattended {
        match self {
            Phase::Idle | Phase::Active { .. } | Phase::Backoff { .. } => Unattended::Trip,
            Phase::LoggedOut | Phase::AwaitingSession | Phase::Refused => Unattended::Nothing,
        }
    }
}

/// What may be tried for an account with nobody at the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unattended {
    /// Nothing at all: no request to the IdP or STS.
    Nothing,
    /// A trip: an assertion from the held session and STS, and, if the session has ended and
    /// its own policy allows ([`SessionPhase::may_login_unattended`]), one unattended login.
    Trip,
}

/// What a trip brought back, as the policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripOutcome {
    /// How it failed, if it did (a partial success that failed for some role counts as
    /// that role's failure; the others' credentials are kept).
    pub failure: Option<Failure>,
    /// The earliest refresh deadline among the credentials held after the trip (already
    /// floored per role by [`floored_refresh`]); none when nothing needs refreshing.
    pub next_refresh: Option<OffsetDateTime>,
    /// Whether a person started the trip (`samlctl login` or `refresh`) and is watching.
    pub attended: bool,
}

/// The account's next phase after a trip. `prev` is the phase the trip started from.
pub fn decide(prev: Phase, outcome: &TripOutcome, now: OffsetDateTime) -> Phase {
    match &outcome.failure {
        // Whatever the credentials say, the next automatic trip is at least the floor away:
        // a deadline already past (a role the trip did not renew, a clock jump) must not
        // turn the scheduler into a loop.
        None => Phase::Active {
            refresh_at: outcome
                .next_refresh
                .map(|at| at.max(add(now, REFRESH_FLOOR))),
        },
        // A person's login that failed for a passing reason, with nothing held to keep
        // fresh: they saw the error and retry when they choose; nothing retries behind
        // their back.
        Some(Failure::Transient { .. })
            if outcome.attended
                && outcome.next_refresh.is_none()
                && !matches!(prev, Phase::Active { .. }) =>
        {
            prev
        }
        Some(Failure::Transient { retry_after }) => {
            let attempts = match prev {
                Phase::Backoff { attempts, .. } => attempts.saturating_add(1),
                _ => 1,
            };
            let wait = backoff(attempts, fastrand::f64())
                .max(retry_after.unwrap_or(Duration::ZERO).min(RETRY_AFTER_CAP))
                .max(REFRESH_FLOOR)
                / BACKOFF_DIVISOR.load(Ordering::Relaxed);
            let retry_at = add(now, wait);
            // Credentials still held keep their own (earlier) deadline out of the way: the
            // retry is the next trip, and it renews them too.
            Phase::Backoff { attempts, retry_at }
        }
        Some(Failure::NeedsPerson | Failure::SessionEnded) => Phase::AwaitingSession,
        // A refused role is dropped from the refresh set by the caller; the roles that still
        // work keep being refreshed.
        Some(Failure::Refused) => match outcome.next_refresh {
            Some(at) => Phase::Active {
                refresh_at: Some(at.max(add(now, REFRESH_FLOOR))),
            },
            None => Phase::Refused,
        },
    }
}

/// Exponential backoff from [`BACKOFF_BASE`], doubling up to [`BACKOFF_CAP`], with ±20%
/// jitter (`unit` in `[0, 1)`) so that many daemons or accounts hitting one outage do not
/// retry in lockstep.
pub fn backoff(attempts: u32, unit: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempts.saturating_sub(1).min(10));
    exp.min(BACKOFF_CAP)
        .mul_f64(0.8 + unit.clamp(0.0, 1.0) * 0.4)
}

/// When to refresh credentials obtained at `obtained` and expiring at `expiration`:
/// `refresh_before` ahead of expiry, or at two thirds of the life for sessions too short for
/// that, minus `jitter`; never sooner than [`REFRESH_FLOOR`] after they were obtained.
pub fn floored_refresh(
    obtained: OffsetDateTime,
    expiration: OffsetDateTime,
    refresh_before: Duration,
    jitter: time::Duration,
) -> OffsetDateTime {
    let deadline = refresh_deadline(obtained, expiration, refresh_before) - jitter;
    deadline.max(add(obtained, REFRESH_FLOOR))
}

/// `refresh_before` ahead of expiry, or at two thirds of the life for sessions too short for
/// that.
pub fn refresh_deadline(
    obtained: OffsetDateTime,
    expiration: OffsetDateTime,
    refresh_before: Duration,
) -> OffsetDateTime {
    let life = expiration - obtained;
    let before = time::Duration::try_from(refresh_before).unwrap_or(time::Duration::MAX);
    if life.is_negative() {
        return obtained;
    }
    if life >= before.saturating_mul(2) {
        expiration - before
    } else {
        obtained + life * 2 / 3
    }
}

/// Whether credentials with this life deserve a warning: less than `refresh_before`, so
/// samld cannot keep them fresh as configured.
pub fn short_lived(
    obtained: OffsetDateTime,
    expiration: OffsetDateTime,
    refresh_before: Duration,
) -> bool {
    let before = time::Duration::try_from(refresh_before).unwrap_or(time::Duration::MAX);
    expiration - obtained < before
}

/// `at + by`, saturating at the far future instead of panicking.
pub fn add(at: OffsetDateTime, by: Duration) -> OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|by| at.checked_add(by))
        .unwrap_or(far_future())
}

/// An instant no deadline reaches (year 9999).
pub fn far_future() -> OffsetDateTime {
    time::macros::datetime!(9999-01-01 00:00 UTC)
}

/// Where an IdP session (one user at one console, shared by their accounts) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionPhase {
    /// Never signed in here, or forgotten by a logout.
    None,
    /// Signed in: assertions come without the person.
    Live,
    /// The IdP ended it, and the one unattended login this need allows has not reached the
    /// person yet (an attempt that did moves the session to `NeedsPerson` or `Live`).
    /// `retry_at` after a transient failure that reached nobody.
    Ended {
        /// Not before this instant (a transient failure's backoff, the hourly window).
        retry_at: Option<OffsetDateTime>,
        /// Failed unattended attempts in a row that reached nobody.
        attempts: u32,
    },
    /// Only a person can sign in again; the message says what happened.
    NeedsPerson {
        /// What happened, for status, notifications and helpers.
        reason: String,
    },
}

impl SessionPhase {
    /// A session that has just ended, with its need not yet spent.
    pub fn ended() -> Self {
        SessionPhase::Ended {
            retry_at: None,
            attempts: 0,
        }
    }

    /// Whether an unattended login may be started now, given the instants of the unattended
    /// logins already made (any age; only the last hour counts).
    pub fn may_login_unattended(&self, now: OffsetDateTime, recent: &[OffsetDateTime]) -> bool {
        let window_open = recent
            .iter()
            .filter(|&&t| t > now - time::Duration::HOUR)
            .count()
            < UNATTENDED_LOGINS_PER_HOUR;
        match self {
            // After a restart or a config change nothing is held: a request may sign in
            // once, as after an ended session.
            SessionPhase::None => window_open,
            SessionPhase::Ended { retry_at, .. } => {
                retry_at.is_none_or(|t| now >= t) && window_open
            }
            SessionPhase::Live | SessionPhase::NeedsPerson { .. } => false,
        }
    }

    /// When an unattended login would next be allowed, for a session that has ended (or was
    /// forgotten) waiting on a backoff or on the hourly window.
    pub fn next_unattended_at(
        &self,
        now: OffsetDateTime,
        recent: &[OffsetDateTime],
    ) -> Option<OffsetDateTime> {
        let retry_at = match self {
            SessionPhase::Ended { retry_at, .. } => retry_at,
            SessionPhase::None => &None,
            SessionPhase::Live | SessionPhase::NeedsPerson { .. } => return None,
        };
        let in_window: Vec<_> = recent
            .iter()
            .copied()
            .filter(|&t| t > now - time::Duration::HOUR)
            .collect();
        let window = if in_window.len() >= UNATTENDED_LOGINS_PER_HOUR {
            in_window.iter().min().map(|&t| t + time::Duration::HOUR)
        } else {
            None
        };
        match (window, *retry_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How an unattended login ended, as the session policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// Whether it sent something that reaches the person (password, push, code).
    pub reached_person: bool,
    /// The failure, if it failed; its message is kept for status.
    pub failure: Option<(Failure, String)>,
}

/// The session's next phase after an unattended login.
pub fn after_login(
    prev: &SessionPhase,
    outcome: &LoginOutcome,
    now: OffsetDateTime,
) -> SessionPhase {
    let Some((failure, message)) = &outcome.failure else {
        return SessionPhase::Live;
    };
    match failure {
        // Nothing reached the person and asking again can help: back off, need unspent.
        Failure::Transient { retry_after } if !outcome.reached_person => {
            let attempts = match prev {
                SessionPhase::Ended { attempts, .. } => attempts.saturating_add(1),
                _ => 1,
            };
            let wait = backoff(attempts, fastrand::f64())
                .max(retry_after.unwrap_or(Duration::ZERO).min(RETRY_AFTER_CAP));
            SessionPhase::Ended {
                retry_at: Some(add(now, wait)),
                attempts,
            }
        }
        // The need is spent (something reached the person), or only a person can fix it.
        _ => SessionPhase::NeedsPerson {
            reason: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn secs(s: i64) -> OffsetDateTime {
        NOW + time::Duration::seconds(s)
    }

    fn transient() -> Failure {
        Failure::Transient { retry_after: None }
    }

    #[test]
    fn account_decisions_as_a_table() {
        let active = Phase::Active {
            refresh_at: Some(secs(2400)),
        };
        let backoff2 = Phase::Backoff {
            attempts: 2,
            retry_at: secs(0),
        };
        // (from, failure, next_refresh) -> (expected phase kind, wakes by itself)
        type Row = (
            Phase,
            Option<Failure>,
            Option<OffsetDateTime>,
            &'static str,
            bool,
        );
        let table: Vec<Row> = vec![
            (Phase::Idle, None, Some(secs(2400)), "active", true),
            (active, None, None, "active", false),
            (active, Some(transient()), Some(secs(2400)), "backoff", true),
            (backoff2, Some(transient()), None, "backoff", true),
            (
                active,
                Some(Failure::NeedsPerson),
                Some(secs(2400)),
                "awaiting-session",
                false,
            ),
            (
                active,
                Some(Failure::SessionEnded),
                None,
                "awaiting-session",
                false,
            ),
            (
                backoff2,
                Some(Failure::NeedsPerson),
                None,
                "awaiting-session",
                false,
            ),
            (active, Some(Failure::Refused), None, "refused", false),
            // Another role still works: it keeps being refreshed, the refused one does not.
            (
                active,
                Some(Failure::Refused),
                Some(secs(2400)),
                "active",
                true,
            ),
            (backoff2, None, Some(secs(2400)), "active", true),
        ];
        for (from, failure, next_refresh, kind, wakes) in table {
            let outcome = TripOutcome {
                failure: failure.clone(),
                next_refresh,
                attended: false,
            };
            let next = decide(from, &outcome, NOW);
            let got = match next {
                Phase::Active { .. } => "active",
                Phase::Backoff { .. } => "backoff",
                Phase::AwaitingSession => "awaiting-session",
                Phase::Refused => "refused",
                Phase::Idle => "idle",
                Phase::LoggedOut => "logged-out",
            };
            assert_eq!(got, kind, "{from:?} + {failure:?}");
            assert_eq!(next.wake_at().is_some(), wakes, "{from:?} + {failure:?}");
            if let Some(at) = next.wake_at() {
                assert!(at >= NOW, "{from:?} + {failure:?} wakes in the past");
            }
        }
    }

    #[test]
    fn a_persons_failed_login_is_not_retried_behind_their_back() {
        let failed_login = TripOutcome {
            failure: Some(transient()),
            next_refresh: None,
            attended: true,
        };
        for from in [Phase::Idle, Phase::LoggedOut, Phase::Refused] {
            let next = decide(from, &failed_login, NOW);
            assert_eq!(next, from);
            assert_eq!(next.wake_at(), None, "{from:?}");
        }
        // Credentials still held keep being refreshed: the retry renews them.
        let held = TripOutcome {
            next_refresh: Some(secs(2400)),
            ..failed_login.clone()
        };
        let active = Phase::Active {
            refresh_at: Some(secs(2400)),
        };
        assert!(matches!(decide(active, &held, NOW), Phase::Backoff { .. }));
        assert!(matches!(
            decide(active, &failed_login, NOW),
            Phase::Backoff { .. }
        ));
        // Unattended, the same failure backs off.
        let unattended = TripOutcome {
            attended: false,
            ..failed_login
        };
        assert!(matches!(
            decide(Phase::Idle, &unattended, NOW),
            Phase::Backoff { .. }
        ));
    }

    #[test]
    fn backoff_counts_attempts_and_keeps_the_floor() {
        let outcome = TripOutcome {
            failure: Some(transient()),
            next_refresh: None,
            attended: false,
        };
        let first = decide(Phase::Idle, &outcome, NOW);
        let Phase::Backoff {
            attempts: 1,
            retry_at,
        } = first
        else {
            panic!("{first:?}")
        };
        assert!(retry_at >= NOW + time::Duration::seconds(24), "{retry_at}");
        let second = decide(first, &outcome, NOW);
        assert!(
            matches!(second, Phase::Backoff { attempts: 2, .. }),
            "{second:?}"
        );
        // A Retry-After longer than the backoff wins, up to its cap.
        let slow = TripOutcome {
            failure: Some(Failure::Transient {
                retry_after: Some(Duration::from_secs(600)),
            }),
            next_refresh: None,
            attended: false,
        };
        assert_eq!(decide(Phase::Idle, &slow, NOW).wake_at(), Some(secs(600)));
        let absurd = TripOutcome {
            failure: Some(Failure::Transient {
                retry_after: Some(Duration::from_secs(u64::MAX)),
            }),
            next_refresh: None,
            attended: false,
        };
        assert_eq!(
            decide(Phase::Idle, &absurd, NOW).wake_at(),
            Some(secs(3600))
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        for (attempts, low, high) in [
            (1, 24.0, 36.0),
            (2, 48.0, 72.0),
            (6, 720.0, 1080.0),
            (40, 720.0, 1080.0),
        ] {
            for unit in [0.0, 0.5, 0.999] {
                let d = backoff(attempts, unit).as_secs_f64();
                assert!((low..=high).contains(&d), "attempt {attempts}: {d}");
            }
        }
    }

    #[test]
    fn only_people_and_time_move_a_refusal() {
        for phase in [Phase::LoggedOut, Phase::AwaitingSession, Phase::Refused] {
            assert_eq!(phase.unattended(), Unattended::Nothing);
            assert_eq!(phase.wake_at(), None);
        }
        for phase in [
            Phase::Idle,
            Phase::Active { refresh_at: None },
            Phase::Backoff {
                attempts: 1,
                retry_at: NOW,
            },
        ] {
            assert_eq!(phase.unattended(), Unattended::Trip);
        }
    }

    #[test]
    fn refresh_deadlines_are_floored_and_never_overflow() {
        let hour = secs(3600);
        let twenty = Duration::from_secs(20 * 60);
        // (expiration, the refresh deadline), obtained NOW with refresh_before 20m, no jitter
        let cases = [
            (hour, secs(2400)),
            // Short sessions refresh at two thirds of their life...
            (secs(900), secs(600)),
            // ...but never sooner than the floor, even for credentials that die at once.
            (secs(1), secs(10)),
            (secs(-60), secs(10)),
        ];
        for (expiration, want) in cases {
            assert_eq!(
                floored_refresh(NOW, expiration, twenty, time::Duration::ZERO),
                want,
                "{expiration}"
            );
        }
        // Jitter moves the deadline earlier, never later, and the floor still holds.
        let jitter = time::Duration::seconds(30);
        assert_eq!(floored_refresh(NOW, hour, twenty, jitter), secs(2370));
        assert_eq!(floored_refresh(NOW, secs(1), twenty, jitter), secs(10));
        // Short-lived means less life than `refresh_before`: exactly that much is enough.
        assert!(!short_lived(NOW, secs(1200), twenty));
        assert!(short_lived(NOW, secs(1199), twenty));
        assert!(short_lived(NOW, secs(1), twenty));
        assert!(!short_lived(NOW, hour, twenty));
        // Absurd settings saturate instead of panicking.
        let _ = floored_refresh(NOW, hour, Duration::MAX, time::Duration::ZERO);
        assert_eq!(add(NOW, Duration::MAX), far_future());
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "a table: one row per error, read side by side"
    )]
    fn idp_and_sts_failures_are_classified() {
        use crate::idp::IdpError as E;
        let table: Vec<(IdpError, Failure)> = vec![
            (E::SessionExpired, Failure::SessionEnded),
            (E::PushDenied, Failure::NeedsPerson),
            (E::PushExpired, Failure::NeedsPerson),
            (
                E::AuthFailed {
                    message: "x".into(),
                },
                Failure::NeedsPerson,
            ),
            (
                E::MfaCodeRejected {
                    message: "x".into(),
                },
                Failure::NeedsPerson,
            ),
            (
                E::PasswordUnavailable { reason: "x".into() },
                Failure::NeedsPerson,
            ),
            (
                E::MfaCodeUnavailable { reason: "x".into() },
                Failure::NeedsPerson,
            ),
            // JumpCloud asked for a second factor without naming it, and no code was at hand.
            (
                E::MfaUnnamed {
                    configured: "auto".into(),
                    reason: None,
                },
                Failure::NeedsPerson,
            ),
            (
                E::Network {
                    url: "u".into(),
                    reason: "r".into(),
                },
                transient(),
            ),
            (
                E::UnexpectedStatus {
                    request: "r".into(),
                    status: 503,
                    message: None,
                },
                transient(),
            ),
            (
                E::UnexpectedStatus {
                    request: "r".into(),
                    status: 404,
                    message: None,
                },
                Failure::Refused,
            ),
            // Throttled, or the server's fault: asked again later. Any other status is a
            // verdict.
            (
                E::UnexpectedStatus {
                    request: "r".into(),
                    status: 429,
                    message: None,
                },
                transient(),
            ),
            (
                E::UnexpectedStatus {
                    request: "r".into(),
                    status: 500,
                    message: None,
                },
                transient(),
            ),
            (
                E::UnexpectedStatus {
                    request: "r".into(),
                    status: 499,
                    message: None,
                },
                Failure::Refused,
            ),
            // An HTML page where JSON was expected: a 5xx is an outage page, anything else
            // a page samld does not know.
            (
                E::UnexpectedHtml {
                    request: "r".into(),
                    status: 500,
                },
                transient(),
            ),
            (
                E::UnexpectedHtml {
                    request: "r".into(),
                    status: 200,
                },
                Failure::Refused,
            ),
            (E::Saml(SamlError::NoSamlResponse), transient()),
            (E::Saml(SamlError::NoRoleAttribute), Failure::Refused),
            (E::Config("x".into()), Failure::Refused),
        ];
        for (error, expected) in table {
            assert_eq!(classify_idp(&error), expected, "{error:?}");
        }
        let sts = |code: &str, status: u16| StsError::Service {
            code: code.into(),
            message: "m".into(),
            status: Some(status),
        };
        // (STS error code, HTTP status, what the failure means)
        let cases = [
            ("AccessDenied", 403, Failure::Refused),
            ("InvalidIdentityToken", 400, Failure::Refused),
            ("IDPRejectedClaim", 403, Failure::Refused),
            ("Throttling", 400, transient()),
            ("InternalFailure", 500, transient()),
        ];
        for (code, status, expected) in cases {
            assert_eq!(classify_sts(&sts(code, status)), expected, "{code:?}");
        }
        assert_eq!(
            classify_sts(&StsError::Network {
                endpoint: "e".into(),
                reason: "r".into()
            }),
            transient()
        );
    }

    #[test]
    fn session_decisions_as_a_table() {
        let spent = |reached_person, failure: Option<Failure>| LoginOutcome {
            reached_person,
            failure: failure.map(|f| (f, "why".to_owned())),
        };
        let ended = SessionPhase::ended();
        // Success: live.
        assert_eq!(
            after_login(&ended, &spent(true, None), NOW),
            SessionPhase::Live
        );
        // A refusal, or anything after the person was reached: a person must act.
        for outcome in [
            spent(true, Some(Failure::NeedsPerson)),
            spent(false, Some(Failure::NeedsPerson)),
            spent(true, Some(transient())),
            spent(true, Some(Failure::Refused)),
        ] {
            let next = after_login(&ended, &outcome, NOW);
            assert!(
                matches!(next, SessionPhase::NeedsPerson { .. }),
                "{outcome:?}: {next:?}"
            );
            assert!(!next.may_login_unattended(secs(86_400), &[]));
        }
        // A transient failure that reached nobody backs off with the need unspent.
        let next = after_login(&ended, &spent(false, Some(transient())), NOW);
        let SessionPhase::Ended {
            retry_at: Some(at),
            attempts: 1,
        } = next
        else {
            panic!("{next:?}")
        };
        assert!(!next.may_login_unattended(NOW, &[]));
        assert!(next.may_login_unattended(at, &[]));
        // Each failure in a row waits longer: the third waits at least 4 × 30 s × 0.8.
        let third = after_login(
            &SessionPhase::Ended {
                retry_at: Some(NOW),
                attempts: 2,
            },
            &spent(false, Some(transient())),
            NOW,
        );
        let SessionPhase::Ended {
            retry_at: Some(at),
            attempts: 3,
        } = third
        else {
            panic!("{third:?}")
        };
        assert!(at >= secs(96), "{at}");
    }

    #[test]
    fn unattended_logins_are_capped_per_hour() {
        let ended = SessionPhase::ended();
        let recent: Vec<_> = (0..UNATTENDED_LOGINS_PER_HOUR as i64)
            .map(|i| secs(-600 * i))
            .collect();
        assert!(!ended.may_login_unattended(NOW, &recent));
        let opens = ended.next_unattended_at(NOW, &recent).unwrap();
        assert_eq!(opens, secs(-600 * 5 + 3600));
        assert!(ended.may_login_unattended(opens + time::Duration::SECOND, &recent));
        // A login exactly an hour old has left the window.
        let aged: Vec<_> = (0..UNATTENDED_LOGINS_PER_HOUR as i64)
            .map(|i| secs(-3600 + 600 * i))
            .collect();
        assert!(ended.may_login_unattended(NOW, &aged));
        assert_eq!(ended.next_unattended_at(NOW, &aged), None);
        assert!(!SessionPhase::Live.may_login_unattended(NOW, &[]));
        assert!(SessionPhase::None.may_login_unattended(NOW, &[]));
    }
}
