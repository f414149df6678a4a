//! The audit through the socket server: hand-outs recorded with the asking process, served
//! with and without follow, shown as last use by status, and never holding a secret.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use samld_proto::{
    AuditKind, CredentialSource, Handout, LoginIntent, PasswordLogin, Request, Response, Secret,
    read_frame, write_frame,
};
use time::macros::datetime;

use crate::clock::ManualClock;
use crate::exec_endpoint::{Endpoint, EndpointOptions};
use crate::manager::{DaemonOptions, Manager};
use crate::server::{ServerOptions, serve};
use crate::test_doubles::{ScriptedIdp, ScriptedProviders, ScriptedSts};

const PASSWORD: &str = "hunter2-known-password";
const ADMIN: &str = "arn:aws:iam::123456789012:role/Admin";

/// The secret key and session token of the login's credentials, the first STS issues.
fn secret_key() -> String {
    ScriptedSts::secret_key(1)
}
fn session_token() -> String {
    ScriptedSts::session_token(1)
}

/// The assertion prod's IdP hands out.
fn assertion() -> Secret {
    scripted_idp().current()
}

/// prod's IdP: a live session offering Admin, and a login that takes [`PASSWORD`] (so that
/// the password passes through the daemon).
fn scripted_idp() -> ScriptedIdp {
    ScriptedIdp {
        password: PASSWORD,
        ..ScriptedIdp::live(&[ADMIN])
    }
}

const CONFIG: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
role = "Admin"
"#;

/// Sends one request on a new connection and returns the final answer.
fn ask(socket: &Path, request: &Request) -> Response {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello: Response = read_frame(&mut stream).unwrap().unwrap();
    assert!(matches!(hello, Response::Hello { .. }));
    write_frame(&mut stream, request).unwrap();
    // The audit comes one frame per event before its final answer.
    let mut events = Vec::new();
    loop {
        match read_frame(&mut stream).unwrap().unwrap() {
            Response::AuditEvent(event) => events.push(event),
            Response::Audit {
                events: rest,
                dropped,
            } => {
                events.extend(rest);
                return Response::Audit { events, dropped };
            }
            other => return other,
        }
    }
}

/// Waits until the audit holds `n` events: a hand-out is recorded just after its answer is
/// sent, so the client may see the answer first.
fn wait_for_events(daemon: &Manager, n: usize) {
    for _ in 0..1000 {
        if daemon.audit().query(None, None).0.len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the audit never reached {n} events");
}

fn get(via: Option<Handout>) -> Request {
    Request::GetCredentials {
        account: "prod".into(),
        role: None,
        interactive: false,
        via,
    }
}

/// A manager logged in to `prod` (with [`PASSWORD`]), holding fresh credentials.
async fn logged_in() -> Arc<Manager> {
    logged_in_with(CONFIG).await
}

/// [`logged_in`] with the config `config`.
async fn logged_in_with(config: &str) -> Arc<Manager> {
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 10:00 UTC)));
    let config = samld_config::parse(config, Path::new("/test/config.toml")).unwrap();
    let mut options = DaemonOptions::new("/test/config.toml".into());
    options.audit_capacity = 100;
    let daemon = Manager::new(
        config,
        options,
        clock.clone(),
        ScriptedSts::new(clock.clone(), std::time::Duration::from_secs(3600)),
        ScriptedProviders::serving(Arc::new(scripted_idp())),
    );
    let intent = LoginIntent::Password(PasswordLogin {
        password: Some(Secret::new(PASSWORD.to_owned())),
        ..PasswordLogin::default()
    });
    daemon.login("prod", intent, None).await.unwrap();
    daemon
}

