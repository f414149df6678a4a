//! The JumpCloud provider against the fake JumpCloud: every login path, every error path, and
//! session reuse, asserted through the provider's results and the fake's counters.

use std::time::Duration;

use base64::Engine as _;
use samld::idp::jumpcloud::{JumpCloud, JumpCloudSettings, MfaMode};
use samld::idp::{IdentityProvider, IdpError};
use samld::manager::policy::{Failure, classify_idp};
use samld_proto::Secret;
use samld_tests::fake_jumpcloud::{
    AUTH_FAILED, DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_ROLE_ARN, Endpoint,
    FakeJumpCloud, FakeJumpCloudConfig, FakeUser, Fault, PUSH_POLL_MIN_GAP, PushBehavior,
};
use samld_tests::interaction::{InteractionCall, ScriptedInteraction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MFA_EMAIL: &str = "bob@example.com";
const MFA_PASSWORD: &str = "hunter2-but-longer";

fn settings(fake: &FakeJumpCloud, email: &str, mfa: MfaMode) -> JumpCloudSettings {
    let mut s = JumpCloudSettings::new(fake.app_url(DEFAULT_APP), email);
    s.console_url = fake.base_url();
    s.mfa = mfa;
    s.timeouts.connect = Duration::from_secs(2);
    s.timeouts.request = Duration::from_secs(5);
    // Just above the fake's floor between two polls of a push (JumpCloud answers 429 to a
    // client polling too fast), so that the push tests take a fraction of the real 500 ms.
    s.timeouts.push_poll_interval = PUSH_POLL_MIN_GAP + Duration::from_millis(20);
    s
}

fn provider(fake: &FakeJumpCloud, email: &str, mfa: MfaMode) -> JumpCloud {
    JumpCloud::new(settings(fake, email, mfa)).expect("valid settings")
}

/// The SAML XML inside a SAMLResponse.
fn decode(secret: &Secret) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.expose())
        .expect("the SAMLResponse is standard base64");
    String::from_utf8(bytes).expect("the SAML XML is UTF-8")
}

async fn start_with(user: FakeUser) -> FakeJumpCloud {
    FakeJumpCloud::start(FakeJumpCloudConfig::with_user(user)).await
}

fn mfa_user() -> FakeUser {
    FakeUser::new(MFA_EMAIL, MFA_PASSWORD)
}

#[tokio::test]
async fn password_only_login_returns_the_saml_response() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let saml = jc.login(&mut io).await.expect("login");

    let xml = decode(&saml);
    assert!(xml.contains(DEFAULT_ROLE_ARN), "{xml}");
    assert!(xml.contains(DEFAULT_EMAIL));
    assert_eq!(
        io.calls(),
        [InteractionCall::Password(format!(
            "JumpCloud password for {DEFAULT_EMAIL}"
        ))]
    );
    let stats = fake.stats();
    assert_eq!(stats.xsrf_requests, 1);
    assert_eq!(stats.password_posts, 1);
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.saml_pages, 1);
    // The fake refuses capitalised keys and a missing or wrong X-Xsrftoken with a 403.
    assert_eq!(stats.rejected_auth_posts, 0);
    assert!(jc.has_session());
}

#[tokio::test]
async fn totp_login_with_the_right_code() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_factor("push", "unavailable")
            .with_totp_codes(&["123456"]),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD).then_code("123456");

    let saml = jc.login(&mut io).await.expect("login");

    assert!(decode(&saml).contains(MFA_EMAIL));
    assert_eq!(io.codes_asked(), 1);
    assert!(io.calls().contains(&InteractionCall::MfaCode(format!(
        "JumpCloud TOTP code for {MFA_EMAIL}"
    ))));
    let stats = fake.stats();
    assert_eq!((stats.totp_posts, stats.totp_accepted), (1, 1));
    assert_eq!(
        stats.xsrf_requests, 1,
        "the TOTP retry reuses the XSRF token"
    );
    assert_eq!(stats.logins, 1);
}

#[tokio::test]
async fn a_wrong_totp_code_is_rejected_once_without_retry() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_totp_codes(&["123456"]),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Totp);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD)
        .then_code("654321")
        .then_code("123456");

    let err = jc.login(&mut io).await.unwrap_err();

    assert_eq!(
        err,
        IdpError::MfaCodeRejected {
            message: AUTH_FAILED.to_owned()
        }
    );
    assert_eq!(io.codes_asked(), 1, "one attempt, no loop");
    let stats = fake.stats();
    assert_eq!((stats.totp_rejected, stats.logins), (1, 0));
    assert!(!jc.has_session(), "a failed login keeps no session");
}

