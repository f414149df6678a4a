//! Browser sign-in (`samlctl login --browser`) with Debian's Chromium, headless, reaching
//! nothing beyond 127.0.0.1: the real `samld`, `samlctl` and `samld-helper`, the fake
//! JumpCloud's sign-in page (the console's own JSON API, TOTP, a WebAuthn security key, a
//! device check only a browser passes) and the fake STS. The test plays the person at the
//! browser through a second DevTools channel ([`BrowserPerson`]); samlctl drives the browser
//! over its pipe, as it does for a user.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use std::process::{Output, Stdio};
use std::time::Duration;

use samld_client::browser::{self, BrowserError, BrowserSettings};
use samld_proto::{AccountState, AuditEvent, AuditKind};
use samld_tests::browser_person::{BrowserPerson, security_key};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN, DEFAULT_ROLE_ARN, FakeApp,
    FakeJumpCloud, FakeJumpCloudConfig, FakeUser,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{failed, stderr, succeeded};
use support::World;
use support::browser::{
    CHROMIUM, PAGE_WAIT, browser_args_toml, finish, offline_args, person_at_login_page,
    start_samlctl,
};

/// Serves one page at every path and records the request lines it got.
fn serve(page: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/app",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let log = Arc::clone(&log);
            // One thread per connection: Chromium opens spare connections it may never send
            // on, and one of them must not hold up the request that matters.
            thread::spawn(move || answer(stream, page, &log));
        }
    });
    (url, seen)
}

fn answer(mut stream: std::net::TcpStream, page: &str, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
        return;
    }
    log.lock().unwrap().push(line.trim().to_owned());
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: idp_session=s3cr3t; Path=/; HttpOnly\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.flush();
}

fn settings(url: &str) -> BrowserSettings {
    BrowserSettings {
        account: "prod".into(),
        url: url.into(),
        browser: Some(CHROMIUM.into()),
        args: offline_args(),
    }
}

fn profile() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("state").join("samld").join("browser");
    (dir, profile)
}

#[test]
fn the_saml_post_to_aws_is_caught_with_the_idp_cookies() {
    const PAGE: &str = "<!DOCTYPE html><html><body><form method=\"post\" \
        action=\"https://signin.aws.amazon.com/saml\"><input type=\"hidden\" name=\"SAMLResponse\" \
        value=\"PHNhbWw+PC9zYW1sPg==\"><input type=\"hidden\" name=\"RelayState\" value=\"\">\
        </form><script>document.forms[0].submit()</script></body></html>";
    let (url, seen) = serve(PAGE);
    let (_dir, profile) = profile();
    let mut heard = Vec::new();
    let signed_in =
        browser::sign_in(&settings(&url), &profile, &mut |m| heard.push(m.to_owned())).unwrap();
    assert_eq!(signed_in.saml_response.expose(), "PHNhbWw+PC9zYW1sPg==");
    let cookie = signed_in
        .cookies
        .iter()
        .find(|c| c.name == "idp_session")
        .expect("the IdP's cookie");
    assert_eq!(
        (cookie.value.expose(), cookie.domain.as_str()),
        ("s3cr3t", "127.0.0.1")
    );
    assert_eq!(*seen.lock().unwrap(), ["GET /app HTTP/1.1"]);
    assert!(heard.iter().any(|m| m.contains("sign in")), "{heard:?}");
    let mode = std::fs::metadata(&profile).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
}

#[test]
fn a_saml_post_from_a_frame_of_another_site_is_caught_too() {
    // Another site's frame runs in a process (and a DevTools target) of its own.
    const FRAME: &str = "<!DOCTYPE html><html><body><form method=\"post\" \
        action=\"https://signin.aws.amazon.com/saml\"><input type=\"hidden\" \
        name=\"SAMLResponse\" value=\"ZnJhbWU=\"></form>\
        <script>document.forms[0].submit()</script></body></html>";
    let (frame_url, frame_seen) = serve(FRAME);
    let frame_url = frame_url.replace("127.0.0.1", "localhost");
    let page: &'static str = Box::leak(
        format!("<!DOCTYPE html><html><body><iframe src=\"{frame_url}\"></iframe></body></html>")
            .into_boxed_str(),
    );
    let (url, _) = serve(page);
    let (_dir, profile) = profile();
    let signed_in = browser::sign_in(&settings(&url), &profile, &mut |_| {}).unwrap();
    assert_eq!(signed_in.saml_response.expose(), "ZnJhbWU=");
    assert_eq!(*frame_seen.lock().unwrap(), ["GET /app HTTP/1.1"]);
}

