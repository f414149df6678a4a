//! What samld does by itself, end to end: one test per refusal or fault it must not turn
//! into a loop, and the JumpCloud session that accounts of one user share. The real `samld`, `samlctl`
//! and `samld-helper` run against a fake JumpCloud and a fake STS; every count is read at
//! the fakes, so a test sees exactly what would have reached JumpCloud, the person's phone
//! and AWS.
//!
//! The rules asserted (the README's "How it keeps credentials fresh"):
//! - anything that reaches the person (password post, push, code) is tried at most once per
//!   need; after a refusal samld sends nothing more to JumpCloud for that user until a person
//!   acts, helpers without a terminal fail at once naming `samlctl login ACCOUNT`, and status
//!   shows the account and its IdP session `needs-login` with the reason;
//! - a permanent STS refusal is not retried on a schedule;
//! - at most one automatic trip per account per [`FLOOR`], with a warning in status when
//!   credentials arrive with less life than `refresh_before`;
//! - a person's command wins over a flight in progress;
//! - absurd durations are refused by `samlctl config check` and never crash samld.
//!
//! Waits are on real signals (counts at the fakes, a command's answer). Asserting that
//! nothing more happened needs an observation window instead: each one is a named constant
//! derived from the configured durations, with the reason next to it. Every test has a
//! world of its own, so they run in parallel: most of the file's wall time is those windows
//! (about 45 s per test), so `-- --test-threads 9` runs it in about a minute.
//!
//! Each test prints `MEASURED` lines (see them with `-- --nocapture`) before it asserts: on
//! the code before the state machine they were the figures it was measured against.

mod support;

use std::future::Future;
use std::process::Output;
use std::time::{Duration, Instant};

use samld_proto::{AccountState, IdpSessionState, IdpSessionStatus};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_ROLE_ARN, FakeApp, FakeJumpCloud,
    FakeJumpCloudConfig, FakeJumpCloudStats, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig, FakeStsFault};
use samld_tests::fixture::{failed, failed_silently, stderr, stdout, succeeded};
use support::World;
use support::flows::credential_document;

/// How long the fake STS's credentials live, whatever DurationSeconds asks for. Shorter than
/// `refresh_before`, so samld refreshes at two thirds of the life: about 6 s after a trip.
const LIFETIME: Duration = Duration::from_secs(9);
/// `refresh_before` of every account (as in refresh.rs).
const REFRESH_BEFORE: &str = "45s";
/// The floor the rules put between two automatic trips of one role (`REFRESH_FLOOR` in
/// daemon/src/manager/policy.rs).
const FLOOR: Duration = Duration::from_secs(10);
/// How long a test watches the fakes to assert that nothing more happened.
///
/// Longer than [`FLOOR`], so that a manager that merely spaces its retries (rather than
/// stopping) is caught; longer than today's first backoff step (30 s + 20% jitter = 36 s),
/// so that a permanent STS error retried "on the backoff schedule" is caught; and more than
/// four refresh cycles of [`LIFETIME`] credentials (and past their expiry), so that a retry
/// at the next refresh deadline or at expiry is caught too.
const WINDOW: Duration = Duration::from_secs(40);
/// The longest a single background event may take to show up at a fake: the first refresh
/// is due about 6 s after the login; the rest is slack for a loaded 2-core machine.
const EVENT_DEADLINE: Duration = Duration::from_secs(60);
/// "Fails at once": a helper that waited for a login (or for `login_wait`, 2 min) would take
/// far longer; a refused account is answered from memory.
const AT_ONCE: Duration = Duration::from_secs(5);

/// The JumpCloud user with a push (approved on the first poll unless a test says otherwise).
const EMAIL: &str = "unattended.user@example.com";
/// Its password, which every account's `password_command` prints.
const PASSWORD: &str = "pw-unattended-Gx7!Rk2#Vb9";
/// The TOTP code `mfa_command` prints; JumpCloud accepts it once.
const CODE: &str = "58204716";

/// The accounts of the shared-session tests: two JumpCloud AWS apps, one per AWS account.
const PROD_ROLE: &str = "arn:aws:iam::111111111111:role/Deploy";
const PROD_PROVIDER: &str = "arn:aws:iam::111111111111:saml-provider/JumpCloud";
const DEV_ROLE: &str = "arn:aws:iam::222222222222:role/Developer";
const DEV_PROVIDER: &str = "arn:aws:iam::222222222222:saml-provider/JumpCloud";

