//! The client against a scripted fake daemon.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use samld_proto::{
    ErrorCode, FrameError, LoginIntent, LoginOutcome, LoginRequest, LogoutOutcome,
    PROTOCOL_VERSION, PasswordLogin, Request, Response, RoleInfo, Secret, SecretKind,
};

use super::*;
use crate::fake_daemon::{Conn, FAKE_PID, FAKE_VERSION, FakeDaemon, hello};

fn role(arn: &str) -> RoleInfo {
    RoleInfo {
        role_arn: arn.into(),
        principal_arn: "arn:aws:iam::1:saml-provider/JumpCloud".into(),
        default: true,
    }
}

/// Answers from a fixed list and records what it was asked.
struct Scripted {
    answers: Vec<(SecretKind, &'static str)>,
    asked: Vec<(SecretKind, String)>,
}

impl SecretPrompter for Scripted {
    fn prompt(&mut self, kind: SecretKind, prompt: &str) -> Result<Secret, PromptError> {
        self.asked.push((kind, prompt.to_owned()));
        let (want, answer) = self.answers.remove(0);
        assert_eq!(kind, want, "asked for the wrong secret");
        Ok(Secret::new(answer))
    }
}

#[test]
fn hello_is_read_and_exposed() {
    let daemon = FakeDaemon::serve(vec![Conn::new()]);
    let client = Client::connect_to(&daemon.socket).unwrap();
    assert_eq!(
        client.hello(),
        &DaemonHello {
            protocol_version: PROTOCOL_VERSION,
            daemon_version: FAKE_VERSION.into(),
            pid: FAKE_PID,
        }
    );
    assert_eq!(client.socket(), daemon.socket);
}

#[test]
fn version_mismatch_names_both_versions_and_the_fix_and_sends_nothing() {
    let mismatch = |protocol: u32| {
        let daemon = FakeDaemon::serve(vec![Conn::new().greeting(Some(hello(protocol))).recv()]);
        let err = ConnectOptions::new(&daemon.socket)
            .client_name("samlctl")
            .connect()
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::VersionMismatch { daemon, .. } if daemon.protocol_version == protocol)
        );
        assert_eq!(err.code(), Some(ErrorCode::VersionMismatch));
        assert!(
            daemon.requests().is_empty(),
            "no request may follow a mismatched hello"
        );
        err.to_string()
    };
    let ours = samld_proto::CRATE_VERSION;
    assert_eq!(
        mismatch(PROTOCOL_VERSION - 1),
        format!(
            "samld 0.1.0-fake (pid 4242) is older than this samlctl {ours} (protocol 1, need 2): \
             restart it with `samlctl daemon stop` and start it again"
        )
    );
    assert_eq!(
        mismatch(PROTOCOL_VERSION + 1),
        format!(
            "samld 0.1.0-fake (pid 4242) is newer than this samlctl {ours} (protocol 3, this \
             samlctl speaks 2): run the samlctl installed with it (an older one may come first \
             on PATH)"
        )
    );
}