#[tokio::test]
async fn a_reused_totp_code_is_rejected() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_totp_codes(&["111111"]),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Totp);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD)
        .then_code("111111")
        .then_password(MFA_PASSWORD)
        .then_code("111111");
    jc.login(&mut io).await.expect("first login");
    jc.session().forget();

    let err = jc.login(&mut io).await.unwrap_err();

    assert!(matches!(err, IdpError::MfaCodeRejected { .. }), "{err:?}");
    assert_eq!(
        (fake.stats().totp_accepted, fake.stats().totp_rejected),
        (1, 1)
    );
}

#[tokio::test]
async fn push_accepted_after_a_few_polls() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_factor("push", "available")
            .with_push(PushBehavior::AcceptAfterPolls(3)),
    )
    .await;
    // Auto prefers the push: it needs no typing.
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    let saml = jc.login(&mut io).await.expect("login");

    assert!(decode(&saml).contains(MFA_EMAIL));
    assert_eq!(io.codes_asked(), 0);
    let progress = io.progress_messages();
    assert_eq!(progress.len(), 1);
    assert!(
        progress[0].starts_with("Approve the JumpCloud Protect push on your phone"),
        "{progress:?}"
    );
    let stats = fake.stats();
    assert_eq!(stats.pushes_started, 1);
    assert_eq!(stats.push_polls, 3);
    assert_eq!(stats.pushes_accepted, 1);
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.totp_posts, 0);
}

#[tokio::test]
async fn push_denied() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::DenyAfterPolls(2)),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Push);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    assert_eq!(jc.login(&mut io).await.unwrap_err(), IdpError::PushDenied);
    assert_eq!((fake.stats().push_polls, fake.stats().logins), (2, 0));
}

#[tokio::test]
async fn push_expired_by_the_server() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::ExpireAfterPolls(2)),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Push);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    assert_eq!(jc.login(&mut io).await.unwrap_err(), IdpError::PushExpired);
    assert_eq!(fake.stats().logins, 0);
}

#[tokio::test]
async fn push_never_answered_expires_at_expires_at() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::NeverAnswer),
    )
    .await;
    fake.set_push_lifetime(Duration::from_millis(300));
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Push);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    let started = std::time::Instant::now();
    assert_eq!(jc.login(&mut io).await.unwrap_err(), IdpError::PushExpired);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(fake.stats().push_polls >= 2, "polled while pending");
}

/// While a push waits, the provider polls once per `push_poll_interval`, never faster: over
/// the push's life that is at most elapsed / interval + 1 polls. A poll loop that stopped
/// sleeping would send hundreds against the real JumpCloud in the same time.
#[tokio::test]
async fn a_waiting_push_is_polled_once_per_interval() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::NeverAnswer),
    )
    .await;
    fake.set_push_lifetime(Duration::from_secs(2));
    // Above the fake's own floor between polls (PUSH_POLL_MIN_GAP, 250 ms, past which it
    // answers 429 as JumpCloud does): this test counts the polls, the fake refuses a hot loop.
    let interval = Duration::from_millis(300);
    let mut s = settings(&fake, MFA_EMAIL, MfaMode::Push);
    s.timeouts.push_poll_interval = interval;
    let jc = JumpCloud::new(s).unwrap();
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    let started = std::time::Instant::now();
    assert_eq!(jc.login(&mut io).await.unwrap_err(), IdpError::PushExpired);
    let elapsed = started.elapsed();

    let polls = fake.stats().push_polls;
    let most = (elapsed.as_millis() / interval.as_millis()) as u64 + 1;
    assert!(
        (2..=most).contains(&polls),
        "{polls} polls in {elapsed:?} at one per {interval:?}"
    );
}

#[tokio::test]
async fn a_push_that_outlives_the_local_cap_is_expired() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::NeverAnswer),
    )
    .await;
    let mut s = settings(&fake, MFA_EMAIL, MfaMode::Push);
    s.timeouts.push_max_wait = Duration::from_millis(100);
    // Long enough that only samld's own cap can end it first; short enough that ignoring
    // the cap fails in seconds.
    fake.set_push_lifetime(Duration::from_secs(5));
    let jc = JumpCloud::new(s).unwrap();
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    assert_eq!(jc.login(&mut io).await.unwrap_err(), IdpError::PushExpired);
    // samld gave up by itself: JumpCloud's push was still pending.
    let stats = fake.stats();
    assert_eq!(stats.pushes_expired, 0, "{stats:?}");
}

