//! `samlctl import saml2aws` and `samlctl completions` with the real binary; no daemon needed.

use samld_tests::fixture::{TestEnv, stderr, stdout};

const SAML2AWS: &str = "\
[default]
url = https://sso.jumpcloud.com/saml2/acme-prod-aws-admin
username = road.runner@the-acme-corporation.com
provider = JumpCloud
mfa = Auto
aws_session_duration = 7200
aws_profile = saml
role_arn = arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO
region = us-east-2

[okta]
url = https://acme.okta.com/home/amazon_aws/0oa/272
username = rr@acme.com
provider = Okta
mfa = PUSH
";

#[test]
fn import_reads_the_default_saml2aws_file_and_reports() {
    let env = TestEnv::new(
        "[accounts.other]\nurl = \"https://sso.jumpcloud.com/saml2/o\"\nusername = \"o@example.com\"\n",
    );
    std::fs::write(env.path().join(".saml2aws"), SAML2AWS).unwrap();

    let out = env.samlctl(&["import", "saml2aws"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("Imported into"), "{report}");
    assert!(report.contains("  default\n"), "{report}");
    assert!(
        report.contains("[okta]: provider Okta is not supported"),
        "{report}"
    );
    assert!(
        report.contains("samlctl aws-config default --profile saml --write"),
        "{report}"
    );

    let config = samld_config::load(&env.config).expect("the result is a valid config");
    let account = config.account("default").unwrap();
    assert_eq!(
        account.url,
        "https://sso.jumpcloud.com/saml2/acme-prod-aws-admin"
    );
    assert_eq!(account.region.as_deref(), Some("us-east-2"));
    assert_eq!(account.session_duration.as_secs(), 7200);
    assert!(config.account("other").is_some());

    // Again: everything exists now, nothing is imported, and that is an error.
    let again = env.samlctl(&["import", "saml2aws"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stdout(&again).contains("already exists in the samld config; --force replaces it"));

    let forced = env.samlctl(&["import", "saml2aws", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(stdout(&forced).contains("default (replaced)"));
}

#[test]
fn import_of_a_missing_file_names_it() {
    let env = TestEnv::new("");
    let out = env.samlctl(&["import", "saml2aws", "/nonexistent/saml2aws"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/saml2aws"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_for_each_shell() {
    let env = TestEnv::new("");
    for (shell, marker) in [
        ("bash", "complete -F _samlctl"),
        ("zsh", "#compdef samlctl"),
        ("fish", "complete -c samlctl"),
    ] {
        let out = env.samlctl(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["exec", "aws-config", "completions"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = env.samlctl(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}
