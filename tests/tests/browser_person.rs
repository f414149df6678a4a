//! The person at the browser, for real: a headless Chromium signs in to the fake JumpCloud
//! (on `localhost`) with a password and a security key, a TOTP code, or through an app whose
//! policy only a browser passes, driven by [`BrowserPerson`] over a second DevTools channel.
//!
//! The test starts Chromium itself (samlctl's part, without its pipe); the browser reaches
//! nothing but 127.0.0.1 and localhost. Since nobody intercepts the auto-posted SAML form
//! here, reaching it is read off the fake's counters.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use samld_tests::browser_person::{BrowserPerson, security_key};
use samld_tests::fake_jumpcloud::{
    AUTH_FAILED, DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN,
    DEFAULT_ROLE_ARN, FakeApp, FakeJumpCloud, FakeJumpCloudConfig, FakeJumpCloudStats, FakeUser,
    PushBehavior, WEBAUTHN_FAILED,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(30);

/// A headless Chromium with its own profile, killed on drop.
struct Chromium {
    child: Child,
    profile: tempfile::TempDir,
}

impl Chromium {
    fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().expect("a profile directory");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
        Self { child, profile }
    }

    fn profile(&self) -> PathBuf {
        self.profile.path().to_owned()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fake on localhost, with a runtime of its own (the person is synchronous).
struct World {
    fake: FakeJumpCloud,
    rt: tokio::runtime::Runtime,
}

impl World {
    fn new(user: FakeUser, app: FakeApp) -> Self {
        let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let config = FakeJumpCloudConfig {
            users: vec![user],
            apps: vec![app],
            ..FakeJumpCloudConfig::default()
        }
        .on_localhost();
        let fake = rt.block_on(FakeJumpCloud::start(config));
        Self { fake, rt }
    }

    fn wait_for_stats(&self, what: &str, done: impl Fn(&FakeJumpCloudStats) -> bool) {
        let waited = self
            .rt
            .block_on(async { tokio::time::timeout(WAIT, self.fake.wait_for_stats(done)).await });
        assert!(
            waited.is_ok(),
            "timed out waiting for {what}: {:?}",
            self.fake.stats()
        );
    }
}

fn app() -> FakeApp {
    FakeApp::new(DEFAULT_APP, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)])
}

/// Opens the app's URL and types the password on the login page it lands on.
fn sign_in_with_password(world: &World, profile: &Path) -> BrowserPerson {
    let person = BrowserPerson::attach(profile, WAIT).expect("attached");
    let url = person.wait_for_url("/login", WAIT).expect("the login page");
    assert!(url.starts_with(&world.fake.base_url()), "{url}");
    assert!(url.contains("redirectTo=saml2%2Faws"), "{url}");
    person.wait_for_selector("#email", WAIT).expect("the form");
    person.fill("#email", DEFAULT_EMAIL).expect("email");
    person
        .fill("#password", DEFAULT_PASSWORD)
        .expect("password");
    person
}

#[test]
fn a_person_signs_in_with_a_password_and_a_security_key() {
    let (id, pkcs8, public) = security_key();
    let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD).with_webauthn(id.clone(), public);
    let world = World::new(user, app());
    assert!(
        world
            .fake
            .app_url(DEFAULT_APP)
            .starts_with("http://localhost:")
    );
    let browser = Chromium::open(&world.fake.app_url(DEFAULT_APP));

    let person = sign_in_with_password(&world, &browser.profile());
    person
        .add_security_key("localhost", &id, &pkcs8)
        .expect("the security key is plugged in");
    person.click("#continue").expect("continue");
    person
        .wait_for_selector("#security-key", WAIT)
        .expect("the security key step");
    person.click("#security-key").expect("touch");

    world.wait_for_stats("the SAML form", |s| s.saml_pages == 1);
    let stats = world.fake.stats();
    assert_eq!(
        (
            stats.webauthn_challenges,
            stats.webauthn_accepted,
            stats.webauthn_refused
        ),
        (1, 1, 0),
        "{stats:?} {:?}",
        world.fake.webauthn_refusals()
    );
    assert_eq!((stats.logins, stats.login_redirects), (1, 1), "{stats:?}");
    person.close_window().expect("the window closes");
}

