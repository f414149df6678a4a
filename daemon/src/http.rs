//! The loopback credential endpoint: AWS credentials over HTTP on 127.0.0.1, in the format of
//! the AWS container credential provider, for programs run by `samlctl exec`.
//!
//! No AWS SDK can read from a Unix socket, but every SDK can poll
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` with the `Authorization` header taken from
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`, and re-polls before the credentials expire. So a
//! long-running child (terraform apply, a dev server) keeps getting the credentials the daemon
//! refreshes, which environment variables could never give it.
//!
//! Anyone on the machine can connect to a loopback port, so the port is not the boundary; the
//! token is. Each [`Lease`] carries 32 random bytes bound to one account and role, compared in
//! constant time, and revoked when the lease is dropped (the Unix-socket connection of the
//! `samlctl exec` that asked for it closes). Requests whose `Host` is not exactly the
//! listener's address are refused, so a web page that rebinds a DNS name to 127.0.0.1 gets
//! nothing even though the browser would let it connect. Connections have a bounded header
//! size, a header read deadline (slow-loris), a lifetime and a count limit.
//!
//! The listener starts with the first lease and stops when the last one is dropped: an idle
//! daemon has no TCP port open.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use samld_proto::{Credentials, ErrorCode, Secret, WireError};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::manager::Manager;

/// The environment variable that fixes the endpoint's port (default: any free port).
pub const ENDPOINT_PORT_ENV: &str = "SAMLD_ENDPOINT_PORT";

/// Request heads larger than this are refused (431) before they are parsed. The SDKs send a
/// few hundred bytes; hyper's floor for this limit is 8 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// More header lines than this are refused.
const MAX_HEADERS: usize = 32;

/// Random bytes per token (hex-encoded on the wire).
const TOKEN_BYTES: usize = 32;

/// Limits and the port of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// The port on 127.0.0.1; 0 lets the system pick a free one each time the endpoint starts.
    pub port: u16,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a request may wait for credentials (a refresh in flight) before it gets a 504.
    pub request_timeout: Duration,
    /// How long one connection may stay open, keep-alive included.
    pub connection_lifetime: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            port: 0,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

impl EndpointOptions {
    /// The defaults, with the port from `$SAMLD_ENDPOINT_PORT` when it is set and not empty.
    pub fn from_env() -> Result<Self, String> {
        Ok(Self {
            port: parse_port(std::env::var_os(ENDPOINT_PORT_ENV).as_deref())?,
            ..Self::default()
        })
    }
}

fn parse_port(value: Option<&std::ffi::OsStr>) -> Result<u16, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "{ENDPOINT_PORT_ENV}={} is not a port number (0 to 65535)",
                    value.to_string_lossy()
                )
            }),
    }
}

/// The endpoint: a registry of tokens and, while any token exists, the HTTP listener.
///
/// [`Endpoint::issue`] must be called from within a tokio runtime (it may start the listener).
pub struct Endpoint {
    options: EndpointOptions,
    shared: Arc<Shared>,
    /// Serialises starts, so that a start never races the stop of the previous listener for a
    /// fixed port.
    start_gate: tokio::sync::Mutex<()>,
}

struct Shared {
    state: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    grants: Vec<Grant>,
    running: Option<Running>,
    /// The accept loop of a listener told to stop, until it has let go of its port.
    stopping: Option<JoinHandle<()>>,
    next_id: u64,
}

struct Grant {
    id: u64,
    token: Secret,
    account: String,
    role_arn: String,
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Only bookkeeping happens under this lock; a panic there leaves consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn revoke(&self, id: u64) {
        let mut state = self.lock();
        state.grants.retain(|g| g.id != id);
        if state.grants.is_empty() {
            stop_listener(&mut state);
        }
    }

    /// The grant whose token is `presented`, as (account, role ARN).
    fn find(&self, presented: &[u8]) -> Option<(String, String)> {
        let state = self.lock();
        let mut found = None;
        // Every token is compared, each in constant time, so the answer's timing says
        // nothing about how much of a token an attacker guessed right.
        for grant in &state.grants {
            if constant_time_eq(grant.token.expose().as_bytes(), presented) {
                found = Some((grant.account.clone(), grant.role_arn.clone()));
            }
        }
        found
    }
}

fn stop_listener(state: &mut Registry) {
    if let Some(running) = state.running.take() {
        let _ = running.stop.send(());
        state.stopping = Some(running.task);
        tracing::debug!(addr = %running.addr, "last endpoint token revoked; stopping the listener");
    }
}

