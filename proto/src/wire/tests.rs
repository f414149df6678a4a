use super::*;
use crate::{LoginIntent, PROTOCOL_VERSION, PasswordLogin};

#[test]
fn protocol_version_is_pinned() {
    // Changing this number is a deliberate wire break: update this test in the same commit
    // and say why.
    assert_eq!(PROTOCOL_VERSION, 2);
    let hello = Response::Hello {
        protocol_version: PROTOCOL_VERSION,
        daemon_version: "0.1.0".into(),
        pid: 42,
    };
    assert_eq!(
        serde_json::to_string(&hello).unwrap(),
        r#"{"type":"hello","protocol_version":2,"daemon_version":"0.1.0","pid":42}"#
    );
}

#[test]
fn golden_requests() {
    let cases: Vec<(Request, &str)> = vec![
        (Request::Status { account: None }, r#"{"type":"status"}"#),
        (
            Request::GetCredentials {
                account: "prod".into(),
                role: Some("Admin".into()),
                interactive: false,
                via: None,
            },
            r#"{"type":"get_credentials","account":"prod","role":"Admin","interactive":false}"#,
        ),
        (
            Request::Login(LoginRequest {
                account: "prod".into(),
                intent: LoginIntent::Password(PasswordLogin {
                    mfa_code: Some(Secret::new("123456")),
                    ..PasswordLogin::default()
                }),
            }),
            r#"{"type":"login","account":"prod","intent":{"kind":"password","mfa_code":"123456","interactive":false,"session":"reuse"}}"#,
        ),
        (
            Request::Login(LoginRequest {
                account: "prod".into(),
                intent: LoginIntent::ReuseOnly,
            }),
            r#"{"type":"login","account":"prod","intent":{"kind":"reuse_only"}}"#,
        ),
        (
            Request::ProvideSecret {
                kind: SecretKind::MfaCode,
                value: Secret::new("1"),
            },
            r#"{"type":"provide_secret","kind":"mfa-code","value":"1"}"#,
        ),
        (Request::Logout { account: None }, r#"{"type":"logout"}"#),
        (
            Request::ForgetPassword {
                account: "prod".into(),
            },
            r#"{"type":"forget_password","account":"prod"}"#,
        ),
        (Request::Shutdown, r#"{"type":"shutdown"}"#),
        (
            Request::IssueEndpointToken {
                account: "prod".into(),
                role: None,
            },
            r#"{"type":"issue_endpoint_token","account":"prod"}"#,
        ),
        (
            Request::ConsoleUrl {
                account: "prod".into(),
                role: Some("Admin".into()),
                session_duration: Some(3600),
            },
            r#"{"type":"console_url","account":"prod","role":"Admin","session_duration":3600}"#,
        ),
    ];
    for (req, json) in cases {
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
        assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
    }
}

#[test]
fn golden_endpoint_and_console_responses() {
    let token = Response::EndpointToken(EndpointToken {
        url: "http://127.0.0.1:4711/v1/credentials/prod".into(),
        token: Secret::new("abc"),
        account: "prod".into(),
        role_arn: "arn:aws:iam::1:role/R".into(),
        region: Some("us-east-2".into()),
    });
    let json = r#"{"type":"endpoint_token","url":"http://127.0.0.1:4711/v1/credentials/prod","token":"abc","account":"prod","role_arn":"arn:aws:iam::1:role/R","region":"us-east-2"}"#;
    assert_eq!(serde_json::to_string(&token).unwrap(), json);
    assert_eq!(serde_json::from_str::<Response>(json).unwrap(), token);
    assert!(token.is_final());
    assert!(
        !format!("{token:?}").contains("abc"),
        "Debug shows the token"
    );

    let console = Response::ConsoleUrl(ConsoleSignin {
        url: Secret::new("https://signin.aws.amazon.com/federation?SigninToken=t"),
        account: "prod".into(),
        role_arn: "arn:aws:iam::1:role/R".into(),
    });
    let json = r#"{"type":"console_url","url":"https://signin.aws.amazon.com/federation?SigninToken=t","account":"prod","role_arn":"arn:aws:iam::1:role/R"}"#;
    assert_eq!(serde_json::to_string(&console).unwrap(), json);
    assert_eq!(serde_json::from_str::<Response>(json).unwrap(), console);
    assert!(
        !format!("{console:?}").contains("SigninToken"),
        "Debug shows the URL"
    );
}

#[test]
fn golden_password_forgotten() {
    let r = Response::PasswordForgotten {
        account: "prod".into(),
        removed: true,
    };
    let json = r#"{"type":"password_forgotten","account":"prod","removed":true}"#;
    assert_eq!(serde_json::to_string(&r).unwrap(), json);
    assert_eq!(serde_json::from_str::<Response>(json).unwrap(), r);
    assert!(r.is_final());
}

#[test]
fn golden_error_response() {
    let e = Response::error(ErrorCode::NotLoggedIn, "run samlctl login prod");
    let json = r#"{"type":"error","code":"not-logged-in","message":"run samlctl login prod"}"#;
    assert_eq!(serde_json::to_string(&e).unwrap(), json);
    assert_eq!(serde_json::from_str::<Response>(json).unwrap(), e);
}

#[test]
fn unknown_error_codes_from_newer_daemons_are_tolerated() {
    let r: Response =
        serde_json::from_str(r#"{"type":"error","code":"brand-new","message":"x"}"#).unwrap();
    assert_eq!(r, Response::error(ErrorCode::Unknown, "x"));
}

#[test]
fn every_error_code_round_trips_through_its_name() {
    use ErrorCode::*;
    for code in [
        NotLoggedIn,
        NeedsLogin,
        UnknownAccount,
        UnknownRole,
        AuthFailed,
        MfaFailed,
        MfaRequired,
        MfaUnsupported,
        IdpError,
        SamlError,
        StsError,
        NetworkError,
        ConfigError,
        VersionMismatch,
        BadRequest,
        Timeout,
        ShuttingDown,
        KeyringError,
        Internal,
    ] {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
    }
}

#[test]
fn credential_process_json_has_the_aws_shape() {
    let c = Credentials {
        account: "prod".into(),
        role_arn: "arn:aws:iam::1:role/R".into(),
        access_key_id: "ASIA1".into(),
        secret_access_key: Secret::new("sk"),
        session_token: Secret::new("tok"),
        expiration: "2026-11-28T12:00:00Z".into(),
        region: None,
    };
    let v: serde_json::Value = serde_json::from_str(&c.to_credential_process_json()).unwrap();
    assert_eq!(v["Version"], 1);
    // (field the AWS SDKs read, its value)
    const FIELDS: &[(&str, &str)] = &[
        ("AccessKeyId", "ASIA1"),
        ("SecretAccessKey", "sk"),
        ("SessionToken", "tok"),
        ("Expiration", "2026-11-28T12:00:00Z"),
    ];
    for &(field, want) in FIELDS {
        assert_eq!(v[field], want, "{field:?}");
    }
    assert!(
        !format!("{c:?}").contains("sk\""),
        "Debug must not show the secret key"
    );
}

#[test]
fn status_round_trips() {
    let report = StatusReport {
        daemon: DaemonInfo {
            version: "0.1.0".into(),
            protocol_version: 1,
            pid: 7,
            config_path: "/c.toml".into(),
            started_at: "2026-11-28T10:00:00Z".into(),
            config_error: None,
        },
        accounts: vec![AccountStatus {
            identity: None,
            login: "api".into(),
            name: "prod".into(),
            state: AccountState::NeedsLogin,
            provider: "jumpcloud".into(),
            username: "a@b".into(),
            url: "https://sso.jumpcloud.com/saml2/x".into(),
            region: Some("us-east-2".into()),
            default_role: None,
            session: None,
            roles: vec![],
            last_error: None,
            next_retry_at: None,
        }],
        sessions: vec![IdpSessionStatus {
            provider: "jumpcloud".into(),
            console_url: "https://console.jumpcloud.com".into(),
            username: "a@b".into(),
            state: IdpSessionState::NeedsLogin,
            session: None,
            accounts: vec!["prod".into()],
            reason: Some("the push was denied".into()),
        }],
    };
    let resp = Response::Status(report);
    let json = serde_json::to_string(&resp).unwrap();
    assert!(json.contains(r#""state":"needs-login""#), "{json}");
    // A report from an older daemon, without sessions, still reads.
    let old = json.replace(r#","sessions":[{"#, r#","x":[{"#);
    assert!(serde_json::from_str::<Response>(&old).is_ok(), "{old}");
    assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), resp);
}
