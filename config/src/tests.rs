//! Whole-file tests: parsing, defaults, and every kind of error with its exact position.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const PATH: &str = "/home/a/.config/samld/config.toml";

fn parse_ok(text: &str) -> Config {
    match parse(text, Path::new(PATH)) {
        Ok(config) => config,
        Err(error) => panic!("unexpected error: {error:#}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text, Path::new(PATH)) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error,
    }
}

/// Asserts the kind, the position and the whole one-line message.
#[track_caller]
fn assert_error(text: &str, kind: ErrorKind, line: usize, column: usize, display: &str) {
    let error = parse_err(text);
    assert_eq!(error.kind(), kind, "{text:?}: {error}");
    assert_eq!(
        error.location(),
        Some(Location { line, column }),
        "{text:?}: {error}"
    );
    assert_eq!(
        error.to_string(),
        format!("{PATH}:{line}:{column}: {display}"),
        "{text:?}"
    );
    assert_eq!(error.path(), Path::new(PATH), "{text:?}");
}

/// One [`assert_error`] case in a table: the file text, the kind, the line, the column and
/// the whole one-line message.
type ErrorCase<'a> = (&'a str, ErrorKind, usize, usize, &'a str);

const MINIMAL: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/acme-aws"
username = "a@example.com"
"#;

#[test]
fn full_config_with_defaults_inherited_and_overridden() {
    let config = parse_ok(
        r#"
[defaults]
provider = "JumpCloud"
username = "road.runner@the-acme-corporation.com"
role = "ReadOnly"
mfa = "PUSH"
region = "us-east-1"
session_duration = "2h"
refresh_before = "30m"
password_command = "pass show jumpcloud"
mfa_command = "ykman oath accounts code -s jumpcloud"
jumpcloud_console_url = "http://127.0.0.1:8080"
sts_endpoint = "http://127.0.0.1:9090"
federation_url = "http://127.0.0.1:9091/federation"
notifications = false

[accounts.production]
provider = "jumpcloud"
url = "https://sso.jumpcloud.com/saml2/acme-prod-aws-admin"
username = "wile.e@the-acme-corporation.com"
role = "arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO"
mfa = "totp"
region = "us-east-2"
session_duration = "1h30m"
refresh_before = 600
password_command = "cat /run/pw"
mfa_command = "oathtool --totp x"
jumpcloud_console_url = "https://console.jumpcloud.com"
sts_endpoint = "https://sts.us-east-2.amazonaws.com"
federation_url = "https://signin.aws.amazon.com/federation"
notifications = true

[accounts."dev-1_x.y"]
url = "https://sso.jumpcloud.com/saml2/acme-dev"
"#,
    );
    assert_eq!(config.accounts.len(), 2);

    let production = config.account("production").unwrap();
    assert_eq!(
        production,
        &Account {
            name: "production".into(),
            provider: Provider::JumpCloud,
            login: LoginMethod::Api,
            browser: None,
            browser_args: Vec::new(),
            url: "https://sso.jumpcloud.com/saml2/acme-prod-aws-admin".into(),
            username: "wile.e@the-acme-corporation.com".into(),
            role: Some("arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO".into()),
            mfa: MfaMode::Totp,
            region: Some("us-east-2".into()),
            session_duration: Duration::from_secs(5400),
            refresh_before: Duration::from_secs(600),
            password_command: Some("cat /run/pw".into()),
            mfa_command: Some("oathtool --totp x".into()),
            jumpcloud_console_url: "https://console.jumpcloud.com".into(),
            sts_endpoint: Some("https://sts.us-east-2.amazonaws.com".into()),
            federation_url: "https://signin.aws.amazon.com/federation".into(),
            notifications: true,
            login_wait: crate::DEFAULT_LOGIN_WAIT,
            request_timeout: crate::DEFAULT_REQUEST_TIMEOUT,
        }
    );

    // Everything but the URL comes from [defaults].
    let dev = config.account("dev-1_x.y").unwrap();
    assert_eq!(
        dev,
        &Account {
            name: "dev-1_x.y".into(),
            provider: Provider::JumpCloud,
            login: LoginMethod::Api,
            browser: None,
            browser_args: Vec::new(),
            url: "https://sso.jumpcloud.com/saml2/acme-dev".into(),
            username: "road.runner@the-acme-corporation.com".into(),
            role: Some("ReadOnly".into()),
            mfa: MfaMode::Push,
            region: Some("us-east-1".into()),
            session_duration: Duration::from_secs(7200),
            refresh_before: Duration::from_secs(1800),
            password_command: Some("pass show jumpcloud".into()),
            mfa_command: Some("ykman oath accounts code -s jumpcloud".into()),
            jumpcloud_console_url: "http://127.0.0.1:8080".into(),
            sts_endpoint: Some("http://127.0.0.1:9090".into()),
            federation_url: "http://127.0.0.1:9091/federation".into(),
            notifications: false,
            login_wait: crate::DEFAULT_LOGIN_WAIT,
            request_timeout: crate::DEFAULT_REQUEST_TIMEOUT,
        }
    );
    assert!(config.account("nope").is_none());
}

#[test]
fn built_in_defaults() {
    let config = parse_ok(MINIMAL);
    assert_eq!(
        config.account("prod").unwrap(),
        &Account {
            name: "prod".into(),
            provider: Provider::JumpCloud,
            login: LoginMethod::Api,
            browser: None,
            browser_args: Vec::new(),
            url: "https://sso.jumpcloud.com/saml2/acme-aws".into(),
            username: "a@example.com".into(),
            role: None,
            mfa: MfaMode::Auto,
            region: None,
            session_duration: Duration::from_secs(3600),
            refresh_before: Duration::from_secs(1200),
            password_command: None,
            mfa_command: None,
            jumpcloud_console_url: "https://console.jumpcloud.com".into(),
            sts_endpoint: None,
            federation_url: "https://signin.aws.amazon.com/federation".into(),
            notifications: true,
            login_wait: crate::DEFAULT_LOGIN_WAIT,
            request_timeout: crate::DEFAULT_REQUEST_TIMEOUT,
        }
    );
}

#[test]
fn other_table_forms_are_equivalent() {
    let inline = parse_ok(
        r#"accounts.prod = { url = "https://sso.jumpcloud.com/saml2/acme-aws", username = "a@example.com" }"#,
    );
    let dotted = parse_ok(
        "[accounts]\nprod.url = \"https://sso.jumpcloud.com/saml2/acme-aws\"\n\
         prod.username = \"a@example.com\"\n",
    );
    assert_eq!(inline, parse_ok(MINIMAL));
    assert_eq!(dotted, parse_ok(MINIMAL));
}

#[test]
fn no_accounts_is_valid() {
    for text in [
        "",
        "# nothing yet\n",
        "[accounts]\n",
        "[defaults]\nregion = \"eu-west-1\"\n",
    ] {
        assert_eq!(parse_ok(text), Config::default(), "{text:?}");
    }
}

#[test]
fn mfa_modes_are_case_insensitive() {
    for (text, mode) in [
        ("auto", MfaMode::Auto),
        ("Push", MfaMode::Push),
        ("TOTP", MfaMode::Totp),
        ("WebAuthn", MfaMode::Webauthn),
        ("none", MfaMode::None),
    ] {
        let config = parse_ok(&format!("{MINIMAL}mfa = \"{text}\"\n"));
        assert_eq!(config.account("prod").unwrap().mfa, mode);
        assert_eq!(mode.to_string(), text.to_ascii_lowercase());
    }
}

#[test]
fn syntax_errors_have_positions() {
    assert_error(
        "[accounts.prod]\nurl = \"https://x\nusername = 1\n",
        ErrorKind::Syntax,
        2,
        17,
        "invalid basic string, expected `\"`",
    );
    assert_error(
        "[defaults]\nregion = \"a\"\nregion = \"b\"\n",
        ErrorKind::Syntax,
        3,
        1,
        "duplicate key `region`",
    );
    assert_error(
        "[defaults]\nregion = us-east-1\n",
        ErrorKind::Syntax,
        2,
        10,
        "string values must be quoted, expected literal string",
    );
}

#[test]
fn unknown_keys_suggest_the_nearest_known_key() {
    // (text, kind, line, column, the whole one-line message)
    let cases: &[ErrorCase] = &[
        (
            "[accounts.prod]\nurl = \"https://x.example\"\nusername = \"a\"\n\n\n\nregon = \"us-east-1\"\n",
            ErrorKind::UnknownKey,
            7,
            1,
            "accounts.prod.regon: unknown key; did you mean `region`?",
        ),
        (
            "[defaults]\n  sesion_duration = \"1h\"\n",
            ErrorKind::UnknownKey,
            2,
            3,
            "defaults.sesion_duration: unknown key; did you mean `session_duration`?",
        ),
        (
            "[default]\nregion = \"us-east-1\"\n",
            ErrorKind::UnknownKey,
            1,
            2,
            "default: unknown key; did you mean `defaults`?",
        ),
        // Nothing close: no guess.
        (
            "[defaults]\nverbose = 5\n",
            ErrorKind::UnknownKey,
            2,
            1,
            "defaults.verbose: unknown key",
        ),
        // An account key outside any table.
        (
            "region = \"us-east-1\"\n",
            ErrorKind::UnknownKey,
            1,
            1,
            "region: unknown key; account settings belong in [defaults] or [accounts.NAME]",
        ),
        // A sub-table inside an account is an unknown key too.
        (
            &format!("{MINIMAL}[accounts.prod.extra]\nx = 1\n"),
            ErrorKind::UnknownKey,
            5,
            16,
            "accounts.prod.extra: unknown key",
        ),
    ];
    for &(text, kind, line, column, display) in cases {
        assert_error(text, kind, line, column, display);
    }
}

#[test]
fn type_errors() {
    // (text, kind, line, column, the whole one-line message)
    let cases: &[ErrorCase] = &[
        (
            "[accounts.prod]\nurl = 5\n",
            ErrorKind::InvalidType,
            2,
            7,
            "accounts.prod.url: expected an https:// URL, got an integer",
        ),
        (
            "[defaults]\nnotifications = \"yes\"\n",
            ErrorKind::InvalidType,
            2,
            17,
            "defaults.notifications: expected true or false, got a string",
        ),
        (
            "[defaults]\nsession_duration = 1.5\n",
            ErrorKind::InvalidType,
            2,
            20,
            "defaults.session_duration: expected a duration like \"1h\" or \"20m\", got a float",
        ),
        (
            "[defaults]\nregion = [\"us-east-1\"]\n",
            ErrorKind::InvalidType,
            2,
            10,
            "defaults.region: expected an AWS region like \"us-east-1\", got an array",
        ),
        (
            "defaults = 1\n",
            ErrorKind::InvalidType,
            1,
            12,
            "defaults: expected a table of settings, got an integer",
        ),
        (
            "accounts = \"prod\"\n",
            ErrorKind::InvalidType,
            1,
            12,
            "accounts: expected a table of accounts, got a string",
        ),
        (
            "[[accounts.prod]]\nurl = \"https://x.example\"\n",
            ErrorKind::InvalidType,
            1,
            1,
            "accounts.prod: expected a table of account settings, got an array",
        ),
    ];
    for &(text, kind, line, column, display) in cases {
        assert_error(text, kind, line, column, display);
    }
}

#[test]
fn invalid_values() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "session_duration = \"abc\"",
            20,
            "session_duration: expected a duration like \"1h\" or \"20m\", got \"abc\"",
        ),
        (
            "refresh_before = \"5x\"",
            18,
            "refresh_before: expected a duration like \"1h\" or \"20m\", got \"5x\"",
        ),
        (
            "refresh_before = -5",
            18,
            "refresh_before: a duration must not be negative",
        ),
        (
            "refresh_before = \"99999999999999999999h\"",
            18,
            "refresh_before: the duration \"99999999999999999999h\" is too large",
        ),
        (
            "provider = \"okta\"",
            12,
            "provider: unsupported provider \"okta\"; expected \"jumpcloud\", or \"saml\" for any other SAML IdP (signed in to through a browser)",
        ),
        (
            "mfa = \"sms\"",
            7,
            "mfa: expected one of \"auto\", \"push\", \"totp\", \"webauthn\", \"none\", got \"sms\"",
        ),
        (
            "url = \"sso.jumpcloud.com/saml2/x\"",
            7,
            "url: expected an https:// URL, got \"sso.jumpcloud.com/saml2/x\" \
             (relative URL without a base)",
        ),
        (
            "jumpcloud_console_url = \"ftp://console.jumpcloud.com\"",
            25,
            "jumpcloud_console_url: expected an https:// URL, got \
             \"ftp://console.jumpcloud.com\"",
        ),
        (
            "sts_endpoint = \"https://user:hunter2@sts.example\"",
            16,
            "sts_endpoint: the URL must not contain a user name or password",
        ),
        (
            "role = \"arn:aws:iam::123:role/Admin\"",
            8,
            "role: expected a role ARN like \"arn:aws:iam::123456789012:role/Name\" or a role \
             name, got \"arn:aws:iam::123:role/Admin\"",
        ),
        (
            "region = \"US East\"",
            10,
            "region: expected an AWS region like \"us-east-1\", got \"US East\"",
        ),
        (
            "username = \"  \"",
            12,
            "username: the username must not be empty",
        ),
        (
            "password_command = \"\"",
            20,
            "password_command: the command must not be empty",
        ),
    ];
    for (line, column, message) in cases {
        // Checked both in [defaults] and in an account, on the third line.
        assert_error(
            &format!("# samld\n[defaults]\n{line}\n{MINIMAL}"),
            ErrorKind::InvalidValue,
            3,
            *column,
            &format!("defaults.{message}"),
        );
        assert_error(
            &format!("# samld\n[accounts.a]\n{line}\n"),
            ErrorKind::InvalidValue,
            3,
            *column,
            &format!("accounts.a.{message}"),
        );
    }
    // A secret in a URL never reaches the message.
    let error = parse_err("[defaults]\nurl = \"https://me:hunter2@sso.example\"\n");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn session_duration_bounds() {
    let with = |value: &str| format!("{MINIMAL}session_duration = {value}\n");
    for (value, seconds) in [
        ("\"15m\"", 900),
        ("\"12h\"", 43200),
        ("900", 900),
        ("\"1h\"", 3600),
    ] {
        let config = parse_ok(&with(value));
        assert_eq!(
            config.account("prod").unwrap().session_duration,
            Duration::from_secs(seconds),
            "{value}"
        );
    }
    assert_error(
        &with("\"14m59s\""),
        ErrorKind::InvalidValue,
        5,
        20,
        "accounts.prod.session_duration: must be at least 15m (the STS minimum), got 14m59s",
    );
    assert_error(
        &with("\"12h1s\""),
        ErrorKind::InvalidValue,
        5,
        20,
        "accounts.prod.session_duration: must be at most 12h (the STS maximum), got 12h1s",
    );
    assert_error(
        &with("0"),
        ErrorKind::InvalidValue,
        5,
        20,
        "accounts.prod.session_duration: must be at least 15m (the STS minimum), got 0s",
    );
}

