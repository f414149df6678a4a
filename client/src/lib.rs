//! Blocking client for the samld daemon, used by `samlctl` and `samld-helper`.
//!
//! One [`Client`] is one connection, and one connection carries one request: the daemon
//! greets with [`Response::Hello`], [`Client::connect`] checks the protocol version, and each
//! request method consumes the client, reads until the final response and hands back its
//! payload. Logins can interleave [`Response::Progress`] (relayed to a callback) and
//! [`Response::NeedSecret`] (answered through a [`SecretPrompter`]).
//!
//! [`ConnectOptions::from_env`] (and so [`Client::connect`]) starts samld when nobody
//! answers, unless `SAMLD_NO_AUTOSTART=1` ([`autostart`]); [`service`](lifecycle::service)
//! installs it under systemd or launchd instead.
//!
//! The library uses only `std`, `serde_json` (through the proto crate) and `libc`, so that
//! `samld-helper`, which starts on every AWS CLI call, stays small and quick.
//!
//! ```no_run
//! use samld_client::{Client, NoPrompter};
//!
//! let creds = Client::connect()?.get_credentials("production", None, false, None, &mut NoPrompter, &mut |_| {})?;
//! println!("{}", creds.to_credential_process_json());
//! # Ok::<(), samld_client::ClientError>(())
//! ```

use std::fmt;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use samld_proto::{
    BrowserPlan, Credentials, ErrorCode, FrameError, Handout, LoginOutcome, LoginRequest,
    LogoutOutcome, PROTOCOL_VERSION, Request, Response, RoleInfo, RoleStatus, Secret, SecretKind,
    SocketPathError, StatusReport, WireError, read_frame, write_frame,
};

pub use crate::audit::AuditFollow;
use crate::lifecycle::autostart;

pub mod audit;
pub mod awsconfig;
pub mod browser;
pub mod console;
pub mod env;
pub mod exec;
mod files;
pub mod import;
mod ini;
pub mod lifecycle;
pub mod timestamp;
pub mod tty;

/// How long a client waits for each frame from the daemon before giving up.
///
/// It bounds a stuck daemon, not a slow login: the daemon sends [`Response::Progress`] while
/// it waits on JumpCloud, and every frame restarts the clock.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the daemon said about itself when the connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonHello {
    /// The daemon's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The daemon's release version.
    pub daemon_version: String,
    /// The daemon's process id.
    pub pid: u32,
}

/// Why a request to the daemon failed.
///
/// Programs decide on the variant and, for [`ClientError::Daemon`], on the [`ErrorCode`]
/// (see [`ClientError::code`]); the `Display` text is for people.
#[derive(Debug)]
pub enum ClientError {
    /// The socket path could not be determined from the environment.
    SocketPath(SocketPathError),
    /// Nothing listens on the socket: the file is missing, or it is stale and refuses
    /// connections.
    DaemonNotRunning {
        /// The socket that was tried.
        socket: PathBuf,
    },
    /// The socket (or its directory) is not ours to open.
    PermissionDenied {
        /// The socket that was tried.
        socket: PathBuf,
    },
    /// The process behind the socket runs as another user. Nothing was sent to it: it could
    /// be waiting to collect passwords.
    ForeignDaemon {
        /// The socket that was tried.
        socket: PathBuf,
        /// The uid of the process that answered.
        peer_uid: u32,
        /// Our own uid.
        our_uid: u32,
    },
    /// The daemon speaks another protocol version; it has to be restarted.
    VersionMismatch {
        /// The program that tried to connect (`samlctl`, `samld-helper`).
        client: &'static str,
        /// What the daemon said about itself.
        daemon: DaemonHello,
    },
    /// The conversation with the daemon broke: a bad, oversized or truncated frame.
    Protocol(FrameError),
    /// The daemon closed the connection before its final answer.
    Closed,
    /// The daemon answered with a response this request does not expect.
    UnexpectedResponse {
        /// What the request expected.
        expected: &'static str,
        /// The `type` of what came instead.
        got: &'static str,
    },
    /// The daemon did not answer within the timeout.
    Timeout {
        /// The timeout in force.
        after: Duration,
    },
    /// The daemon refused the request. The code says why; the message says what to do.
    Daemon(WireError),
    /// No daemon answered and starting one failed (see [`autostart`]).
    Autostart(autostart::AutostartError),
    /// The daemon asked for a secret and the prompter could not provide it.
    Prompt {
        /// What the daemon asked for.
        kind: SecretKind,
        /// Why there is no answer.
        error: PromptError,
    },
    /// The socket failed in some other way.
    Io {
        /// The socket in use.
        socket: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

impl ClientError {
    /// The daemon's error code, for errors the daemon itself sent (`VersionMismatch` maps
    /// to [`ErrorCode::VersionMismatch`] too, since it means the same to a caller).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Daemon(e) => Some(e.code),
            ClientError::VersionMismatch { .. } => Some(ErrorCode::VersionMismatch),
            _ => None,
        }
    }

