//! A deterministic simulation of the session manager, in the spirit of FoundationDB's and
//! TigerBeetle's simulators: the real [`Manager`] and its real scheduler on a manual clock,
//! with a scripted JumpCloud and STS that draw their faults from a seeded RNG, while logins,
//! logouts, refreshes, config reloads, keyring locks and bursts of credential requests arrive
//! at random times, over simulated days. After every step the invariants are checked.
//!
//! The scripted STS decides whose credentials it hands out from the assertion alone (its
//! subject, its serial, the roles it offers), so a hand-out for the wrong account or role is
//! caught; JumpCloud and STS count what each unattended trip (one manager task) sends, so
//! the README's per-hour table is checked per refresh, not as a loose hourly total.
//!
//! Each seed runs on its own single-threaded tokio runtime with paused time, and the
//! manager's own randomness (jitter) is seeded from the same seed, so a seed replays exactly
//! (a run starts from a new first seed, printed; `SAMLD_SIM_FIRST_SEED` replays a whole run):
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
use samld::idp::{
    Contact, ExternalSession, IdentityProvider, IdpError, IdpSession, LoginInteraction,
};
use samld::keyring::{KeyringError, PasswordStore};
use samld::manager::policy::{REFRESH_FLOOR, UNATTENDED_LOGINS_PER_HOUR};
use samld::manager::{ClientChannel, DaemonOptions, Manager, ProviderFactory};
use samld::sts::{AssumeRequest, AwsCredentials, StsApi, StsError, StsTarget};
use samld_config::Account;
use samld_proto::{AccountState, HeldSession, LoginIntent, PasswordLogin, Secret, SecretKind};
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
session_duration = "12h"

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

/// The JumpCloud login of an account, as its app names it in the assertion.
fn email_of(account: &str) -> &'static str {
    match account {
        "ops" => "bob@example.com",
        "stage" => "Alice@Example.com",
        _ => "alice@example.com",
    }
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
    /// HTTP 429 without `Retry-After`.
    Throttle,
    /// HTTP 429 with a `Retry-After` (drawn per answer, some beyond the hour samld honours).
    RetryAfter,
    /// The connection drops right after the push or code went out: the person was reached.
    AfterReach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StsMode {
    Ok,
    AccessDenied,
    Http5xx,
    Throttle,
    /// STS cannot be reached at all.
    Network,
    /// STS takes 30 s and then the call times out.
    Timeout,
    /// Some assertions arrive too old (`ExpiredTokenException`): each one STS sees is judged
    /// once, by a coin.
    AgedAssertion,
    /// Credentials with one second to live.
    ShortLived,
    /// Credentials that expired before they arrived (a clock far ahead).
    Expired,
}

/// The most one account's roles named ReadOnly accept as DurationSeconds (their
/// MaxSessionDuration); dev asks for 12 hours, so STS refuses it and samld falls back.
const READONLY_MAX_DURATION: u32 = 3600;

/// The backoff schedule the README promises: 30 s doubling to 15 minutes, each wait at
/// least 80 % of that (the jitter); `failures` is how many trips in a row failed.
fn least_backoff(failures: usize) -> time::Duration {
    let full = 30u64 << (failures.saturating_sub(1)).min(10);
    time::Duration::seconds(full.min(15 * 60) as i64) * 0.8
}

/// What one unattended trip (one tokio task of the manager's) sent, as JumpCloud and STS saw it.
struct Trip {
    task: tokio::task::Id,
    /// How many unattended trips of the account had ended (by the audit) when it started.
    ended_before: u64,
    /// When its last call returned.
    ended: OffsetDateTime,
    /// Its first failing answer, which the manager's decision follows: a passing failure
    /// (5xx, reset, throttling, timeout: `true`) or a refusal.
    first_failure: Option<bool>,
    /// A login of this trip reached the person.
    reached: bool,
    /// STS called an assertion of this trip too old.
    aged: bool,
    /// Roles STS refused this trip's DurationSeconds for.
    duration_refused: Vec<String>,
    /// STS calls per role.
    sts: HashMap<String, u32>,
    /// SAML pages served (a reused session's, or a login's last page).
    pages: u32,
    /// Session probes.
    probes: u32,
    /// Sign-ins of the account's JumpCloud session that had ended when it started.
    logins_before: u32,
}

/// A run of consecutive unattended trips of one account that failed for passing reasons.
#[derive(Default)]
struct Streak {
    /// When each failed trip ended.
    failures: Vec<OffsetDateTime>,
    /// When each retry started, and how many failures in a row came before it.
    retries: Vec<(OffsetDateTime, usize)>,
}

/// Invariant: a logged-out account never becomes active except through a person's login
/// of that account that succeeds. Being served and the account's state are checked by
/// [`Sim::burst`] and [`Sim::check`]; this piece checks that no trip of its own reaches
/// JumpCloud or STS: any call for it, while no person acts on it, must come from a trip
/// that was already running (and had called) before the logout overtook it.
#[derive(Default)]
struct LogoutWatch {
    /// Per account: the tasks that called JumpCloud or STS for it while it was logged in.
    callers: HashMap<&'static str, std::collections::HashSet<tokio::task::Id>>,
}

impl LogoutWatch {
    /// A call for `account` from the current task; the violation, if it is one.
    fn call(&mut self, account: &'static str, logged_out: bool, person: bool) -> Option<String> {
        let task = tokio::task::try_id()?;
        if person {
            return None;
        }
        let callers = self.callers.entry(account).or_default();
        if !logged_out {
            callers.insert(task);
            return None;
        }
        (!callers.contains(&task)).then(|| {
            format!(
                "{account}, which a person logged out, started a trip that reached JumpCloud \
                 or STS with no login of it"
            )
        })
    }
}