#[test]
fn refresh_before_must_be_shorter_than_the_session() {
    assert_error(
        &format!("{MINIMAL}session_duration = \"20m\"\nrefresh_before = \"20m\"\n"),
        ErrorKind::InvalidValue,
        6,
        18,
        "accounts.prod.refresh_before: refresh_before (20m) must be shorter than \
         session_duration (20m), or credentials would be refreshed as soon as they are issued",
    );
    // When both come from [defaults], the error points there and names the account.
    assert_error(
        &format!("[defaults]\nrefresh_before = \"1h\"\n{MINIMAL}"),
        ErrorKind::InvalidValue,
        2,
        18,
        "defaults.refresh_before: refresh_before (1h) must be shorter than session_duration \
         (1h), or credentials would be refreshed as soon as they are issued (for account `prod`)",
    );
    // Without an explicit refresh_before, a short session gets a shorter default.
    let config = parse_ok(&format!("{MINIMAL}session_duration = \"15m\"\n"));
    assert_eq!(
        config.account("prod").unwrap().refresh_before,
        Duration::from_secs(450)
    );
    // An account that sets its own longer session is fine with that default.
    let config = parse_ok(&format!(
        "[defaults]\nrefresh_before = \"1h\"\n{MINIMAL}session_duration = \"2h\"\n"
    ));
    assert_eq!(
        config.account("prod").unwrap().refresh_before,
        Duration::from_secs(3600)
    );
}

