//! `samlctl config check`: validates a file with no daemon (and no usable socket) around.

#![allow(clippy::disallowed_methods)] // fixtures are written directly (see client/clippy.toml)

use std::process::{Command, Output, Stdio};

fn config_check(path: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_samlctl"))
        .args(["config", "check", "--config"])
        .arg(path)
        // A socket that cannot exist: the check must not need one.
        .env("SAMLD_SOCKET", "/nonexistent/samld.sock")
        .stdin(Stdio::null())
        .output()
        .expect("run samlctl")
}

#[test]
fn a_valid_file_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        r#"
[accounts.production]
provider = "jumpcloud"
url = "https://sso.jumpcloud.com/saml2/acme-prod-aws-admin"
username = "road.runner@the-acme-corporation.com"
role = "arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO"
region = "us-east-2"
"#,
    )
    .unwrap();
    let out = config_check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}: valid (1 account: production)\n", path.display())
    );
}

#[test]
fn an_invalid_file_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[accounts.production]\nprovider = \"jumpcloud\"\nurl = 42\n",
    )
    .unwrap();
    let out = config_check(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("samlctl: {}:3:", path.display())),
        "error names file, line and column: {stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_check(&dir.path().join("absent.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("samlctl: ")
    );
}