impl World {
    /// [`LogoutWatch::call`] for a call starting now.
    fn watch_logout(&self, account: &'static str) {
        let mut s = self.lock();
        let (logged_out, person) = (s.logged_out.contains(account), s.person(account));
        if let Some(violation) = s.logout_watch.call(account, logged_out, person) {
            s.records.violations.push(violation);
        }
    }
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
    /// Per account: its unattended trip running now, or the last one.
    trip: HashMap<&'static str, Trip>,
    /// Per account: its failing streak.
    streak: HashMap<&'static str, Streak>,
    /// Per account: JumpCloud asked it (by a 429) to stay away until then.
    throttled_until: HashMap<&'static str, (OffsetDateTime, u64)>,
    /// Per account: roles STS refused a long DurationSeconds for, unattended.
    duration_refused: HashMap<&'static str, Vec<String>>,
    violations: Vec<String>,
}

/// The invariant of a refusal (issue 19): after the person refuses (a push denied or left
/// to expire, a password or code rejected), nothing reaches them again, no password post,
/// no push, no code, until they run `samlctl login` of an account of theirs, whatever
/// helpers on terminals ask ([`Sim::terminal_burst`]) and whatever else happens.
///
/// A push sent before the person's `samlctl login` that they refuse while that login waits
/// for it is answered by the login, which goes on to sign in as they asked: only a refusal
/// at their own login stands after it.
#[derive(Default)]
struct RefusalWatch {
    /// Per user: refused, and no `samlctl login` of theirs since.
    refused: HashMap<&'static str, bool>,
    /// Per user: a person's `samlctl login` of one of their accounts is running.
    logging_in: HashMap<&'static str, bool>,
}

impl RefusalWatch {
    /// `user` refused; `at_persons_login`: at their own `samlctl login`.
    fn refused(&mut self, user: &'static str, at_persons_login: bool) {
        let answered = self.logging_in.get(user) == Some(&true) && !at_persons_login;
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!("  {user} refuses (answered by a login running: {answered})");
        }
        if !answered {
            self.refused.insert(user, true);
        }
    }

    /// A person's `samlctl login` of an account of `user` starts (`true`: they decided) or
    /// ends.
    fn person_logs_in(&mut self, user: &'static str, running: bool) {
        if running {
            self.refused.insert(user, false);
        }
        self.logging_in.insert(user, running);
    }

    /// The violation, if `what` reaching `user` now breaks the rule.
    fn reaches(&self, user: &str, what: &str, persons_login: bool) -> Option<String> {
        let refused = self.refused.get(user).copied().unwrap_or(false);
        (refused && !persons_login).then(|| {
            format!("{what} reached {user} after they refused, before they ran samlctl login")
        })
    }
}

/// The person at a helper's terminal: they type the password and the code when asked.
struct TerminalPerson;

impl ClientChannel for TerminalPerson {
    fn ask<'a>(
        &'a mut self,
        kind: SecretKind,
        _prompt: &'a str,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        let answer = match kind {
            SecretKind::Password => PASSWORD,
            SecretKind::MfaCode => CODE,
        };
        Box::pin(async move { Ok(Secret::new(answer)) })
    }

    fn tell<'a>(&'a mut self, _message: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What STS knows of an assertion it was handed: whose app issued it, and its verdict on
/// its age.
struct Issued {
    account: &'static str,
    /// STS said this one was too old.
    aged: Option<bool>,
}

/// What STS issued under an access key ID.
struct Issue {
    account: &'static str,
    role_arn: String,
    user: &'static str,
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
    /// Per account: a person's command on it is running (its requests are not "by itself").
    person: HashMap<&'static str, u32>,
    /// Latency and `Retry-After` draws, from the seed.
    rng: fastrand::Rng,
    /// Assertions issued, by serial.
    issued: HashMap<u64, Issued>,
    /// Credentials issued, by access key ID.
    keys: HashMap<String, Issue>,
    /// The manager's audit, for the trips it made by itself.
    audit: Option<tokio::sync::broadcast::Receiver<samld_proto::AuditEvent>>,
    /// Per account: unattended trips ended, by the audit.
    trips_ended: HashMap<String, u64>,
    /// Per user: sign-ins (a person's or unattended) that have started, and ended.
    logins_started: HashMap<&'static str, u32>,
    logins_ended: HashMap<&'static str, u32>,
    /// Accounts a person logged out, not logged in since.
    logged_out: std::collections::HashSet<&'static str>,
    /// The invariant that a logout holds until a person's login succeeds.
    logout_watch: LogoutWatch,
    /// Accounts whose last assertion STS judged was too old.
    aged_before: std::collections::HashSet<&'static str>,
    records: Records,
    refusals: RefusalWatch,
    subjects: HandOutSubjects,
}

impl WorldState {
    fn person(&self, account: &str) -> bool {
        self.person.get(account).is_some_and(|&n| n > 0)
    }

    /// The unattended trip this call belongs to (started here if it is its first call), or
    /// `None` for a person's call.
    fn trip(&mut self, account: &'static str, now: OffsetDateTime) -> Option<&mut Trip> {
        if self.person(account) {
            return None;
        }
        let task = tokio::task::try_id()?;
        if self
            .records
            .trip
            .get(account)
            .is_none_or(|t| t.task != task)
        {
            self.trip_starts(account, task, now);
        }
        self.records.trip.get_mut(account)
    }

