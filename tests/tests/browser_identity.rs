//! A session belongs to an identity: a browser sign-in as someone else is refused before
//! samld adopts it, with the real `samld` and `samlctl`, headless Chromium reaching nothing
//! beyond 127.0.0.1, the fake JumpCloud's sign-in page (signing in alice or bob) and the fake
//! STS. The test plays the person at the browser through a second DevTools channel. The
//! JumpCloud provider is also tried alone against the fake, with hand-overs no real browser
//! makes (a console session of one user, an assertion of another).

mod support;

use samld::future::BoxFuture;
use samld::idp::jumpcloud::{JumpCloud, JumpCloudSettings, SharedSession};
use samld::idp::{IdentityProvider, IdpError, LoginInteraction};
use samld_proto::{AccountState, BrowserCookie, BrowserSignIn, Secret};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN, DEFAULT_ROLE_ARN, FakeApp,
    FakeJumpCloud, FakeJumpCloudConfig, FakeUser, SESSION_COOKIE,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{failed, succeeded};
use samld_tests::interaction::ScriptedInteraction;
use samld_tests::saml_builder::{SamlSpec, saml_response_base64};
use std::process::Output;

use support::World;
use support::browser::{
    CHROMIUM, browser_args_toml, enter_password, finish, person_at_login_page, start_samlctl,
};

const BOB_EMAIL: &str = "bob@example.com";
const BOB_PASSWORD: &str = "pw-bob-Wq3!zT8#kL5";

/// The fake JumpCloud with alice and bob, both assigned the default app.
fn alice_and_bob(config: impl FnOnce(&FakeJumpCloud, &FakeSts) -> String) -> World {
    let jc = FakeJumpCloudConfig {
        users: vec![
            FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
            FakeUser::new(BOB_EMAIL, BOB_PASSWORD),
        ],
        apps: vec![FakeApp::new(
            DEFAULT_APP,
            &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)],
        )],
        ..FakeJumpCloudConfig::default()
    }
    .on_localhost();
    World::with_setup(
        jc,
        FakeStsConfig::default(),
        |jc, sts, _| config(jc, sts),
        None,
    )
}

/// `[accounts.NAME]` at the fake's app, with the browser samlctl opens.
fn account(name: &str, jc: &FakeJumpCloud, sts: &FakeSts, keys: &str) -> String {
    format!(
        "[accounts.{name}]\nurl = \"{url}\"\nsts_endpoint = \"{sts}\"\nregion = \"us-east-1\"\n\
         browser = \"{CHROMIUM}\"\nbrowser_args = {args}\n{keys}\n",
        url = jc.app_url(DEFAULT_APP),
        sts = sts.endpoint_url(),
        args = browser_args_toml(),
    )
}

/// `samlctl ARGS`, with the person signing in to the browser it opens as `email`.
fn browser_login_as(w: &World, args: &[&str], email: &str, password: &str) -> Output {
    let samlctl = start_samlctl(w, args);
    enter_password(&person_at_login_page(w), email, password);
    finish(samlctl)
}

/// The identity status shows for `account`.
fn identity_of(w: &World, account: &str) -> Option<String> {
    w.account_status(account).identity
}

/// Whose assertion STS got for each call, by the session name STS put in the assumed-role
/// ARN (the fake's assertions carry the email as RoleSessionName).
fn sts_sessions(w: &World) -> Vec<String> {
    w.sts
        .issued()
        .iter()
        .map(|c| {
            let arn = &c.assumed_role_arn;
            arn.rsplit('/').next().unwrap_or(arn).to_owned()
        })
        .collect()
}

/// The keys of a JumpCloud account of alice's at the fake.
fn alices_keys(jc: &FakeJumpCloud) -> String {
    format!(
        "username = \"{DEFAULT_EMAIL}\"\njumpcloud_console_url = \"{}\"",
        jc.base_url()
    )
}