    /// True when no daemon could be reached at all (as opposed to one that answered).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::DaemonNotRunning { .. })
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::SocketPath(e) => write!(f, "cannot locate the samld socket: {e}"),
            ClientError::DaemonNotRunning { socket } => write!(
                f,
                "samld is not running (no daemon answers on {}); start it with `samld &` or \
                 `systemctl --user start samld`",
                socket.display()
            ),
            ClientError::PermissionDenied { socket } => write!(
                f,
                "permission denied on {}: the socket or its directory belongs to another user \
                 (set SAMLD_SOCKET to a socket of your own)",
                socket.display()
            ),
            ClientError::ForeignDaemon {
                socket,
                peer_uid,
                our_uid,
            } => write!(
                f,
                "refusing to talk to {}: it is served by uid {peer_uid}, not by you (uid \
                 {our_uid}); remove it or set SAMLD_SOCKET to a socket of your own",
                socket.display()
            ),
            ClientError::VersionMismatch { client, daemon } => {
                let (ours, theirs) = (PROTOCOL_VERSION, daemon.protocol_version);
                let samld = format!("samld {} (pid {})", daemon.daemon_version, daemon.pid);
                let this = format!("this {client} {}", samld_proto::CRATE_VERSION);
                if theirs < ours {
                    write!(
                        f,
                        "{samld} is older than {this} (protocol {theirs}, need {ours}): restart \
                         it with `samlctl daemon stop` and start it again"
                    )
                } else {
                    write!(
                        f,
                        "{samld} is newer than {this} (protocol {theirs}, this {client} speaks \
                         {ours}): run the {client} installed with it (an older one may come \
                         first on PATH)"
                    )
                }
            }
            ClientError::Protocol(e) => write!(f, "bad answer from samld: {e}"),
            ClientError::Closed => f.write_str(
                "samld closed the connection without answering (did it stop or crash? see its log)",
            ),
            ClientError::UnexpectedResponse { expected, got } => write!(
                f,
                "bad answer from samld: expected `{expected}`, got `{got}`"
            ),
            ClientError::Timeout { after } => write!(
                f,
                "samld did not answer within {}s; it may be stuck (see its log, or restart it)",
                after.as_secs()
            ),
            ClientError::Daemon(e) => f.write_str(&e.message),
            ClientError::Autostart(e) => write!(f, "{e}"),
            ClientError::Prompt { error, .. } => write!(f, "{error}"),
            ClientError::Io { socket, source } => {
                write!(f, "cannot talk to samld on {}: {source}", socket.display())
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::SocketPath(e) => Some(e),
            ClientError::Protocol(e) => Some(e),
            ClientError::Daemon(e) => Some(e),
            ClientError::Autostart(e) => Some(e),
            ClientError::Prompt { error, .. } => Some(error),
            ClientError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a [`SecretPrompter`] has no answer.
#[derive(Debug)]
pub enum PromptError {
    /// There is no way to ask (no terminal, no stdin): the text says what the user can do.
    Unavailable(String),
    /// The user gave up (Ctrl-C, end of input).
    Cancelled,
    /// Reading the answer failed.
    Io(io::Error),
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptError::Unavailable(why) => f.write_str(why),
            PromptError::Cancelled => f.write_str("cancelled"),
            PromptError::Io(e) => write!(f, "cannot read the answer: {e}"),
        }
    }
}

impl std::error::Error for PromptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PromptError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Answers the daemon's [`Response::NeedSecret`] (a terminal prompt, a line of stdin, …).
pub trait SecretPrompter {
    /// Obtains the secret of `kind`; `prompt` is the daemon's text for the user.
    fn prompt(&mut self, kind: SecretKind, prompt: &str) -> Result<Secret, PromptError>;
}

/// A prompter for callers that cannot ask anyone, such as the helper run by the AWS CLI.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrompter;