/// The socket server of `daemon`, on a socket in a directory of its own.
struct Server {
    /// Holds the socket's directory until the server is stopped.
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn start_server(daemon: &Arc<Manager>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("samld.sock");
    let listener = crate::listener::bind_socket(&socket).unwrap();
    let listener = tokio::net::UnixListener::from_std(listener).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        daemon.clone(),
        Endpoint::new(EndpointOptions::default()),
        ServerOptions::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    Server {
        _dir: dir,
        socket,
        stop_tx,
        task,
    }
}

impl Server {
    /// Stops the server and fails the test if it ended in an error.
    async fn stop(self) {
        let _ = self.stop_tx.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Follows prod's audit over `socket`, having read the events so far (the login alone).
fn follow_prod(socket: &Path) -> UnixStream {
    let mut follower = UnixStream::connect(socket).unwrap();
    follower
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _hello: Response = read_frame(&mut follower).unwrap().unwrap();
    let follow = Request::Audit {
        account: Some("prod".into()),
        since_secs: None,
        follow: true,
    };
    write_frame(&mut follower, &follow).unwrap();
    let mut events = Vec::new();
    let dropped = loop {
        match read_frame(&mut follower).unwrap() {
            Some(Response::AuditEvent(event)) => events.push(event),
            Some(Response::AuditFollowing {
                events: rest,
                dropped,
            }) => {
                events.extend(rest);
                break dropped;
            }
            other => panic!("expected the events so far: {other:?}"),
        }
    };
    assert_eq!(dropped, 0);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, AuditKind::Login);
    follower
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_outs_are_recorded_with_their_process_and_no_secret() {
    let daemon = logged_in().await;

    let server = start_server(&daemon);

    let client = {
        let socket = server.socket.clone();
        let daemon = daemon.clone();
        tokio::task::spawn_blocking(move || {
            // A follower first: it must see the hand-outs that come after it.
            let mut follower = follow_prod(&socket);

            let Response::Credentials(creds) = ask(&socket, &get(None)) else {
                panic!("expected credentials");
            };
            assert_eq!(creds.secret_access_key.expose(), secret_key());
            wait_for_events(&daemon, 2);
            assert!(matches!(
                ask(&socket, &get(Some(Handout::Env))),
                Response::Credentials(_)
            ));
            wait_for_events(&daemon, 3);
            let unknown = Request::GetCredentials {
                account: "nope".into(),
                role: Some("Admin".into()),
                interactive: false,
                via: None,
            };
            assert!(matches!(ask(&socket, &unknown), Response::Error(_)));
            wait_for_events(&daemon, 4);

            // The follower saw the two hand-outs to prod, not the one to another account.
            for via in [Handout::Helper, Handout::Env] {
                let Some(Response::AuditEvent(event)) = read_frame(&mut follower).unwrap() else {
                    panic!("expected an event");
                };
                assert_eq!(event.via, Some(via));
            }
            drop(follower);

            let Response::Audit { events, dropped } = ask(
                &socket,
                &Request::Audit {
                    account: None,
                    since_secs: None,
                    follow: false,
                },
            ) else {
                panic!("expected the audit");
            };
            (events, dropped)
        })
    };
    let (events, dropped) = client.await.unwrap();
    assert_eq!(dropped, 0);
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.via)).collect();
    assert_eq!(
        kinds,
        [
            (AuditKind::Login, None),
            (AuditKind::Handout, Some(Handout::Helper)),
            (AuditKind::Handout, Some(Handout::Env)),
            (AuditKind::Handout, Some(Handout::Helper)),
        ]
    );
    let helper = &events[1];
    assert_eq!(helper.account.as_deref(), Some("prod"));
    assert_eq!(helper.role_arn.as_deref(), Some(ADMIN));
    assert_eq!(helper.source, Some(CredentialSource::Memory));
    assert_eq!(helper.error, None);
    assert_eq!(helper.at, "2026-12-01T10:00:00Z");
    // The peer is this very test process.
    let process = helper.process.as_ref().expect("the peer's process");
    assert_eq!(process.pid, std::process::id());
    let failed = &events[3];
    assert_eq!(failed.role_arn.as_deref(), Some("Admin"));
    assert!(failed.error.as_deref().unwrap().contains("nope"));
    assert_eq!(failed.source, None);

    // Status shows the last use: the env hand-out, by this process.
    let status = daemon.status(Some("prod")).unwrap();
    let last = status.accounts[0].roles[0].last_used.clone().unwrap();
    assert_eq!(last.via, Handout::Env);
    assert_eq!(last.by.unwrap().pid, std::process::id());

    // Nothing secret anywhere in the record.
    let serialized = serde_json::to_string(&events).unwrap();
    let assertion = assertion();
    for secret in [
        &secret_key(),
        &session_token(),
        PASSWORD,
        assertion.expose(),
    ] {
        assert!(
            !serialized.contains(secret),
            "{secret} leaked: {serialized}"
        );
    }