/// `samlctl login api` with alice's password: STS gets her assertion.
fn log_alice_in_to_api(w: &World) {
    succeeded(
        &w.login("api", DEFAULT_PASSWORD, None),
        "samlctl login api as alice",
    );
    assert_eq!(sts_sessions(w), [DEFAULT_EMAIL]);
}

#[test]
fn a_browser_signed_in_as_someone_else_is_refused_and_the_live_session_stays() {
    let w = alice_and_bob(|jc, sts| {
        let alice = alices_keys(jc);
        account("api", jc, sts, &alice)
            + &account("web", jc, sts, &format!("{alice}\nlogin = \"browser\""))
    });
    log_alice_in_to_api(&w);

    // --force opens the browser although alice's session lives (it would be reused).
    let login = browser_login_as(&w, &["login", "web", "--force"], BOB_EMAIL, BOB_PASSWORD);
    let message = failed(&login, "a browser sign-in as bob for web");
    assert!(
        message.contains(
            "Signed in to the browser as bob@example.com, but web is configured for \
             alice@example.com; nothing changed. Sign out of JumpCloud in that browser, or run \
             `samlctl login web --browser` again and sign in as alice@example.com."
        ),
        "{message}"
    );
    assert_eq!(
        sts_sessions(&w),
        [DEFAULT_EMAIL],
        "bob's assertion reached STS"
    );

    // alice's session is untouched: the refresh reuses it, and STS gets alice's assertion.
    let posts = w.jc.stats().password_posts;
    succeeded(&w.samlctl(&["refresh", "api"]), "samlctl refresh api");
    assert_eq!(sts_sessions(&w), [DEFAULT_EMAIL, DEFAULT_EMAIL]);
    assert_eq!(
        w.jc.stats().password_posts,
        posts,
        "the refresh needed no login"
    );
    let status = w.status();
    assert!(
        status.sessions.iter().all(|s| s.username == DEFAULT_EMAIL),
        "{:?}",
        status.sessions
    );
    assert_eq!(w.account_status("api").state, AccountState::Active);
}

#[test]
fn a_saml_account_is_whoever_signed_in_first_until_the_person_forces_another() {
    let w = alice_and_bob(|jc, sts| account("prod", jc, sts, "provider = \"saml\""));
    assert_eq!(identity_of(&w, "prod"), None);
    let login = browser_login_as(&w, &["login", "prod"], DEFAULT_EMAIL, DEFAULT_PASSWORD);
    let text = succeeded(&login, "the first browser sign-in, as alice");
    assert!(
        text.starts_with("Logged in to prod as alice@example.com"),
        "{text}"
    );
    assert_eq!(identity_of(&w, "prod").as_deref(), Some(DEFAULT_EMAIL));
    let table = succeeded(&w.samlctl(&["status"]), "samlctl status");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("prod ") && l.contains(DEFAULT_EMAIL)),
        "{table}"
    );

    // The IdP session ends; the person signs in again, as bob this time.
    w.jc.expire_all_sessions();
    let login = browser_login_as(&w, &["login", "prod"], BOB_EMAIL, BOB_PASSWORD);
    let message = failed(&login, "a browser sign-in as bob for alice's prod");
    assert!(
        message.contains(
            "Signed in to the browser as bob@example.com, but prod is alice@example.com's"
        ) && message.contains("`samlctl login prod --browser --force` to make bob@example.com"),
        "{message}"
    );
    assert_eq!(
        sts_sessions(&w),
        [DEFAULT_EMAIL],
        "bob's assertion reached STS"
    );
    let status = w.account_status("prod");
    assert_eq!(status.identity.as_deref(), Some(DEFAULT_EMAIL));
    assert_ne!(status.state, AccountState::LoggingIn);

    // The person forces it: signing in as bob makes bob prod's identity.
    let forced = browser_login_as(&w, &["login", "prod", "--force"], BOB_EMAIL, BOB_PASSWORD);
    let text = succeeded(&forced, "a forced browser sign-in as bob");
    assert!(
        text.starts_with("Logged in to prod as bob@example.com"),
        "{text}"
    );
    assert_eq!(identity_of(&w, "prod").as_deref(), Some(BOB_EMAIL));
    assert_eq!(sts_sessions(&w), [DEFAULT_EMAIL, BOB_EMAIL]);
    // A logout ends the session, not whose the account is.
    succeeded(&w.samlctl(&["logout", "prod"]), "samlctl logout prod");
    assert_eq!(identity_of(&w, "prod").as_deref(), Some(BOB_EMAIL));
}

