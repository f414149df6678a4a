use super::*;

#[test]
fn memory_store_keeps_one_password_per_account_and_username() {
    let store = InMemoryStore::new();
    assert_eq!(store.get("prod", "alice").unwrap(), None);
    store.set("prod", "alice", &Secret::new("one")).unwrap();
    store.set("staging", "alice", &Secret::new("two")).unwrap();
    store.set("prod", "bob", &Secret::new("three")).unwrap();
    assert_eq!(
        store.get("prod", "alice").unwrap(),
        Some(Secret::new("one"))
    );
    assert_eq!(
        store.get("staging", "alice").unwrap(),
        Some(Secret::new("two"))
    );
    assert_eq!(
        store.get("prod", "bob").unwrap(),
        Some(Secret::new("three"))
    );

    store.set("prod", "alice", &Secret::new("new")).unwrap();
    assert_eq!(
        store.get("prod", "alice").unwrap(),
        Some(Secret::new("new"))
    );
    assert_eq!(store.len(), 3);

    store.delete("prod", "alice").unwrap();
    store.delete("prod", "alice").unwrap();
    assert_eq!(store.get("prod", "alice").unwrap(), None);
    assert_eq!(
        store.get("staging", "alice").unwrap(),
        Some(Secret::new("two"))
    );
}

#[test]
fn memory_store_can_play_a_broken_keyring() {
    let store = InMemoryStore::new();
    store.set("prod", "alice", &Secret::new("pw")).unwrap();
    store.fail_with(Some(KeyringError::Locked));
    assert_eq!(store.get("prod", "alice"), Err(KeyringError::Locked));
    assert_eq!(
        store.set("prod", "alice", &Secret::new("x")),
        Err(KeyringError::Locked)
    );
    store.fail_with(None);
    assert_eq!(store.get("prod", "alice").unwrap(), Some(Secret::new("pw")));
}

#[tokio::test]
async fn run_calls_the_store_off_the_async_threads() {
    let memory = Arc::new(InMemoryStore::new());
    let store: Arc<dyn PasswordStore> = memory.clone();
    run(&store, |s| s.set("prod", "alice", &Secret::new("pw")))
        .await
        .unwrap();
    let got = run(&store, |s| s.get("prod", "alice")).await.unwrap();
    assert_eq!(got, Some(Secret::new("pw")));

    memory.fail_with(Some(KeyringError::Locked));
    assert_eq!(
        run(&store, |s| s.get("prod", "alice")).await,
        Err(KeyringError::Locked)
    );
    let panicked: Result<(), _> = run(&store, |_| panic!("store bug")).await;
    assert!(
        matches!(panicked, Err(KeyringError::Failed { .. })),
        "{panicked:?}"
    );
}

#[test]
fn remove_says_whether_there_was_a_password() {
    let store = InMemoryStore::new();
    store.set("prod", "alice", &Secret::new("pw")).unwrap();
    store
        .set("staging", "alice", &Secret::new("other"))
        .unwrap();
    assert_eq!(store.remove("prod", "alice"), Ok(true));
    assert_eq!(store.get("prod", "alice").unwrap(), None);
    assert_eq!(store.remove("prod", "alice"), Ok(false));
    assert_eq!(
        store.get("staging", "alice").unwrap(),
        Some(Secret::new("other"))
    );

    // A store that only knows get/set/delete gets the same answer from the default.
    struct Plain(InMemoryStore);
    impl PasswordStore for Plain {
        fn get(&self, a: &str, u: &str) -> Result<Option<Secret>, KeyringError> {
            self.0.get(a, u)
        }
        fn set(&self, a: &str, u: &str, p: &Secret) -> Result<(), KeyringError> {
            self.0.set(a, u, p)
        }
        fn delete(&self, a: &str, u: &str) -> Result<(), KeyringError> {
            self.0.delete(a, u)
        }
    }
    let plain = Plain(InMemoryStore::new());
    plain.set("prod", "alice", &Secret::new("pw")).unwrap();
    assert_eq!(plain.remove("prod", "alice"), Ok(true));
    assert_eq!(plain.remove("prod", "alice"), Ok(false));
    assert!(plain.0.is_empty());
}

