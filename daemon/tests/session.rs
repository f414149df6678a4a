//! The session manager with scripted IdP and STS doubles and a manual clock: single flight,
//! session reuse, role choice, duration fallback, stale assertions, logout and freshness.

mod common;

use common::{ScriptedIdp, ScriptedProviders, ScriptedSts};

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use samld::clock::{Clock, ManualClock};
use samld::future::BoxFuture;
use samld::idp::{IdentityProvider, IdpError, IdpSession};
use samld::manager::{ClientChannel, DaemonOptions, Manager, ProviderFactory};
use samld::sts::StsError;
use samld_proto::{
    AccountState, AuditKind, ErrorCode, HeldSession, LoginIntent, PasswordLogin, Secret, SecretKind,
};
use time::OffsetDateTime;
use time::macros::datetime;

const ADMIN: &str = "arn:aws:iam::123456789012:role/Admin";
const READ: &str = "arn:aws:iam::123456789012:role/ReadOnly";

/// The IdP of these tests: offering Admin and ReadOnly, its session ended.
fn scripted_idp() -> Arc<ScriptedIdp> {
    Arc::new(ScriptedIdp::offering(&[ADMIN, READ]))
}

/// A client that answers password questions with a fixed value and records messages.
struct ScriptedClient {
    password: Option<&'static str>,
    asked: Vec<SecretKind>,
    told: Vec<String>,
}

impl ScriptedClient {
    fn answering(password: Option<&'static str>) -> Self {
        Self {
            password,
            asked: vec![],
            told: vec![],
        }
    }
}

impl ClientChannel for ScriptedClient {
    fn ask<'a>(
        &'a mut self,
        kind: SecretKind,
        _prompt: &'a str,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        self.asked.push(kind);
        let answer = self.password.map(Secret::new).ok_or(IdpError::Cancelled);
        Box::pin(async move { answer })
    }

    fn tell<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()> {
        self.told.push(message.to_string());
        Box::pin(async {})
    }
}

struct Harness {
    daemon: Arc<Manager>,
    idp: Arc<ScriptedIdp>,
    sts: Arc<ScriptedSts>,
    clock: Arc<ManualClock>,
}

const START: OffsetDateTime = datetime!(2026-11-28 10:00 UTC);

fn harness_with(config: &str, idp: Arc<ScriptedIdp>, lifetime: Duration) -> Harness {
    harness_with_options(config, idp, lifetime, |_| {})
}

/// [`harness_with`], with the manager's options (password store, notifications) adjusted.
fn harness_with_options(
    config: &str,
    idp: Arc<ScriptedIdp>,
    lifetime: Duration,
    adjust: impl FnOnce(&mut DaemonOptions),
) -> Harness {
    let config = samld_config::parse(config, Path::new("/test/config.toml")).expect("config");
    let clock = Arc::new(ManualClock::new(START));
    let sts = ScriptedSts::new(clock.clone(), lifetime);
    let mut options = DaemonOptions::new("/test/config.toml".into());
    options.fresh_wait = Duration::from_secs(5);
    adjust(&mut options);
    let daemon = Manager::new(
        config,
        options,
        clock.clone(),
        sts.clone(),
        ScriptedProviders::serving(idp.clone()),
    );
    Harness {
        daemon,
        idp,
        sts,
        clock,
    }
}

const CONFIG: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
role = "Admin"
session_duration = "2h"
"#;

fn harness() -> Harness {
    harness_with(CONFIG, scripted_idp(), Duration::from_secs(3600))
}

async fn login(h: &Harness) {
    let mut client = ScriptedClient::answering(Some("correct horse"));
    let outcome = h
        .daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            Some(&mut client),
        )
        .await
        .expect("login");
    assert!(!outcome.reused_session);
    assert_eq!(client.asked, [SecretKind::Password]);
    assert_eq!(client.told, ["Approve the push"]);
}

fn state(h: &Harness) -> AccountState {
    h.daemon.status(Some("prod")).unwrap().accounts[0].state
}

