//! Faults end to end, with the real `samld`, `samlctl` and `samld-helper`
//! against a fake JumpCloud and a fake STS: for each fault, what the user sees, and that no
//! valid credential is lost.
//!
//! Every account (a *lane*) has a fake JumpCloud and a fake STS of its own, so that a fault
//! injected for one scenario can only ever hit that scenario, and the scenarios of a test run
//! side by side against one daemon: a background refresh that fails waits out a real backoff
//! (30 s ± 20 %), and running those waits one after the other would take minutes.
//!
//! Timing of the background-refresh scenarios: the fake STS issues credentials that live
//! [`LIFETIME`] (60 s; a little less as samld counts, since STS expirations are whole
//! seconds) and the accounts say `refresh_before = "29s"`, so samld refreshes about 31 s
//! after a login (less up to 1.2 s of jitter) and keeps handing out the old credentials until
//! a quarter of their life is left (about 45 s): a window of about 14 s (9 s after a 5 s
//! timeout) in which a failed refresh must leave the helper serving the old AccessKeyId, wide
//! enough for nine scenarios side by side on a loaded 2-core machine. (With `refresh_before`
//! at half the life or more, samld refreshes at two thirds of it instead and the window
//! shrinks to a twelfth of the life.) The retry comes 24–36 s after the failure; the new
//! credentials are awaited on the fake STS rather than asked of the helper.
//!
//! Everything else waits on the event itself (a counter at a fake, a state in `samlctl
//! status`) with a generous bound; only the window above is a matter of time.
//!
//! Covered elsewhere, not repeated here:
//! - The socket file removed while samld runs: `lifecycle.rs`,
//!   `a_removed_socket_is_re_created_by_the_same_daemon` (the same daemon re-creates it and
//!   logs "re-creating it").
//! - A wall-clock jump (suspend and resume): it cannot be done end to end without changing
//!   the machine's clock, so it is tested on a manual clock in `daemon/tests/session.rs`,
//!   `waking_from_suspend_past_expiry_refreshes_at_once`.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use samld_proto::{AccountState, AccountStatus, StatusReport};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_ROLE_ARN, Endpoint, FakeJumpCloud,
    FakeJumpCloudConfig, FakeUser, Fault, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig, FakeStsFault};
use samld_tests::fixture::{DaemonProcess, TestEnv, failed_silently, stdout, succeeded};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long the fake STS's credentials live in the background-refresh scenarios.
const LIFETIME: Duration = Duration::from_secs(60);
/// `refresh_before` of those scenarios: under half of [`LIFETIME`] (see the module docs).
const REFRESH_BEFORE: &str = "29s";
/// Credentials that outlive any test: no refresh comes due while one runs.
const LONG_LIFETIME: Duration = Duration::from_secs(3600);
/// The bound on waiting for a background event (a refresh due about 31 s after a login,
/// then a 5 s timeout), with room for a loaded machine.
const EVENT_DEADLINE: Duration = Duration::from_secs(90);
/// samld's JumpCloud request timeout in these tests (`request_timeout`), instead of
/// 30 s, so that a JumpCloud that never answers fails a refresh while the old credentials are
/// still good.
const JC_TIMEOUT_SECS: u64 = 5;
/// Far longer than [`JC_TIMEOUT_SECS`]: a JumpCloud this slow has timed out, and a loaded
/// machine cannot make the timeout look like the answer.
const TOO_SLOW: Duration = Duration::from_secs(JC_TIMEOUT_SECS + 30);
/// Well within [`JC_TIMEOUT_SECS`]: slow, but answered, with 4 s to spare for a machine
/// loaded by the tests that run beside this one.
const SLOW: Duration = Duration::from_secs(1);
/// The longest any client run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
/// The password of the push user of the unattended-login scenario.
const PUSH_PASSWORD: &str = "pw-unattended-Qe4zR8";

/// One account with its own fake JumpCloud and fake STS.
struct Lane {
    account: String,
    jc: FakeJumpCloud,
    sts: FakeSts,
}

