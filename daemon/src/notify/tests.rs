use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A title and body that would break out of any quoting a shell or AppleScript literal
/// could give them.
const TITLE: &str = r#"samld: it's "prod"; $(touch INJECTED) `touch INJECTED`"#;
const BODY: &str = "-n ' \" \\ & <b>bold</b> $HOME\nline two";

/// Writes an executable script `name` into `dir` that records its arguments, NUL-terminated,
/// in `dir/argv`, and the bus address it was given in `dir/bus-address`.
fn fake_notifier(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             printf '%s' \"$DBUS_SESSION_BUS_ADDRESS\" > '{d}/bus-address'\n\
             for a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{d}/argv'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn recorded_argv(dir: &Path) -> Vec<String> {
    let bytes = std::fs::read(dir.join("argv")).expect("the notifier ran");
    let text = String::from_utf8(bytes).unwrap();
    text.split_terminator('\0').map(str::to_owned).collect()
}

fn wait(handle: Option<JoinHandle<Outcome>>) -> Outcome {
    handle.expect("a notifier was started").join().unwrap()
}

#[test]
fn notify_send_gets_title_and_body_as_separate_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_notifier(dir.path(), "notify-send");
    let notifier = NotifyProgram::new(fake.as_os_str(), Flavor::NotifySend);
    let outcome = wait(notifier.spawn(TITLE, BODY));
    assert!(
        matches!(outcome, Outcome::Exited(s) if s.success()),
        "{outcome:?}"
    );
    assert_eq!(
        recorded_argv(dir.path()),
        [
            "--app-name=samld",
            "--icon=dialog-password",
            "--",
            TITLE,
            "-n ' \" \\ &amp; &lt;b&gt;bold&lt;/b&gt; $HOME\nline two",
        ]
    );
    assert!(!dir.path().join("INJECTED").exists());
}

#[test]
fn osascript_gets_the_text_as_run_handler_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_notifier(dir.path(), "osascript");
    let notifier = NotifyProgram::new(fake.as_os_str(), Flavor::Osascript);
    let outcome = wait(notifier.spawn(TITLE, BODY));
    assert!(
        matches!(outcome, Outcome::Exited(s) if s.success()),
        "{outcome:?}"
    );
    let argv = recorded_argv(dir.path());
    assert_eq!(
        argv,
        [
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
            TITLE,
            // A leading dash would read as an option to osascript's getopt.
            &format!(" {BODY}"),
        ]
    );
}

#[test]
fn a_hung_notifier_is_killed_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify-send");
    std::fs::write(&path, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut notifier = NotifyProgram::new(path.as_os_str(), Flavor::NotifySend);
    notifier.deadline = Duration::from_millis(200);
    let started = Instant::now();
    let outcome = wait(notifier.spawn("t", "b"));
    assert!(matches!(outcome, Outcome::Killed), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_missing_notifier_is_only_a_failed_outcome() {
    let notifier = NotifyProgram::new("/nonexistent/samld-test/notify-send", Flavor::NotifySend);
    let outcome = wait(notifier.spawn("t", "b"));
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{outcome:?}"
    );
}

/// Runs [`probe_child`] in a child process with `env`, so that `notify_user`'s own reading
/// of PATH and the bus address is what is tested.
#[cfg(target_os = "linux")]
fn run_probe(env: &[(&str, &OsStr)], remove: &[&str]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "notify::tests::probe_child",
        "--include-ignored",
        "--nocapture",
    ])
    .env("SAMLD_NOTIFY_PROBE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child side of [`run_probe`]; does nothing when run on its own.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by other tests in a child process"]
fn probe_child() {
    if std::env::var_os("SAMLD_NOTIFY_PROBE").is_none() {
        return;
    }
    if let Some(handle) = spawn_notification(TITLE, BODY) {
        handle.join().unwrap();
    }
}

#[cfg(target_os = "linux")]
fn path_with(dir: &Path) -> OsString {
    let mut path = OsString::from(dir.as_os_str());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

#[cfg(target_os = "linux")]
#[test]
fn notify_send_is_found_on_path_when_a_session_bus_exists() {
    let dir = tempfile::tempdir().unwrap();
    fake_notifier(dir.path(), "notify-send");
    run_probe(
        &[
            ("PATH", &path_with(dir.path())),
            ("DBUS_SESSION_BUS_ADDRESS", OsStr::new("unix:path=/x/bus")),
        ],
        &[],
    );
    let argv = recorded_argv(dir.path());
    assert_eq!(argv[3..], [TITLE.to_owned(), escape_markup(BODY)]);
}

#[cfg(target_os = "linux")]
#[test]
fn the_bus_socket_in_the_runtime_dir_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    fake_notifier(dir.path(), "notify-send");
    // Only its existence is checked; the fake notifier never connects.
    std::fs::write(dir.path().join("bus"), "").unwrap();
    run_probe(
        &[
            ("PATH", &path_with(dir.path())),
            ("XDG_RUNTIME_DIR", dir.path().as_os_str()),
        ],
        &["DBUS_SESSION_BUS_ADDRESS"],
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("bus-address")).unwrap(),
        format!("unix:path={}", dir.path().join("bus").display())
    );
    assert_eq!(recorded_argv(dir.path())[3], TITLE);
}

#[cfg(target_os = "linux")]
#[test]
fn without_a_session_bus_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    fake_notifier(dir.path(), "notify-send");
    run_probe(
        &[
            ("PATH", &path_with(dir.path())),
            ("XDG_RUNTIME_DIR", dir.path().as_os_str()),
        ],
        &["DBUS_SESSION_BUS_ADDRESS"],
    );
    assert!(!dir.path().join("argv").exists());
}
