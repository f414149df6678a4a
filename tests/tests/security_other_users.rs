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

/// Changes the owner of `path` and everything under it to `uid:uid`.
fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid);
        }
    }
}

/// Starts `program ARGS` as uid 65534 with `env`.
fn spawn_as_nobody(
    program: &Path,
    args: &[&str],
    env: &std::process::Command,
) -> std::process::Child {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.spawn().expect("setpriv")
}

fn proc_owner(pid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid()
}

/// The README: samld is non-dumpable and has no core dumps. Seen from outside, as an
/// attacker running as the same user would: the kernel makes a non-dumpable process's
/// /proc/PID files root's, which keeps that user from reading its memory or attaching a
/// debugger. The daemon runs as uid 65534, since for a daemon run as root the files are
/// root's anyway.
#[test]
fn the_running_daemon_is_not_dumpable_and_has_no_core_dumps() {
    if let Err(why) = can_switch_user() {
        panic!(
            "cannot test the daemon's hardening from another uid: {why}. Run this test as root \
             with setpriv installed (.ci/run does)"
        );
    }
    let env = TestEnv::new(CONFIG);
    chown_tree(env.path(), 65534);
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |name: &str| {
        let to = bin_dir.path().join(name);
        std::fs::copy(samld_tests::fixture::bin_path(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let (samld, samlctl) = (copy("samld"), copy("samlctl"));

    // The control: an ordinary process of that user has its /proc files owned by it.
    let mut plain = spawn_as_nobody(Path::new("/bin/sleep"), &["60"], &env.command("samld"));
    // Until setpriv has switched users and exec'd sleep, the process is setpriv's (and
    // non-dumpable while its credentials change): wait for the exec.
    let comm = format!("/proc/{}/comm", plain.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&comm).unwrap().trim_end() != "sleep" {
        assert!(std::time::Instant::now() < deadline, "sleep never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let plain_owner = proc_owner(plain.id());
    plain.kill().unwrap();
    plain.wait().unwrap();
    assert_eq!(
        plain_owner, 65534,
        "an ordinary process's /proc files are its user's"
    );

    let mut daemon = spawn_as_nobody(&samld, &[], &env.command("samld"));
    // Ready when its socket answers `samlctl status`, run as the same user.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut status = spawn_as_nobody(&samlctl, &["status"], &env.command("samlctl"));
        if status.wait().unwrap().success() {
            break;
        }
        if let Some(exit) = daemon.try_wait().unwrap() {
            let mut log = String::new();
            use std::io::Read;
            let _ = daemon.stderr.take().unwrap().read_to_string(&mut log);
            panic!("samld exited ({exit}): {log}");
        }
        assert!(std::time::Instant::now() < deadline, "samld did not answer");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = daemon.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534\t")),
        "samld runs as 65534: {status}"
    );
    assert_eq!(
        proc_owner(pid),
        0,
        "samld's /proc files belong to root: it is not dumpable"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields[4..6],
        ["0", "0"],
        "no core dumps, soft and hard: {core}"
    );

    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(daemon.wait().unwrap().success());
}