#[test]
fn login_relays_progress_and_answers_secrets_on_the_same_connection() {
    let outcome = LoginOutcome {
        account: "prod".into(),
        username: "alice@example.com".into(),
        reused_session: false,
        roles: vec![role("arn:aws:iam::1:role/Admin")],
    };
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(Response::Progress {
                message: "contacting JumpCloud".into(),
            })
            .send(Response::NeedSecret {
                kind: SecretKind::Password,
                prompt: "JumpCloud password for alice@example.com".into(),
            })
            .recv()
            .send(Response::NeedSecret {
                kind: SecretKind::MfaCode,
                prompt: "MFA code".into(),
            })
            .recv()
            .send(Response::Progress {
                message: "assuming role".into(),
            })
            .send(Response::LoggedIn(outcome.clone())),
    ]);
    let mut prompter = Scripted {
        answers: vec![
            (SecretKind::Password, "hunter2"),
            (SecretKind::MfaCode, "123456"),
        ],
        asked: vec![],
    };
    let mut progress = Vec::new();
    let request = LoginRequest {
        account: "prod".into(),
        intent: LoginIntent::Password(PasswordLogin {
            interactive: true,
            ..PasswordLogin::default()
        }),
    };
    let got = Client::connect_to(&daemon.socket)
        .unwrap()
        .login(request.clone(), &mut prompter, &mut |m| {
            progress.push(m.to_owned())
        })
        .unwrap();

    assert_eq!(got, outcome);
    assert_eq!(progress, ["contacting JumpCloud", "assuming role"]);
    assert_eq!(
        prompter.asked,
        [
            (
                SecretKind::Password,
                "JumpCloud password for alice@example.com".to_owned()
            ),
            (SecretKind::MfaCode, "MFA code".to_owned())
        ]
    );
    assert_eq!(
        daemon.requests(),
        [
            Request::Login(request),
            Request::ProvideSecret {
                kind: SecretKind::Password,
                value: Secret::new("hunter2")
            },
            Request::ProvideSecret {
                kind: SecretKind::MfaCode,
                value: Secret::new("123456")
            },
        ]
    );
}

#[test]
fn a_secret_nobody_can_provide_fails_and_hangs_up_without_answering() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(Response::NeedSecret {
                kind: SecretKind::Password,
                prompt: "pw".into(),
            })
            // Reads the hang-up: a ProvideSecret here would be recorded.
            .recv(),
    ]);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .get_credentials("prod", None, false, None, &mut NoPrompter, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Prompt {
                kind: SecretKind::Password,
                error: PromptError::Unavailable(_)
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "samld asked for the JumpCloud password but this program cannot prompt for it"
    );
    assert_eq!(
        daemon.requests().len(),
        1,
        "only the GetCredentials request"
    );
}

#[test]
fn daemon_error_keeps_its_code_and_message() {
    let msg = "production is not logged in; run: samlctl login production";
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::error(ErrorCode::NotLoggedIn, msg)),
    ]);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .get_credentials(
            "production",
            Some("Admin"),
            false,
            None,
            &mut NoPrompter,
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotLoggedIn));
    assert!(matches!(&err, ClientError::Daemon(e) if e.code == ErrorCode::NotLoggedIn));
    assert_eq!(err.to_string(), msg);
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "production".into(),
            role: Some("Admin".into()),
            interactive: false,
            via: None,
        }]
    );
}

#[test]
fn an_error_instead_of_hello_is_the_daemons_error() {
    let daemon = FakeDaemon::serve(vec![Conn::new().greeting(Some(Response::error(
        ErrorCode::ShuttingDown,
        "samld is stopping",
    )))]);
    let err = Client::connect_to(&daemon.socket).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ShuttingDown));
}

#[test]
fn missing_socket_means_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nope").join("samld.sock");
    let err = Client::connect_to(&socket).unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "samld is not running (no daemon answers on {}); start it with `samld &` or \
             `systemctl --user start samld`",
            socket.display()
        )
    );
}

#[test]
fn stale_socket_file_means_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("samld.sock");
    // Binding and dropping leaves the file behind with nobody listening: a crashed daemon.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let err = Client::connect_to(&socket).unwrap_err();
    assert!(
        matches!(&err, ClientError::DaemonNotRunning { socket: s } if *s == socket),
        "{err:?}"
    );
}

#[test]
fn connect_errors_are_classified() {
    let p = std::path::Path::new("/x.sock");
    let denied = connect_error(p, io::Error::from(io::ErrorKind::PermissionDenied));
    assert!(matches!(denied, ClientError::PermissionDenied { .. }));
    assert!(
        denied
            .to_string()
            .starts_with("permission denied on /x.sock")
    );
    let other = connect_error(p, io::Error::from(io::ErrorKind::AddrNotAvailable));
    assert!(matches!(other, ClientError::Io { .. }));
}