/// `password_command` printing [`PASSWORD`], and a push: samld can log in by itself.
fn unattended_push() -> String {
    format!("mfa = \"push\"\npassword_command = \"echo '{PASSWORD}'\"\n")
}

/// The push user, approving.
fn push_user() -> FakeUser {
    FakeUser::new(EMAIL, PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::AcceptAfterPolls(1))
}

/// One account of a world: its name, the fake app it signs in to, extra TOML lines.
struct Acct {
    name: &'static str,
    app: &'static str,
    username: &'static str,
    extra: String,
}

/// Fakes with `user` and `apps`, STS credentials living `lifetime`, and samld with these
/// accounts (and [`REFRESH_BEFORE`]).
fn world(user: FakeUser, apps: Vec<FakeApp>, lifetime: Duration, accounts: Vec<Acct>) -> World {
    let jc = FakeJumpCloudConfig {
        users: vec![user],
        apps,
        ..FakeJumpCloudConfig::default()
    };
    World::with_setup(
        jc,
        FakeStsConfig::default().with_credential_lifetime(lifetime),
        move |jc: &FakeJumpCloud, sts: &FakeSts, _closed_port: u16| {
            let mut toml = format!(
                "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{}\"\n\
                 sts_endpoint = \"{}\"\nrefresh_before = \"{REFRESH_BEFORE}\"\n",
                jc.base_url(),
                sts.endpoint_url()
            );
            for a in accounts {
                toml += &format!(
                    "\n[accounts.{}]\nurl = \"{}\"\nusername = \"{}\"\n{}",
                    a.name,
                    jc.app_url(a.app),
                    a.username,
                    a.extra
                );
            }
            toml
        },
        None,
    )
}

/// The default app (one role).
fn default_app() -> Vec<FakeApp> {
    vec![FakeApp::new(
        DEFAULT_APP,
        &[(
            DEFAULT_ROLE_ARN,
            samld_tests::fake_jumpcloud::DEFAULT_PROVIDER_ARN,
        )],
    )]
}

/// One account `name` of the push user, able to log in unattended.
fn push_world(name: &'static str) -> World {
    world(
        push_user(),
        default_app(),
        LIFETIME,
        vec![Acct {
            name,
            app: DEFAULT_APP,
            username: EMAIL,
            extra: unattended_push(),
        }],
    )
}

/// One account `name` of the default user (no MFA, no `password_command`), with credentials
/// living `lifetime`.
fn plain_world(name: &'static str, lifetime: Duration) -> World {
    world(
        FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
        default_app(),
        lifetime,
        vec![Acct {
            name,
            app: DEFAULT_APP,
            username: DEFAULT_EMAIL,
            extra: String::new(),
        }],
    )
}

/// Runs `f` on the fakes' runtime, failing the test (with samld's log) past `within`.
fn wait_for(w: &World, what: &str, within: Duration, f: impl Future<Output = ()>) {
    if w.block_on(async { tokio::time::timeout(within, f).await })
        .is_err()
    {
        panic!(
            "{what}: not within {within:?}\nsamld log:\n{}",
            w.daemon_log()
        );
    }
}

/// Waits until the fake JumpCloud's counters satisfy `done`.
fn wait_for_jumpcloud(w: &World, what: &str, done: impl Fn(&FakeJumpCloudStats) -> bool) {
    wait_for(w, what, EVENT_DEADLINE, w.jc.wait_for_stats(done));
}

/// Watches for [`WINDOW`] (see there why that long) and returns what the fakes counted at
/// its end: JumpCloud's counters and STS's calls.
fn after_window(w: &World) -> (FakeJumpCloudStats, usize) {
    std::thread::sleep(WINDOW);
    (w.jc.stats(), w.sts.calls())
}

/// Runs a helper for `account` and returns its output and how long it took.
fn timed_helper(w: &World, account: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = w.helper(&[account]);
    (out, started.elapsed())
}

/// The IdP session of `username` in `samlctl status --json`.
fn idp_session(w: &World, username: &str) -> IdpSessionStatus {
    let report = w.status();
    report
        .sessions
        .iter()
        .find(|s| s.username.eq_ignore_ascii_case(username))
        .cloned()
        .unwrap_or_else(|| panic!("no IdP session of {username} in the status: {report:#?}"))
}

