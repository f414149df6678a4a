//! Autostart with the real binaries: a client that finds no daemon starts exactly one, even
//! when ten start at once; `SAMLD_NO_AUTOSTART=1` and an enabled systemd socket prevent it.
//!
//! The fixture sets `SAMLD_NO_AUTOSTART=1` for every command; these tests remove it per
//! command. Every test stops what it autostarted in a drop guard, even when it fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use samld_tests::fixture::{TestEnv, stderr, stdout};

const ONE_ACCOUNT: &str = r#"
[accounts.production]
url = "https://sso.jumpcloud.com/saml2/acme-prod"
username = "road.runner@example.com"
role = "arn:aws:iam::012345678987:role/Admin"
"#;

/// Where an autostarted daemon of `env` logs (HOME is the env's temp dir).
fn log_path(env: &TestEnv) -> PathBuf {
    if cfg!(target_os = "macos") {
        env.path().join("Library/Logs/samld.log")
    } else {
        env.path().join(".local/state/samld/samld.log")
    }
}

fn log(env: &TestEnv) -> String {
    std::fs::read_to_string(log_path(env)).unwrap_or_default()
}

/// The pids in the "samld ready" lines of the log: one line per daemon that came up.
fn ready_pids(env: &TestEnv) -> Vec<u32> {
    log(env)
        .lines()
        .filter(|l| l.contains("samld ready"))
        .map(|l| {
            let pid = l.split("pid=").nth(1).expect("ready line has a pid");
            pid.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect()
}

/// A command of `env` with autostart allowed.
fn autostarting(env: &TestEnv, bin: &str) -> Command {
    let mut cmd = env.command(bin);
    cmd.env_remove("SAMLD_NO_AUTOSTART");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run")
}

/// The running daemon's pid, from `samlctl daemon status --json`; `None` when none runs.
fn daemon_pid(env: &TestEnv) -> Option<u32> {
    let out = env.samlctl(&["daemon", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    v["pid"].as_u64().map(|p| p as u32)
}

/// Stops whatever the test autostarted, even when an assertion failed first.
struct StopOnDrop<'a>(&'a TestEnv);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let out = self.0.samlctl(&["daemon", "stop"]);
        if !out.status.success() {
            // Last resort, so that no daemon outlives the test run.
            for pid in ready_pids(self.0) {
                // SAFETY: kill only sends a signal.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
    }
}

#[test]
fn one_helper_call_starts_the_daemon() {
    let env = TestEnv::new(ONE_ACCOUNT);
    let _stop = StopOnDrop(&env);
    assert_eq!(daemon_pid(&env), None);

    let out = run({
        let mut c = autostarting(&env, "samld-helper");
        c.arg("production");
        c
    });
    // The daemon answered: the account simply is not logged in yet.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("samlctl login production"),
        "{}",
        stderr(&out)
    );

    let pids = ready_pids(&env);
    assert_eq!(pids.len(), 1, "log:\n{}", log(&env));
    assert_eq!(daemon_pid(&env), Some(pids[0]));
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(env.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&log_path(&env)), 0o600);

    // The next call finds it running and starts nothing.
    let out = run({
        let mut c = autostarting(&env, "samld-helper");
        c.arg("production");
        c
    });
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(ready_pids(&env).len(), 1);
}

#[test]
fn ten_helpers_at_once_start_exactly_one_daemon() {
    let env = TestEnv::new(ONE_ACCOUNT);
    let _stop = StopOnDrop(&env);

    let children: Vec<_> = (0..10)
        .map(|_| {
            autostarting(&env, "samld-helper")
                .arg("production")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn samld-helper")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "every helper reached the daemon: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("samlctl login production"),
            "{}",
            stderr(&out)
        );
    }

    let pids = ready_pids(&env);
    assert_eq!(pids.len(), 1, "one daemon came up; log:\n{}", log(&env));
    assert!(
        !log(&env).contains("already running"),
        "no daemon lost a race: {}",
        log(&env)
    );
    assert_eq!(daemon_pid(&env), Some(pids[0]));
}

#[test]
fn samlctl_autostarts_and_daemon_start_reports_the_daemon() {
    let env = TestEnv::new(ONE_ACCOUNT);
    let _stop = StopOnDrop(&env);

    let out = run({
        let mut c = autostarting(&env, "samlctl");
        c.args(["daemon", "start"]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = daemon_pid(&env).expect("running");
    assert_eq!(
        stdout(&out),
        format!(
            "Started samld (pid {pid}) on {}; it logs to {}.\n",
            env.socket.display(),
            log_path(&env).display()
        )
    );

    // `daemon start` again, even with autostart off: it is running already.
    let out = env.samlctl(&["daemon", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "samld {} is running (pid {pid}) on {}.\n",
            samld_proto::CRATE_VERSION,
            env.socket.display()
        )
    );

    let out = env.samlctl(&["daemon", "stop"]);
    assert_eq!(stdout(&out), format!("samld (pid {pid}) stopped.\n"));
    assert_eq!(daemon_pid(&env), None, "`daemon stop` never autostarts");

    // `samlctl status` is an ordinary command: it starts the daemon again.
    let out = run({
        let mut c = autostarting(&env, "samlctl");
        c.args(["status", "--json"]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let report: samld_proto::StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(report.daemon.pid, pid);
    assert_eq!(ready_pids(&env), [pid, report.daemon.pid]);
}

#[test]
fn no_autostart_gives_the_not_running_message() {
    let env = TestEnv::new(ONE_ACCOUNT);
    let _stop = StopOnDrop(&env);
    // The fixture's commands carry SAMLD_NO_AUTOSTART=1.
    let out = env.helper(&["production"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        format!(
            "samld: samld is not running (no daemon answers on {}); start it with `samld &` \
             or `systemctl --user start samld`\n",
            env.socket.display()
        )
    );
    let out = env.samlctl(&["status"]);
    assert!(
        stderr(&out).contains("samld is not running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(daemon_pid(&env), None);
    assert!(!log_path(&env).exists(), "nothing was started");
}

#[test]
fn a_daemon_that_cannot_start_is_reported_with_its_error_and_log() {
    let env = TestEnv::new(ONE_ACCOUNT);
    let _stop = StopOnDrop(&env);
    // A regular file where the socket should be: connecting is refused, so the helper
    // starts samld, which refuses to replace the file.
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    std::fs::write(&env.socket, "not a socket").unwrap();

    let out = run({
        let mut c = autostarting(&env, "samld-helper");
        c.arg("production");
        c
    });
    assert_eq!(out.status.code(), Some(3));
    let text = stderr(&out);
    assert!(
        text.starts_with("samld: samld exited (exit status: 1) before it was ready: samld: "),
        "{text}"
    );
    assert!(text.contains("is not a socket"), "{text}");
    assert!(
        text.contains(&format!("(log: {})", log_path(&env).display())),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&env.socket).unwrap(),
        "not a socket"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn an_enabled_systemd_socket_is_left_to_systemd() {
    let env = TestEnv::new(ONE_ACCOUNT);
    let _stop = StopOnDrop(&env);
    // The fixture's socket is $XDG_RUNTIME_DIR/samld/samld.sock, systemd's path; enabling
    // samld.socket for this "user" makes it systemd's to serve.
    let units = env.path().join("config/systemd/user");
    let wants = units.join("sockets.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::fs::write(
        units.join("samld.socket"),
        samld_client::lifecycle::units::SYSTEMD_SOCKET_UNIT,
    )
    .unwrap();
    std::os::unix::fs::symlink(units.join("samld.socket"), wants.join("samld.socket")).unwrap();

    let out = run({
        let mut c = autostarting(&env, "samld-helper");
        c.arg("production");
        c
    });
    assert_eq!(out.status.code(), Some(3));
    let text = stderr(&out);
    assert!(
        text.contains("which systemd's samld.socket owns, so it was not started here"),
        "{text}"
    );
    assert_eq!(daemon_pid(&env), None);
    assert!(!log_path(&env).exists(), "nothing was started");
}
