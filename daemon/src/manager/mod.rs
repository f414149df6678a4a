//! The session manager: the accounts and IdP sessions as explicit state machines, and the
//! operations behind every request the socket server passes in.
//!
//! - `state.rs`: what is held per account (`AccountSlot`) and per IdP session
//!   (`SessionSlot`, one per user and console, shared by that user's accounts);
//! - [`policy`]: the one pure function that decides what happens after a trip, tested as a
//!   table, and the rules it enforces;
//! - `trip.rs`: one trip to the IdP and STS (a *flight*: at most one per account, and at most
//!   one login per IdP session), returning typed outcomes;
//! - `schedule.rs`: the background refresher;
//! - `secrets.rs`: where a login's password and code come from;
//! - `status.rs`: the state as `samlctl status` shows it.
//!
//! Every request that needs a trip while one runs joins it and shares its outcome instead of
//! starting another login.

pub mod policy;
mod schedule;
mod secrets;
mod state;
mod status;
mod trip;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use samld_config::{Account, Config, LoginMethod, MfaMode, SessionKey};
use samld_proto::{
    AuditKind, CredentialSource, Credentials, ErrorCode, LoginOutcome, RoleInfo, RoleStatus,
    WireError,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use self::policy::{Phase, SessionPhase};
use self::secrets::SecretSources;
pub use self::secrets::{ClientChannel, LoginSecrets};
use self::state::{
    AccountData, AccountSlot, FlightKind, FlightResult, FlightWatch, HeldCredentials, SessionSlot,
};
use crate::audit::{Audit, Record};
use crate::clock::{Clock, rfc3339};
use crate::future::BoxFuture;
use crate::idp::{IdentityProvider, IdpError, LoginInteraction};
use crate::keyring::PasswordStore;
use crate::saml::{self, RolePair};
use crate::sts::StsApi;

/// Credentials closer to expiry than this (or than a quarter of their life, for very short
/// sessions) are never handed out: the caller could not even finish its first API call.
const MIN_REMAINING: time::Duration = time::Duration::seconds(60);

/// Builds the identity provider for an account (JumpCloud in production, fakes in tests).
/// Accounts with the same [`Account::session_key`] must get providers that share one IdP
/// session, so that one login serves all of them.
pub trait ProviderFactory: Send + Sync {
    /// A provider for this account's settings. Called again when the settings change.
    fn provider(&self, account: &Account) -> Result<Arc<dyn IdentityProvider>, IdpError>;
}

/// Tunables of the manager, and the services it is built with.
#[derive(Clone)]
pub struct DaemonOptions {
    /// The config file in force (shown by `samlctl status`).
    pub config_path: PathBuf,
    /// How long a request for credentials inside their refresh window waits for the refresh
    /// before it falls back to the old, still valid ones.
    pub fresh_wait: Duration,
    /// How long `password_command` and `mfa_command` may run.
    pub command_timeout: Duration,
    /// Where `--save-password` keeps passwords and unattended logins read them (the OS
    /// keyring in samld); none: nothing is saved or read.
    pub password_store: Option<Arc<dyn PasswordStore>>,
    /// How the user is told that an account needs them (a desktop notification in samld);
    /// none: only status and the helpers say it.
    pub notify_user: Option<NotifyUser>,
    /// How many events the audit keeps ([`crate::audit::DEFAULT_CAPACITY`]; tests use a
    /// small ring).
    pub audit_capacity: usize,
}

impl DaemonOptions {
    /// Defaults for a config file path, without a password store or notifications.
    pub fn new(config_path: PathBuf) -> Self {
        Self {
            config_path,
            fresh_wait: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
            password_store: None,
            notify_user: None,
            audit_capacity: crate::audit::DEFAULT_CAPACITY,
        }
    }
}

impl std::fmt::Debug for DaemonOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonOptions")
            .field("config_path", &self.config_path)
            .field("fresh_wait", &self.fresh_wait)
            .field("command_timeout", &self.command_timeout)
            .field("password_store", &self.password_store.is_some())
            .field("notify_user", &self.notify_user.is_some())
            .field("audit_capacity", &self.audit_capacity)
            .finish()
    }
}

/// Shows the user a desktop notification: `(title, body)`.
pub type NotifyUser = Arc<dyn Fn(&str, &str) + Send + Sync>;

struct ConfigState {
    config: Arc<Config>,
    error: Option<String>,
}

