//! A world for end-to-end login tests: a fake JumpCloud and a fake STS on 127.0.0.1, a
//! config with one account per scenario pointing at them, the real `samld`, and every
//! `samlctl`/`samld-helper` run recorded so that `security_no_secret_escapes.rs` can search
//! the lot.
//!
//! The scenarios themselves ([`flows`]) are shared by `login.rs`, which runs each in a world
//! of its own, and `security_no_secret_escapes.rs`, which runs them all in one world with a
//! trace log.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod browser;
pub mod flows;

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use samld_proto::{AccountStatus, StatusReport};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_PROVIDER_ARN, DEFAULT_ROLE_ARN, FakeApp, FakeJumpCloud,
    FakeJumpCloudConfig, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{ClosedPort, DaemonProcess, TestEnv, stderr, stdout};

/// The longest any single `samlctl` or `samld-helper` run may take before the test fails.
/// The slowest flow (a push approved on the third poll) needs about two seconds.
const RUN_DEADLINE: Duration = Duration::from_secs(90);

/// The TOTP user (password + TOTP code).
pub const TOTP_EMAIL: &str = "totp.user@example.com";
/// Its password.
pub const TOTP_PASSWORD: &str = "pw-totp-Vq7!kP2#xR9&mZ4";
/// The push user (password + JumpCloud Protect, approved on the third poll).
pub const PUSH_EMAIL: &str = "push.user@example.com";
/// Its password.
pub const PUSH_PASSWORD: &str = "pw-push-Hd3$wN8@cL5^tB1";
/// A push user whose phone denies.
pub const DENY_EMAIL: &str = "deny.user@example.com";
/// Its password.
pub const DENY_PASSWORD: &str = "pw-deny-Jf6%gT2*yU7(eQ3";
/// A push user who never answers before the push expires.
pub const EXPIRE_EMAIL: &str = "expire.user@example.com";
/// Its password.
pub const EXPIRE_PASSWORD: &str = "pw-expire-Zs9)aM4_oI8+rW6";
/// A user without MFA, whose app offers two roles.
pub const MULTI_EMAIL: &str = "multi.user@example.com";
/// Its password.
pub const MULTI_PASSWORD: &str = "pw-multi-Ly5=dK1~fV3{hG7";
/// A user whose only factor is a WebAuthn key.
pub const WEBAUTHN_EMAIL: &str = "webauthn.user@example.com";
/// Its password.
pub const WEBAUTHN_PASSWORD: &str = "pw-webauthn-Xc2}pE6|nA9";
/// A user with a WebAuthn key and a TOTP app.
pub const WEBAUTHN_TOTP_EMAIL: &str = "webauthn.totp@example.com";
/// Its password.
pub const WEBAUTHN_TOTP_PASSWORD: &str = "pw-webauthn-totp-Rb8<sY3>qJ5";
/// A password nobody has.
pub const WRONG_PASSWORD: &str = "pw-wrong-Nu4?iO7;lH2:vF6";

/// TOTP codes the TOTP user's authenticator shows, one per scenario (each works once).
///
/// Eight digits (RFC 6238 allows 6 to 8) rather than JumpCloud's usual six, so that the
/// secrets test can search logs for them without tripping over the microseconds of a
/// timestamp, which are six digits too.
pub const CODE_LOGIN: &str = "38461729";
/// For `mfa_command` (the command prints it).
pub const CODE_COMMAND: &str = "52907318";
/// For the session-reuse scenario.
pub const CODE_REUSE: &str = "61740283";
/// For the reused-code scenario: accepted once, then refused.
pub const CODE_TWICE: &str = "74185296";
/// For the logout scenario.
pub const CODE_LOGOUT: &str = "83629147";
/// For the status scenario.
pub const CODE_STATUS: &str = "47302958";
/// For the scenario where STS refuses after JumpCloud accepted.
pub const CODE_STS: &str = "90516382";
/// A code the authenticator never showed.
pub const CODE_WRONG: &str = "19384756";
/// Every code any scenario sends; all but the last are valid (once).
pub const ALL_CODES: [&str; 8] = [
    CODE_LOGIN,
    CODE_COMMAND,
    CODE_REUSE,
    CODE_TWICE,
    CODE_LOGOUT,
    CODE_STATUS,
    CODE_STS,
    CODE_WRONG,
];

/// Every password any scenario sends, the wrong one included.
pub const ALL_PASSWORDS: [&str; 8] = [
    TOTP_PASSWORD,
    PUSH_PASSWORD,
    DENY_PASSWORD,
    EXPIRE_PASSWORD,
    MULTI_PASSWORD,
    WEBAUTHN_PASSWORD,
    WEBAUTHN_TOTP_PASSWORD,
    WRONG_PASSWORD,
];

