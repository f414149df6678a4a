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
//! Another local user can open as many connections as they like, so the connection limit
//! must not become theirs to exhaust. On Linux the kernel says which user owns the client's
//! socket ([`crate::peer`]), and another user's connection is closed at once. Everywhere, a
//! refused request (401, 403, 404) is answered with
//! `Connection: close` and the connection is closed; a connection that has not yet shown a
//! valid token is "unproven" and unproven connections may hold at most
//! [`EndpointOptions::max_unproven`] slots, the oldest of them closed to make room for a new
//! one. A program's SDK sends its whole request the moment it connects, so it is proven
//! before a flood can push it out, and its keep-alive connection is then safe. Refusals are
//! logged as one warning a minute with a count, so a flood cannot fill the log either.
//!
//! The listener starts with the first lease and stops when the last one is dropped: an idle
//! daemon has no TCP port open.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use samld_config::RoleArn;
use samld_proto::{Credentials, ErrorCode, Handout, ProcessInfo, Secret, WireError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::{Record, process};
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

/// At most one warning about refused requests per this long; the others are counted into it.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(60);

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
    /// Connections that have not yet presented a valid token; a new one closes the oldest.
    /// The rest of [`max_connections`](Self::max_connections) is kept for proven ones.
    pub max_unproven: usize,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            port: 0,
            // SDKs send their request head in one write the moment they connect.
            header_read_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 64,
            max_unproven: 32,
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
    refusals: RefusalLog,
}

/// Refused requests, warned about at most once per [`REFUSAL_WARN_EVERY`] with a count.
#[derive(Default)]
struct RefusalLog {
    state: Mutex<RefusalState>,
}

#[derive(Default)]
struct RefusalState {
    last_warning: Option<Instant>,
    /// Refusals since the last warning.
    unreported: u64,
    /// Why the latest of them was refused.
    last_reason: String,
}

impl RefusalLog {
    fn lock(&self) -> MutexGuard<'_, RefusalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refused(&self, reason: &str) {
        let mut state = self.lock();
        state.unreported += 1;
        reason.clone_into(&mut state.last_reason);
        let now = Instant::now();
        if state
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_WARN_EVERY)
        {
            tracing::warn!(
                refused = state.unreported,
                last_reason = reason,
                "endpoint requests refused since the last warning (only samlctl exec's program \
                 has the token: another local program is probing the endpoint?); at most one \
                 such warning a minute"
            );
            state.unreported = 0;
            state.last_warning = Some(now);
        } else {
            tracing::debug!(reason, "endpoint request refused");
        }
    }

    /// Reports what was counted since the last warning (the listener stops).
    fn flush(&self) {
        let mut state = self.lock();
        if state.unreported > 0 {
            tracing::warn!(
                refused = state.unreported,
                last_reason = %state.last_reason,
                "endpoint requests refused since the last warning"
            );
            state.unreported = 0;
        }
    }
}

/// The connections of one listener: how many are proven (presented a valid token), and the
/// unproven ones, oldest first, each with the way to close it.
struct Connections {
    max_connections: usize,
    max_unproven: usize,
    state: Mutex<ConnectionState>,
}