#[tokio::test]
async fn login_then_credentials_come_from_memory() {
    let h = harness();
    login(&h).await;
    assert_eq!(state(&h), AccountState::Active);
    // The default role was assumed during login; asking for it needs no trip anywhere.
    let calls = h.sts.calls.load(Ordering::SeqCst);
    let creds = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_eq!(creds.role_arn, ADMIN);
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), calls);
    assert_eq!(creds.expiration, "2026-11-28T11:00:00Z");
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_login_reuses_the_live_session() {
    let h = harness();
    login(&h).await;
    let mut client = ScriptedClient::answering(None);
    let outcome = h
        .daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            Some(&mut client),
        )
        .await
        .unwrap();
    assert!(outcome.reused_session);
    assert!(client.asked.is_empty(), "no secret asked for");
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_wrong_password_is_reported_and_changes_nothing() {
    let h = harness();
    let mut client = ScriptedClient::answering(Some("wrong"));
    let err = h
        .daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            Some(&mut client),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AuthFailed);
    assert!(!err.message.contains("wrong"), "{}", err.message);
    assert_eq!(state(&h), AccountState::LoggedOut);
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn not_logged_in_is_explained() {
    let h = harness();
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn);
    assert_eq!(
        err.message,
        "prod is not logged in; run: samlctl login prod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_callers_shares_one_trip() {
    let h = harness();
    login(&h).await;
    let fetches = h.idp.session_fetches.load(Ordering::SeqCst);
    let calls = h.sts.calls.load(Ordering::SeqCst);
    // Hold the IdP so that callers pile up behind the first trip; those that come after
    // it find the credentials in memory. Either way there is one trip.
    let gate = h.idp.gate.write().await;
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let daemon = h.daemon.clone();
            tokio::spawn(
                async move { daemon.get_credentials("prod", Some("ReadOnly"), None).await },
            )
        })
        .collect();
    tokio::task::yield_now().await;
    drop(gate);
    let mut keys = std::collections::HashSet::new();
    for c in callers {
        keys.insert(c.await.unwrap().unwrap().access_key_id);
    }
    assert_eq!(keys.len(), 1, "everyone got the same credentials");
    assert_eq!(h.idp.session_fetches.load(Ordering::SeqCst) - fetches, 1);
    assert_eq!(h.sts.calls.load(Ordering::SeqCst) - calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_shares_a_failure_too() {
    let h = harness();
    // Logged in once, then the session died: the refresh fails, and 50 callers must not
    // turn that into 50 attempts.
    login(&h).await;
    h.idp.end_session();
    h.clock.advance(Duration::from_secs(3600));
    let fetches = h.idp.session_fetches.load(Ordering::SeqCst);
    let gate = h.idp.gate.write().await;
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let daemon = h.daemon.clone();
            tokio::spawn(async move { daemon.get_credentials("prod", None, None).await })
        })
        .collect();
    tokio::task::yield_now().await;
    drop(gate);
    for c in callers {
        let err = c.await.unwrap().unwrap_err();
        assert_eq!(err.code, ErrorCode::NeedsLogin, "{}", err.message);
    }
    assert_eq!(h.idp.session_fetches.load(Ordering::SeqCst) - fetches, 1);
    assert_eq!(state(&h), AccountState::NeedsLogin);
}

#[tokio::test]
async fn credentials_in_the_refresh_window_are_refreshed_with_the_session() {
    let h = harness();
    login(&h).await;
    let first = h.daemon.get_credentials("prod", None, None).await.unwrap();
    // 45 minutes into a 60-minute session: inside refresh_before (20m).
    h.clock.advance(Duration::from_secs(45 * 60));
    let second = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_eq!(second.expiration, "2026-11-28T11:45:00Z");
    assert_eq!(
        h.idp.password_logins.load(Ordering::SeqCst),
        1,
        "no second password"
    );
}