impl SecretPrompter for NoPrompter {
    fn prompt(&mut self, kind: SecretKind, _prompt: &str) -> Result<Secret, PromptError> {
        Err(PromptError::Unavailable(format!(
            "samld asked for {} but this program cannot prompt for it",
            describe_secret(kind)
        )))
    }
}

/// "the JumpCloud password" / "an MFA code", for messages.
pub fn describe_secret(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::Password => "the JumpCloud password",
        SecretKind::MfaCode => "an MFA code",
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    socket: PathBuf,
    timeout: Option<Duration>,
    client_name: &'static str,
    check_version: bool,
    autostart: bool,
}

impl ConnectOptions {
    /// Connect to `socket`, with [`DEFAULT_TIMEOUT`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Some(DEFAULT_TIMEOUT),
            client_name: "samld-client",
            check_version: true,
            autostart: false,
        }
    }

    /// Connect to the socket named by the environment
    /// ([`samld_proto::default_socket_path`]: `SAMLD_SOCKET`, then `XDG_RUNTIME_DIR`),
    /// starting samld if none answers unless `SAMLD_NO_AUTOSTART=1`
    /// ([`autostart::enabled_by_env`]).
    pub fn from_env() -> Result<Self, ClientError> {
        samld_proto::default_socket_path()
            .map(|socket| Self::new(socket).autostart(autostart::enabled_by_env()))
            .map_err(ClientError::SocketPath)
    }

    /// Whether [`connect`](Self::connect) starts samld when nobody answers
    /// ([`autostart::start_daemon`]); off for [`ConnectOptions::new`].
    pub fn autostart(mut self, autostart: bool) -> Self {
        self.autostart = autostart;
        self
    }

    /// How long to wait for each frame; `None` waits forever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The program name used in messages (`samlctl 0.1.0 speaks protocol 1, …`).
    pub fn client_name(mut self, name: &'static str) -> Self {
        self.client_name = name;
        self
    }

    /// Accepts a daemon of any protocol version.
    ///
    /// Only for what must work across versions: reporting the daemon's version and stopping
    /// it (`{"type":"shutdown"}` is the one request whose wire form never changes), which is
    /// how a user gets out of a version mismatch.
    pub fn any_version(mut self) -> Self {
        self.check_version = false;
        self
    }

    /// The socket these options point at.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connects, checks who serves the socket, reads the greeting and checks the protocol
    /// version. With [`autostart`](Self::autostart), a missing daemon is started first.
    pub fn connect(&self) -> Result<Client, ClientError> {
        match self.connect_once() {
            // Only after a failed connect: the common case stays a single connect(2).
            Err(e) if self.autostart && e.is_not_running() => {
                autostart::start_daemon(&self.socket).map_err(ClientError::Autostart)?;
                self.connect_once()
            }
            result => result,
        }
    }

    fn connect_once(&self) -> Result<Client, ClientError> {
        let socket = self.socket.clone();
        let stream = UnixStream::connect(&socket).map_err(|e| connect_error(&socket, e))?;
        let io_err = |source| ClientError::Io {
            socket: socket.clone(),
            source,
        };
        // Same-user check before a single byte is read or written: in the temp-dir fallback
        // another user could have planted the socket to harvest passwords.
        let peer_uid = peer_uid(&stream).map_err(io_err)?;
        let our_uid = current_uid();
        if peer_uid != our_uid {
            return Err(ClientError::ForeignDaemon {
                socket,
                peer_uid,
                our_uid,
            });
        }
        stream.set_read_timeout(self.timeout).map_err(io_err)?;
        stream.set_write_timeout(self.timeout).map_err(io_err)?;

        let mut client = Client {
            stream,
            socket,
            timeout: self.timeout,
            hello: DaemonHello {
                protocol_version: 0,
                daemon_version: String::new(),
                pid: 0,
            },
        };
        let hello = match client.read()? {
            Response::Hello {
                protocol_version,
                daemon_version,
                pid,
            } => DaemonHello {
                protocol_version,
                daemon_version,
                pid,
            },
            // A daemon that refuses us outright (shutting down, peer check) says so first.
            Response::Error(e) => return Err(ClientError::Daemon(e)),
            other => {
                return Err(ClientError::UnexpectedResponse {
                    expected: "hello",
                    got: response_type(&other),
                });
            }
        };
        if self.check_version && hello.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::VersionMismatch {
                client: self.client_name,
                daemon: hello,
            });
        }
        client.hello = hello;
        Ok(client)
    }
}