/// The two-role app.
pub const MULTI_APP: &str = "multi";
/// Its default role (`role = "Admin"` in the config).
pub const ADMIN_ROLE_ARN: &str = "arn:aws:iam::210987654321:role/Admin";
/// Its other role.
pub const READONLY_ROLE_ARN: &str = "arn:aws:iam::210987654321:role/ReadOnly";
/// Its SAML provider.
pub const MULTI_PROVIDER_ARN: &str = "arn:aws:iam::210987654321:saml-provider/JumpCloud";
/// The single role of the default app.
pub const ROLE_ARN: &str = DEFAULT_ROLE_ARN;

/// One run of a client binary, as the secrets test needs it.
#[derive(Debug)]
pub struct Ran {
    /// The command line, for messages.
    pub command: String,
    /// What it printed.
    pub output: Output,
    /// Whether stdout may legitimately hold credentials (a successful `samld-helper`).
    pub stdout_holds_credentials: bool,
}

/// Fakes, config, daemon and a transcript of every client run.
pub struct World {
    // Dropped first: the daemon stops before the servers it talks to.
    daemon: Option<DaemonProcess>,
    /// The temp dir, config and socket.
    pub env: TestEnv,
    /// The fake JumpCloud.
    pub jc: FakeJumpCloud,
    /// The fake STS.
    pub sts: FakeSts,
    /// A 127.0.0.1 port nothing listens on (the `down` account's JumpCloud).
    pub closed_port: u16,
    /// Holds [`World::closed_port`] so that nothing else can listen there.
    _closed: ClosedPort,
    transcript: Mutex<Vec<Ran>>,
    // Dropped last: it runs the fakes.
    rt: tokio::runtime::Runtime,
}

impl World {
    /// Starts the fakes and samld at the default log level.
    pub fn new() -> Self {
        Self::with_log_level(None)
    }

    /// Starts the fakes and samld with `SAMLD_LOG` set to `level`.
    pub fn with_log_level(level: Option<&str>) -> Self {
        Self::with_setup(
            fake_jumpcloud_config(),
            FakeStsConfig::default(),
            config_toml,
            level,
        )
    }

    /// [`World::new`] with `extra` in the environment of samld and of every client (the
    /// D-Bus session bus of the real-keyring tests).
    pub fn with_env(extra: &[(&str, &str)]) -> Self {
        Self::with_setup_env(
            fake_jumpcloud_config(),
            FakeStsConfig::default(),
            config_toml,
            None,
            extra,
        )
    }

    /// Starts fakes set up as given and samld with the config `config` writes for them (it
    /// also gets the closed port), with `SAMLD_LOG` set to `level`.
    pub fn with_setup(
        jc: FakeJumpCloudConfig,
        sts: FakeStsConfig,
        config: impl FnOnce(&FakeJumpCloud, &FakeSts, u16) -> String,
        level: Option<&str>,
    ) -> Self {
        Self::with_setup_and_env(jc, sts, config, level, &[])
    }

    /// Starts the fakes and samld with the default config plus what `extra` writes for the
    /// fake JumpCloud (more accounts).
    pub fn with_extra_config(extra: impl FnOnce(&FakeJumpCloud) -> String) -> Self {
        Self::with_setup(
            fake_jumpcloud_config(),
            FakeStsConfig::default(),
            |jc, sts, closed_port| config_toml(jc, sts, closed_port) + &extra(jc),
            None,
        )
    }

    /// Starts the fakes and samld with the default setup, `SAMLD_LOG` set to `level` and
    /// the variables `env` set for samld (and every client).
    pub fn with_log_and_env(level: &str, env: &[(&str, &str)]) -> Self {
        Self::with_setup_and_env(
            fake_jumpcloud_config(),
            FakeStsConfig::default(),
            config_toml,
            Some(level),
            env,
        )
    }

    /// [`World::with_setup`] with `extra` in every process's environment.
    pub fn with_setup_env(
        jc: FakeJumpCloudConfig,
        sts: FakeStsConfig,
        config: impl FnOnce(&FakeJumpCloud, &FakeSts, u16) -> String,
        level: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::with_setup_and_env(jc, sts, config, level, extra)
    }

    /// [`World::with_setup`] with the variables `env` set for samld (and every client).
    pub fn with_setup_and_env(
        jc: FakeJumpCloudConfig,
        sts: FakeStsConfig,
        config: impl FnOnce(&FakeJumpCloud, &FakeSts, u16) -> String,
        level: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        // The fakes run on their own worker thread while the test thread blocks on the
        // binaries.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (jc, sts) =
            rt.block_on(async { (FakeJumpCloud::start(jc).await, FakeSts::start(sts).await) });
        let closed = ClosedPort::new();
        let closed_port = closed.port();
        let extra = env;
        let mut env = TestEnv::new(&config(&jc, &sts, closed_port));
        if let Some(level) = level {
            env.extra_env.push(("SAMLD_LOG".into(), level.into()));
        }
        env.extra_env
            .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let daemon = env.start_daemon();
        World {
            daemon: Some(daemon),
            env,
            jc,
            sts,
            closed_port,
            _closed: closed,
            transcript: Mutex::new(Vec::new()),
            rt,
        }
    }