#[tokio::test]
async fn old_credentials_are_served_while_valid_when_refresh_fails() {
    let h = harness();
    login(&h).await;
    let first = h.daemon.get_credentials("prod", None, None).await.unwrap();
    h.idp.end_session();
    h.clock.advance(Duration::from_secs(45 * 60));
    let again = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_eq!(again.access_key_id, first.access_key_id);
    let status = h.daemon.status(Some("prod")).unwrap();
    assert_eq!(status.accounts[0].state, AccountState::NeedsLogin);
    // Past expiry they are never handed out.
    h.clock.advance(Duration::from_secs(15 * 60));
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NeedsLogin);
    assert!(
        err.message.contains("samlctl login prod"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn other_roles_by_name_or_arn_and_unknown_roles_listed() {
    let h = harness();
    login(&h).await;
    let by_name = h
        .daemon
        .get_credentials("prod", Some("ReadOnly"), None)
        .await
        .unwrap();
    assert_eq!(by_name.role_arn, READ);
    let by_arn = h
        .daemon
        .get_credentials("prod", Some(READ), None)
        .await
        .unwrap();
    assert_eq!(by_arn.access_key_id, by_name.access_key_id);
    let err = h
        .daemon
        .get_credentials("prod", Some("Nope"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownRole);
    assert!(
        err.message.contains(ADMIN) && err.message.contains(READ),
        "{}",
        err.message
    );
    // A refresh keeps every role in use fresh, with one assertion.
    let fetches = h.idp.session_fetches.load(Ordering::SeqCst);
    let calls = h.sts.calls.load(Ordering::SeqCst);
    let roles = h.daemon.refresh("prod").await.unwrap();
    assert_eq!(roles.len(), 2);
    assert_eq!(h.idp.session_fetches.load(Ordering::SeqCst) - fetches, 1);
    assert_eq!(h.sts.calls.load(Ordering::SeqCst) - calls, 2);
}

#[tokio::test]
async fn duration_is_capped_and_a_refusal_falls_back_to_an_hour_once() {
    let mut idp = scripted_idp();
    Arc::get_mut(&mut idp).unwrap().session_duration = Some(5400);
    let config = CONFIG.replace("\"2h\"", "\"4h\"");
    let h = harness_with(&config, idp, Duration::from_secs(3600));
    h.sts.faults.lock().unwrap().push_back(StsError::Service {
        code: "ValidationError".into(),
        message: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            .into(),
        status: Some(400),
    });
    login(&h).await;
    h.daemon.refresh("prod").await.unwrap();
    // 4h configured, capped to the assertion's 5400, refused, then 3600 from then on.
    assert_eq!(*h.sts.durations.lock().unwrap(), [5400, 3600, 3600]);
}

#[tokio::test]
async fn a_stale_assertion_is_fetched_again_once() {
    let h = harness();
    h.sts.faults.lock().unwrap().push_back(StsError::Service {
        code: "ExpiredTokenException".into(),
        message: "Token must be redeemed within 5 minutes of issuance".into(),
        status: Some(400),
    });
    login(&h).await;
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), 2);
    // One probe before the password login, one fresh assertion after STS's refusal.
    assert_eq!(h.idp.session_fetches.load(Ordering::SeqCst), 2);
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_assertion_sts_called_too_old_is_not_handed_to_the_next_role() {
    let h = harness();
    login(&h).await;
    h.daemon
        .get_credentials("prod", Some(READ), None)
        .await
        .unwrap();
    // The first role spends its one retry on a shorter duration, then STS calls the
    // assertion too old: that role waits for the next refresh, but the other one must not
    // be sent the assertion STS just refused.
    {
        let mut faults = h.sts.faults.lock().unwrap();
        faults.push_back(StsError::Service {
            code: "ValidationError".into(),
            message:
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                    .into(),
            status: Some(400),
        });
        faults.push_back(StsError::Service {
            code: "ExpiredTokenException".into(),
            message: "Token must be redeemed within 5 minutes of issuance".into(),
            status: Some(400),
        });
    }
    let fetches = h.idp.session_fetches.load(Ordering::SeqCst);
    let calls = h.sts.calls.load(Ordering::SeqCst);
    let err = h.daemon.refresh("prod").await.unwrap_err();
    assert!(
        err.message.contains("ExpiredTokenException"),
        "{}",
        err.message
    );
    assert_eq!(h.sts.calls.load(Ordering::SeqCst) - calls, 3);
    // The refresh's assertion, and a fresh one for the second role.
    assert_eq!(h.idp.session_fetches.load(Ordering::SeqCst) - fetches, 2);
}

#[tokio::test]
async fn sts_errors_carry_their_code_and_message() {
    let h = harness();
    h.sts.faults.lock().unwrap().push_back(StsError::Service {
        code: "AccessDenied".into(),
        message: "Not authorized to perform sts:AssumeRoleWithSAML".into(),
        status: Some(403),
    });
    let mut client = ScriptedClient::answering(Some("correct horse"));
    let err = h
        .daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            Some(&mut client),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::StsError);
    assert!(err.message.contains("AccessDenied"), "{}", err.message);
    assert!(err.message.contains("Not authorized"), "{}", err.message);
    let status = h.daemon.status(Some("prod")).unwrap();
    let last = status.accounts[0].last_error.as_ref().expect("last error");
    assert_eq!(last.code, ErrorCode::StsError);
}

#[tokio::test]
async fn logout_sticks() {
    let h = harness();
    login(&h).await;
    h.daemon.logout(Some("prod")).unwrap();
    assert_eq!(state(&h), AccountState::LoggedOut);
    let fetches = h.idp.session_fetches.load(Ordering::SeqCst);
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn);
    assert_eq!(
        h.idp.session_fetches.load(Ordering::SeqCst),
        fetches,
        "nothing contacted"
    );
}

#[tokio::test]
async fn a_secret_from_the_request_wins_and_none_is_asked() {
    let h = harness();
    let mut client = ScriptedClient::answering(None);
    h.daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin {
                password: Some(Secret::new("correct horse")),
                ..PasswordLogin::default()
            }),
            Some(&mut client),
        )
        .await
        .unwrap();
    assert!(client.asked.is_empty());
}

#[tokio::test]
async fn password_command_is_used_without_a_client() {
    let config = format!("{CONFIG}password_command = \"printf 'correct horse\\\\n'\"\n");
    let h = harness_with(&config, scripted_idp(), Duration::from_secs(3600));
    h.daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            None,
        )
        .await
        .expect("password from the command");
    let failing = format!("{CONFIG}password_command = \"exit 3\"\n");
    let h = harness_with(&failing, scripted_idp(), Duration::from_secs(3600));
    let err = h
        .daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("password_command"), "{}", err.message);
}