impl Endpoint {
    /// An endpoint with no listener yet.
    pub fn new(options: EndpointOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            shared: Arc::new(Shared {
                state: Mutex::new(Registry::default()),
            }),
            start_gate: tokio::sync::Mutex::new(()),
        })
    }

    /// Issues a token for `role_arn` of `account`, starting the listener if it is not running.
    /// The token is valid until the returned lease is dropped.
    pub async fn issue(
        &self,
        daemon: &Arc<Manager>,
        account: &str,
        role_arn: &str,
    ) -> io::Result<Lease> {
        let _gate = self.start_gate.lock().await;
        let stopping = self.shared.lock().stopping.take();
        if let Some(task) = stopping {
            // Cannot fail in a way that matters: the task only ever returns.
            let _ = task.await;
        }
        let token = new_token()?;
        let mut state = self.shared.lock();
        let addr = match &state.running {
            Some(running) => running.addr,
            None => {
                let running = self.start(daemon.clone())?;
                let addr = running.addr;
                state.running = Some(running);
                addr
            }
        };
        state.next_id += 1;
        let id = state.next_id;
        state.grants.push(Grant {
            id,
            token: token.clone(),
            account: account.to_owned(),
            role_arn: role_arn.to_owned(),
        });
        tracing::info!(account, role = role_arn, %addr, "endpoint token issued");
        Ok(Lease {
            shared: self.shared.clone(),
            id,
            url: credentials_url(addr, account, role_arn),
            addr,
            token,
        })
    }

    /// The listener's address while it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.lock().running.as_ref().map(|r| r.addr)
    }

    /// How many tokens are valid now.
    pub fn active_tokens(&self) -> usize {
        self.shared.lock().grants.len()
    }

    /// Revokes every token and stops the listener (daemon shutdown).
    pub fn shutdown(&self) {
        let mut state = self.shared.lock();
        state.grants.clear();
        stop_listener(&mut state);
    }

    fn start(&self, daemon: Arc<Manager>) -> io::Result<Running> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.options.port))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot listen on 127.0.0.1:{} for the credential endpoint: {e}",
                        self.options.port
                    ),
                )
            })?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let handler = Arc::new(Handler {
            shared: self.shared.clone(),
            daemon,
            host: addr.to_string(),
            request_timeout: self.options.request_timeout,
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            listener,
            handler,
            self.options.clone(),
            stopped,
        ));
        tracing::info!(%addr, "credential endpoint listening");
        Ok(Running { addr, stop, task })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("options", &self.options)
            .field("local_addr", &self.local_addr())
            .field("active_tokens", &self.active_tokens())
            .finish()
    }
}

/// One issued token; dropping it revokes the token (and stops the listener if it was the
/// last).
pub struct Lease {
    shared: Arc<Shared>,
    id: u64,
    url: String,
    addr: SocketAddr,
    token: Secret,
}

impl Lease {
    /// The value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The value for `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.revoke(self.id);
        tracing::info!(addr = %self.addr, "endpoint token revoked");
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("url", &self.url)
            .field("token", &self.token)
            .finish()
    }
}

fn new_token() -> io::Result<Secret> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    let mut hex = String::with_capacity(TOKEN_BYTES * 2);
    for b in bytes {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    bytes.fill(0);
    Ok(Secret::from(hex))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Equality whose running time does not depend on where the inputs differ. The length is not
/// secret (every token has the same one), so a length mismatch returns at once.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// `http://127.0.0.1:PORT/v1/credentials/ACCOUNT/ROLE`, each segment percent-encoded (a role
/// ARN has `:` and `/`).
fn credentials_url(addr: SocketAddr, account: &str, role_arn: &str) -> String {
    format!(
        "http://{addr}/v1/credentials/{}/{}",
        percent_encode(account),
        percent_encode(role_arn)
    )
}

fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)].to_ascii_uppercase()));
            out.push(char::from(HEX[usize::from(b & 0xf)].to_ascii_uppercase()));
        }
    }
    out
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    handler: Arc<Handler>,
    options: EndpointOptions,
    mut stopped: oneshot::Receiver<()>,
) {
    let router = Router::new()
        .route("/v1/credentials/{account}", get(account_route))
        .route("/v1/credentials/{account}/{role}", get(role_route))
        .fallback(not_found)
        .with_state(handler);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let stream = tokio::select! {
            // A dropped sender (the endpoint is gone) stops the loop as well.
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = options.max_connections,
                "too many endpoint connections; one was closed"
            );
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let lifetime = options.connection_lifetime;
        let header_read_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(lifetime, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "endpoint connection failed"),
                Err(_) => tracing::debug!("endpoint connection closed at the end of its lifetime"),
            }
            drop(slot);
        });
    }
    tracing::info!("credential endpoint stopped");
}

struct Handler {
    shared: Arc<Shared>,
    daemon: Arc<Manager>,
    /// The one `Host` accepted: `127.0.0.1:PORT`.
    host: String,
    request_timeout: Duration,
}

async fn account_route(
    State(handler): State<Arc<Handler>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    handler.answer(&headers, &account, None).await
}