// ---------------------------------------------------------------------------------------
// The JumpCloud provider alone, against the fake: which of the two checks refuses what.

/// What a browser hands samld: an assertion naming `subject`, and the console cookie of a
/// session signed in as `console_user` (no cookie with `None`).
fn handed_over(jc: &FakeJumpCloud, subject: &str, console_user: Option<&str>) -> BrowserSignIn {
    let spec = SamlSpec::new(subject, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]);
    let cookies = console_user.map(|email| BrowserCookie {
        name: SESSION_COOKIE.into(),
        value: Secret::new(jc.signed_in_session(email)),
        domain: jc.addr().ip().to_string(),
        path: "/".into(),
        secure: false,
        expires: None,
    });
    BrowserSignIn {
        saml_response: Secret::new(saml_response_base64(&spec)),
        cookies: cookies.into_iter().collect(),
        replace_identity: false,
    }
}

/// A person who hands over a browser's sign-in and can type nothing.
struct Browser(Option<BrowserSignIn>);

impl LoginInteraction for Browser {
    fn password<'a>(&'a mut self, _: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async {
            Err(IdpError::PasswordUnavailable {
                reason: "a browser sign-in".into(),
            })
        })
    }

    fn mfa_code<'a>(&'a mut self, _: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async {
            Err(IdpError::MfaCodeUnavailable {
                reason: "a browser sign-in".into(),
            })
        })
    }

    fn progress<'a>(&'a mut self, _: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn browser_sign_in(&mut self) -> Option<BrowserSignIn> {
        self.0.take()
    }
}

/// alice's provider for account `web`, and the fake with alice and bob.
async fn alices_provider() -> (FakeJumpCloud, JumpCloud) {
    let jc = FakeJumpCloud::start(FakeJumpCloudConfig {
        users: vec![
            FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
            FakeUser::new(BOB_EMAIL, BOB_PASSWORD),
        ],
        ..FakeJumpCloudConfig::default()
    })
    .await;
    let mut settings = JumpCloudSettings::new(jc.app_url(DEFAULT_APP), DEFAULT_EMAIL);
    settings.account = "web".into();
    settings.console_url = jc.base_url();
    let provider = JumpCloud::new(settings).expect("valid settings");
    (jc, provider)
}