#[tokio::test]
async fn config_change_keeps_unchanged_sessions() {
    let h = harness();
    login(&h).await;
    let two = format!(
        "{CONFIG}\n[accounts.other]\nurl = \"https://sso.jumpcloud.com/saml2/o\"\nusername = \"b@example.com\"\n"
    );
    h.daemon
        .apply_config(samld_config::parse(&two, Path::new("/test/config.toml")).unwrap());
    assert_eq!(state(&h), AccountState::Active, "prod kept its session");
    let changed = two.replace("\"2h\"", "\"3h\"");
    h.daemon
        .apply_config(samld_config::parse(&changed, Path::new("/test/config.toml")).unwrap());
    assert_eq!(
        state(&h),
        AccountState::LoggedOut,
        "prod's settings changed"
    );
}

// ---- Background refresh, backoff and unattended login, on the manual clock ----

/// Waits (bounded) until the account's status satisfies `done`.
async fn wait_for_status(h: &Harness, done: impl Fn(&samld_proto::AccountStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = h.daemon.status(Some("prod")).unwrap().accounts.remove(0);
        if done(&status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never got there: {status:#?}"
        );
        tokio::task::yield_now().await;
    }
}

fn start_scheduler(h: &Harness) -> tokio::task::JoinHandle<()> {
    tokio::spawn(h.daemon.clone().run_scheduler())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_refreshes_before_expiry_without_any_request() {
    let h = harness();
    login(&h).await;
    let scheduler = start_scheduler(&h);
    let first = h.daemon.get_credentials("prod", None, None).await.unwrap();
    // 39 minutes in: nothing is due yet (refresh at expiry - 20m = 40m, minus jitter ≤ 30s).
    h.clock.advance(Duration::from_secs(39 * 60));
    tokio::task::yield_now().await;
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), 1);
    h.clock.advance(Duration::from_secs(60));
    h.sts.wait_for_calls(2).await;
    wait_for_status(&h, |s| s.state == AccountState::Active).await;
    let second = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_eq!(
        h.idp.password_logins.load(Ordering::SeqCst),
        1,
        "no password"
    );
    scheduler.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waking_from_suspend_past_expiry_refreshes_at_once() {
    let h = harness();
    login(&h).await;
    let scheduler = start_scheduler(&h);
    // The laptop slept for three hours: the wall clock jumps, credentials are long expired.
    h.clock.set(START + Duration::from_secs(3 * 3600));
    h.sts.wait_for_calls(2).await;
    let creds = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_eq!(creds.expiration, "2026-11-28T14:00:00Z");
    scheduler.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_back_off_and_old_credentials_are_served() {
    let h = harness();
    login(&h).await;
    let first = h.daemon.get_credentials("prod", None, None).await.unwrap();
    let scheduler = start_scheduler(&h);
    h.sts.faults.lock().unwrap().push_back(StsError::Service {
        code: "Throttling".into(),
        message: "Rate exceeded".into(),
        status: Some(400),
    });
    h.clock.advance(Duration::from_secs(40 * 60));
    h.sts.wait_for_calls(2).await;
    wait_for_status(&h, |s| s.state == AccountState::Error).await;
    let status = h.daemon.status(Some("prod")).unwrap().accounts.remove(0);
    let last = status.last_error.expect("last error shown");
    assert!(last.message.contains("Throttling"), "{}", last.message);
    let retry_at = time::OffsetDateTime::parse(
        status.next_retry_at.as_deref().expect("next retry shown"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let delay = retry_at - h.clock.now();
    assert!(
        delay >= time::Duration::seconds(23) && delay <= time::Duration::seconds(37),
        "{delay}"
    );
    // Still inside their life, the old credentials keep being served.
    let again = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_eq!(again.access_key_id, first.access_key_id);
    // The retry happens by itself when it is due, and clears the error.
    h.clock.advance(Duration::from_secs(40));
    h.sts.wait_for_calls(3).await;
    wait_for_status(&h, |s| {
        s.state == AccountState::Active && s.last_error.is_none()
    })
    .await;
    scheduler.abort();
}

/// The next retry the account shows while it backs off, once it is later than `after`.
async fn next_retry_after(h: &Harness, after: OffsetDateTime) -> OffsetDateTime {
    let parse = |s: &samld_proto::AccountStatus| {
        s.next_retry_at.as_deref().map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        })
    };
    wait_for_status(h, |s| parse(s).is_some_and(|t| t > after)).await;
    parse(&h.daemon.status(Some("prod")).unwrap().accounts[0]).unwrap()
}

/// The README's promise for a failure that persists: retries 30 s, 1, 2, 4, 8, 15, 15…
/// minutes apart (±20% jitter), so at most 8 in the first hour. A backoff that forgot its
/// earlier attempts (in the policy or in the trip that feeds it) would retry every 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_persists_backs_off_as_the_readme_promises() {
    let h = harness();
    login(&h).await;
    let scheduler = start_scheduler(&h);
    h.sts
        .faults
        .lock()
        .unwrap()
        .extend((0..20).map(|_| StsError::Service {
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
            status: Some(400),
        }));
    // The scheduled refresh is the first failure.
    h.clock.advance(Duration::from_secs(40 * 60));
    h.sts.wait_for_calls(2).await;
    let first_failure = h.clock.now();
    let mut failed_at = first_failure;
    let mut retries = Vec::new();
    for (i, minutes) in [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]
        .into_iter()
        .enumerate()
    {
        let retry_at = next_retry_after(&h, failed_at).await;
        // Shown to the second: the gap is exact to within that.
        let gap = (retry_at - failed_at).as_seconds_f64();
        let promised = minutes * 60.0;
        assert!(
            (promised * 0.8 - 1.0..=promised * 1.2).contains(&gap),
            "retry {}: {gap} s after the last failure, promised {promised} s ±20%",
            i + 1
        );
        let calls = h.sts.calls.load(Ordering::SeqCst);
        failed_at = retry_at + Duration::from_secs(1);
        h.clock.set(failed_at);
        h.sts.wait_for_calls(calls + 1).await;
        retries.push(failed_at);
    }
    let first_hour = retries
        .iter()
        .filter(|&&t| t <= first_failure + Duration::from_secs(3600))
        .count();
    assert!(first_hour <= 8, "{first_hour} retries in the first hour");
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), 2 + retries.len());
    scheduler.abort();
}