#[test]
fn a_browser_that_dies_gives_a_clear_error() {
    let (_dir, profile) = profile();
    let mut s = settings("http://127.0.0.1:9/app");
    // `false` exits at once, like a browser that crashes on start.
    s.browser = Some("/bin/false".into());
    let error = browser::sign_in(&s, &profile, &mut |_| {}).unwrap_err();
    assert!(matches!(error, BrowserError::Exited { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("the browser exited before the sign-in finished"),
        "{error}"
    );
}

#[test]
fn a_missing_browser_says_where_it_looked() {
    let (_dir, profile) = profile();
    let mut s = settings("http://127.0.0.1:9/app");
    s.browser = Some("/nonexistent/chrome".into());
    let error = browser::sign_in(&s, &profile, &mut |_| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the account's browser = \"/nonexistent/chrome\" is not an executable file"
    );
}

// ---------------------------------------------------------------------------------------
// End to end: samlctl login --browser, samld, the fakes.

/// A TOTP code the fake accepts (once).
const CODE: &str = "246810";

/// One account, `prod`, signing in through the browser at the fake's app `app`.
fn browser_account(jc: &FakeJumpCloud, sts: &FakeSts, app: &str, extra: &str) -> String {
    format!(
        "[accounts.prod]\nurl = \"{url}\"\nusername = \"{DEFAULT_EMAIL}\"\nlogin = \"browser\"\n\
         jumpcloud_console_url = \"{console}\"\nsts_endpoint = \"{sts}\"\nregion = \"us-east-1\"\n\
         browser = \"{CHROMIUM}\"\nbrowser_args = {args}\n{extra}",
        url = jc.app_url(app),
        console = jc.base_url(),
        sts = sts.endpoint_url(),
        args = browser_args_toml(),
    )
}

fn world(users: Vec<FakeUser>, apps: Vec<FakeApp>, extra: &'static str) -> World {
    world_with_sts(users, apps, extra, FakeStsConfig::default())
}

fn world_with_sts(
    users: Vec<FakeUser>,
    apps: Vec<FakeApp>,
    extra: &'static str,
    sts: FakeStsConfig,
) -> World {
    let app = apps[0].name.clone();
    let jc = FakeJumpCloudConfig {
        users,
        apps,
        ..FakeJumpCloudConfig::default()
    }
    .on_localhost();
    World::with_setup(
        jc,
        sts,
        move |jc, sts, _| browser_account(jc, sts, &app, extra),
        None,
    )
}

fn default_app() -> FakeApp {
    FakeApp::new(DEFAULT_APP, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)])
}

/// Types alice's email and password and presses Continue.
fn enter_password(person: &BrowserPerson) {
    support::browser::enter_password(person, DEFAULT_EMAIL, DEFAULT_PASSWORD);
}

/// `aws sts get-caller-identity --profile prod` with the venv's AWS CLI (the test command
/// puts it on PATH), whose profile has `credential_process = samld-helper prod`; its output
/// is the account id.
fn aws_caller_identity(w: &World) -> Output {
    let config = w.env.path().join("aws-config");
    let helper = samld_tests::fixture::bin_path("samld-helper");
    std::fs::write(
        &config,
        format!(
            "[profile prod]\ncredential_process = {} prod\nregion = us-east-1\n",
            helper.display()
        ),
    )
    .unwrap();
    let template = w.env.command("samlctl");
    let mut aws = std::process::Command::new("aws");
    aws.env_clear();
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            aws.env(key, value);
        }
    }
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        aws.env("PYENV_ROOT", root);
    }
    aws.env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .args(["sts", "get-caller-identity", "--profile", "prod"])
        .args(["--endpoint-url", &w.sts.endpoint_url()])
        .args(["--query", "Account", "--output", "text"])
        .stdin(Stdio::null())
        .output()
        .expect("run the AWS CLI (scripts/test.sh puts the venv's on PATH)")
}

/// The SAML response STS got is the one the fake's page put in the form the browser posted.
fn assert_sts_got_the_browsers_assertion(w: &World) {
    let handed_out = w.jc.saml_responses();
    let used = w.sts.last_assertion().expect("an AssumeRoleWithSAML call");
    assert!(
        handed_out.contains(&used),
        "STS got an assertion the fake never served"
    );
}

