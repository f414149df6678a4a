//! `samlctl login --save-password` through the real daemon into a real Secret Service
//! (gnome-keyring), and the saved password logging in again unattended after a restart.
//!
//! Ignored by `cargo test`: it runs in the `unlocked` session of `scripts/test-keyring.sh`
//! (a throwaway D-Bus session bus and keyring), which CI runs, and refuses to run anywhere
//! else so that it never writes into a desktop's real keyring.

mod support;

use std::process::Command;

use samld_tests::fixture::succeeded;
use support::flows::credential_document;
use support::{PUSH_EMAIL, PUSH_PASSWORD, World, secret_tool_lookup};

/// Fails unless `scripts/test-keyring.sh` runs this test in its `scenario` session; returns
/// that session's bus address.
fn session_bus(scenario: &str) -> String {
    let got = std::env::var("SAMLD_TEST_SECRET_SERVICE").unwrap_or_default();
    assert_eq!(
        got, scenario,
        "this test needs the `{scenario}` session of scripts/test-keyring.sh \
         (SAMLD_TEST_SECRET_SERVICE={scenario}); run that script"
    );
    std::env::var("DBUS_SESSION_BUS_ADDRESS").expect("a D-Bus session bus")
}

#[test]
#[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
fn unlocked_save_password_through_the_daemon_and_log_in_with_it_after_a_restart() {
    let bus = session_bus("unlocked");
    let mut w = World::with_env(&[("DBUS_SESSION_BUS_ADDRESS", &bus)]);
    assert_eq!(
        secret_tool_lookup("push", PUSH_EMAIL),
        None,
        "a fresh keyring"
    );

    let out = w.samlctl_stdin(
        &["login", "push", "--password-stdin", "--save-password"],
        &format!("{PUSH_PASSWORD}\n"),
    );
    succeeded(&out, "samlctl login --save-password");
    assert_eq!(
        secret_tool_lookup("push", PUSH_EMAIL).as_deref(),
        Some(PUSH_PASSWORD),
        "the password JumpCloud accepted is in the keyring"
    );

    // A new daemon knows nothing; the helper's request makes it log in by itself with the
    // saved password and the push (no typing needed).
    w.restart_daemon();
    let before = w.jc.stats();
    credential_document(&w, &w.helper(&["push"]));
    let after = w.jc.stats();
    assert_eq!(after.password_posts, before.password_posts + 1, "{after:?}");
    assert_eq!(after.failed_passwords, 0, "{after:?}");
    assert_eq!(
        after.pushes_accepted,
        before.pushes_accepted + 1,
        "{after:?}"
    );

    let cleared = Command::new("secret-tool")
        .args(["clear", "service", "samld", "account", "push"])
        .status()
        .unwrap();
    assert!(cleared.success());
}