    /// A new unattended trip of `account`: the one before it has ended (single flight), so
    /// whether this one is a retry, and whether it keeps the schedule, is known now.
    fn trip_starts(&mut self, account: &'static str, task: tokio::task::Id, now: OffsetDateTime) {
        self.drain_audit();
        let ended_before = self.trips_ended.get(account).copied().unwrap_or(0);
        let r = &mut self.records;
        let previous = r.trip.insert(
            account,
            Trip {
                task,
                ended_before,
                ended: now,
                first_failure: None,
                reached: false,
                aged: false,
                duration_refused: Vec::new(),
                sts: HashMap::new(),
                pages: 0,
                probes: 0,
                logins_before: self.logins_ended[user_of(account)],
            },
        );
        // A trip that starts after the wait has honoured it: should the clock then be set
        // back, the old deadline says nothing about the next one.
        if let Some((until, asked)) = r.throttled_until.remove(account)
            && now < until
        {
            r.violations.push(format!(
                "{account} called again at {now}, before {until} (JumpCloud's Retry-After: {asked}s)"
            ));
        }
        let streak = r.streak.entry(account).or_default();
        match previous {
            // A failure that reached the person is no passing failure: only a person goes on.
            // A trip the audit saw end in between that asked nobody (a locked keyring, a
            // session only a person can sign in) may have ended the streak: start over.
            Some(p)
                if p.first_failure == Some(true)
                    && !p.reached
                    && ended_before == p.ended_before + 1 =>
            {
                streak.failures.push(p.ended);
                let n = streak.failures.len();
                let gap = now - p.ended;
                if gap < least_backoff(n) {
                    r.violations.push(format!(
                        "{account} retried {gap} after failure {n} in a row (the schedule waits at least {})",
                        least_backoff(n)
                    ));
                }
                streak.retries.push((now, n));
                let hour: Vec<_> = streak
                    .retries
                    .iter()
                    .filter(|&&(t, _)| t > now - time::Duration::HOUR)
                    .collect();
                // The first hour is the densest: 30 s, 1, 2, 4, 8, 15 minutes (80 % of each at
                // the least) make 8 retries in it, then the 15 minutes (12 at the least) make 5.
                let capped = hour.iter().filter(|&&&(_, n)| n >= 6).count();
                if hour.len() > 8 || capped > 5 {
                    r.violations.push(format!(
                        "{account} retried {} times within an hour, {capped} of them 15 minutes apart (failures at {:?}, retries at {:?})",
                        hour.len(),
                        streak.failures,
                        streak.retries
                    ));
                }
            }
            _ => *streak = Streak::default(),
        }
    }

    /// Counts the unattended trips that ended, from the manager's audit (trips that asked
    /// JumpCloud and STS nothing are seen only there).
    fn drain_audit(&mut self) {
        use tokio::sync::broadcast::error::TryRecvError;
        let Some(audit) = self.audit.as_mut() else {
            return;
        };
        loop {
            match audit.try_recv() {
                Ok(event) => {
                    if event.kind == samld_proto::AuditKind::Unattended
                        && let Some(account) = event.account
                    {
                        *self.trips_ended.entry(account).or_default() += 1;
                    }
                }
                // Events missed: no count can be trusted, so no streak goes on.
                Err(TryRecvError::Lagged(_)) => self.records.streak.clear(),
                Err(_) => return,
            }
        }
    }

