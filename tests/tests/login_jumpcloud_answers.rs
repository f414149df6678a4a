//! Logging in while JumpCloud answers as it really does off the happy path (a throttle, a
//! denied push, an expired one, a changed form), end to end: the real `samld` and `samlctl`
//! against a fake JumpCloud that gives each of those answers, and what the user sees.
//!
//! Each test has a world of its own (fakes, temp dir, daemon), so they run in parallel.

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::Duration;

use samld_tests::fake_jumpcloud::{
    DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN, DEFAULT_ROLE_ARN, Endpoint, FakeApp, FakeJumpCloud,
    FakeJumpCloudConfig, FakeJumpCloudStats, FakeUser, Fault, PushBehavior, RetryAfter,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{DaemonProcess, TestEnv, failed_silently, succeeded, without_terminal};

const ACCOUNT: &str = "work";
const EMAIL: &str = "carol@example.com";

/// One account, its fake JumpCloud and fake STS, and samld.
struct World {
    // Dropped first: the daemon stops before the servers it talks to.
    daemon: DaemonProcess,
    env: TestEnv,
    jc: FakeJumpCloud,
    sts: FakeSts,
    // Dropped last: it runs the fakes.
    _rt: tokio::runtime::Runtime,
}

impl World {
    /// `user` signing in to `app` (the account's `url`), with `extra` TOML for the account.
    fn new(user: FakeUser, app: FakeApp, extra: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let app_name = app.name.clone();
        let config = FakeJumpCloudConfig {
            users: vec![user.clone()],
            apps: vec![app],
            ..FakeJumpCloudConfig::default()
        };
        let (jc, sts) = rt.block_on(async {
            (
                FakeJumpCloud::start(config).await,
                FakeSts::start(FakeStsConfig::default()).await,
            )
        });
        let toml = format!(
            "[defaults]\nregion = \"us-east-1\"\nrequest_timeout = \"20s\"\n\n[accounts.{ACCOUNT}]\nurl = \"{url}\"\n\
             username = \"{email}\"\njumpcloud_console_url = \"{console}\"\n\
             sts_endpoint = \"{sts}\"\n{extra}",
            url = jc.app_url(&app_name),
            email = user.email,
            console = jc.base_url(),
            sts = sts.endpoint_url(),
        );
        let env = TestEnv::new(&toml);
        let daemon = env.start_daemon();
        Self {
            daemon,
            env,
            jc,
            sts,
            _rt: rt,
        }
    }

    /// The default app with one role.
    fn app(name: &str) -> FakeApp {
        FakeApp::new(name, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)])
    }

    /// A user with the default password.
    fn user() -> FakeUser {
        FakeUser::new(EMAIL, DEFAULT_PASSWORD)
    }

    /// `samlctl login work --password-stdin ARGS` in a session of its own (no controlling
    /// terminal to prompt on, even when the tests run in one).
    fn login(&self, args: &[&str]) -> Output {
        let mut all = vec!["--password-stdin"];
        all.extend_from_slice(args);
        self.run_login(&all)
    }

    /// `samlctl login work ARGS` as [`World::login`] runs it, without `--password-stdin`
    /// unless given: with no terminal either, samld has no one to ask.
    fn run_login(&self, args: &[&str]) -> Output {
        let mut cmd = self.env.command("samlctl");
        cmd.args(["login", ACCOUNT])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        without_terminal(&mut cmd);
        let mut child = cmd.spawn().expect("spawn samlctl");
        // It may exit without reading; a broken pipe is then expected.
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(format!("{DEFAULT_PASSWORD}\n").as_bytes());
        child.wait_with_output().expect("wait for samlctl")
    }

    fn login_ok(&self, args: &[&str]) {
        let out = self.login(args);
        succeeded(
            &out,
            &format!("samlctl login {ACCOUNT}\nsamld log:\n{}", self.daemon.log()),
        );
    }

    /// A login that must fail: what samlctl printed.
    fn login_fails(&self, args: &[&str]) -> String {
        let text = failed_silently(&self.login(args), &format!("samlctl login {ACCOUNT}"));
        // Shown with --nocapture: the exact text, for the README's troubleshooting table.
        eprintln!("samlctl login {ACCOUNT}:\n{text}");
        text
    }

    /// The helper prints credentials STS issued.
    fn helper_ok(&self) {
        let out = self.env.helper(&[ACCOUNT]);
        let text = succeeded(&out, "samld-helper");
        let issued = self.sts.issued();
        assert!(
            issued.iter().any(|c| text.contains(&c.access_key_id)),
            "{text}"
        );
    }

    fn stats(&self) -> FakeJumpCloudStats {
        self.jc.stats()
    }

    /// samld's peak resident memory, in bytes (`VmHWM` of /proc/PID/status).
    fn daemon_peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.daemon.pid()))
            .expect("samld's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }
}