#[tokio::test]
async fn forget_removes_only_that_account_and_explains_failures() {
    let memory = Arc::new(InMemoryStore::new());
    let store: Arc<dyn PasswordStore> = memory.clone();
    memory.set("prod", "alice", &Secret::new("pw")).unwrap();
    memory.set("prod", "bob", &Secret::new("pw2")).unwrap();
    assert_eq!(forget(Some(&store), "prod", "alice").await, Ok(true));
    assert_eq!(forget(Some(&store), "prod", "alice").await, Ok(false));
    assert_eq!(memory.len(), 1, "bob's password stays");

    memory.fail_with(Some(KeyringError::Locked));
    let e = forget(Some(&store), "prod", "bob").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyringError);
    assert!(
        e.message
            .contains("cannot remove the saved password of prod"),
        "{e}"
    );
    assert!(e.message.contains("locked"), "{e}");
    assert_eq!(memory.len(), 1);

    let e = forget(None, "prod", "bob").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyringError);
    assert!(e.message.contains("no OS keyring"), "{e}");
}

#[test]
fn every_unavailable_keyring_says_what_to_do_instead() {
    for e in [
        KeyringError::NoSessionBus { detail: "d".into() },
        KeyringError::NoSecretService { detail: "d".into() },
        KeyringError::NoDefaultCollection,
        KeyringError::Locked,
        KeyringError::Unsupported,
    ] {
        let text = e.to_string();
        assert!(text.contains("password_command"), "{text}");
    }
    assert!(
        KeyringError::NotText
            .to_string()
            .contains("samlctl login ACCOUNT --save-password")
    );
}

#[test]
fn text_passwords_only() {
    assert_eq!(
        secret_from_bytes(b"p\xc3\xa4ss".to_vec()).unwrap().expose(),
        "päss"
    );
    assert_eq!(
        secret_from_bytes(vec![0xff, 0xfe]),
        Err(KeyringError::NotText)
    );
}

#[test]
fn os_store_outside_linux_and_macos_refuses_politely() {
    assert_eq!(
        UnsupportedStore.get("prod", "alice"),
        Err(KeyringError::Unsupported)
    );
}

/// Runs one of the `probe_*` helpers below in a child process with `env`, and returns what
/// it printed after `RESULT: `. A child, because the bus address is read from the
/// environment, which a test must not change under its siblings' feet.
#[cfg(target_os = "linux")]
fn probe_in_child(op: &str, env: &[(&str, &str)], remove: &[&str]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "keyring::tests::probe_child",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SAMLD_KEYRING_PROBE", op);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("RESULT: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no RESULT line in {stdout}"))
        .to_owned()
}

