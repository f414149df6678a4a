//! `--save-password` and `samlctl password forget` through the real binaries against a real
//! Secret Service (gnome-keyring). Run by `scripts/test-keyring.sh` inside its throwaway
//! D-Bus session (the `unlocked` scenario); the test refuses to run anywhere else, so that it
//! never writes into a desktop's real keyring.

mod support;

use samld_tests::fixture::{stderr, stdout};
use support::{MULTI_EMAIL, MULTI_PASSWORD, World, secret_tool_lookup};

#[test]
#[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
fn unlocked_saved_password_is_forgotten_on_request() {
    let scenario = std::env::var("SAMLD_TEST_SECRET_SERVICE").unwrap_or_default();
    assert_eq!(
        scenario, "unlocked",
        "this test needs the `unlocked` session of scripts/test-keyring.sh; run that script"
    );
    let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS")
        .expect("scripts/test-keyring.sh runs this inside a D-Bus session");
    let w = World::with_setup_and_env(
        support::fake_jumpcloud_config(),
        Default::default(),
        support::config_toml,
        None,
        &[("DBUS_SESSION_BUS_ADDRESS", &bus)],
    );

    let out = w.samlctl_stdin(
        &["login", "multi", "--password-stdin", "--save-password"],
        &format!("{MULTI_PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Saved the password in the OS keyring")
            || stdout(&out).contains("Saved the password in the OS keyring"),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        secret_tool_lookup("multi", MULTI_EMAIL).as_deref(),
        Some(MULTI_PASSWORD)
    );

    // logout keeps it; password forget removes it.
    assert!(w.samlctl(&["logout", "multi"]).status.success());
    assert_eq!(
        secret_tool_lookup("multi", MULTI_EMAIL).as_deref(),
        Some(MULTI_PASSWORD)
    );
    let out = w.samlctl(&["password", "forget", "multi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Removed the saved password of multi"),
        "{}",
        stdout(&out)
    );
    assert_eq!(secret_tool_lookup("multi", MULTI_EMAIL), None);

    let out = w.samlctl(&["password", "forget", "multi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("No password was saved for multi"),
        "{}",
        stdout(&out)
    );
}