// ---------------------------------------------------------------------------------------------
// Point 1: the login page is recognised exactly.
// ---------------------------------------------------------------------------------------------

/// The app's IdP URL is `.../saml2/login-aws`: its own SAML page is not JumpCloud's login
/// page, at login and when the session is reused.
#[test]
fn an_app_named_login_something_logs_in_and_reuses_the_session() {
    let w = World::new(World::user(), World::app("login-aws"), "");
    w.login_ok(&[]);
    w.helper_ok();
    // A second login reuses the session: the SAML page fetched from the session.
    w.login_ok(&[]);
    let stats = w.stats();
    assert_eq!(stats.password_posts, 1, "{stats:?}");
    assert_eq!(stats.saml_pages, 2, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Point 2: a bare "MFA required." (no factors list).
// ---------------------------------------------------------------------------------------------

fn bare_mfa_user() -> FakeUser {
    World::user()
        .with_factor("totp", "available")
        .with_totp_codes(&["246810", "135791"])
        .with_bare_mfa()
}

#[test]
fn a_bare_mfa_challenge_gets_the_code_with_mfa_totp() {
    let w = World::new(bare_mfa_user(), World::app("aws"), "mfa = \"totp\"\n");
    w.login_ok(&["--mfa-code", "246810"]);
    let stats = w.stats();
    assert_eq!((stats.totp_posts, stats.totp_accepted), (1, 1), "{stats:?}");
    w.helper_ok();
}

#[test]
fn a_bare_mfa_challenge_gets_the_code_from_mfa_command_with_mfa_auto() {
    let w = World::new(
        bare_mfa_user(),
        World::app("aws"),
        "mfa_command = \"echo 135791\"\n",
    );
    w.login_ok(&[]);
    let stats = w.stats();
    assert_eq!((stats.totp_posts, stats.totp_accepted), (1, 1), "{stats:?}");
    assert_eq!(stats.pushes_started, 0, "{stats:?}");
}

/// No code given, no `mfa_command`, no terminal (the password from `password_command`):
/// nothing to answer with, and no push guessed.
#[test]
fn a_bare_mfa_challenge_with_nothing_at_hand_says_what_to_set() {
    let w = World::new(
        bare_mfa_user(),
        World::app("aws"),
        &format!("password_command = \"echo '{DEFAULT_PASSWORD}'\"\n"),
    );
    let text = failed_silently(&w.run_login(&[]), "samlctl login without a terminal");
    eprintln!("samlctl login {ACCOUNT}:\n{text}");
    assert!(
        text.contains("JumpCloud asks for a second factor without saying which"),
        "{text}"
    );
    assert!(
        text.contains("mfa = \"totp\"") && text.contains("mfa_command"),
        "{text}"
    );
    let stats = w.stats();
    assert_eq!(
        (stats.totp_posts, stats.pushes_started),
        (0, 0),
        "{stats:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Point 3: a push denied as HTTP 401 on the poll.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_push_denied_with_http_401_is_reported_as_denied() {
    let user = World::user()
        .with_factor("push", "available")
        .with_push(PushBehavior::DenyWith401AfterPolls(2));
    let w = World::new(user, World::app("aws"), "mfa = \"push\"\n");
    let text = w.login_fails(&[]);
    assert!(
        text.contains("The JumpCloud Protect push was denied on the phone"),
        "{text}"
    );
    assert!(!text.contains("HTTP 401"), "{text}");
    assert_eq!(w.stats().push_polls, 2);
}

// ---------------------------------------------------------------------------------------------
// Point 6: answers the fake never gave, each with its own message.
// ---------------------------------------------------------------------------------------------

/// `401 {"error": "..."}` to the password: JumpCloud's own words, not "wrong password".
#[test]
fn an_error_body_is_reported_with_jumpclouds_words() {
    let w = World::new(World::user(), World::app("aws"), "");
    w.jc.inject(
        Endpoint::Auth,
        Fault::ErrorBody(401, "User account is locked."),
        1,
    );
    let text = w.login_fails(&[]);
    assert!(
        text.contains(
            "JumpCloud refused POST /userconsole/auth (HTTP 401): \"User account is locked.\""
        ),
        "{text}"
    );
    assert!(!text.contains("rejected the email or password"), "{text}");
    // Any request: here the first one.
    w.jc.inject(Endpoint::Xsrf, Fault::ErrorBody(400, "bad request"), 1);
    let text = w.login_fails(&[]);
    assert!(
        text.contains("JumpCloud refused GET /userconsole/xsrf (HTTP 400): \"bad request\""),
        "{text}"
    );
    w.login_ok(&[]);
}

/// A 302 to the login page in answer to the password.
#[test]
fn a_redirect_to_the_login_page_after_the_password_is_named() {
    let w = World::new(World::user(), World::app("aws"), "");
    w.jc.inject(Endpoint::Auth, Fault::RedirectToLogin, 1);
    let text = w.login_fails(&[]);
    assert!(
        text.contains(
            "JumpCloud answered POST /userconsole/auth with a redirect to its login page"
        ),
        "{text}"
    );
    assert!(!text.contains("HTML instead of JSON"), "{text}");
    w.login_ok(&[]);
}

/// HTTP 429, with `Retry-After` in seconds and as an HTTP date.
#[test]
fn throttling_is_named_with_its_retry_after() {
    let w = World::new(World::user(), World::app("aws"), "");
    w.jc.inject(Endpoint::Xsrf, Fault::Throttle(RetryAfter::Seconds(42)), 1);
    let text = w.login_fails(&[]);
    assert!(
        text.contains(
            "JumpCloud is limiting requests (HTTP 429 to GET /userconsole/xsrf); it asks to \
             wait 42 s before trying again."
        ),
        "{text}"
    );
    w.jc.inject(
        Endpoint::SamlPage,
        Fault::Throttle(RetryAfter::DateIn(Duration::from_secs(600))),
        1,
    );
    let text = w.login_fails(&[]);
    assert!(
        text.contains(
            "JumpCloud is limiting requests (HTTP 429 to GET /saml2/aws); it asks to wait"
        ),
        "{text}"
    );
    assert!(
        text.contains(" 9 min") || text.contains(" 10 min"),
        "{text}"
    );
    w.login_ok(&[]);
}

/// Conditional access or device trust: signed in, and the app answers some other page.
#[test]
fn a_browser_only_app_says_the_policy_needs_a_browser() {
    let w = World::new(World::user(), World::app("aws").requiring_a_browser(), "");
    let text = w.login_fails(&[]);
    assert!(
        text.contains(
            "your organisation's policy requires signing in to this app through a browser"
        ),
        "{text}"
    );
    assert!(text.contains(&w.jc.app_url("aws")), "{text}");
    let stats = w.stats();
    assert_eq!((stats.logins, stats.policy_pages), (1, 1), "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Point 12: bounded answers.
// ---------------------------------------------------------------------------------------------

const MIB: u64 = 1024 * 1024;

/// A SAML page of 200 MiB: samld stops reading at its cap, says so, and stays small.
#[test]
fn an_endless_saml_page_is_cut_off_at_the_cap() {
    let w = World::new(World::user(), World::app("aws"), "");
    w.jc.inject(Endpoint::SamlPage, Fault::Oversized(200 * MIB), 1);
    let text = w.login_fails(&[]);
    let (sent, peak) = (w.stats().oversized_bytes_sent, w.daemon_peak_rss());
    eprintln!(
        "the fake handed {sent} bytes of the page to the connection; samld's peak RSS: {peak} bytes"
    );
    assert!(
        text.contains(
            "JumpCloud's answer to GET /saml2/aws is larger than 1 MiB, samld's limit for a page"
        ),
        "{text}"
    );
    // What samld did not read went no further than the kernel's socket buffers.
    assert!(
        sent < 16 * MIB,
        "the fake handed {sent} bytes of the 200 MiB page to the connection"
    );
    assert!(peak < 64 * MIB, "samld's peak RSS was {peak} bytes");
    // Still serving, and the next login works.
    w.login_ok(&[]);
}

/// A JSON answer over its cap.
#[test]
fn an_oversized_json_answer_is_cut_off_at_the_cap() {
    let w = World::new(World::user(), World::app("aws"), "");
    w.jc.inject(Endpoint::Xsrf, Fault::Oversized(64 * MIB), 1);
    let text = w.login_fails(&[]);
    assert!(
        text.contains(
            "JumpCloud's answer to GET /userconsole/xsrf is larger than 64 KiB, samld's limit \
             for a JSON answer"
        ),
        "{text}"
    );
    // What the fake handed to the connection, not what samld read: the kernel's loopback
    // buffers take several MiB on their own (autotuned up to tcp_rmem + tcp_wmem), so the
    // bound is that samld stopped long before the whole answer, not a byte count.
    let sent = w.stats().oversized_bytes_sent;
    assert!(
        sent < 16 * MIB,
        "the fake handed {sent} bytes of the 64 MiB answer to the connection"
    );
}