/// The error of each login in the audit (`None` for one that succeeded), oldest first.
fn logins_audited(w: &World) -> Vec<Option<String>> {
    let text = succeeded(&w.samlctl(&["audit", "--json"]), "samlctl audit --json");
    text.lines()
        .map(|line| serde_json::from_str::<AuditEvent>(line).expect("an audit event"))
        .filter(|event| event.kind == AuditKind::Login)
        .map(|event| event.error)
        .collect()
}

#[test]
fn browser_login_with_totp_then_headless_refresh_from_the_browser_session() {
    let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)
        .with_factor("totp", "available")
        .with_totp_codes(&[CODE]);
    let w = world(vec![user], vec![default_app()], "");
    let login = start_samlctl(&w, &["login", "prod"]);
    let person = person_at_login_page(&w);
    enter_password(&person);
    person
        .wait_for_selector("#otp", PAGE_WAIT)
        .expect("the TOTP step");
    person.fill("#otp", CODE).unwrap();
    person.click("#verify").unwrap();
    let out = finish(login);
    let text = succeeded(&out, "samlctl login prod (browser)");
    assert!(
        text.starts_with("Logged in to prod as alice@example.com"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("Waiting for you to sign in in the browser window"),
        "{}",
        stderr(&out)
    );
    let after_login = w.jc.stats();
    assert_eq!(after_login.totp_accepted, 1);
    assert_eq!(w.sts.calls(), 1);
    assert_sts_got_the_browsers_assertion(&w);
    // samlctl's check for a session to reuse, before it opened the browser, is no login of
    // its own: the audit has the browser login alone, and it succeeded.
    assert_eq!(logins_audited(&w), [None]);

    // The helper answers from memory: nothing more reaches JumpCloud or STS.
    let creds = succeeded(&w.helper(&["prod"]), "helper");
    assert!(creds.contains("AccessKeyId"), "{creds}");
    assert_eq!(
        (w.jc.stats().requests, w.sts.calls()),
        (after_login.requests, 1)
    );

    // Logging in again while samld's session lives needs no browser: samlctl asks samld to
    // reuse the session first (a browser opened here would wait for a person who never
    // comes, and the run would time out).
    let again = w.samlctl(&["login", "prod"]);
    let text = succeeded(&again, "samlctl login prod with a live session");
    assert!(text.contains("(session reused"), "{text}");
    assert!(!stderr(&again).contains("Opening"), "{}", stderr(&again));
    let after_login = w.jc.stats();
    assert_eq!(w.sts.calls(), 2);

    // A refresh reuses the browser's JumpCloud session headlessly: a SAML page, no password,
    // no code, no browser.
    succeeded(&w.samlctl(&["refresh", "prod"]), "samlctl refresh prod");
    let refreshed = w.jc.stats();
    assert_eq!(refreshed.saml_pages, after_login.saml_pages + 1);
    assert_eq!(
        (refreshed.password_posts, refreshed.totp_posts),
        (after_login.password_posts, after_login.totp_posts)
    );
    assert_eq!(w.sts.calls(), 3);
    assert_sts_got_the_browsers_assertion(&w);
    assert_eq!(w.account_status("prod").state, AccountState::Active);

    // JumpCloud ends the session: the headless fetch is refused, and samld asks for the
    // browser, without trying any login of its own.
    w.jc.expire_all_sessions();
    let out = w.samlctl(&["refresh", "prod"]);
    let message = failed(&out, "refresh after the session ended");
    assert!(
        message.contains("samlctl login prod --browser"),
        "{message}"
    );
    let status = w.account_status("prod");
    assert_eq!(status.state, AccountState::NeedsLogin, "{status:?}");
    // The credentials already held keep serving until they expire.
    succeeded(&w.helper(&["prod"]), "helper with credentials still valid");
    assert_eq!(
        w.jc.stats().password_posts,
        after_login.password_posts,
        "samld never posts a password for a browser account"
    );
}

