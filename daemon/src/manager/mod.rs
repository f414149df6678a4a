//! The session manager: the accounts and IdP sessions as explicit state machines, and the
//! operations behind every request the socket server passes in.
//!
//! - `state.rs`: what is held per account (`AccountSlot`) and per IdP session
//!   (`SessionSlot`, one per user and console, shared by that user's accounts);
//! - [`policy`]: the one pure function that decides what happens after a trip, tested as a
//!   table, and the rules it enforces;
//! - `gate.rs`: the one pure function that decides whether a trip may run now and for whom
//!   (a person's login, a helper on a terminal, nobody), and the wording of every "why not";
//! - `trip.rs`: one trip to the IdP and STS (a *flight*: at most one per account, and at most
//!   one login per IdP session), returning typed outcomes;
//! - `schedule.rs`: the background refresher;
//! - `secrets.rs`: where a login's password and code come from;
//! - `sign_in.rs`: what a person starts and ends (`login`, `logout`, `refresh`);
//! - `status.rs`: the state as `samlctl status` shows it.
//!
//! Every request that needs a trip while one runs joins it and shares its outcome instead of
//! starting another login.

mod gate;
pub mod policy;
mod schedule;
mod secrets;
mod sign_in;
mod state;
mod status;
mod trip;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use samld_config::{Account, Config, LoginMethod, MfaMode, SessionKey};
use samld_proto::{
    AuditKind, CredentialSource, Credentials, ErrorCode, LoginIntent, PasswordLogin, RoleInfo,
    WireError,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use self::gate::{AccountView, Asker, Pass, SessionView, WhyNot, explain};
use self::policy::{Phase, SessionPhase};
pub use self::secrets::ClientChannel;
use self::state::{
    AccountData, AccountSlot, FlightKind, FlightResult, FlightWatch, HeldCredentials, SessionSlot,
};
use crate::audit::{Audit, Record};
use crate::clock::{Clock, rfc3339};
use crate::future::BoxFuture;
use crate::idp::{IdentityProvider, IdpError, IdpSession, LoginInteraction};
use crate::keyring::PasswordStore;
use crate::saml::{self, RolePair};
use crate::sts::StsApi;

/// Credentials closer to expiry than this (or than a quarter of their life, for very short
/// sessions) are never handed out: the caller could not even finish its first API call.
const MIN_REMAINING: time::Duration = time::Duration::seconds(60);

/// Builds the identity provider for an account (JumpCloud in production, fakes in tests).
/// The manager owns each IdP session: it asks for one handle per [`Account::session_key`]
/// and builds every account with that key on it, so that one login serves all of them and
/// the cookies end with the manager's session slot.
pub trait ProviderFactory: Send + Sync {
    /// A new, signed-out session for the accounts with this account's session key.
    fn new_session(&self, account: &Account) -> IdpSession;

    /// A provider for this account's settings on `session`, made by
    /// [`ProviderFactory::new_session`] for its key. Called again when the settings change.
    fn provider(
        &self,
        account: &Account,
        session: &IdpSession,
    ) -> Result<Arc<dyn IdentityProvider>, IdpError>;
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
    /// their credentials; changed accounts start over (their IdP session drops a backoff,
    /// but not a refusal, which waits for the person's login), logged out if they were;
    /// removed ones are forgotten. An IdP session lives while an account uses it, and is
    /// signed out with the last one.
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
            let key = account.session_key();
            let session = sessions
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(SessionSlot::new(key, self.providers.new_session(account)))
                })
                .clone();
            let idp = match self.providers.provider(account, &session.idp) {
                Ok(idp) => idp,
                Err(e) => {
                    tracing::error!(account = %name, error = %e, "account cannot be used");
                    Arc::new(BrokenProvider(e)) as Arc<dyn IdentityProvider>
                }
            };
            let slot = AccountSlot::new(account.clone(), idp, session.clone());
            if let Some(old) = accounts.get(name) {
                tracing::info!(account = %name, "account settings changed; its credentials start over");
                // A new try, but no answer to a refusal: only the person's login is that.
                session.data().retry_now();
                if old.data().phase == Phase::LoggedOut {
                    // Editing an account is no login: only a person's login lifts a logout.
                    slot.data().phase = Phase::LoggedOut;
                }
            } else {
                tracing::info!(account = %name, "account added");
            }
            next.insert(name.clone(), Arc::new(slot));
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
        for (key, session) in sessions.iter() {
            if next.values().any(|a| Arc::ptr_eq(&a.session, session)) {
                continue;
            }
            // No account uses it any more: dropped with its slot below, and forgotten now
            // for whatever still holds it (a request or trip of a removed account), so
            // that nothing can sign in with it. The next account of that user gets a new
            // slot and a new session, and needs its password.
            session.idp.forget();
            session.data().forget(false);
            tracing::info!(session = %key, "IdP session signed out: no account uses it");
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
                let stale =
                    match held_for_role(&slot, &mut data, role, last_flight.is_some(), waited, now)
                    {
                        ControlFlow::Break(answer) => return answer,
                        ControlFlow::Continue(stale) => stale,
                    };
                let asker = match channel {
                    Some(_) => Asker::TerminalHelper,
                    None => Asker::Unattended,
                };
                let blocked = self.gate(&slot, &data, asker, now);
                let joined = match &data.flight {
                    Some((FlightKind::Login, _)) => CredentialSource::Login,
                    _ => CredentialSource::Refresh,
                };
                let trip = match (&blocked, &last_flight) {
                    (Ok(Pass::Trip), None | Some(Ok(()))) => Some(self.start_trip_locked(
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
            if blocked == Ok(Pass::SignIn)
                && let Some(channel) = channel.take()
            {
                // The person at the helper's terminal types what the sign-in needs.
                let intent = LoginIntent::Password(PasswordLogin::default());
                self.login_as(account, intent, Some(channel), Asker::TerminalHelper)
                    .await?;
                waited = Some(CredentialSource::Login);
                continue;
            }
            if let Err(why) = blocked {
                return stale_or(&slot.account, stale, last_flight, || {
                    explain(&slot.account, &why)
                });
            }
            let Some(rx) = trip else {
                // The trip already made failed: answer with what is still valid, or why not.
                return stale_or(&slot.account, stale, last_flight, || {
                    WireError::new(
                        ErrorCode::Internal,
                        format!("no way to obtain credentials for {account}"),
                    )
                });
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

    /// The gate's answer for `asker` on this account now, the account's lock held by the
    /// caller. A burst of callers that may not trip gets the answer at once instead of a
    /// trip each.
    fn gate(
        &self,
        slot: &AccountSlot,
        data: &AccountData,
        asker: Asker,
        now: OffsetDateTime,
    ) -> Result<Pass, WhyNot> {
        let account = self.account_view(&slot.account, data, data.flight.is_some());
        let session = slot.session.data();
        gate::gate(&account, &SessionView::of(&session), asker, now)
    }

    /// The account as the gate sees it; `flight_running` false for the flight asking.
    fn account_view<'a>(
        &self,
        account: &Account,
        data: &'a AccountData,
        flight_running: bool,
    ) -> AccountView<'a> {
        AccountView {
            phase: data.phase,
            last_error: data.last_error.as_ref(),
            flight_running,
            signs_in_alone: self.can_login_unattended(account, data),
            holds_credentials: !data.creds.is_empty(),
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

    /// A person asked for a refresh: the account's refusals and backoff no longer apply, and
    /// its IdP session drops a backoff. A refusal of the session stays: a refresh is not the
    /// person's decision to be asked again; only their login is, and only one that succeeds
    /// lifts anything (see `sign_in.rs`).
    fn refresh_asked(&self, slot: &AccountSlot) {
        {
            let mut data = slot.data();
            if matches!(
                data.phase,
                Phase::Refused | Phase::Backoff { .. } | Phase::AwaitingSession
            ) {
                data.phase = Phase::Idle;
            }
            data.refused.clear();
        }
        slot.session.data().retry_now();
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
    /// a desktop notification where the account allows it, in the words the helper uses.
    fn announce_needs_login(&self, account: &Account, why: &WhyNot) {
        let reason = explain(account, why).message;
        tracing::warn!(account = %account.name, "needs login: {reason}");
        if account.notifications
            && let Some(notify) = self.options.notify_user.as_ref()
        {
            notify(
                &format!("samld: {} needs you to log in", account.name),
                &reason,
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

/// What a credentials request answers, and where the credentials came from.
type CredentialsAnswer = Result<(Credentials, CredentialSource), WireError>;

/// A request that can go no further: the credentials still valid, else what the attempt
/// just made says (it says best what went wrong), else `otherwise`.
fn stale_or(
    account: &Account,
    stale: Option<(String, HeldCredentials)>,
    last_flight: Option<FlightResult>,
    otherwise: impl FnOnce() -> WireError,
) -> CredentialsAnswer {
    match (stale, last_flight) {
        (Some((arn, held)), _) => Ok((
            wire_credentials(account, &arn, &held),
            CredentialSource::Memory,
        )),
        (None, Some(Err(e))) => Err(e),
        (None, _) => Err(otherwise()),
    }
}

/// What a credentials request, for one pass, makes of what the account holds for its role:
/// an answer now (fresh credentials, or why the role cannot be had), or the credentials
/// still valid but due, served should no refresh come in time. `after_flight`: a trip just
/// ended, so the roles are those of the assertion it fetched.
fn held_for_role(
    slot: &AccountSlot,
    data: &mut AccountData,
    role: Option<&str>,
    after_flight: bool,
    waited: Option<CredentialSource>,
    now: OffsetDateTime,
) -> ControlFlow<CredentialsAnswer, Option<(String, HeldCredentials)>> {
    let arn = match resolve_role(&slot.account, &data.roles, role) {
        Ok(Some(arn)) => arn,
        Ok(None) => return ControlFlow::Continue(None),
        // The assertion just fetched does not offer that role.
        Err(e) if after_flight => return ControlFlow::Break(Err(e)),
        // Nor does the last one, and while its session lives a trip would fetch
        // the same: answer from it (a new sign-in brings a new assertion).
        Err(e) if slot.session.data().phase == SessionPhase::Live => {
            return ControlFlow::Break(Err(role_not_offered(&slot.account, e)));
        }
        Err(_) => return ControlFlow::Continue(None),
    };
    if let Some(refused) = data.refused.get(&arn) {
        let last = Some(refused.clone());
        return ControlFlow::Break(Err(explain(&slot.account, &WhyNot::Refused { last })));
    }
    match data.creds.get(&arn) {
        // Fresh, unless STS handed them out already (nearly) dead.
        Some(held) if now < held.refresh_at && usable(held, now) => {
            let answer = wire_credentials(&slot.account, &arn, held);
            data.wanted.insert(arn);
            ControlFlow::Break(Ok((answer, waited.unwrap_or(CredentialSource::Memory))))
        }
        Some(held) if usable(held, now) => ControlFlow::Continue(Some((arn, held.clone()))),
        Some(held) if now < policy::add(held.obtained_at, policy::REFRESH_FLOOR) => {
            // STS handed out credentials that died at once: asking again
            // this soon would be a loop.
            ControlFlow::Break(Err(explain(&slot.account, &too_soon(&arn, held))))
        }
        _ => ControlFlow::Continue(None),
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

/// [`resolve_role`]'s error when it came from the assertion held: the role may have been
/// granted since, which only a new assertion shows.
fn role_not_offered(account: &Account, e: WireError) -> WireError {
    WireError::new(
        e.code,
        format!(
            "{} (as of the last sign-in; if it was granted since, run: samlctl refresh {})",
            e.message, account.name
        ),
    )
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

/// The account is not logged in (never, or a logout overtook what it was doing).
fn not_logged_in(account: &Account) -> WireError {
    explain(account, &WhyNot::LoggedOut)
}

/// Why STS's credentials that died at once are not asked for again yet.
fn too_soon(role: &str, held: &HeldCredentials) -> WhyNot {
    WhyNot::TooSoon {
        role: role.to_owned(),
        life_secs: (held.creds.expiration - held.obtained_at).whole_seconds(),
        at: policy::add(held.obtained_at, policy::REFRESH_FLOOR),
    }
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
