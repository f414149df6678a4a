//! The README's bounds on what one account makes by itself ("The most one account makes by
//! itself in an hour"), measured end to end: the real `samld` and `samlctl` against the fake
//! JumpCloud and the fake STS, every request counted and timed where it arrives.
//!
//! - STS: one request per role per refresh, however STS fails (samld's client does not
//!   retry), and at most one more when STS asks for a shorter duration or a fresher
//!   assertion.
//! - Backoff: the retries after passing failures wait 30 s, 1, 2, 4 … minutes (±20 %). The
//!   debug `samld` divides every backoff wait by `SAMLD_TEST_BACKOFF_DIVISOR` (a test-only
//!   variable; see `policy::divide_backoff_for_tests`), so four retries take under a minute
//!   here with the schedule's shape intact.
//! - Push: at most one poll per 500 ms while a push waits; the fake JumpCloud answers 429 to
//!   polls that come too fast, as the real one rate-limits its API.
//!
//! Waits are on real signals (requests arriving at a fake, a command's answer), each bounded
//! by [`EVENT_DEADLINE`]; no test asserts that something was fast.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN, DEFAULT_ROLE_ARN, FakeApp,
    FakeJumpCloud, FakeJumpCloudConfig, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig, FakeStsFault, ReceivedAssume};
use samld_tests::fixture::{failed, succeeded};
use support::World;

/// What the daemon divides its backoff waits by in these tests.
const DIVISOR: u32 = 10;
/// The README's backoff schedule: the first wait, doubling each time (under its 15-minute
/// cap for the retries measured here).
const FIRST_WAIT: Duration = Duration::from_secs(30);
/// The README's jitter on each wait.
const JITTER: f64 = 0.2;
/// What a retry adds to its wait before its STS request arrives: the trip itself (the SAML
/// page from JumpCloud, then STS), generous for a loaded 2-core machine. Only the upper
/// bound of a gap gets it; the lower bound is the wait alone.
const TRIP_SLACK: Duration = Duration::from_secs(3);
/// How long the fake STS's credentials live in the refresh tests: samld refreshes at two
/// thirds of that (about 6 s after a login), since it is under twice `refresh_before`.
const SHORT_LIFETIME: Duration = Duration::from_secs(9);
/// The bound on any awaited event: the longest is four retries, at most
/// (3 + 6 + 12 + 24) s × 1.2 = 54 s after the first refresh; the rest is slack.
const EVENT_DEADLINE: Duration = Duration::from_secs(150);
/// The daemon's pause between two polls of a pending push (`push_poll_interval`), which the
/// README promises: "one poll per 500 ms while a push waits".
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long the person in the push test takes to approve.
const PUSH_WAIT: Duration = Duration::from_secs(4);

/// Runs `f` on the fakes' runtime, failing the test (with samld's log) past
/// [`EVENT_DEADLINE`].
fn wait_for(w: &World, what: &str, f: impl Future<Output = ()>) {
    if w.block_on(async { tokio::time::timeout(EVENT_DEADLINE, f).await })
        .is_err()
    {
        panic!(
            "{what}: not within {EVENT_DEADLINE:?}\nsamld log:\n{}",
            w.daemon_log()
        );
    }
}

/// The default app, whose assertion says SessionDuration `session_secs`.
fn app(session_secs: u32) -> FakeApp {
    let mut app = FakeApp::new(DEFAULT_APP, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]);
    app.session_duration = Some(session_secs);
    app
}

/// Fakes with `user` and `app`, STS credentials living `lifetime` (the fake's own default
/// when `None`), and samld (with the backoff divided by [`DIVISOR`]) serving one account per
/// entry of `accounts`: its name and extra TOML lines.
fn world(
    (user, app): (FakeUser, FakeApp),
    sts: FakeStsConfig,
    lifetime: Option<Duration>,
    accounts: &[(&str, &str)],
) -> World {
    let jc = FakeJumpCloudConfig {
        users: vec![user.clone()],
        apps: vec![app],
        ..FakeJumpCloudConfig::default()
    };
    let sts = match lifetime {
        Some(lifetime) => sts.with_credential_lifetime(lifetime),
        None => sts,
    };
    let divisor = DIVISOR.to_string();
    World::with_setup_and_env(
        jc,
        sts,
        |jc: &FakeJumpCloud, sts: &FakeSts, _closed_port: u16| {
            let mut toml = format!(
                "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{}\"\n\
                 sts_endpoint = \"{}\"\nrefresh_before = \"45s\"\n",
                jc.base_url(),
                sts.endpoint_url()
            );
            for (name, extra) in accounts {
                toml += &format!(
                    "\n[accounts.{name}]\nurl = \"{}\"\nusername = \"{}\"\n{extra}",
                    jc.app_url(DEFAULT_APP),
                    user.email,
                );
            }
            toml
        },
        None,
        &[("SAMLD_TEST_BACKOFF_DIVISOR", &divisor)],
    )
}

