//! The state the manager keeps: one [`AccountSlot`] per configured account and one
//! [`SessionSlot`] per IdP sign-in (user and console) that those accounts share.
//!
//! Each sits behind a plain mutex held only for bookkeeping, never across an await, so the
//! helper's hot path (credentials that are still fresh) is a map lookup.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use samld_config::{Account, SessionKey};
use samld_proto::{ErrorInfo, WireError};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::policy::{Phase, SessionPhase};
use crate::idp::{IdentityProvider, IdpSession};
use crate::saml::RolePair;
use crate::sts::AwsCredentials;

/// What every waiter of a flight is told when it ends.
pub(super) type FlightResult = Result<(), WireError>;

/// The receiving end of a flight's outcome.
pub(super) type FlightWatch = watch::Receiver<Option<FlightResult>>;

/// Why a flight is running, for `samlctl status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlightKind {
    Login,
    Refresh,
}

/// One configured account.
pub(super) struct AccountSlot {
    pub(super) account: Account,
    pub(super) idp: Arc<dyn IdentityProvider>,
    pub(super) session: Arc<SessionSlot>,
    data: Mutex<AccountData>,
}

impl AccountSlot {
    pub(super) fn new(
        account: Account,
        idp: Arc<dyn IdentityProvider>,
        session: Arc<SessionSlot>,
    ) -> Self {
        Self {
            account,
            idp,
            session,
            data: Mutex::new(AccountData::default()),
        }
    }

    pub(super) fn data(&self) -> MutexGuard<'_, AccountData> {
        // A panic while holding this lock would be a bug; the data stays usable regardless.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one account holds.
pub(super) struct AccountData {
    /// Where the account stands: the centre of the state machine (see [`super::policy`]).
    pub(super) phase: Phase,
    /// Moves on every logout, so that a flight that started before it stores nothing.
    pub(super) generation: u64,
    /// The running login or refresh, which every other request joins.
    pub(super) flight: Option<(FlightKind, FlightWatch)>,
    /// The task of a background trip, so that a config change can stop it: the slot it
    /// works for is being replaced, and the new one starts its own.
    pub(super) trip_task: Option<tokio::task::AbortHandle>,
    /// The roles of the last assertion.
    pub(super) roles: Vec<RolePair>,
    pub(super) creds: BTreeMap<String, HeldCredentials>,
    /// Roles asked for since the login; refreshes keep all of them fresh.
    pub(super) wanted: BTreeSet<String>,
    /// Roles STS refused for good: not asked again until a person acts.
    pub(super) refused: BTreeMap<String, ErrorInfo>,
    /// MaxSessionDuration learnt per role from STS refusals.
    pub(super) max_duration: HashMap<String, u32>,
    pub(super) last_error: Option<ErrorInfo>,
    /// Whether the keyring holds a password for the account: unknown until it answers.
    pub(super) saved_password: Option<bool>,
}

impl Default for AccountData {
    fn default() -> Self {
        Self {
            phase: Phase::Idle,
            generation: 0,
            flight: None,
            trip_task: None,
            roles: Vec::new(),
            creds: BTreeMap::new(),
            wanted: BTreeSet::new(),
            refused: BTreeMap::new(),
            max_duration: HashMap::new(),
            last_error: None,
            saved_password: None,
        }
    }
}

impl AccountData {
    /// The earliest refresh deadline among held credentials of roles still in use.
    pub(super) fn next_refresh(&self) -> Option<OffsetDateTime> {
        self.creds
            .iter()
            .filter(|(arn, _)| !self.refused.contains_key(*arn))
            .map(|(_, held)| held.refresh_at)
            .min()
    }
}

/// Credentials for one role, with when they were obtained and when they are refreshed.
#[derive(Debug, Clone)]
pub(super) struct HeldCredentials {
    pub(super) creds: AwsCredentials,
    pub(super) obtained_at: OffsetDateTime,
    pub(super) refresh_at: OffsetDateTime,
    /// They arrived with less life than `refresh_before`.
    pub(super) short_lived: bool,
}

/// One IdP sign-in (a user at a console), shared by every account with that key. It owns
/// both halves of the session: the policy's [`SessionData`] and the IdP's state (cookies),
/// which every provider of those accounts is built on and which ends with the slot.
pub(super) struct SessionSlot {
    pub(super) key: SessionKey,
    pub(super) idp: IdpSession,
    data: Mutex<SessionData>,
}

impl SessionSlot {
    pub(super) fn new(key: SessionKey, idp: IdpSession) -> Self {
        Self {
            key,
            idp,
            data: Mutex::new(SessionData::default()),
        }
    }

