//! samld through the Rust SDK's own `credential_process` provider: aws-config runs the real
//! `samld-helper` (with `sh -c`, as it does for a profile's `credential_process`), and an
//! aws-sdk-sts client signs GetCallerIdentity with what it got. The STS that answers says
//! whose keys those were, which proves the whole chain: fake JumpCloud → samld → STS →
//! samld's memory → samld-helper → aws-config → a signed request.
//!
//! Against the fake STS always; against moto in the ignored test that scripts/interop.sh
//! runs after starting `moto_server` (it sets `SAMLD_MOTO_URL`).

use std::path::Path;

use aws_config::credential_process::CredentialProcessProvider;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::DisplayErrorContext;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use samld_tests::fake_jumpcloud::{
    DEFAULT_PASSWORD, DEFAULT_ROLE_ARN, FakeJumpCloud, FakeJumpCloudConfig, FakeUser,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{TestEnv, bin_path, stderr, stdout};
use tokio::runtime::Runtime;

const ACCOUNT: &str = "interop";

/// Blocking fixture calls run on the test thread while the fakes are served by the
/// runtime's workers, so nothing blocks inside async code.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn config_toml(jumpcloud: &FakeJumpCloud, email: &str, sts_url: &str) -> String {
    format!(
        "[accounts.{ACCOUNT}]\n\
         url = \"{}\"\n\
         username = \"{email}\"\n\
         mfa = \"none\"\n\
         region = \"us-east-1\"\n\
         jumpcloud_console_url = \"{}\"\n\
         sts_endpoint = \"{sts_url}\"\n",
        jumpcloud.app_url(samld_tests::fake_jumpcloud::DEFAULT_APP),
        jumpcloud.base_url(),
    )
}

fn login(env: &TestEnv) {
    let out = env.samlctl_with_stdin(
        &["login", ACCOUNT, "--password-stdin"],
        &format!("{DEFAULT_PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "samlctl login failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// One word for `sh -c`.
fn sh_quote(path: &Path) -> String {
    let s = path.to_str().expect("UTF-8 path");
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The provider a profile with `credential_process = samld-helper interop` gets, pointed at
/// this test's daemon. aws-config runs the line with `sh -c`, so the socket can be given as
/// a variable assignment in front of the command.
fn helper_provider(env: &TestEnv) -> CredentialProcessProvider {
    CredentialProcessProvider::new(format!(
        "SAMLD_SOCKET={} {} {ACCOUNT}",
        sh_quote(&env.socket),
        sh_quote(&bin_path("samld-helper"))
    ))
}

/// An STS client whose credentials come from `provider`; a new client has a new identity
/// cache, so it runs the helper afresh.
fn sts_client(endpoint: &str, provider: CredentialProcessProvider) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .credentials_provider(provider)
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

/// The caller's ARN, or the SDK's whole error chain as text.
fn caller_arn(rt: &Runtime, client: &aws_sdk_sts::Client) -> Result<String, String> {
    rt.block_on(client.get_caller_identity().send())
        .map(|me| me.arn().unwrap_or_default().to_owned())
        .map_err(|e| DisplayErrorContext(&e).to_string())
}

#[test]
fn aws_config_signs_with_the_credentials_samld_got_from_sts() {
    let rt = runtime();
    let jumpcloud = rt.block_on(FakeJumpCloud::start(FakeJumpCloudConfig::default()));
    let sts = rt.block_on(FakeSts::start(FakeStsConfig::default()));
    let email = samld_tests::fake_jumpcloud::DEFAULT_EMAIL;
    let env = TestEnv::new(&config_toml(&jumpcloud, email, &sts.endpoint_url()));
    let _daemon = env.start_daemon();
    login(&env);
    let issued = sts.issued();
    assert_eq!(issued.len(), 1, "the login assumed the role once");

    let client = sts_client(&sts.endpoint_url(), helper_provider(&env));
    let arn = caller_arn(&rt, &client).expect("GetCallerIdentity through credential_process");

    assert_eq!(arn, issued[0].assumed_role_arn);
    assert_eq!(
        arn,
        format!("arn:aws:sts::123456789012:assumed-role/Developer/{email}")
    );
    assert_eq!(
        sts.caller_identity_keys(),
        [issued[0].access_key_id.clone()],
        "the request was signed with exactly the key samld handed out"
    );
    assert_eq!(
        sts.issued_count(),
        1,
        "the helper answered from samld's memory, without a new AssumeRoleWithSAML"
    );

    // After a logout the SDK fails before sending anything, and its error carries the
    // helper's advice.
    let logout = env.samlctl(&["logout", ACCOUNT]);
    assert!(logout.status.success(), "{}", stderr(&logout));
    let fresh = sts_client(&sts.endpoint_url(), helper_provider(&env));
    let error = caller_arn(&rt, &fresh).expect_err("no credentials after logout");
    assert!(
        error.contains(&format!("samlctl login {ACCOUNT}")),
        "the helper's message reaches the SDK's error: {error}"
    );
    assert_eq!(
        sts.caller_identity_keys().len(),
        1,
        "nothing was sent without credentials"
    );
}

/// Needs moto: `scripts/interop.sh` (run by `scripts/test.sh` and CI) starts `moto_server`
/// and runs this with `--ignored`, and fails if it did not run.
#[test]
#[ignore = "needs moto: scripts/interop.sh runs it with SAMLD_MOTO_URL set"]
fn aws_config_signs_with_the_credentials_samld_got_from_moto() {
    let moto = samld_tests::fixture::moto_url();
    let rt = runtime();
    // moto answers `user/moto` for keys it did not issue and takes the session name from
    // the assertion, so a session name unique to this run ties the ARN to this login.
    let email = format!("interop-{:08x}@example.com", fastrand::u32(..));
    let jumpcloud = rt.block_on(FakeJumpCloud::start(FakeJumpCloudConfig::with_user(
        FakeUser::new(&email, DEFAULT_PASSWORD),
    )));
    let env = TestEnv::new(&config_toml(&jumpcloud, &email, &moto));
    let _daemon = env.start_daemon();
    login(&env);

    let client = sts_client(&moto, helper_provider(&env));
    let arn =
        caller_arn(&rt, &client).expect("GetCallerIdentity at moto through credential_process");

    let role = DEFAULT_ROLE_ARN.rsplit('/').next().expect("a role name");
    assert_eq!(
        arn,
        format!("arn:aws:sts::123456789012:assumed-role/{role}/{email}")
    );
}