    /// Runs `samlctl ARGS` with nothing on stdin and no terminal.
    pub fn samlctl(&self, args: &[&str]) -> Output {
        self.run("samlctl", args, None)
    }

    /// Runs `samlctl ARGS` with `stdin` on its standard input and no terminal.
    pub fn samlctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run("samlctl", args, Some(stdin))
    }

    /// `samlctl login ACCOUNT --password-stdin [--mfa-code CODE]`, with `password` on stdin.
    pub fn login(&self, account: &str, password: &str, code: Option<&str>) -> Output {
        let mut args = vec!["login", account, "--password-stdin"];
        if let Some(code) = code {
            args.extend(["--mfa-code", code]);
        }
        self.samlctl_stdin(&args, &format!("{password}\n"))
    }

    /// Runs `samld-helper ARGS` with no terminal.
    pub fn helper(&self, args: &[&str]) -> Output {
        self.run("samld-helper", args, None)
    }

    /// Starts `samld-helper ARGS` with no terminal and returns at once (for bursts); its
    /// output is piped. Not recorded in the transcript.
    pub fn spawn_helper(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = self.env.command("samld-helper");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: as in `run`.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn().expect("spawn samld-helper")
    }

    /// `samlctl status --json`, parsed.
    pub fn status(&self) -> StatusReport {
        let out = self.samlctl(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).expect("status --json is a StatusReport")
    }

    /// One account of `samlctl status --json`.
    pub fn account_status(&self, account: &str) -> AccountStatus {
        self.status()
            .accounts
            .into_iter()
            .find(|a| a.name == account)
            .unwrap_or_else(|| panic!("no account {account} in the status"))
    }

    /// Every client run so far.
    pub fn take_transcript(&self) -> Vec<Ran> {
        std::mem::take(&mut *self.transcript.lock().unwrap())
    }

    /// Stops samld (SIGTERM) and returns its whole log.
    pub fn stop_daemon(&mut self) -> String {
        let daemon = self.daemon.take().expect("samld is running");
        daemon.signal(libc::SIGTERM);
        let (status, log) = daemon.wait(Duration::from_secs(15));
        assert!(status.success(), "samld exited with {status:?}:\n{log}");
        log
    }

    /// Stops samld (SIGTERM) and starts a new one on the same socket and config: nothing
    /// the old one held in memory survives.
    pub fn restart_daemon(&mut self) {
        self.stop_daemon();
        self.daemon = Some(self.env.start_daemon());
    }

    /// What samld logged so far.
    pub fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(DaemonProcess::log)
            .unwrap_or_default()
    }

    /// Runs a future on the fakes' runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs a binary to completion, within [`RUN_DEADLINE`], and records it.
    ///
    /// The child gets a session of its own (`setsid`) so that it has no controlling
    /// terminal even when the tests run in one: otherwise `samlctl` could open /dev/tty and
    /// wait for a person to type.
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
            let mut pipe = child.stdin.take().expect("piped stdin");
            // It may exit without reading (e.g. when JumpCloud fails before the password is
            // needed); a broken pipe is then expected.
            let _ = pipe.write_all(input.as_bytes());
        }
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(RUN_DEADLINE) {
            Ok(out) => out.expect("wait for the child"),
            Err(_) => {
                // SAFETY: the child has not been reaped (its waiter has not returned).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                let out = rx.recv().expect("waiter").expect("wait for the child");
                panic!(
                    "{bin} {args:?} did not finish within {RUN_DEADLINE:?}\nstdout: {}\nstderr: {}\nsamld log:\n{}",
                    stdout(&out),
                    stderr(&out),
                    self.daemon_log()
                );
            }
        };
        self.transcript.lock().unwrap().push(Ran {
            command: format!("{bin} {}", args.join(" ")),
            output: output.clone(),
            stdout_holds_credentials: bin == "samld-helper" && output.status.success(),
        });
        output
    }
}