#[test]
fn missing_required_keys_point_at_the_account_header() {
    assert_error(
        "[defaults]\nregion = \"us-east-1\"\n\n[accounts.prod]\nusername = \"a\"\n",
        ErrorKind::MissingKey,
        4,
        1,
        "accounts.prod: missing required key `url` (set it in this table or in [defaults])",
    );
    assert_error(
        "[accounts]\nprod = { url = \"https://x.example\" }\n",
        ErrorKind::MissingKey,
        2,
        8,
        "accounts.prod: missing required key `username` (set it in this table or in [defaults])",
    );
    // Satisfied by [defaults].
    parse_ok("[defaults]\nusername = \"a\"\n[accounts.prod]\nurl = \"https://x.example\"\n");
}

#[test]
fn account_names() {
    for good in ["prod", "Prod-2", "a.b", "under_score", "0"] {
        let text =
            format!("[accounts.\"{good}\"]\nurl = \"https://x.example\"\nusername = \"a\"\n");
        assert!(parse_ok(&text).account(good).is_some(), "{good}");
    }
    // (text, kind, line, column, the whole one-line message)
    let cases: &[ErrorCase] = &[
        (
            "[accounts.\"\"]\n",
            ErrorKind::InvalidValue,
            1,
            11,
            "accounts.\"\": an account name must not be empty",
        ),
        (
            "[accounts.\"my prod\"]\n",
            ErrorKind::InvalidValue,
            1,
            11,
            "accounts.\"my prod\": an account name may only contain letters, digits, '.', '_' and '-'",
        ),
        (
            "[accounts.\"prød\"]\n",
            ErrorKind::InvalidValue,
            1,
            11,
            "accounts.\"prød\": an account name may only contain letters, digits, '.', '_' and '-'",
        ),
        (
            "[accounts.-rm]\n",
            ErrorKind::InvalidValue,
            1,
            11,
            "accounts.-rm: an account name must not start with '-' (it would read as a \
         command-line option)",
        ),
    ];
    for &(text, kind, line, column, display) in cases {
        assert_error(text, kind, line, column, display);
    }
}