/// After a refusal reached the fake: for [`WINDOW`] JumpCloud hears nothing more (and
/// `totals` holds for its counters: one attempt for the need); then a helper without a
/// terminal fails at once saying `what` and naming `samlctl login ACCOUNT`; status shows the
/// account and the user's session `needs-login`, the account's last error saying `what`.
/// `refusal` names the case in the measurement printed.
fn assert_refusal_sticks(
    w: &World,
    account: &str,
    refusal: &str,
    what: &[&str],
    totals: impl Fn(&FakeJumpCloudStats),
) {
    let at_refusal = w.jc.stats();
    let sts_at_refusal = w.sts.calls();
    let (after, sts_after) = after_window(w);
    eprintln!(
        "MEASURED {refusal}: over {WINDOW:?} after the refusal: {} more requests to JumpCloud, \
         {} more pushes, {} more password posts, {} more code posts, {} more STS calls \
         (totals: {} pushes, {} password posts, {} code posts)",
        after.requests - at_refusal.requests,
        after.pushes_started - at_refusal.pushes_started,
        after.password_posts - at_refusal.password_posts,
        after.totp_posts - at_refusal.totp_posts,
        sts_after - sts_at_refusal,
        after.pushes_started,
        after.password_posts,
        after.totp_posts,
    );
    // What reached the person, in all: one attempt for the need.
    totals(&after);
    assert_eq!(
        after.requests, at_refusal.requests,
        "{refusal}: nothing more may reach JumpCloud until a person acts\nat the refusal: \
         {at_refusal:?}\n{WINDOW:?} later: {after:?}"
    );

    let (out, took) = timed_helper(w, account);
    let text = failed_silently(&out, "a helper without a terminal after the refusal");
    eprintln!("MEASURED {refusal}: the helper answered in {took:?}: {text}");
    let lower = text.to_lowercase();
    assert!(
        what.iter().any(|m| lower.contains(m)),
        "the helper says what happened ({what:?}): {text}"
    );
    assert!(
        text.contains(&format!("samlctl login {account}")),
        "the helper names the command to run: {text}"
    );
    assert!(took < AT_ONCE, "the helper took {took:?}: {text}");
    assert_eq!(
        w.jc.stats().requests,
        at_refusal.requests,
        "{refusal}: the helper sent nothing to JumpCloud"
    );

    let status = w.account_status(account);
    assert_eq!(status.state, AccountState::NeedsLogin, "{status:#?}");
    let message = status
        .last_error
        .as_ref()
        .unwrap_or_else(|| panic!("a last_error: {status:#?}"))
        .message
        .to_lowercase();
    assert!(
        what.iter().any(|m| message.contains(m)),
        "last_error says what happened ({what:?}): {status:#?}"
    );
    assert!(status.next_retry_at.is_none(), "no retry: {status:#?}");
    let session = idp_session(w, EMAIL);
    assert_eq!(session.state, IdpSessionState::NeedsLogin, "{session:#?}");
    assert!(
        session.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "the session says why: {session:#?}"
    );
}

/// The totals after one person's login and one unattended re-login with a push.
fn one_push(s: &FakeJumpCloudStats) {
    assert_eq!(s.password_posts, 2, "one password for the need: {s:?}");
    assert_eq!(s.pushes_started, 2, "one push for the need: {s:?}");
}

/// Logs the push account in (password from `password_command`, push approved), then has
/// the phone answer the next push with `then` and ends the JumpCloud session: the next
/// refresh must log in again unattended and meet that answer.
fn login_then_end_session(w: &World, account: &str, then: PushBehavior) {
    succeeded(&w.samlctl(&["login", account]), "samlctl login");
    let at_login = w.jc.stats();
    assert_eq!(at_login.password_posts, 1, "{at_login:?}");
    assert_eq!(at_login.pushes_accepted, 1, "{at_login:?}");
    credential_document(w, &w.helper(&[account]));
    w.jc.set_push_behavior(EMAIL, then);
    w.jc.expire_all_sessions();
}