#[tokio::test]
async fn webauthn_only_account_is_unsupported() {
    let fake = start_with(mfa_user().with_factor("webauthn", "available")).await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    assert_eq!(
        err,
        IdpError::MfaUnsupported {
            factor: "webauthn".to_owned(),
            alternatives: vec![],
        }
    );
    assert!(
        err.to_string()
            .starts_with("WebAuthn security keys are not supported yet")
    );
}

#[tokio::test]
async fn webauthn_configured_names_the_alternatives() {
    let fake = start_with(
        mfa_user()
            .with_factor("webauthn", "available")
            .with_factor("totp", "available")
            .with_factor("push", "available"),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Webauthn);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    assert_eq!(
        err,
        IdpError::MfaUnsupported {
            factor: "webauthn".to_owned(),
            alternatives: vec!["push".to_owned(), "totp".to_owned()],
        }
    );
    assert_eq!(fake.stats().pushes_started, 0);
}

#[tokio::test]
async fn a_configured_factor_the_account_lacks() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_factor("push", "unavailable"),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Push);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);

    assert_eq!(
        jc.login(&mut io).await.unwrap_err(),
        IdpError::NoUsableFactor {
            offered: vec!["totp".to_owned()],
            configured: "push".to_owned(),
        }
    );
    let none = provider(&fake, MFA_EMAIL, MfaMode::None);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);
    assert!(matches!(
        none.login(&mut io).await.unwrap_err(),
        IdpError::NoUsableFactor { configured, .. } if configured == "none"
    ));
}

#[tokio::test]
async fn wrong_password_reports_jumpclouds_message() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password("not the password");

    let err = jc.login(&mut io).await.unwrap_err();

    assert_eq!(
        err,
        IdpError::AuthFailed {
            message: AUTH_FAILED.to_owned()
        }
    );
    assert!(!err.to_string().contains("not the password"));
    assert_eq!((fake.stats().failed_passwords, fake.stats().logins), (1, 0));
}

#[tokio::test]
async fn xsrf_answering_html_is_reported_with_the_request() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(Endpoint::Xsrf, Fault::Html(200), 1);
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    assert_eq!(
        err,
        IdpError::UnexpectedHtml {
            request: "GET /userconsole/xsrf".to_owned(),
            status: 200
        }
    );
    assert_eq!(
        fake.stats().auth_posts,
        0,
        "no password is sent after a bad XSRF answer"
    );
}

#[tokio::test]
async fn server_errors_are_unexpected_status_and_transient() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(Endpoint::Auth, Fault::Status(500), 1);
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    assert_eq!(
        err,
        IdpError::UnexpectedStatus {
            request: "POST /userconsole/auth".to_owned(),
            status: 500,
            message: Some("Internal Server Error".to_owned()),
        }
    );
    assert!(is_transient(&err));
}

#[tokio::test]
async fn connection_refused_is_a_network_error_naming_the_url() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let base = fake.base_url();
    fake.shutdown().await;
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    let IdpError::Network { url, reason } = &err else {
        panic!("expected a network error, got {err:?}");
    };
    assert_eq!(url, &format!("{base}/userconsole/xsrf"));
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(is_transient(&err));
}

#[tokio::test]
async fn a_connection_broken_mid_answer_is_a_network_error() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(Endpoint::Xsrf, Fault::Reset, 1);
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    assert!(
        matches!(&err, IdpError::Network { url, .. } if url.ends_with("/userconsole/xsrf")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(Endpoint::Xsrf, Fault::Delay(Duration::from_secs(2)), 1);
    let mut s = settings(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    s.timeouts.request = Duration::from_millis(200);
    let jc = JumpCloud::new(s).unwrap();
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();

    let IdpError::Network { reason, .. } = &err else {
        panic!("expected a network error, got {err:?}");
    };
    assert!(reason.contains("timed out"), "{reason}");
}

#[tokio::test]
async fn the_session_gives_assertions_without_password_or_mfa() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::AcceptAfterPolls(1)),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD);
    jc.login(&mut io).await.expect("login");
    let after_login = fake.stats();

    let saml = jc.assertion_from_session().await.expect("session reuse");

    assert!(decode(&saml).contains(MFA_EMAIL));
    let stats = fake.stats();
    assert_eq!(stats.self_probes, after_login.self_probes + 1);
    assert_eq!(stats.saml_pages, after_login.saml_pages + 1);
    assert_eq!(stats.xsrf_requests, after_login.xsrf_requests);
    assert_eq!(stats.auth_posts, after_login.auth_posts, "no password post");
    assert_eq!(stats.pushes_started, after_login.pushes_started, "no MFA");
    assert_eq!(io.passwords_asked(), 1);
}