#[test]
fn the_first_error_in_the_file_is_reported() {
    // Keys are stored sorted ("a" < "z"), but the reader meets line 2 first.
    assert_error(
        "[defaults]\nzz = 1\naa = 2\n",
        ErrorKind::UnknownKey,
        2,
        1,
        "defaults.zz: unknown key",
    );
}

#[test]
fn columns_count_characters() {
    assert_error(
        "[defaults] # é\nusername = \"é\" ; region = 1\n",
        ErrorKind::Syntax,
        2,
        16,
        "unexpected key or value, expected newline, `#`",
    );
}

#[test]
fn alternate_display_shows_the_line() {
    let error = parse_err("[defaults]\nregion = \"US\"\n");
    assert_eq!(
        format!("{error:#}"),
        format!(
            "{PATH}:2:10: defaults.region: expected an AWS region like \"us-east-1\", got \"US\"\n  \
             |\n2 | region = \"US\"\n  |          ^^^^"
        )
    );
}

fn temp_file(contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

#[test]
fn load_reads_the_file() {
    let (_dir, path) = temp_file(MINIMAL.as_bytes());
    assert_eq!(load(&path).unwrap(), parse_ok(MINIMAL));
    assert_eq!(load_or_empty(&path).unwrap(), (parse_ok(MINIMAL), true));

    let (_dir, path) = temp_file(b"[defaults]\nregon = 1\n");
    let error = load(&path).unwrap_err();
    assert_eq!(error.path(), path);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:2:1: defaults.regon:", path.display())),
        "{error}"
    );
    // An invalid file is an error for load_or_empty too: only absence means "empty".
    assert_eq!(load_or_empty(&path).unwrap_err(), error);
}

