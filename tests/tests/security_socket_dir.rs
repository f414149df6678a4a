//! Without `XDG_RUNTIME_DIR` (cron, `su`, some ssh setups) the socket lives in
//! `$TMPDIR/samld-UID`, a name any local user can create first. samld and autostart must
//! refuse a directory planted there (a symlink, or one owned by someone else) instead of
//! tightening and serving from it.
//!
//! The second test plants as another user, which needs root (CI runs as root) and `setpriv`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use samld_tests::fixture::{TestEnv, failed, stderr};

const CONFIG: &str = r#"
[accounts.production]
url = "https://sso.jumpcloud.com/saml2/acme-prod"
username = "road.runner@example.com"
"#;

const NOBODY: &str = "65534";

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// An env whose processes find their socket the way cron jobs do: no `SAMLD_SOCKET`, no
/// `XDG_RUNTIME_DIR`, `TMPDIR` pointing at a temp dir of this env. Returns it with the
/// fallback directory's path.
fn env_without_runtime_dir() -> (TestEnv, PathBuf) {
    let mut env = TestEnv::new(CONFIG);
    let tmp = env.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    env.removed_env = vec!["SAMLD_SOCKET".into(), "XDG_RUNTIME_DIR".into()];
    env.extra_env
        .push(("TMPDIR".into(), tmp.to_string_lossy().into_owned()));
    let fallback = tmp.join(format!("samld-{}", uid()));
    (env, fallback)
}

/// Starts samld and expects it to refuse; returns its log.
fn samld_refuses(env: &TestEnv, what: &str) -> String {
    match env.start_daemon_with(&[]) {
        Ok(daemon) => panic!(
            "samld started and served its socket from {what}; log:\n{}",
            daemon.log()
        ),
        Err((status, log)) => {
            assert!(!status.success(), "{log}");
            log
        }
    }
}

#[test]
fn a_symlink_planted_at_the_temp_dir_fallback_is_refused() {
    let (mut env, fallback) = env_without_runtime_dir();
    // Someone else's directory, readable by all, that the planted link points at.
    let victim = env.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&victim, &fallback).unwrap();

    let log = samld_refuses(&env, "a planted symlink");
    let shown = fallback.display().to_string();
    assert!(
        log.contains(&shown) && log.contains("is a symlink"),
        "the error names the directory and what is wrong with it:\n{log}"
    );
    assert!(
        log.contains("XDG_RUNTIME_DIR") && log.contains("SAMLD_SOCKET"),
        "the error says what to do:\n{log}"
    );
    assert_eq!(mode(&victim), 0o755, "the link's target was not chmodded");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing was created in the link's target"
    );

    // Autostart (a client finding no daemon) has the same rule.
    env.removed_env.push("SAMLD_NO_AUTOSTART".into());
    let out = env.command("samlctl").arg("status").output().unwrap();
    let err = failed(&out, "samlctl status with a planted socket directory");
    assert!(
        err.contains(&shown) && err.contains("is a symlink"),
        "{err}"
    );
    assert_eq!(mode(&victim), 0o755, "autostart did not chmod the target");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "autostart created nothing (lock, log, notify socket) in the link's target"
    );

    // With the link gone the fallback works, and is private.
    std::fs::remove_file(&fallback).unwrap();
    env.removed_env.pop();
    let daemon = env.start_daemon();
    assert_eq!(mode(&fallback), 0o700);
    assert!(fallback.join("samld.sock").exists(), "{}", daemon.log());
}

/// Runs `sh -c script` as nobody.
fn as_nobody(script: &str) {
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .args(["sh", "-c", script])
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        stderr(&out)
    );
}

#[test]
fn a_directory_planted_by_another_user_is_refused() {
    assert!(
        uid() == 0 && Path::new("/usr/bin/setpriv").exists(),
        "this test plants the directory as another user: run it as root with setpriv \
         (util-linux) installed, as CI does"
    );
    let (env, fallback) = env_without_runtime_dir();
    // The temp dir as /tmp is: anyone may create in it, nobody may remove others' entries.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = fallback.parent().unwrap();
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();

    // nobody makes the directory first, open to everyone.
    as_nobody(&format!("mkdir -m 0777 '{}'", fallback.display()));
    let log = samld_refuses(&env, "another user's directory");
    assert!(
        log.contains(&fallback.display().to_string())
            && log.contains("belongs to uid 65534, not to you"),
        "{log}"
    );
    assert!(log.contains("XDG_RUNTIME_DIR"), "says what to do: {log}");
    assert_eq!(
        mode(&fallback),
        0o777,
        "another user's directory was left alone"
    );

    // nobody plants a link to a directory of ours instead (a link they own, to a target we
    // own: following the link would make everything look right).
    let ours = env.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();
    as_nobody(&format!(
        "rmdir '{dir}' && ln -s '{ours}' '{dir}'",
        dir = fallback.display(),
        ours = ours.display()
    ));
    let log = samld_refuses(&env, "another user's symlink");
    assert!(log.contains("is a symlink"), "{log}");
    assert_eq!(mode(&ours), 0o755);
    assert_eq!(std::fs::read_dir(&ours).unwrap().count(), 0);
}
