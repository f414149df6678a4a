//! The socket server in-process, on a socket in a temp dir: framing, hostile clients,
//! concurrency and shutdown.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use samld::clock::SystemClock;
use samld::exec_endpoint::{Endpoint, EndpointOptions};
use samld::keyring::{InMemoryStore, KeyringError, PasswordStore};
use samld::manager::{DaemonOptions, Manager, ProviderFactory};
use samld::server::{ServerOptions, serve};
use samld_config::Config;
use samld_proto::{
    ErrorCode, LoginIntent, LoginRequest, PROTOCOL_VERSION, PasswordLogin, Request, Response,
    Secret, SecretKind, read_frame, write_frame,
};
use tokio::sync::oneshot;

use common::{ScriptedIdp, ScriptedProviders, ScriptedSts};

struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    daemon: Arc<Manager>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(options: ServerOptions) -> Self {
        Self::start_with(options, Config::default(), None).await
    }

    /// A server for `config`, with `store` as its keyring (none if `None`).
    async fn start_with(
        options: ServerOptions,
        config: Config,
        store: Option<Arc<dyn PasswordStore>>,
    ) -> Self {
        Self::start_with_idp(options, config, store, ScriptedProviders::none()).await
    }

    /// [`Server::start_with`], with the IdP `idp` makes.
    async fn start_with_idp(
        options: ServerOptions,
        config: Config,
        store: Option<Arc<dyn PasswordStore>>,
        idp: Arc<dyn ProviderFactory>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("samld.sock");
        let listener = samld::listener::bind_socket(&socket).unwrap();
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        let daemon = Manager::new(
            config,
            DaemonOptions {
                password_store: store,
                ..DaemonOptions::new(dir.path().join("config.toml"))
            },
            Arc::new(SystemClock),
            ScriptedSts::new(Arc::new(SystemClock), Duration::from_secs(3600)),
            idp,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let endpoint = Endpoint::new(EndpointOptions::default());
        let task = tokio::spawn(serve(listener, daemon.clone(), endpoint, options, async {
            let _ = stopped.await;
        }));
        Server {
            _dir: dir,
            socket,
            daemon,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Connects and reads the daemon's hello, as every client does.
fn connect(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match read_frame::<_, Response>(&mut stream).unwrap() {
        Some(Response::Hello {
            protocol_version, ..
        }) => assert_eq!(protocol_version, PROTOCOL_VERSION),
        other => panic!("expected hello, got {other:?}"),
    }
    stream
}

fn request(socket: &Path, request: &Request) -> Response {
    let mut stream = connect(socket);
    write_frame(&mut stream, request).unwrap();
    read_frame(&mut stream).unwrap().unwrap()
}

async fn status_works(socket: &Path) {
    let socket = socket.to_owned();
    let response =
        tokio::task::spawn_blocking(move || request(&socket, &Request::Status { account: None }))
            .await
            .unwrap();
    match response {
        Response::Status(report) => assert_eq!(report.daemon.protocol_version, PROTOCOL_VERSION),
        other => panic!("expected status, got {other:?}"),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_then_status() {
    let server = Server::start(ServerOptions::default()).await;
    status_works(&server.socket).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_bad_request_and_the_daemon_carries_on() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let response = blocking(move || {
        let mut stream = connect(&socket);
        let garbage = b"\x00\x00\x00\x10this is not json";
        stream.write_all(garbage).unwrap();
        read_frame::<_, Response>(&mut stream).unwrap().unwrap()
    })
    .await;
    match response {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(!e.message.contains("this is not json"), "{}", e.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Bytes that are not even a plausible header.
    let socket = server.socket.clone();
    blocking(move || {
        let mut stream = connect(&socket);
        let _ = stream.write_all(&[0xff; 64]);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    })
    .await;
    status_works(&server.socket).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_without_reading_it() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let response = blocking(move || {
        let mut stream = connect(&socket);
        // Announce 512 MiB and send only a little: the daemon must answer at once rather
        // than wait for (or allocate) the body.
        stream.write_all(&(512u32 << 20).to_be_bytes()).unwrap();
        stream.write_all(b"{\"type\":").unwrap();
        read_frame::<_, Response>(&mut stream).unwrap().unwrap()
    })
    .await;
    match response {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains("larger than the limit"), "{}", e.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    status_works(&server.socket).await;
    server.shutdown().await;
}

/// Makes `stream`'s writes wait for the daemon to read, a few KiB at a time.
fn small_send_buffer(stream: &UnixStream) {
    let size: libc::c_int = 4096;
    // SAFETY: a valid socket descriptor, and a c_int option value of the size given.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

/// A refused client still sending its frame (here 24 KiB of a body too large to take,
/// through a small send buffer) finishes sending, reads why, then the end of the stream: the
/// daemon reads and drops the rest before it closes, where closing at once would fail the
/// client's write and it would never see the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_finishes_sending_and_reads_why() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let (sent, response, rest) = blocking(move || {
        let mut stream = connect(&socket);
        small_send_buffer(&stream);
        let sent = stream
            .write_all(&(512u32 << 20).to_be_bytes())
            .and_then(|()| stream.write_all(&[b'x'; 24 * 1024]));
        let response = read_frame::<_, Response>(&mut stream);
        let mut rest = Vec::new();
        let rest = stream.read_to_end(&mut rest).map(|_| rest);
        (sent, response, rest)
    })
    .await;
    sent.expect("the whole frame was sent");
    match response {
        Ok(Some(Response::Error(e))) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(rest.expect("a clean end of stream"), b"");
    server.shutdown().await;
}

/// ...but a refused client cannot hold the connection by sending on: past 64 KiB of leftovers
/// the daemon closes, and the client's writes fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_cannot_hold_the_connection_by_sending() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let (sent, error) = blocking(move || {
        let mut stream = connect(&socket);
        small_send_buffer(&stream);
        stream.write_all(&(512u32 << 20).to_be_bytes()).unwrap();
        let mut sent = 0usize;
        let chunk = [b'x'; 4096];
        loop {
            match stream.write(&chunk) {
                Ok(n) if sent < 64 << 20 => sent += n,
                Ok(_) => return (sent, None),
                Err(e) => return (sent, Some(e)),
            }
        }
    })
    .await;
    assert!(
        error.is_some(),
        "the daemon read {sent} bytes and kept reading"
    );
    // 64 KiB dropped, plus what the socket buffers held when it closed.
    assert!(
        sent < 1 << 20,
        "the daemon read {sent} bytes before it closed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_timed_out_and_blocks_nobody() {
    let options = ServerOptions {
        request_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = Server::start(options).await;
    let socket = server.socket.clone();
    let silent = blocking(move || connect(&socket)).await;
    // While it sits there, others are served.
    status_works(&server.socket).await;
    let response = blocking(move || {
        let mut silent = silent;
        read_frame::<_, Response>(&mut silent).unwrap()
    })
    .await;
    match response {
        Some(Response::Error(e)) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains("no request within"), "{}", e.message);
        }
        other => panic!("expected a timeout error, got {other:?}"),
    }
    server.shutdown().await;
}

/// Connections are served side by side: with the request timeout far away, clients that
/// say nothing hold their connections open while another client is answered. A server that
/// handled one connection at a time would sit on the first silent one for 30 s; the test's
/// own limit fails it long before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_hold_up_another_clients_answer() {
    let options = ServerOptions {
        request_timeout: Duration::from_secs(30),
        ..ServerOptions::default()
    };
    let server = Server::start(options).await;
    let socket = server.socket.clone();
    let silent = blocking(move || (0..3).map(|_| connect(&socket)).collect::<Vec<_>>()).await;
    tokio::time::timeout(Duration::from_secs(10), status_works(&server.socket))
        .await
        .expect("a status request was answered while silent clients were connected");
    let silent = blocking(move || {
        for mut stream in silent.iter() {
            // Still open and still unanswered: the answer above did not wait for them to be
            // timed out.
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let read = stream.read(&mut byte);
            assert!(
                matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "a silent client was already answered or closed: {read:?}"
            );
        }
        silent
    })
    .await;
    drop(silent);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_frame_is_dropped() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    blocking(move || {
        let mut stream = connect(&socket);
        stream.write_all(&100u32.to_be_bytes()).unwrap();
        stream.write_all(b"{\"type\":\"sta").unwrap();
        // Dropped here, 86 bytes short.
    })
    .await;
    let socket = server.socket.clone();
    blocking(move || {
        // Nothing at all, then the end: nothing to answer, and no error.
        let mut stream = connect(&socket);
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let reply = read_frame::<_, Response>(&mut stream).unwrap();
        assert!(reply.is_none(), "{reply:?}");
        let mut stream = connect(&socket);
        stream.write_all(&[0, 0]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        // The daemon answers a truncated header with an error, then closes.
        let reply = read_frame::<_, Response>(&mut stream).unwrap();
        assert!(matches!(reply, Some(Response::Error(_))), "{reply:?}");
    })
    .await;
    status_works(&server.socket).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_at_once() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let answered = blocking(move || {
        // Open them all before sending anything, so that the daemon holds 1,000 at once.
        let streams: Vec<UnixStream> = (0..1000).map(|_| connect(&socket)).collect();
        streams
            .into_iter()
            .map(|mut s| {
                write_frame(&mut s, &Request::Status { account: None }).unwrap();
                s
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter(|s| {
                let mut s = s;
                matches!(
                    read_frame::<_, Response>(&mut s),
                    Ok(Some(Response::Status(_)))
                )
            })
            .count()
    })
    .await;
    assert_eq!(answered, 1000);
    status_works(&server.socket).await;
    server.shutdown().await;
}

/// Every hand-out is audited with the process that asked, refused ones too: the record
/// holds it, a follower is sent what came before and then each new one as it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_outs_are_audited_with_the_process_that_asked() {
    let server = Server::start(ServerOptions::default()).await;
    let ask = |account: &'static str| {
        let socket = server.socket.clone();
        blocking(move || {
            let get = Request::GetCredentials {
                account: account.into(),
                role: None,
                interactive: false,
                via: None,
            };
            assert!(matches!(request(&socket, &get), Response::Error(_)));
        })
    };
    let asked_by_us = |event: &samld_proto::AuditEvent, account: &str| {
        assert_eq!(event.account.as_deref(), Some(account), "{event:?}");
        assert!(event.error.is_some(), "{event:?}");
        let process = event.process.as_ref().expect("the asking process");
        assert_eq!(process.pid, std::process::id(), "{event:?}");
    };
    ask("first").await;
    let socket = server.socket.clone();
    let (mut follower, before) = blocking(move || {
        let mut stream = connect(&socket);
        let follow = Request::Audit {
            account: None,
            since_secs: None,
            follow: true,
        };
        write_frame(&mut stream, &follow).unwrap();
        let before = read_frame::<_, Response>(&mut stream).unwrap();
        let following = read_frame::<_, Response>(&mut stream).unwrap();
        assert!(
            matches!(following, Some(Response::AuditFollowing { .. })),
            "{following:?}"
        );
        (stream, before)
    })
    .await;
    let Some(Response::AuditEvent(event)) = before else {
        panic!("expected the earlier event, got {before:?}")
    };
    asked_by_us(&event, "first");
    ask("second").await;
    let live = blocking(move || read_frame::<_, Response>(&mut follower).unwrap()).await;
    let Some(Response::AuditEvent(event)) = live else {
        panic!("expected the new event, got {live:?}")
    };
    asked_by_us(&event, "second");
    // The record: one frame per event, then the answer.
    let socket = server.socket.clone();
    let events = blocking(move || {
        let mut stream = connect(&socket);
        let all = Request::Audit {
            account: None,
            since_secs: None,
            follow: false,
        };
        write_frame(&mut stream, &all).unwrap();
        let mut events = Vec::new();
        loop {
            match read_frame::<_, Response>(&mut stream).unwrap() {
                Some(Response::AuditEvent(event)) => events.push(event),
                Some(Response::Audit { .. }) => return events,
                other => panic!("expected the record, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(events.len(), 2, "{events:?}");
    server.shutdown().await;
}

/// A login at a terminal asks through the connection for what it needs: the secret asked for
/// reaches the IdP, anything else is refused, and what the IdP says is passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_asks_the_client_for_the_secret_it_needs() {
    let config = samld_config::parse(
        "[accounts.prod]\nurl = \"https://sso.jumpcloud.com/saml2/prod\"\nusername = \"alice@example.com\"\n",
        Path::new("/test/config.toml"),
    )
    .unwrap();
    // Its session has ended, and the person denies the push the login sends.
    let idp = Arc::new(ScriptedIdp {
        push_denied: true,
        ..ScriptedIdp::default()
    });
    let server = Server::start_with_idp(
        ServerOptions::default(),
        config,
        None,
        ScriptedProviders::serving(idp.clone()),
    )
    .await;
    let login = |answer: SecretKind| {
        let socket = server.socket.clone();
        blocking(move || {
            let mut stream = connect(&socket);
            let login = Request::Login(LoginRequest {
                account: "prod".into(),
                intent: LoginIntent::Password(PasswordLogin {
                    interactive: true,
                    ..PasswordLogin::default()
                }),
            });
            write_frame(&mut stream, &login).unwrap();
            let asked = read_frame::<_, Response>(&mut stream).unwrap();
            assert!(
                matches!(
                    asked,
                    Some(Response::NeedSecret {
                        kind: SecretKind::Password,
                        ..
                    })
                ),
                "{asked:?}"
            );
            let provide = Request::ProvideSecret {
                kind: answer,
                value: Secret::new("correct horse"),
            };
            write_frame(&mut stream, &provide).unwrap();
            let mut answers = Vec::new();
            while let Some(response) = read_frame::<_, Response>(&mut stream).unwrap() {
                let last = response.is_final();
                answers.push(response);
                if last {
                    break;
                }
            }
            answers
        })
    };
    // A code where the password was asked for: refused, and nothing reaches the IdP.
    let answers = login(SecretKind::MfaCode).await;
    assert!(
        matches!(&answers[0], Response::Error(e) if e.message.contains("expected the secret that was asked for")),
        "{answers:?}"
    );
    assert!(idp.given.lock().unwrap().is_empty());
    let answers = login(SecretKind::Password).await;
    assert_eq!(*idp.given.lock().unwrap(), ["correct horse"]);
    assert!(
        matches!(&answers[0], Response::Progress { message } if message == "Approve the push"),
        "{answers:?}"
    );
    assert!(
        matches!(answers.last(), Some(Response::Error(_))),
        "{answers:?}"
    );
    server.shutdown().await;
}

/// `samlctl exec` asking for an endpoint token it cannot have is told why (and the refusal
/// is audited as the endpoint's), rather than left with a closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_token_for_an_unknown_account_is_refused_with_the_reason() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    // The refusal is recorded once it is sent: the test waits for the record itself.
    let (before, _, mut recorded) = server.daemon.audit().query_and_subscribe(None, None);
    assert_eq!(before.len(), 0, "{before:?}");
    let response = blocking(move || {
        let issue = Request::IssueEndpointToken {
            account: "nope".into(),
            role: None,
        };
        request(&socket, &issue)
    })
    .await;
    assert!(
        matches!(&response, Response::Error(e) if e.code == ErrorCode::UnknownAccount),
        "{response:?}"
    );
    let event = tokio::time::timeout(Duration::from_secs(10), recorded.recv())
        .await
        .expect("the refusal was never recorded")
        .unwrap();
    assert_eq!(event.via, Some(samld_proto::Handout::ExecEndpoint));
    let (events, _, _) = server.daemon.audit().query_and_subscribe(None, None);
    assert_eq!(events.len(), 1, "{events:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_account_lists_the_known_ones() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let response = blocking(move || {
        request(
            &socket,
            &Request::GetCredentials {
                account: "nope".into(),
                role: None,
                interactive: false,
                via: None,
            },
        )
    })
    .await;
    match response {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnknownAccount);
            assert!(
                e.message.contains("no accounts are configured"),
                "{}",
                e.message
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_request_stops_the_server() {
    let server = Server::start(ServerOptions::default()).await;
    let socket = server.socket.clone();
    let response = blocking(move || request(&socket, &Request::Shutdown)).await;
    assert_eq!(response, Response::ShuttingDown);
    let mut server = server;
    let task = server.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after a shutdown request")
        .unwrap()
        .unwrap();
}

/// `samlctl password forget`: the request removes the account's saved password (only its
/// own), says whether there was one, and explains a keyring that fails or is absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_password_removes_the_saved_password() {
    let config = samld_config::parse(
        "[defaults]\nurl = \"https://sso.jumpcloud.com/saml2/x\"\n\
         [accounts.prod]\nusername = \"alice@example.com\"\n\
         [accounts.dev]\nusername = \"alice@example.com\"\n",
        Path::new("/config.toml"),
    )
    .unwrap();
    let memory = Arc::new(InMemoryStore::new());
    memory
        .set("prod", "alice@example.com", &Secret::new("pw-prod"))
        .unwrap();
    memory
        .set("dev", "alice@example.com", &Secret::new("pw-dev"))
        .unwrap();
    let server = Server::start_with(ServerOptions::default(), config, Some(memory.clone())).await;
    let forget = |account: &str| {
        let socket = server.socket.clone();
        let request_ = Request::ForgetPassword {
            account: account.into(),
        };
        blocking(move || request(&socket, &request_))
    };

    assert_eq!(
        forget("prod").await,
        Response::PasswordForgotten {
            account: "prod".into(),
            removed: true
        }
    );
    assert_eq!(memory.get("prod", "alice@example.com").unwrap(), None);
    assert_eq!(
        memory.get("dev", "alice@example.com").unwrap(),
        Some(Secret::new("pw-dev")),
        "another account's password stays"
    );
    assert_eq!(
        forget("prod").await,
        Response::PasswordForgotten {
            account: "prod".into(),
            removed: false
        }
    );
    match forget("nope").await {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::UnknownAccount, "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    memory.fail_with(Some(KeyringError::Locked));
    match forget("dev").await {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::KeyringError, "{e}");
            assert!(e.message.contains("locked"), "{e}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    server.shutdown().await;
}