#[test]
fn a_missing_file_is_recognisable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let error = load(&path).unwrap_err();
    assert!(error.is_not_found());
    assert_eq!(error.kind(), ErrorKind::Read(std::io::ErrorKind::NotFound));
    assert_eq!(
        error.to_string(),
        format!(
            "{}: cannot read the file: No such file or directory (os error 2)",
            path.display()
        )
    );
    assert_eq!(load_or_empty(&path).unwrap(), (Config::default(), false));
}

#[test]
fn unreadable_files_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory in place of the file: open succeeds on Linux, read fails.
    let error = load(dir.path()).unwrap_err();
    assert!(!error.is_not_found());
    assert!(matches!(error.kind(), ErrorKind::Read(_)));
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read the file: ", dir.path().display())),
        "{error}"
    );
    assert!(load_or_empty(dir.path()).is_err());
}

#[test]
fn oversized_and_non_utf8_files_are_refused() {
    let (_dir, path) = temp_file(&vec![b'#'; 1024 * 1024 + 1]);
    let error = load(&path).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Read(std::io::ErrorKind::FileTooLarge)
    );
    assert!(
        error.to_string().ends_with("larger than 1024 KiB"),
        "{error}"
    );

    let (_dir, path) = temp_file(b"[defaults]\nregion = \"\xff\"\n");
    let error = load(&path).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Syntax);
    assert_eq!(
        error.location(),
        Some(Location {
            line: 2,
            column: 11
        })
    );
    assert_eq!(
        format!("{error:#}"),
        format!("{}:2:11: the file is not valid UTF-8", path.display())
    );
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    // Each URL key, with what would cross the network in clear.
    let keys = [
        ("url", "the password and the JumpCloud session cookie"),
        (
            "jumpcloud_console_url",
            "the password and the JumpCloud session cookie",
        ),
        (
            "sts_endpoint",
            "the SAML assertion and the AWS keys STS returns",
        ),
        (
            "federation_url",
            "the AWS secret key and session token (sent in its query)",
        ),
    ];
    for (key, what) in keys {
        // The key on line 5, with `url` set on line 4 unless it is the key under test.
        let with = |value: &str| {
            let url_line = if key == "url" {
                "# url below"
            } else {
                "url = \"https://sso.jumpcloud.com/saml2/acme-aws\""
            };
            format!(
                "\n[accounts.prod]\nusername = \"a@example.com\"\n{url_line}\n{key} = \"{value}\"\n"
            )
        };
        for remote in [
            "http://sso.jumpcloud.com/saml2/x",
            "http://10.0.0.1:8080/",
            "http://127.0.0.1.nip.io/",
            "http://localhost.evil.example/",
            "http://[::2]/",
        ] {
            let column = key.len() + 4;
            assert_error(
                &with(remote),
                ErrorKind::InvalidValue,
                5,
                column,
                &format!(
                    "accounts.prod.{key}: plain http:// would send {what} in clear; use \
                     https:// (http:// is accepted only for loopback: 127.0.0.0/8, ::1, \
                     localhost)"
                ),
            );
        }
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3/x",
            "http://[::1]:9090/federation",
            "http://localhost:80",
            "http://LocalHost",
            "https://sts.us-east-2.amazonaws.com",
        ] {
            parse_ok(&with(loopback));
        }
    }
}