fn refused_as(result: Result<Secret, IdpError>, signed_in: &str) {
    match result {
        Err(IdpError::IdentityMismatch(m)) => {
            assert_eq!(m.signed_in.as_deref(), Some(signed_in), "{m}");
            assert_eq!(m.expected, DEFAULT_EMAIL);
        }
        other => panic!("expected a refusal naming {signed_in}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_console_and_the_assertion_must_both_be_the_configured_user() {
    let (jc, web) = alices_provider().await;
    // The console says bob, whatever the assertion says.
    let bob_console = handed_over(&jc, DEFAULT_EMAIL, Some(BOB_EMAIL));
    refused_as(web.login(&mut Browser(Some(bob_console))).await, BOB_EMAIL);
    // The console says alice but the assertion names bob.
    let bob_assertion = handed_over(&jc, BOB_EMAIL, Some(DEFAULT_EMAIL));
    refused_as(
        web.login(&mut Browser(Some(bob_assertion))).await,
        BOB_EMAIL,
    );
    // No console cookie: the assertion alone decides.
    let no_cookie = handed_over(&jc, BOB_EMAIL, None);
    refused_as(web.login(&mut Browser(Some(no_cookie))).await, BOB_EMAIL);
    assert!(!web.has_session(), "a refused sign-in was adopted");
    assert_eq!(web.identities(), [DEFAULT_EMAIL]);

    // alice's own, names differing only in case: adopted, and the console's names become
    // the session's identity.
    let alice = handed_over(&jc, "Alice@Example.com", Some(DEFAULT_EMAIL));
    web.login(&mut Browser(Some(alice)))
        .await
        .expect("alice's sign-in");
    assert!(web.has_session());
    assert!(
        web.identities().contains(&"alice".to_owned()),
        "{:?}",
        web.identities()
    );
}

#[tokio::test]
async fn a_refused_sign_in_leaves_the_live_session_of_the_configured_user() {
    let (jc, web) = alices_provider().await;
    web.login(&mut Browser(Some(handed_over(
        &jc,
        DEFAULT_EMAIL,
        Some(DEFAULT_EMAIL),
    ))))
    .await
    .expect("alice's sign-in");
    let bob = handed_over(&jc, BOB_EMAIL, Some(BOB_EMAIL));
    refused_as(web.login(&mut Browser(Some(bob))).await, BOB_EMAIL);
    // The session held is still alice's: its next assertion names her.
    let saml = web.assertion_from_session().await.expect("alice's session");
    let subject = samld::saml::parse_saml_response(saml.expose())
        .unwrap()
        .subject;
    assert_eq!(subject.as_deref(), Some(DEFAULT_EMAIL));
}

#[test]
fn an_assertion_for_someone_else_from_the_held_session_never_reaches_sts() {
    let w = alice_and_bob(|jc, sts| account("api", jc, sts, &alices_keys(jc)));
    log_alice_in_to_api(&w);
    // The IdP's session of alice starts answering with assertions for bob.
    w.jc.name_in_assertions(DEFAULT_EMAIL, BOB_EMAIL);
    let message = failed(
        &w.samlctl(&["refresh", "api"]),
        "a refresh given bob's assertion",
    );
    assert!(
        message.contains(
            "JumpCloud gave samld an assertion for bob@example.com for api, but api's session \
             is alice@example.com's; samld did not send it to AWS."
        ),
        "{message}"
    );
    assert_eq!(
        sts_sessions(&w),
        [DEFAULT_EMAIL],
        "bob's assertion reached STS"
    );
    // The helper still serves alice's credentials, and never bob's.
    succeeded(&w.helper(&["api"]), "samld-helper api");
    assert_eq!(sts_sessions(&w), [DEFAULT_EMAIL]);
}

#[tokio::test]
async fn each_app_of_a_password_session_may_name_the_user_its_own_way() {
    let jc = FakeJumpCloud::start(FakeJumpCloudConfig {
        apps: vec![
            FakeApp::new(DEFAULT_APP, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]),
            FakeApp::new("other", &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]),
        ],
        ..FakeJumpCloudConfig::default()
    })
    .await;
    let session = SharedSession::default();
    let provider = |app: &str| {
        let mut settings = JumpCloudSettings::new(jc.app_url(app), DEFAULT_EMAIL);
        settings.console_url = jc.base_url();
        JumpCloud::with_session(settings, session.clone()).expect("valid settings")
    };
    let (by_email, by_name) = (provider(DEFAULT_APP), provider("other"));
    by_email
        .login(&mut ScriptedInteraction::with_password(DEFAULT_PASSWORD))
        .await
        .expect("alice's password login");
    // The other app sends the user name as NameID: its first assertion says so.
    jc.name_in_assertions(DEFAULT_EMAIL, "alice");
    by_name
        .assertion_from_session()
        .await
        .expect("the other app");
    assert!(by_name.identities().contains(&"alice".to_owned()));
    // The first app named alice by her email: "alice" from it is a change, not its format.
    assert!(!by_email.identities().contains(&"alice".to_owned()));
}