/// The daemon's state and the operations behind every request.
pub struct Manager {
    clock: Arc<dyn Clock>,
    sts: Arc<dyn StsApi>,
    providers: Arc<dyn ProviderFactory>,
    options: DaemonOptions,
    config: RwLock<ConfigState>,
    accounts: Mutex<BTreeMap<String, Arc<AccountSlot>>>,
    sessions: Mutex<BTreeMap<SessionKey, Arc<SessionSlot>>>,
    started_at: OffsetDateTime,
    /// Every hand-out and trip, for `samlctl audit` and the last use in `samlctl status`.
    audit: Arc<Audit>,
    /// Woken whenever a deadline may have moved (new credentials, config change).
    schedule_changed: Notify,
}

impl Manager {
    /// A manager with a first configuration.
    pub fn new(
        config: Config,
        options: DaemonOptions,
        clock: Arc<dyn Clock>,
        sts: Arc<dyn StsApi>,
        providers: Arc<dyn ProviderFactory>,
    ) -> Arc<Self> {
        let started_at = clock.now();
        let audit = Arc::new(Audit::new(clock.clone(), options.audit_capacity));
        let manager = Arc::new(Self {
            clock,
            sts,
            providers,
            options,
            config: RwLock::new(ConfigState {
                config: Arc::new(Config::default()),
                error: None,
            }),
            accounts: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(BTreeMap::new()),
            started_at,
            audit,
            schedule_changed: Notify::new(),
        });
        manager.apply_config(config);
        manager
    }

    /// The audit of hand-outs and trips.
    pub fn audit(&self) -> &Arc<Audit> {
        &self.audit
    }

    /// The options the manager runs with.
    pub fn options(&self) -> &DaemonOptions {
        &self.options
    }

    /// Puts a new, valid configuration in force. Accounts whose settings did not change keep
    /// their credentials; changed accounts start over (and, being a person's act, let their
    /// IdP session try an unattended login again); removed ones are forgotten. An IdP session
    /// lives while an account uses it.
    pub fn apply_config(&self, config: Config) {
        self.audit.set_log_file(config.audit_log.as_deref());
        let mut accounts = self.lock_accounts();
        let mut sessions = self.lock_sessions();
        let mut next = BTreeMap::new();
        for (name, account) in &config.accounts {
            if let Some(slot) = accounts.get(name).filter(|s| s.account == *account) {
                next.insert(name.clone(), slot.clone());
                continue;
            }
            let idp = match self.providers.provider(account) {
                Ok(idp) => idp,
                Err(e) => {
                    tracing::error!(account = %name, error = %e, "account cannot be used");
                    Arc::new(BrokenProvider(e)) as Arc<dyn IdentityProvider>
                }
            };
            let key = account.session_key();
            let session = sessions
                .entry(key.clone())
                .or_insert_with(|| Arc::new(SessionSlot::new(key)))
                .clone();
            if accounts.contains_key(name) {
                tracing::info!(account = %name, "account settings changed; its credentials start over");
                session.data().person_acted();
            } else {
                tracing::info!(account = %name, "account added");
            }
            next.insert(
                name.clone(),
                Arc::new(AccountSlot::new(account.clone(), idp, session)),
            );
        }
        for name in accounts.keys().filter(|n| !next.contains_key(*n)) {
            tracing::info!(account = %name, "account removed");
            // Its events stay in the record; only the per-role map would grow with them.
            self.audit.forget_account(name);
        }
        for (name, old) in accounts.iter() {
            if !next.get(name).is_some_and(|new| Arc::ptr_eq(new, old))
                && let Some(task) = old.data().trip_task.take()
            {
                // Its results would land in a slot nobody reads; the new slot makes its own
                // trips, and two at once for one account is what single flight forbids.
                task.abort();
            }
        }
        sessions.retain(|_, s| next.values().any(|a| Arc::ptr_eq(&a.session, s)));
        *accounts = next;
        drop(sessions);
        drop(accounts);
        let mut state = self.config.write().unwrap_or_else(|e| e.into_inner());
        state.config = Arc::new(config);
        state.error = None;
        drop(state);
        self.schedule_changed.notify_one();
    }

    /// Records that the config file on disk is invalid; the last good config stays in force.
    pub fn config_rejected(&self, error: String) {
        tracing::error!(error = %error, "config change rejected; the previous config stays in force");
        self.config.write().unwrap_or_else(|e| e.into_inner()).error = Some(error);
    }