/// Row 1: the JumpCloud session ended, the account has `password_command` + push, and the
/// person denies the push. Today: password and push again at once, in a loop.
#[test]
fn a_denied_push_is_sent_once_then_nothing_until_a_person_logs_in() {
    let w = push_world("alpha");
    login_then_end_session(&w, "alpha", PushBehavior::DenyAfterPolls(1));
    wait_for_jumpcloud(&w, "the unattended re-login's push is denied", |s| {
        s.pushes_denied >= 1
    });
    assert_refusal_sticks(&w, "alpha", "denied push", &["denied"], one_push);

    // A person acts: the block lifts, and the login runs at once.
    w.jc.set_push_behavior(EMAIL, PushBehavior::AcceptAfterPolls(1));
    succeeded(
        &w.samlctl(&["login", "alpha"]),
        "samlctl login after the denial",
    );
    let now = w.jc.stats();
    assert_eq!(now.pushes_started, 3, "{now:?}");
    credential_document(&w, &w.helper(&["alpha"]));
}

/// Row 2: the same, but the push is never answered and JumpCloud reports it expired.
/// Today: a new push at once, all night.
#[test]
fn an_expired_push_is_sent_once_then_nothing_until_a_person_logs_in() {
    let w = push_world("beta");
    // JumpCloud answers "expired" on the second poll: what it says of a push nobody
    // answered before its expiresAt, without the test waiting a real minute.
    login_then_end_session(&w, "beta", PushBehavior::ExpireAfterPolls(2));
    wait_for_jumpcloud(&w, "the unattended re-login's push expires", |s| {
        s.pushes_expired >= 1
    });
    assert_refusal_sticks(
        &w,
        "beta",
        "expired push",
        &["expired", "not answered", "not approved"],
        one_push,
    );
}

/// Row 3: `mfa_command` prints a code JumpCloud rejects (here: the code it printed for the
/// first login, which JumpCloud accepts only once). Today: password + code posts in a loop,
/// which would lock a real JumpCloud account.
#[test]
fn a_rejected_mfa_command_code_is_posted_once_then_nothing_until_a_person_logs_in() {
    let user = FakeUser::new(EMAIL, PASSWORD)
        .with_factor("totp", "available")
        .with_totp_codes(&[CODE]);
    let w = world(
        user,
        default_app(),
        LIFETIME,
        vec![Acct {
            name: "code",
            app: DEFAULT_APP,
            username: EMAIL,
            extra: format!(
                "mfa = \"totp\"\npassword_command = \"echo '{PASSWORD}'\"\n\
                 mfa_command = \"echo {CODE}\"\n"
            ),
        }],
    );
    succeeded(&w.samlctl(&["login", "code"]), "samlctl login");
    let at_login = w.jc.stats();
    assert_eq!(at_login.totp_accepted, 1, "{at_login:?}");
    credential_document(&w, &w.helper(&["code"]));
    w.jc.expire_all_sessions();
    wait_for_jumpcloud(&w, "the unattended re-login's code is rejected", |s| {
        s.totp_rejected >= 1
    });
    assert_refusal_sticks(
        &w,
        "code",
        "rejected mfa_command code",
        &["rejected"],
        |s: &FakeJumpCloudStats| {
            // A TOTP login posts the password twice (alone, then with the code).
            assert_eq!(s.xsrf_requests, 2, "one unattended login attempt: {s:?}");
            assert_eq!(s.password_posts, 4, "{s:?}");
            assert_eq!(s.totp_posts, 2, "one code for the need: {s:?}");
        },
    );
}