/// What a lane is made of.
struct LaneSpec {
    account: &'static str,
    user: FakeUser,
    /// Extra TOML lines for the account.
    extra: String,
    /// How long its STS's credentials live.
    lifetime: Duration,
}

impl LaneSpec {
    /// The default user (no MFA) and the background-refresh timing.
    fn plain(account: &'static str) -> Self {
        Self {
            account,
            user: FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
            extra: format!("refresh_before = \"{REFRESH_BEFORE}\"\n"),
            lifetime: LIFETIME,
        }
    }

    /// The default user with credentials no refresh replaces while the test runs, for
    /// asserting the same key across waits.
    fn long_lived(account: &'static str) -> Self {
        Self {
            account,
            user: FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD),
            extra: String::new(),
            lifetime: LONG_LIFETIME,
        }
    }
}

/// Lanes, config, daemon.
struct World {
    // Dropped first: the daemon stops before the servers it talks to.
    daemon: Option<DaemonProcess>,
    env: TestEnv,
    lanes: Vec<Lane>,
    // Dropped last: it runs the fakes.
    rt: tokio::runtime::Runtime,
}

impl World {
    /// Starts a fake JumpCloud and a fake STS per lane (credentials living [`LIFETIME`]),
    /// writes the config, and starts samld.
    fn new(specs: Vec<LaneSpec>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut toml = format!(
            "[defaults]\nregion = \"us-east-1\"\nrequest_timeout = \"{JC_TIMEOUT_SECS}s\"\n"
        );
        let mut lanes = Vec::new();
        for spec in specs {
            let email = spec.user.email.clone();
            let (jc, sts) = rt.block_on(async {
                (
                    FakeJumpCloud::start(FakeJumpCloudConfig::with_user(spec.user)).await,
                    FakeSts::start(
                        FakeStsConfig::default().with_credential_lifetime(spec.lifetime),
                    )
                    .await,
                )
            });
            toml += &format!(
                "\n[accounts.{name}]\nurl = \"{url}\"\nusername = \"{user}\"\n\
                 jumpcloud_console_url = \"{console}\"\nsts_endpoint = \"{sts}\"\n{extra}",
                name = spec.account,
                url = jc.app_url(DEFAULT_APP),
                user = email,
                console = jc.base_url(),
                sts = sts.endpoint_url(),
                extra = spec.extra,
            );
            lanes.push(Lane {
                account: spec.account.to_owned(),
                jc,
                sts,
            });
        }
        let env = TestEnv::new(&toml);
        let daemon = env.start_daemon();
        World {
            daemon: Some(daemon),
            env,
            lanes,
            rt,
        }
    }

    fn lane(&self, account: &str) -> &Lane {
        self.lanes
            .iter()
            .find(|l| l.account == account)
            .unwrap_or_else(|| panic!("no lane {account}"))
    }