    /// Why the config file on disk is not in force, until a valid one is applied.
    pub fn config_error(&self) -> Option<String> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone()
    }

    fn lock_accounts(&self) -> MutexGuard<'_, BTreeMap<String, Arc<AccountSlot>>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_sessions(&self) -> MutexGuard<'_, BTreeMap<SessionKey, Arc<SessionSlot>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn all_slots(&self) -> Vec<Arc<AccountSlot>> {
        self.lock_accounts().values().cloned().collect()
    }

    /// The accounts that sign in through `session`.
    fn slots_of(&self, session: &Arc<SessionSlot>) -> Vec<Arc<AccountSlot>> {
        self.lock_accounts()
            .values()
            .filter(|a| Arc::ptr_eq(&a.session, session))
            .cloned()
            .collect()
    }

    fn slot(&self, name: &str) -> Result<Arc<AccountSlot>, WireError> {
        let accounts = self.lock_accounts();
        if let Some(slot) = accounts.get(name) {
            return Ok(slot.clone());
        }
        let path = self.options.config_path.display();
        let message = if accounts.is_empty() {
            format!(
                "unknown account `{name}`: no accounts are configured; add [accounts.{name}] to {path}"
            )
        } else {
            let known: Vec<&str> = accounts.keys().map(String::as_str).collect();
            format!(
                "unknown account `{name}`; configured accounts: {} (in {path})",
                known.join(", ")
            )
        };
        Err(WireError::new(ErrorCode::UnknownAccount, message))
    }

    /// `samlctl password forget`: removes the account's saved password from the keyring, and
    /// says whether there was one. Unattended logins stop trying the keyring for it.
    pub async fn forget_password(&self, account: &str) -> Result<bool, WireError> {
        let slot = self.slot(account)?;
        let store = self.options.password_store.as_ref();
        let removed =
            crate::keyring::forget(store, &slot.account.name, &slot.account.username).await?;
        slot.data().saved_password = Some(false);
        Ok(removed)
    }

    /// `samlctl login`: whether the account signs in through a browser, and which browser
    /// and URL to use when it does.
    pub fn browser_plan(&self, account: &str) -> Result<samld_proto::BrowserPlan, WireError> {
        let slot = self.slot(account)?;
        let account = &slot.account;
        Ok(samld_proto::BrowserPlan {
            account: account.name.clone(),
            url: account.url.clone(),
            login: account.login.as_str().to_owned(),
            browser: account.browser.clone(),
            browser_args: account.browser_args.clone(),
        })
    }

    /// `samlctl roles`: the roles of the last assertion.
    pub fn roles(&self, account: &str) -> Result<Vec<RoleInfo>, WireError> {
        let slot = self.slot(account)?;
        let data = slot.data();
        if data.roles.is_empty() {
            return Err(not_logged_in(&slot.account));
        }
        Ok(status::role_infos(&slot.account, &data.roles))
    }

    /// `samlctl logout`: forgets every credential of the account and keeps it logged out
    /// until a person logs in again; a flight still running stores nothing. The shared IdP
    /// session is forgotten too once no account of that user is still logged in (so
    /// `logout` without an account signs the user out of JumpCloud everywhere).
    pub fn logout(&self, account: Option<&str>) -> Result<Vec<String>, WireError> {
        let slots: Vec<Arc<AccountSlot>> = match account {
            Some(name) => vec![self.slot(name)?],
            None => self.all_slots(),
        };
        let mut names = Vec::new();
        for slot in &slots {
            let mut data = slot.data();
            let flight = data.flight.take();
            let generation = data.generation.wrapping_add(1);
            *data = AccountData {
                phase: Phase::LoggedOut,
                generation,
                max_duration: std::mem::take(&mut data.max_duration),
                saved_password: data.saved_password,
                // Still the account's trip: a config change that replaces the account must
                // be able to abort it, or it runs beside the new account's own.
                trip_task: data.trip_task.take(),
                ..AccountData::default()
            };
            // A flight still running finds the generation moved when it finishes.
            data.flight = flight;
            names.push(slot.account.name.clone());
            tracing::info!(account = %slot.account.name, "logged out");
            self.audit
                .record(Record::new(AuditKind::Logout, Some(&slot.account.name)));
        }
        // The shared IdP session goes with the last account signed in through it: an account
        // never logged in (idle) does not keep it alive, or logging out of the only account
        // in use would leave a session that signs the next `samlctl login` in unasked.
        for slot in &slots {
            let sharing = self.slots_of(&slot.session);
            let still_used = sharing.iter().any(|other| {
                let data = other.data();
                data.phase != Phase::LoggedOut
                    && (data.phase != Phase::Idle
                        || !data.creds.is_empty()
                        || data.flight.is_some())
            });
            if !still_used {
                // An idle account could still sign in by itself: it must keep seeing a
                // refusal that waits for a person.
                let may_sign_in = sharing
                    .iter()
                    .any(|other| other.data().phase != Phase::LoggedOut);
                slot.idp.forget_session();
                slot.session.data().forget(may_sign_in);
                tracing::info!(session = %slot.session.key, "IdP session forgotten");
            }
        }
        self.schedule_changed.notify_one();
        Ok(names)
    }

    /// `samld-helper`: credentials for one role, from memory when they are fresh.
    ///
    /// With a `channel` (a helper that has a terminal), an account that needs a login is
    /// logged in through it; concurrent callers wait for that one login.
    pub async fn get_credentials(
        self: &Arc<Self>,
        account: &str,
        role: Option<&str>,
        channel: Option<&mut dyn ClientChannel>,
    ) -> Result<Credentials, WireError> {
        self.get_credentials_traced(account, role, channel)
            .await
            .map(|(creds, _)| creds)
    }

    /// [`Manager::get_credentials`], and where the credentials came from, for the audit:
    /// memory when they were held before the request (fresh, or still valid after a refresh
    /// that failed or was slow), a login when one ran or was joined first, else a refresh.
    pub async fn get_credentials_traced(
        self: &Arc<Self>,
        account: &str,
        role: Option<&str>,
        mut channel: Option<&mut dyn ClientChannel>,
    ) -> Result<(Credentials, CredentialSource), WireError> {
        let slot = self.slot(account)?;
        let mut last_flight: Option<FlightResult> = None;
        // What the request waited for, if anything: what the credentials found after it
        // came from.
        let mut waited: Option<CredentialSource> = None;
        // Each pass either answers or waits for one flight (or one terminal login); four
        // passes cover "a flight for other roles", "a login", then "one for ours". Together
        // they wait at most `login_wait`, as one flight would: the caller was promised that.
        let deadline = tokio::time::Instant::now()
            .checked_add(slot.account.login_wait)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        for _ in 0..4 {
            let now = self.clock.now();
            let (stale, blocked, trip) = {
                let mut data = slot.data();
                let stale = match resolve_role(&slot.account, &data.roles, role) {
                    Ok(Some(arn)) => {
                        if let Some(refused) = data.refused.get(&arn) {
                            return Err(refused_error(&slot.account, refused));
                        }
                        match data.creds.get(&arn) {
                            // Fresh, unless STS handed them out already (nearly) dead.
                            Some(held) if now < held.refresh_at && usable(held, now) => {
                                let answer = wire_credentials(&slot.account, &arn, held);
                                data.wanted.insert(arn);
                                return Ok((answer, waited.unwrap_or(CredentialSource::Memory)));
                            }
                            Some(held) if usable(held, now) => Some((arn, held.clone())),
                            Some(held)
                                if now < policy::add(held.obtained_at, policy::REFRESH_FLOOR) =>
                            {
                                // STS handed out credentials that died at once: asking again
                                // this soon would be a loop.
                                return Err(short_lived_error(&slot.account, &arn, held));
                            }
                            _ => None,
                        }
                    }
                    Ok(None) => None,
                    // The assertion we hold does not offer that role; a fresh one might.
                    Err(e) if last_flight.is_some() => return Err(e),
                    Err(_) => None,
                };
                let blocked = self.why_no_trip(&slot, &data, now);
                let joined = match &data.flight {
                    Some((FlightKind::Login, _)) => CredentialSource::Login,
                    _ => CredentialSource::Refresh,
                };
                let trip = match (&blocked, &last_flight) {
                    (None, None | Some(Ok(()))) => Some(self.start_trip_locked(
                        &slot,
                        &mut data,
                        role.map(str::to_owned),
                        false,
                    )),
                    _ => None,
                };
                if trip.is_some() && waited != Some(CredentialSource::Login) {
                    waited = Some(joined);
                }
                (stale, blocked, trip)
            };
            if let Some(blocked) = blocked {
                let needs_user =
                    matches!(blocked.code, ErrorCode::NotLoggedIn | ErrorCode::NeedsLogin);
                if needs_user && let Some(channel) = channel.take() {
                    // The helper's terminal stands in for `samlctl login`.
                    self.login(account, LoginSecrets::default(), false, Some(channel))
                        .await?;
                    waited = Some(CredentialSource::Login);
                    continue;
                }
                return match (stale, last_flight) {
                    (Some((arn, held)), _) => Ok((
                        wire_credentials(&slot.account, &arn, &held),
                        CredentialSource::Memory,
                    )),
                    // The attempt just made says best what went wrong.
                    (None, Some(Err(e))) => Err(e),
                    (None, _) => Err(blocked),
                };
            }
            let Some(rx) = trip else {
                // The trip already made failed: answer with what is still valid, or why not.
                return match (stale, last_flight) {
                    (Some((arn, held)), _) => Ok((
                        wire_credentials(&slot.account, &arn, &held),
                        CredentialSource::Memory,
                    )),
                    (None, Some(Err(e))) => Err(e),
                    (None, _) => Err(WireError::new(
                        ErrorCode::Internal,
                        format!("no way to obtain credentials for {account}"),
                    )),
                };
            };
            let wait = if stale.is_some() {
                self.options.fresh_wait
            } else {
                slot.account.login_wait
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = wait_flight_for(rx, wait.min(left), wait, &slot.account.name).await;
            if let (Err(_), Some((arn, held))) = (&outcome, &stale) {
                // Refresh failed or is slow: the old credentials are still valid.
                if usable(held, self.clock.now()) {
                    return Ok((
                        wire_credentials(&slot.account, arn, held),
                        CredentialSource::Memory,
                    ));
                }
            }
            last_flight = Some(outcome);
        }
        let data = slot.data();
        match resolve_role(&slot.account, &data.roles, role) {
            Err(e) => Err(e),
            Ok(_) => Err(WireError::new(
                ErrorCode::Internal,
                format!(
                    "credentials for {} could not be obtained; see `samlctl status {}`",
                    slot.account.name, slot.account.name
                ),
            )),
        }
    }

    /// Why a request may not make a trip by itself now, if it may not: a logout, a refusal,
    /// a failure still backing off, or an IdP session that only a person can restore. A burst
    /// of callers then gets the answer at once instead of a trip each.
    fn why_no_trip(
        &self,
        slot: &AccountSlot,
        data: &AccountData,
        now: OffsetDateTime,
    ) -> Option<WireError> {
        let account = &slot.account;
        match data.phase {
            Phase::LoggedOut => return Some(not_logged_in(account)),
            Phase::Refused => {
                return Some(match &data.last_error {
                    Some(last) => refused_error(account, last),
                    None => not_logged_in(account),
                });
            }
            _ => {}
        }
        if data.flight.is_some() {
            return None;
        }
        if let Phase::Backoff { retry_at, .. } = data.phase
            && retry_at > now
            && let Some(last) = &data.last_error
        {
            return Some(WireError::new(
                last.code,
                format!("{} (samld retries at {})", last.message, rfc3339(retry_at)),
            ));
        }
        let session = slot.session.data();
        if session.login.is_some() || session.phase == SessionPhase::Live {
            return None;
        }
        match &session.phase {
            SessionPhase::NeedsPerson { reason } => Some(needs_person(account, reason)),
            phase => {
                if phase.may_login_unattended(now, &session.unattended_logins)
                    && self.can_login_unattended(account, data)
                {
                    return None;
                }
                if let Some(at) = phase.next_unattended_at(now, &session.unattended_logins)
                    && self.can_login_unattended(account, data)
                {
                    let why = data
                        .last_error
                        .as_ref()
                        .map(|e| e.message.clone())
                        .unwrap_or_else(|| "the JumpCloud session has ended".to_owned());
                    return Some(WireError::new(
                        ErrorCode::NeedsLogin,
                        format!(
                            "{why} (samld signs in again at {}; or run: {})",
                            rfc3339(at),
                            account.login_command()
                        ),
                    ));
                }
                Some(if data.creds.is_empty() && session.times.is_none() {
                    not_logged_in(account)
                } else {
                    session_ended(account)
                })
            }
        }
    }

    /// Whether samld may log this account in with nobody at the keyboard: a password it can
    /// get by itself and a second factor that needs no typing (push, or `mfa_command`).
    fn can_login_unattended(&self, account: &Account, data: &AccountData) -> bool {
        if account.login == LoginMethod::Browser {
            // Only the person, in the browser, signs such an account in.
            return false;
        }
        let password = account.password_command.is_some()
            || (self.options.password_store.as_ref().is_some()
                && data.saved_password != Some(false));
        let second_factor = match account.mfa {
            MfaMode::Push | MfaMode::None | MfaMode::Auto => true,
            MfaMode::Totp => account.mfa_command.is_some(),
            MfaMode::Webauthn => false,
        };
        password && second_factor
    }

    /// A person acted on this account (`login`, `refresh`): what stopped unattended attempts
    /// no longer applies, for the account and for its IdP session.
    fn person_acts(&self, slot: &AccountSlot) {
        {
            let mut data = slot.data();
            if matches!(
                data.phase,
                Phase::LoggedOut | Phase::Refused | Phase::Backoff { .. } | Phase::AwaitingSession
            ) {
                data.phase = Phase::Idle;
            }
            data.refused.clear();
        }
        slot.session.data().person_acted();
    }

    /// `samlctl refresh`: fresh credentials for every role in use, now. A person asked, so
    /// refusals and backoffs are set aside for this one trip.
    pub async fn refresh(self: &Arc<Self>, account: &str) -> Result<Vec<RoleStatus>, WireError> {
        let slot = self.slot(account)?;
        {
            let data = slot.data();
            let never = data.phase == Phase::Idle
                && data.creds.is_empty()
                && slot.session.data().phase != SessionPhase::Live;
            if data.phase == Phase::LoggedOut || never {
                return Err(not_logged_in(&slot.account));
            }
        }
        self.person_acts(&slot);
        // A refresh already running may have started before the user asked; wait for it and
        // then run one of our own so the answer is really fresh.
        let running = slot.data().flight.as_ref().map(|(_, rx)| rx.clone());
        if let Some(rx) = running {
            let _ = wait_flight(rx, slot.account.login_wait, &slot.account.name).await;
        }
        let rx = self.start_trip(&slot, None, true);
        let outcome = wait_flight(rx, slot.account.login_wait, &slot.account.name).await;
        self.audit
            .record(Record::new(AuditKind::Refresh, Some(&slot.account.name)).outcome(&outcome));
        outcome?;
        let now = self.clock.now();
        let data = slot.data();
        Ok(status::role_statuses(
            &slot.account,
            &data,
            &self.audit,
            now,
        ))
    }

    /// `samlctl login`: reuses the IdP session when it lives (no secrets needed), otherwise
    /// logs in with a password and MFA obtained through `channel`. It runs at once, whatever
    /// backoff or refusal stood.
    pub async fn login(
        self: &Arc<Self>,
        account: &str,
        secrets: LoginSecrets,
        force: bool,
        channel: Option<&mut dyn ClientChannel>,
    ) -> Result<LoginOutcome, WireError> {
        let slot = self.slot(account)?;
        let deadline = tokio::time::Instant::now()
            .checked_add(slot.account.login_wait)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        // Become the account's only flight; wait out any other one first.
        let (tx, guard) = loop {
            let waiting = {
                let mut data = slot.data();
                match &data.flight {
                    Some((_, rx)) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        data.flight = Some((FlightKind::Login, rx));
                        let guard = FlightGuard {
                            slot: slot.clone(),
                            manager: self.clone(),
                        };
                        break (tx, guard);
                    }
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = wait_flight(waiting, left, &slot.account.name).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(WireError::new(
                    ErrorCode::Timeout,
                    format!("another login for {account} is still running; try again shortly"),
                ));
            }
        };
        self.person_acts(&slot);
        // A new password is being saved: do not read the old one back.
        let passwords = (!secrets.save_password)
            .then(|| self.options.password_store.as_ref().cloned())
            .flatten();
        let force = force || secrets.save_password || secrets.browser.is_some();
        let reuse_only = secrets.reuse_only;
        let mut sources = SecretSources::new(
            &slot.account,
            secrets,
            channel,
            self.options.command_timeout,
            passwords,
        );
        let result = self
            .run_trip(&slot, None, Some((&mut sources, force)), true)
            .await;
        drop(guard);
        let _ = tx.send(Some(result.as_ref().map(|_| ()).map_err(Clone::clone)));
        // samlctl asks to reuse the session before it opens a browser: "none to reuse" is
        // the answer to that question, not a failed login, and the browser login follows.
        let nothing_to_reuse =
            reuse_only && matches!(&result, Err(e) if e.code == ErrorCode::NeedsLogin);
        if !nothing_to_reuse {
            self.audit
                .record(Record::new(AuditKind::Login, Some(&slot.account.name)).outcome(&result));
        }
        let reused = result?;
        if let Some(password) = sources.to_save.take() {
            let message = self.save_password(&slot, password).await;
            sources.tell(&message).await;
        }
        let data = slot.data();
        Ok(LoginOutcome {
            account: slot.account.name.clone(),
            // A `provider = "saml"` account has no username: it is whom it signed in as.
            username: slot
                .idp
                .identity()
                .unwrap_or_else(|| slot.account.username.clone()),
            reused_session: reused,
            roles: status::role_infos(&slot.account, &data.roles),
        })
    }

    /// Saves an accepted password; the message says what happened, for the user.
    async fn save_password(&self, slot: &AccountSlot, password: samld_proto::Secret) -> String {
        let Some(store) = self.options.password_store.as_ref() else {
            return "Logged in, but the password was not saved: this samld has no keyring".into();
        };
        let (name, username) = (slot.account.name.clone(), slot.account.username.clone());
        match crate::keyring::run(store, move |s| s.set(&name, &username, &password)).await {
            Ok(()) => {
                slot.data().saved_password = Some(true);
                "Saved the password in the OS keyring; samld can now log in again by itself.".into()
            }
            Err(e) => format!("Logged in, but the password was not saved: {e}"),
        }
    }

    /// Joins the running flight of an account, or starts a trip in its own task so that it
    /// completes even when the request that started it goes away.
    fn start_trip(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        extra_role: Option<String>,
        renew_all: bool,
    ) -> FlightWatch {
        let mut data = slot.data();
        self.start_trip_locked(slot, &mut data, extra_role, renew_all)
    }

    /// [`Manager::start_trip`] for a caller that already holds the account's lock, so that
    /// deciding a trip is needed and starting (or joining) it happen atomically: otherwise a
    /// flight could finish in between and a second, needless one start.
    fn start_trip_locked(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        data: &mut AccountData,
        extra_role: Option<String>,
        renew_all: bool,
    ) -> FlightWatch {
        if let Some((_, rx)) = &data.flight {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        data.flight = Some((FlightKind::Refresh, rx.clone()));
        let manager = self.clone();
        let slot = slot.clone();
        let task = tokio::spawn(async move {
            let guard = FlightGuard {
                slot: slot.clone(),
                manager: manager.clone(),
            };
            let result = manager.run_trip(&slot, extra_role, None, renew_all).await;
            drop(guard);
            // `renew_all` is `samlctl refresh`, which records its own event. No role: one
            // trip renews every role due.
            if !renew_all {
                let record = Record::new(AuditKind::Unattended, Some(&slot.account.name));
                manager.audit.record(record.outcome(&result));
            }
            let _ = tx.send(Some(result.map(|_| ())));
        });
        data.trip_task = Some(task.abort_handle());
        rx
    }

    /// Tells the user an account needs them: always in the log and `samlctl status`, and by
    /// a desktop notification where the account allows it.
    fn announce_needs_login(&self, account: &Account, reason: &str) {
        tracing::warn!(account = %account.name, "needs login: {reason}");
        if account.notifications
            && let Some(notify) = self.options.notify_user.as_ref()
        {
            notify(
                &format!("samld: {} needs you to log in", account.name),
                &format!("{reason}\nRun: {}", account.login_command()),
            );
        }
    }

    /// Waits until something may have moved a deadline.
    pub async fn schedule_changed(&self) {
        self.schedule_changed.notified().await
    }
}

/// Clears an account's flight marker however the flight ends (even if its task is
/// cancelled), so later requests never wait on a flight that no longer exists; then wakes
/// the scheduler, which skips accounts with a flight running: woken only before the marker
/// is gone (it may run on another thread meanwhile), it would never look at them again.
struct FlightGuard {
    slot: Arc<AccountSlot>,
    manager: Arc<Manager>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.slot.data().flight = None;
        self.manager.schedule_changed.notify_one();
    }
}

