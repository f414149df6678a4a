//! A deterministic simulation of the session manager, in the spirit of FoundationDB's and
//! TigerBeetle's simulators: the real [`Manager`] and its real scheduler on a manual clock,
//! with a scripted JumpCloud and STS that draw their faults from a seeded RNG, while logins,
//! logouts, refreshes, config reloads, keyring locks and bursts of credential requests arrive
//! at random times, over simulated days. After every step the invariants are checked.
//!
//! Each seed runs on its own single-threaded tokio runtime with paused time, and the
//! manager's own randomness (jitter) is seeded from the same seed, so a seed replays exactly:
//!
//! ```text
//! SAMLD_SIM_SEED=1234 cargo test -p samld --test simulation -- --nocapture
//! ```
//!
//! A long soak of seeds: `SAMLD_SIM_SEEDS=200000 cargo test --release -p samld --test
//! simulation` (`SAMLD_SIM_STEPS` sets the steps per seed).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use samld::clock::{Clock, ManualClock};
use samld::future::BoxFuture;
use samld::idp::{Contact, IdentityProvider, IdpError, LoginInteraction};
use samld::keyring::{KeyringError, PasswordStore};
use samld::manager::policy::{REFRESH_FLOOR, UNATTENDED_LOGINS_PER_HOUR};
use samld::manager::{DaemonOptions, LoginSecrets, Manager, ProviderFactory};
use samld::sts::{AssumeRequest, AwsCredentials, StsApi, StsError, StsTarget};
use samld_config::Account;
use samld_proto::{AccountState, Secret};
use time::OffsetDateTime;
use time::macros::datetime;

const START: OffsetDateTime = datetime!(2026-12-01 08:00 UTC);
const PASSWORD: &str = "correct horse";
const CODE: &str = "123456";
const LOGIN_WAIT: Duration = Duration::from_secs(120);
const FRESH_WAIT: Duration = Duration::from_secs(5);

/// Accounts: three AWS apps of alice (one JumpCloud session, push, password in the keyring:
/// she can be signed in again unattended) and one of bob (TOTP without `mfa_command`: only
/// a person can sign him in).
const CONFIG: &str = r#"
[defaults]
session_duration = "1h"
refresh_before = "20m"
login_wait = "2m"

[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
mfa = "push"
role = "Admin"

[accounts.dev]
url = "https://sso.jumpcloud.com/saml2/dev"
username = "alice@example.com"
mfa = "push"

[accounts.stage]
url = "https://sso.jumpcloud.com/saml2/stage"
username = "Alice@Example.com"
mfa = "push"

[accounts.ops]
url = "https://sso.jumpcloud.com/saml2/ops"
username = "bob@example.com"
mfa = "totp"
"#;

const ACCOUNTS: [&str; 4] = ["prod", "dev", "stage", "ops"];

fn user_of(account: &str) -> &'static str {
    if account == "ops" { "bob" } else { "alice" }
}

fn role_arn(account: &str, role: &str) -> String {
    let id = match account {
        "prod" => "111111111111",
        "dev" => "222222222222",
        "stage" => "333333333333",
        _ => "444444444444",
    };
    format!("arn:aws:iam::{id}:role/{role}")
}

fn account_of_role(arn: &str) -> &'static str {
    ACCOUNTS
        .into_iter()
        .find(|a| arn.starts_with(&role_arn(a, "")))
        .expect("a simulated role")
}

