//! The shipped service definitions: the systemd units pass `systemd-analyze verify` with
//! the real binary, the launchd agent is a valid property list, and samld works under
//! socket activation exactly as systemd would run it.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use samld_client::lifecycle::units::{
    LAUNCHD_PLIST_TEMPLATE, SYSTEMD_SOCKET_UNIT, render_launchd_plist, render_systemd_service,
};
use samld_proto::{Response, read_frame};
use samld_tests::fixture::{TestEnv, bin_path, stderr};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    assert!(
        have("systemd-analyze"),
        "systemd-analyze is not installed, so the units cannot be verified (Debian: apt-get \
         install systemd; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let service = render_systemd_service(&bin_path("samld")).unwrap();
    std::fs::write(dir.path().join("samld.service"), service).unwrap();
    std::fs::write(dir.path().join("samld.socket"), SYSTEMD_SOCKET_UNIT).unwrap();

    let out = Command::new("systemd-analyze")
        .args(["--user", "verify", "samld.socket", "samld.service"])
        .current_dir(dir.path())
        // %t and the user manager's lookup paths come from here.
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    // verify exits 0 on unknown keys too, merely warning: any output is a finding.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );

    // And it does catch mistakes, so the pass above means something.
    let broken = render_systemd_service(Path::new("/nonexistent/samld")).unwrap();
    std::fs::write(dir.path().join("samld.service"), broken).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify", "samld.service"])
        .current_dir(dir.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("/nonexistent/samld"),
        "{}",
        stderr(&out)
    );
}

/// `plutil -lint` where it exists (macOS), else python3's plistlib.
fn check_plist(path: &Path) {
    let (tool, out) = if have("plutil") {
        (
            "plutil",
            Command::new("plutil").arg("-lint").arg(path).output(),
        )
    } else {
        (
            "python3",
            Command::new("python3")
                .args([
                    "-c",
                    "import plistlib,sys; plistlib.load(open(sys.argv[1],'rb'))",
                ])
                .arg(path)
                .output(),
        )
    };
    match out {
        Ok(out) => assert!(
            out.status.success(),
            "{tool}: {} is not a valid property list: {}",
            path.display(),
            stderr(&out)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!(
                "neither plutil nor python3 is installed, so the property list cannot be checked"
            )
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

#[test]
fn launchd_agent_is_a_valid_property_list() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.plist");
    std::fs::write(&template, LAUNCHD_PLIST_TEMPLATE).unwrap();
    check_plist(&template);
    let rendered = dir.path().join("rendered.plist");
    let text = render_launchd_plist(
        &bin_path("samld"),
        Path::new("/var/folders/x/T/samld-501/samld.sock"),
        Path::new("/Users/road & runner"),
        "/opt/homebrew/bin:/usr/bin:/bin",
    )
    .unwrap();
    std::fs::write(&rendered, text).unwrap();
    check_plist(&rendered);
}

/// Waits for `READY=1` on `notify`, failing if `child` exits first or 30 s pass.
fn wait_ready(notify: &UnixDatagram, child: &mut Child) {
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 256];
    loop {
        if let Ok(n) = notify.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).contains("READY=1")
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut log);
            }
            panic!("samld exited ({status}) before READY=1:\n{log}");
        }
        assert!(Instant::now() < deadline, "samld not ready within 30 s");
    }
}

/// Runs samld the way systemd does with socket activation: `listener` as fd 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` set to samld's own pid (by a `sh` that then execs it).
fn activate(env: &TestEnv, listener: &UnixListener, notify: &Path) -> Child {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0""#,
        bin_path("samld").to_str().unwrap(),
    ])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", env.path())
    .env("XDG_RUNTIME_DIR", env.path().join("run"))
    .env("XDG_CONFIG_HOME", env.path().join("config"))
    .env("SAMLD_CONFIG", &env.config)
    .env("SAMLD_LOG", "info")
    .env("NOTIFY_SOCKET", notify)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only descriptors.
    unsafe {
        cmd.pre_exec(move || {
            // fd 3 without close-on-exec, whatever number the listener has here.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn samld under sh")
}

#[test]
fn socket_activation_serves_the_passed_socket_and_leaves_it_in_place() {
    let env = TestEnv::new("");
    let dir = env.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // What samld.socket does: bind and listen before any samld exists.
    let listener = UnixListener::bind(&env.socket).unwrap();
    let notify_path = env.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let mut queued: Option<UnixStream> = None;
    for round in 0..2 {
        let mut child = activate(&env, &listener, &notify_path);
        wait_ready(&notify, &mut child);
        if let Some(mut early) = queued.take() {
            // Made while no samld ran; the new one serves it.
            early
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            match read_frame::<_, Response>(&mut early).unwrap() {
                Some(Response::Hello { pid, .. }) => assert_eq!(pid, child.id()),
                other => panic!("expected a hello, got {other:?}"),
            }
        }

        let out = env.samlctl(&["daemon", "status", "--json"]);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["pid"],
            child.id(),
            "round {round}: the activated samld answers"
        );

        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {log}");
        assert!(
            log.contains("samld ready on the socket systemd passed"),
            "round {round}: it used the passed socket rather than binding: {log}"
        );
        // The socket belongs to systemd: it stays, and still accepts connections, which
        // wait for the next activation.
        assert!(
            std::fs::symlink_metadata(&env.socket).is_ok(),
            "round {round}: samld removed systemd's socket"
        );
        queued = Some(UnixStream::connect(&env.socket).expect("the socket still listens"));
    }
}
