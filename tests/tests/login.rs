//! Logging in as a user does it, with the real `samld`, `samlctl` and `samld-helper` against
//! a fake JumpCloud and a fake STS: password with TOTP (given or from `mfa_command`) or push,
//! every way a login fails, session reuse, roles, logout and status.
//!
//! Each test has a world of its own (fakes, temp dir, daemon), so they run in parallel.
//! The scenarios live in `support/flows.rs`, where `security_no_secret_escapes.rs` runs them
//! all again with a trace log to check that no secret leaks.

mod support;

use samld_proto::AccountState;
use samld_tests::fake_jumpcloud::DEFAULT_APP;
use samld_tests::fixture::{stderr, stdout};
use support::{CODE_LOGIN, MULTI_PASSWORD, ROLE_ARN, TOTP_PASSWORD, World, flows};

#[test]
fn password_and_totp_code_then_the_helper_prints_the_credentials() {
    flows::password_and_totp(&World::new());
}

#[test]
fn the_totp_code_can_come_from_mfa_command() {
    flows::totp_from_mfa_command(&World::new());
}

#[test]
fn a_push_login_streams_the_approve_prompt_and_succeeds() {
    flows::push_approved(&World::new());
}

#[test]
fn a_denied_and_an_expired_push_each_have_their_own_message() {
    flows::push_denied_and_expired(&World::new());
}

#[test]
fn a_wrong_password_is_reported_and_changes_nothing() {
    flows::wrong_password(&World::new());
}

#[test]
fn a_wrong_or_reused_totp_code_is_refused() {
    flows::wrong_and_reused_code(&World::new());
}

#[test]
fn a_second_login_reuses_the_session_without_password_or_mfa() {
    flows::session_reuse(&World::new());
}

#[test]
fn html_from_jumpcloud_jumpcloud_down_and_sts_refusals_are_named() {
    flows::faults_are_named(&World::new());
}

#[test]
fn roles_are_listed_and_either_can_be_fetched() {
    flows::roles(&World::new());
}

#[test]
fn logout_sticks() {
    flows::logout_sticks(&World::new());
}

#[test]
fn status_json_after_login_shows_expiry_refresh_and_session_times() {
    flows::status_after_login(&World::new());
}

#[test]
fn webauthn_is_refused_with_the_alternatives() {
    flows::webauthn_unsupported(&World::new());
}