fn assertion(account: &str) -> Secret {
    let provider = format!(
        "arn:aws:iam::{}:saml-provider/JumpCloud",
        &role_arn(account, "")[13..25]
    );
    let roles = [role_arn(account, "Admin"), role_arn(account, "ReadOnly")];
    common::assertion(&[(&roles[0], &provider), (&roles[1], &provider)], None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Approve,
    Deny,
    Expire,
    /// Nobody answers: the push times out after three minutes.
    Unanswered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdpFault {
    None,
    Http5xx,
    Reset,
    Throttle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StsMode {
    Ok,
    AccessDenied,
    Http5xx,
    Throttle,
    /// Credentials with one second to live.
    ShortLived,
    /// Credentials that expired before they arrived (a clock far ahead).
    Expired,
}

/// What the scripted services saw, for the invariants.
#[derive(Default)]
struct Records {
    /// Per user: instants of unattended logins that reached the person.
    unattended_contacts: HashMap<&'static str, Vec<OffsetDateTime>>,
    /// Per user: unattended logins that reached the person since the last reset (a person's
    /// act or a successful login).
    attempts_since_reset: HashMap<&'static str, u32>,
    /// Per (account, role): STS calls made while no person was acting.
    sts_unattended: HashMap<String, Vec<OffsetDateTime>>,
    /// Per (account, role): refused by STS at this person-epoch of the account.
    refused_at_epoch: HashMap<String, u64>,
    /// Per account: person-epochs (login, refresh, config change).
    epoch: HashMap<&'static str, u64>,
    /// Per account: IdP and STS calls running now.
    in_flight: HashMap<&'static str, u32>,
    violations: Vec<String>,
}

/// The scripted world behind the providers and STS.
struct World {
    clock: Arc<ManualClock>,
    state: Mutex<WorldState>,
}

struct WorldState {
    /// Per user: whether JumpCloud holds a live session.
    alive: HashMap<&'static str, bool>,
    push: Push,
    code_ok: bool,
    idp_fault: IdpFault,
    sts: StsMode,
    /// STS faults apply to this role name only (`None`: every role).
    sts_role: Option<&'static str>,
    /// A person's command is running (its requests are not "by itself").
    person: bool,
    records: Records,
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorldState> {
        self.state.lock().unwrap()
    }

    fn violation(&self, what: String) {
        self.lock().records.violations.push(what);
    }

    fn enter(&self, account: &'static str) {
        let mut s = self.lock();
        let n = s.records.in_flight.entry(account).or_default();
        *n += 1;
        if *n > 1 {
            let n = *n;
            s.records
                .violations
                .push(format!("{n} trips at once for {account}"));
        }
    }

    fn leave(&self, account: &'static str) {
        *self.lock().records.in_flight.entry(account).or_default() -= 1;
    }

    /// [`World::enter`], left however the call ends (a trip can be aborted mid-call).
    fn call(self: &Arc<Self>, account: &'static str) -> InCall {
        self.enter(account);
        InCall {
            world: self.clone(),
            account,
        }
    }

    fn idp_fault(&self) -> Option<IdpError> {
        match self.lock().idp_fault {
            IdpFault::None => None,
            IdpFault::Http5xx => Some(IdpError::UnexpectedStatus {
                request: "GET /userconsole/api/self".into(),
                status: 503,
                message: None,
            }),
            IdpFault::Reset => Some(IdpError::Network {
                url: "https://console.jumpcloud.com/".into(),
                reason: "connection reset".into(),
            }),
            IdpFault::Throttle => Some(IdpError::UnexpectedStatus {
                request: "GET /userconsole/api/self".into(),
                status: 429,
                message: None,
            }),
        }
    }
}

struct InCall {
    world: Arc<World>,
    account: &'static str,
}

impl Drop for InCall {
    fn drop(&mut self) {
        self.world.leave(self.account);
    }
}

/// One account's provider; the JumpCloud session is the user's, shared.
struct SimIdp {
    world: Arc<World>,
    account: &'static str,
}

impl SimIdp {
    async fn login_inner(&self, io: &mut dyn LoginInteraction) -> Result<Secret, IdpError> {
        let user = user_of(self.account);
        let password = io.password("JumpCloud password").await?;
        if let Some(e) = self.world.idp_fault() {
            return Err(e);
        }
        io.reaching_person(Contact::Password);
        self.contact(user);
        if password.expose() != PASSWORD {
            return Err(IdpError::AuthFailed {
                message: "Authentication failed.".into(),
            });
        }
        if user == "bob" {
            let code = io.mfa_code("TOTP code").await?;
            io.reaching_person(Contact::Code);
            if code.expose() != CODE || !self.world.lock().code_ok {
                return Err(IdpError::MfaCodeRejected {
                    message: "Invalid code.".into(),
                });
            }
        } else {
            io.reaching_person(Contact::Push);
            let push = self.world.lock().push;
            match push {
                Push::Approve => {}
                Push::Deny => return Err(IdpError::PushDenied),
                Push::Expire => return Err(IdpError::PushExpired),
                Push::Unanswered => {
                    tokio::time::sleep(Duration::from_secs(180)).await;
                    return Err(IdpError::PushExpired);
                }
            }
        }
        let mut s = self.world.lock();
        s.alive.insert(user, true);
        s.records.attempts_since_reset.insert(user, 0);
        Ok(assertion(self.account))
    }

    /// Counts a login that reaches the person, once per login, when no person is acting.
    fn contact(&self, user: &'static str) {
        let now = self.world.clock.now();
        let mut s = self.world.lock();
        if s.person {
            return;
        }
        s.records
            .unattended_contacts
            .entry(user)
            .or_default()
            .push(now);
        let n = s.records.attempts_since_reset.entry(user).or_default();
        *n += 1;
        if *n > 1 {
            let n = *n;
            s.records.violations.push(format!(
                "{n} unattended logins reached {user} for one need (no person acted in between)"
            ));
        }
        let hour: Vec<_> = s.records.unattended_contacts[user]
            .iter()
            .filter(|&&t| t > now - time::Duration::HOUR)
            .collect();
        if hour.len() > UNATTENDED_LOGINS_PER_HOUR {
            let n = hour.len();
            s.records
                .violations
                .push(format!("{n} unattended logins of {user} within an hour"));
        }
    }
}

impl IdentityProvider for SimIdp {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        Box::pin(async move {
            let _call = self.world.call(self.account);
            let result = match self.world.idp_fault() {
                Some(e) => Err(e),
                None if self.world.lock().alive[user_of(self.account)] => {
                    Ok(assertion(self.account))
                }
                None => Err(IdpError::SessionExpired),
            };
            tokio::task::yield_now().await;
            result
        })
    }

    fn login<'a>(
        &'a self,
        io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            let _call = self.world.call(self.account);
            self.login_inner(io).await
        })
    }

    fn forget_session(&self) {
        self.world.lock().alive.insert(user_of(self.account), false);
    }
}