#[test]
fn every_duration_has_bounds() {
    let with = |line: &str| format!("{MINIMAL}{line}\n");
    // login_wait: 1s to 1h. The huge value used to pass and then overflow an Instant.
    for (value, seconds) in [("\"1s\"", 1), ("\"1h\"", 3600), ("90", 90)] {
        let config = parse_ok(&with(&format!("login_wait = {value}")));
        assert_eq!(
            config.account("prod").unwrap().login_wait,
            Duration::from_secs(seconds),
            "{value}"
        );
    }
    assert_error(
        &with("login_wait = \"5124095576030431h\""),
        ErrorKind::InvalidValue,
        5,
        14,
        "accounts.prod.login_wait: must be at most 1h (no one waits longer for a login), got \
         5124095576030431h",
    );
    assert_error(
        &with("login_wait = \"1h1s\""),
        ErrorKind::InvalidValue,
        5,
        14,
        "accounts.prod.login_wait: must be at most 1h (no one waits longer for a login), got \
         1h1s",
    );
    assert_error(
        &with("login_wait = 0"),
        ErrorKind::InvalidValue,
        5,
        14,
        "accounts.prod.login_wait: must be at least 1s, got 0s",
    );
    // request_timeout: 1s to 5m, 30s when not set.
    assert_eq!(
        parse_ok(&with("")).account("prod").unwrap().request_timeout,
        Duration::from_secs(30)
    );
    let config = parse_ok(&with("request_timeout = \"2m\""));
    assert_eq!(
        config.account("prod").unwrap().request_timeout,
        Duration::from_secs(120)
    );
    // (text, kind, line, column, the whole one-line message)
    let cases: &[ErrorCase] = &[
        (
            &with("request_timeout = \"6m\""),
            ErrorKind::InvalidValue,
            5,
            19,
            "accounts.prod.request_timeout: must be at most 5m (a hung IdP would hold logins and \
         the helpers waiting for them), got 6m",
        ),
        (
            &with("request_timeout = \"0s\""),
            ErrorKind::InvalidValue,
            5,
            19,
            "accounts.prod.request_timeout: must be at least 1s, got 0s",
        ),
        // refresh_before: at least 1s, and under session_duration (checked elsewhere), so at
        // most 12h.
        (
            &with("refresh_before = \"0s\""),
            ErrorKind::InvalidValue,
            5,
            18,
            "accounts.prod.refresh_before: must be at least 1s (credentials would be refreshed \
         only once expired), got 0s",
        ),
        (
            &with("refresh_before = \"5124095576030431h\""),
            ErrorKind::InvalidValue,
            5,
            18,
            "accounts.prod.refresh_before: must be at most 12h (the longest session), got \
         5124095576030431h",
        ),
    ];
    for &(text, kind, line, column, display) in cases {
        assert_error(text, kind, line, column, display);
    }
    let config = parse_ok(&with("refresh_before = \"1s\""));
    assert_eq!(
        config.account("prod").unwrap().refresh_before,
        Duration::from_secs(1)
    );
    // The largest number a duration can hold is refused with the bound, not a panic.
    for key in ["session_duration", "refresh_before", "login_wait"] {
        let error = parse_err(&with(&format!("{key} = {}", i64::MAX)));
        assert!(error.message().starts_with("must be at most"), "{error}");
        let error = parse_err(&with(&format!("{key} = \"{}s\"", u64::MAX)));
        assert!(error.message().starts_with("must be at most"), "{error}");
    }
}