    /// Runs a client binary to completion (within [`RUN_DEADLINE`]) in a session of its own,
    /// so that it has no controlling terminal to prompt on even when the tests run in one.
    fn run(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.env.command(bin);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        if let Some(input) = stdin {
            // It may exit without reading; a broken pipe is then expected.
            let _ = child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes());
        }
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(RUN_DEADLINE) {
            Ok(out) => out.expect("wait for the child"),
            Err(_) => {
                // SAFETY: the child has not been reaped (its waiter has not returned).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                panic!(
                    "{bin} {args:?} did not finish within {RUN_DEADLINE:?}; samld log:\n{}",
                    self.daemon_log()
                );
            }
        }
    }

    fn samlctl(&self, args: &[&str]) -> Output {
        self.run("samlctl", args, None)
    }

    /// `samlctl login ACCOUNT --password-stdin` with the right password.
    fn login(&self, account: &str) -> Output {
        self.run(
            "samlctl",
            &["login", account, "--password-stdin"],
            Some(&format!("{DEFAULT_PASSWORD}\n")),
        )
    }

    /// A login that must succeed.
    fn login_ok(&self, account: &str) {
        let out = self.login(account);
        succeeded(&out, &format!("samlctl login {account}"));
    }

    fn helper(&self, account: &str) -> Output {
        self.run("samld-helper", &[account], None)
    }

    /// The AccessKeyId the helper hands out now, checked against what the lane's STS issued
    /// and against the clock: the helper never hands out expired credentials.
    fn key(&self, account: &str) -> String {
        let out = self.helper(account);
        let text = succeeded(&out, &format!("samld-helper {account}"));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("helper output is not JSON ({e}): {text}"));
        let key = doc["AccessKeyId"].as_str().expect("AccessKeyId").to_owned();
        let issued = self
            .lane(account)
            .sts
            .issued()
            .into_iter()
            .find(|c| c.access_key_id == key)
            .unwrap_or_else(|| panic!("{account}: {key} was not issued by its STS"));
        assert_eq!(doc["SecretAccessKey"], issued.secret_access_key.as_str());
        assert!(
            issued.expiration > OffsetDateTime::now_utc(),
            "{account}: the helper handed out expired credentials: {doc}"
        );
        key
    }

    fn status(&self) -> StatusReport {
        let out = self.samlctl(&["status", "--json"]);
        let text = succeeded(&out, "samlctl status --json");
        serde_json::from_str(&text).expect("status --json is a StatusReport")
    }

    fn account_status(&self, account: &str) -> AccountStatus {
        self.status()
            .accounts
            .into_iter()
            .find(|a| a.name == account)
            .unwrap_or_else(|| panic!("no account {account} in the status"))
    }

    /// Polls `samlctl status` until `done` holds for the account, within `within`.
    fn wait_for(
        &self,
        account: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&AccountStatus) -> bool,
    ) -> AccountStatus {
        let deadline = Instant::now() + within;
        loop {
            let status = self.account_status(account);
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{account}: not {what} within {within:?}; last status: {status:#?}\nsamld log:\n{}",
                self.daemon_log()
            );
            // Pacing between polls: each one is a process, and nine lanes poll at once.
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the lane's STS has issued `n` credentials in all, within `within`.
    fn wait_for_issued(&self, account: &str, n: usize, within: Duration) {
        let sts = &self.lane(account).sts;
        let waited = self
            .rt
            .block_on(async { tokio::time::timeout(within, sts.wait_for_issued(n)).await });
        assert!(
            waited.is_ok(),
            "{account}: STS issued {} credentials, not {n}, within {within:?}\nstatus: {:#?}\nsamld log:\n{}",
            sts.issued_count(),
            self.account_status(account),
            self.daemon_log()
        );
    }

    fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(DaemonProcess::log)
            .unwrap_or_default()
    }

    /// Runs a future on the fakes' runtime.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("samld is running").pid()
    }

    /// SIGKILLs samld (no chance to clean up) and starts a new one on the same socket.
    fn kill_and_restart_daemon(&mut self) {
        let daemon = self.daemon.take().expect("samld is running");
        daemon.signal(libc::SIGKILL);
        let (status, _) = daemon.wait(Duration::from_secs(10));
        assert!(!status.success(), "killed: {status:?}");
        self.daemon = Some(self.env.start_daemon());
    }
}

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A scenario run against one account of a shared [`World`].
type Scenario = (&'static str, fn(&World, &str));

/// Runs every scenario on a thread of its own and fails with the names of those that failed
/// (each one's panic message is printed as it happens).
fn run_side_by_side(w: &World, scenarios: &[Scenario]) {
    let failures: Vec<&str> = std::thread::scope(|scope| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|(account, scenario)| (*account, scope.spawn(move || scenario(w, account))))
            .collect();
        handles
            .into_iter()
            .filter_map(|(account, handle)| handle.join().is_err().then_some(account))
            .collect()
    });
    assert!(failures.is_empty(), "failed scenarios: {failures:?}");
}

// ---------------------------------------------------------------------------------------------
// (a) Faults at login time: the message `samlctl login` prints, and samld still answering.
// ---------------------------------------------------------------------------------------------