    server.stop().await;
}

/// One request to the exec endpoint, written by hand; returns the status code.
fn endpoint_get(addr: std::net::SocketAddr, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_request_with_a_valid_token_is_recorded_for_its_holder() {
    let daemon = logged_in().await;
    let endpoint = Endpoint::new(EndpointOptions::default());
    let holder = samld_proto::ProcessInfo {
        pid: 4242,
        name: "samlctl".into(),
        exe: None,
        command_line: Some("samlctl exec prod -- terraform plan".into()),
    };
    let lease = endpoint
        .issue_to(&daemon, "prod", ADMIN, Some(holder.clone()))
        .await
        .unwrap();
    let addr = lease.addr();
    let token = lease.token().expose().to_owned();
    let url = lease.url().to_owned();
    let path = url[url.find("/v1/").unwrap()..].to_owned();
    let statuses = tokio::task::spawn_blocking(move || {
        [
            endpoint_get(addr, &path, &token),
            endpoint_get(addr, "/v1/credentials/stage", &token),
            // An unknown token proves nothing: refused, and not an event of the lease.
            endpoint_get(addr, &path, "not-the-token"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses, [200, 403, 401]);
    let (events, _) = daemon.audit().query(None, None);
    let handouts: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::Handout)
        .collect();
    assert_eq!(handouts.len(), 2, "{handouts:?}");
    for event in &handouts {
        assert_eq!(event.via, Some(Handout::ExecEndpoint));
        assert_eq!(event.account.as_deref(), Some("prod"));
        assert_eq!(event.role_arn.as_deref(), Some(ADMIN));
        assert_eq!(event.process.as_ref(), Some(&holder));
    }
    assert_eq!(handouts[0].source, Some(CredentialSource::Memory));
    assert_eq!(handouts[0].error, None);
    assert!(handouts[1].error.as_deref().unwrap().contains("stage"));
    let last = daemon.audit().last_use("prod", ADMIN).unwrap();
    assert_eq!((last.via, last.by), (Handout::ExecEndpoint, Some(holder)));
    let serialized = serde_json::to_string(&events).unwrap();
    assert!(!serialized.contains(&secret_key()));
    assert!(!serialized.contains(lease.token().expose()));
    drop(lease);
}

/// A full record is far larger than one frame (1 MiB): it still reaches the client whole,
/// with and without `follow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_record_larger_than_a_frame_is_served_whole() {
    let daemon = logged_in().await;
    let capacity = daemon.audit().capacity();
    // Lines long enough that the harness's ring (a hundred events) outgrows a frame.
    let long_line = "x".repeat(2 * samld_proto::MAX_FRAME_LEN / capacity);
    for _ in 0..capacity {
        let mut record = crate::audit::Record::new(AuditKind::Handout, Some("prod"));
        record.process = Some(samld_proto::ProcessInfo {
            pid: 4711,
            name: "aws".into(),
            exe: None,
            command_line: Some(long_line.clone()),
        });
        daemon.audit().record(record);
    }
    let server = start_server(&daemon);
    let socket = server.socket.clone();
    let asked = tokio::task::spawn_blocking(move || {
        let once = ask(
            &socket,
            &Request::Audit {
                account: None,
                since_secs: None,
                follow: false,
            },
        );
        let mut follower = UnixStream::connect(&socket).unwrap();
        let _: Response = read_frame(&mut follower).unwrap().unwrap();
        write_frame(
            &mut follower,
            &Request::Audit {
                account: None,
                since_secs: None,
                follow: true,
            },
        )
        .unwrap();
        let mut followed = 0;
        let followed = loop {
            match read_frame(&mut follower).unwrap() {
                Some(Response::AuditEvent(_)) => followed += 1,
                Some(Response::AuditFollowing { events, .. }) => break followed + events.len(),
                other => panic!("expected the events so far: {other:?}"),
            }
        };
        (once, followed)
    })
    .await
    .unwrap();
    let (once, followed) = asked;
    let Response::Audit { events, .. } = once else {
        panic!("expected the audit: {once:?}");
    };
    assert_eq!(events.len(), capacity);
    assert!(
        serde_json::to_vec(&events).unwrap().len() > samld_proto::MAX_FRAME_LEN,
        "the record must be larger than a frame for this test to mean anything"
    );
    assert_eq!(followed, capacity);
    server.stop().await;
}

/// An AWS federation endpoint on loopback that signs anyone in: `getSigninToken` answers
/// `{"SigninToken": ...}`, as AWS's does.
async fn federation_endpoint() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/federation",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"SigninToken": "signin"})) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The fields of a hand-out's record that say what was handed out, whatever the path.
fn what_was_handed_out(
    event: &samld_proto::AuditEvent,
) -> (
    Option<&str>,
    Option<&str>,
    Option<CredentialSource>,
    bool,
    bool,
) {
    (
        event.account.as_deref(),
        event.role_arn.as_deref(),
        event.source,
        event.error.is_some(),
        event.process.is_some(),
    )
}

/// The helper, the console and the exec endpoint hand out the same role: their records tell
/// the same things, and so do the helper's and the console's refusals of an unknown role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hand_out_path_records_the_same_fields() {
    let federation = federation_endpoint().await;
    let config = format!("{CONFIG}federation_url = \"http://{federation}/federation\"\n");
    let daemon = logged_in_with(&config).await;
    let server = start_server(&daemon);
    let socket = server.socket.clone();
    tokio::task::spawn_blocking(move || {
        let console = |role: Option<&str>| Request::ConsoleUrl {
            account: "prod".into(),
            role: role.map(str::to_owned),
            session_duration: None,
        };
        assert!(matches!(ask(&socket, &get(None)), Response::Credentials(_)));
        assert!(matches!(
            ask(&socket, &console(None)),
            Response::ConsoleUrl(_)
        ));
        // The exec endpoint: a token, held open while a request uses it.
        let mut exec = UnixStream::connect(&socket).unwrap();
        let _hello: Response = read_frame(&mut exec).unwrap().unwrap();
        let issue = Request::IssueEndpointToken {
            account: "prod".into(),
            role: None,
        };
        write_frame(&mut exec, &issue).unwrap();
        let Some(Response::EndpointToken(token)) = read_frame(&mut exec).unwrap() else {
            panic!("expected an endpoint token");
        };
        let url = url::Url::parse(&token.url).unwrap();
        let addr = url.socket_addrs(|| None).unwrap()[0];
        assert_eq!(endpoint_get(addr, url.path(), token.token.expose()), 200);
        drop(exec);
        let mut unknown_role = get(None);
        if let Request::GetCredentials { role, .. } = &mut unknown_role {
            *role = Some("NoSuchRole".into());
        }
        assert!(matches!(ask(&socket, &unknown_role), Response::Error(_)));
        assert!(matches!(
            ask(&socket, &console(Some("NoSuchRole"))),
            Response::Error(_)
        ));
    })
    .await
    .unwrap();
    // Login, helper, console, the exec token, its request, and the two refusals.
    wait_for_events(&daemon, 7);
    server.stop().await;

    let (events, _) = daemon.audit().query(None, None);
    let handouts: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::Handout)
        .collect();
    // Each is recorded once its answer is sent: in no fixed order.
    let mut recorded: Vec<_> = handouts
        .iter()
        .map(|e| {
            (
                e.role_arn.as_deref() == Some(ADMIN),
                format!("{:?}", e.via),
                *e,
            )
        })
        .collect();
    recorded.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let paths: Vec<_> = recorded.iter().map(|(_, via, _)| via.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Some(Console)",
            "Some(Helper)",
            "Some(Console)",
            "Some(ExecEndpoint)",
            "Some(ExecEndpoint)",
            "Some(Helper)",
        ]
    );
    let refused = (Some("prod"), Some("NoSuchRole"), None, true, true);
    for (_, _, event) in &recorded[..2] {
        assert_eq!(what_was_handed_out(event), refused, "{event:?}");
    }
    let served = (
        Some("prod"),
        Some(ADMIN),
        Some(CredentialSource::Memory),
        false,
        true,
    );
    for (_, _, event) in &recorded[2..] {
        assert_eq!(what_was_handed_out(event), served, "{event:?}");
    }
}