#[test]
fn audit_log_is_an_absolute_path_at_the_top_level() {
    assert_eq!(parse_ok(MINIMAL).audit_log, None);
    let config = parse_ok(&format!(
        "audit_log = \"/home/a/.local/state/samld/audit.jsonl\"\n{MINIMAL}"
    ));
    assert_eq!(
        config.audit_log.as_deref(),
        Some(Path::new("/home/a/.local/state/samld/audit.jsonl"))
    );
    assert_error(
        &format!("audit_log = \"audit.jsonl\"\n{MINIMAL}"),
        ErrorKind::InvalidValue,
        1,
        13,
        "audit_log: must be an absolute path, got \"audit.jsonl\"",
    );
    assert_error(
        &format!("audit_log = 3\n{MINIMAL}"),
        ErrorKind::InvalidType,
        1,
        13,
        "audit_log: expected a string (an absolute path), got an integer",
    );
}

#[test]
fn browser_sign_in_keys() {
    let config = parse_ok(
        r#"
[defaults]
browser_args = ["--no-sandbox"]

[accounts.jc]
url = "https://sso.jumpcloud.com/saml2/aws"
username = "a@b.c"

[accounts.key]
url = "https://sso.jumpcloud.com/saml2/aws"
username = "a@b.c"
login = "Browser"
browser = "/usr/bin/chromium"

[accounts.okta]
provider = "saml"
url = "https://acme.okta.com/home/amazon_aws/0oa1/272"
browser = "brave-browser"
browser_args = []
"#,
    );
    let jc = config.account("jc").unwrap();
    assert_eq!(
        (jc.provider, jc.login, jc.browser.as_deref()),
        (Provider::JumpCloud, LoginMethod::Api, None)
    );
    assert_eq!(jc.browser_args, ["--no-sandbox"]);
    assert_eq!(jc.login_command(), "samlctl login jc");
    let key = config.account("key").unwrap();
    assert_eq!(key.login, LoginMethod::Browser);
    assert_eq!(key.browser.as_deref(), Some("/usr/bin/chromium"));
    assert_eq!(key.login_command(), "samlctl login key --browser");
    let okta = config.account("okta").unwrap();
    assert_eq!(
        (okta.provider, okta.login),
        (Provider::Saml, LoginMethod::Browser)
    );
    assert_eq!(okta.username, "");
    assert!(okta.browser_args.is_empty());
    assert_eq!(okta.session_key().console_url, "https://acme.okta.com");
    assert_eq!(okta.login_command(), "samlctl login okta --browser");
}