    /// A person acted on `account`: its refusals, backoffs and retry-afters are lifted.
    fn person_acts(&mut self, account: &'static str) {
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!("  a person acts on {account}");
        }
        let r = &mut self.records;
        *r.epoch.entry(account).or_default() += 1;
        r.attempts_since_reset.insert(user_of(account), 0);
        r.streak.remove(account);
        r.trip.remove(account);
        r.throttled_until.remove(account);
        r.duration_refused.remove(account);
    }

    /// A push went unapproved: the session waits for a person, and every account of it
    /// leaves its backoff (samld parks them until someone logs in), so a streak of passing
    /// failures from before does not go on after.
    fn session_needs_person(&mut self, user: &str) {
        for account in ACCOUNTS.into_iter().filter(|a| user_of(a) == user) {
            self.records.trip.remove(account);
            self.records.streak.remove(account);
        }
    }

    /// A draw of how long a call takes: mostly at once, sometimes seconds, so that logouts,
    /// reloads and clock jumps land while calls are in flight.
    fn latency(&mut self) -> Duration {
        if self.rng.u8(..4) == 0 {
            Duration::from_millis(self.rng.u64(100..20_000))
        } else {
            Duration::ZERO
        }
    }
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorldState> {
        self.state.lock().unwrap()
    }

    /// Whether the IdP is called by a person's `samlctl login`: the sim's own task (no tokio
    /// task id) runs only those. Helpers, terminal or not, and samld's trips run in tasks.
    fn at_persons_login() -> bool {
        tokio::task::try_id().is_none()
    }

    /// A sign-in of `user` was refused.
    fn refused(&self, user: &'static str) {
        self.lock().refusals.refused(user, Self::at_persons_login());
    }

    /// A sign-in of `user` is about to send `what` (a password post, a push, a code).
    fn reaches(&self, user: &'static str, what: &str) {
        let persons_login = Self::at_persons_login();
        let mut s = self.lock();
        if let Some(violation) = s.refusals.reaches(user, what, persons_login) {
            s.records.violations.push(violation);
        }
    }

    fn violation(&self, what: String) {
        self.lock().records.violations.push(what);
    }

    fn enter(&self, account: &'static str) {
        let now = self.clock.now();
        let mut s = self.lock();
        // Every call, whatever its answer, belongs to a trip: one that only found the
        // session ended still ends a streak of failures.
        let _ = s.trip(account, now);
        let n = s.records.in_flight.entry(account).or_default();
        *n += 1;
        if *n > 1 {
            let n = *n;
            s.records
                .violations
                .push(format!("{n} trips at once for {account}"));
        }
    }

    /// A call of `account` ends: the trip it belongs to has got this far.
    fn leave(&self, account: &'static str) {
        let now = self.clock.now();
        let task = tokio::task::try_id();
        let mut s = self.lock();
        *s.records.in_flight.entry(account).or_default() -= 1;
        if let Some(trip) = s.records.trip.get_mut(account)
            && Some(trip.task) == task
        {
            trip.ended = now;
        }
    }

    /// [`World::enter`], left however the call ends (a trip can be aborted mid-call).
    fn call(self: &Arc<Self>, account: &'static str) -> InCall {
        self.enter(account);
        self.watch_logout(account);
        InCall {
            world: self.clone(),
            account,
        }
    }

    /// An assertion from `account`'s app: it names the account's user and offers the
    /// account's roles, with a serial so that STS can tell assertions apart.
    fn issue(&self, account: &'static str) -> Secret {
        self.issue_naming(account, email_of(account))
    }

    /// [`World::issue`] with `subject` as the assertion's NameID: what an IdP hands a browser
    /// signed in as someone else.
    fn issue_naming(&self, account: &'static str, subject: &str) -> Secret {
        let mut s = self.lock();
        let serial = s.issued.len() as u64 + 1;
        s.issued.insert(
            serial,
            Issued {
                account,
                aged: None,
            },
        );
        drop(s);
        let provider = format!(
            "arn:aws:iam::{}:saml-provider/JumpCloud",
            &role_arn(account, "")[13..25]
        );
        let roles = [role_arn(account, "Admin"), role_arn(account, "ReadOnly")];
        common::named_assertion(
            &[(&roles[0], &provider), (&roles[1], &provider)],
            None,
            Some((subject, &format!("sim-{serial}"))),
        )
    }

    /// The fault JumpCloud answers with now, if any; a 429 is remembered for `account`.
    fn idp_fault(&self, account: &'static str) -> Option<IdpError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let fault = s.idp_fault;
        let error = match fault {
            IdpFault::None | IdpFault::AfterReach => return None,
            IdpFault::Http5xx => IdpError::UnexpectedStatus {
                request: "GET /userconsole/api/self".into(),
                status: 503,
                message: None,
            },
            IdpFault::Reset => IdpError::Network {
                url: "https://console.jumpcloud.com/".into(),
                reason: "connection reset".into(),
            },
            IdpFault::Throttle => IdpError::UnexpectedStatus {
                request: "GET /userconsole/api/self".into(),
                status: 429,
                message: None,
            },
            IdpFault::RetryAfter => {
                let asked = s.rng.u64(1..7200);
                if s.trip(account, now).is_some() {
                    let until = now + time::Duration::seconds(asked.min(3600) as i64);
                    s.records.throttled_until.insert(account, (until, asked));
                }
                IdpError::Throttled {
                    request: "GET /userconsole/api/self".into(),
                    retry_after: Some(Duration::from_secs(asked)),
                }
            }
        };
        if let Some(trip) = s.trip(account, now) {
            trip.first_failure.get_or_insert(true);
        }
        Some(error)
    }
}

/// Counts a sign-in as ended however it ends (a logout or reload can abort it).
struct LoginEnds<'a>(&'a World, &'static str);