struct SimProviders(Arc<World>);

impl ProviderFactory for SimProviders {
    fn provider(&self, account: &Account) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        let name = ACCOUNTS
            .into_iter()
            .find(|a| *a == account.name)
            .expect("a simulated account");
        Ok(Arc::new(SimIdp {
            world: self.0.clone(),
            account: name,
        }))
    }
}

struct SimSts(Arc<World>);

impl StsApi for SimSts {
    fn assume_role_with_saml<'a>(
        &'a self,
        _target: &'a StsTarget,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<AwsCredentials, StsError>> {
        Box::pin(async move {
            let world = &self.0;
            let account = account_of_role(&request.role_arn);
            let _call = world.call(account);
            let now = world.clock.now();
            let result = {
                let mut s = world.lock();
                let key = request.role_arn.clone();
                let epoch = s.records.epoch.get(account).copied().unwrap_or(0);
                if !s.person {
                    if s.records.refused_at_epoch.get(&key) == Some(&epoch) {
                        s.records.violations.push(format!(
                            "STS asked again by itself for {key}, which it refused for good"
                        ));
                    }
                    s.records
                        .sts_unattended
                        .entry(key.clone())
                        .or_default()
                        .push(now);
                    let calls = &s.records.sts_unattended[&key];
                    let in_hour = calls
                        .iter()
                        .filter(|&&t| t > now - time::Duration::HOUR)
                        .count();
                    // Per role: one automatic trip per REFRESH_FLOOR, each at most two calls
                    // (the duration fallback); the documented bound.
                    let bound = 2 * (3600 / REFRESH_FLOOR.as_secs() as usize) + 2;
                    if in_hour > bound {
                        s.records
                            .violations
                            .push(format!("{in_hour} STS calls for {key} within an hour"));
                    }
                }
                let hit = s.sts_role.is_none_or(|r| request.role_arn.ends_with(r));
                let mode = if hit { s.sts } else { StsMode::Ok };
                let creds = |life: i64| AwsCredentials {
                    access_key_id: format!("ASIA{}", now.unix_timestamp()),
                    secret_access_key: Secret::new("secret"),
                    session_token: Secret::new("token"),
                    expiration: now + time::Duration::seconds(life),
                    assumed_role_arn: None,
                };
                let service = |code: &str, status: u16| StsError::Service {
                    code: code.into(),
                    message: "scripted".into(),
                    status: Some(status),
                };
                match mode {
                    StsMode::Ok => Ok(creds(3600)),
                    StsMode::ShortLived => Ok(creds(1)),
                    StsMode::Expired => Ok(creds(-30)),
                    StsMode::AccessDenied => {
                        if !s.person {
                            s.records.refused_at_epoch.insert(key, epoch);
                        }
                        Err(service("AccessDenied", 403))
                    }
                    StsMode::Http5xx => Err(service("InternalFailure", 500)),
                    StsMode::Throttle => Err(service("Throttling", 400)),
                }
            };
            tokio::task::yield_now().await;
            result
        })
    }
}

