//! After the person refuses a push, no helper sends another one, terminal or not: only the
//! person's `samlctl login` does. The real `samld`, `samlctl` and `samld-helper` run
//! against the fake JumpCloud and the fake STS, and every count is read at the fake.
//!
//! A terminal lets `samld-helper` ask the person for what only they can type (a password, a
//! code). It is not the person deciding to send a new push after refusing one: with
//! `password_command` and push there is nothing to ask, and a helper that signed in from a
//! terminal would send the password and a push each time an AWS tool ran (issue 19, point
//! 1: 8 helpers under `script` took the pushes from 2 to 15).

mod support;

use std::process::{Command, Output};

use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, FakeJumpCloud, FakeJumpCloudConfig, FakeJumpCloudStats, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{failed_silently, stdout, succeeded};
use support::World;
use support::flows::credential_document;

/// The push user; the phone denies until the test says otherwise.
const EMAIL: &str = "refusing.user@example.com";
/// Its password, which `password_command` prints: samld can sign in with no typing.
const PASSWORD: &str = "pw-refusing-Qm4!Tz8#Lw2";
/// How many helpers an AWS tool in a terminal runs in the test (as in the issue).
const TERMINAL_HELPERS: usize = 8;

/// One account, `prod`, with `password_command` and push; the phone denies every push.
fn world() -> World {
    let user = FakeUser::new(EMAIL, PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::DenyAfterPolls(1));
    World::with_setup(
        FakeJumpCloudConfig::with_user(user),
        FakeStsConfig::default(),
        |jc: &FakeJumpCloud, sts: &FakeSts, _closed_port: u16| {
            format!(
                "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{console}\"\n\
                 sts_endpoint = \"{sts}\"\n\
                 \n[accounts.prod]\nurl = \"{app}\"\nusername = \"{EMAIL}\"\nmfa = \"push\"\n\
                 password_command = \"echo '{PASSWORD}'\"\n",
                console = jc.base_url(),
                sts = sts.endpoint_url(),
                app = jc.app_url(DEFAULT_APP),
            )
        },
        None,
    )
}

/// `samld-helper ARGS` on a pseudo-terminal of its own, as an AWS tool in a terminal runs
/// it: `script` makes the terminal the helper's controlling one, in the foreground. What
/// the helper writes to the terminal (its stderr) comes out on `script`'s stdout.
fn helper_on_terminal(w: &World, args: &[&str]) -> Output {
    let helper = w.env.command("samld-helper");
    let mut line = helper.get_program().to_string_lossy().into_owned();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (key, value) in helper.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd.output()
        .expect("run samld-helper under script (util-linux)")
}

/// The counts that reach the person: password posts and pushes.
fn reached(s: &FakeJumpCloudStats) -> (u64, u64) {
    (s.password_posts, s.pushes_started)
}

/// Runs [`TERMINAL_HELPERS`] helpers on terminals, then one without: none of them sends a
/// password or a push, and each names `samlctl login prod`.
fn helpers_reach_nobody(w: &World) {
    let before = reached(&w.jc.stats());
    for n in 1..=TERMINAL_HELPERS {
        let out = helper_on_terminal(w, &["prod"]);
        let screen = stdout(&out);
        assert!(
            !out.status.success(),
            "terminal helper {n} should fail: {screen}"
        );
        assert!(
            screen.contains("samlctl login prod"),
            "terminal helper {n} names the command to run: {screen}"
        );
        assert!(
            !screen.contains("AccessKeyId"),
            "terminal helper {n} printed credentials: {screen}"
        );
        let now = w.jc.stats();
        assert_eq!(
            reached(&now),
            before,
            "terminal helper {n} reached the person again: {now:?}"
        );
    }
    // The refusal still stands for a helper without a terminal: it waits for the person.
    let text = failed_silently(&w.helper(&["prod"]), "a helper after the terminal ones");
    assert!(text.contains("samlctl login prod"), "{text}");
    assert!(!text.contains("signs in again at"), "{text}");
    assert_eq!(reached(&w.jc.stats()), before);
}

/// The person logs in: exactly one password post and one push more, approved.
fn person_logs_in(w: &World) {
    let before = reached(&w.jc.stats());
    w.jc.set_push_behavior(EMAIL, PushBehavior::AcceptAfterPolls(1));
    succeeded(
        &w.samlctl(&["login", "prod"]),
        "samlctl login after the denial",
    );
    let after = w.jc.stats();
    assert_eq!(reached(&after), (before.0 + 1, before.1 + 1), "{after:?}");
    credential_document(w, &w.helper(&["prod"]));
}

#[test]
fn after_a_denied_push_helpers_on_terminals_send_nothing_until_the_person_logs_in() {
    let w = world();
    // A helper without a terminal: samld signs in by itself, and the person denies the push.
    let denied = failed_silently(&w.helper(&["prod"]), "the helper whose push is denied");
    assert!(denied.contains("denied"), "{denied}");
    let after_denial = w.jc.stats();
    assert_eq!(reached(&after_denial), (1, 1), "{after_denial:?}");
    helpers_reach_nobody(&w);
    person_logs_in(&w);
}

/// The person's own `samlctl login` meets their refusal: it stands for the helpers too.
#[test]
fn a_push_denied_at_the_persons_own_login_stops_every_helper_too() {
    let w = world();
    let out = w.samlctl(&["login", "prod"]);
    let denied = samld_tests::fixture::failed(&out, "samlctl login whose push is denied");
    assert!(denied.contains("denied"), "{denied}");
    assert_eq!(reached(&w.jc.stats()), (1, 1));
    helpers_reach_nobody(&w);
    person_logs_in(&w);
}
