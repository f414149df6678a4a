//! The daemon's life as a user sees it, with the real binaries: start, status, socket
//! permissions, a second daemon, live config reload, bad clients and SIGTERM.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use samld_proto::StatusReport;
use samld_tests::fixture::{TestEnv, stderr, stdout};

const TWO_ACCOUNTS: &str = r#"
[defaults]
region = "us-east-1"

[accounts.production]
url = "https://sso.jumpcloud.com/saml2/acme-prod"
username = "road.runner@example.com"
role = "arn:aws:iam::012345678987:role/Admin"

[accounts.staging]
url = "https://sso.jumpcloud.com/saml2/acme-staging"
username = "road.runner@example.com"
mfa = "push"
"#;

/// The bound on waiting for the daemon to notice a change (a config edit, a removed
/// socket): generous, because the wait ends on the change itself.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

fn status_json(env: &TestEnv) -> StatusReport {
    let out = env.samlctl(&["status", "--json"]);
    assert!(
        out.status.success(),
        "samlctl status failed: {}",
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("status --json is a StatusReport")
}

#[test]
fn status_lists_every_configured_account() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let daemon = env.start_daemon();
    let report = status_json(&env);
    let names: Vec<&str> = report.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["production", "staging"]);
    assert!(
        report
            .accounts
            .iter()
            .all(|a| a.state.as_str() == "logged-out")
    );
    assert_eq!(report.daemon.pid, daemon.pid());
    assert_eq!(report.daemon.config_path, env.config.display().to_string());

    let human = env.samlctl(&["status"]);
    assert!(human.status.success());
    let text = stdout(&human);
    assert!(
        text.contains("production") && text.contains("logged-out"),
        "{text}"
    );
}

#[test]
fn socket_is_private() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let _daemon = env.start_daemon();
    let socket_mode = std::fs::metadata(&env.socket).unwrap().permissions().mode();
    let dir_mode = std::fs::metadata(env.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(socket_mode & 0o777, 0o600);
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[test]
fn garbage_on_the_socket_does_not_disturb_it() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let daemon = env.start_daemon();
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        &[0, 0, 0, 3, b'{', b'{', b'{'][..],
        &[0x7f, 0xff, 0xff, 0xff][..],
    ] {
        let mut s = UnixStream::connect(&env.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(garbage);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let report = status_json(&env);
    assert_eq!(report.daemon.pid, daemon.pid());
    assert_eq!(report.accounts.len(), 2);
}

#[test]
fn a_second_daemon_on_the_same_socket_exits_non_zero() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let first = env.start_daemon();
    let (status, log) = match env.start_daemon_with(&[]) {
        Err(failure) => failure,
        Ok(_) => panic!("a second samld started on the same socket"),
    };
    assert!(!status.success());
    assert!(log.contains("already running"), "{log}");
    assert!(
        log.contains(&first.pid().to_string()),
        "names the other pid: {log}"
    );
    // The first one is untouched and still owns the socket.
    assert_eq!(status_json(&env).daemon.pid, first.pid());
}

#[test]
fn a_stale_socket_from_a_killed_daemon_is_replaced() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let first = env.start_daemon();
    first.signal(libc::SIGKILL);
    let _ = first.wait(Duration::from_secs(10));
    assert!(env.socket.exists(), "SIGKILL leaves the socket file behind");
    let second = env.start_daemon();
    assert_eq!(status_json(&env).daemon.pid, second.pid());
}

#[test]
fn config_changes_apply_live_and_bad_ones_are_reported() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let _daemon = env.start_daemon();

    // An editor that writes a temp file and renames it over the config.
    let added = format!(
        "{TWO_ACCOUNTS}\n[accounts.sandbox]\nurl = \"https://sso.jumpcloud.com/saml2/sb\"\nusername = \"a@example.com\"\n"
    );
    let tmp = env.config.with_extension("toml.swp");
    std::fs::write(&tmp, &added).unwrap();
    std::fs::rename(&tmp, &env.config).unwrap();
    let report = wait_for_status(&env, |r| r.accounts.len() == 3);
    assert_eq!(report.accounts[1].name, "sandbox");

    // A broken change keeps the last good config and says why.
    std::fs::write(
        &env.config,
        format!("{added}\n[accounts.broken]\nregon = \"x\"\n"),
    )
    .unwrap();
    let report = wait_for_status(&env, |r| r.daemon.config_error.is_some());
    let error = report.daemon.config_error.clone().unwrap();
    assert!(error.contains("regon"), "{error}");
    assert!(
        error.contains("region"),
        "suggests the nearest key: {error}"
    );
    assert_eq!(report.accounts.len(), 3);
    let human = stdout(&env.samlctl(&["status"]));
    assert!(
        human.contains("regon"),
        "status shows the config error: {human}"
    );

    // Fixing it clears the error.
    std::fs::write(&env.config, TWO_ACCOUNTS).unwrap();
    let report = wait_for_status(&env, |r| {
        r.daemon.config_error.is_none() && r.accounts.len() == 2
    });
    assert_eq!(report.accounts.len(), 2);
}

