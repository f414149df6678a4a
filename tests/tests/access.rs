//! Another user on the same machine cannot use the daemon, even when file permissions would
//! let them reach the socket: the daemon checks every connection's peer uid.
//!
//! Needs root (to run a client as uid 65534 with `setpriv`, from util-linux); anywhere else
//! it fails and says why, rather than pass without testing (CI runs as root and installs
//! util-linux).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use samld_tests::fixture::{TestEnv, stderr, stdout};

const CONFIG: &str = r#"
[accounts.production]
url = "https://sso.jumpcloud.com/saml2/acme-prod"
username = "road.runner@example.com"
"#;

const NOBODY: &str = "65534";

fn can_switch_user() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root, so no client can be started as another user".into());
    }
    if !Path::new("/usr/bin/setpriv").exists() {
        return Err("setpriv (util-linux) is not installed".into());
    }
    Ok(())
}

/// Opens every directory on the way to the socket, and the socket itself, to everyone: the
/// file system no longer protects it, so only the daemon's own check is left.
fn open_up(env: &TestEnv) {
    let mut dir = env.socket.parent();
    while let Some(d) = dir {
        if !d.starts_with(env.path()) {
            break;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        dir = d.parent();
    }
    std::fs::set_permissions(&env.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
}

const PROBE_ENV: &str = "SAMLD_ACCESS_PROBE";

/// The probe's side: connect, send a status request, report how many bytes came back.
fn probe(socket: &str) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let request = br#"{"type":"status"}"#;
    let mut frame = (request.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(request);
    let _ = stream.write_all(&frame);
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    println!("probe received {} bytes", got.len());
}

#[test]
fn another_user_is_refused_by_the_peer_uid_check() {
    if let Ok(socket) = std::env::var(PROBE_ENV) {
        probe(&socket);
        return;
    }
    if let Err(why) = can_switch_user() {
        panic!(
            "cannot test the peer-uid check: {why}. Run this test as root with setpriv \
             installed (.ci/run does)"
        );
    }
    let env = TestEnv::new(CONFIG);
    let daemon = env.start_daemon();
    open_up(&env);
    // The checkout may sit where uid 65534 cannot reach (under /root): run copies.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: &Path| {
        let to = bin_dir.path().join(from.file_name().unwrap());
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let me = copy(&std::env::current_exe().unwrap());
    let helper = copy(&samld_tests::fixture::bin_path("samld-helper"));

    // A raw client as nobody: it can connect (the file system lets it), but the daemon
    // closes the connection without a word, not even its hello. The probe is this very test
    // binary, run again as nobody.
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(&me)
        .args([
            "--exact",
            "another_user_is_refused_by_the_peer_uid_check",
            "--nocapture",
        ])
        .env(PROBE_ENV, &env.socket)
        .output()
        .expect("run the probe as nobody");
    let text = stdout(&out);
    assert!(
        text.contains("probe received 0 bytes"),
        "the daemon must send nothing to another user: {text}{}",
        stderr(&out)
    );

    // The real helper as nobody fails too, and prints nothing on stdout.
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(&helper)
        .arg("production")
        .env("SAMLD_SOCKET", &env.socket)
        .env("SAMLD_NO_AUTOSTART", "1")
        .env("HOME", "/nonexistent")
        .output()
        .expect("run the helper as nobody");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let text = stderr(&out);
    assert!(text.contains("uid 0"), "names the other user: {text}");

    // The daemon logged the refusal and still serves its own user.
    let log = daemon.log();
    assert!(
        log.contains("refused a connection from another user"),
        "{log}"
    );
    assert!(log.contains("uid=65534"), "{log}");
    let status = env.samlctl(&["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
}