#[tokio::test]
async fn an_expired_session_is_reported_as_such() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);
    jc.login(&mut io).await.expect("login");
    fake.expire_all_sessions();
    let before = fake.stats();

    assert_eq!(
        jc.assertion_from_session().await.unwrap_err(),
        IdpError::SessionExpired
    );
    let stats = fake.stats();
    assert_eq!(stats.self_probes, before.self_probes + 1);
    assert_eq!(stats.saml_pages, before.saml_pages);
    assert_eq!(stats.auth_posts, before.auth_posts);
}

#[tokio::test]
async fn a_session_that_times_out_on_the_server_is_expired() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    // Long enough that the login, on a machine loaded by the tests beside this one, ends
    // well inside it (at 50 ms the session was sometimes gone before it was counted).
    const LIFETIME: Duration = Duration::from_secs(2);
    fake.set_session_lifetime(LIFETIME);
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);
    jc.login(&mut io).await.expect("login");
    assert_eq!(fake.live_sessions(), 1);

    // The server-side lifetime must pass: time itself is what this test is about.
    tokio::time::sleep(LIFETIME + Duration::from_millis(100)).await;
    assert_eq!(fake.live_sessions(), 0);
    assert_eq!(
        jc.assertion_from_session().await.unwrap_err(),
        IdpError::SessionExpired
    );
}

#[tokio::test]
async fn a_forgotten_session_is_expired_without_contacting_jumpcloud() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);
    jc.login(&mut io).await.expect("login");
    jc.session().forget();
    let before = fake.stats();

    assert_eq!(
        jc.assertion_from_session().await.unwrap_err(),
        IdpError::SessionExpired
    );
    assert_eq!(fake.stats(), before, "no request at all");
    assert!(!jc.has_session());
}

#[tokio::test]
async fn no_session_before_the_first_login() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);

    assert_eq!(
        jc.assertion_from_session().await.unwrap_err(),
        IdpError::SessionExpired
    );
    assert_eq!(fake.stats().self_probes, 0);
}

#[tokio::test]
async fn a_probe_redirected_to_login_means_expired() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);
    jc.login(&mut io).await.expect("login");
    fake.inject(Endpoint::SelfProbe, Fault::Status(302), 1);

    assert_eq!(
        jc.assertion_from_session().await.unwrap_err(),
        IdpError::SessionExpired
    );
    // The session itself is still alive on the server: the next probe succeeds.
    jc.assertion_from_session().await.expect("session reuse");
}

#[tokio::test]
async fn a_failed_saml_page_after_login_keeps_the_session() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(Endpoint::SamlPage, Fault::Status(502), 1);
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);

    let err = jc.login(&mut io).await.unwrap_err();
    assert_eq!(
        err,
        IdpError::UnexpectedStatus {
            request: format!("GET /saml2/{DEFAULT_APP}"),
            status: 502,
            message: Some("Bad Gateway".to_owned()),
        }
    );

    let posts = fake.stats().auth_posts;
    jc.assertion_from_session()
        .await
        .expect("the session survived");
    assert_eq!(fake.stats().auth_posts, posts);
}

#[tokio::test]
async fn a_login_after_forget_starts_a_fresh_session() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let mut io =
        ScriptedInteraction::with_password(DEFAULT_PASSWORD).then_password(DEFAULT_PASSWORD);
    jc.login(&mut io).await.expect("first login");
    jc.login(&mut io).await.expect("second login");

    let stats = fake.stats();
    assert_eq!((stats.xsrf_requests, stats.logins), (2, 2));
    jc.assertion_from_session().await.expect("session reuse");
}

/// One raw HTTP/1.1 exchange with the console, to check the fake's own protocol checks
/// without the provider.
async fn raw_request(fake: &FakeJumpCloud, request: &str) -> String {
    raw_exchange(fake.addr(), request).await
}