const UNATTENDED: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
role = "Admin"
mfa = "push"
password_command = "printf 'correct horse'"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_renewed_unattended() {
    let h = harness_with(UNATTENDED, scripted_idp(), Duration::from_secs(3600));
    // Never logged in: the first helper call logs in by itself.
    let first = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
    let scheduler = start_scheduler(&h);
    h.idp.end_session();
    h.clock.advance(Duration::from_secs(40 * 60));
    h.sts.wait_for_calls(2).await;
    wait_for_status(&h, |s| s.state == AccountState::Active).await;
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 2);
    let second = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    scheduler.abort();
}

/// The notifications sent to the user (title, body), in the order they were sent.
type Told = Arc<Mutex<Vec<(String, String)>>>;

/// [`harness_with`] for an hour's credentials, keeping every notification to the user.
fn harness_with_notifications(config: &str) -> (Harness, Told) {
    let told = Told::default();
    let sink = told.clone();
    let h = harness_with_options(
        config,
        scripted_idp(),
        Duration::from_secs(3600),
        |options| {
            options.notify_user = Some(Arc::new(move |title: &str, body: &str| {
                sink.lock()
                    .unwrap()
                    .push((title.to_string(), body.to_string()));
            }));
        },
    );
    (h, told)
}

/// [`UNATTENDED`] with a `password_command` that prints a password JumpCloud rejects.
fn stale_password_command() -> String {
    UNATTENDED.replace("correct horse", "old password")
}

/// A helper without a terminal: samld signs in by itself with the stale password, refused.
async fn unattended_password_rejected(h: &Harness) {
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AuthFailed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_password_is_never_retried_and_the_user_is_told() {
    let (h, told) = harness_with_notifications(&stale_password_command());
    let scheduler = start_scheduler(&h);
    unattended_password_rejected(&h).await;
    wait_for_status(&h, |s| s.state == AccountState::NeedsLogin).await;
    // Hours pass and helpers keep asking: no second attempt with the bad password.
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(3600));
        let err = h
            .daemon
            .get_credentials("prod", None, None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NeedsLogin);
        assert!(
            err.message.contains("samlctl login prod"),
            "{}",
            err.message
        );
    }
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "one notification: {told:?}");
    assert!(told[0].0.contains("prod"), "{told:?}");
    assert!(told[0].1.contains("samlctl login prod"), "{told:?}");
    // The user logs in (with the new password on stdin): the account works again.
    h.daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin {
                password: Some(Secret::new("correct horse")),
                ..PasswordLogin::default()
            }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(state(&h), AccountState::Active);
    scheduler.abort();
}