/// The OS keyring, which can be locked.
#[derive(Default)]
struct SimKeyring {
    locked: Mutex<bool>,
    items: Mutex<BTreeMap<String, Secret>>,
}

impl PasswordStore for SimKeyring {
    fn blocks(&self) -> bool {
        false
    }

    fn get(&self, account: &str, _username: &str) -> Result<Option<Secret>, KeyringError> {
        if *self.locked.lock().unwrap() {
            return Err(KeyringError::Locked);
        }
        Ok(self.items.lock().unwrap().get(account).cloned())
    }

    fn set(&self, account: &str, _username: &str, password: &Secret) -> Result<(), KeyringError> {
        if *self.locked.lock().unwrap() {
            return Err(KeyringError::Locked);
        }
        self.items
            .lock()
            .unwrap()
            .insert(account.to_owned(), password.clone());
        Ok(())
    }

    fn delete(&self, account: &str, _username: &str) -> Result<(), KeyringError> {
        self.items.lock().unwrap().remove(account);
        Ok(())
    }
}

struct Sim {
    rng: fastrand::Rng,
    world: Arc<World>,
    manager: Arc<Manager>,
    keyring: Arc<SimKeyring>,
    /// Accounts a person logged out, not logged in since.
    logged_out: HashMap<&'static str, bool>,
    config: samld_config::Config,
    log: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let config = samld_config::parse(CONFIG, Path::new("/sim/config.toml")).unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let world = Arc::new(World {
            clock: clock.clone(),
            state: Mutex::new(WorldState {
                alive: HashMap::from([("alice", false), ("bob", false)]),
                push: Push::Approve,
                code_ok: true,
                idp_fault: IdpFault::None,
                sts: StsMode::Ok,
                sts_role: None,
                person: false,
                records: Records::default(),
            }),
        });
        let keyring = Arc::new(SimKeyring::default());
        let mut options = DaemonOptions::new("/sim/config.toml".into());
        options.fresh_wait = FRESH_WAIT;
        options.password_store = Some(keyring.clone());
        let manager = Manager::new(
            config.clone(),
            options,
            clock,
            Arc::new(SimSts(world.clone())),
            Arc::new(SimProviders(world.clone())),
        );
        Self {
            rng: fastrand::Rng::with_seed(seed),
            world,
            manager,
            keyring,
            logged_out: HashMap::new(),
            config,
            log: Vec::new(),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.world.clock.now()
    }