/// Polls status until `done` holds. The bound only stops a test that would hang: how fast a
/// reload lands is measured by the benchmarks (`scripts/bench.sh`), not asserted on a
/// machine that other builds may be loading.
fn wait_for_status(env: &TestEnv, done: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        let report = status_json(env);
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {EVENT_DEADLINE:?}; last status: {report:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_removes_the_socket_and_exits_zero() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let daemon = env.start_daemon();
    daemon.signal(libc::SIGTERM);
    let (status, log) = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(!env.socket.exists(), "socket left behind");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn samlctl_daemon_stop_and_status() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let daemon = env.start_daemon();
    let running = env.samlctl(&["daemon", "status"]);
    assert!(running.status.success(), "{}", stderr(&running));
    assert!(stdout(&running).contains(&daemon.pid().to_string()));
    let stop = env.samlctl(&["daemon", "stop"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let (status, _) = daemon.wait(Duration::from_secs(15));
    assert!(status.success());
    let stopped = env.samlctl(&["daemon", "status"]);
    assert_eq!(stopped.status.code(), Some(3), "{}", stderr(&stopped));
}

#[test]
fn helper_and_samlctl_explain_a_missing_daemon_and_an_unknown_account() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let out = env.helper(&["production"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let text = stderr(&out);
    assert!(text.contains("not running"), "{text}");
    assert!(text.contains("samld"), "says how to start it: {text}");

    let _daemon = env.start_daemon();
    let out = env.helper(&["nope"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let text = stderr(&out);
    assert!(
        text.contains("production") && text.contains("staging"),
        "{text}"
    );

    let out = env.helper(&["production"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("samlctl login production"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_check_validates_without_a_daemon() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let ok = env.samlctl(&["config", "check"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let bad = env.path().join("bad.toml");
    std::fs::write(&bad, "[accounts.x]\nurl = \"https://sso.jumpcloud.com/saml2/x\"\nusername = \"a@b.c\"\nsession_duration = \"soon\"\n").unwrap();
    let out = env.samlctl(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(text.contains("bad.toml:4"), "names file and line: {text}");
    assert!(text.contains("session_duration"), "{text}");
}

#[test]
fn a_removed_socket_is_re_created_by_the_same_daemon() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let daemon = env.start_daemon();
    std::fs::remove_file(&env.socket).unwrap();
    // Gone until the daemon notices; then the same process answers on a new socket.
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        let out = env.samlctl(&["status", "--json"]);
        if out.status.success() {
            let report: StatusReport = serde_json::from_str(&stdout(&out)).unwrap();
            assert_eq!(report.daemon.pid, daemon.pid());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "socket not re-created: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&env.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(daemon.log().contains("re-creating it"), "{}", daemon.log());
    // And on SIGTERM it removes the new file.
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait(Duration::from_secs(15));
    assert!(status.success());
    assert!(!env.socket.exists());
}

/// `config check` refuses plain http to a remote host for every URL key (the daemon would
/// send the password, assertion or keys in clear), names file, line and key, and accepts
/// loopback (as the fakes of this suite use).
#[test]
fn config_check_refuses_plain_http_except_to_loopback() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    for key in [
        "url",
        "jumpcloud_console_url",
        "sts_endpoint",
        "federation_url",
    ] {
        let file = env.path().join(format!("{key}.toml"));
        let url_line = if key == "url" {
            ""
        } else {
            "url = \"https://sso.jumpcloud.com/saml2/x\"\n"
        };
        let remote = format!(
            "[accounts.x]\nusername = \"a@b.c\"\n{url_line}{key} = \"http://sso.example.com/x\"\n"
        );
        std::fs::write(&file, &remote).unwrap();
        let out = env.samlctl(&["config", "check", "--config", file.to_str().unwrap()]);
        let text = stderr(&out);
        assert!(!out.status.success(), "{key}: accepted plain http: {text}");
        let line = if key == "url" { 3 } else { 4 };
        assert!(
            text.contains(&format!("{key}.toml:{line}:")),
            "names file and line: {text}"
        );
        assert!(text.contains(&format!("accounts.x.{key}")), "{text}");
        assert!(text.contains("use https://"), "{text}");

        std::fs::write(&file, remote.replace("sso.example.com", "127.0.0.1:9")).unwrap();
        let out = env.samlctl(&["config", "check", "--config", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{key}: loopback refused: {}",
            stderr(&out)
        );
    }
}

/// A `login_wait` too large for an `Instant` used to pass `config check` and then panic the
/// daemon at the first login; it is now refused with its bounds.
#[test]
fn config_check_enforces_duration_bounds() {
    let env = TestEnv::new(TWO_ACCOUNTS);
    let file = env.path().join("wait.toml");
    std::fs::write(
        &file,
        "[accounts.x]\nurl = \"https://sso.jumpcloud.com/saml2/x\"\nusername = \"a@b.c\"\n\
         login_wait = \"5124095576030431h\"\n",
    )
    .unwrap();
    let out = env.samlctl(&["config", "check", "--config", file.to_str().unwrap()]);
    let text = stderr(&out);
    assert!(!out.status.success(), "accepted: {text}");
    assert!(text.contains("wait.toml:4:"), "{text}");
    assert!(text.contains("login_wait: must be at most 1h"), "{text}");
}