#[test]
fn browser_sign_in_errors() {
    let cases: &[(&str, ErrorKind, usize, usize, &str)] = &[
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\nprovider = \"saml\"\nlogin = \"api\"\n",
            ErrorKind::InvalidValue,
            4,
            9,
            "accounts.a.login: provider = \"saml\" signs in only through a browser (samld knows \
             no API for an arbitrary IdP); set login = \"browser\" or leave it out (for account \
             `a`)",
        ),
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\nusername = \"u\"\nlogin = \"web\"\n",
            ErrorKind::InvalidValue,
            4,
            9,
            "accounts.a.login: expected \"api\" or \"browser\", got \"web\"",
        ),
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\nusername = \"u\"\nbrowser = \"bin/chrome\"\n",
            ErrorKind::InvalidValue,
            4,
            11,
            "accounts.a.browser: must be an absolute path or a program name found in PATH, got \
             \"bin/chrome\"",
        ),
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\nusername = \"u\"\nbrowser_args = \"--x\"\n",
            ErrorKind::InvalidType,
            4,
            16,
            "accounts.a.browser_args: expected an array of strings (browser flags), got a string",
        ),
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\nusername = \"u\"\nbrowser_args = [\"--user-data-dir=/tmp/x\"]\n",
            ErrorKind::InvalidValue,
            4,
            16,
            "accounts.a.browser_args: --user-data-dir is set by samlctl (a profile of samld's \
             own, never the browser's main one)",
        ),
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\nprovider = \"okta\"\n",
            ErrorKind::InvalidValue,
            3,
            12,
            "accounts.a.provider: unsupported provider \"okta\"; expected \"jumpcloud\", or \
             \"saml\" for any other SAML IdP (signed in to through a browser)",
        ),
        (
            "[accounts.a]\nurl = \"https://x.example/s\"\n",
            ErrorKind::MissingKey,
            1,
            1,
            "accounts.a: missing required key `username` (set it in this table or in [defaults])",
        ),
    ];
    for (text, kind, line, column, display) in cases {
        assert_error(text, *kind, *line, *column, display);
    }
}