/// Row 4: STS answers AccessDenied to a refresh. Today: retried on the backoff schedule for
/// ever.
#[test]
fn sts_access_denied_on_a_refresh_is_not_retried_on_a_schedule() {
    let w = plain_world("denied-role", LIFETIME);
    succeeded(
        &w.login("denied-role", DEFAULT_PASSWORD, None),
        "samlctl login",
    );
    let first = credential_document(&w, &w.helper(&["denied-role"]));
    assert_eq!(w.sts.calls(), 1);
    // From now on the role refuses, as after a trust-policy change.
    w.sts.inject_n(FakeStsFault::AccessDenied, 1000);
    wait_for(
        &w,
        "the background refresh calls STS",
        EVENT_DEADLINE,
        w.sts.wait_for_calls(2),
    );
    let (_, calls_after) = after_window(&w);
    eprintln!(
        "MEASURED sts AccessDenied: {} more STS calls over {WINDOW:?} after the refused refresh",
        calls_after - 2
    );
    assert_eq!(
        calls_after, 2,
        "one STS call for the refresh, then none over {WINDOW:?}"
    );

    let status = w.account_status("denied-role");
    let error = status
        .last_error
        .as_ref()
        .unwrap_or_else(|| panic!("a last_error: {status:#?}"));
    assert!(
        error
            .message
            .contains("Not authorized to perform sts:AssumeRoleWithSAML"),
        "last_error carries the STS message: {status:#?}"
    );
    assert!(
        status.next_retry_at.is_none(),
        "no retry scheduled: {status:#?}"
    );

    // The old credentials have expired by now (the window is longer than their life).
    assert!(time::OffsetDateTime::now_utc() > first.expiration);
    let (out, took) = timed_helper(&w, "denied-role");
    let text = failed_silently(&out, "a helper for the refused role");
    assert!(
        text.contains("Not authorized to perform sts:AssumeRoleWithSAML"),
        "the helper says what STS said: {text}"
    );
    assert!(took < AT_ONCE, "the helper took {took:?}: {text}");
    assert_eq!(w.sts.calls(), 2, "the helper made no STS call");

    // A person's refresh goes to STS again, once.
    failed(
        &w.samlctl(&["refresh", "denied-role"]),
        "samlctl refresh while STS still refuses",
    );
    assert_eq!(w.sts.calls(), 3, "samlctl refresh tries again, once");
}