/// After a refusal, a helper on a terminal, `samlctl refresh` and a config change each send
/// nothing: only the person's `samlctl login` signs in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_refusal_only_the_persons_login_signs_in_again() {
    let config = stale_password_command();
    let h = harness_with(&config, scripted_idp(), Duration::from_secs(3600));
    unattended_password_rejected(&h).await;
    let refused = |e: samld_proto::WireError| {
        assert_eq!(e.code, ErrorCode::NeedsLogin, "{}", e.message);
        assert!(e.message.contains("samlctl login prod"), "{}", e.message);
        assert!(!e.message.contains("signs in again"), "{}", e.message);
    };
    // The person at the terminal would type the right password: they are not asked.
    let mut tty = ScriptedClient::answering(Some("correct horse"));
    let err = h.daemon.get_credentials("prod", None, Some(&mut tty)).await;
    refused(err.unwrap_err());
    assert!(tty.asked.is_empty(), "{:?}", tty.asked);
    refused(h.daemon.refresh("prod").await.unwrap_err());
    let mut changed = samld_config::parse(&config, Path::new("/test/config.toml")).unwrap();
    changed.accounts.get_mut("prod").unwrap().notifications = false;
    h.daemon.apply_config(changed);
    refused(
        h.daemon
            .get_credentials("prod", None, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
    // The person logs in with the new password.
    let intent = LoginIntent::Password(PasswordLogin {
        password: Some(Secret::new("correct horse")),
        ..PasswordLogin::default()
    });
    h.daemon.login("prod", intent, None).await.unwrap();
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 2);
    assert_eq!(state(&h), AccountState::Active);
}

const BROWSER: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
role = "Admin"
login = "browser"
password_command = "printf 'correct horse'"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_account_is_only_ever_signed_in_by_the_browser() {
    let (h, told) = harness_with_notifications(BROWSER);
    let scheduler = start_scheduler(&h);
    // A helper on a terminal is not asked for a password, even with a password_command.
    let mut tty = ScriptedClient::answering(Some("correct horse"));
    let err = h
        .daemon
        .get_credentials("prod", None, Some(&mut tty))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NeedsLogin);
    assert_eq!(
        err.message,
        "prod signs in through a browser (login = \"browser\"); run: samlctl login prod --browser"
    );
    assert!(tty.asked.is_empty());
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 0);

    // The browser's sign-in: its assertion is used as is.
    let signed_in = samld_proto::BrowserSignIn {
        saml_response: h.idp.current(),
        cookies: Vec::new(),
        replace_identity: false,
    };
    let outcome = h
        .daemon
        .login("prod", LoginIntent::Browser { sign_in: signed_in }, None)
        .await
        .unwrap();
    assert!(!outcome.reused_session, "a browser sign-in is a login");
    assert_eq!(h.idp.browser_logins.load(Ordering::SeqCst), 1);
    assert_eq!(state(&h), AccountState::Active);

    // `samlctl login --browser` asks to reuse the live session first: no browser needed.
    let reused = h
        .daemon
        .login("prod", LoginIntent::ReuseOnly, None)
        .await
        .unwrap();
    assert!(reused.reused_session);

    // The IdP ends the session: the next refresh finds it gone, and samld waits for the
    // person (and says so once) instead of logging in with the password it could get.
    h.idp.end_session();
    h.clock.advance(Duration::from_secs(45 * 60));
    wait_for_status(&h, |s| s.state == AccountState::NeedsLogin).await;
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(3600));
        let err = h
            .daemon
            .get_credentials("prod", None, None)
            .await
            .unwrap_err();
        assert!(
            err.message.contains("samlctl login prod --browser"),
            "{}",
            err.message
        );
    }
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 0);
    assert_eq!(h.idp.browser_logins.load(Ordering::SeqCst), 1);
    // Asked to reuse a session that is gone, samld signs nothing in and says so.
    let err = reuse_finds_no_session(&h).await;
    assert_eq!(err.message, "no live JumpCloud session to reuse for prod");
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 0);
    // That was samlctl's question before it opens a browser, not a login: the audit has
    // the helper's attempt, the browser login and the reuse that found a session, no more.
    let logins: Vec<Option<String>> = (h.daemon.audit().query(Some("prod"), None).0)
        .into_iter()
        .filter(|event| event.kind == AuditKind::Login)
        .map(|event| event.error)
        .collect();
    assert_eq!(logins.len(), 3, "{logins:?}");
    assert_eq!(logins[1..], [None, None]);
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "one notification: {told:?}");
    assert!(
        told[0].1.contains("run: samlctl login prod --browser"),
        "{told:?}"
    );
    scheduler.abort();
}

#[tokio::test]
async fn a_logout_sticks_even_for_a_helper_on_a_terminal() {
    let h = harness();
    login(&h).await;
    h.daemon.logout(Some("prod")).unwrap();
    let logins = h.idp.password_logins.load(Ordering::SeqCst);
    let mut tty = ScriptedClient::answering(Some("correct horse"));
    let err = h
        .daemon
        .get_credentials("prod", None, Some(&mut tty))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn);
    assert!(
        err.message.contains("run: samlctl login prod"),
        "{}",
        err.message
    );
    assert!(tty.asked.is_empty(), "{:?}", tty.asked);
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), logins);
    assert_eq!(state(&h), AccountState::LoggedOut);
}