/// A login that fails because of `fault`: returns what samlctl printed, after checking that
/// samld is still the same process, still answering, and holds nothing for the account.
fn login_fails(w: &World, account: &str) -> String {
    let pid = w.daemon_pid();
    let text = failed_silently(&w.login(account), &format!("samlctl login {account}"));
    let report = w.status();
    assert_eq!(report.daemon.pid, pid, "samld survived");
    let status = report
        .accounts
        .iter()
        .find(|a| a.name == account)
        .expect("the account");
    assert!(status.roles.is_empty(), "{status:#?}");
    // Recorded for `samlctl status`, but not retried behind the user's back: they are
    // watching, and retry when they choose.
    let recorded = status.last_error.as_ref().expect("last_error");
    assert!(text.contains(&recorded.message), "{text}\n{recorded:#?}");
    assert!(status.next_retry_at.is_none(), "{status:#?}");
    // Logged out after a passing failure; in error after a refusal (which also keeps
    // helpers from trying again by themselves).
    assert!(
        matches!(status.state, AccountState::LoggedOut | AccountState::Error),
        "{status:#?}"
    );
    // Shown with --nocapture: the exact text, for the README's fault table.
    eprintln!("samlctl login {account}:\n{text}");
    text
}

#[test]
fn login_time_faults_are_named_and_the_daemon_survives() {
    let accounts = [
        "jc-500",
        "jc-timeout",
        "jc-slow",
        "jc-html",
        "jc-reset",
        "jc-saml-html",
        "sts-throttled",
        "sts-5xx",
        "sts-expired-once",
    ];
    let w = World::new(accounts.iter().map(|a| LaneSpec::plain(a)).collect());
    let jc = |a: &str| &w.lane(a).jc;
    let sts = |a: &str| &w.lane(a).sts;

    jc("jc-500").inject(Endpoint::Xsrf, Fault::Status(500), 1);
    let text = login_fails(&w, "jc-500");
    assert!(
        text.contains(
            "JumpCloud answered HTTP 500 to GET /userconsole/xsrf: Internal Server Error; \
             JumpCloud seems to be having trouble, try again later."
        ),
        "{text}"
    );

    jc("jc-timeout").inject(Endpoint::Auth, Fault::Delay(TOO_SLOW), 1);
    let started = Instant::now();
    let text = login_fails(&w, "jc-timeout");
    let took = started.elapsed();
    let url = format!("{}/userconsole/auth", jc("jc-timeout").base_url());
    assert!(
        text.contains(&format!("Could not reach {url}")) && text.contains("timed out"),
        "{text}"
    );
    assert!(
        took >= Duration::from_secs(JC_TIMEOUT_SECS) && took < TOO_SLOW,
        "gave up after the timeout, not before and not when the answer came: {took:?}"
    );

    jc("jc-slow").inject(Endpoint::Auth, Fault::Delay(SLOW), 1);
    let started = Instant::now();
    w.login_ok("jc-slow");
    assert!(started.elapsed() >= SLOW, "the answer was waited for");
    w.key("jc-slow");

    jc("jc-html").inject(Endpoint::Auth, Fault::Html(200), 1);
    let text = login_fails(&w, "jc-html");
    assert!(
        text.contains(
            "JumpCloud answered HTML instead of JSON to POST /userconsole/auth (HTTP 200)"
        ),
        "{text}"
    );

    jc("jc-reset").inject(Endpoint::Auth, Fault::Reset, 1);
    let text = login_fails(&w, "jc-reset");
    let url = format!("{}/userconsole/auth", jc("jc-reset").base_url());
    assert!(text.contains(&format!("Could not reach {url}")), "{text}");

    // A maintenance page where the SAML form should be (after a successful sign-in): from
    // the outside it is the page of a policy only a browser passes, and the message says so
    // and names the maintenance notice too. Only the user can tell which, so it is shown to
    // them rather than recorded for a retry (as a refused factor would be).
    jc("jc-saml-html").inject(Endpoint::SamlPage, Fault::Html(200), 1);
    let text = failed_silently(&w.login("jc-saml-html"), "samlctl login jc-saml-html");
    assert_eq!(w.status().daemon.pid, w.daemon_pid(), "samld survived");
    assert!(
        text.contains("neither its login page nor the SAML form")
            && text.contains("maintenance notice"),
        "{text}"
    );

    // One throttled answer fails the login: one request (samld's STS client does not retry),
    // and a login a person started is not retried behind their back.
    sts("sts-throttled").inject(FakeStsFault::Throttling);
    let text = login_fails(&w, "sts-throttled");
    assert!(
        text.contains(&format!(
            "AssumeRoleWithSAML for {DEFAULT_ROLE_ARN} (sts-throttled) failed: STS refused: \
             Throttling: Rate exceeded"
        )),
        "{text}"
    );
    assert_eq!(sts("sts-throttled").calls(), 1, "one request");

    sts("sts-5xx").inject(FakeStsFault::InternalFailure);
    let text = login_fails(&w, "sts-5xx");
    assert!(
        text.contains(&format!(
            "AssumeRoleWithSAML for {DEFAULT_ROLE_ARN} (sts-5xx) failed: STS refused: \
             InternalFailure"
        )),
        "{text}"
    );
    assert_eq!(sts("sts-5xx").calls(), 1, "one request");

    // An assertion STS finds too old: samld fetches a fresh one from the session it just
    // established (no password again) and tries once more.
    sts("sts-expired-once").inject(FakeStsFault::ExpiredToken);
    w.login_ok("sts-expired-once");
    let stats = jc("sts-expired-once").stats();
    assert_eq!(stats.password_posts, 1, "{stats:?}");
    assert_eq!(stats.saml_pages, 2, "{stats:?}");
    assert_eq!(sts("sts-expired-once").calls(), 2);
    w.key("sts-expired-once");

    // The failed ones log in fine once the fault is gone.
    for account in [
        "jc-500",
        "jc-timeout",
        "jc-html",
        "jc-reset",
        "jc-saml-html",
        "sts-throttled",
        "sts-5xx",
    ] {
        w.login_ok(account);
        w.key(account);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Faults during a background refresh of an account that holds valid credentials.
// ---------------------------------------------------------------------------------------------

/// A transient fault hits the scheduled refresh: status says `error` with the fault named and
/// a retry time, the helper keeps serving the old (still valid) credentials without going to
/// JumpCloud, and the retry after the backoff succeeds by itself.
fn refresh_survives(w: &World, account: &str, inject: impl FnOnce(&Lane), named: &[&str]) {
    let lane = w.lane(account);
    w.login_ok(account);
    let old = w.key(account);
    let issued = lane.sts.issued_count();
    inject(lane);

    let failed_at = OffsetDateTime::now_utc();
    let status = w.wait_for(account, "in error", EVENT_DEADLINE, |s| {
        s.state == AccountState::Error
    });
    let error = status.last_error.as_ref().expect("last_error");
    eprintln!("{account}: status last_error: {}", error.message);
    for words in named {
        assert!(error.message.contains(words), "{account}: {error:#?}");
    }
    let retry_at = parse_time(status.next_retry_at.as_deref().expect("next_retry_at"));
    let now = OffsetDateTime::now_utc();
    assert!(
        retry_at > now && retry_at < now + Duration::from_secs(40),
        "{account}: the first retry is 24-36 s away: {status:#?}"
    );
    assert!(parse_time(&error.at) >= failed_at.replace_nanosecond(0).unwrap());
    let [role] = &status.roles[..] else {
        panic!("{account}: the old credentials are still listed: {status:#?}");
    };
    assert_eq!(role.role_arn, DEFAULT_ROLE_ARN);

    // The old credentials are still good: the helper hands them out, from memory.
    let jc_before = lane.jc.stats();
    let sts_before = lane.sts.calls();
    assert_eq!(w.key(account), old, "{account}: the old credentials");
    assert_eq!(lane.jc.stats(), jc_before, "{account}: no JumpCloud trip");
    assert_eq!(lane.sts.calls(), sts_before, "{account}: no STS call");

    // The fault has passed: the retry succeeds without anyone asking.
    w.wait_for_issued(account, issued + 1, EVENT_DEADLINE);
    let new = w.key(account);
    assert_ne!(new, old, "{account}: fresh credentials after the retry");
    let status = w.wait_for(account, "active again", EVENT_DEADLINE, |s| {
        s.state == AccountState::Active
    });
    assert!(status.last_error.is_none(), "{account}: {status:#?}");
    assert!(status.next_retry_at.is_none(), "{account}: {status:#?}");
    let stats = lane.jc.stats();
    assert_eq!(
        stats.password_posts, 1,
        "{account}: never the password again"
    );
}

/// A fault the refresh absorbs: the next refresh gets new credentials with no error ever
/// shown. `check` then looks at what the fakes saw.
fn refresh_absorbs(
    w: &World,
    account: &str,
    inject: impl FnOnce(&Lane),
    check: impl FnOnce(&Lane),
) {
    let lane = w.lane(account);
    w.login_ok(account);
    let old = w.key(account);
    let issued = lane.sts.issued_count();
    inject(lane);
    w.wait_for_issued(account, issued + 1, EVENT_DEADLINE);
    let new = w.key(account);
    assert_ne!(new, old, "{account}: refreshed");
    let status = w.wait_for(account, "active", EVENT_DEADLINE, |s| {
        s.state == AccountState::Active
    });
    assert!(status.last_error.is_none(), "{account}: {status:#?}");
    assert!(status.next_retry_at.is_none(), "{account}: {status:#?}");
    check(lane);
}

fn jumpcloud_500(w: &World, account: &str) {
    refresh_survives(
        w,
        account,
        |lane| lane.jc.inject(Endpoint::SelfProbe, Fault::Status(500), 1),
        &[
            "JumpCloud answered HTTP 500 to GET /userconsole/api/self",
            "try again later",
        ],
    );
}

fn jumpcloud_timeout(w: &World, account: &str) {
    let url = w.lane(account).jc.app_url(DEFAULT_APP);
    refresh_survives(
        w,
        account,
        |lane| {
            lane.jc
                .inject(Endpoint::SamlPage, Fault::Delay(TOO_SLOW), 1)
        },
        &[&format!("Could not reach {url}"), "timed out"],
    );
}

fn jumpcloud_reset(w: &World, account: &str) {
    let url = w.lane(account).jc.app_url(DEFAULT_APP);
    refresh_survives(
        w,
        account,
        |lane| lane.jc.inject(Endpoint::SamlPage, Fault::Reset, 1),
        &[&format!("Could not reach {url}")],
    );
}

fn jumpcloud_html(w: &World, account: &str) {
    // What JumpCloud's maintenance page looks like to the session probe.
    refresh_survives(
        w,
        account,
        |lane| lane.jc.inject(Endpoint::SelfProbe, Fault::Html(503), 1),
        &["JumpCloud answered HTTP 503 to GET /userconsole/api/self"],
    );
}

fn sts_throttled(w: &World, account: &str) {
    // One throttled answer fails the refresh: samld's STS client makes one request per call
    // and leaves retrying to the backoff.
    refresh_survives(
        w,
        account,
        |lane| lane.sts.inject(FakeStsFault::Throttling),
        &[&format!(
            "AssumeRoleWithSAML for {DEFAULT_ROLE_ARN} ({account}) failed: STS refused: \
             Throttling: Rate exceeded"
        )],
    );
}

fn sts_5xx(w: &World, account: &str) {
    refresh_survives(
        w,
        account,
        |lane| lane.sts.inject(FakeStsFault::ServiceUnavailable),
        &[&format!(
            "AssumeRoleWithSAML for {DEFAULT_ROLE_ARN} ({account}) failed: STS refused: \
             ServiceUnavailable"
        )],
    );
}

fn sts_unreachable(w: &World, account: &str) {
    let url = w.lane(account).sts.endpoint_url();
    refresh_survives(
        w,
        account,
        |lane| lane.sts.inject(FakeStsFault::ConnectionReset),
        &[&format!(
            "AssumeRoleWithSAML for {DEFAULT_ROLE_ARN} ({account}) failed: could not reach \
             STS at {url}"
        )],
    );
}

fn sts_expired_once(w: &World, account: &str) {
    refresh_absorbs(
        w,
        account,
        |lane| lane.sts.inject(FakeStsFault::ExpiredToken),
        |lane| {
            let stats = lane.jc.stats();
            // Login 1, the refresh 1, and the fresh assertion after ExpiredTokenException 1.
            assert_eq!(stats.saml_pages, 3, "{account}: {stats:?}");
            assert_eq!(stats.password_posts, 1, "{account}: no password: {stats:?}");
            assert_eq!(lane.sts.calls(), 3, "{account}: retried once");
        },
    );
}

/// JumpCloud slower than usual but within the timeout: a helper that asks while the refresh
/// runs waits for it and gets the new credentials; no error, and no second trip.
fn jumpcloud_slow(w: &World, account: &str) {
    let lane = w.lane(account);
    w.login_ok(account);
    let old = w.key(account);
    let issued = lane.sts.issued_count();
    let pages = lane.jc.stats().saml_pages;
    lane.jc.inject(Endpoint::SamlPage, Fault::Delay(SLOW), 1);
    // The refresh's request for the SAML page has reached JumpCloud, which holds it for SLOW.
    let arrived = w.block_on(async {
        tokio::time::timeout(
            EVENT_DEADLINE,
            lane.jc.wait_for_stats(|s| s.faults_served >= 1),
        )
        .await
    });
    assert!(arrived.is_ok(), "{account}: no refresh reached JumpCloud");
    let new = w.key(account);
    assert_ne!(
        new, old,
        "{account}: the helper got the refreshed credentials"
    );
    // One trip: the helper joined the refresh (or came after it) rather than making its own.
    assert_eq!(lane.sts.issued_count(), issued + 1);
    assert_eq!(
        lane.jc.stats().saml_pages,
        pages + 1,
        "{account}: one assertion"
    );
    let status = w.account_status(account);
    assert_eq!(status.state, AccountState::Active, "{status:#?}");
    assert!(status.last_error.is_none(), "{status:#?}");
}

#[test]
fn background_refreshes_survive_jumpcloud_and_sts_faults() {
    let scenarios: [Scenario; 9] = [
        ("jc-500", jumpcloud_500),
        ("jc-timeout", jumpcloud_timeout),
        ("jc-slow", jumpcloud_slow),
        ("jc-reset", jumpcloud_reset),
        ("jc-html", jumpcloud_html),
        ("sts-throttled", sts_throttled),
        ("sts-5xx", sts_5xx),
        ("sts-unreachable", sts_unreachable),
        ("sts-expired-once", sts_expired_once),
    ];
    let w = World::new(scenarios.iter().map(|(a, _)| LaneSpec::plain(a)).collect());
    run_side_by_side(&w, &scenarios);
    // Nine accounts failing and retrying side by side did not disturb samld.
    assert_eq!(w.status().daemon.pid, w.daemon_pid());
}

// ---------------------------------------------------------------------------------------------
// The daemon killed, the config file going away.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_killed_daemon_restarts_logged_out_or_logs_in_unattended() {
    let unattended = LaneSpec {
        account: "unattended",
        user: FakeUser::new("push.user@example.com", PUSH_PASSWORD)
            .with_factor("push", "available")
            .with_push(PushBehavior::AcceptAfterPolls(1)),
        extra: format!("mfa = \"push\"\npassword_command = \"printf '%s\\\\n' {PUSH_PASSWORD}\"\n"),
        lifetime: LONG_LIFETIME,
    };
    let mut w = World::new(vec![LaneSpec::long_lived("manual"), unattended]);
    w.login_ok("manual");
    succeeded(&w.samlctl(&["login", "unattended"]), "unattended login");
    let manual_key = w.key("manual");
    let unattended_key = w.key("unattended");
    let old_pid = w.daemon_pid();

    w.kill_and_restart_daemon();
    assert_ne!(w.daemon_pid(), old_pid);
    // Credentials lived in the old process only: by design nothing was written to disk.
    for account in ["manual", "unattended"] {
        let status = w.account_status(account);
        assert_eq!(status.state, AccountState::LoggedOut, "{status:#?}");
        assert!(
            status.roles.is_empty() && status.last_error.is_none(),
            "{status:#?}"
        );
    }

    let manual_jc = w.lane("manual").jc.stats();
    let text = failed_silently(&w.helper("manual"), "samld-helper manual after the restart");
    assert_eq!(
        text.trim_end(),
        "samld: manual is not logged in; run: samlctl login manual",
        "{text}"
    );
    assert_eq!(w.lane("manual").jc.stats(), manual_jc, "no JumpCloud trip");

    // password_command and push: the first helper call logs in again by itself.
    let before = w.lane("unattended").jc.stats();
    let key = w.key("unattended");
    assert_ne!(key, unattended_key);
    let after = w.lane("unattended").jc.stats();
    assert_eq!(after.password_posts, before.password_posts + 1, "{after:?}");
    assert_eq!(
        after.pushes_accepted,
        before.pushes_accepted + 1,
        "{after:?}"
    );
    assert_eq!(w.account_status("unattended").state, AccountState::Active);

    // And `samlctl login` brings the other one back.
    w.login_ok("manual");
    assert_ne!(w.key("manual"), manual_key);
}

#[test]
fn the_config_file_deleted_or_unreadable_keeps_the_accounts_served() {
    let w = World::new(vec![LaneSpec::long_lived("cfg")]);
    let config = w.env.config.clone();
    let original = std::fs::read_to_string(&config).unwrap();
    w.login_ok("cfg");
    let key = w.key("cfg");
    let path = config.display().to_string();
    let config_error = || w.status().daemon.config_error;
    let wait_config = |what: &str, done: &dyn Fn(&Option<String>) -> bool| -> Option<String> {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let error = config_error();
            if done(&error) {
                return error;
            }
            assert!(
                Instant::now() < deadline,
                "config error not {what} within {EVENT_DEADLINE:?}: {error:?}\nsamld log:\n{}",
                w.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Deleted: the accounts loaded before stay in force, and status says why.
    std::fs::remove_file(&config).unwrap();
    let error = wait_config("set", &|e| e.is_some()).unwrap();
    assert_eq!(
        error,
        format!("{path} was removed; the accounts loaded before stay in force until it is back")
    );
    assert_eq!(w.key("cfg"), key, "still served");
    let human = stdout(&w.samlctl(&["status"]));
    assert!(human.contains("was removed"), "{human}");

    // Unreadable. chmod 000 keeps a non-root samld out; root reads through any mode, so as
    // root a directory takes the file's place, which makes the read fail for anyone.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::fs::create_dir(&config).unwrap();
    } else {
        std::fs::write(&config, &original).unwrap();
        wait_config("cleared by the file coming back", &|e| e.is_none());
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
    }
    let error = wait_config("a read error", &|e| {
        e.as_deref().is_some_and(|e| e.contains("cannot read"))
    })
    .unwrap();
    eprintln!("unreadable config: {error}");
    assert!(error.contains(&path), "names the file: {error}");
    assert!(
        error.contains(if root {
            "Is a directory"
        } else {
            "Permission denied"
        }),
        "{error}"
    );
    assert_eq!(w.key("cfg"), key, "still served");

    // Restored as it was: the error clears and nothing starts over.
    if root {
        std::fs::remove_dir(&config).unwrap();
        std::fs::write(&config, &original).unwrap();
    } else {
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    wait_config("cleared", &|e| e.is_none());
    assert_eq!(
        w.key("cfg"),
        key,
        "the same credentials: the account kept its state"
    );
    let status = w.account_status("cfg");
    assert_eq!(status.state, AccountState::Active, "{status:#?}");
    assert_eq!(w.lane("cfg").jc.stats().password_posts, 1);
}