#[test]
fn peer_uid_is_read_from_the_socket() {
    let (a, _b) = UnixStream::pair().unwrap();
    assert_eq!(peer_uid(&a).unwrap(), current_uid());
}

#[test]
fn daemon_closing_mid_frame_is_a_protocol_error() {
    // A header announcing 50 bytes, then 1 byte, then the connection closes.
    let daemon = FakeDaemon::serve(vec![Conn::new().recv().raw([0, 0, 0, 50, b'{'])]);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .status(None)
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Protocol(FrameError::Truncated)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "bad answer from samld: connection closed in the middle of a frame"
    );
}

#[test]
fn daemon_closing_between_frames_is_reported_as_closed() {
    let daemon = FakeDaemon::serve(vec![Conn::new().recv()]);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .refresh("prod")
        .unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err:?}");
}

#[test]
fn oversized_frame_is_refused() {
    let daemon = FakeDaemon::serve(vec![Conn::new().recv().raw(u32::MAX.to_be_bytes())]);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .roles("prod")
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Protocol(FrameError::TooLarge { .. })),
        "{err:?}"
    );
}

#[test]
fn a_silent_daemon_times_out() {
    // Greets, then never answers; the client's read timeout has to end the wait.
    let daemon = FakeDaemon::serve(vec![Conn::new().recv().recv()]);
    let err = ConnectOptions::new(&daemon.socket)
        .timeout(Some(Duration::from_millis(100)))
        .connect()
        .unwrap()
        .status(None)
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { after } if after == Duration::from_millis(100)),
        "{err:?}"
    );
    assert_eq!(daemon.requests(), [Request::Status { account: None }]);
}

#[test]
fn wrong_response_type_is_reported() {
    let daemon = FakeDaemon::serve(vec![Conn::new().answer(Response::ShuttingDown)]);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .status(None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::UnexpectedResponse {
                expected: "status",
                got: "shutting_down"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn each_method_sends_its_request_and_returns_its_payload() {
    let roles = vec![role("arn:aws:iam::1:role/A")];
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::LoggedOut(LogoutOutcome {
            accounts: vec!["a".into(), "b".into()],
            idp_sessions: 1,
        })),
        Conn::new().answer(Response::Refreshed {
            account: "a".into(),
            roles: vec![],
        }),
        Conn::new().answer(Response::Roles {
            account: "a".into(),
            roles: roles.clone(),
        }),
        Conn::new().answer(Response::ShuttingDown),
    ]);
    let s = daemon.socket.clone();
    assert_eq!(
        Client::connect_to(&s).unwrap().logout(None).unwrap(),
        LogoutOutcome {
            accounts: vec!["a".into(), "b".into()],
            idp_sessions: 1,
        }
    );
    assert!(
        Client::connect_to(&s)
            .unwrap()
            .refresh("a")
            .unwrap()
            .is_empty()
    );
    assert_eq!(Client::connect_to(&s).unwrap().roles("a").unwrap(), roles);
    Client::connect_to(&s).unwrap().shutdown().unwrap();
    assert_eq!(
        daemon.requests(),
        [
            Request::Logout { account: None },
            Request::Refresh {
                account: "a".into()
            },
            Request::Roles {
                account: "a".into()
            },
            Request::Shutdown,
        ]
    );
}

#[test]
fn any_version_lets_an_incompatible_daemon_be_inspected_and_stopped() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .greeting(Some(hello(2)))
            .answer(Response::ShuttingDown),
    ]);
    let client = ConnectOptions::new(&daemon.socket)
        .any_version()
        .connect()
        .unwrap();
    assert_eq!(client.hello().protocol_version, 2);
    client.shutdown().unwrap();
    assert_eq!(daemon.requests(), [Request::Shutdown]);
}