    fn pick_account(&mut self) -> &'static str {
        ACCOUNTS[self.rng.usize(..ACCOUNTS.len())]
    }

    /// Lets every task run until nothing moves (paused time advances only when all wait).
    async fn settle(&self) {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    /// A person's act on an account: its epoch moves on, and so does its user's need.
    fn person_acts(&self, account: &'static str) {
        let mut s = self.world.lock();
        *s.records.epoch.entry(account).or_default() += 1;
        s.records.attempts_since_reset.insert(user_of(account), 0);
    }

    async fn step(&mut self) {
        let roll = self.rng.u32(..1000);
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!("  roll {roll}");
        }
        match roll {
            0..400 => {
                let by = Duration::from_secs(self.rng.u64(1..300));
                self.advance(by).await;
            }
            400..480 => {
                let by = Duration::from_secs(self.rng.u64(300..2400));
                self.advance(by).await;
            }
            480..490 => {
                // Suspend and resume: the wall clock jumps hours ahead at once.
                let by = Duration::from_secs(self.rng.u64(7200..43200));
                self.log.push(format!("suspend {}s", by.as_secs()));
                self.world.clock.advance(by);
                self.settle().await;
            }
            490..495 => {
                let back = time::Duration::seconds(self.rng.i64(30..600));
                self.log.push(format!("clock set back {back}"));
                self.world.clock.set(self.now() - back);
                self.settle().await;
            }
            495..700 => {
                let account = self.pick_account();
                let role = match self.rng.u8(..3) {
                    0 => None,
                    1 => Some("Admin"),
                    _ => Some("ReadOnly"),
                };
                let n = self.rng.usize(1..12);
                self.burst(account, role, n).await;
            }
            700..740 => {
                let account = self.pick_account();
                let force = self.rng.u8(..4) == 0;
                self.login(account, force).await;
            }
            740..770 => {
                let account = self.pick_account();
                self.log.push(format!("refresh {account}"));
                self.person_acts(account);
                self.world.lock().person = true;
                let _ = self.manager.refresh(account).await;
                self.world.lock().person = false;
                self.settle().await;
            }
            770..795 => {
                if self.rng.u8(..4) == 0 {
                    self.log.push("logout all".into());
                    self.manager.logout(None).unwrap();
                    for a in ACCOUNTS {
                        self.logged_out.insert(a, true);
                    }
                } else {
                    let account = self.pick_account();
                    self.log.push(format!("logout {account}"));
                    self.manager.logout(Some(account)).unwrap();
                    self.logged_out.insert(account, true);
                }
                self.settle().await;
            }
            795..815 => {
                // A config reload that changes one account (and one that changes nothing).
                let account = self.pick_account();
                let mut config = self.config.clone();
                if self.rng.bool() {
                    let a = config.accounts.get_mut(account).unwrap();
                    a.notifications = !a.notifications;
                    self.log.push(format!("config change {account}"));
                    self.person_acts(account);
                    self.logged_out.insert(account, false);
                } else {
                    self.log.push("config reload, unchanged".into());
                }
                self.manager.apply_config(config.clone());
                self.config = config;
                self.settle().await;
            }
            815..870 => {
                let user = if self.rng.bool() { "alice" } else { "bob" };
                self.log
                    .push(format!("JumpCloud ends the session of {user}"));
                self.world.lock().alive.insert(user, false);
            }
            870..910 => {
                let push = [
                    Push::Approve,
                    Push::Approve,
                    Push::Deny,
                    Push::Expire,
                    Push::Unanswered,
                ][self.rng.usize(..5)];
                self.log.push(format!("push: {push:?}"));
                self.world.lock().push = push;
            }
            910..925 => {
                let ok = self.rng.u8(..3) != 0;
                self.log.push(format!("codes accepted: {ok}"));
                self.world.lock().code_ok = ok;
            }
            925..955 => {
                let fault = [
                    IdpFault::None,
                    IdpFault::None,
                    IdpFault::Http5xx,
                    IdpFault::Reset,
                    IdpFault::Throttle,
                ][self.rng.usize(..5)];
                self.log.push(format!("JumpCloud fault: {fault:?}"));
                self.world.lock().idp_fault = fault;
            }
            955..990 => {
                let mode = [
                    StsMode::Ok,
                    StsMode::Ok,
                    StsMode::AccessDenied,
                    StsMode::Http5xx,
                    StsMode::Throttle,
                    StsMode::ShortLived,
                    StsMode::Expired,
                ][self.rng.usize(..7)];
                let role = [None, Some("Admin"), Some("ReadOnly")][self.rng.usize(..3)];
                self.log.push(format!("STS: {mode:?} for {role:?}"));
                let mut s = self.world.lock();
                s.sts = mode;
                s.sts_role = role;
            }
            _ => {
                let locked = self.rng.bool();
                self.log.push(format!("keyring locked: {locked}"));
                *self.keyring.locked.lock().unwrap() = locked;
            }
        }
    }

    async fn advance(&mut self, by: Duration) {
        // In small steps, so that the scheduler acts at (about) its deadlines.
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(30));
            self.world.clock.advance(step);
            left -= step;
            self.settle().await;
        }
    }

    async fn login(&mut self, account: &'static str, force: bool) {
        self.log.push(format!("login {account} (force: {force})"));
        self.person_acts(account);
        self.world.lock().person = true;
        let secrets =
            person_secrets(user_of(account) == "alice" && !*self.keyring.locked.lock().unwrap());
        let result = self.manager.login(account, secrets, force, None).await;
        self.world.lock().person = false;
        // A person logging in lifts their logout, whether or not the login succeeds.
        let _ = result;
        self.logged_out.insert(account, false);
        self.settle().await;
    }

    async fn burst(&mut self, account: &'static str, role: Option<&'static str>, n: usize) {
        self.log.push(format!("{n} helpers for {account} {role:?}"));
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!("  {n} helpers for {account} {role:?}");
        }
        let mut tasks = Vec::new();
        for _ in 0..n {
            let manager = self.manager.clone();
            let clock = self.world.clock.clone();
            tasks.push(tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let result = manager.get_credentials(account, role, None).await;
                (result, started.elapsed(), clock.now())
            }));
        }
        for task in tasks {
            let (result, waited, at) = task.await.unwrap();
            if waited > LOGIN_WAIT + FRESH_WAIT + Duration::from_secs(1) {
                self.world.violation(format!(
                    "a helper for {account} waited {}s (login_wait is {}s)",
                    waited.as_secs(),
                    LOGIN_WAIT.as_secs()
                ));
            }
            match result {
                Ok(creds) => {
                    let expires = OffsetDateTime::parse(
                        &creds.expiration,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap();
                    if expires <= at {
                        self.world.violation(format!(
                            "served credentials for {account} that expired at {expires} (now {at})"
                        ));
                    }
                    if self.logged_out.get(account) == Some(&true) {
                        self.world
                            .violation(format!("served credentials for logged-out {account}"));
                    }
                }
                Err(e) => {
                    if e.message.contains("PASSWORD") || e.message.contains(PASSWORD) {
                        self.world.violation("an error quotes the password".into());
                    }
                }
            }
        }
    }

    /// The invariants that must hold after every step.
    fn check(&self) {
        let status = self.manager.status(None).unwrap();
        for account in &status.accounts {
            if self.logged_out.get(account.name.as_str()) == Some(&true)
                && account.state != AccountState::LoggedOut
            {
                self.world.violation(format!(
                    "{} was logged out by a person but is {:?}",
                    account.name, account.state
                ));
            }
            let busy = matches!(
                account.state,
                AccountState::LoggingIn | AccountState::Refreshing
            );
            let earliest = account
                .roles
                .iter()
                .filter_map(|r| r.next_refresh_at.as_deref())
                .chain(account.next_retry_at.as_deref())
                .map(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .unwrap()
                })
                .min();
            if !busy
                && let Some(due) = earliest
                && matches!(account.state, AccountState::Active | AccountState::Error)
            {
                match self.manager.next_deadline() {
                    // Whole seconds in status: allow the rounding.
                    Some(next) if next <= due + time::Duration::SECOND => {}
                    other => self.world.violation(format!(
                        "{} is due at {due} but the scheduler's next deadline is {other:?}",
                        account.name
                    )),
                }
            }
        }
    }
}