// ---- The keyring: --save-password, unattended logins with a saved password ----

const PUSH_ONLY: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
role = "Admin"
mfa = "push"
"#;

/// A harness for `config` whose manager keeps passwords in the returned in-memory store.
fn harness_with_store(config: &str) -> (Harness, Arc<samld::keyring::InMemoryStore>) {
    let store = Arc::new(samld::keyring::InMemoryStore::new());
    let kept = store.clone();
    let h = harness_with_options(
        config,
        scripted_idp(),
        Duration::from_secs(3600),
        |options| options.password_store = Some(kept),
    );
    (h, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_password_lets_samld_log_in_again_by_itself() {
    let (h, store) = harness_with_store(PUSH_ONLY);
    let mut client = ScriptedClient::answering(Some("correct horse"));
    h.daemon
        .login(
            "prod",
            LoginIntent::Password(PasswordLogin {
                session: HeldSession::SignInAndSavePassword,
                ..PasswordLogin::default()
            }),
            Some(&mut client),
        )
        .await
        .unwrap();
    assert!(
        client.told.iter().any(|m| m.contains("Saved the password")),
        "{:?}",
        client.told
    );
    assert_eq!(
        samld::keyring::PasswordStore::get(&*store, "prod", "alice@example.com")
            .unwrap()
            .map(|p| p.expose().to_string()),
        Some("correct horse".to_string())
    );
    // The session ends; the next refresh logs in with the saved password, nobody typing.
    h.idp.end_session();
    h.clock.advance(Duration::from_secs(45 * 60));
    let creds = h.daemon.get_credentials("prod", None, None).await.unwrap();
    assert_eq!(creds.expiration, "2026-11-28T11:45:00Z");
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_saved_password_is_removed_and_never_retried() {
    let (h, store) = harness_with_store(PUSH_ONLY);
    samld::keyring::PasswordStore::set(
        &*store,
        "prod",
        "alice@example.com",
        &Secret::new("stale password"),
    )
    .unwrap();
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AuthFailed);
    assert!(
        store.is_empty(),
        "the refused password is gone from the keyring"
    );
    for _ in 0..3 {
        h.clock.advance(Duration::from_secs(3600));
        let err = h
            .daemon
            .get_credentials("prod", None, None)
            .await
            .unwrap_err();
        assert!(
            err.message.contains("samlctl login prod"),
            "{}",
            err.message
        );
    }
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_saved_password_the_helper_is_told_to_log_in() {
    let (h, _store) = harness_with_store(PUSH_ONLY);
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn);
    assert_eq!(
        err.message,
        "prod is not logged in; run: samlctl login prod"
    );
    // Once known to be empty, the keyring is not asked again.
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn);
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 0);
}

// ---- The life of a sign-in: a failed login, a session without accounts, roles held ----

/// `samlctl login --browser`'s first question, asked when there is no session to reuse.
async fn reuse_finds_no_session(h: &Harness) -> samld_proto::WireError {
    let err = h
        .daemon
        .login("prod", LoginIntent::ReuseOnly, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NeedsLogin, "{}", err.message);
    err
}

/// `config`, parsed as the watcher would hand it over.
fn parsed(config: &str) -> samld_config::Config {
    samld_config::parse(config, Path::new("/test/config.toml")).unwrap()
}

#[tokio::test]
async fn a_failed_login_leaves_a_logged_out_account_logged_out() {
    // With a password_command samld could sign prod in by itself: only the logout stops it.
    let config = format!("{CONFIG}password_command = \"printf 'correct horse'\"\n");
    let h = harness_with(&config, scripted_idp(), Duration::from_secs(3600));
    let password_login = || {
        h.daemon.login(
            "prod",
            LoginIntent::Password(PasswordLogin::default()),
            None,
        )
    };
    password_login().await.expect("login with password_command");
    h.daemon.logout(Some("prod")).unwrap();
    // `samlctl login --browser` asks to reuse a session first; there is none.
    reuse_finds_no_session(&h).await;
    assert_eq!(state(&h), AccountState::LoggedOut);
    let (logins, calls) = (
        h.idp.password_logins.load(Ordering::SeqCst),
        h.sts.calls.load(Ordering::SeqCst),
    );
    let err = h
        .daemon
        .get_credentials("prod", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn, "{}", err.message);
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), logins);
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), calls);
    // A login that succeeds lifts the logout.
    password_login().await.expect("login with password_command");
    assert_eq!(state(&h), AccountState::Active);
}