#[test]
fn background_refreshes_run_headlessly_from_the_browser_session() {
    // Credentials of 9 s with refresh_before 45s: samld refreshes about 6 s after each trip.
    let sts = FakeStsConfig::default().with_credential_lifetime(Duration::from_secs(9));
    let w = world_with_sts(
        vec![FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)],
        vec![default_app()],
        "refresh_before = \"45s\"\n",
        sts,
    );
    let login = start_samlctl(&w, &["login", "prod"]);
    let person = person_at_login_page(&w);
    enter_password(&person);
    succeeded(&finish(login), "browser sign-in");
    let signed_in = w.jc.stats();
    // Two background refreshes, each a SAML page fetched with the browser's cookies.
    let refreshed = w.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), w.sts.wait_for_calls(3)).await
    });
    assert!(
        refreshed.is_ok(),
        "no background refreshes\n{}",
        w.daemon_log()
    );
    let after = w.jc.stats();
    assert!(after.saml_pages >= signed_in.saml_pages + 2, "{after:?}");
    assert_eq!(after.password_posts, signed_in.password_posts);
    assert_sts_got_the_browsers_assertion(&w);
    // Refreshes come every few seconds here: one may be running as status is read.
    let state = w.account_status("prod").state;
    assert!(
        matches!(state, AccountState::Active | AccountState::Refreshing),
        "{state:?}"
    );
}

#[test]
fn browser_login_with_a_security_key() {
    let (id, pkcs8, public) = security_key();
    let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD).with_webauthn(id.clone(), public);
    let w = world(vec![user], vec![default_app()], "");
    w.jc.remember_browsers();
    let login = start_samlctl(&w, &["login", "prod", "--browser"]);
    let person = person_at_login_page(&w);
    person
        .add_security_key("localhost", &id, &pkcs8)
        .expect("plug in the key");
    enter_password(&person);
    person
        .wait_for_selector("#security-key", PAGE_WAIT)
        .expect("the security key step");
    person.click("#security-key").unwrap();
    let out = finish(login);
    succeeded(&out, "samlctl login prod --browser (security key)");
    let stats = w.jc.stats();
    assert_eq!((stats.webauthn_accepted, stats.webauthn_refused), (1, 0));
    assert_sts_got_the_browsers_assertion(&w);

    // The AWS CLI, through credential_process = samld-helper, all day: no prompt, and a
    // refresh (the JumpCloud session lives) needs neither the key nor the browser.
    let account = succeeded(&aws_caller_identity(&w), "aws sts get-caller-identity");
    assert_eq!(account.trim(), "123456789012");
    succeeded(
        &w.samlctl(&["refresh", "prod"]),
        "refresh from the browser's session",
    );
    let account = succeeded(&aws_caller_identity(&w), "aws after the refresh");
    assert_eq!(account.trim(), "123456789012");
    assert_eq!(w.sts.calls(), 2, "one sign-in and one refresh");
    assert_eq!(
        w.jc.stats().webauthn_accepted,
        1,
        "the key was touched once"
    );

    // The profile stays signed in to JumpCloud (its cookie outlives the browser): after a
    // logout, the next browser sign-in finishes with no typing at all (nobody is at this
    // browser).
    let signed_in = w.jc.stats();
    succeeded(&w.samlctl(&["logout", "prod"]), "logout");
    let out = w.samlctl(&["login", "prod"]);
    succeeded(&out, "second browser sign-in, from the profile's session");
    let again = w.jc.stats();
    assert_eq!(
        (again.password_posts, again.webauthn_accepted),
        (signed_in.password_posts, 1),
        "nobody typed"
    );
    assert_eq!(w.sts.calls(), 3);
}

#[test]
fn a_device_check_only_a_browser_passes_then_needs_the_browser_at_each_launch() {
    let w = world(
        vec![FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)],
        vec![default_app().requiring_a_browser()],
        "",
    );
    let login = start_samlctl(&w, &["login", "prod"]);
    let person = person_at_login_page(&w);
    enter_password(&person);
    let out = finish(login);
    succeeded(&out, "browser sign-in through the device check");
    assert_eq!(w.jc.stats().device_checks_passed, 1);
    assert_sts_got_the_browsers_assertion(&w);

    // The policy is checked at each launch of the app: the headless fetch meets it again.
    let out = w.samlctl(&["refresh", "prod"]);
    let message = failed(&out, "headless refresh behind the device check");
    assert!(message.contains("asked for the browser again"), "{message}");
    assert!(
        message.contains("run: samlctl login prod --browser"),
        "{message}"
    );
    assert_eq!(w.account_status("prod").state, AccountState::NeedsLogin);
    assert_eq!(w.jc.stats().password_posts, 1);
}