#[test]
fn an_expired_jumpcloud_session_needs_the_password_again() {
    let w = World::new();
    let first = w.login("multi", MULTI_PASSWORD, None);
    assert!(first.status.success(), "{}", stderr(&first));
    w.jc.expire_all_sessions();

    let out = w.samlctl(&["login", "multi"]);
    assert!(
        !out.status.success(),
        "no session and no password: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));

    let before = w.jc.stats();
    let out = w.login("multi", MULTI_PASSWORD, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("session reused"), "{}", stdout(&out));
    assert_eq!(w.jc.stats().password_posts, before.password_posts + 1);
    let status = w.account_status("multi");
    assert_eq!(status.state, AccountState::Active, "{status:#?}");
    assert!(status.last_error.is_none(), "{status:#?}");
}

/// Without a terminal, without `--password-stdin` and without `password_command`, the error
/// names each way to give the password, the pipe included; JumpCloud sees no password post.
#[test]
fn a_login_without_a_terminal_names_password_stdin() {
    let w = World::new();
    let text = login_without_a_terminal(&w, "totp");
    assert!(
        text.contains("pipe the password to `samlctl login --password-stdin`"),
        "{text}"
    );
    assert!(text.contains("password_command"), "{text}");
    assert_eq!(w.jc.stats().password_posts, 0);
}

/// The same for the TOTP code, when the password comes from `password_command`.
#[test]
fn a_login_without_a_terminal_names_mfa_code_stdin() {
    let w = piped_world();
    let text = login_without_a_terminal(&w, "piped");
    assert!(
        text.contains("pipe the code to `samlctl login --mfa-code-stdin`"),
        "{text}"
    );
    assert!(text.contains("mfa_command"), "{text}");
    assert_eq!(w.jc.stats().totp_accepted, 0);
}

/// `samlctl login ACCOUNT` with no terminal and nothing on stdin, which fails: its error.
fn login_without_a_terminal(w: &World, account: &str) -> String {
    let out = w.samlctl(&["login", account]);
    assert!(!out.status.success(), "{}", stdout(&out));
    stderr(&out)
}

/// A world with one more account, `piped`: TOTP, its password from `password_command`.
fn piped_world() -> World {
    World::with_extra_config(|jc| {
        format!(
            "\n[accounts.piped]\nurl = \"{}\"\nusername = \"{}\"\nmfa = \"totp\"\n\
             password_command = \"echo '{TOTP_PASSWORD}'\"\n",
            jc.app_url(DEFAULT_APP),
            support::scenario_email("piped")
        )
    })
}

/// `--mfa-code-stdin` with `--password-stdin`: the password on the first line, the code on
/// the second, and neither on the command line where other users could read it.
#[test]
fn password_and_code_both_come_from_stdin() {
    let w = World::new();
    let before = w.jc.stats();
    let out = w.samlctl_stdin(
        &["login", "totp", "--password-stdin", "--mfa-code-stdin"],
        &format!("{TOTP_PASSWORD}\n{CODE_LOGIN}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(ROLE_ARN), "{}", stdout(&out));
    let after = w.jc.stats();
    assert_eq!(after.totp_accepted, before.totp_accepted + 1);
    assert_eq!(after.password_posts, before.password_posts + 2);
    flows::credential_document(&w, &w.helper(&["totp"]));
}

/// `--mfa-code-stdin` alone (the password comes from `password_command`): the first line is
/// the code.
#[test]
fn the_code_alone_comes_from_stdin() {
    let w = piped_world();
    let before = w.jc.stats();
    let out = w.samlctl_stdin(
        &["login", "piped", "--mfa-code-stdin"],
        &format!("{CODE_LOGIN}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(w.jc.stats().totp_accepted, before.totp_accepted + 1);
}

/// A missing second line is named, with what to do; nothing reaches JumpCloud's MFA.
#[test]
fn a_missing_code_line_is_named() {
    let w = World::new();
    let out = w.samlctl_stdin(
        &["login", "totp", "--password-stdin", "--mfa-code-stdin"],
        &format!("{TOTP_PASSWORD}\n"),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let text = stderr(&out);
    assert!(text.contains("--mfa-code-stdin"), "{text}");
    assert!(text.contains("second line"), "{text}");
    assert_eq!(w.jc.stats().totp_accepted, 0);
    assert_eq!(w.jc.stats().totp_rejected, 0);
}

/// `--help` warns that `--mfa-code` is visible to other users and names the alternatives.
#[test]
fn help_warns_that_mfa_code_is_visible() {
    let w = World::new();
    let out = w.samlctl(&["login", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("--mfa-code-stdin"), "{help}");
    assert!(help.contains("visible to other local users"), "{help}");
    assert!(help.contains("prompt"), "{help}");
}

/// `samlctl password forget` through the real binaries. This suite has no keyring stand-in
/// (samld talks to the real Secret Service; scripts/test-keyring.sh and daemon/tests/server.rs
/// cover a keyring that works), so samld gets a session bus that does not exist and must say
/// so; an unknown account is named.
#[cfg(target_os = "linux")]
#[test]
fn password_forget_explains_an_unreachable_keyring() {
    let w = World::with_setup_and_env(
        support::fake_jumpcloud_config(),
        Default::default(),
        support::config_toml,
        None,
        &[(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent-samld-test/bus",
        )],
    );
    let out = w.samlctl(&["password", "forget", "totp"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stderr(&out);
    assert!(
        text.contains("cannot remove the saved password of totp"),
        "{text}"
    );
    assert!(text.contains("D-Bus session bus"), "{text}");

    let out = w.samlctl(&["password", "forget", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("unknown account `nope`"),
        "{}",
        stderr(&out)
    );
}

/// The README's troubleshooting table: a deleted socket file is re-created by the same
/// daemon, and the logged-in session survives it (no second login, the same credentials).
#[test]
fn a_deleted_socket_is_re_created_with_the_session_intact() {
    let w = World::new();
    let out = w.login("multi", MULTI_PASSWORD, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = flows::credential_document(&w, &w.helper(&["multi"])).access_key_id;
    let pid = w.status().daemon.pid;
    let (jc, sts) = (w.jc.stats(), w.sts.calls());

    std::fs::remove_file(&w.env.socket).unwrap();
    // Clients fail until the daemon notices; then it answers on a new socket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !w.samlctl(&["status", "--json"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the socket was not re-created: {}",
            w.daemon_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(w.status().daemon.pid, pid, "the same daemon");
    let status = w.account_status("multi");
    assert_eq!(status.state, AccountState::Active, "{status:#?}");
    assert!(
        status.session.is_some(),
        "the session is intact: {status:#?}"
    );
    let again = flows::credential_document(&w, &w.helper(&["multi"])).access_key_id;
    assert_eq!(again, key, "the same credentials, from memory");
    assert_eq!(w.jc.stats(), jc, "no JumpCloud trip");
    assert_eq!(w.sts.calls(), sts, "no STS call");
}