async fn wait_flight(rx: FlightWatch, wait: Duration, account: &str) -> FlightResult {
    wait_flight_for(rx, wait, wait, account).await
}

/// [`wait_flight`] for at most `limit`, what is left of a longer `wait` that the error names:
/// the caller was promised `wait` in all, not per flight.
async fn wait_flight_for(
    mut rx: FlightWatch,
    limit: Duration,
    wait: Duration,
    account: &str,
) -> FlightResult {
    match tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await {
        Ok(Ok(result)) => result.clone().unwrap_or(Ok(())),
        Ok(Err(_)) => Err(WireError::new(
            ErrorCode::Internal,
            format!("the login or refresh for {account} was interrupted; try again"),
        )),
        Err(_) => Err(WireError::new(
            ErrorCode::Timeout,
            format!(
                "a login or refresh for {account} is taking longer than {}s (waiting for MFA?); see `samlctl status {account}`",
                wait.as_secs()
            ),
        )),
    }
}

/// [`saml::resolve_role`] for `account`, failing the way the daemon answers a request.
fn resolve_role(
    account: &Account,
    roles: &[RolePair],
    asked: Option<&str>,
) -> Result<Option<String>, WireError> {
    saml::resolve_role(roles, asked, account.role.as_deref())
        .map_err(|e| WireError::new(ErrorCode::UnknownRole, format!("{}: {e}", account.name)))
}