/// One account of the default user (no MFA): logs it in, then makes STS answer `fault` to
/// every request and waits for the failed refresh and `retries` retries. Returns the
/// requests STS received after the login.
fn failing_refreshes(fault: FakeStsFault, retries: usize) -> Vec<ReceivedAssume> {
    let w = world(
        (FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD), app(3600)),
        FakeStsConfig::default(),
        Some(SHORT_LIFETIME),
        &[("acct", "")],
    );
    succeeded(
        &w.login("acct", DEFAULT_PASSWORD, None),
        "samlctl login acct",
    );
    assert_eq!(w.sts.calls(), 1, "the login's one request");
    w.sts.inject_n(fault, 1000);
    let tries = 1 + retries;
    wait_for(
        &w,
        &format!("the first refresh and {retries} retries"),
        w.sts.wait_for_calls(1 + tries),
    );
    let requests = w.sts.requests()[1..=tries].to_vec();
    // One request per try: each try (a refresh, or a retry of it) takes a fresh assertion
    // from the JumpCloud session, so a request sent again by an HTTP-level retry would carry
    // an assertion already seen.
    let assertions: HashSet<&str> = requests.iter().map(|r| r.assertion.as_str()).collect();
    assert_eq!(
        assertions.len(),
        requests.len(),
        "one STS request per try, each with its own assertion"
    );
    // Counted before the pages: a trip fetches its page before it calls STS.
    let calls = w.sts.calls();
    let pages = w.jc.stats().saml_pages;
    assert!(
        pages > tries as u64 && calls as u64 <= pages,
        "no more STS requests than assertions fetched: {pages} pages, {calls} requests"
    );
    requests
}

#[test]
fn a_throttled_account_backs_off_doubling_with_one_sts_request_per_try() {
    const RETRIES: usize = 4;
    let requests = failing_refreshes(FakeStsFault::Throttling, RETRIES);
    let gaps: Vec<Duration> = requests
        .windows(2)
        .map(|pair| pair[1].received_at - pair[0].received_at)
        .collect();
    eprintln!("MEASURED gaps between tries (backoff divided by {DIVISOR}): {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        // The README: 30 s, 1, 2, 4 … minutes, each ±20 %.
        let wait = FIRST_WAIT * (1 << i) / DIVISOR;
        let least = wait.mul_f64(1.0 - JITTER);
        let most = wait.mul_f64(1.0 + JITTER) + TRIP_SLACK;
        assert!(
            (least..=most).contains(gap),
            "retry {}: waited {gap:?}, the schedule says {wait:?} ±20 % ({least:?}..={most:?}); \
             all gaps: {gaps:?}",
            i + 1
        );
    }
}

#[test]
fn a_refresh_failing_with_5xx_makes_one_sts_request_per_try() {
    let requests = failing_refreshes(FakeStsFault::ServiceUnavailable, 2);
    assert!(requests.iter().all(|r| r.role_arn == DEFAULT_ROLE_ARN));
}

/// `session_duration` above the role's MaxSessionDuration (1 h at the fake).
const TWELVE_HOURS: &str = "session_duration = \"12h\"\n";