fn audit_event(seq: u64) -> samld_proto::AuditEvent {
    samld_proto::AuditEvent {
        seq,
        at: "2026-11-28T11:30:00Z".into(),
        kind: samld_proto::AuditKind::Handout,
        account: Some("prod".into()),
        role_arn: Some("arn:aws:iam::111111111111:role/Admin".into()),
        via: Some(samld_proto::Handout::Helper),
        source: Some(samld_proto::CredentialSource::Memory),
        error: None,
        process: None,
        ancestry: vec![],
    }
}

#[test]
fn audit_sends_the_filters_and_returns_the_events_and_the_drop_count() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::Audit {
            events: vec![audit_event(7)],
            dropped: 3,
        }),
        Conn::new().answer(Response::error(
            ErrorCode::BadRequest,
            "unknown variant `audit`",
        )),
    ]);
    let (events, dropped) = Client::connect_to(&daemon.socket)
        .unwrap()
        .audit(Some("prod"), Some(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!((events, dropped), (vec![audit_event(7)], 3));
    // An older daemon does not know the request; samlctl turns this into "restart it".
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .audit(None, None)
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert_eq!(
        daemon.requests(),
        [
            Request::Audit {
                account: Some("prod".into()),
                since_secs: Some(3600),
                follow: false,
            },
            Request::Audit {
                account: None,
                since_secs: None,
                follow: false,
            },
        ]
    );
}

#[test]
fn get_credentials_sends_how_the_credentials_leave() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new().answer(Response::error(ErrorCode::NotLoggedIn, "log in")),
    ]);
    let _ = Client::connect_to(&daemon.socket).unwrap().get_credentials(
        "prod",
        None,
        false,
        Some(samld_proto::Handout::Env),
        &mut NoPrompter,
        &mut |_| {},
    );
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "prod".into(),
            role: None,
            interactive: false,
            via: Some(samld_proto::Handout::Env),
        }]
    );
}

#[test]
fn a_followed_audit_waits_past_the_timeout_and_ends_at_eof() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("samld.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        samld_proto::write_frame(&mut stream, &hello(PROTOCOL_VERSION)).unwrap();
        let request: Request = samld_proto::read_frame(&mut stream).unwrap().unwrap();
        samld_proto::write_frame(
            &mut stream,
            &Response::AuditFollowing {
                events: vec![audit_event(1)],
                dropped: 0,
            },
        )
        .unwrap();
        // Longer than the client's timeout: following must not give up.
        std::thread::sleep(Duration::from_millis(400));
        samld_proto::write_frame(&mut stream, &Response::AuditEvent(audit_event(2))).unwrap();
        request
    });
    let mut follow = ConnectOptions::new(&socket)
        .timeout(Some(Duration::from_millis(100)))
        .connect()
        .unwrap()
        .follow_audit(Some("prod"), None)
        .unwrap();
    assert_eq!(follow.events(), [audit_event(1)]);
    assert_eq!(follow.dropped(), 0);
    assert_eq!(follow.next_event().unwrap(), Some(audit_event(2)));
    // The server thread ends and its stream closes: that is the end of the audit.
    assert_eq!(follow.next_event().unwrap(), None);
    assert!(follow.next().is_none());
    assert_eq!(
        server.join().unwrap(),
        Request::Audit {
            account: Some("prod".into()),
            since_secs: None,
            follow: true,
        }
    );
}

#[test]
fn a_followed_audit_reports_a_daemon_error() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(Response::AuditFollowing {
                events: vec![],
                dropped: 2,
            })
            .send(Response::error(
                ErrorCode::ShuttingDown,
                "samld is stopping",
            )),
        Conn::new().answer(Response::error(ErrorCode::BadRequest, "unknown variant")),
    ]);
    let mut follow = Client::connect_to(&daemon.socket)
        .unwrap()
        .follow_audit(None, None)
        .unwrap();
    assert_eq!(follow.dropped(), 2);
    let err = follow.next_event().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ShuttingDown));
    assert_eq!(follow.next_event().unwrap(), None);
    let err = Client::connect_to(&daemon.socket)
        .unwrap()
        .follow_audit(None, None)
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
}