#[test]
fn any_saml_idp_through_the_browser() {
    // samld knows nothing of this IdP but its app URL: provider = "saml", no username.
    let jc = FakeJumpCloudConfig {
        users: vec![FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)],
        ..FakeJumpCloudConfig::default()
    }
    .on_localhost();
    let w = World::with_setup(
        jc,
        FakeStsConfig::default(),
        |jc, sts, _| {
            format!(
                "[accounts.prod]\nprovider = \"saml\"\nurl = \"{}\"\nsts_endpoint = \"{}\"\n\
                 region = \"us-east-1\"\nbrowser = \"{CHROMIUM}\"\nbrowser_args = {}\n",
                jc.app_url(DEFAULT_APP),
                sts.endpoint_url(),
                browser_args_toml()
            )
        },
        None,
    );
    let login = start_samlctl(&w, &["login", "prod"]);
    let person = person_at_login_page(&w);
    enter_password(&person);
    succeeded(&finish(login), "browser sign-in at a generic SAML IdP");
    assert_sts_got_the_browsers_assertion(&w);
    let status = w.account_status("prod");
    assert_eq!(
        (status.provider.as_str(), status.login.as_str()),
        ("saml", "browser")
    );

    succeeded(
        &w.samlctl(&["refresh", "prod"]),
        "headless refresh with the IdP's cookies",
    );
    assert_eq!(w.sts.calls(), 2);
    assert_sts_got_the_browsers_assertion(&w);
    // No JumpCloud API: only pages.
    assert_eq!(w.jc.stats().self_probes, 0);

    w.jc.expire_all_sessions();
    let message = failed(
        &w.samlctl(&["refresh", "prod"]),
        "refresh after the IdP session ended",
    );
    assert!(
        message.contains("the IdP session for prod has ended; run: samlctl login prod --browser"),
        "{message}"
    );
    assert_eq!(w.account_status("prod").state, AccountState::NeedsLogin);
}

#[test]
fn a_window_closed_before_signing_in_leaves_the_account_as_it_was() {
    let w = world(
        vec![FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)],
        vec![default_app()],
        "",
    );
    let login = start_samlctl(&w, &["login", "prod"]);
    let person = person_at_login_page(&w);
    person.close_window().unwrap();
    let out = finish(login);
    let message = failed(&out, "login with the window closed");
    assert!(
        message.contains(
            "the browser window was closed before the sign-in finished; prod is as it was"
        ),
        "{message}"
    );
    assert_eq!(w.account_status("prod").state, AccountState::LoggedOut);
    assert_eq!((w.jc.stats().password_posts, w.sts.calls()), (0, 0));
}

#[test]
fn a_browser_that_crashes_or_is_missing_leaves_the_account_as_it_was() {
    // `false` dies at once, as a browser crashing on start does.
    let crash = World::with_setup(
        FakeJumpCloudConfig::default(),
        FakeStsConfig::default(),
        |jc, sts, _| browser_account(jc, sts, DEFAULT_APP, "").replace(CHROMIUM, "/bin/false"),
        None,
    );
    let message = failed(
        &crash.samlctl(&["login", "prod"]),
        "login with a crashing browser",
    );
    assert!(
        message.contains("the browser exited before the sign-in finished"),
        "{message}"
    );
    assert!(
        message.trim_end().ends_with("prod is as it was"),
        "{message}"
    );
    assert_eq!(crash.account_status("prod").state, AccountState::LoggedOut);
    let missing = World::with_setup(
        FakeJumpCloudConfig::default(),
        FakeStsConfig::default(),
        |jc, sts, _| {
            browser_account(jc, sts, DEFAULT_APP, "").replace(CHROMIUM, "/nonexistent/chrome")
        },
        None,
    );
    let message = failed(
        &missing.samlctl(&["login", "prod"]),
        "login with no browser",
    );
    assert!(
        message.contains(
            "samlctl: the account's browser = \"/nonexistent/chrome\" is not an executable file; \
             prod is as it was"
        ),
        "{message}"
    );
    assert_eq!(
        missing.account_status("prod").state,
        AccountState::LoggedOut
    );
}

#[test]
fn the_helper_names_the_browser_command_for_a_browser_account() {
    let w = world(
        vec![FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)],
        vec![default_app()],
        "",
    );
    let message = failed(&w.helper(&["prod"]), "helper before any sign-in");
    assert!(
        message.contains("run: samlctl login prod --browser"),
        "{message}"
    );
    assert_eq!(
        w.jc.stats().requests,
        0,
        "no API login is tried for a browser account"
    );
}