/// What a person types at a login: the right password and code.
fn person_secrets(save_password: bool) -> LoginSecrets {
    LoginSecrets {
        password: Some(Secret::new(PASSWORD)),
        mfa_code: Some(Secret::new(CODE)),
        save_password,
        browser: None,
        reuse_only: false,
    }
}

/// A runtime whose time only moves when every task waits, so that a seed replays exactly.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The simulation of `seed` with its manager's scheduler running; inside the runtime.
fn start_sim(seed: u64) -> (Sim, tokio::task::JoinHandle<()>) {
    // The manager's jitter draws from the thread's RNG: seed it too.
    fastrand::seed(seed);
    let sim = Sim::new(seed);
    let scheduler = tokio::spawn(sim.manager.clone().run_scheduler());
    (sim, scheduler)
}

fn run_seed(seed: u64, steps: usize) -> Result<(), String> {
    paused_runtime().block_on(async move {
        let (mut sim, scheduler) = start_sim(seed);
        let trace = std::env::var_os("SAMLD_SIM_TRACE").is_some();
        if trace {
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(std::io::stderr)
                .try_init();
        }
        for step in 0..steps {
            if trace && let Some(last) = sim.log.last() {
                eprintln!("step {step} at {}: {last}", sim.now());
            }
            sim.step().await;
            sim.check();
            let violations = std::mem::take(&mut sim.world.lock().records.violations);
            if !violations.is_empty() {
                let tail: Vec<_> = sim.log.iter().rev().take(12).rev().cloned().collect();
                scheduler.abort();
                return Err(format!(
                    "seed {seed}, step {step}: {}\nlast events:\n  {}",
                    violations.join("\n"),
                    tail.join("\n  ")
                ));
            }
        }
        sim.heal().await.inspect_err(|_| scheduler.abort())?;
        scheduler.abort();
        Ok(())
    })
}

