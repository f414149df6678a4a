//! `samld-helper` as the AWS CLI runs it: the real binary against a scripted fake daemon.

#[path = "../src/fake_daemon.rs"]
mod fake_daemon;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use fake_daemon::{Conn, FakeDaemon, hello};
use samld_proto::{Credentials, ErrorCode, Request, Response, Secret};

/// Runs the helper as an SDK does, without a terminal: in a session of its own, so that it
/// has no controlling terminal even when the tests run in one.
fn helper(socket: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_samld-helper"));
    cmd.args(args)
        .env("SAMLD_SOCKET", socket)
        // These tests script the daemon; a real one must not be started behind their back.
        .env("SAMLD_NO_AUTOSTART", "1")
        .stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run samld-helper")
}

fn creds(expiration: &str) -> Credentials {
    Credentials {
        account: "production".into(),
        role_arn: "arn:aws:iam::012345678987:role/Admin".into(),
        access_key_id: "ASIAEXAMPLEEXAMPLE01".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        session_token: Secret::new("FQoGZXIvYXdzEBYaDEXAMPLETOKEN"),
        expiration: expiration.into(),
        region: Some("us-east-2".into()),
    }
}

#[test]
fn success_prints_exactly_one_credential_process_document() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::Credentials(creds("2099-01-01T00:00:00Z"))),
    ]);
    let out = helper(&daemon.socket, &["production", "--role", "Admin"]);

    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let body = stdout.strip_suffix('\n').expect("ends with a newline");
    assert!(!body.contains('\n'), "one line, one document: {stdout:?}");
    // from_str refuses trailing data, so this also proves there is only one document.
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({
            "Version": 1,
            "AccessKeyId": "ASIAEXAMPLEEXAMPLE01",
            "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "SessionToken": "FQoGZXIvYXdzEBYaDEXAMPLETOKEN",
            "Expiration": "2099-01-01T00:00:00Z",
        })
    );
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "production".into(),
            role: Some("Admin".into()),
            interactive: false,
            via: None,
        }]
    );
}

#[test]
fn daemon_error_goes_to_stderr_and_nothing_to_stdout() {
    let msg = "production is not logged in; run: samlctl login production";
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::error(ErrorCode::NotLoggedIn, msg)),
    ]);
    let out = helper(&daemon.socket, &["production"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("samld: {msg}\n")
    );
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "production".into(),
            role: None,
            interactive: false,
            via: None,
        }]
    );
}

#[test]
fn no_daemon_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("samld.sock");
    let out = helper(&socket, &["production"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "samld: samld is not running (no daemon answers on {}); start it with `samld &` or \
             `systemctl --user start samld`\n",
            socket.display()
        )
    );
}

#[test]
fn version_mismatch_says_what_to_do() {
    let daemon = FakeDaemon::serve(vec![Conn::new().greeting(Some(hello(7))).recv()]);
    let out = helper(&daemon.socket, &["production"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "samld: samld 0.1.0-fake (pid 4242) is newer than this samld-helper {} (protocol \
             7, this samld-helper speaks 2): run the samld-helper installed with it (an older \
             one may come first on PATH)\n",
            samld_proto::CRATE_VERSION
        )
    );
    assert!(
        daemon.requests().is_empty(),
        "nothing is asked of a daemon we cannot understand"
    );
}

#[test]
fn expired_credentials_are_never_handed_out() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::Credentials(creds("2020-01-01T00:00:00Z"))),
    ]);
    let out = helper(&daemon.socket, &["production"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("samld: the credentials samld holds for production expired"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("EXAMPLEKEY") && !stderr.contains("TOKEN"),
        "no secrets on stderr"
    );
}

#[test]
fn bad_arguments_print_usage_and_exit_2_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("samld.sock");
    for args in [
        &[][..],
        &["production", "--profile", "x"],
        &["a", "b"],
        &["production", "--role"],
    ] {
        let out = helper(&socket, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("samld: "), "{stderr}");
        assert!(
            stderr.ends_with("usage: samld-helper ACCOUNT [--role ROLE]\n"),
            "{stderr}"
        );
    }
}

#[test]
fn help_and_version() {
    let socket = Path::new("/nonexistent/samld.sock");
    let out = helper(socket, &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("samld-helper {}\n", samld_proto::CRATE_VERSION)
    );
    let out = helper(socket, &["--help"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("credential_process = samld-helper production")
    );
}