/// The same with the SSO host, where the SAML pages are.
async fn raw_sso_request(fake: &FakeJumpCloud, request: &str) -> String {
    raw_exchange(fake.sso_addr(), request).await
}

async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// The XSRF token of a `GET /userconsole/xsrf` answer's JSON body (the header value; the
/// cookie carries it signed).
fn xsrf_token(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
    json["xsrf"].as_str().expect("an xsrf token").to_owned()
}

fn cookie_value(answer: &str, name: &str) -> String {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie in {answer}"))
}

#[tokio::test]
async fn the_fake_refuses_capitalised_keys_and_a_missing_xsrf_header() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let answer = raw_request(
        &fake,
        "GET /userconsole/xsrf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let xsrf = cookie_value(&answer, "_xsrf");
    let token = xsrf_token(&answer);
    let sid = cookie_value(&answer, "_jumpcloud_user_console_");
    let post = |headers: String, body: &str| {
        format!(
            "POST /userconsole/auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nCookie: _xsrf={xsrf}; _jumpcloud_user_console_={sid}\r\n\
             {headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let saml2aws_style = format!(
        r#"{{"Context":"sso","RedirectTo":"saml2/aws","Email":"{DEFAULT_EMAIL}","Password":"{DEFAULT_PASSWORD}","OTP":""}}"#
    );
    let camel = format!(
        r#"{{"context":"sso","redirectTo":"saml2/aws","email":"{DEFAULT_EMAIL}","password":"{DEFAULT_PASSWORD}","otp":""}}"#
    );

    let capitalised = raw_request(
        &fake,
        &post(format!("X-Xsrftoken: {token}\r\n"), &saml2aws_style),
    )
    .await;
    let no_header = raw_request(&fake, &post(String::new(), &camel)).await;
    let good = raw_request(&fake, &post(format!("X-Xsrftoken: {token}\r\n"), &camel)).await;

    assert!(capitalised.starts_with("HTTP/1.1 403"), "{capitalised}");
    assert!(no_header.starts_with("HTTP/1.1 403"), "{no_header}");
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
    assert!(
        good.contains(&format!(r#""redirectTo":"{}""#, fake.app_url("aws"))),
        "{good}"
    );
    let stats = fake.stats();
    assert_eq!(stats.rejected_auth_posts, 2);
    assert_eq!(stats.non_camel_case_bodies, 1);
    assert_eq!(stats.missing_xsrf_header, 1);
}

#[tokio::test]
async fn the_saml_page_needs_a_session_and_looks_like_a_real_idp_page() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let anonymous = raw_sso_request(
        &fake,
        "GET /saml2/aws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(anonymous.starts_with("HTTP/1.1 302"), "{anonymous}");
    assert!(
        anonymous.contains(&format!("location: {}/login", fake.base_url())),
        "{anonymous}"
    );
    assert_eq!(fake.stats().login_redirects, 1);

    // Sign in by hand, then fetch the page with the session cookie, which login kept.
    let answer = raw_request(
        &fake,
        "GET /userconsole/xsrf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let xsrf = cookie_value(&answer, "_xsrf");
    let token = xsrf_token(&answer);
    let session = cookie_value(&answer, "_jumpcloud_user_console_");
    let body = format!(
        r#"{{"context":"sso","redirectTo":"saml2/aws","email":"{DEFAULT_EMAIL}","password":"{DEFAULT_PASSWORD}","otp":""}}"#
    );
    let login = raw_request(
        &fake,
        &format!(
            "POST /userconsole/auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nX-Xsrftoken: {token}\r\n\
             Cookie: _xsrf={xsrf}; _jumpcloud_user_console_={session}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let page = raw_sso_request(
        &fake,
        &format!(
            "GET /saml2/aws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Cookie: _jumpcloud_user_console_={session}\r\n\r\n"
        ),
    )
    .await;

    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains(r#"<form method="post" action="https://signin.aws.amazon.com/saml">"#));
    assert!(page.contains(r#"<input type="hidden" name="RelayState" value="" />"#));
    let value = page
        .split("name=\"SAMLResponse\"\n      value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the SAMLResponse value sits on its own line");
    assert!(
        !value.contains('='),
        "padding is HTML-escaped like real IdPs do"
    );
    let xml = decode(&Secret::new(value.replace("&#x3D;", "=")));
    assert!(xml.contains(DEFAULT_ROLE_ARN), "{xml}");
    assert_eq!(fake.stats().saml_pages, 1);
}

// ---------------------------------------------------------------------------------------------
// JumpCloud as it really answers: the typed errors the session manager decides on.
// The messages users see are asserted end to end in `login_jumpcloud_answers.rs`.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_app_slug_with_login_in_it_is_not_the_login_page() {
    let app = samld_tests::fake_jumpcloud::FakeApp::new(
        "login",
        &[(
            DEFAULT_ROLE_ARN,
            samld_tests::fake_jumpcloud::DEFAULT_PROVIDER_ARN,
        )],
    );
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig {
        apps: vec![app],
        ..FakeJumpCloudConfig::default()
    })
    .await;
    let mut s = settings(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    s.app_url = fake.app_url("login");
    let jc = JumpCloud::new(s).unwrap();
    let mut io = ScriptedInteraction::with_password(DEFAULT_PASSWORD);
    jc.login(&mut io).await.expect("login");
    jc.assertion_from_session().await.expect("session reuse");
    // The real login page still means a lost session.
    fake.expire_all_sessions();
    assert_eq!(
        jc.assertion_from_session().await.unwrap_err(),
        IdpError::SessionExpired
    );
}

#[tokio::test]
async fn a_bare_mfa_challenge_sends_the_code_in_the_same_post() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_totp_codes(&["123456"])
            .with_bare_mfa(),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Auto);
    let mut io = ScriptedInteraction::with_password(MFA_PASSWORD).then_code("123456");
    jc.login(&mut io).await.expect("login");
    let stats = fake.stats();
    assert_eq!((stats.totp_accepted, stats.xsrf_requests), (1, 1));
}

#[tokio::test]
async fn a_bare_mfa_challenge_without_a_code_or_with_mfa_none_is_unnamed_mfa() {
    let fake = start_with(
        mfa_user()
            .with_factor("totp", "available")
            .with_factor("push", "available")
            .with_bare_mfa(),
    )
    .await;
    let auto = provider(&fake, MFA_EMAIL, MfaMode::Auto);
    let err = auto
        .login(&mut ScriptedInteraction::with_password(MFA_PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IdpError::MfaUnnamed { configured, reason: Some(_) } if configured == "auto"),
        "{err:?}"
    );
    assert!(!is_transient(&err));
    let none = provider(&fake, MFA_EMAIL, MfaMode::None);
    let err = none
        .login(&mut ScriptedInteraction::with_password(MFA_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IdpError::MfaUnnamed {
            configured: "none".to_owned(),
            reason: None
        }
    );
    // No push guessed: only `mfa = "push"` starts one.
    assert_eq!(fake.stats().pushes_started, 0);
    let push = provider(&fake, MFA_EMAIL, MfaMode::Push);
    push.login(&mut ScriptedInteraction::with_password(MFA_PASSWORD))
        .await
        .expect("push login");
    assert_eq!(fake.stats().pushes_accepted, 1);
}

#[tokio::test]
async fn a_push_denied_as_http_401_is_push_denied() {
    let fake = start_with(
        mfa_user()
            .with_factor("push", "available")
            .with_push(PushBehavior::DenyWith401AfterPolls(1)),
    )
    .await;
    let jc = provider(&fake, MFA_EMAIL, MfaMode::Push);
    let err = jc
        .login(&mut ScriptedInteraction::with_password(MFA_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(err, IdpError::PushDenied);
}

#[tokio::test]
async fn an_error_body_is_jumpclouds_error_and_not_a_wrong_password() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(
        Endpoint::Auth,
        Fault::ErrorBody(401, "Account suspended."),
        1,
    );
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let err = jc
        .login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IdpError::JumpCloudError {
            request: "POST /userconsole/auth".to_owned(),
            status: 401,
            error: "Account suspended.".to_owned(),
        }
    );
    assert!(!is_transient(&err));
    // A 5xx with an error body stays a transient server error.
    fake.inject(Endpoint::Xsrf, Fault::ErrorBody(503, "down"), 1);
    let err = jc
        .login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdpError::UnexpectedStatus { status: 503, .. }) && is_transient(&err),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_redirect_to_the_login_page_from_the_password_post() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    fake.inject(Endpoint::Auth, Fault::RedirectToLogin, 1);
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let err = jc
        .login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IdpError::SentToLoginPage {
            request: "POST /userconsole/auth".to_owned()
        }
    );
    assert!(!is_transient(&err));
}

#[tokio::test]
async fn throttling_on_any_request_carries_retry_after() {
    use samld_tests::fake_jumpcloud::RetryAfter;
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let login = || async {
        jc.login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
            .await
            .unwrap_err()
    };
    fake.inject(Endpoint::Xsrf, Fault::Throttle(RetryAfter::Seconds(30)), 1);
    let err = login().await;
    assert_eq!(
        err,
        IdpError::Throttled {
            request: "GET /userconsole/xsrf".to_owned(),
            retry_after: Some(Duration::from_secs(30)),
        }
    );
    assert!(is_transient(&err));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));

    fake.inject(
        Endpoint::Auth,
        Fault::Throttle(RetryAfter::DateIn(Duration::from_secs(300))),
        1,
    );
    let err = login().await;
    let wait = err.retry_after().expect("a wait from the HTTP date");
    // HTTP dates have whole seconds.
    assert!(
        wait > Duration::from_secs(297) && wait <= Duration::from_secs(300),
        "{wait:?}"
    );
    assert!(
        matches!(&err, IdpError::Throttled { request, .. } if request == "POST /userconsole/auth")
    );

    fake.inject(Endpoint::SamlPage, Fault::Throttle(RetryAfter::Absent), 1);
    let err = login().await;
    assert_eq!(
        err,
        IdpError::Throttled {
            request: format!("GET /saml2/{DEFAULT_APP}"),
            retry_after: None,
        }
    );
    assert!(is_transient(&err));

    // From the session too: the probe.
    fake.inject(
        Endpoint::SelfProbe,
        Fault::Throttle(RetryAfter::Seconds(5)),
        1,
    );
    let err = jc.assertion_from_session().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_browser_only_app_is_browser_required_at_login_and_from_the_session() {
    let app = samld_tests::fake_jumpcloud::FakeApp::new(
        DEFAULT_APP,
        &[(
            DEFAULT_ROLE_ARN,
            samld_tests::fake_jumpcloud::DEFAULT_PROVIDER_ARN,
        )],
    )
    .requiring_a_browser();
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig {
        apps: vec![app],
        ..FakeJumpCloudConfig::default()
    })
    .await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    let expected = IdpError::BrowserRequired {
        request: format!("GET /saml2/{DEFAULT_APP}"),
        url: fake.app_url(DEFAULT_APP),
    };
    let err = jc
        .login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(err, expected);
    assert!(!is_transient(&err));
    // The sign-in itself succeeded and is kept; the session meets the same policy.
    assert_eq!(jc.assertion_from_session().await.unwrap_err(), expected);
    assert_eq!(fake.stats().policy_pages, 2);
}

#[tokio::test]
async fn oversized_answers_are_cut_off_at_their_caps() {
    use samld::idp::jumpcloud::{MAX_JSON_BYTES, MAX_PAGE_BYTES};
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let jc = provider(&fake, DEFAULT_EMAIL, MfaMode::Auto);
    // Just over the cap fails; the real answers (far under it) pass.
    fake.inject(
        Endpoint::SamlPage,
        Fault::Oversized(MAX_PAGE_BYTES as u64 + 1),
        1,
    );
    let err = jc
        .login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IdpError::TooLarge {
            request: format!("GET /saml2/{DEFAULT_APP}"),
            limit: MAX_PAGE_BYTES,
            kind: "a page",
        }
    );
    fake.inject(
        Endpoint::SelfProbe,
        Fault::Oversized(64 * MAX_JSON_BYTES as u64),
        1,
    );
    // The probe's success is not read; a huge page from the session is cut off as well.
    fake.inject(
        Endpoint::SamlPage,
        Fault::Oversized(16 * MAX_PAGE_BYTES as u64),
        1,
    );
    let err = jc.assertion_from_session().await.unwrap_err();
    assert!(
        matches!(err, IdpError::TooLarge { limit, .. } if limit == MAX_PAGE_BYTES),
        "{err:?}"
    );
    jc.assertion_from_session().await.expect("session reuse");
}

/// Whether samld's retry policy would try this failure again by itself.
fn is_transient(err: &IdpError) -> bool {
    matches!(classify_idp(err), Failure::Transient { .. })
}