impl Sim {
    /// Liveness: with every fault gone and a person logging each account in once, every
    /// account is served for the next hours without anyone's help (a manager that never did
    /// anything would pass every safety invariant above).
    async fn heal(&mut self) -> Result<(), String> {
        {
            let mut s = self.world.lock();
            s.push = Push::Approve;
            s.code_ok = true;
            s.idp_fault = IdpFault::None;
            s.sts = StsMode::Ok;
        }
        *self.keyring.locked.lock().unwrap() = false;
        for account in ACCOUNTS {
            self.person_acts(account);
            self.world.lock().person = true;
            let mut result = self
                .manager
                .login(account, person_secrets(false), false, None)
                .await;
            if let Err(e) = &result
                && e.code == samld_proto::ErrorCode::Timeout
            {
                // An unanswered push from before may still be running (three minutes, more
                // than login_wait): once it ends, the person's login goes through.
                result = self
                    .manager
                    .login(account, person_secrets(false), false, None)
                    .await;
            }
            self.world.lock().person = false;
            result.map_err(|e| format!("healing login of {account} failed: {}", e.message))?;
            self.logged_out.insert(account, false);
        }
        for _ in 0..36 {
            self.advance(Duration::from_secs(300)).await;
            for account in ACCOUNTS {
                let creds = self
                    .manager
                    .get_credentials(account, Some("ReadOnly"), None)
                    .await;
                if let Err(e) = creds {
                    return Err(format!(
                        "after healing, {account} was not served at {}: {}",
                        self.now(),
                        e.message
                    ));
                }
            }
        }
        Ok(())
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seeds_keep_every_invariant() {
    let steps = env_number("SAMLD_SIM_STEPS", 300) as usize;
    if let Ok(seed) = std::env::var("SAMLD_SIM_SEED") {
        let seed: u64 = seed.parse().expect("SAMLD_SIM_SEED is a number");
        if let Err(failure) = run_seed(seed, steps) {
            panic!("{failure}");
        }
        return;
    }
    let seeds = env_number("SAMLD_SIM_SEEDS", 1000);
    let first = env_number("SAMLD_SIM_FIRST_SEED", 0);
    for seed in first..first + seeds {
        if let Err(failure) = run_seed(seed, steps) {
            panic!(
                "{failure}\nreplay: SAMLD_SIM_SEED={seed} SAMLD_SIM_STEPS={steps} cargo test -p samld --test simulation -- --nocapture"
            );
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    // Determinism is what makes a failing seed worth printing.
    let trace = |seed| {
        paused_runtime().block_on(async move {
            let (mut sim, scheduler) = start_sim(seed);
            for _ in 0..200 {
                sim.step().await;
            }
            scheduler.abort();
            let status = sim.manager.status(None).unwrap();
            let s = sim.world.lock();
            fn sorted<K: std::fmt::Display>(m: &HashMap<K, Vec<OffsetDateTime>>) -> Vec<String> {
                let mut v: Vec<_> = m.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
                v.sort();
                v
            }
            format!(
                "{:?} {:?} {:?}",
                status.accounts,
                sorted(&s.records.sts_unattended),
                sorted(&s.records.unattended_contacts)
            )
        })
    };
    assert_eq!(trace(7), trace(7));
}