/// Row 5: STS issues credentials with seconds to live (a clock ahead, a proxy, STS
/// misbehaving). Before the manager: refreshes in a tight loop. Three seconds rather than
/// one: the refresh floor (10 s) binds either way, and status, which lists credentials only
/// while they live, shows the warning for long enough to be seen on a loaded machine.
#[test]
fn credentials_with_seconds_to_live_cause_no_loop_and_a_warning() {
    let w = plain_world("short", Duration::from_secs(3));
    succeeded(&w.login("short", DEFAULT_PASSWORD, None), "samlctl login");
    let calls_at_login = w.sts.calls();
    // The window: as long as the others, and the bound the rules give for it.
    let bound = (WINDOW.as_secs() / FLOOR.as_secs()) as usize + 2;
    // The observation window doubles as the time to look for the warning. Status may list
    // credentials this short only until they expire (3 s of every 10), so it is sampled
    // through the whole window; the sleep paces the sampling, it waits for nothing.
    let mut warning = None;
    let started = Instant::now();
    while started.elapsed() < WINDOW {
        if warning.is_none() {
            warning = w
                .account_status("short")
                .roles
                .iter()
                .find_map(|r| r.warning.clone());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let calls = w.sts.calls() - calls_at_login;
    eprintln!(
        "MEASURED 3 s credentials: {calls} STS calls over {:?} after the login (bound {bound}); \
         warning shown: {warning:?}",
        started.elapsed()
    );
    assert!(
        calls <= bound,
        "{calls} STS calls in {WINDOW:?}: at most one automatic trip per {FLOOR:?} (+2)"
    );
    let warning = warning.unwrap_or_else(|| {
        panic!(
            "status warns that credentials arrive with less life than refresh_before: {:#?}",
            w.account_status("short")
        )
    });
    assert!(!warning.is_empty());
}

/// Row 6: `samlctl logout` while a refresh is in flight. Today: the flight stores fresh
/// credentials after the logout and status shows the account active again.
#[test]
fn a_logout_during_a_refresh_in_flight_sticks() {
    /// How long STS holds the refresh's answer, so that the logout lands inside the flight.
    const STS_DELAY: Duration = Duration::from_secs(3);
    /// After the flight's answer left STS, how long status is watched for the account
    /// coming back: the daemon stores an answer within milliseconds, this is slack for a
    /// loaded machine.
    const SETTLE: Duration = Duration::from_secs(3);
    let w = plain_world("leaving", LIFETIME);
    succeeded(&w.login("leaving", DEFAULT_PASSWORD, None), "samlctl login");
    credential_document(&w, &w.helper(&["leaving"]));
    w.sts.inject(FakeStsFault::Delay(STS_DELAY));
    wait_for(
        &w,
        "the background refresh reaches STS",
        EVENT_DEADLINE,
        w.sts.wait_for_calls(2),
    );
    let out = succeeded(&w.samlctl(&["logout", "leaving"]), "samlctl logout");
    eprintln!("logout during the flight: {out}");
    // The flight ends when STS answers (or earlier, if the logout cancels it: then STS
    // never issues, and this wait ends at its deadline without failing).
    let _ = w.block_on(async {
        tokio::time::timeout(STS_DELAY + AT_ONCE, w.sts.wait_for_issued(2)).await
    });
    let issued = w.sts.issued_count();
    let watched = Instant::now();
    while watched.elapsed() < SETTLE {
        let status = w.account_status("leaving");
        eprintln!(
            "MEASURED logout during a flight: {:?} after the flight (issued {issued}): {}",
            watched.elapsed(),
            status.state
        );
        assert_eq!(
            status.state,
            AccountState::LoggedOut,
            "the logout sticks after the flight: {status:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = failed_silently(&w.helper(&["leaving"]), "the helper after the logout");
    assert!(text.contains("not logged in"), "{text}");
    assert!(text.contains("samlctl login leaving"), "{text}");
    assert_eq!(w.sts.calls(), 2, "nothing more went to STS");
}

/// Row 7: `login_wait = "5124095576030431h"`. Today: `config check` says valid and a login
/// panics on Instant overflow (the client sees the connection closed).
#[test]
fn a_huge_login_wait_is_refused_and_does_not_crash_samld() {
    let w = world(
        FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
        default_app(),
        LIFETIME,
        vec![Acct {
            name: "forever",
            app: DEFAULT_APP,
            username: DEFAULT_EMAIL,
            extra: "login_wait = \"5124095576030431h\"\n".to_owned(),
        }],
    );
    // The daemon started with it (that is the world): a login and a helper must get an
    // answer, not a dropped connection, and samld must stay up.
    let login = w.login("forever", DEFAULT_PASSWORD, None);
    let helper = w.helper(&["forever"]);
    let check = w.samlctl(&["config", "check"]);
    let text = format!("{}{}", stdout(&check), stderr(&check));
    let log = w.daemon_log();
    eprintln!(
        "MEASURED huge login_wait: config check {:?}: {text}\nlogin {:?}: {}{}\nhelper {:?}: {}\n\
         samld panicked: {}",
        check.status,
        login.status,
        stdout(&login),
        stderr(&login),
        helper.status,
        stderr(&helper),
        log.contains("panicked"),
    );
    assert!(
        !check.status.success(),
        "config check refuses the huge login_wait: {text}"
    );
    assert!(text.contains("login_wait"), "names the setting: {text}");
    assert!(
        ["at most", "between", "maximum"]
            .iter()
            .any(|b| text.contains(b)),
        "gives the bounds: {text}"
    );
    assert!(!log.contains("panicked"), "samld panicked:\n{log}");
    for (what, out) in [("samlctl login", &login), ("samld-helper", &helper)] {
        let said = stderr(out).to_lowercase();
        assert!(
            !said.contains("closed the connection"),
            "{what} got an answer from samld: {said}"
        );
    }
    let report = w.status();
    let error = report.daemon.config_error.clone().unwrap_or_default();
    assert!(
        error.contains("login_wait"),
        "samld refused the config like config check did: {report:#?}"
    );
}

/// The two accounts that share a session: `prod` and `dev`, two AWS apps of one JumpCloud user, both
/// able to log in unattended.
fn shared_world() -> World {
    world(
        push_user(),
        vec![
            FakeApp::new("prod", &[(PROD_ROLE, PROD_PROVIDER)]),
            FakeApp::new("dev", &[(DEV_ROLE, DEV_PROVIDER)]),
        ],
        LIFETIME,
        vec![
            Acct {
                name: "prod",
                app: "prod",
                username: EMAIL,
                extra: unattended_push(),
            },
            Acct {
                name: "dev",
                app: "dev",
                username: EMAIL,
                extra: unattended_push(),
            },
        ],
    )
}

/// `samlctl login prod` (password + push), then `samlctl login dev`, which must reuse the
/// JumpCloud session.
fn login_both(w: &World) {
    succeeded(&w.samlctl(&["login", "prod"]), "samlctl login prod");
    let out = w.samlctl(&["login", "dev"]);
    let text = succeeded(&out, "samlctl login dev");
    let stats = w.jc.stats();
    eprintln!(
        "MEASURED shared session: after login prod + login dev: {} password posts, {} pushes; \
         dev said: {text}",
        stats.password_posts, stats.pushes_started
    );
    assert_eq!(stats.password_posts, 1, "one password for both: {stats:?}");
    assert_eq!(stats.pushes_started, 1, "one push for both: {stats:?}");
    assert!(
        text.contains("session reused"),
        "dev reused the session: {text}"
    );
    credential_document(w, &w.helper(&["prod"]));
    credential_document(w, &w.helper(&["dev"]));
}

/// Point 4: one JumpCloud session serves both accounts; when it ends, one unattended
/// re-login (one push) restores both.
#[test]
fn two_accounts_of_one_user_share_one_login_and_one_push() {
    let w = shared_world();
    login_both(&w);
    let (prod_before, dev_before) = (
        w.sts.issued_count_for(PROD_ROLE),
        w.sts.issued_count_for(DEV_ROLE),
    );
    // The person takes a few seconds to approve (ten polls, 5 s at samld's pace): both
    // accounts' refreshes, due about a second apart, then need the session while the one
    // re-login is waiting for the phone.
    w.jc.set_push_behavior(EMAIL, PushBehavior::AcceptAfterPolls(10));
    w.jc.expire_all_sessions();
    wait_for(
        &w,
        "both accounts refreshed after the session ended",
        EVENT_DEADLINE,
        async {
            w.sts.wait_for_issued_for(PROD_ROLE, prod_before + 1).await;
            w.sts.wait_for_issued_for(DEV_ROLE, dev_before + 1).await;
        },
    );
    let prod = credential_document(&w, &w.helper(&["prod"]));
    let dev = credential_document(&w, &w.helper(&["dev"]));
    assert_eq!(prod.role_arn, PROD_ROLE);
    assert_eq!(dev.role_arn, DEV_ROLE);
    let stats = w.jc.stats();
    eprintln!(
        "MEASURED shared session re-login: {} pushes, {} password posts in all (1 each at login)",
        stats.pushes_started, stats.password_posts
    );
    assert_eq!(stats.pushes_started, 2, "exactly one more push: {stats:?}");
    assert_eq!(
        stats.password_posts, 2,
        "exactly one more password: {stats:?}"
    );
    let session = idp_session(&w, EMAIL);
    assert_eq!(session.state, IdpSessionState::Live, "{session:#?}");
    assert_eq!(session.accounts, ["dev", "prod"], "{session:#?}");
}

/// Point 4: when the one re-login's push is denied, both accounts need a person and
/// JumpCloud hears nothing more.
#[test]
fn a_denied_push_blocks_every_account_of_the_user() {
    let w = shared_world();
    login_both(&w);
    w.jc.set_push_behavior(EMAIL, PushBehavior::DenyAfterPolls(1));
    w.jc.expire_all_sessions();
    wait_for_jumpcloud(&w, "the unattended re-login's push is denied", |s| {
        s.pushes_denied >= 1
    });
    // The count starts once samld has taken the denial in and no trip it decided on before
    // (the other account's refresh, due about when the push was denied, may already have
    // sent its session probe on a loaded machine) is still under way. Status is sampled
    // until then; the pause paces the sampling.
    let deadline = Instant::now() + EVENT_DEADLINE;
    while idp_session(&w, EMAIL).state != IdpSessionState::NeedsLogin
        || ["prod", "dev"].iter().any(|a| {
            matches!(
                w.account_status(a).state,
                AccountState::Refreshing | AccountState::LoggingIn
            )
        })
    {
        assert!(Instant::now() < deadline, "samld never took the denial in");
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_refusal = w.jc.stats();
    let (after, _) = after_window(&w);
    eprintln!(
        "MEASURED shared session denied: over {WINDOW:?} after the first denial: {} more \
         requests, {} more pushes, {} more password posts (totals {} pushes, {} passwords)",
        after.requests - at_refusal.requests,
        after.pushes_started - at_refusal.pushes_started,
        after.password_posts - at_refusal.password_posts,
        after.pushes_started,
        after.password_posts,
    );
    assert_eq!(
        after.pushes_started, 2,
        "one push for both accounts: {after:?}"
    );
    assert_eq!(
        after.requests, at_refusal.requests,
        "nothing more reaches JumpCloud: at the refusal {at_refusal:?}, later {after:?}"
    );
    for account in ["prod", "dev"] {
        let (out, took) = timed_helper(&w, account);
        let text = failed_silently(&out, "a helper after the denial");
        assert!(text.contains("denied"), "{text}");
        assert!(text.contains(&format!("samlctl login {account}")), "{text}");
        assert!(took < AT_ONCE, "the helper took {took:?}: {text}");
        let status = w.account_status(account);
        assert_eq!(status.state, AccountState::NeedsLogin, "{status:#?}");
    }
    assert_eq!(w.jc.stats().requests, at_refusal.requests);
    let session = idp_session(&w, EMAIL);
    assert_eq!(session.state, IdpSessionState::NeedsLogin, "{session:#?}");
    assert!(session.reason.is_some(), "{session:#?}");
    assert_eq!(session.accounts, ["dev", "prod"], "{session:#?}");
}

/// Point 4: `samlctl logout ACCOUNT` keeps the JumpCloud session while another account of the
/// user still uses it; the logout of the last one (or `logout --all`) forgets it, and the next
/// login signs in again.
#[test]
fn a_shared_session_outlives_one_logout_and_ends_with_the_last() {
    let w = shared_world();
    login_both(&w);
    succeeded(&w.samlctl(&["logout", "prod"]), "samlctl logout prod");
    let after_logout = w.jc.stats();
    let text = failed_silently(&w.helper(&["prod"]), "the helper after logout prod");
    assert!(text.contains("samlctl login prod"), "{text}");
    credential_document(&w, &w.helper(&["dev"]));
    let session = idp_session(&w, EMAIL);
    assert_eq!(session.state, IdpSessionState::Live, "dev still uses it");
    // prod comes back through dev's session: no password, no push.
    let text = succeeded(&w.samlctl(&["login", "prod"]), "samlctl login prod again");
    assert!(text.contains("session reused"), "{text}");
    let stats = w.jc.stats();
    assert_eq!(
        stats.password_posts, after_logout.password_posts,
        "{stats:?}"
    );
    assert_eq!(
        stats.pushes_started, after_logout.pushes_started,
        "{stats:?}"
    );

    succeeded(&w.samlctl(&["logout", "--all"]), "samlctl logout --all");
    let session = idp_session(&w, EMAIL);
    assert_eq!(session.state, IdpSessionState::None, "{session:#?}");
    for account in ["prod", "dev"] {
        let text = failed_silently(&w.helper(&[account]), "a helper after logout --all");
        assert!(text.contains(&format!("samlctl login {account}")), "{text}");
    }
    assert_eq!(
        w.jc.stats().requests,
        stats.requests,
        "logged out: nothing sent"
    );
    let text = succeeded(&w.samlctl(&["login", "dev"]), "samlctl login dev");
    assert!(!text.contains("session reused"), "{text}");
    let relogin = w.jc.stats();
    assert_eq!(
        relogin.password_posts,
        stats.password_posts + 1,
        "{relogin:?}"
    );
    assert_eq!(
        relogin.pushes_started,
        stats.pushes_started + 1,
        "{relogin:?}"
    );
}

/// Point 4: an account of the same user that was never logged in does not keep the session
/// alive: `samlctl logout prod` signs out, and the next login asks JumpCloud again.
#[test]
fn an_account_never_logged_in_does_not_keep_the_session() {
    let w = shared_world();
    succeeded(&w.samlctl(&["login", "prod"]), "samlctl login prod");
    succeeded(&w.samlctl(&["logout", "prod"]), "samlctl logout prod");
    let session = idp_session(&w, EMAIL);
    assert_eq!(session.state, IdpSessionState::None, "{session:#?}");
    let before = w.jc.stats();
    let text = succeeded(&w.samlctl(&["login", "prod"]), "samlctl login prod again");
    assert!(!text.contains("session reused"), "{text}");
    let after = w.jc.stats();
    assert_eq!(after.password_posts, before.password_posts + 1, "{after:?}");
    assert_eq!(after.pushes_started, before.pushes_started + 1, "{after:?}");
}