fn usable(held: &HeldCredentials, now: OffsetDateTime) -> bool {
    let life = held.creds.expiration - held.obtained_at;
    // Credentials that arrived already expired have a negative life: without the floor at
    // zero their margin would be negative too, and once the clock is set back they would
    // be served for a few seconds after they died.
    let margin = (life / 4_i32).clamp(time::Duration::ZERO, MIN_REMAINING);
    held.creds.expiration - now > margin
}

fn wire_credentials(account: &Account, role_arn: &str, held: &HeldCredentials) -> Credentials {
    Credentials {
        account: account.name.clone(),
        role_arn: role_arn.to_string(),
        access_key_id: held.creds.access_key_id.clone(),
        secret_access_key: held.creds.secret_access_key.clone(),
        session_token: held.creds.session_token.clone(),
        expiration: rfc3339(held.creds.expiration),
        region: account.region.clone(),
    }
}

fn not_logged_in(account: &Account) -> WireError {
    let name = &account.name;
    WireError::new(
        ErrorCode::NotLoggedIn,
        format!("{name} is not logged in; run: {}", account.login_command()),
    )
}

fn session_ended(account: &Account) -> WireError {
    let (name, idp) = (&account.name, account.idp_name());
    let mut message = format!(
        "the {idp} session for {name} has ended; run: {}",
        account.login_command()
    );
    if account.login == LoginMethod::Browser {
        message.push_str(BROWSER_MAY_REMEMBER);
    }
    WireError::new(ErrorCode::NeedsLogin, message)
}

