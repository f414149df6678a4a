//! The state as `samlctl status` shows it.

use samld_config::Account;
use samld_proto::{
    AccountState, AccountStatus, DaemonInfo, ErrorCode, IdpSessionState, IdpSessionStatus,
    PROTOCOL_VERSION, RoleInfo, RoleStatus, SessionInfo, StatusReport, WireError,
};
use time::OffsetDateTime;

use super::Manager;
use super::gate::{WhyNot, explain};
use super::policy::{Phase, SessionPhase};
use super::state::{AccountData, AccountSlot, FlightKind, SessionSlot};
use crate::audit::Audit;
use crate::clock::rfc3339;
use crate::saml::{self, RolePair};

impl Manager {
    /// `samlctl status`.
    pub fn status(&self, only: Option<&str>) -> Result<StatusReport, WireError> {
        let slots = match only {
            Some(name) => vec![self.slot(name)?],
            None => self.all_slots(),
        };
        let now = self.clock.now();
        let accounts = slots
            .iter()
            .map(|slot| account_status(slot, &self.audit, now))
            .collect();
        let mut sessions: Vec<IdpSessionStatus> = Vec::new();
        for slot in &slots {
            if sessions.iter().any(|s| {
                s.username == slot.session.key.username
                    && s.console_url == slot.session.key.console_url
            }) {
                continue;
            }
            let names = self
                .slots_of(&slot.session)
                .iter()
                .map(|a| a.account.name.clone())
                .collect();
            sessions.push(session_status(&slot.session, &slot.account, names));
        }
        let config = self.config.read().unwrap_or_else(|e| e.into_inner());
        Ok(StatusReport {
            daemon: DaemonInfo {
                version: samld_proto::CRATE_VERSION.to_string(),
                protocol_version: PROTOCOL_VERSION,
                pid: std::process::id(),
                config_path: self.options.config_path.display().to_string(),
                started_at: rfc3339(self.started_at),
                config_error: config.error.clone(),
            },
            accounts,
            sessions,
        })
    }
}

/// `account`: one of the session's, whose `samlctl login` a refusal names.
fn session_status(
    session: &SessionSlot,
    account: &Account,
    accounts: Vec<String>,
) -> IdpSessionStatus {
    let data = session.data();
    let state = match &data.phase {
        _ if data.login.is_some() => IdpSessionState::LoggingIn,
        SessionPhase::None => IdpSessionState::None,
        SessionPhase::Live => IdpSessionState::Live,
        SessionPhase::Ended { .. } => IdpSessionState::Ended,
        SessionPhase::NeedsPerson { .. } => IdpSessionState::NeedsLogin,
    };
    let reason = match &data.phase {
        SessionPhase::NeedsPerson { reason } => {
            let why = WhyNot::PersonRefused {
                reason: reason.clone(),
            };
            Some(explain(account, &why).message)
        }
        _ => None,
    };
    IdpSessionStatus {
        provider: session.key.provider.as_str().to_owned(),
        console_url: session.key.console_url.clone(),
        username: session.key.username.clone(),
        state,
        session: data.times.map(|t| SessionInfo {
            established_at: rfc3339(t.established_at),
            last_verified_at: rfc3339(t.last_verified_at),
        }),
        accounts,
        reason,
    }
}

pub(super) fn role_infos(account: &Account, roles: &[RolePair]) -> Vec<RoleInfo> {
    let default = saml::default_role(roles, account.role.as_deref())
        .ok()
        .map(|p| p.role_arn.to_string());
    roles
        .iter()
        .map(|p| RoleInfo {
            role_arn: p.role_arn.to_string(),
            principal_arn: p.principal_arn.clone(),
            default: default.as_deref() == Some(p.role_arn.as_str()),
        })
        .collect()
}

pub(super) fn role_statuses(
    account: &Account,
    data: &AccountData,
    audit: &Audit,
    now: OffsetDateTime,
) -> Vec<RoleStatus> {
    let default = saml::default_role(&data.roles, account.role.as_deref())
        .ok()
        .map(|p| p.role_arn.to_string());
    let scheduled = match data.phase {
        Phase::Active { refresh_at } => refresh_at,
        Phase::Backoff { retry_at, .. } => Some(retry_at),
        _ => None,
    };
    data.creds
        .iter()
        .filter(|(_, held)| held.creds.expiration > now)
        .map(|(arn, held)| RoleStatus {
            role_arn: arn.clone(),
            assumed_role_arn: held.creds.assumed_role_arn.clone(),
            expires_at: Some(rfc3339(held.creds.expiration)),
            // What the scheduler will do, not what the credentials would like: nothing while
            // the account waits for a person, the retry during a backoff.
            next_refresh_at: scheduled
                .filter(|_| !data.refused.contains_key(arn))
                .map(|at| rfc3339(held.refresh_at.max(at))),
            default: default.as_deref() == Some(arn.as_str()),
            last_used: audit.last_use(&account.name, arn),
            warning: held.short_lived.then(|| {
                format!(
                    "STS issued these credentials with {}s of life, less than refresh_before ({}s): check this machine's clock, any proxy, and the role's MaxSessionDuration; samld refreshes them at most every {}s",
                    (held.creds.expiration - held.obtained_at).as_seconds_f64().round(),
                    account.refresh_before.as_secs(),
                    super::policy::REFRESH_FLOOR.as_secs()
                )
            }),
        })
        .collect()
}

fn account_status(slot: &AccountSlot, audit: &Audit, now: OffsetDateTime) -> AccountStatus {
    let account = &slot.account;
    let session = {
        let s = slot.session.data();
        s.times.filter(|_| s.phase == SessionPhase::Live)
    };
    let data = slot.data();
    let roles = role_statuses(account, &data, audit, now);
    let flight = data.flight.as_ref().map(|(kind, _)| *kind);
    // A flight still running after a logout stores nothing: the logout is what stands.
    let flight = flight.filter(|_| data.phase != Phase::LoggedOut);
    let state = match flight {
        Some(FlightKind::Login) => AccountState::LoggingIn,
        Some(FlightKind::Refresh) => AccountState::Refreshing,
        None => match data.phase {
            Phase::LoggedOut => AccountState::LoggedOut,
            Phase::Idle if roles.is_empty() => AccountState::LoggedOut,
            Phase::Idle | Phase::Active { .. } => AccountState::Active,
            // Waiting for the keyring (locked, or not on D-Bus yet): a person can sign in now,
            // and samld also asks the keyring again at the retry.
            Phase::Backoff { .. }
                if data.last_error.as_ref().map(|e| e.code) == Some(ErrorCode::NeedsLogin) =>
            {
                AccountState::NeedsLogin
            }
            Phase::Backoff { .. } | Phase::Refused => AccountState::Error,
            Phase::AwaitingSession => AccountState::NeedsLogin,
        },
    };
    let next_retry_at = match data.phase {
        Phase::Backoff { retry_at, .. } => Some(rfc3339(retry_at)),
        _ => None,
    };
    AccountStatus {
        name: account.name.clone(),
        state,
        provider: account.provider.as_str().to_owned(),
        login: account.login.as_str().to_owned(),
        username: account.username.clone(),
        identity: slot.idp.identity(),
        url: account.url.clone(),
        region: account.region.clone(),
        default_role: account.role.clone(),
        session: session
            .filter(|_| data.phase != Phase::LoggedOut)
            .map(|s| SessionInfo {
                established_at: rfc3339(s.established_at),
                last_verified_at: rfc3339(s.last_verified_at),
            }),
        roles,
        last_error: data.last_error.clone(),
        next_retry_at,
    }
}
