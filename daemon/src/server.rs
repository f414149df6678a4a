//! The Unix socket server: accepts connections from the daemon's own user only, speaks the
//! framed protocol of `samld-proto`, and hands each request to the [`Manager`].
//!
//! Every connection is its own task, so a slow or silent client holds nothing but its own
//! connection, and every read has a deadline. Shutdown stops accepting, lets requests in
//! flight finish within a bound, then returns.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use samld_proto::{
    ErrorCode, FrameError, Handout, PROTOCOL_VERSION, Request, Response, Secret, SecretKind,
    WireError, decode_body, decode_header, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc, watch};

use crate::audit::{Handed, Record, process};
use crate::exec_endpoint::Endpoint;
use crate::future::BoxFuture;
use crate::idp::IdpError;
use crate::manager::{ClientChannel, Manager};

/// Limits of the socket server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a client may take to send its request after connecting.
    pub request_timeout: Duration,
    /// How long a client may take to answer a question (a password typed by a person).
    pub secret_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            secret_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` until `shutdown` completes or a client sends [`Request::Shutdown`].
/// `endpoint` is the loopback credential endpoint that [`Request::IssueEndpointToken`] hands
/// out tokens for (it listens only while a token exists).
///
/// The listener is bound by the caller (or handed over by systemd), so tests can run the
/// server in-process on a socket of their own. The socket file is the caller's to remove.
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Manager>,
    endpoint: Arc<Endpoint>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (_keep, replacements) = mpsc::channel(1);
    serve_with_replacements(listener, daemon, endpoint, options, shutdown, replacements).await
}

/// [`serve`], taking over each listener sent on `replacements` in place of the current one:
/// when someone deletes the socket file, the daemon binds a new one rather than going deaf.
pub async fn serve_with_replacements(
    mut listener: UnixListener,
    daemon: Arc<Manager>,
    endpoint: Arc<Endpoint>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
    mut replacements: mpsc::Receiver<UnixListener>,
) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // Each connection task holds a clone; when all are dropped, `recv` returns None.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let options = Arc::new(options);
    tokio::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            _ = stop_rx.wait_for(|stop| *stop) => break,
            Some(replacement) = replacements.recv() => {
                tracing::info!("listening on the re-created socket");
                listener = replacement;
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or similar: keep serving the connections we have
                // and try again shortly rather than spinning or exiting.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer_pid = match stream.peer_cred() {
            // For the audit: who asked. Taken now, while the peer surely exists.
            Ok(cred) if cred.uid() == own_uid => cred
                .pid()
                .and_then(|pid| u32::try_from(pid).ok())
                .filter(|pid| *pid > 0),
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid(),
                    pid = ?cred.pid(),
                    "refused a connection from another user"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a connection whose peer is unknown");
                continue;
            }
        };
        let daemon = daemon.clone();
        let options = options.clone();
        let endpoint = endpoint.clone();
        let stop_tx = stop_tx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let (reader, writer) = stream.into_split();
            let mut conn = Connection {
                reader,
                writer,
                options,
                endpoint,
                peer_pid,
            };
            if let Err(e) = conn.handle(&daemon, &stop_tx).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(alive);
        });
    }

    tracing::info!("no longer accepting connections; finishing requests in flight");
    drop(listener);
    // Connections holding an endpoint token wait for this to let go of it.
    let _ = stop_tx.send(true);
    endpoint.shutdown();
    drop(alive_tx);
    if tokio::time::timeout(options.shutdown_grace, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?options.shutdown_grace,
            "requests still running at the end of the grace period were abandoned"
        );
    }
    Ok(())
}

/// What a request gets: an answer, or (for an exec endpoint token) a connection held open
/// for as long as the token is valid.
enum Answer {
    /// One response, then the connection closes.
    Now(Response),
    /// One response that hands credentials out (or refuses to), then its audit event.
    Audited(Response, PendingAudit),
    /// The audit as it is: one frame per event, then the final answer.
    AuditRecord {
        account: Option<String>,
        since_secs: Option<u64>,
    },
    /// The audit so far, then each new event until the client closes the connection.
    AuditFollow {
        account: Option<String>,
        since_secs: Option<u64>,
    },
    /// Issue a token for the account and role, and hold the connection until the client
    /// lets go of it.
    EndpointToken {
        account: String,
        role: Option<String>,
    },
}

/// The most a refused client's leftover bytes are read for, before the connection closes.
const LINGER_TIME: Duration = Duration::from_millis(250);

/// The most of a refused client's leftover bytes that are read and dropped.
const LINGER_BYTES: usize = 64 * 1024;

struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    options: Arc<ServerOptions>,
    endpoint: Arc<Endpoint>,
    /// The peer's process id, when the OS told.
    peer_pid: Option<u32>,
}

/// A hand-out's audit event, waiting for the answer to be sent: the peer itself is read
/// before (`samld-helper` exits as soon as it has the answer, and a zombie's `/proc` entry
/// has no command line), its parents after (they outlive it, and the client should not wait
/// for them to be read).
struct PendingAudit {
    record: Record,
    /// The peer's parent, where the ancestry starts.
    ppid: Option<u32>,
}

impl PendingAudit {
    /// Reads the process `pid` into `record` now.
    fn new(mut record: Record, pid: Option<u32>) -> Self {
        let peer = pid.and_then(|pid| process::inspect(pid, process::COMMAND_LINE_LIMIT));
        let ppid = peer.as_ref().map(|p| p.ppid);
        record.process = peer.map(|p| p.info);
        Self { record, ppid }
    }

    /// Reads the ancestry and records the event.
    fn finish(self, daemon: &Manager) {
        let mut record = self.record;
        if let Some(ppid) = self.ppid {
            record.ancestry = process::ancestry_from(ppid, process::ANCESTRY_LEVELS);
        }
        daemon.audit().record(record);
    }
}

impl Connection {
    async fn handle(
        &mut self,
        daemon: &Arc<Manager>,
        stop: &watch::Sender<bool>,
    ) -> io::Result<()> {
        self.send(&Response::Hello {
            protocol_version: PROTOCOL_VERSION,
            daemon_version: samld_proto::CRATE_VERSION.to_string(),
            pid: std::process::id(),
        })
        .await?;
        let request = match self.receive(self.options.request_timeout).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(e) => {
                let response = Response::error(ErrorCode::BadRequest, e.to_string());
                // The client may be gone already; it is told if it still listens.
                let _ = self.send(&response).await;
                self.linger_after_refusal().await;
                return Ok(());
            }
        };
        match self.dispatch(daemon, request, stop).await {
            Answer::Now(response) => self.send(&response).await,
            Answer::Audited(response, pending) => {
                let sent = self.send(&response).await;
                // Recorded whether or not the client read it: it was handed out.
                pending.finish(daemon);
                sent
            }
            Answer::AuditRecord {
                account,
                since_secs,
            } => {
                let (events, dropped) = daemon.audit().query(account.as_deref(), since_secs);
                self.send_events(events).await?;
                self.send(&Response::Audit {
                    events: Vec::new(),
                    dropped,
                })
                .await
            }
            Answer::AuditFollow {
                account,
                since_secs,
            } => {
                self.audit_follow(daemon, account.as_deref(), since_secs, stop)
                    .await
            }
            Answer::EndpointToken { account, role } => {
                self.endpoint_token(daemon, &account, role.as_deref(), stop)
                    .await
            }
        }
    }

    /// Credentials for a helper or an exec endpoint, audited whether or not they came; an
    /// interactive request lets the daemon ask this connection's person for a sign-in.
    async fn get_credentials(
        &mut self,
        daemon: &Arc<Manager>,
        account: &str,
        role: Option<&str>,
        interactive: bool,
        via: Option<Handout>,
    ) -> Answer {
        let peer_pid = self.peer_pid;
        let channel: Option<&mut dyn ClientChannel> = if interactive { Some(self) } else { None };
        let result = daemon.get_credentials_traced(account, role, channel).await;
        let record = Record::handout_result(via.unwrap_or(Handout::Helper), account, role, &result);
        let response = match result {
            Ok((creds, _)) => Response::Credentials(creds),
            Err(e) => Response::Error(e),
        };
        Answer::Audited(response, PendingAudit::new(record, peer_pid))
    }

    /// A console sign-in URL, audited with the role whose credentials reached the federation
    /// endpoint.
    async fn console_url(
        &self,
        daemon: &Arc<Manager>,
        account: &str,
        role: Option<&str>,
        session_duration: Option<u32>,
    ) -> Answer {
        let mut handed_out = None;
        let result = crate::console::console_url_traced(
            daemon,
            account,
            role,
            session_duration,
            &mut handed_out,
        )
        .await;
        // The role whose credentials went to the federation endpoint, even when the
        // sign-in failed after that; else the one asked for.
        let record = Record::handout(
            Handout::Console,
            account,
            role,
            handed_out.as_ref().map(|(role_arn, source)| Handed {
                role_arn,
                source: *source,
            }),
            result.as_ref().err().map(|e| e.message.as_str()),
        );
        let response = match result {
            Ok(signin) => Response::ConsoleUrl(signin),
            Err(e) => Response::Error(e),
        };
        Answer::Audited(response, PendingAudit::new(record, self.peer_pid))
    }

    async fn dispatch(
        &mut self,
        daemon: &Arc<Manager>,
        request: Request,
        stop: &watch::Sender<bool>,
    ) -> Answer {
        Answer::Now(match request {
            Request::Status { account } => match daemon.status(account.as_deref()) {
                Ok(report) => Response::Status(report),
                Err(e) => Response::Error(e),
            },
            Request::GetCredentials {
                account,
                role,
                interactive,
                via,
            } => {
                return self
                    .get_credentials(daemon, &account, role.as_deref(), interactive, via)
                    .await;
            }
            Request::Login(login) => {
                let channel: Option<&mut dyn ClientChannel> = if login.intent.interactive() {
                    Some(self)
                } else {
                    None
                };
                match daemon.login(&login.account, login.intent, channel).await {
                    Ok(outcome) => Response::LoggedIn(outcome),
                    Err(e) => Response::Error(e),
                }
            }
            Request::ProvideSecret { .. } => Response::error(
                ErrorCode::BadRequest,
                "a secret was sent without being asked for",
            ),
            Request::Logout { account } => match daemon.logout(account.as_deref()) {
                Ok(outcome) => Response::LoggedOut(outcome),
                Err(e) => Response::Error(e),
            },
            Request::ForgetPassword { account } => match daemon.forget_password(&account).await {
                Ok(removed) => Response::PasswordForgotten { account, removed },
                Err(e) => Response::Error(e),
            },
            Request::Refresh { account } => match daemon.refresh(&account).await {
                Ok(roles) => Response::Refreshed { account, roles },
                Err(e) => Response::Error(e),
            },
            Request::BrowserPlan { account } => match daemon.browser_plan(&account) {
                Ok(plan) => Response::BrowserPlan(plan),
                Err(e) => Response::Error(e),
            },
            Request::Roles { account } => match daemon.roles(&account) {
                Ok(roles) => Response::Roles { account, roles },
                Err(e) => Response::Error(e),
            },
            Request::Shutdown => {
                tracing::info!("shutdown requested by a client");
                let _ = stop.send(true);
                Response::ShuttingDown
            }
            Request::ConsoleUrl {
                account,
                role,
                session_duration,
            } => {
                return self
                    .console_url(daemon, &account, role.as_deref(), session_duration)
                    .await;
            }
            Request::Audit {
                account,
                since_secs,
                follow: true,
            } => {
                return Answer::AuditFollow {
                    account,
                    since_secs,
                };
            }
            Request::Audit {
                account,
                since_secs,
                follow: false,
            } => {
                return Answer::AuditRecord {
                    account,
                    since_secs,
                };
            }
            // Not one answer: the token lives as long as this connection.
            Request::IssueEndpointToken { account, role } => {
                return Answer::EndpointToken { account, role };
            }
        })
    }

    /// After refusing a frame, lets the client read why. Closing a Unix socket with bytes
    /// still unread resets it, and the client would see "connection reset" instead of the
    /// answer: so the answer is followed by end of stream, and what the client still sends
    /// is read and dropped, within [`LINGER_BYTES`] and [`LINGER_TIME`] (a client cannot hold
    /// the connection open this way).
    async fn linger_after_refusal(&mut self) {
        let _ = self.writer.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        let drain = async {
            while left > 0 {
                match self.reader.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }

    /// Sends audit events one frame each: the whole record (1,000 events of up to a few KiB)
    /// is far larger than one frame may be.
    async fn send_events(&mut self, events: Vec<samld_proto::AuditEvent>) -> io::Result<()> {
        for event in events {
            self.send(&Response::AuditEvent(event)).await?;
        }
        Ok(())
    }

    async fn send(&mut self, response: &Response) -> io::Result<()> {
        write_response(&mut self.writer, response).await
    }

    /// Reads one request. `Ok(None)` is a client that closed without sending anything.
    async fn receive(&mut self, within: Duration) -> Result<Option<Request>, FrameError> {
        match tokio::time::timeout(within, read_request(&mut self.reader)).await {
            Ok(result) => result,
            Err(_) => Err(FrameError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no request within {}s", within.as_secs()),
            ))),
        }
    }
}

/// `samlctl exec`: the one request whose connection outlives its answer.
impl Connection {
    /// Issues an endpoint token for the role (after checking that credentials can be had at
    /// all, so that `samlctl exec` fails before it starts anything), then holds it until the
    /// client closes the connection or sends anything more, or the daemon stops.
    async fn endpoint_token(
        &mut self,
        daemon: &Arc<Manager>,
        account: &str,
        role: Option<&str>,
        stop: &watch::Sender<bool>,
    ) -> io::Result<()> {
        let found = daemon.get_credentials_traced(account, role, None).await;
        let record = Record::handout_result(Handout::ExecEndpoint, account, role, &found);
        let pending = PendingAudit::new(record, self.peer_pid);
        let creds = match found {
            Ok((creds, _)) => creds,
            Err(e) => {
                let sent = self.send(&Response::Error(e)).await;
                pending.finish(daemon);
                return sent;
            }
        };
        // The process of `samlctl exec` is named by every request its children make.
        let holder = pending.record.process.clone();
        let lease = match self
            .endpoint
            .issue_to(daemon, &creds.account, &creds.role_arn, holder)
            .await
        {
            Ok(lease) => lease,
            Err(e) => {
                let e = WireError::new(ErrorCode::Internal, e.to_string());
                let mut pending = pending;
                pending.record.not_handed_out(&e.message);
                let sent = self.send(&Response::Error(e)).await;
                pending.finish(daemon);
                return sent;
            }
        };
        self.send(&Response::EndpointToken(samld_proto::EndpointToken {
            url: lease.url().to_owned(),
            token: lease.token().clone(),
            account: creds.account.clone(),
            role_arn: creds.role_arn.clone(),
            region: creds.region.clone(),
        }))
        .await?;
        pending.finish(daemon);
        let mut stopping = stop.subscribe();
        let mut byte = [0u8; 1];
        tokio::select! {
            // EOF, an error or any byte at all: the client is done with the token.
            _ = self.reader.read(&mut byte) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        drop(lease);
        Ok(())
    }
}

async fn write_response(writer: &mut OwnedWriteHalf, response: &Response) -> io::Result<()> {
    let frame = encode_frame(response).map_err(io::Error::other)?;
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// `samlctl audit --follow`: the other request whose connection outlives its first answer.
impl Connection {
    /// Sends the events kept, then each new one for `account`, until the client closes the
    /// connection (or sends anything) or the daemon stops. A follower too slow for the
    /// events misses some (they stay in the record) and goes on.
    async fn audit_follow(
        &mut self,
        daemon: &Manager,
        account: Option<&str>,
        since_secs: Option<u64>,
        stop: &watch::Sender<bool>,
    ) -> io::Result<()> {
        let (events, dropped, mut events_rx) =
            daemon.audit().query_and_subscribe(account, since_secs);
        self.send_events(events).await?;
        self.send(&Response::AuditFollowing {
            events: Vec::new(),
            dropped,
        })
        .await?;
        let mut stopping = stop.subscribe();
        // Mapped to `()`: the `Ref` it yields must not be held across the sends below.
        let stopped = async {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        let mut byte = [0u8; 1];
        // Borrowed apart: the read waits across the loop while the writer sends.
        let (reader, writer) = (&mut self.reader, &mut self.writer);
        let closed = reader.read(&mut byte);
        tokio::pin!(closed);
        loop {
            tokio::select! {
                // EOF, an error or any byte at all: the client is done.
                _ = &mut closed => return Ok(()),
                _ = &mut stopped => return Ok(()),
                event = events_rx.recv() => match event {
                    Ok(event) => {
                        if crate::audit::matches(&event, account) {
                            write_response(writer, &Response::AuditEvent(event)).await?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "an audit follower fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}

async fn read_request(reader: &mut OwnedReadHalf) -> Result<Option<Request>, FrameError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    // The length is checked before anything is allocated for the body.
    let len = decode_header(header)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    decode_body(&mut body).map(Some)
}

impl ClientChannel for Connection {
    fn ask<'a>(
        &'a mut self,
        kind: SecretKind,
        prompt: &'a str,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            self.send(&Response::NeedSecret {
                kind,
                prompt: prompt.to_string(),
            })
            .await
            .map_err(|_| IdpError::Cancelled)?;
            match self.receive(self.options.secret_timeout).await {
                Ok(Some(Request::ProvideSecret { kind: got, value })) if got == kind => Ok(value),
                Ok(Some(_)) => {
                    let _ = self
                        .send(&Response::Error(WireError::new(
                            ErrorCode::BadRequest,
                            "expected the secret that was asked for",
                        )))
                        .await;
                    Err(IdpError::Cancelled)
                }
                Ok(None) | Err(_) => Err(IdpError::Cancelled),
            }
        })
    }

    fn tell<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self
                .send(&Response::Progress {
                    message: message.to_string(),
                })
                .await;
        })
    }
}