/// Said whenever a browser sign-in is asked for: the profile keeps the IdP's own session.
const BROWSER_MAY_REMEMBER: &str = " (the browser profile may still be signed in to the IdP, \
     in which case the browser finishes by itself with no typing)";

/// A person's login for an account that signs in only through a browser, asked for where
/// no browser can be opened (the helper's terminal, an API login).
fn browser_login_needed(account: &Account) -> WireError {
    WireError::new(
        ErrorCode::NeedsLogin,
        format!(
            "{} signs in through a browser (login = \"browser\"); run: {}",
            account.name,
            account.login_command()
        ),
    )
}

/// An IdP session that only a person can restore: what happened, and what to run.
fn needs_person(account: &Account, reason: &str) -> WireError {
    let name = &account.name;
    WireError::new(
        ErrorCode::NeedsLogin,
        format!(
            "{name} needs you to log in; samld stopped signing in by itself after: {reason} Run: {}",
            account.login_command()
        ),
    )
}

fn refused_error(account: &Account, last: &samld_proto::ErrorInfo) -> WireError {
    let name = &account.name;
    WireError::new(
        last.code,
        format!(
            "{} (samld does not retry this by itself; once it is fixed, run: samlctl refresh {name})",
            last.message
        ),
    )
}

fn short_lived_error(account: &Account, role: &str, held: &HeldCredentials) -> WireError {
    let life = (held.creds.expiration - held.obtained_at).whole_seconds();
    WireError::new(
        ErrorCode::StsError,
        format!(
            "STS issued credentials for {role} ({}) that expired {life}s after they were obtained; samld asks again at {} (check this machine's clock and any proxy)",
            account.name,
            rfc3339(policy::add(held.obtained_at, policy::REFRESH_FLOOR))
        ),
    )
}