#[derive(Default)]
struct ConnectionState {
    next_id: u64,
    proven: usize,
    unproven: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One connection's handle on [`Connections`]; releases its place when dropped.
struct ConnectionSlot {
    id: u64,
    proven: AtomicBool,
    connections: Arc<Connections>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection, closing the oldest unproven one if that is what it
    /// takes; `None` when every slot is held by a proven connection. The receiver fires when
    /// the connection is closed to make room for a newer one.
    fn admit(
        self: &Arc<Self>,
        refusals: &RefusalLog,
    ) -> Option<(ConnectionSlot, oneshot::Receiver<()>)> {
        let mut state = self.lock();
        let full = state.unproven.len() >= self.max_unproven
            || state.proven + state.unproven.len() >= self.max_connections;
        if full {
            let (_, close) = state.unproven.pop_front()?;
            let _ = close.send(());
            refusals.refused("an unproven connection was closed to make room for a new one");
        }
        state.next_id += 1;
        let id = state.next_id;
        let (close, closed) = oneshot::channel();
        state.unproven.push_back((id, close));
        Some((
            ConnectionSlot {
                id,
                proven: AtomicBool::new(false),
                connections: self.clone(),
            },
            closed,
        ))
    }
}

impl ConnectionSlot {
    /// The connection presented a valid token: it no longer counts against the unproven.
    fn prove(&self) {
        if !self.proven.swap(true, Ordering::SeqCst) {
            let mut state = self.connections.lock();
            state.unproven.retain(|(id, _)| *id != self.id);
            state.proven += 1;
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut state = self.connections.lock();
        if self.proven.load(Ordering::SeqCst) {
            state.proven -= 1;
        } else {
            state.unproven.retain(|(id, _)| *id != self.id);
        }
    }
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
    /// The `samlctl exec` that holds the lease, for the audit of each request.
    holder: Option<ProcessInfo>,
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

    /// The grant whose token is `presented`, as (account, role ARN, holder).
    fn find(&self, presented: &[u8]) -> Option<(String, String, Option<ProcessInfo>)> {
        let state = self.lock();
        let mut found = None;
        // Every token is compared, each in constant time, so the answer's timing says
        // nothing about how much of a token an attacker guessed right.
        for grant in &state.grants {
            if constant_time_eq(grant.token.expose().as_bytes(), presented) {
                found = Some((
                    grant.account.clone(),
                    grant.role_arn.clone(),
                    grant.holder.clone(),
                ));
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
                refusals: RefusalLog::default(),
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
        self.issue_to(daemon, account, role_arn, None).await
    }

    /// [`Endpoint::issue`] for `holder`, the process the audit names for every request made
    /// with the token (`samlctl exec`: its children use the token, but it is what asked).
    pub async fn issue_to(
        &self,
        daemon: &Arc<Manager>,
        account: &str,
        role_arn: &str,
        holder: Option<ProcessInfo>,
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
            holder,
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
    let shared = handler.shared.clone();
    let router = Router::new()
        .route("/v1/credentials/{account}", get(account_route))
        .route("/v1/credentials/{account}/{role}", get(role_route))
        .fallback(not_found)
        .layer(middleware::map_response(close_refused))
        .with_state(handler);
    let local = listener.local_addr().ok();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let connections = Arc::new(Connections {
        max_connections: options.max_connections,
        max_unproven: options
            .max_unproven
            .clamp(1, options.max_connections.max(1)),
        state: Mutex::new(ConnectionState::default()),
    });
    loop {
        let (stream, peer) = tokio::select! {
            // A dropped sender (the endpoint is gone) stops the loop as well.
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Only the daemon's own user runs `samlctl exec`; another user's connection is closed
        // before it can hold anything (where the kernel says who it is).
        if let Some(uid) = local.and_then(|local| crate::peer::peer_uid(local, peer))
            && uid != own_uid
        {
            shared
                .refusals
                .refused(&format!("a connection from another user (uid {uid})"));
            continue;
        }
        let Some((slot, evicted)) = connections.admit(&shared.refusals) else {
            shared
                .refusals
                .refused("every connection slot is held by a program with a token");
            continue;
        };
        let slot = Arc::new(slot);
        let service = TowerToHyperService::new(router.clone().layer(Extension(slot.clone())));
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
            tokio::select! {
                served = tokio::time::timeout(lifetime, connection) => match served {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "endpoint connection failed"),
                    Err(_) => tracing::debug!("endpoint connection closed at the end of its lifetime"),
                },
                // Dropping the connection closes it.
                _ = evicted => tracing::debug!("unproven endpoint connection closed to make room"),
            }
            drop(slot);
        });
    }
    shared.refusals.flush();
    tracing::info!("credential endpoint stopped");
}

/// A refusal ends the connection: hyper closes it after a response that says
/// `Connection: close`, so a client without the token cannot keep a slot by keep-alive.
async fn close_refused(mut response: Response) -> Response {
    let status = response.status();
    if status.is_client_error() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
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
    Extension(slot): Extension<Arc<ConnectionSlot>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    handler.answer(&slot, &headers, &account, None).await
}

async fn role_route(
    State(handler): State<Arc<Handler>>,
    Extension(slot): Extension<Arc<ConnectionSlot>>,
    Path((account, role)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    handler.answer(&slot, &headers, &account, Some(&role)).await
}

async fn not_found(State(handler): State<Arc<Handler>>) -> Response {
    handler.shared.refusals.refused("no such resource");
    refusal(StatusCode::NOT_FOUND, "NotFound", "no such resource")
}

impl Handler {
    async fn answer(
        &self,
        slot: &ConnectionSlot,
        headers: &HeaderMap,
        account: &str,
        role: Option<&str>,
    ) -> Response {
        let refusals = &self.shared.refusals;
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        if host != Some(self.host.as_bytes()) {
            tracing::debug!(
                host = %String::from_utf8_lossy(host.unwrap_or_default()),
                "endpoint request with a foreign Host"
            );
            refusals.refused("a foreign Host (DNS rebinding?)");
            return refusal(StatusCode::FORBIDDEN, "Forbidden", "wrong Host");
        }
        // The SDKs never send Origin; a browser always does on cross-origin requests.
        if headers.contains_key(header::ORIGIN) {
            refusals.refused("a request from a web page");
            return refusal(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "browser requests are refused",
            );
        }
        let Some(presented) = headers.get(header::AUTHORIZATION) else {
            refusals.refused("no token");
            return refusal(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the Authorization header is missing",
            );
        };
        let Some((bound_account, role_arn, holder)) = self.shared.find(presented.as_bytes()) else {
            refusals.refused("an unknown or revoked token");
            return refusal(StatusCode::UNAUTHORIZED, "Unauthorized", "invalid token");
        };
        // From here the token is valid: every answer is a hand-out, or a refused one, of the
        // lease's account and role, on the record.
        if account != bound_account || role.is_some_and(|r| !names_role(r, &role_arn)) {
            tracing::debug!(
                account,
                role,
                "endpoint token used for another account or role"
            );
            refusals.refused("a token used for another account or role");
            let error = format!(
                "the token was used for another account or role: {account}/{}",
                role.unwrap_or("(default)")
            );
            let mut record = Record::handout(
                Handout::ExecEndpoint,
                &bound_account,
                Some(&role_arn),
                None,
                Some(&error),
            );
            record.process = holder;
            self.daemon.audit().record(record);
            return refusal(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "this token is for another account or role",
            );
        }
        slot.prove();
        let fetched = tokio::time::timeout(
            self.request_timeout,
            self.daemon
                .get_credentials_traced(account, Some(&role_arn), None),
        )
        .await
        .unwrap_or_else(|_| {
            Err(WireError::new(
                ErrorCode::Timeout,
                format!(
                    "no credentials for {account} within {}s",
                    self.request_timeout.as_secs()
                ),
            ))
        });
        let mut record = Record::handout_result(
            Handout::ExecEndpoint,
            &bound_account,
            Some(&role_arn),
            &fetched,
        );
        record.process = holder;
        let response = match &fetched {
            Ok((creds, _)) => {
                tracing::debug!(account, role = %role_arn, "credentials served over the endpoint");
                credentials_response(creds)
            }
            Err(e) => error_response(e),
        };
        // Read while the program surely runs (it waits for this very answer), and recorded
        // before it gets it, so that the audit is never behind what the program saw. A few
        // small /proc reads, once per credential fetch of an SDK (about once an hour).
        name_the_program(&mut record);
        self.daemon.audit().record(record);
        response
    }
}

/// Names the program behind the token rather than the `samlctl exec` holding it: the exec's
/// child (`terraform`, `python3`), with the exec and its parents as the ancestry. The token
/// itself is shared by the program's own children, which are not told apart.
fn name_the_program(record: &mut Record) {
    let Some(holder) = record.process.take() else {
        return;
    };
    let program = process::children(holder.pid)
        .into_iter()
        .find_map(|pid| process::inspect(pid, process::COMMAND_LINE_LIMIT));
    let Some(program) = program else {
        record.process = Some(holder);
        return;
    };
    let mut ancestry = vec![holder.clone()];
    ancestry.extend(process::ancestry(
        holder.pid,
        process::ANCESTRY_LEVELS.saturating_sub(1),
    ));
    record.process = Some(program.info);
    record.ancestry = ancestry;
}

/// Whether the role segment of a path names `role_arn`: the ARN itself or its role name.
fn names_role(segment: &str, role_arn: &str) -> bool {
    segment == role_arn
        || role_arn
            .parse::<RoleArn>()
            .is_ok_and(|arn| arn.name() == segment)
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
mod tests;
