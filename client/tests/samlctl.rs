//! `samlctl` as users run it: the real binary against a scripted fake daemon.

#[path = "../src/fake_daemon.rs"]
mod fake_daemon;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use fake_daemon::{Conn, FAKE_PID, FakeDaemon, hello};
use samld_proto::{
    AccountState, AccountStatus, BrowserPlan, DaemonInfo, ErrorCode, HeldSession, LoginIntent,
    LoginOutcome, LoginRequest, LogoutOutcome, PROTOCOL_VERSION, PasswordLogin, Request, Response,
    RoleInfo, RoleStatus, Secret, SecretKind, StatusReport,
};

/// Runs samlctl with `stdin` piped in, detached from any controlling terminal (`setsid`) so
/// that a test run from a terminal behaves like CI: no /dev/tty to prompt on.
fn samlctl(socket: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_samlctl"));
    cmd.args(args)
        .env("SAMLD_SOCKET", socket)
        // These tests script the daemon; a real one must not be started behind their back.
        .env("SAMLD_NO_AUTOSTART", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run samlctl");
    let mut pipe = child.stdin.take().unwrap();
    // samlctl may exit without reading stdin; a broken pipe then is expected.
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The daemon's answer to `samlctl login`'s first question: an account signed in through
/// the API.
fn api_plan() -> Conn {
    Conn::new().answer(Response::BrowserPlan(plan("api", None)))
}

fn plan(login: &str, browser: Option<&str>) -> BrowserPlan {
    BrowserPlan {
        account: "production".into(),
        url: "https://sso.jumpcloud.com/saml2/acme".into(),
        login: login.into(),
        browser: browser.map(str::to_owned),
        browser_args: Vec::new(),
    }
}

fn plan_request() -> Request {
    Request::BrowserPlan {
        account: "production".into(),
    }
}

/// What `samlctl login production` sends when it is given the password and the MFA code:
/// the plan, then a login with both.
fn plan_then_password_and_code_login() -> Vec<Request> {
    vec![
        plan_request(),
        Request::Login(LoginRequest {
            account: "production".into(),
            intent: LoginIntent::Password(PasswordLogin {
                password: Some(Secret::new("correct horse battery staple")),
                mfa_code: Some(Secret::new("123456")),
                interactive: true,
                session: HeldSession::Reuse,
            }),
        }),
    ]
}

fn outcome(reused_session: bool) -> LoginOutcome {
    LoginOutcome {
        account: "production".into(),
        username: "road.runner@example.com".into(),
        reused_session,
        roles: vec![RoleInfo {
            role_arn: "arn:aws:iam::012345678987:role/Admin".into(),
            principal_arn: "arn:aws:iam::012345678987:saml-provider/JumpCloud".into(),
            default: true,
        }],
    }
}

#[test]
fn status_json_is_the_daemons_report() {
    let report = StatusReport {
        daemon: DaemonInfo {
            version: "0.1.0".into(),
            protocol_version: 1,
            pid: FAKE_PID,
            config_path: "/home/u/.config/samld/config.toml".into(),
            started_at: "2026-11-28T10:00:00Z".into(),
            config_error: None,
        },
        accounts: vec![AccountStatus {
            login: "api".into(),
            name: "production".into(),
            state: AccountState::Active,
            provider: "jumpcloud".into(),
            username: "road.runner@example.com".into(),
            identity: None,
            url: "https://sso.jumpcloud.com/saml2/acme".into(),
            region: Some("us-east-2".into()),
            default_role: Some("Admin".into()),
            session: None,
            roles: vec![RoleStatus {
                role_arn: "arn:aws:iam::012345678987:role/Admin".into(),
                assumed_role_arn: None,
                expires_at: Some("2026-11-28T12:00:00Z".into()),
                next_refresh_at: Some("2026-11-28T11:40:00Z".into()),
                default: true,
                warning: None,
                last_used: None,
            }],
            last_error: None,
            next_retry_at: None,
        }],
        sessions: vec![],
    };
    let daemon = FakeDaemon::serve(vec![Conn::new().answer(Response::Status(report.clone()))]);
    let out = samlctl(&daemon.socket, &["status", "production", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parsed: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed, report);
    assert_eq!(
        daemon.requests(),
        [Request::Status {
            account: Some("production".into())
        }]
    );
}

#[test]
fn login_sends_the_piped_password_and_the_mfa_code_up_front() {
    // Up front, so that samld uses it before `password_command` (which may print a stale one).
    let daemon = FakeDaemon::serve(vec![
        api_plan(),
        Conn::new()
            .recv()
            .send(Response::Progress {
                message: "verifying the MFA code".into(),
            })
            .send(Response::LoggedIn(outcome(false))),
    ]);
    let out = samlctl(
        &daemon.socket,
        &[
            "login",
            "production",
            "--password-stdin",
            "--mfa-code",
            "123456",
        ],
        "correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Logged in to production as road.runner@example.com\nRoles:\n  \
         arn:aws:iam::012345678987:role/Admin (default)\n"
    );
    assert_eq!(text(&out.stderr), "verifying the MFA code\n");
    assert_eq!(daemon.requests(), plan_then_password_and_code_login());
}

#[test]
fn login_reads_the_password_then_the_code_from_stdin() {
    let daemon = FakeDaemon::serve(vec![
        api_plan(),
        Conn::new().recv().send(Response::LoggedIn(outcome(false))),
    ]);
    let out = samlctl(
        &daemon.socket,
        &[
            "login",
            "production",
            "--password-stdin",
            "--mfa-code-stdin",
        ],
        "correct horse battery staple\n 123456 \r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(daemon.requests(), plan_then_password_and_code_login());
}

#[test]
fn mfa_code_and_mfa_code_stdin_conflict() {
    let daemon = FakeDaemon::serve(vec![]);
    let out = samlctl(
        &daemon.socket,
        &["login", "production", "--mfa-code", "1", "--mfa-code-stdin"],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(daemon.requests().is_empty());
}

#[test]
fn login_with_a_live_session_needs_nothing() {
    let daemon = FakeDaemon::serve(vec![
        api_plan(),
        Conn::new().answer(Response::LoggedIn(outcome(true))),
    ]);
    let out = samlctl(
        &daemon.socket,
        &["login", "production", "--force", "--save-password"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(
        "Logged in to production as road.runner@example.com (session reused, no password needed)\n"
    ));
    let [_, Request::Login(req)] = &daemon.requests()[..] else {
        panic!("one login request")
    };
    assert!(req.intent.saves_password() && req.intent.skips_held_session());
    assert!(
        !req.intent.interactive(),
        "no terminal and no --password-stdin: nothing to answer with"
    );
}

#[test]
fn login_without_a_terminal_or_stdin_fails_clearly_when_a_password_is_needed() {
    let daemon = FakeDaemon::serve(vec![
        api_plan(),
        Conn::new()
            .recv()
            .send(Response::NeedSecret {
                kind: SecretKind::Password,
                prompt: "Password".into(),
            })
            .recv(),
    ]);
    let out = samlctl(&daemon.socket, &["login", "production"], "ignored\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "samlctl: samld needs the JumpCloud password, but there is no terminal to ask on; \
         pipe it in with --password-stdin\n"
    );
    assert_eq!(daemon.requests().len(), 2, "no ProvideSecret was sent");
}

#[test]
fn daemon_errors_are_printed_with_the_prefix() {
    let daemon = FakeDaemon::serve(vec![Conn::new().answer(Response::error(
        ErrorCode::UnknownAccount,
        "no account `prod` in /c.toml; did you mean `production`?",
    ))]);
    let out = samlctl(&daemon.socket, &["refresh", "prod"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "samlctl: no account `prod` in /c.toml; did you mean `production`?\n"
    );
}

#[test]
fn logout_all_and_roles_json() {
    let roles = outcome(false).roles;
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::LoggedOut(LogoutOutcome {
            accounts: vec!["a".into(), "b".into()],
            idp_sessions: 2,
        })),
        Conn::new().answer(Response::Roles {
            account: "a".into(),
            roles: roles.clone(),
        }),
    ]);
    let out = samlctl(&daemon.socket, &["logout", "--all"], "");
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "Logged out of a.\nLogged out of b.\nSigned out of 2 IdP sessions.\n"
    );
    let out = samlctl(&daemon.socket, &["roles", "a", "--json"], "");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["account"], "a");
    assert_eq!(
        serde_json::from_value::<Vec<RoleInfo>>(v["roles"].clone()).unwrap(),
        roles
    );
    assert_eq!(
        daemon.requests(),
        [
            Request::Logout { account: None },
            Request::Roles {
                account: "a".into()
            }
        ]
    );
}

#[test]
fn daemon_status_exits_0_when_running_and_3_when_not() {
    let daemon = FakeDaemon::serve(vec![Conn::new()]);
    let out = samlctl(&daemon.socket, &["daemon", "status"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "samld 0.1.0-fake is running (pid 4242, protocol {PROTOCOL_VERSION}) on {}\n",
            daemon.socket.display()
        )
    );

    let gone = daemon.dir().join("other.sock");
    let out = samlctl(&gone, &["daemon", "status"], "");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stdout),
        format!(
            "samld is not running (no daemon answers on {})\n",
            gone.display()
        )
    );
    let out = samlctl(&gone, &["daemon", "status", "--json"], "");
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], false);
}