#[test]
fn a_wrong_security_key_is_refused_and_the_page_says_so() {
    let (id, _, registered) = security_key();
    let (_, other_pkcs8, _) = security_key();
    let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD).with_webauthn(id.clone(), registered);
    let world = World::new(user, app());
    let browser = Chromium::open(&world.fake.app_url(DEFAULT_APP));

    let person = sign_in_with_password(&world, &browser.profile());
    // The registered credential id, but another private key: a cloned or forged key.
    person
        .add_security_key("localhost", &id, &other_pkcs8)
        .expect("the security key is plugged in");
    person.click("#continue").expect("continue");
    person
        .wait_for_selector("#security-key", WAIT)
        .expect("the security key step");
    person.click("#security-key").expect("touch");

    let message = person
        .wait_for_text("#message", WEBAUTHN_FAILED, WAIT)
        .expect("the refusal is shown");
    assert_eq!(message, WEBAUTHN_FAILED);
    let stats = world.fake.stats();
    assert_eq!(
        (
            stats.webauthn_accepted,
            stats.webauthn_refused,
            stats.saml_pages,
            stats.logins
        ),
        (0, 1, 0, 0),
        "{stats:?}"
    );
    let refusals = world.fake.webauthn_refusals();
    assert!(refusals[0].contains("signature"), "{refusals:?}");
}

#[test]
fn a_person_signs_in_with_a_password_and_a_totp_code() {
    let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)
        .with_factor("totp", "available")
        .with_totp_codes(&["123456"]);
    let world = World::new(user, app());
    let browser = Chromium::open(&world.fake.app_url(DEFAULT_APP));

    let person = sign_in_with_password(&world, &browser.profile());
    // A typo first: the page says what JumpCloud answered.
    person.fill("#password", "wrong").expect("password");
    person.click("#continue").expect("continue");
    let message = person
        .wait_for_text("#message", AUTH_FAILED, WAIT)
        .expect("the refusal is shown");
    assert_eq!(message, AUTH_FAILED);

    person
        .fill("#password", DEFAULT_PASSWORD)
        .expect("password");
    person.click("#continue").expect("continue");
    person
        .wait_for_selector("#otp", WAIT)
        .expect("the TOTP step");
    assert!(
        person.eval("document.getElementById('security-key').checkVisibility()")
            == Ok(serde_json::Value::Bool(false)),
        "only the offered factor is shown"
    );
    person.fill("#otp", "123456").expect("code");
    person.click("#verify").expect("verify");

    world.wait_for_stats("the SAML form", |s| s.saml_pages == 1);
    let stats = world.fake.stats();
    assert_eq!(
        (stats.failed_passwords, stats.totp_accepted, stats.logins),
        (1, 1, 1),
        "{stats:?}"
    );
}

#[test]
fn a_browser_passes_the_device_check_of_a_browser_only_app() {
    let world = World::new(
        FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
        app().requiring_a_browser(),
    );
    let browser = Chromium::open(&world.fake.app_url(DEFAULT_APP));

    let person = sign_in_with_password(&world, &browser.profile());
    person.click("#continue").expect("continue");

    world.wait_for_stats("the SAML form", |s| s.saml_pages == 1);
    let stats = world.fake.stats();
    assert_eq!(
        (
            stats.logins,
            stats.policy_pages,
            stats.device_checks_passed,
            stats.device_checks_failed
        ),
        (1, 1, 1, 0),
        "{stats:?}"
    );
}

#[test]
fn a_person_signs_in_with_a_password_and_a_push() {
    let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::AcceptAfterPolls(2));
    let world = World::new(user, app());
    let browser = Chromium::open(&world.fake.app_url(DEFAULT_APP));

    let person = sign_in_with_password(&world, &browser.profile());
    person.click("#continue").expect("continue");
    person
        .wait_for_selector("#push", WAIT)
        .expect("the push step");
    person.click("#push").expect("push");

    world.wait_for_stats("the SAML form", |s| s.saml_pages == 1);
    let stats = world.fake.stats();
    assert_eq!(
        (
            stats.pushes_started,
            stats.pushes_accepted,
            stats.push_polls,
            stats.logins
        ),
        (1, 1, 2, 1),
        "{stats:?}"
    );
}