async fn role_route(
    State(handler): State<Arc<Handler>>,
    Path((account, role)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    handler.answer(&headers, &account, Some(&role)).await
}

async fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "NotFound", "no such resource")
}

impl Handler {
    async fn answer(&self, headers: &HeaderMap, account: &str, role: Option<&str>) -> Response {
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        if host != Some(self.host.as_bytes()) {
            tracing::warn!(
                host = %String::from_utf8_lossy(host.unwrap_or_default()),
                "endpoint request with a foreign Host refused (DNS rebinding?)"
            );
            return refusal(StatusCode::FORBIDDEN, "Forbidden", "wrong Host");
        }
        // The SDKs never send Origin; a browser always does on cross-origin requests.
        if headers.contains_key(header::ORIGIN) {
            tracing::warn!("endpoint request from a web page refused");
            return refusal(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "browser requests are refused",
            );
        }
        let Some(presented) = headers.get(header::AUTHORIZATION) else {
            return refusal(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the Authorization header is missing",
            );
        };
        let Some((bound_account, role_arn)) = self.shared.find(presented.as_bytes()) else {
            tracing::warn!("endpoint request with an unknown or revoked token refused");
            return refusal(StatusCode::UNAUTHORIZED, "Unauthorized", "invalid token");
        };
        if account != bound_account || role.is_some_and(|r| !names_role(r, &role_arn)) {
            tracing::warn!(
                account,
                role,
                "endpoint token used for another account or role; refused"
            );
            return refusal(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "this token is for another account or role",
            );
        }
        let fetched = tokio::time::timeout(
            self.request_timeout,
            self.daemon.get_credentials(account, Some(&role_arn), None),
        )
        .await;
        match fetched {
            Ok(Ok(creds)) => {
                tracing::debug!(account, role = %role_arn, "credentials served over the endpoint");
                credentials_response(&creds)
            }
            Ok(Err(e)) => error_response(&e),
            Err(_) => error_response(&WireError::new(
                ErrorCode::Timeout,
                format!(
                    "no credentials for {account} within {}s",
                    self.request_timeout.as_secs()
                ),
            )),
        }
    }
}

/// Whether the role segment of a path names `role_arn`: the ARN itself or its role name.
fn names_role(segment: &str, role_arn: &str) -> bool {
    segment == role_arn
        || role_arn
            .rsplit_once('/')
            .is_some_and(|(_, name)| name == segment)
}

fn credentials_response(creds: &Credentials) -> Response {
    let body = serde_json::json!({
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.expose(),
        "Token": creds.session_token.expose(),
        "Expiration": creds.expiration,
        "RoleArn": creds.role_arn,
    });
    json_response(StatusCode::OK, body.to_string())
}

fn error_response(e: &WireError) -> Response {
    let status = match e.code {
        ErrorCode::UnknownAccount | ErrorCode::UnknownRole => StatusCode::NOT_FOUND,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::NetworkError
        | ErrorCode::IdpError
        | ErrorCode::SamlError
        | ErrorCode::StsError => StatusCode::BAD_GATEWAY,
        // Waiting for the user (a login) or for a restart: try again later.
        ErrorCode::NotLoggedIn
        | ErrorCode::NeedsLogin
        | ErrorCode::AuthFailed
        | ErrorCode::MfaFailed
        | ErrorCode::MfaRequired
        | ErrorCode::MfaUnsupported
        | ErrorCode::ShuttingDown
        | ErrorCode::ConfigError => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refusal(status, e.code.as_str(), &e.message)
}

/// An error in the shape the SDKs log: `{"Code": ..., "Message": ...}`.
fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Code": code, "Message": message });
    json_response(status, body.to_string())
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            // Credentials must not end up in any cache between here and the SDK.
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn urls_encode_role_arns_as_one_segment() {
        let addr: SocketAddr = "127.0.0.1:4711".parse().unwrap();
        assert_eq!(
            credentials_url(addr, "prod", "arn:aws:iam::1:role/team/Admin"),
            "http://127.0.0.1:4711/v1/credentials/prod/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fteam%2FAdmin"
        );
    }

    #[test]
    fn a_role_is_named_by_its_arn_or_its_name() {
        let arn = "arn:aws:iam::1:role/team/Admin";
        assert!(names_role(arn, arn));
        assert!(names_role("Admin", arn));
        assert!(!names_role("ReadOnly", arn));
        assert!(!names_role("team/Admin", arn));
    }

    #[test]
    fn the_port_setting_is_a_port_number() {
        use std::ffi::OsStr;
        assert_eq!(parse_port(None), Ok(0));
        assert_eq!(parse_port(Some(OsStr::new(""))), Ok(0));
        assert_eq!(parse_port(Some(OsStr::new("4711"))), Ok(4711));
        let e = parse_port(Some(OsStr::new("70000"))).unwrap_err();
        assert!(e.contains("SAMLD_ENDPOINT_PORT=70000"), "{e}");
    }
}