/// Stands in for an account whose provider could not be built, so that its requests get
/// the reason instead of the daemon refusing the whole config.
struct BrokenProvider(IdpError);

impl IdentityProvider for BrokenProvider {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<samld_proto::Secret, IdpError>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }

    fn login<'a>(
        &'a self,
        _io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<samld_proto::Secret, IdpError>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }

    fn forget_session(&self) {}
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use samld_proto::Secret;

    use crate::sts::AwsCredentials;

    fn held(obtained_at: OffsetDateTime, life_secs: i64) -> HeldCredentials {
        HeldCredentials {
            creds: AwsCredentials {
                access_key_id: "ASIAEXAMPLE".to_owned(),
                secret_access_key: Secret::new("secret"),
                session_token: Secret::new("token"),
                expiration: obtained_at + time::Duration::seconds(life_secs),
                assumed_role_arn: None,
            },
            obtained_at,
            refresh_at: obtained_at,
            short_lived: false,
        }
    }

    #[test]
    fn credentials_are_handed_out_only_with_a_margin_before_they_expire() {
        let at = datetime!(2026-12-01 10:00 UTC);
        let hour = held(at, 3600);
        assert!(usable(&hour, at + time::Duration::seconds(3539)));
        assert!(!usable(&hour, at + time::Duration::seconds(3540)));
        // A short session keeps a quarter of its life as the margin.
        let short = held(at, 40);
        assert!(usable(&short, at + time::Duration::seconds(29)));
        assert!(!usable(&short, at + time::Duration::seconds(30)));
    }

    #[test]
    fn credentials_that_arrived_expired_are_never_handed_out_even_after_the_clock_goes_back() {
        let at = datetime!(2026-12-01 10:06:49 UTC);
        let dead = held(at, -30);
        assert!(!usable(&dead, at));
        // The clock set back 91 s: by the wall they now have 61 s left, and are served
        // only while they really do.
        assert!(usable(&dead, at - time::Duration::seconds(91)));
        assert!(!usable(&dead, at - time::Duration::seconds(30)));
        assert!(!usable(&dead, at - time::Duration::seconds(28)));
    }
}