#[test]
fn daemon_status_reports_an_incompatible_daemon_and_fails() {
    let older = PROTOCOL_VERSION - 1;
    let daemon = FakeDaemon::serve(vec![Conn::new().greeting(Some(hello(older)))]);
    let out = samlctl(&daemon.socket, &["daemon", "status"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with(&format!(
        "samld 0.1.0-fake is running (pid 4242, protocol {older})"
    )));
    assert_eq!(
        text(&out.stderr),
        format!(
            "samlctl: samld 0.1.0-fake (pid 4242) is older than this samlctl {} (protocol \
             {older}, need {PROTOCOL_VERSION}): restart it with `samlctl daemon stop` and start \
             it again\n",
            samld_proto::CRATE_VERSION
        )
    );
}

#[test]
fn daemon_stop_waits_until_the_socket_is_gone() {
    // The fake removes its socket after the last scripted connection, as an exiting daemon does.
    let daemon = FakeDaemon::serve(vec![Conn::new().answer(Response::ShuttingDown)]);
    let socket = daemon.socket.clone();
    let out = samlctl(&socket, &["daemon", "stop"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "samld (pid 4242) stopped.\n");
    assert_eq!(daemon.requests(), [Request::Shutdown]);
    assert!(!socket.exists());
}

#[test]
fn daemon_stop_works_across_protocol_versions() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .greeting(Some(hello(2)))
            .answer(Response::ShuttingDown),
    ]);
    let out = samlctl(&daemon.socket, &["daemon", "stop"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(daemon.requests(), [Request::Shutdown]);
}

#[test]
fn socket_option_overrides_the_environment() {
    let daemon = FakeDaemon::serve(vec![Conn::new()]);
    let socket = daemon.socket.display().to_string();
    let out = samlctl(
        Path::new("/nonexistent/samld.sock"),
        &["--socket", &socket, "daemon", "status"],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn bad_usage_exits_2() {
    let out = samlctl(Path::new("/nonexistent"), &["logout"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = samlctl(Path::new("/nonexistent"), &["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn save_password_asks_for_a_password_login() {
    // Only a login that uses the password can save it; a reused session would save nothing.
    let daemon = FakeDaemon::serve(vec![
        api_plan(),
        Conn::new().answer(Response::LoggedIn(outcome(false))),
    ]);
    let out = samlctl(
        &daemon.socket,
        &["login", "production", "--save-password", "--password-stdin"],
        "correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let [_, Request::Login(req)] = &daemon.requests()[..] else {
        panic!("one login request")
    };
    assert!(
        req.intent.saves_password() && req.intent.skips_held_session(),
        "{req:?}"
    );
}

#[test]
fn password_forget_sends_the_request_and_says_what_happened() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::PasswordForgotten {
            account: "production".into(),
            removed: true,
        }),
        Conn::new().answer(Response::PasswordForgotten {
            account: "production".into(),
            removed: false,
        }),
        // A daemon older than the request does not know its type.
        Conn::new().answer(Response::error(
            ErrorCode::BadRequest,
            "unknown variant `forget_password`",
        )),
    ]);
    let out = samlctl(&daemon.socket, &["password", "forget", "production"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Removed the saved password of production from the OS keyring; samld will no longer \
         log in with it by itself.\n"
    );
    let out = samlctl(&daemon.socket, &["password", "forget", "production"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "No password was saved for production; nothing to forget.\n"
    );
    let out = samlctl(&daemon.socket, &["password", "forget", "production"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("older than this samlctl"), "{err}");
    assert!(err.contains("samlctl daemon stop"), "{err}");
    assert_eq!(
        daemon.requests(),
        vec![
            Request::ForgetPassword {
                account: "production".into()
            };
            3
        ]
    );
}

fn audit_event(seq: u64, process: &str) -> samld_proto::AuditEvent {
    samld_proto::AuditEvent {
        seq,
        at: "2026-11-28T11:30:00Z".into(),
        kind: samld_proto::AuditKind::Handout,
        account: Some("production".into()),
        role_arn: Some("arn:aws:iam::012345678987:role/Admin".into()),
        via: Some(samld_proto::Handout::ExecEndpoint),
        source: Some(samld_proto::CredentialSource::Memory),
        error: None,
        process: Some(samld_proto::ProcessInfo {
            pid: 4711,
            name: process.into(),
            exe: None,
            command_line: None,
        }),
        ancestry: vec![],
    }
}

#[test]
fn audit_prints_json_lines_a_table_follows_and_asks_to_restart_an_older_daemon() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::Audit {
            events: vec![audit_event(1, "samlctl"), audit_event(2, "samlctl")],
            dropped: 5,
        }),
        Conn::new().answer(Response::Audit {
            events: vec![audit_event(1, "samlctl")],
            dropped: 0,
        }),
        Conn::new().answer(Response::Audit {
            events: vec![],
            dropped: 0,
        }),
        Conn::new()
            .recv()
            .send(Response::AuditFollowing {
                events: vec![],
                dropped: 0,
            })
            .send(Response::AuditEvent(audit_event(3, "samlctl"))),
        Conn::new().answer(Response::error(
            ErrorCode::BadRequest,
            "unknown variant `audit`",
        )),
    ]);
    let out = samlctl(&daemon.socket, &["audit", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, seq) in lines.iter().zip([1, 2]) {
        let event: samld_proto::AuditEvent = serde_json::from_str(line).unwrap();
        assert_eq!(event, audit_event(seq, "samlctl"));
    }
    assert!(text(&out.stderr).contains("5 older events were dropped"));

    let out = samlctl(
        &daemon.socket,
        &["audit", "production", "--since", "1h"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("TIME "), "{stdout}");
    assert!(
        stdout.contains("handout (exec-endpoint)  memory  samlctl (4711)"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("\nproduction: 1 hand-out in the last 1h: samlctl 1\n"),
        "{stdout}"
    );

    let out = samlctl(&daemon.socket, &["audit"], "");
    assert_eq!(text(&out.stdout), "No audit events in the kept record.\n");

    let out = samlctl(&daemon.socket, &["audit", "--follow", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let event: samld_proto::AuditEvent = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(event.seq, 3);
    assert!(text(&out.stderr).contains("samld closed the connection"));

    let out = samlctl(&daemon.socket, &["audit"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("does not know `audit`"), "{err}");
    assert!(err.contains("samlctl daemon stop"), "{err}");
    let requests = daemon.requests();
    assert_eq!(
        requests[1],
        Request::Audit {
            account: Some("production".into()),
            since_secs: Some(3600),
            follow: false,
        }
    );
    assert!(matches!(requests[3], Request::Audit { follow: true, .. }));
}

#[test]
fn env_tells_the_daemon_the_credentials_go_to_the_environment() {
    let daemon = FakeDaemon::serve(vec![Conn::new().answer(Response::error(
        ErrorCode::NotLoggedIn,
        "production is not logged in",
    ))]);
    let out = samlctl(&daemon.socket, &["env", "production"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "production".into(),
            role: None,
            interactive: false,
            via: Some(samld_proto::Handout::Env),
        }]
    );
}

#[test]
fn login_with_an_older_daemon_falls_back_to_the_api_login() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::error(
            ErrorCode::BadRequest,
            "unknown variant `browser_plan`",
        )),
        Conn::new().answer(Response::LoggedIn(outcome(true))),
    ]);
    let out = samlctl(&daemon.socket, &["login", "production"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let [_, Request::Login(req)] = &daemon.requests()[..] else {
        panic!("a plan, then a login")
    };
    assert!(matches!(req.intent, LoginIntent::Password(_)), "{req:?}");
}

#[test]
fn a_browser_account_opens_the_browser_and_says_so_when_there_is_none() {
    // login = "browser" makes the browser the way in, with no --browser on the command line.
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::BrowserPlan(plan(
            "browser",
            Some("/nonexistent/chromium"),
        ))),
        // First, would the live session do? It would not.
        Conn::new().answer(Response::error(
            ErrorCode::NeedsLogin,
            "no live JumpCloud session to reuse for production",
        )),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_samlctl"))
        .args(["login", "production"])
        .env("SAMLD_SOCKET", &daemon.socket)
        .env("HOME", dir.path())
        .env_remove("XDG_STATE_HOME")
        .env("SAMLD_NO_AUTOSTART", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "samlctl: the account's browser = \"/nonexistent/chromium\" is not an executable file; \
         production is as it was\n"
    );
    assert_eq!(
        daemon.requests(),
        [
            plan_request(),
            Request::Login(LoginRequest {
                account: "production".into(),
                intent: LoginIntent::ReuseOnly,
            })
        ],
        "only a reuse was asked for: no sign-in was sent"
    );
}

#[test]
fn browser_and_password_options_conflict() {
    let out = samlctl(
        Path::new("/nonexistent"),
        &["login", "production", "--browser", "--password-stdin"],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
