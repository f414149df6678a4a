//! The session manager: per-account state, single-flight logins and refreshes, and the
//! answers to every request the socket server passes in.
//!
//! Each account has one [`AccountSlot`]. Its state sits behind a plain mutex that is only
//! held for bookkeeping, never across an await, so the helper's hot path (credentials that
//! are still fresh) is a map lookup. Anything that talks to JumpCloud or STS is a *flight*:
//! at most one per account runs at a time, and every request that needs one while it runs
//! joins it and shares its outcome instead of starting another login.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use samld_config::{Account, Config, MfaMode};
use samld_proto::{
    AccountState, AccountStatus, Credentials, DaemonInfo, ErrorCode, ErrorInfo, LoginOutcome,
    PROTOCOL_VERSION, RoleInfo, RoleStatus, Secret, SecretKind, SessionInfo, StatusReport,
    WireError,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::clock::{Clock, rfc3339};
use crate::idp::{BoxFuture, IdentityProvider, IdpError, LoginInteraction};
use crate::keyring::{self, PasswordStore};
use crate::saml::{self, Assertion, RolePair};
use crate::sts::{AssumeRequest, AwsCredentials, StsApi, StsError, StsTarget, choose_duration};

/// Credentials closer to expiry than this (or than a quarter of their life, for very short
/// sessions) are never handed out: the caller could not even finish its first API call.
const MIN_REMAINING: time::Duration = time::Duration::seconds(60);

/// STS's default session length, which every role accepts; used after a role refused longer.
const SAFE_DURATION_SECS: u32 = 3600;

/// Roles due for refresh within this window ride along with a trip made for another role:
/// one assertion then serves them all.
const BATCH_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Builds the identity provider for an account (JumpCloud in production, fakes in tests).
pub trait ProviderFactory: Send + Sync {
    /// A provider for this account's settings. Called again when the settings change.
    fn provider(&self, account: &Account) -> Result<Arc<dyn IdentityProvider>, IdpError>;
}

/// The client end of a request, for logins that need a secret or have news for the user.
pub trait ClientChannel: Send {
    /// Asks the client for a secret; fails when the client cannot answer.
    fn ask<'a>(
        &'a mut self,
        kind: SecretKind,
        prompt: &'a str,
    ) -> BoxFuture<'a, Result<Secret, IdpError>>;

    /// Shows the user a message.
    fn tell<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()>;
}

/// Tunables of the manager.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The config file in force (shown by `samlctl status`).
    pub config_path: PathBuf,
    /// How long a request for credentials inside their refresh window waits for the refresh
    /// before it falls back to the old, still valid ones.
    pub fresh_wait: Duration,
    /// How long `password_command` and `mfa_command` may run.
    pub command_timeout: Duration,
}

impl DaemonOptions {
    /// Defaults for a config file path.
    pub fn new(config_path: PathBuf) -> Self {
        Self {
            config_path,
            fresh_wait: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
        }
    }
}

type FlightResult = Result<(), WireError>;

/// Shows the user a desktop notification: `(title, body)`.
pub type Notifier = Box<dyn Fn(&str, &str) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlightKind {
    Login,
    Refresh,
}

/// What one account holds.
struct AccountSlot {
    account: Account,
    idp: Arc<dyn IdentityProvider>,
    data: Mutex<AccountData>,
}

impl AccountSlot {
    fn data(&self) -> MutexGuard<'_, AccountData> {
        // A panic while holding this lock would be a bug; the data stays usable regardless.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct AccountData {
    flight: Option<(FlightKind, watch::Receiver<Option<FlightResult>>)>,
    session: Option<SessionTimes>,
    /// Set by `samlctl logout`: nothing logs the account in again until the user does.
    logged_out: bool,
    /// The IdP session ended and no unattended login was possible.
    needs_login: bool,
    roles: Vec<RolePair>,
    creds: BTreeMap<String, HeldCredentials>,
    /// Roles asked for since the login; refreshes keep all of them fresh.
    wanted: BTreeSet<String>,
    /// MaxSessionDuration learnt per role from STS refusals.
    max_duration: HashMap<String, u32>,
    last_error: Option<ErrorInfo>,
    /// Set after a failure that is worth retrying; cleared by a success.
    retry: Option<Retry>,
    /// JumpCloud refused the password an unattended login used: trying it again could lock
    /// the account, so nothing retries until the user logs in.
    password_rejected: bool,
    /// Whether the keyring holds a password for the account: unknown until looked up.
    saved_password: Option<bool>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    next_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy)]
struct SessionTimes {
    established_at: OffsetDateTime,
    last_verified_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
struct HeldCredentials {
    creds: AwsCredentials,
    obtained_at: OffsetDateTime,
    refresh_at: OffsetDateTime,
}

struct ConfigState {
    config: Arc<Config>,
    error: Option<String>,
}

/// The daemon's state and the operations behind every request.
pub struct Daemon {
    clock: Arc<dyn Clock>,
    sts: Arc<dyn StsApi>,
    providers: Arc<dyn ProviderFactory>,
    options: DaemonOptions,
    config: RwLock<ConfigState>,
    accounts: Mutex<BTreeMap<String, Arc<AccountSlot>>>,
    started_at: OffsetDateTime,
    /// Woken whenever a deadline may have moved (new credentials, config change).
    schedule_changed: Notify,
    /// Shows a desktop notification (title, body); none until one is set.
    notifier: std::sync::OnceLock<Notifier>,
    /// Where `samlctl login --save-password` keeps passwords; none until one is set.
    passwords: std::sync::OnceLock<Arc<dyn PasswordStore>>,
}

impl Daemon {
    /// A daemon with a first configuration.
    pub fn new(
        config: Config,
        options: DaemonOptions,
        clock: Arc<dyn Clock>,
        sts: Arc<dyn StsApi>,
        providers: Arc<dyn ProviderFactory>,
    ) -> Arc<Self> {
        let started_at = clock.now();
        let daemon = Arc::new(Self {
            clock,
            sts,
            providers,
            options,
            config: RwLock::new(ConfigState {
                config: Arc::new(Config {
                    accounts: BTreeMap::new(),
                }),
                error: None,
            }),
            accounts: Mutex::new(BTreeMap::new()),
            started_at,
            schedule_changed: Notify::new(),
            notifier: std::sync::OnceLock::new(),
            passwords: std::sync::OnceLock::new(),
        });
        daemon.apply_config(config);
        daemon
    }