#[test]
fn a_shorter_duration_or_a_fresh_assertion_costs_one_more_sts_request_and_no_more() {
    // The assertion allows 12 h; the role only 1 h.
    let w = world(
        (FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD), app(43_200)),
        FakeStsConfig::default().with_max_session(DEFAULT_ROLE_ARN, 3600),
        None,
        &[("long", TWELVE_HOURS), ("both", TWELVE_HOURS)],
    );
    let durations_since = |from: usize| w.sts.durations()[from..].to_vec();

    // The role refuses 12 h: one more request, for 1 h.
    succeeded(
        &w.login("long", DEFAULT_PASSWORD, None),
        "samlctl login long",
    );
    assert_eq!(durations_since(0), [43_200, 3600]);

    // An assertion STS finds too old: one more request, with a fresh assertion (and the
    // learnt 1 h from the start).
    w.sts.inject(FakeStsFault::ExpiredToken);
    succeeded(&w.samlctl(&["refresh", "long"]), "samlctl refresh long");
    assert_eq!(durations_since(2), [3600, 3600]);
    let requests = w.sts.requests();
    assert_ne!(requests[2].assertion, requests[3].assertion, "a fresh one");

    // Both on one role: the fresh assertion spends the one retry, so the refused duration
    // is not asked again in this trip, only learnt.
    w.sts.inject(FakeStsFault::ExpiredToken);
    let text = failed(
        &w.login("both", DEFAULT_PASSWORD, None),
        "samlctl login both",
    );
    assert!(text.contains("MaxSessionDuration"), "{text}");
    assert_eq!(
        durations_since(4),
        [43_200, 43_200],
        "two requests, no third"
    );
    // The next trip asks for what the role accepts, once.
    succeeded(
        &w.login("both", DEFAULT_PASSWORD, None),
        "samlctl login both",
    );
    assert_eq!(durations_since(6), [3600]);
}

#[test]
fn a_refused_duration_left_over_after_a_fresh_assertion_waits_for_the_backoff() {
    let w = world(
        (FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD), app(43_200)),
        FakeStsConfig::default().with_max_session(DEFAULT_ROLE_ARN, 43_200),
        Some(SHORT_LIFETIME),
        &[("acct", TWELVE_HOURS)],
    );
    succeeded(
        &w.login("acct", DEFAULT_PASSWORD, None),
        "samlctl login acct",
    );
    assert_eq!(w.sts.durations(), [43_200]);

    // The role's maximum drops to 1 h, and the next refresh's assertion is too old: the
    // fresh assertion spends the refresh's one retry and meets the refused duration. That
    // is not a verdict on the role: the next try, on the backoff schedule, asks for 1 h.
    w.sts.set_max_session(DEFAULT_ROLE_ARN, 3600);
    w.sts.inject(FakeStsFault::ExpiredToken);
    wait_for(&w, "credentials from the retry", w.sts.wait_for_issued(2));
    assert_eq!(w.sts.durations()[1..4], [43_200, 43_200, 3600]);
}

#[test]
fn a_waiting_push_is_polled_at_most_once_per_500_ms() {
    const EMAIL: &str = "push.bounds@example.com";
    const PASSWORD: &str = "pw-bounds-Tq8#Lm3!";
    let w = world(
        (
            FakeUser::new(EMAIL, PASSWORD)
                .with_factor("push", "available")
                .with_push(PushBehavior::AcceptAfter(PUSH_WAIT)),
            app(3600),
        ),
        FakeStsConfig::default(),
        None,
        &[("push", "mfa = \"push\"\n")],
    );
    succeeded(&w.login("push", PASSWORD, None), "samlctl login push");

    let stats = w.jc.stats();
    let times = w.jc.push_poll_times();
    let gaps: Vec<Duration> = times.windows(2).map(|p| p[1] - p[0]).collect();
    eprintln!(
        "MEASURED {} polls over {PUSH_WAIT:?}, gaps {gaps:?}",
        times.len()
    );
    assert_eq!(stats.pushes_accepted, 1, "{stats:?}");
    assert_eq!(stats.push_polls_throttled, 0, "{stats:?}");
    // Each gap is at least the interval: samld sleeps that long after each answer.
    for gap in &gaps {
        assert!(
            *gap >= POLL_INTERVAL,
            "polled again after {gap:?}: {gaps:?}"
        );
    }
    // It kept polling until the person answered: the first poll came right after the push
    // started (within a second on a loaded machine), the accepted one PUSH_WAIT after it.
    let polled_for = *times.last().expect("polls") - times[0];
    assert!(
        polled_for + Duration::from_secs(1) >= PUSH_WAIT,
        "polled for only {polled_for:?}"
    );
}
