//! The life of a sign-in, end to end: what starts it, what ends it, and what it answers
//! while it lives. The real `samld`, `samlctl` and `samld-helper` run against the fake
//! JumpCloud and the fake STS; every "nothing was sent" is read at the fakes.
//!
//! - a login that fails changes nothing: a logged-out account stays logged out;
//! - an IdP session ends with the last account that uses it (a config change) and with
//!   `samlctl logout --all`, which says how many sessions it signed out;
//! - a role the last assertion does not offer is refused from memory, naming those it does.

mod support;

use std::time::{Duration, Instant};

use samld_proto::{AccountState, StatusReport};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_ROLE_ARN, FakeApp, FakeJumpCloud, FakeJumpCloudConfig, FakeUser,
    PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{failed, failed_silently, succeeded};
use support::World;

/// The JumpCloud user of every account here, approving every push on its first poll.
const EMAIL: &str = "lifecycle.user@example.com";
/// Its password.
const PASSWORD: &str = "pw-lifecycle-Qe4!Tz8#Wm3";
/// The bound on a config reload landing; it only stops a test that would hang.
const RELOAD_DEADLINE: Duration = Duration::from_secs(60);

fn push_user() -> FakeUser {
    FakeUser::new(EMAIL, PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::AcceptAfterPolls(1))
}

/// The `[defaults]` of every config here, pointing at the fakes.
fn defaults(jc: &FakeJumpCloud, sts: &FakeSts) -> String {
    format!(
        "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{}\"\n\
         sts_endpoint = \"{}\"\nmfa = \"push\"\n",
        jc.base_url(),
        sts.endpoint_url()
    )
}

/// One account of [`EMAIL`] at the fake's default app, with `extra` TOML lines.
fn account(jc: &FakeJumpCloud, name: &str, extra: &str) -> String {
    format!(
        "\n[accounts.{name}]\nurl = \"{}\"\nusername = \"{EMAIL}\"\n{extra}",
        jc.app_url(DEFAULT_APP)
    )
}

/// Fakes with [`push_user`] and the default app, and samld with the accounts `accounts`
/// writes.
fn world(accounts: impl FnOnce(&FakeJumpCloud) -> String) -> World {
    let jc = FakeJumpCloudConfig {
        users: vec![push_user()],
        apps: vec![FakeApp::new(
            DEFAULT_APP,
            &[(
                DEFAULT_ROLE_ARN,
                samld_tests::fake_jumpcloud::DEFAULT_PROVIDER_ARN,
            )],
        )],
        ..FakeJumpCloudConfig::default()
    };
    World::with_setup(
        jc,
        FakeStsConfig::default(),
        |jc, sts, _| defaults(jc, sts) + &accounts(jc),
        None,
    )
}

/// Replaces the config file the way an editor does (a temp file renamed over it), then
/// waits until samld's status shows `done`.
fn rewrite_config(w: &World, toml: &str, done: impl Fn(&StatusReport) -> bool) {
    let tmp = w.env.config.with_extension("toml.swp");
    std::fs::write(&tmp, toml).unwrap();
    std::fs::rename(&tmp, &w.env.config).unwrap();
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        let report = w.status();
        if report.daemon.config_error.is_none() && done(&report) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new config did not land within {RELOAD_DEADLINE:?}: {report:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `samlctl login ACCOUNT` with the password piped in (the push is approved).
fn log_in(w: &World, account: &str) {
    succeeded(
        &w.samlctl_stdin(
            &["login", account, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        ),
        &format!("login {account}"),
    );
}

/// What reached JumpCloud's sign-in and STS so far: password posts, pushes, STS calls.
fn sent(w: &World) -> (u64, u64, usize) {
    let stats = w.jc.stats();
    (stats.password_posts, stats.pushes_started, w.sts.calls())
}

#[test]
fn a_failed_browser_login_leaves_a_logged_out_account_logged_out() {
    // samld could sign `b` in by itself (password_command and push): only its logout stops
    // it, and the browser that cannot start must not lift that.
    let w = world(|jc| {
        account(
            jc,
            "b",
            &format!(
                "password_command = \"echo '{PASSWORD}'\"\nbrowser = \"/nonexistent/chrome\"\n"
            ),
        )
    });
    succeeded(&w.samlctl(&["login", "b"]), "login b");
    succeeded(&w.samlctl(&["logout", "b"]), "logout b");
    let before = sent(&w);

    let message = failed(
        &w.samlctl(&["login", "b", "--browser"]),
        "login b --browser",
    );
    assert!(message.trim_end().ends_with("b is as it was"), "{message}");
    assert_eq!(w.account_status("b").state, AccountState::LoggedOut);

    let message = failed_silently(&w.helper(&["b"]), "helper for the logged-out b");
    assert!(
        message.contains("b is not logged in; run: samlctl login b"),
        "{message}"
    );
    assert_eq!(sent(&w), before, "nothing reached JumpCloud or STS");
    assert_eq!(w.account_status("b").state, AccountState::LoggedOut);
}

#[test]
fn a_session_no_configured_account_uses_ends_with_the_config() {
    let w = world(|jc| account(jc, "prod", ""));
    log_in(&w, "prod");
    let head = defaults(&w.jc, &w.sts);
    rewrite_config(&w, &head, |r| r.accounts.is_empty());
    let said = succeeded(&w.samlctl(&["logout", "--all"]), "logout --all");
    assert!(said.contains("Nothing to log out"), "{said}");

    // The same user again, under another name: a password is needed again.
    let dev = head.clone() + &account(&w.jc, "dev", "");
    rewrite_config(&w, &dev, |r| r.accounts.len() == 1);
    let before = sent(&w);
    let message = failed_silently(&w.helper(&["dev"]), "helper for the new dev");
    assert!(
        message.contains("dev is not logged in; run: samlctl login dev"),
        "{message}"
    );
    assert_eq!(
        sent(&w),
        before,
        "nothing reached JumpCloud's sign-in or STS"
    );
}

#[test]
fn logout_all_signs_out_every_idp_session_and_says_how_many() {
    // `dev` was never used: logging out must not leave it a session to sign in with.
    let w = world(|jc| account(jc, "prod", "") + &account(jc, "dev", ""));
    log_in(&w, "prod");
    let said = succeeded(&w.samlctl(&["logout", "--all"]), "logout --all");
    assert!(said.contains("Logged out of prod."), "{said}");
    assert!(said.contains("Signed out of 1 IdP session."), "{said}");
    let before = sent(&w);
    let message = failed_silently(&w.helper(&["dev"]), "helper for dev");
    assert!(message.contains("samlctl login dev"), "{message}");
    assert_eq!(sent(&w), before);
}

#[test]
fn a_role_the_last_assertion_does_not_offer_is_refused_without_asking_jumpcloud() {
    let w = world(|jc| account(jc, "prod", ""));
    log_in(&w, "prod");
    let requests = w.jc.stats().requests;
    let calls = w.sts.calls();
    for _ in 0..20 {
        let message = failed_silently(
            &w.helper(&["prod", "--role", "NoSuchRole"]),
            "helper for a role not offered",
        );
        assert!(message.contains("NoSuchRole"), "{message}");
        assert!(
            message.contains(DEFAULT_ROLE_ARN),
            "names the roles on offer: {message}"
        );
    }
    assert_eq!(
        (w.jc.stats().requests, w.sts.calls()),
        (requests, calls),
        "answered from the last assertion"
    );
    // The role on offer is still served.
    let creds = succeeded(&w.helper(&["prod"]), "helper for prod");
    assert!(creds.contains("AccessKeyId"), "{creds}");
}