impl Drop for LoginEnds<'_> {
    fn drop(&mut self) {
        *self.0.lock().logins_ended.get_mut(self.1).unwrap() += 1;
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
        // A provider that takes any browser's sign-in as it is: the session manager's check
        // before STS is what must stop one for the wrong person.
        if let Some(signed_in) = io.browser_sign_in() {
            return Ok(signed_in.saml_response);
        }
        let user = user_of(self.account);
        let password = io.password("JumpCloud password").await?;
        if let Some(e) = self.world.idp_fault(self.account) {
            return Err(e);
        }
        self.world.reaches(user, "a password post");
        io.reaching_person(Contact::Password);
        self.contact(user);
        if password.expose() != PASSWORD {
            self.world.refused(user);
            return Err(IdpError::AuthFailed {
                message: "Authentication failed.".into(),
            });
        }
        if user == "bob" {
            let code = io.mfa_code("TOTP code").await?;
            self.world.reaches(user, "a code");
            io.reaching_person(Contact::Code);
            self.after_reach()?;
            if code.expose() != CODE || !self.world.lock().code_ok {
                self.world.refused(user);
                return Err(IdpError::MfaCodeRejected {
                    message: "Invalid code.".into(),
                });
            }
        } else {
            self.world.reaches(user, "a push");
            io.reaching_person(Contact::Push);
            self.after_reach()?;
            let push = self.world.lock().push;
            let refused = match push {
                Push::Approve => None,
                Push::Deny => Some(IdpError::PushDenied),
                Push::Expire => Some(IdpError::PushExpired),
                Push::Unanswered => {
                    tokio::time::sleep(Duration::from_secs(180)).await;
                    Some(IdpError::PushExpired)
                }
            };
            if let Some(e) = refused {
                self.world.lock().session_needs_person(user);
                self.world.refused(user);
                return Err(e);
            }
        }
        let now = self.world.clock.now();
        {
            let mut s = self.world.lock();
            s.alive.insert(user, true);
            s.records.attempts_since_reset.insert(user, 0);
            if let Some(trip) = s.trip(self.account, now) {
                trip.pages += 1;
            }
        }
        Ok(self.world.issue(self.account))
    }

    /// The transient failure that comes after the push or code went out, when scripted.
    fn after_reach(&self) -> Result<(), IdpError> {
        let now = self.world.clock.now();
        let mut s = self.world.lock();
        if s.idp_fault != IdpFault::AfterReach {
            return Ok(());
        }
        if let Some(trip) = s.trip(self.account, now) {
            trip.reached = true;
        }
        Err(IdpError::Network {
            url: "https://console.jumpcloud.com/".into(),
            reason: "connection reset after the push went out".into(),
        })
    }

    /// Counts a login that reaches the person, once per login, when no person is acting.
    fn contact(&self, user: &'static str) {
        let now = self.world.clock.now();
        let mut s = self.world.lock();
        if s.person(self.account) {
            return;
        }
        if let Some(trip) = s.trip(self.account, now) {
            trip.reached = true;
        }
        if s.logged_out.contains(self.account) {
            let account = self.account;
            s.records.violations.push(format!(
                "an unattended login for {account}, which a person logged out, reached {user}"
            ));
        }
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!(
                "  unattended login of {} reaches {user} at {now}",
                self.account
            );
        }
        s.records
            .unattended_contacts
            .entry(user)
            .or_default()
            .push(now);
        // While a person's command on an account of this user runs, the manager takes it
        // as their act at some point inside it: the need starts over then, and this one
        // contact may fall on either side.
        let acting = s.person.iter().any(|(a, &n)| n > 0 && user_of(a) == user);
        let n = s.records.attempts_since_reset.entry(user).or_default();
        *n += 1;
        if *n > 1 && !acting {
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

    /// The session probe, then the app's SAML page when the session lives: the two requests
    /// of a reuse, counted per user and per trip.
    async fn reuse(&self) -> Result<Secret, IdpError> {
        let user = user_of(self.account);
        let now = self.world.clock.now();
        let delay = {
            let mut s = self.world.lock();
            let ended = s.logins_ended[user];
            let running = s.logins_started[user] - ended;
            if let Some(trip) = s.trip(self.account, now) {
                trip.probes += 1;
                // One probe per refresh, one more for a fresh assertion, and one more after
                // each wait for a sign-in of the same session: a sign-in that outlasts one
                // wait (a push nobody answers) is waited for twice.
                let seen = ended - trip.logins_before + running;
                let allowed = 1 + u32::from(trip.aged) + 2 * seen;
                if trip.probes > allowed {
                    let probes = trip.probes;
                    let account = self.account;
                    s.records.violations.push(format!(
                        "one refresh of {account} probed the JumpCloud session {probes} times (allowed {allowed})"
                    ));
                }
            }
            s.latency()
        };
        tokio::time::sleep(delay).await;
        if let Some(e) = self.world.idp_fault(self.account) {
            return Err(e);
        }
        let now = self.world.clock.now();
        {
            let mut s = self.world.lock();
            if !s.alive[user] {
                return Err(IdpError::SessionExpired);
            }
            if let Some(trip) = s.trip(self.account, now) {
                trip.pages += 1;
                // One page per refresh, and one more for the fresh assertion STS asked for.
                let allowed = 1 + u32::from(trip.aged);
                if trip.pages > allowed {
                    let pages = trip.pages;
                    let account = self.account;
                    s.records.violations.push(format!(
                        "one refresh of {account} fetched {pages} SAML pages (allowed {allowed})"
                    ));
                }
            }
        }
        Ok(self.world.issue(self.account))
    }
}

impl IdentityProvider for SimIdp {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        Box::pin(async move {
            let _call = self.world.call(self.account);
            let result = self.reuse().await;
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
            let user = user_of(self.account);
            *self.world.lock().logins_started.get_mut(user).unwrap() += 1;
            let _ends = LoginEnds(&self.world, user);
            self.login_inner(io).await
        })
    }

    fn identities(&self) -> Vec<String> {
        vec![email_of(self.account).to_owned()]
    }
}

/// The invariant that credentials handed out for an account come from an assertion whose
/// subject is that account's identity: STS records the subject behind each key it issues,
/// each hand-out is recorded, and after every step each hand-out is checked.
#[derive(Default)]
struct HandOutSubjects {
    /// The NameID of the assertion each access key was issued for.
    by_key: HashMap<String, String>,
    /// Hand-outs since the last check: the account asked for, and the key it got.
    pending: Vec<(&'static str, String)>,
}

impl HandOutSubjects {
    fn issued(&mut self, access_key_id: &str, subject: &str) {
        self.by_key
            .insert(access_key_id.to_owned(), subject.to_owned());
    }

    fn handed_out(&mut self, account: &'static str, access_key_id: &str) {
        self.pending.push((account, access_key_id.to_owned()));
    }

    /// The hand-outs since the last check whose assertion named someone else.
    fn check(&mut self) -> Vec<String> {
        let mut wrong = Vec::new();
        for (account, key) in self.pending.drain(..) {
            let subject = self.by_key.get(&key).map(String::as_str).unwrap_or("");
            if !subject.eq_ignore_ascii_case(email_of(account)) {
                wrong.push(format!(
                    "credentials handed out for {account} come from an assertion for {subject:?}"
                ));
            }
        }
        wrong
    }
}

struct SimProviders(Arc<World>);

/// One simulated user's JumpCloud session, which the world keeps.
struct SimSession {
    world: Arc<World>,
    user: &'static str,
}

impl ExternalSession for SimSession {
    fn forget(&self) {
        self.world.lock().alive.insert(self.user, false);
    }
}

impl ProviderFactory for SimProviders {
    fn new_session(&self, account: &Account) -> IdpSession {
        IdpSession::External(Arc::new(SimSession {
            world: self.0.clone(),
            user: user_of(&account.name),
        }))
    }