/// One open connection to the daemon, greeted and version-checked, ready for one request.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    socket: PathBuf,
    timeout: Option<Duration>,
    hello: DaemonHello,
}

impl Client {
    /// Connects to the socket named by the environment, with [`DEFAULT_TIMEOUT`].
    pub fn connect() -> Result<Self, ClientError> {
        ConnectOptions::from_env()?.connect()
    }

    /// Connects to `socket`, with [`DEFAULT_TIMEOUT`].
    pub fn connect_to(socket: impl Into<PathBuf>) -> Result<Self, ClientError> {
        ConnectOptions::new(socket).connect()
    }

    /// What the daemon said about itself.
    pub fn hello(&self) -> &DaemonHello {
        &self.hello
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon and its accounts (or only `account`).
    pub fn status(self, account: Option<&str>) -> Result<StatusReport, ClientError> {
        let request = Request::Status {
            account: account.map(str::to_owned),
        };
        match self.simple(&request)? {
            Response::Status(report) => Ok(report),
            other => Err(unexpected("status", &other)),
        }
    }

    /// AWS credentials for `role` (or the default role) of `account`.
    ///
    /// With `interactive`, the daemon may log in first and ask for secrets through
    /// `prompter`, reporting progress through `progress`. `via` tells the daemon's audit how
    /// the credentials leave: `None` is `samld-helper`, [`Handout::Env`] is `samlctl env`
    /// and `samlctl exec --static`.
    pub fn get_credentials(
        self,
        account: &str,
        role: Option<&str>,
        interactive: bool,
        via: Option<Handout>,
        prompter: &mut dyn SecretPrompter,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Credentials, ClientError> {
        let request = Request::GetCredentials {
            account: account.to_owned(),
            role: role.map(str::to_owned),
            interactive,
            via,
        };
        match self.exchange(&request, prompter, progress)? {
            Response::Credentials(creds) => Ok(creds),
            other => Err(unexpected("credentials", &other)),
        }
    }

    /// Logs in, answering the daemon's questions through `prompter` and relaying its
    /// progress messages to `progress`.
    pub fn login(
        self,
        request: LoginRequest,
        prompter: &mut dyn SecretPrompter,
        progress: &mut dyn FnMut(&str),
    ) -> Result<LoginOutcome, ClientError> {
        match self.exchange(&Request::Login(request), prompter, progress)? {
            Response::LoggedIn(outcome) => Ok(outcome),
            other => Err(unexpected("logged_in", &other)),
        }
    }

    /// Logs out `account`, or every account; says which accounts and how many IdP sessions.
    pub fn logout(self, account: Option<&str>) -> Result<LogoutOutcome, ClientError> {
        let request = Request::Logout {
            account: account.map(str::to_owned),
        };
        match self.simple(&request)? {
            Response::LoggedOut(outcome) => Ok(outcome),
            other => Err(unexpected("logged_out", &other)),
        }
    }

    /// Removes the password saved in the OS keyring for `account`; returns whether one was
    /// saved.
    pub fn forget_password(self, account: &str) -> Result<bool, ClientError> {
        let request = Request::ForgetPassword {
            account: account.to_owned(),
        };
        match self.simple(&request)? {
            Response::PasswordForgotten { removed, .. } => Ok(removed),
            other => Err(unexpected("password_forgotten", &other)),
        }
    }

    /// Fetches fresh credentials for `account` now; returns every role's state after it.
    pub fn refresh(self, account: &str) -> Result<Vec<RoleStatus>, ClientError> {
        let request = Request::Refresh {
            account: account.to_owned(),
        };
        match self.simple(&request)? {
            Response::Refreshed { roles, .. } => Ok(roles),
            other => Err(unexpected("refreshed", &other)),
        }
    }

    /// The roles of `account`'s last assertion.
    pub fn roles(self, account: &str) -> Result<Vec<RoleInfo>, ClientError> {
        let request = Request::Roles {
            account: account.to_owned(),
        };
        match self.simple(&request)? {
            Response::Roles { roles, .. } => Ok(roles),
            other => Err(unexpected("roles", &other)),
        }
    }

    /// How the account signs in through a browser: its URL, browser and flags, and whether
    /// `login = "browser"` makes that the account's way in.
    pub fn browser_plan(self, account: &str) -> Result<BrowserPlan, ClientError> {
        let request = Request::BrowserPlan {
            account: account.to_owned(),
        };
        match self.simple(&request)? {
            Response::BrowserPlan(plan) => Ok(plan),
            other => Err(unexpected("browser_plan", &other)),
        }
    }

    /// Asks the daemon to stop. It has acknowledged when this returns; it may take a moment
    /// longer to exit.
    pub fn shutdown(self) -> Result<(), ClientError> {
        match self.simple(&Request::Shutdown)? {
            Response::ShuttingDown => Ok(()),
            other => Err(unexpected("shutting_down", &other)),
        }
    }

    /// A request that needs no secrets: a `NeedSecret` is refused, progress is dropped.
    fn simple(self, request: &Request) -> Result<Response, ClientError> {
        self.exchange(request, &mut NoPrompter, &mut |_| {})
    }

    /// Sends `request` and reads until the final response, answering questions on the way.
    /// An error response becomes [`ClientError::Daemon`].
    fn exchange(
        mut self,
        request: &Request,
        prompter: &mut dyn SecretPrompter,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Response, ClientError> {
        self.write(request)?;
        loop {
            match self.read()? {
                Response::Progress { message } => progress(&message),
                Response::NeedSecret { kind, prompt } => {
                    // On failure the connection is dropped unanswered, which tells the daemon
                    // to abandon the login.
                    let value = prompter
                        .prompt(kind, &prompt)
                        .map_err(|error| ClientError::Prompt { kind, error })?;
                    self.write(&Request::ProvideSecret { kind, value })?;
                }
                Response::Error(e) => return Err(ClientError::Daemon(e)),
                hello @ Response::Hello { .. } => return Err(unexpected("a reply", &hello)),
                last => return Ok(last),
            }
        }
    }

    fn write(&mut self, request: &Request) -> Result<(), ClientError> {
        write_frame(&mut self.stream, request).map_err(|e| self.frame_error(e))
    }

    fn read(&mut self) -> Result<Response, ClientError> {
        match read_frame(&mut self.stream) {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(ClientError::Closed),
            Err(e) => Err(self.frame_error(e)),
        }
    }

    fn frame_error(&self, e: FrameError) -> ClientError {
        match e {
            FrameError::Io(e) => match e.kind() {
                // A read timeout shows up as WouldBlock on Linux and TimedOut elsewhere.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                    after: self.timeout.unwrap_or_default(),
                },
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ClientError::Closed,
                _ => ClientError::Io {
                    socket: self.socket.clone(),
                    source: e,
                },
            },
            other => ClientError::Protocol(other),
        }
    }
}

fn connect_error(socket: &Path, e: io::Error) -> ClientError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::DaemonNotRunning {
                socket: socket.to_owned(),
            }
        }
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            socket: socket.to_owned(),
        },
        _ => ClientError::Io {
            socket: socket.to_owned(),
            source: e,
        },
    }
}