/// The child side of [`probe_in_child`]; does nothing when run on its own.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by other tests in a child process"]
fn probe_child() {
    let Ok(op) = std::env::var("SAMLD_KEYRING_PROBE") else {
        return;
    };
    let store = SecretServiceStore::new(Duration::ZERO);
    let result = match op.as_str() {
        "get" => store.get("prod", "alice").map(|_| ()),
        "set" => store.set("prod", "alice", &Secret::new("pw")),
        "delete" => store.delete("prod", "alice"),
        other => panic!("unknown probe {other}"),
    };
    match result {
        Ok(()) => println!("RESULT: ok"),
        Err(e) => println!("RESULT: {e:?} | {e}"),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn no_session_bus_is_a_clear_error_not_a_panic() {
    for op in ["get", "set", "delete"] {
        let got = probe_in_child(
            op,
            &[(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/samld-test/bus",
            )],
            &[],
        );
        assert!(got.starts_with("NoSessionBus"), "{op}: {got}");
        assert!(got.contains("no D-Bus session bus"), "{got}");
        assert!(got.contains("/nonexistent/samld-test/bus"), "{got}");
        assert!(got.contains("password_command"), "{got}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn unset_bus_address_is_a_clear_error_too() {
    // Without an address or a $XDG_RUNTIME_DIR/bus socket, libdbus would try X11 autolaunch,
    // which the vendored build leaves out.
    let got = probe_in_child(
        "get",
        &[],
        &["DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "DISPLAY"],
    );
    assert!(got.starts_with("NoSessionBus"), "{got}");
    assert!(got.contains("password_command"), "{got}");
}

/// Tests against a real Secret Service, in the throwaway D-Bus sessions that
/// `scripts/test-keyring.sh` sets up. Each refuses to run unless that script said which
/// session it is in, so that `cargo test -- --ignored` never writes into a desktop's real
/// keyring.
#[cfg(target_os = "linux")]
mod real {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    fn require(scenario: &str) {
        let got = std::env::var("SAMLD_TEST_SECRET_SERVICE").unwrap_or_default();
        assert_eq!(
            got, scenario,
            "this test needs the `{scenario}` session of scripts/test-keyring.sh \
             (SAMLD_TEST_SECRET_SERVICE={scenario}); run that script"
        );
    }

    fn store() -> SecretServiceStore {
        SecretServiceStore::new(Duration::from_secs(3))
    }

    #[test]
    #[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
    fn unlocked_round_trip() {
        require("unlocked");
        let s = store();
        assert_eq!(s.get("prod", "alice@example.com").unwrap(), None);
        s.set("prod", "alice@example.com", &Secret::new("first pässword"))
            .unwrap();
        s.set("staging", "alice@example.com", &Secret::new("other"))
            .unwrap();
        assert_eq!(
            s.get("prod", "alice@example.com").unwrap(),
            Some(Secret::new("first pässword"))
        );
        // Replacing updates the item rather than adding a second one.
        s.set("prod", "alice@example.com", &Secret::new("second"))
            .unwrap();
        assert_eq!(
            s.get("prod", "alice@example.com").unwrap(),
            Some(Secret::new("second"))
        );
        s.delete("prod", "alice@example.com").unwrap();
        assert_eq!(s.get("prod", "alice@example.com").unwrap(), None);
        s.delete("prod", "alice@example.com").unwrap();
        assert_eq!(
            s.get("staging", "alice@example.com").unwrap(),
            Some(Secret::new("other"))
        );
        assert_eq!(s.get("prod", "bob@example.com").unwrap(), None);
    }

    #[test]
    #[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
    fn unlocked_remove_says_whether_there_was_a_password() {
        require("unlocked");
        let s = store();
        s.set("forget", "erin@example.com", &Secret::new("pw"))
            .unwrap();
        s.set("forget2", "erin@example.com", &Secret::new("kept"))
            .unwrap();
        assert_eq!(s.remove("forget", "erin@example.com"), Ok(true));
        assert_eq!(s.get("forget", "erin@example.com").unwrap(), None);
        assert_eq!(s.remove("forget", "erin@example.com"), Ok(false));
        assert_eq!(
            s.get("forget2", "erin@example.com").unwrap(),
            Some(Secret::new("kept"))
        );
        s.delete("forget2", "erin@example.com").unwrap();
    }

    #[test]
    #[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
    fn unlocked_items_are_what_secret_tool_sees() {
        require("unlocked");
        let s = store();
        s.set("interop", "carol@example.com", &Secret::new("from samld"))
            .unwrap();
        let out = Command::new("secret-tool")
            .args(["lookup", "service", "samld", "account", "interop"])
            .args(["username", "carol@example.com"])
            .output()
            .expect("secret-tool (libsecret-tools) runs");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from samld");

        // And a password stored by hand is one samld finds.
        let mut child = Command::new("secret-tool")
            .args(["store", "--label=by hand", "service", "samld"])
            .args(["account", "interop2", "username", "carol@example.com"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"typed by hand")
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            s.get("interop2", "carol@example.com").unwrap(),
            Some(Secret::new("typed by hand"))
        );
        s.delete("interop", "carol@example.com").unwrap();
        s.delete("interop2", "carol@example.com").unwrap();
    }

    #[test]
    #[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
    fn locked_keyring_fails_in_bounded_time_with_the_reason() {
        require("locked");
        let started = Instant::now();
        let err = store()
            .set("prod", "alice@example.com", &Secret::new("pw"))
            .unwrap_err();
        assert_eq!(err, KeyringError::Locked);
        assert!(err.to_string().contains("locked"), "{err}");
        // The script saved this one before locking the keyring.
        let err = store().get("locked", "dave@example.com").unwrap_err();
        assert_eq!(err, KeyringError::Locked);
        // Attributes stay searchable while locked, so a missing password is still no error.
        assert_eq!(store().get("nobody", "erin@example.com"), Ok(None));
        // Two prompts of at most 3 s each, plus D-Bus round trips.
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    #[test]
    #[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
    fn no_default_collection_is_explained() {
        require("no-collection");
        let s = store();
        assert_eq!(s.get("prod", "alice@example.com").unwrap(), None);
        let err = s
            .set("prod", "alice@example.com", &Secret::new("pw"))
            .unwrap_err();
        assert_eq!(err, KeyringError::NoDefaultCollection);
    }

    #[test]
    #[ignore = "needs a Secret Service: scripts/test-keyring.sh"]
    fn bus_without_secret_service_is_explained() {
        require("absent");
        let err = store().get("prod", "alice@example.com").unwrap_err();
        assert!(
            matches!(err, KeyringError::NoSecretService { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("no Secret Service is running"), "{text}");
        assert!(text.contains("gnome-keyring"), "{text}");
        assert!(text.contains("password_command"), "{text}");
    }
}