#[tokio::test]
async fn a_session_ends_with_the_last_account_in_the_config() {
    let h = harness();
    login(&h).await;
    h.daemon.apply_config(parsed(""));
    assert!(
        !*h.idp.session_alive.lock().unwrap(),
        "the IdP session was signed out with prod"
    );
    // The same user under another name signs in again.
    h.daemon
        .apply_config(parsed(&CONFIG.replace("accounts.prod", "accounts.dev")));
    let err = h
        .daemon
        .get_credentials("dev", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLoggedIn, "{}", err.message);
    assert_eq!(h.idp.password_logins.load(Ordering::SeqCst), 1);
}

/// A factory that makes a new scripted IdP session for every session slot of the manager,
/// as the production one makes a new cookie jar, and builds each provider on the session it
/// is given: which session an account signs in with shows who owns it.
#[derive(Default)]
struct SessionPerSlot {
    made: Mutex<Vec<Arc<ScriptedIdp>>>,
}

impl ProviderFactory for SessionPerSlot {
    fn new_session(&self, _account: &samld_config::Account) -> IdpSession {
        let idp = scripted_idp();
        self.made.lock().unwrap().push(idp.clone());
        IdpSession::External(idp)
    }

    fn provider(
        &self,
        _account: &samld_config::Account,
        session: &IdpSession,
    ) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        let IdpSession::External(session) = session else {
            panic!("a session this factory did not make");
        };
        let made = self.made.lock().unwrap();
        let idp = made
            .iter()
            .find(|idp| std::ptr::addr_eq(Arc::as_ptr(idp), Arc::as_ptr(session)))
            .expect("a session this factory made");
        Ok(idp.clone())
    }
}

#[tokio::test]
async fn the_manager_owns_each_idp_session_and_drops_it_with_its_last_account() {
    let clock = Arc::new(ManualClock::new(START));
    let sts = ScriptedSts::new(clock.clone(), Duration::from_secs(3600));
    let factory = Arc::new(SessionPerSlot::default());
    let two = CONFIG.to_owned() + &CONFIG.replace("accounts.prod", "accounts.dev");
    let h = Harness {
        daemon: Manager::new(
            parsed(&two),
            DaemonOptions::new("/test/config.toml".into()),
            clock.clone(),
            sts.clone(),
            factory.clone(),
        ),
        idp: scripted_idp(),
        sts,
        clock,
    };
    let made = || factory.made.lock().unwrap().clone();
    assert_eq!(made().len(), 1, "prod and dev share one session");
    login(&h).await;
    let first = made()[0].clone();
    assert!(*first.session_alive.lock().unwrap());

    // While an account uses the session, it stays: dev signs in with prod's cookies.
    h.daemon
        .apply_config(parsed(&CONFIG.replace("accounts.prod", "accounts.dev")));
    let reused = h.daemon.login("dev", LoginIntent::ReuseOnly, None).await;
    assert!(reused.expect("dev reuses the session").reused_session);
    assert_eq!(made().len(), 1);

    let fetched = first.session_fetches.load(Ordering::SeqCst);

    // Without an account, the manager drops the session, and nothing else holds it.
    h.daemon.apply_config(parsed(""));
    assert!(!*first.session_alive.lock().unwrap(), "signed out");
    assert_eq!(
        Arc::strong_count(&first),
        2,
        "held by the factory's record and `first` only"
    );

    // The same user again: a new session, signed out, that knows nothing of the old one.
    h.daemon.apply_config(parsed(CONFIG));
    assert_eq!(made().len(), 2, "a new slot has a new session");
    reuse_finds_no_session(&h).await;
    assert_eq!(
        (
            first.session_fetches.load(Ordering::SeqCst),
            made()[1].session_fetches.load(Ordering::SeqCst)
        ),
        (fetched, 1),
        "the new session was asked, the old one not"
    );
}

#[tokio::test]
async fn a_role_the_last_assertion_lacks_is_refused_from_memory_until_a_new_one_offers_it() {
    let h = harness();
    *h.idp.roles.lock().unwrap() = vec![ADMIN];
    login(&h).await;
    let (fetches, calls) = (
        h.idp.session_fetches.load(Ordering::SeqCst),
        h.sts.calls.load(Ordering::SeqCst),
    );
    for _ in 0..3 {
        let err = h
            .daemon
            .get_credentials("prod", Some("ReadOnly"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownRole);
        assert!(err.message.contains(ADMIN), "{}", err.message);
        assert!(
            err.message.contains("run: samlctl refresh prod"),
            "{}",
            err.message
        );
    }
    assert_eq!(h.idp.session_fetches.load(Ordering::SeqCst), fetches);
    assert_eq!(h.sts.calls.load(Ordering::SeqCst), calls);

    // The role is granted: the refresh's new assertion offers it, and it is served.
    *h.idp.roles.lock().unwrap() = vec![ADMIN, READ];
    h.daemon.refresh("prod").await.unwrap();
    let creds = h
        .daemon
        .get_credentials("prod", Some("ReadOnly"), None)
        .await
        .unwrap();
    assert_eq!(creds.role_arn, READ);
}