fn unexpected(expected: &'static str, got: &Response) -> ClientError {
    ClientError::UnexpectedResponse {
        expected,
        got: response_type(got),
    }
}

/// The wire `type` tag of a response, for messages.
fn response_type(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "hello",
        Response::Status(_) => "status",
        Response::Credentials(_) => "credentials",
        Response::NeedSecret { .. } => "need_secret",
        Response::Progress { .. } => "progress",
        Response::LoggedIn(_) => "logged_in",
        Response::BrowserPlan(_) => "browser_plan",
        Response::LoggedOut(_) => "logged_out",
        Response::Refreshed { .. } => "refreshed",
        Response::PasswordForgotten { .. } => "password_forgotten",
        Response::Roles { .. } => "roles",
        Response::ShuttingDown => "shutting_down",
        Response::EndpointToken(_) => "endpoint_token",
        Response::ConsoleUrl(_) => "console_url",
        Response::Audit { .. } => "audit",
        Response::AuditFollowing { .. } => "audit_following",
        Response::AuditEvent(_) => "audit_event",
        Response::Error(_) => "error",
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The effective uid of the process at the other end of `stream`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is a live socket owned by `stream`; `cred` and `len` are valid for
    // writes of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The effective uid of the process at the other end of `stream`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: the fd is a live socket owned by `stream`; uid and gid are valid for writes.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}

#[cfg(test)]
mod fake_daemon;
#[cfg(test)]
mod tests;