    pub(super) fn data(&self) -> MutexGuard<'_, SessionData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the policy knows of one IdP session (its cookies are [`SessionSlot::idp`]).
pub(super) struct SessionData {
    pub(super) phase: SessionPhase,
    /// When the sign-in happened and when the IdP last confirmed it.
    pub(super) times: Option<SessionTimes>,
    /// A login running for this session, which every account's trip waits for.
    pub(super) login: Option<FlightWatch>,
    /// When unattended logins started, for the hourly cap (older than an hour are dropped).
    pub(super) unattended_logins: Vec<OffsetDateTime>,
    /// Moves on every forget, so that a login that started before it cannot revive it.
    pub(super) generation: u64,
}

impl Default for SessionData {
    fn default() -> Self {
        Self {
            phase: SessionPhase::None,
            times: None,
            login: None,
            unattended_logins: Vec::new(),
            generation: 0,
        }
    }
}

/// When an IdP session started and was last seen alive.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionTimes {
    pub(super) established_at: OffsetDateTime,
    pub(super) last_verified_at: OffsetDateTime,
}

impl SessionData {
    /// Someone who is not deciding to sign in again acted (a `samlctl refresh`, a config
    /// change, a helper on a terminal): a pending backoff is dropped, but a refusal stands
    /// until the person's own `samlctl login` succeeds (which marks the session live).
    pub(super) fn retry_now(&mut self) {
        if matches!(self.phase, SessionPhase::Ended { .. }) {
            self.phase = SessionPhase::ended();
        }
    }

    /// Forgets the session (a logout): nothing held, and a login still running cannot bring
    /// it back. With `keep_refusal`, a refusal that waits for a person stays: logging out
    /// of one account is no answer to the push that another account's helpers would
    /// otherwise send again.
    pub(super) fn forget(&mut self, keep_refusal: bool) {
        if !(keep_refusal && matches!(self.phase, SessionPhase::NeedsPerson { .. })) {
            self.phase = SessionPhase::None;
        }
        self.times = None;
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn session(phase: SessionPhase) -> SessionData {
        let at = datetime!(2026-12-01 08:00 UTC);
        SessionData {
            phase,
            times: Some(SessionTimes {
                established_at: at,
                last_verified_at: at,
            }),
            generation: 7,
            ..SessionData::default()
        }
    }

    fn needs_person() -> SessionPhase {
        SessionPhase::NeedsPerson {
            reason: "the push was denied".to_owned(),
        }
    }

    #[test]
    fn a_retry_drops_a_backoff_but_never_a_refusal() {
        let backing_off = SessionPhase::Ended {
            retry_at: Some(datetime!(2026-12-01 09:00 UTC)),
            attempts: 3,
        };
        // (from, after a refresh, a config change or a helper on a terminal)
        let table = [
            // Only the person's login answers a refusal.
            (needs_person(), needs_person()),
            // A pending backoff is dropped: the act is the retry.
            (backing_off, SessionPhase::ended()),
            // A live session (or none) has nothing to re-arm.
            (SessionPhase::Live, SessionPhase::Live),
            (SessionPhase::None, SessionPhase::None),
        ];
        for (from, after) in table {
            let mut other = session(from.clone());
            other.retry_now();
            assert_eq!(other.phase, after, "{from:?}");
        }
    }

    #[test]
    fn a_logout_forgets_the_session_and_outdates_logins_still_running() {
        for phase in [SessionPhase::Live, needs_person(), SessionPhase::ended()] {
            let mut s = session(phase);
            s.forget(false);
            assert_eq!(s.phase, SessionPhase::None);
            assert!(s.times.is_none());
            assert_eq!(s.generation, 8);
        }
    }

    #[test]
    fn a_logout_that_keeps_refusals_keeps_only_a_refusal() {
        // The refusal waits for a person: logging out of one account is no answer to it.
        let mut refused = session(needs_person());
        refused.forget(true);
        assert_eq!(refused.phase, needs_person());
        assert!(refused.times.is_none());
        assert_eq!(refused.generation, 8);

        // Anything else is forgotten as by a plain logout.
        for phase in [SessionPhase::Live, SessionPhase::ended()] {
            let mut s = session(phase);
            s.forget(true);
            assert_eq!(s.phase, SessionPhase::None);
            assert!(s.times.is_none());
            assert_eq!(s.generation, 8);
        }
    }
}