/// Users for every scenario, the default single-role app and a two-role app.
pub fn fake_jumpcloud_config() -> FakeJumpCloudConfig {
    let push_user = |email: &str, password: &str, push: PushBehavior| {
        FakeUser::new(email, password)
            .with_factor("push", "available")
            .with_push(push)
    };
    FakeJumpCloudConfig {
        users: TOTP_SCENARIOS
            .iter()
            .map(|scenario| {
                FakeUser::new(&scenario_email(scenario), TOTP_PASSWORD)
                    .with_factor("totp", "available")
                    .with_factor("push", "unavailable")
                    .with_totp_codes(&ALL_CODES[..ALL_CODES.len() - 1])
            })
            .chain([
                push_user(PUSH_EMAIL, PUSH_PASSWORD, PushBehavior::AcceptAfterPolls(3)),
                push_user(DENY_EMAIL, DENY_PASSWORD, PushBehavior::DenyAfterPolls(2)),
                push_user(
                    EXPIRE_EMAIL,
                    EXPIRE_PASSWORD,
                    PushBehavior::ExpireAfterPolls(1),
                ),
                FakeUser::new(MULTI_EMAIL, MULTI_PASSWORD),
                FakeUser::new(WEBAUTHN_EMAIL, WEBAUTHN_PASSWORD)
                    .with_factor("webauthn", "available"),
                FakeUser::new(WEBAUTHN_TOTP_EMAIL, WEBAUTHN_TOTP_PASSWORD)
                    .with_factor("webauthn", "available")
                    .with_factor("totp", "available"),
            ])
            .collect(),
        apps: vec![
            FakeApp::new(DEFAULT_APP, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]),
            FakeApp::new(
                MULTI_APP,
                &[
                    (ADMIN_ROLE_ARN, MULTI_PROVIDER_ARN),
                    (READONLY_ROLE_ARN, MULTI_PROVIDER_ARN),
                ],
            ),
        ],
        ..FakeJumpCloudConfig::default()
    }
}

/// The accounts that sign in with a password and a TOTP code.
///
/// Each is its own JumpCloud user: samld shares one JumpCloud session among the accounts of
/// one user, and scenarios sharing a world must not share a session.
const TOTP_SCENARIOS: [&str; 11] = [
    "totp",
    "wrong-password",
    "wrong-code",
    "code-twice",
    "reuse",
    "logout",
    "status",
    "xsrf-html",
    "sts-denied",
    "command",
    "piped",
];

/// The JumpCloud user of the TOTP scenario `name` (one of [`TOTP_SCENARIOS`]).
pub fn scenario_email(name: &str) -> String {
    if name == "totp" {
        TOTP_EMAIL.to_owned()
    } else {
        format!("totp.{name}@example.com")
    }
}

/// One account per scenario, so that scenarios sharing a world never share a session.
pub fn config_toml(jc: &FakeJumpCloud, sts: &FakeSts, closed_port: u16) -> String {
    let app = jc.app_url(DEFAULT_APP);
    let multi = jc.app_url(MULTI_APP);
    let account = |name: &str, url: &str, email: &str, extra: &str| {
        format!("\n[accounts.{name}]\nurl = \"{url}\"\nusername = \"{email}\"\n{extra}")
    };
    let mut toml = format!(
        "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{}\"\nsts_endpoint = \"{}\"\n",
        jc.base_url(),
        sts.endpoint_url()
    );
    for name in &TOTP_SCENARIOS[..9] {
        toml += &account(name, &app, &scenario_email(name), "mfa = \"totp\"\n");
    }
    toml += &account(
        "command",
        &app,
        &scenario_email("command"),
        &format!("mfa = \"totp\"\nmfa_command = \"echo {CODE_COMMAND}\"\n"),
    );
    toml += &account("push", &app, PUSH_EMAIL, "mfa = \"push\"\n");
    toml += &account("push-denied", &app, DENY_EMAIL, "mfa = \"push\"\n");
    toml += &account("push-expired", &app, EXPIRE_EMAIL, "mfa = \"push\"\n");
    toml += &account("multi", &multi, MULTI_EMAIL, "role = \"Admin\"\n");
    toml += &account("webauthn", &app, WEBAUTHN_EMAIL, "");
    toml += &account(
        "webauthn-key",
        &app,
        WEBAUTHN_TOTP_EMAIL,
        "mfa = \"webauthn\"\n",
    );
    let down = format!("http://127.0.0.1:{closed_port}");
    toml += &account(
        "down",
        &format!("{down}/saml2/{DEFAULT_APP}"),
        TOTP_EMAIL,
        &format!("jumpcloud_console_url = \"{down}\"\n"),
    );
    toml
}

/// What `secret-tool` finds for samld's item of `account` and `username` (its output, if it
/// found one), as any other keyring client would: the keyring tests check the item from
/// outside samld.
pub fn secret_tool_lookup(account: &str, username: &str) -> Option<String> {
    let out = std::process::Command::new("secret-tool")
        .args(["lookup", "service", "samld", "account", account])
        .args(["username", username])
        .output()
        .expect("secret-tool (libsecret-tools) runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