    /// Sets how the user is notified when an account needs them (once; later calls are
    /// ignored).
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Sets the password store (the OS keyring) used by `--save-password` and unattended
    /// logins (once; later calls are ignored).
    pub fn set_password_store(&self, store: Arc<dyn PasswordStore>) {
        let _ = self.passwords.set(store);
    }

    /// The options the daemon runs with.
    pub fn options(&self) -> &DaemonOptions {
        &self.options
    }

    /// Puts a new, valid configuration in force. Accounts whose settings did not change keep
    /// their JumpCloud session and credentials; changed accounts start over; removed ones
    /// are forgotten.
    pub fn apply_config(&self, config: Config) {
        let mut accounts = self.lock_accounts();
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
            if accounts.contains_key(name) {
                tracing::info!(account = %name, "account settings changed; its session starts over");
            } else {
                tracing::info!(account = %name, "account added");
            }
            next.insert(
                name.clone(),
                Arc::new(AccountSlot {
                    account: account.clone(),
                    idp,
                    data: Mutex::new(AccountData::default()),
                }),
            );
        }
        for name in accounts.keys().filter(|n| !next.contains_key(*n)) {
            tracing::info!(account = %name, "account removed");
        }
        *accounts = next;
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

    /// `samlctl status`.
    pub fn status(&self, only: Option<&str>) -> Result<StatusReport, WireError> {
        let slots: Vec<Arc<AccountSlot>> = match only {
            Some(name) => vec![self.slot(name)?],
            None => self.lock_accounts().values().cloned().collect(),
        };
        let now = self.clock.now();
        let accounts = slots.iter().map(|slot| account_status(slot, now)).collect();
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
            sessions: Vec::new(),
        })
    }

    /// `samlctl roles`: the roles of the last assertion.
    pub fn roles(&self, account: &str) -> Result<Vec<RoleInfo>, WireError> {
        let slot = self.slot(account)?;
        let data = slot.data();
        if data.roles.is_empty() {
            return Err(not_logged_in(&slot.account, &data));
        }
        Ok(role_infos(&slot.account, &data.roles))
    }

    /// `samlctl password forget ACCOUNT`: removes the password `--save-password` kept in the
    /// keyring for the account (its session and credentials stay); `Ok(false)` when none
    /// was saved. After it, only `password_command` or a person can log the account in.
    pub async fn forget_password(&self, account: &str) -> Result<bool, WireError> {
        let slot = self.slot(account)?;
        let store = self.passwords.get();
        let removed = keyring::forget(store, &slot.account.name, &slot.account.username).await?;
        slot.data().saved_password = Some(false);
        Ok(removed)
    }

    /// `samlctl logout`: forgets the JumpCloud session and every credential, and keeps the
    /// account logged out until the user logs in again.
    pub fn logout(&self, account: Option<&str>) -> Result<Vec<String>, WireError> {
        let slots: Vec<Arc<AccountSlot>> = match account {
            Some(name) => vec![self.slot(name)?],
            None => self.lock_accounts().values().cloned().collect(),
        };
        let mut names = Vec::new();
        for slot in slots {
            slot.idp.forget_session();
            let mut data = slot.data();
            let flight = data.flight.take();
            *data = AccountData {
                logged_out: true,
                max_duration: std::mem::take(&mut data.max_duration),
                ..AccountData::default()
            };
            // A flight still running finds the account logged out when it finishes.
            data.flight = flight;
            names.push(slot.account.name.clone());
            tracing::info!(account = %slot.account.name, "logged out");
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
        mut channel: Option<&mut dyn ClientChannel>,
    ) -> Result<Credentials, WireError> {
        let slot = self.slot(account)?;
        let mut last_flight: Option<FlightResult> = None;
        // Each pass either answers or waits for one flight (or one terminal login); four
        // passes cover "a flight for other roles", "a login", then "one for ours".
        for _ in 0..4 {
            let now = self.clock.now();
            let (stale, blocked, trip) = {
                let mut data = slot.data();
                let stale = match resolve_role(&slot.account, &data.roles, role) {
                    Ok(Some(arn)) => match data.creds.get(&arn) {
                        Some(held) if now < held.refresh_at && !data.logged_out => {
                            let answer = wire_credentials(&slot.account, &arn, held);
                            data.wanted.insert(arn);
                            return Ok(answer);
                        }
                        Some(held) if usable(held, now) && !data.logged_out => {
                            Some((arn, held.clone()))
                        }
                        _ => None,
                    },
                    Ok(None) => None,
                    // The assertion we hold does not offer that role; a fresh one might.
                    Err(e) if last_flight.is_some() => return Err(e),
                    Err(_) => None,
                };
                let blocked = self.why_no_trip(&slot, &data, now);
                let trip = match (&blocked, &last_flight) {
                    (None, None | Some(Ok(()))) => Some(self.start_refresh_locked(
                        &slot,
                        &mut data,
                        role.map(str::to_owned),
                        false,
                    )),
                    _ => None,
                };
                (stale, blocked, trip)
            };
            if let Some(blocked) = blocked {
                let needs_user =
                    matches!(blocked.code, ErrorCode::NotLoggedIn | ErrorCode::NeedsLogin);
                if needs_user && let Some(channel) = channel.take() {
                    // The helper's terminal stands in for `samlctl login`.
                    self.login(account, LoginSecrets::default(), false, Some(channel))
                        .await?;
                    continue;
                }
                return match (stale, last_flight) {
                    (Some((arn, held)), _) => Ok(wire_credentials(&slot.account, &arn, &held)),
                    // The attempt just made says best what went wrong.
                    (None, Some(Err(e))) => Err(e),
                    (None, _) => Err(blocked),
                };
            }
            let Some(rx) = trip else {
                // The trip already made failed: answer with what is still valid, or why not.
                return match (stale, last_flight) {
                    (Some((arn, held)), _) => Ok(wire_credentials(&slot.account, &arn, &held)),
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
            let outcome = wait_flight(rx, wait, &slot.account.name).await;
            if let (Err(_), Some((arn, held))) = (&outcome, &stale) {
                // Refresh failed or is slow: the old credentials are still valid.
                if usable(held, self.clock.now()) {
                    return Ok(wire_credentials(&slot.account, arn, held));
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

    /// Why a trip to JumpCloud would be pointless or unwelcome now, if it would be: no
    /// session and no unattended login, a sticky logout, or a failure still backing off.
    /// A burst of callers then gets the answer at once instead of a trip each.
    fn why_no_trip(
        &self,
        slot: &AccountSlot,
        data: &AccountData,
        now: OffsetDateTime,
    ) -> Option<WireError> {
        if data.logged_out {
            return Some(not_logged_in(&slot.account, data));
        }
        if data.session.is_none() && !self.can_login_unattended(&slot.account, data) {
            return Some(not_logged_in(&slot.account, data));
        }
        if data.flight.is_some() {
            return None;
        }
        match (&data.retry, &data.last_error) {
            (Some(retry), Some(last)) if retry.next_at > now => Some(WireError::new(
                last.code,
                format!(
                    "{} (samld retries at {})",
                    last.message,
                    rfc3339(retry.next_at)
                ),
            )),
            _ => None,
        }
    }

    /// Whether samld may log this account in with nobody at the keyboard: a password it can
    /// get by itself, a second factor that needs no typing (push, or `mfa_command`), and
    /// nothing the user said against it (a logout, a rejected password).
    fn can_login_unattended(&self, account: &Account, data: &AccountData) -> bool {
        if data.logged_out || data.password_rejected {
            return false;
        }
        let password = account.password_command.is_some()
            || (self.passwords.get().is_some() && data.saved_password != Some(false));
        let second_factor = match account.mfa {
            MfaMode::Push | MfaMode::None | MfaMode::Auto => true,
            MfaMode::Totp => account.mfa_command.is_some(),
            MfaMode::Webauthn => false,
        };
        password && second_factor
    }

    /// The password saved in the keyring for an account, if there is a keyring and it has one.
    async fn saved_password(&self, account: &Account) -> Option<Secret> {
        let store = self.passwords.get()?;
        let (name, username) = (account.name.clone(), account.username.clone());
        match keyring::run(store, move |s| s.get(&name, &username)).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "cannot read the saved password");
                None
            }
        }
    }

    async fn forget_saved_password(&self, account: &Account) {
        let Some(store) = self.passwords.get() else {
            return;
        };
        let (name, username) = (account.name.clone(), account.username.clone());
        match keyring::run(store, move |s| s.delete(&name, &username)).await {
            Ok(()) => {
                tracing::warn!(account = %account.name, "JumpCloud refused the saved password; removed it from the keyring")
            }
            Err(e) => {
                tracing::error!(account = %account.name, error = %e, "cannot remove the refused password from the keyring")
            }
        }
    }

    /// Saves an accepted password; the message says what happened, for the user.
    async fn save_password(&self, slot: &AccountSlot, password: Secret) -> String {
        let Some(store) = self.passwords.get() else {
            return "Logged in, but the password was not saved: this samld has no keyring".into();
        };
        let (name, username) = (slot.account.name.clone(), slot.account.username.clone());
        match keyring::run(store, move |s| s.set(&name, &username, &password)).await {
            Ok(()) => {
                slot.data().saved_password = Some(true);
                "Saved the password in the OS keyring; samld can now log in again by itself.".into()
            }
            Err(e) => format!("Logged in, but the password was not saved: {e}"),
        }
    }

    /// Starts every refresh (or retry) that is due, and returns when the next one will be.
    pub fn start_due_refreshes(self: &Arc<Self>) -> Option<OffsetDateTime> {
        let now = self.clock.now();
        let slots: Vec<Arc<AccountSlot>> = self.lock_accounts().values().cloned().collect();
        let mut next: Option<OffsetDateTime> = None;
        for slot in slots {
            let due = {
                let data = slot.data();
                if data.flight.is_some() || data.logged_out {
                    continue;
                }
                let stuck = data.needs_login && !self.can_login_unattended(&slot.account, &data);
                let deadline = match &data.retry {
                    _ if stuck => None,
                    Some(retry) => Some(retry.next_at),
                    None => data.creds.values().map(|h| h.refresh_at).min(),
                };
                match deadline {
                    Some(at) if at <= now => true,
                    Some(at) => {
                        next = Some(next.map_or(at, |n| n.min(at)));
                        false
                    }
                    None => false,
                }
            };
            if due {
                tracing::debug!(account = %slot.account.name, "refresh due");
                drop(self.start_refresh(&slot, None, false));
            }
        }
        next
    }

    /// Keeps every account fresh: sleeps until the next deadline by the wall clock (waking
    /// early on a clock jump or a change), starts what is due, and repeats. No polling.
    pub async fn run_scheduler(self: Arc<Self>) {
        loop {
            // Created before looking, so a change made while we look is not missed.
            let changed = self.schedule_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.start_due_refreshes() {
                Some(at) => {
                    tracing::debug!(next = %rfc3339(at), "scheduler sleeping");
                    tokio::select! {
                        () = self.clock.sleep_until(at) => {}
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// `samlctl refresh`: fresh credentials for every role in use, now.
    pub async fn refresh(self: &Arc<Self>, account: &str) -> Result<Vec<RoleStatus>, WireError> {
        let slot = self.slot(account)?;
        {
            let data = slot.data();
            if data.logged_out || (data.session.is_none() && data.creds.is_empty()) {
                return Err(not_logged_in(&slot.account, &data));
            }
        }
        // A refresh already running may have started before the user asked; wait for it and
        // then run one of our own so the answer is really fresh.
        let running = slot.data().flight.as_ref().map(|(_, rx)| rx.clone());
        if let Some(rx) = running {
            let _ = wait_flight(rx, slot.account.login_wait, &slot.account.name).await;
        }
        let rx = self.start_refresh(&slot, None, true);
        wait_flight(rx, slot.account.login_wait, &slot.account.name).await?;
        let now = self.clock.now();
        let data = slot.data();
        Ok(role_statuses(&slot.account, &data, now))
    }

    /// `samlctl login`: reuses the JumpCloud session when it lives (no secrets needed),
    /// otherwise logs in with a password and MFA obtained through `channel`.
    pub async fn login(
        self: &Arc<Self>,
        account: &str,
        secrets: LoginSecrets,
        force: bool,
        channel: Option<&mut dyn ClientChannel>,
    ) -> Result<LoginOutcome, WireError> {
        let slot = self.slot(account)?;
        let deadline = tokio::time::Instant::now() + slot.account.login_wait;
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
                            daemon: self.clone(),
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
        {
            // The user is here: what stopped unattended attempts no longer applies.
            let mut data = slot.data();
            data.logged_out = false;
            data.password_rejected = false;
            data.retry = None;
        }
        // A new password is being saved: do not read the old one back.
        let passwords = (!secrets.save_password)
            .then(|| self.passwords.get().cloned())
            .flatten();
        let force = force || secrets.save_password;
        let mut interaction = SecretSources {
            account: slot.account.clone(),
            given: secrets,
            channel,
            command_timeout: self.options.command_timeout,
            passwords,
            to_save: None,
        };
        let result = self
            .run_flight(&slot, None, Some((&mut interaction, force)), true)
            .await;
        drop(guard);
        let _ = tx.send(Some(result.as_ref().map(|_| ()).map_err(Clone::clone)));
        let reused = result?;
        if let Some(password) = interaction.to_save.take() {
            let message = self.save_password(&slot, password).await;
            interaction.progress(&message).await;
        }
        let data = slot.data();
        Ok(LoginOutcome {
            account: slot.account.name.clone(),
            username: slot.account.username.clone(),
            reused_session: reused,
            roles: role_infos(&slot.account, &data.roles),
        })
    }

    /// Joins the running flight of an account, or starts a refresh flight in its own task so
    /// that it completes even when the request that started it goes away.
    fn start_refresh(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        extra_role: Option<String>,
        renew_all: bool,
    ) -> watch::Receiver<Option<FlightResult>> {
        let mut data = slot.data();
        self.start_refresh_locked(slot, &mut data, extra_role, renew_all)
    }

    /// [`Daemon::start_refresh`] for a caller that already holds the account's lock, so that
    /// deciding a trip is needed and starting (or joining) it happen atomically: otherwise a
    /// flight could finish in between and a second, needless one start.
    fn start_refresh_locked(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        data: &mut AccountData,
        extra_role: Option<String>,
        renew_all: bool,
    ) -> watch::Receiver<Option<FlightResult>> {
        if let Some((_, rx)) = &data.flight {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        data.flight = Some((FlightKind::Refresh, rx.clone()));
        let daemon = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let guard = FlightGuard {
                slot: slot.clone(),
                daemon: daemon.clone(),
            };
            let result = daemon.run_flight(&slot, extra_role, None, renew_all).await;
            drop(guard);
            let _ = tx.send(Some(result.map(|_| ())));
        });
        rx
    }

    /// One trip to the IdP and STS. Returns whether the IdP session was reused.
    async fn run_flight(
        &self,
        slot: &Arc<AccountSlot>,
        extra_role: Option<String>,
        login: Option<(&mut SecretSources<'_>, bool)>,
        renew_all: bool,
    ) -> Result<bool, WireError> {
        let account = &slot.account;
        let unattended = login.is_none();
        let outcome = self.obtain(slot, extra_role, login, renew_all).await;
        let now = self.clock.now();
        let mut data = slot.data();
        let mut announce = None;
        match &outcome {
            Ok(_) => {
                data.last_error = None;
                data.needs_login = false;
                data.retry = None;
            }
            Err(e) if e.code == ErrorCode::NotLoggedIn => {}
            // What the user typed (or could not type) at `samlctl login` is shown to them
            // there; it is not the account's state.
            Err(e) if !unattended && needs_the_user(e.code) => {}
            Err(e) => {
                tracing::warn!(account = %account.name, code = %e.code, error = %e.message, "login or refresh failed");
                data.last_error = Some(ErrorInfo {
                    code: e.code,
                    message: e.message.clone(),
                    at: rfc3339(now),
                });
                if unattended && e.code == ErrorCode::AuthFailed {
                    data.password_rejected = true;
                }
                if !unattended {
                    // A login the user is watching failed for another reason (STS, the
                    // network): it is recorded above, and they retry when they choose.
                } else if needs_the_user(e.code) {
                    // Only a person can fix this; retrying could lock the account or send
                    // pushes nobody is waiting for.
                    let was = data.needs_login;
                    data.needs_login = true;
                    data.session = None;
                    data.retry = None;
                    if !was {
                        announce = Some(e.message.clone());
                    }
                } else {
                    let attempts = data.retry.map_or(1, |r| r.attempts + 1);
                    let next_at = now + backoff(attempts);
                    tracing::info!(account = %account.name, attempt = attempts, retry = %rfc3339(next_at), "will retry");
                    data.retry = Some(Retry { attempts, next_at });
                }
            }
        }
        drop(data);
        if let Some(message) = announce {
            self.announce_needs_login(account, &message);
        }
        self.schedule_changed.notify_one();
        outcome
    }

    /// Tells the user an account needs them: always in the log and `samlctl status`, and by
    /// a desktop notification where the account allows it.
    fn announce_needs_login(&self, account: &Account, reason: &str) {
        tracing::warn!(account = %account.name, "needs login: {reason}");
        if account.notifications
            && let Some(notify) = self.notifier.get()
        {
            notify(
                &format!("samld: {} needs you to log in", account.name),
                &format!("{reason}\nRun: samlctl login {}", account.name),
            );
        }
    }

    async fn obtain(
        &self,
        slot: &Arc<AccountSlot>,
        extra_role: Option<String>,
        mut login: Option<(&mut SecretSources<'_>, bool)>,
        renew_all: bool,
    ) -> Result<bool, WireError> {
        let account = &slot.account;
        let force = login.as_ref().is_some_and(|(_, force)| *force);
        let (saml_response, reused) = if force {
            (None, false)
        } else {
            match slot.idp.assertion_from_session().await {
                Ok(a) => (Some(a), true),
                Err(IdpError::SessionExpired) => (None, false),
                Err(e) => return Err(idp_error(account, e)),
            }
        };
        let saml_response = match saml_response {
            Some(a) => a,
            None => match login.as_mut() {
                Some((io, _)) => {
                    let a = slot
                        .idp
                        .login(&mut **io)
                        .await
                        .map_err(|e| idp_error(account, e))?;
                    let now = self.clock.now();
                    let mut data = slot.data();
                    data.session = Some(SessionTimes {
                        established_at: now,
                        last_verified_at: now,
                    });
                    a
                }
                None if self.can_login_unattended(account, &slot.data()) => {
                    tracing::info!(account = %account.name, "JumpCloud session ended; logging in again unattended");
                    if let Some((kind, _)) = slot.data().flight.as_mut() {
                        *kind = FlightKind::Login;
                    }
                    let mut given = LoginSecrets::default();
                    let mut from_keyring = false;
                    if account.password_command.is_none() {
                        match self.saved_password(account).await {
                            Some(p) => {
                                slot.data().saved_password = Some(true);
                                given.password = Some(p);
                                from_keyring = true;
                            }
                            None => {
                                let mut data = slot.data();
                                data.saved_password = Some(false);
                                return Err(not_logged_in(account, &data));
                            }
                        }
                    }
                    let mut sources = SecretSources {
                        account: account.clone(),
                        given,
                        channel: None,
                        command_timeout: self.options.command_timeout,
                        passwords: None,
                        to_save: None,
                    };
                    let a = match slot.idp.login(&mut sources).await {
                        Ok(a) => a,
                        Err(e @ IdpError::AuthFailed { .. }) if from_keyring => {
                            // A saved password that JumpCloud refuses must not be tried again,
                            // not even after a restart: that is how accounts get locked.
                            self.forget_saved_password(account).await;
                            slot.data().saved_password = Some(false);
                            return Err(idp_error(account, e));
                        }
                        Err(e) => return Err(idp_error(account, e)),
                    };
                    let now = self.clock.now();
                    slot.data().session = Some(SessionTimes {
                        established_at: now,
                        last_verified_at: now,
                    });
                    a
                }
                None => {
                    let data = slot.data();
                    return Err(if data.session.is_some() || !data.creds.is_empty() {
                        WireError::new(
                            ErrorCode::NeedsLogin,
                            format!(
                                "the JumpCloud session for {name} has ended; run: samlctl login {name}",
                                name = account.name
                            ),
                        )
                    } else {
                        not_logged_in(account, &data)
                    });
                }
            },
        };
        let assertion = saml::parse_saml_response(saml_response.expose()).map_err(|e| {
            WireError::new(
                ErrorCode::SamlError,
                format!("the SAML assertion for {} is unusable: {e}", account.name),
            )
        })?;
        let now = self.clock.now();
        let targets = {
            let mut data = slot.data();
            if let Some(s) = data.session.as_mut() {
                s.last_verified_at = now;
            } else {
                // A session we did not see start (e.g. reused after a daemon restart).
                data.session = Some(SessionTimes {
                    established_at: now,
                    last_verified_at: now,
                });
            }
            data.roles = assertion.roles.clone();
            let renew_before = if renew_all {
                None
            } else {
                Some(now + BATCH_WINDOW)
            };
            choose_targets(
                account,
                &mut data,
                &assertion,
                extra_role.as_deref(),
                renew_before,
            )
        };
        let sts_target = StsTarget {
            region: account.region.clone(),
            endpoint: account.sts_endpoint.clone(),
        };
        let mut saml_response = saml_response;
        let mut assertion = assertion;
        let mut refetched = false;
        for pair in targets {
            let creds = loop {
                match self
                    .assume(slot, &sts_target, &pair, &saml_response, &assertion)
                    .await
                {
                    Err(e) if e.is_expired_assertion() && !refetched => {
                        // The assertion aged past STS's 5 minutes (slow MFA, many roles):
                        // the session is fresh, so a new one costs no user action.
                        refetched = true;
                        saml_response = slot
                            .idp
                            .assertion_from_session()
                            .await
                            .map_err(|e| idp_error(account, e))?;
                        assertion = saml::parse_saml_response(saml_response.expose())
                            .map_err(|e| WireError::new(ErrorCode::SamlError, e.to_string()))?;
                    }
                    Err(e) => {
                        return Err(WireError::new(
                            ErrorCode::StsError,
                            format!(
                                "AssumeRoleWithSAML for {} ({}) failed: {e}",
                                pair.role_arn, account.name
                            ),
                        ));
                    }
                    Ok(c) => break c,
                }
            };
            let now = self.clock.now();
            let refresh_at = refresh_deadline(now, creds.expiration, account.refresh_before)
                - refresh_jitter(creds.expiration - now);
            tracing::info!(
                account = %account.name,
                role = %pair.role_arn,
                expires = %rfc3339(creds.expiration),
                refresh = %rfc3339(refresh_at),
                "credentials obtained"
            );
            let mut data = slot.data();
            data.creds.insert(
                pair.role_arn.clone(),
                HeldCredentials {
                    creds,
                    obtained_at: now,
                    refresh_at,
                },
            );
        }
        Ok(reused)
    }

    async fn assume(
        &self,
        slot: &Arc<AccountSlot>,
        target: &StsTarget,
        pair: &RolePair,
        saml_response: &Secret,
        assertion: &Assertion,
    ) -> Result<AwsCredentials, StsError> {
        let learnt = slot.data().max_duration.get(&pair.role_arn).copied();
        let duration = choose_duration(
            slot.account.session_duration.as_secs(),
            assertion.session_duration,
            learnt,
        );
        let mut request = AssumeRequest {
            role_arn: pair.role_arn.clone(),
            principal_arn: pair.principal_arn.clone(),
            saml_assertion: saml_response.clone(),
            duration_seconds: duration,
        };
        match self.sts.assume_role_with_saml(target, &request).await {
            Err(e) if e.is_duration_too_long() && duration > SAFE_DURATION_SECS => {
                tracing::warn!(
                    role = %pair.role_arn,
                    asked = duration,
                    "role refuses this session length; using 1h from now on"
                );
                slot.data()
                    .max_duration
                    .insert(pair.role_arn.clone(), SAFE_DURATION_SECS);
                request.duration_seconds = SAFE_DURATION_SECS;
                self.sts.assume_role_with_saml(target, &request).await
            }
            other => other,
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
    daemon: Arc<Daemon>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.slot.data().flight = None;
        self.daemon.schedule_changed.notify_one();
    }
}

async fn wait_flight(
    mut rx: watch::Receiver<Option<FlightResult>>,
    wait: Duration,
    account: &str,
) -> FlightResult {
    match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
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

/// Which roles a flight assumes: those in use, the default, and the one just asked for;
/// with `renew_before`, only those without credentials or due for refresh by then.
fn choose_targets(
    account: &Account,
    data: &mut AccountData,
    assertion: &Assertion,
    extra: Option<&str>,
    renew_before: Option<OffsetDateTime>,
) -> Vec<RolePair> {
    let mut targets: Vec<RolePair> = Vec::new();
    let creds = &data.creds;
    let mut add = |pair: &RolePair| {
        let due = match (renew_before, creds.get(&pair.role_arn)) {
            (Some(by), Some(held)) => held.refresh_at <= by,
            _ => true,
        };
        if due && !targets.iter().any(|t| t.role_arn == pair.role_arn) {
            targets.push(pair.clone());
        }
    };
    if let Ok(pair) = saml::default_role(&assertion.roles, account.role.as_deref()) {
        add(pair);
    }
    if let Some(Ok(pair)) = extra.map(|r| saml::select_role(&assertion.roles, r)) {
        add(pair);
    }
    let mut gone = Vec::new();
    for arn in &data.wanted {
        match assertion.roles.iter().find(|p| &p.role_arn == arn) {
            Some(pair) => add(pair),
            None => gone.push(arn.clone()),
        }
    }
    for arn in gone {
        tracing::warn!(account = %account.name, role = %arn, "role no longer in the assertion");
        data.wanted.remove(&arn);
        data.creds.remove(&arn);
    }
    targets
}

/// The role ARN a request means, if the roles known so far can tell.
fn resolve_role(
    account: &Account,
    roles: &[RolePair],
    asked: Option<&str>,
) -> Result<Option<String>, WireError> {
    let wanted = asked.or(account.role.as_deref());
    if let Some(w) = wanted
        && w.starts_with("arn:")
    {
        // An ARN needs no assertion to be recognised, only to be checked.
        if roles.is_empty() || roles.iter().any(|p| p.role_arn == w) {
            return Ok(Some(w.to_string()));
        }
    }
    if roles.is_empty() {
        return Ok(None);
    }
    let picked = match asked {
        Some(r) => saml::select_role(roles, r),
        None => saml::default_role(roles, account.role.as_deref()),
    };
    picked
        .map(|p| Some(p.role_arn.clone()))
        .map_err(|e| WireError::new(ErrorCode::UnknownRole, format!("{}: {e}", account.name)))
}

/// Failures that only the user can resolve; everything else is retried with backoff.
fn needs_the_user(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AuthFailed
            | ErrorCode::MfaFailed
            | ErrorCode::MfaRequired
            | ErrorCode::MfaUnsupported
            | ErrorCode::NeedsLogin
            | ErrorCode::NotLoggedIn
            | ErrorCode::UnknownRole
            | ErrorCode::ConfigError
    )
}

/// Exponential backoff from 30 s, doubling up to 15 minutes, with ±20% jitter so that many
/// daemons (or accounts) hitting one outage do not retry in lockstep.
pub fn backoff(attempts: u32) -> Duration {
    const BASE: Duration = Duration::from_secs(30);
    const CAP: Duration = Duration::from_secs(15 * 60);
    let exp = BASE.saturating_mul(1u32 << attempts.saturating_sub(1).min(10));
    exp.min(CAP).mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// When to refresh: `refresh_before` ahead of expiry, or at two thirds of the life for
/// sessions too short for that.
pub fn refresh_deadline(
    obtained: OffsetDateTime,
    expiration: OffsetDateTime,
    refresh_before: Duration,
) -> OffsetDateTime {
    let life = expiration - obtained;
    if life >= refresh_before * 2 {
        expiration - refresh_before
    } else {
        obtained + life * 2 / 3
    }
}

/// A little earlier than the deadline, at random, so that roles and accounts obtained
/// together do not all hit JumpCloud in the same second forever after.
fn refresh_jitter(life: time::Duration) -> time::Duration {
    let most: time::Duration = (life / 50_i32).min(time::Duration::seconds(30));
    most * fastrand::f64()
}

fn usable(held: &HeldCredentials, now: OffsetDateTime) -> bool {
    let life = held.creds.expiration - held.obtained_at;
    held.creds.expiration - now > (life / 4_i32).min(MIN_REMAINING)
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

fn not_logged_in(account: &Account, data: &AccountData) -> WireError {
    let name = &account.name;
    if data.needs_login && !data.logged_out {
        let why = data
            .last_error
            .as_ref()
            .filter(|e| e.code != ErrorCode::NeedsLogin)
            .map(|e| format!(" (last attempt: {})", e.message))
            .unwrap_or_default();
        WireError::new(
            ErrorCode::NeedsLogin,
            format!("the JumpCloud session for {name} has ended{why}; run: samlctl login {name}"),
        )
    } else {
        WireError::new(
            ErrorCode::NotLoggedIn,
            format!("{name} is not logged in; run: samlctl login {name}"),
        )
    }
}

fn idp_error(account: &Account, e: IdpError) -> WireError {
    WireError::new(e.code(), format!("{}: {e}", account.name))
}

fn role_infos(account: &Account, roles: &[RolePair]) -> Vec<RoleInfo> {
    let default = saml::default_role(roles, account.role.as_deref())
        .ok()
        .map(|p| p.role_arn.clone());
    roles
        .iter()
        .map(|p| RoleInfo {
            role_arn: p.role_arn.clone(),
            principal_arn: p.principal_arn.clone(),
            default: default.as_deref() == Some(p.role_arn.as_str()),
        })
        .collect()
}

fn role_statuses(account: &Account, data: &AccountData, now: OffsetDateTime) -> Vec<RoleStatus> {
    let default = saml::default_role(&data.roles, account.role.as_deref())
        .ok()
        .map(|p| p.role_arn.clone());
    data.creds
        .iter()
        .filter(|(_, held)| held.creds.expiration > now)
        .map(|(arn, held)| RoleStatus {
            role_arn: arn.clone(),
            assumed_role_arn: held.creds.assumed_role_arn.clone(),
            expires_at: Some(rfc3339(held.creds.expiration)),
            next_refresh_at: Some(rfc3339(held.refresh_at)),
            default: default.as_deref() == Some(arn.as_str()),
            warning: None,
        })
        .collect()
}

fn account_status(slot: &AccountSlot, now: OffsetDateTime) -> AccountStatus {
    let account = &slot.account;
    let data = slot.data();
    let roles = role_statuses(account, &data, now);
    let state = match data.flight.as_ref().map(|(kind, _)| *kind) {
        Some(FlightKind::Login) => AccountState::LoggingIn,
        Some(FlightKind::Refresh) => AccountState::Refreshing,
        None if data.needs_login => AccountState::NeedsLogin,
        None if data.last_error.is_some() && data.retry.is_some() => AccountState::Error,
        None if data.session.is_some() || !roles.is_empty() => AccountState::Active,
        None => AccountState::LoggedOut,
    };
    AccountStatus {
        name: account.name.clone(),
        state,
        provider: "jumpcloud".to_string(),
        username: account.username.clone(),
        url: account.url.clone(),
        region: account.region.clone(),
        default_role: account.role.clone(),
        session: data.session.map(|s| SessionInfo {
            established_at: rfc3339(s.established_at),
            last_verified_at: rfc3339(s.last_verified_at),
        }),
        roles,
        last_error: data.last_error.clone(),
        next_retry_at: data.retry.map(|r| rfc3339(r.next_at)),
    }
}

/// Stands in for an account whose provider could not be built, so that its requests get
/// the reason instead of the daemon refusing the whole config.
struct BrokenProvider(IdpError);

impl IdentityProvider for BrokenProvider {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }

    fn login<'a>(
        &'a self,
        _io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }

    fn forget_session(&self) {}
}

/// Secrets a client sent with its login request, and what to do with them.
#[derive(Debug, Default)]
pub struct LoginSecrets {
    /// From `--password-stdin`.
    pub password: Option<Secret>,
    /// From `--mfa-code`.
    pub mfa_code: Option<Secret>,
    /// `--save-password`: keep the password in the OS keyring once JumpCloud accepts it.
    pub save_password: bool,
}

/// Where a login's secrets come from, in order: what the client sent with the request, the
/// account's `password_command`/`mfa_command`, then a question to the client if it can
/// answer one.
struct SecretSources<'a> {
    account: Account,
    given: LoginSecrets,
    channel: Option<&'a mut dyn ClientChannel>,
    command_timeout: Duration,
    /// The keyring to look in after `password_command`; `None` to skip it (unattended
    /// logins read it up front, and `--save-password` means a new password is typed).
    passwords: Option<Arc<dyn PasswordStore>>,
    /// With `--save-password`: the password handed to JumpCloud, saved once it is accepted.
    to_save: Option<Secret>,
}

impl SecretSources<'_> {
    async fn obtain(
        &mut self,
        kind: SecretKind,
        given: Option<Secret>,
        command: Option<String>,
        prompt: &str,
    ) -> Result<Secret, IdpError> {
        if let Some(secret) = given {
            return Ok(secret);
        }
        if let Some(command) = command {
            return run_secret_command(&command, kind, self.command_timeout).await;
        }
        match self.channel.as_mut() {
            Some(channel) => channel.ask(kind, prompt).await,
            None => {
                let reason = format!(
                    "no terminal to ask on and no {} configured for {}",
                    match kind {
                        SecretKind::Password => "password_command",
                        SecretKind::MfaCode => "mfa_command",
                    },
                    self.account.name
                );
                Err(match kind {
                    SecretKind::Password => IdpError::PasswordUnavailable { reason },
                    SecretKind::MfaCode => IdpError::MfaCodeUnavailable { reason },
                })
            }
        }
    }
}

impl LoginInteraction for SecretSources<'_> {
    fn password<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            let mut given = self.given.password.take();
            let command = self.account.password_command.clone();
            if given.is_none()
                && command.is_none()
                && let Some(store) = self.passwords.take()
            {
                let (account, username) =
                    (self.account.name.clone(), self.account.username.clone());
                match keyring::run(&store, move |s| s.get(&account, &username)).await {
                    Ok(found) => given = found,
                    Err(e) => {
                        tracing::warn!(account = %self.account.name, error = %e, "saved password unavailable")
                    }
                }
            }
            let password = self
                .obtain(SecretKind::Password, given, command, prompt)
                .await?;
            if self.given.save_password {
                self.to_save = Some(password.clone());
            }
            Ok(password)
        })
    }

    fn mfa_code<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            // A code is good for one attempt: never hand the same one out twice.
            let given = self.given.mfa_code.take();
            let command = self.account.mfa_command.clone();
            self.obtain(SecretKind::MfaCode, given, command, prompt)
                .await
        })
    }

    fn progress<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::info!(account = %self.account.name, "{message}");
            if let Some(channel) = self.channel.as_mut() {
                channel.tell(message).await;
            }
        })
    }
}

/// Runs `password_command` or `mfa_command` with `sh -c` and takes the first line of its
/// output. Neither its output nor its stderr is logged.
async fn run_secret_command(
    command: &str,
    kind: SecretKind,
    timeout: Duration,
) -> Result<Secret, IdpError> {
    let key = match kind {
        SecretKind::Password => "password_command",
        SecretKind::MfaCode => "mfa_command",
    };
    let unavailable = |reason: String| match kind {
        SecretKind::Password => IdpError::PasswordUnavailable { reason },
        SecretKind::MfaCode => IdpError::MfaCodeUnavailable { reason },
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unavailable(format!("{key} could not be started: {e}")))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            unavailable(format!(
                "{key} did not finish within {}s",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| unavailable(format!("{key} failed: {e}")))?;
    if !output.status.success() {
        return Err(unavailable(format!("{key} exited with {}", output.status)));
    }
    let mut stdout = output.stdout;
    let secret = String::from_utf8(std::mem::take(&mut stdout))
        .map_err(|_| unavailable(format!("{key} printed something that is not UTF-8")))?;
    let line = secret.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(unavailable(format!("{key} printed nothing")));
    }
    let result = Secret::new(line);
    drop(Secret::new(secret));
    Ok(result)
}