    fn provider(
        &self,
        account: &Account,
        _session: &IdpSession,
    ) -> Result<Arc<dyn IdentityProvider>, IdpError> {
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

/// What STS reads in an assertion: its serial, the subject it names, and the (role,
/// provider) pairs it offers.
fn read_assertion(saml: &Secret) -> (u64, String, Vec<(String, String)>) {
    use base64::Engine;
    let xml = base64::engine::general_purpose::STANDARD
        .decode(saml.expose())
        .expect("base64");
    let xml = String::from_utf8(xml).unwrap();
    let between = |from: &str, to: &str| -> Option<String> {
        let start = xml.find(from)? + from.len();
        Some(xml[start..start + xml[start..].find(to)?].to_owned())
    };
    let serial = between(r#"ID="sim-"#, "\"").and_then(|s| s.parse().ok());
    let name = between("<saml:NameID>", "</saml:NameID>").unwrap_or_default();
    let pairs = xml
        .split("<saml:AttributeValue>")
        .skip(1)
        .filter_map(|v| v.split_once("</saml:AttributeValue>"))
        .filter_map(|(v, _)| v.split_once(','))
        .map(|(r, p)| (r.to_owned(), p.to_owned()))
        .collect();
    (serial.unwrap_or(0), name, pairs)
}

struct SimSts(Arc<World>);

impl SimSts {
    /// STS's answer, decided when the request arrives.
    #[expect(
        clippy::too_many_lines,
        reason = "STS's checks in the order STS makes them, each with the invariant it feeds"
    )]
    fn answer(&self, request: &AssumeRequest) -> Result<AwsCredentials, StsError> {
        let world = &self.0;
        let account = account_of_role(&request.role_arn);
        let now = world.clock.now();
        let key = request.role_arn.clone();
        let mut guard = world.lock();
        let s = &mut *guard;
        let service = |code: &str, message: &str, status: u16| StsError::Service {
            code: code.into(),
            message: message.into(),
            status: Some(status),
        };
        // Whose assertion is it? STS trusts only what the assertion says.
        let (serial, name, pairs) = read_assertion(&request.saml_assertion);
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!(
                "  STS: {key} for {}s with assertion {serial} at {now}",
                request.duration_seconds
            );
        }
        let owner = s.issued.get(&serial).map(|i| i.account);
        if owner != Some(account) || name.to_lowercase() != email_of(account).to_lowercase() {
            s.records.violations.push(format!(
                "STS was asked for {key} with an assertion of {owner:?} naming {name:?}"
            ));
        }
        if !pairs.contains(&(key.clone(), request.principal_arn.clone())) {
            s.records.violations.push(format!(
                "STS was asked for {key} with {}, which the assertion does not pair with it",
                request.principal_arn
            ));
            return Err(service("AccessDenied", "Not authorized", 403));
        }
        let trip = s.trip(account, now).is_some();
        let epoch = s.records.epoch.get(account).copied().unwrap_or(0);
        if trip {
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
            // The table's worst case: 2 calls per refresh, refreshes at least 10 s apart.
            let bound = 2 * (3600 / REFRESH_FLOOR.as_secs() as usize);
            if in_hour > bound {
                s.records
                    .violations
                    .push(format!("{in_hour} STS calls for {key} within an hour"));
            }
            let trip = s.records.trip.get_mut(account).unwrap();
            let calls = trip.sts.entry(key.clone()).or_default();
            *calls += 1;
            let calls = *calls;
            // One call and one retry at most, with a fresh assertion or a shorter duration
            // (a role that refuses the duration after the fresh assertion waits for the
            // backoff: the README's 2 per role per refresh).
            let retry = trip.aged || trip.duration_refused.contains(&key);
            let allowed = 1 + u32::from(retry);
            if calls > allowed {
                s.records.violations.push(format!(
                    "{calls} STS calls for {key} in one refresh (allowed {allowed})"
                ));
            }
        }
        // The role's MaxSessionDuration comes first: STS validates before it looks further.
        if key.ends_with("/ReadOnly") && request.duration_seconds > READONLY_MAX_DURATION {
            if trip {
                let refused = s.records.duration_refused.entry(account).or_default();
                if refused.contains(&key) {
                    s.records.violations.push(format!(
                        "{key} was asked {}s by itself again after refusing it",
                        request.duration_seconds
                    ));
                }
                refused.push(key.clone());
                let trip = s.records.trip.get_mut(account).unwrap();
                trip.duration_refused.push(key.clone());
            }
            return Err(service(
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
                400,
            ));
        }
        let hit = s.sts_role.is_none_or(|r| key.ends_with(r));
        let mode = if hit { s.sts } else { StsMode::Ok };
        let transient = matches!(
            mode,
            StsMode::Http5xx | StsMode::Throttle | StsMode::Network | StsMode::Timeout
        );
        if (transient || mode == StsMode::AccessDenied)
            && let Some(trip) = s.trip(account, now)
        {
            trip.first_failure.get_or_insert(transient);
        }
        match mode {
            StsMode::AccessDenied => {
                if trip {
                    s.records.refused_at_epoch.insert(key, epoch);
                }
                return Err(service("AccessDenied", "scripted", 403));
            }
            StsMode::Http5xx => return Err(service("InternalFailure", "scripted", 500)),
            StsMode::Throttle => return Err(service("Throttling", "Rate exceeded", 400)),
            StsMode::Network | StsMode::Timeout => {
                let reason = if mode == StsMode::Timeout {
                    "operation timed out"
                } else {
                    "connection refused"
                };
                return Err(StsError::Network {
                    endpoint: "https://sts.amazonaws.com".into(),
                    reason: reason.into(),
                });
            }
            StsMode::AgedAssertion => {
                let coin = s.rng.bool();
                match s.issued[&serial].aged {
                    Some(true) => {
                        s.records.violations.push(format!(
                            "STS was handed again an assertion it called too old, for {key}"
                        ));
                        return Err(service("ExpiredTokenException", "Token expired", 400));
                    }
                    Some(false) => {}
                    None => {
                        // The assertion fetched after one STS called too old is fresh: the
                        // age came from a slow sign-in, not from a clock that stays wrong.
                        let after_aged = s.aged_before.remove(account);
                        let aged = coin && !after_aged;
                        let issued = s.issued.get_mut(&serial).unwrap();
                        issued.aged = Some(aged);
                        if aged {
                            s.aged_before.insert(account);
                            if let Some(trip) = s.trip(account, now) {
                                trip.aged = true;
                            }
                            return Err(service("ExpiredTokenException", "Token expired", 400));
                        }
                    }
                }
            }
            StsMode::Ok | StsMode::ShortLived | StsMode::Expired => {}
        }
        let life = match mode {
            StsMode::ShortLived => 1,
            StsMode::Expired => -30,
            _ => 3600,
        };
        let access_key_id = format!("ASIA{:016}", s.keys.len());
        s.subjects.issued(&access_key_id, &name);
        s.keys.insert(
            access_key_id.clone(),
            Issue {
                account,
                role_arn: key,
                user: user_of(account),
            },
        );
        Ok(AwsCredentials {
            access_key_id,
            secret_access_key: Secret::new("secret"),
            session_token: Secret::new("token"),
            expiration: now + time::Duration::seconds(life),
            assumed_role_arn: None,
        })
    }
}

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
            let (delay, timeout) = {
                let mut s = world.lock();
                let hit = s.sts_role.is_none_or(|r| request.role_arn.ends_with(r));
                (s.latency(), hit && s.sts == StsMode::Timeout)
            };
            // A timeout is an answer that never came: the SDK gives up after its limit.
            let wait = if timeout {
                Duration::from_secs(30)
            } else {
                delay
            };
            tokio::time::sleep(wait).await;
            let result = self.answer(request);
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
                person: HashMap::new(),
                rng: fastrand::Rng::with_seed(seed ^ 0x5eed_5eed),
                issued: HashMap::new(),
                keys: HashMap::new(),
                aged_before: Default::default(),
                logged_out: Default::default(),
                logout_watch: LogoutWatch::default(),
                logins_started: HashMap::from([("alice", 0), ("bob", 0)]),
                logins_ended: HashMap::from([("alice", 0), ("bob", 0)]),
                audit: None,
                trips_ended: HashMap::new(),
                records: Records::default(),
                refusals: RefusalWatch::default(),
                subjects: HandOutSubjects::default(),
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
        world.lock().audit = Some(manager.audit().subscribe());
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
        self.world.lock().drain_audit();
    }

    /// Whether a person logged `account` out (and has not logged it in since).
    fn set_logged_out(&mut self, account: &'static str, out: bool) {
        self.logged_out.insert(account, out);
        let mut s = self.world.lock();
        if out {
            s.logged_out.insert(account);
        } else {
            s.logged_out.remove(account);
        }
    }

    /// A person's act on an account: its epoch moves on, and so does its user's need.
    fn person_acts(&self, account: &'static str) {
        self.world.lock().person_acts(account);
    }

    /// A person's command on `account` starts (`true`) or ends: meanwhile its requests are
    /// the person's, not samld's by itself.
    fn person(&self, account: &'static str, acting: bool) {
        let mut s = self.world.lock();
        let n = s.person.entry(account).or_default();
        if acting {
            *n += 1;
        } else {
            *n -= 1;
            // The person acted somewhere inside the command: the need starts over at its end
            // at the latest.
            s.records.attempts_since_reset.insert(user_of(account), 0);
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the table of what can happen next and how likely: one arm per event"
    )]
    async fn step(&mut self) {
        let roll = self.rng.u32(..1000);
        if std::env::var_os("SAMLD_SIM_TRACE").is_some() {
            eprintln!("  roll {roll}");
        }
        match roll {
            0..8 => {
                let account = self.pick_account();
                self.browser_sign_in_as_someone_else(account).await;
            }
            8..400 => {
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
                if self.rng.u8(..4) == 0 {
                    self.terminal_burst(account, role, n).await;
                } else {
                    self.burst(account, role, n).await;
                }
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
                self.person(account, true);
                let _ = self.manager.refresh(account).await;
                self.person(account, false);
                self.settle().await;
            }
            770..795 => {
                if self.rng.u8(..4) == 0 {
                    self.log.push("logout all".into());
                    self.manager.logout(None).unwrap();
                    for a in ACCOUNTS {
                        self.set_logged_out(a, true);
                    }
                } else {
                    let account = self.pick_account();
                    self.log.push(format!("logout {account}"));
                    self.manager.logout(Some(account)).unwrap();
                    self.set_logged_out(account, true);
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
                    // Editing an account is no login: a logout holds.
                    self.person_acts(account);
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
                    IdpFault::RetryAfter,
                    IdpFault::AfterReach,
                ][self.rng.usize(..7)];
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
                    StsMode::Network,
                    StsMode::Timeout,
                    StsMode::AgedAssertion,
                    StsMode::ShortLived,
                    StsMode::Expired,
                ][self.rng.usize(..10)];
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
        self.world
            .lock()
            .refusals
            .person_logs_in(user_of(account), true);
        self.person_acts(account);
        self.person(account, true);
        let save = user_of(account) == "alice" && !*self.keyring.locked.lock().unwrap();
        let result = self
            .manager
            .login(account, person_secrets(force, save), None)
            .await;
        self.person(account, false);
        self.world
            .lock()
            .refusals
            .person_logs_in(user_of(account), false);
        // Only a login that succeeds lifts a logout: one that fails changes nothing.
        if result.is_ok() {
            self.set_logged_out(account, false);
        }
        self.settle().await;
    }

    /// A person finishes a browser sign-in for `account` as the other user: whatever the
    /// provider does with it, no credentials for `account` may come from its assertion.
    async fn browser_sign_in_as_someone_else(&mut self, account: &'static str) {
        let other = if user_of(account) == "alice" {
            "bob@example.com"
        } else {
            "alice@example.com"
        };
        self.log
            .push(format!("browser sign-in for {account} as {other}"));
        self.person_acts(account);
        self.person(account, true);
        let intent = LoginIntent::Browser {
            sign_in: samld_proto::BrowserSignIn {
                saml_response: self.world.issue_naming(account, other),
                cookies: Vec::new(),
                replace_identity: false,
            },
        };
        let result = self.manager.login(account, intent, None).await;
        self.person(account, false);
        // Refused, it changes nothing: a logged-out account stays logged out.
        if result.is_ok() {
            self.world
                .violation(format!("a browser sign-in as {other} logged {account} in"));
            self.set_logged_out(account, false);
        }
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
            if waited > LOGIN_WAIT + Duration::from_millis(10) {
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
                    self.check_identity(account, role, &creds);
                    self.world
                        .lock()
                        .subjects
                        .handed_out(account, &creds.access_key_id);
                }
                Err(e) => {
                    if e.message.contains("PASSWORD") || e.message.contains(PASSWORD) {
                        self.world.violation("an error quotes the password".into());
                    }
                }
            }
        }
    }

    /// `n` helpers on terminals at once, each with the person at its terminal ready to type
    /// the password and code: they may sign the account in (even after a logout), which the
    /// older invariants take as the person's act, but never after a refusal.
    async fn terminal_burst(
        &mut self,
        account: &'static str,
        role: Option<&'static str>,
        n: usize,
    ) {
        self.log
            .push(format!("{n} helpers on terminals for {account} {role:?}"));
        self.person_acts(account);
        self.person(account, true);
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let manager = self.manager.clone();
                tokio::spawn(async move {
                    let mut tty = TerminalPerson;
                    manager.get_credentials(account, role, Some(&mut tty)).await
                })
            })
            .collect();
        for task in tasks {
            if let Ok(creds) = task.await.unwrap() {
                self.check_identity(account, role, &creds);
            }
        }
        self.person(account, false);
        // A sign-in the person starts at a prompt ends a logout, whatever comes of it (and
        // status cannot tell a logout from an account that has never been signed in).
        self.set_logged_out(account, false);
        self.settle().await;
    }

    /// Credentials handed out for `account` (and `role`, when asked) are what STS issued
    /// for that account's role, from an assertion naming that account's user.
    fn check_identity(
        &self,
        account: &'static str,
        role: Option<&'static str>,
        creds: &samld_proto::Credentials,
    ) {
        let s = self.world.lock();
        let violation = match s.keys.get(&creds.access_key_id) {
            None => Some("keys STS never issued".to_owned()),
            Some(issue)
                if issue.account != account
                    || issue.user != user_of(account)
                    || role.is_some_and(|r| !issue.role_arn.ends_with(&format!("/{r}")))
                    || issue.role_arn != creds.role_arn
                    || creds.account != account =>
            {
                Some(format!(
                    "keys STS issued to {} of {} for {} (labelled {} of {})",
                    issue.user, issue.account, issue.role_arn, creds.role_arn, creds.account
                ))
            }
            Some(_) => None,
        };
        drop(s);
        if let Some(what) = violation {
            self.world
                .violation(format!("asked for {account} {role:?}, served {what}"));
        }
    }

    /// The invariants that must hold after every step.
    fn check(&self) {
        let wrong = self.world.lock().subjects.check();
        for violation in wrong {
            self.world.violation(violation);
        }
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
fn person_secrets(force: bool, save_password: bool) -> LoginIntent {
    LoginIntent::Password(PasswordLogin {
        password: Some(Secret::new(PASSWORD)),
        mfa_code: Some(Secret::new(CODE)),
        interactive: false,
        session: HeldSession::from_flags(force, save_password),
    })
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
            self.world
                .lock()
                .refusals
                .person_logs_in(user_of(account), true);
            self.person_acts(account);
            self.person(account, true);
            let mut result = self
                .manager
                .login(account, person_secrets(false, false), None)
                .await;
            if let Err(e) = &result
                && e.code == samld_proto::ErrorCode::Timeout
            {
                // An unanswered push from before may still be running (three minutes, more
                // than login_wait): once it ends, the person's login goes through.
                result = self
                    .manager
                    .login(account, person_secrets(false, false), None)
                    .await;
            }
            self.person(account, false);
            self.world
                .lock()
                .refusals
                .person_logs_in(user_of(account), false);
            result.map_err(|e| format!("healing login of {account} failed: {}", e.message))?;
            self.set_logged_out(account, false);
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
    // A new stretch of seeds every run, so that CI covers more than the same thousand.
    let first = std::env::var("SAMLD_SIM_FIRST_SEED")
        .ok()
        .map(|v| v.parse().expect("SAMLD_SIM_FIRST_SEED is a number"))
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                >> 16
        });
    eprintln!(
        "simulation: seeds {first}..{} ({steps} steps each); this run again: SAMLD_SIM_FIRST_SEED={first} SAMLD_SIM_SEEDS={seeds}",
        first + seeds
    );
    // Each seed stays on its own single-threaded runtime; the seeds share the cores.
    let threads = env_number(
        "SAMLD_SIM_THREADS",
        std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
    )
    .clamp(1, seeds.max(1));
    let next = std::sync::atomic::AtomicU64::new(0);
    let failure: Mutex<Option<(u64, String)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= seeds || failure.lock().unwrap().is_some() {
                        return;
                    }
                    let seed = first + i;
                    if let Err(f) = run_seed(seed, steps) {
                        failure.lock().unwrap().get_or_insert((seed, f));
                        return;
                    }
                }
            });
        }
    });
    if let Some((seed, failure)) = failure.into_inner().unwrap() {
        panic!(
            "{failure}\nreplay: SAMLD_SIM_SEED={seed} SAMLD_SIM_STEPS={steps} cargo test -p samld --test simulation -- --nocapture"
        );
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
