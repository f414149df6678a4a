//! A fake JumpCloud on 127.0.0.1 that speaks the real user-console protocol
//! (`docs/jumpcloud-protocol.md`, R1–R4 and the session probe), with counters, controls and
//! fault injection for tests.
//!
//! What it enforces, like the real service: the `X-Xsrftoken` header must match the `_xsrf`
//! cookie and the session, the auth body must use lower-camelCase keys (403 otherwise), TOTP
//! codes work once, a push must be accepted before its login, the session cookie is rotated
//! when a login completes, and the SAML page needs a live session (else a 302 to `/login`).
//!
//! Every answer is generated from a single mutex-guarded state, so the counters
//! ([`FakeJumpCloudStats`]) always agree with what the server did.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::saml_builder::{self, SamlSpec};

/// The XSRF cookie's name.
pub const XSRF_COOKIE: &str = "_xsrf";
/// The console session cookie's name.
pub const SESSION_COOKIE: &str = "_jumpcloud_user_console_";
/// JumpCloud's answer to a wrong email or password (and to a wrong or reused TOTP code).
pub const AUTH_FAILED: &str = "Authentication failed.";
/// JumpCloud's answer when a second factor is needed.
pub const MFA_REQUIRED: &str = "MFA required.";

/// One JumpCloud user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    /// The login email (matched case-insensitively).
    pub email: String,
    /// The password.
    pub password: String,
    /// The factors listed in "MFA required." answers. Any factor with status `available`
    /// makes the password alone insufficient.
    pub factors: Vec<FakeFactor>,
    /// TOTP codes the server accepts, each once.
    pub totp_codes: Vec<String>,
    /// How the user answers pushes.
    pub push: PushBehavior,
}

impl FakeUser {
    /// A user without second factors.
    pub fn new(email: &str, password: &str) -> Self {
        Self {
            email: email.to_owned(),
            password: password.to_owned(),
            factors: Vec::new(),
            totp_codes: Vec::new(),
            push: PushBehavior::AcceptAfterPolls(1),
        }
    }

    /// Adds a factor (`totp`, `push`, `webauthn`, `duo`) with a status (`available`,
    /// `unavailable`).
    pub fn with_factor(mut self, kind: &str, status: &str) -> Self {
        self.factors.push(FakeFactor {
            kind: kind.to_owned(),
            status: status.to_owned(),
        });
        self
    }

    /// Adds TOTP codes the server will accept once each.
    pub fn with_totp_codes(mut self, codes: &[&str]) -> Self {
        self.totp_codes
            .extend(codes.iter().map(|c| (*c).to_owned()));
        self
    }

    /// Sets how pushes are answered.
    pub fn with_push(mut self, push: PushBehavior) -> Self {
        self.push = push;
        self
    }

    fn has_available(&self, kind: &str) -> bool {
        self.factors
            .iter()
            .any(|f| f.kind == kind && f.status == "available")
    }

    fn needs_mfa(&self) -> bool {
        self.factors.iter().any(|f| f.status == "available")
    }
}

/// An entry of the `factors` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFactor {
    /// `totp`, `push`, `webauthn`, `duo`.
    pub kind: String,
    /// `available` or anything else.
    pub status: String,
}

/// How the phone answers a JumpCloud Protect push, counted in polls of that push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushBehavior {
    /// Status `accepted` from the Nth poll on (1 = the first poll sees it accepted).
    AcceptAfterPolls(u32),
    /// Status `denied` from the Nth poll on.
    DenyAfterPolls(u32),
    /// Status `expired` from the Nth poll on.
    ExpireAfterPolls(u32),
    /// Stays `pending` until its `expiresAt` passes, then `expired`.
    NeverAnswer,
}

/// An AWS app: `/saml2/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeApp {
    /// The path segment after `/saml2/`.
    pub name: String,
    /// Role attribute values (`role ARN,provider ARN`).
    pub roles: Vec<String>,
    /// The SessionDuration attribute.
    pub session_duration: Option<u32>,
}

impl FakeApp {
    /// An app offering these `(role ARN, provider ARN)` pairs, SessionDuration 3600.
    pub fn new(name: &str, roles: &[(&str, &str)]) -> Self {
        Self {
            name: name.to_owned(),
            roles: roles
                .iter()
                .map(|(r, p)| saml_builder::role_value(r, p))
                .collect(),
            session_duration: Some(3600),
        }
    }
}

/// The default user's email.
pub const DEFAULT_EMAIL: &str = "alice@example.com";
/// The default user's password.
pub const DEFAULT_PASSWORD: &str = "correct horse battery staple";
/// The default app's name.
pub const DEFAULT_APP: &str = "aws";
/// The default app's role.
pub const DEFAULT_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/Developer";
/// The default app's SAML provider.
pub const DEFAULT_PROVIDER_ARN: &str = "arn:aws:iam::123456789012:saml-provider/JumpCloud";

/// How the fake is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeJumpCloudConfig {
    /// The users.
    pub users: Vec<FakeUser>,
    /// The AWS apps.
    pub apps: Vec<FakeApp>,
    /// How long a signed-in console session lives.
    pub session_lifetime: Duration,
    /// How long a push waits for an answer (its `expiresAt`).
    pub push_lifetime: Duration,
    /// The RelayState of the SAML form.
    pub relay_state: String,
}

impl Default for FakeJumpCloudConfig {
    /// One user without MFA ([`DEFAULT_EMAIL`], [`DEFAULT_PASSWORD`]), one app
    /// ([`DEFAULT_APP`]) with one role, sessions of an hour, pushes of a minute.
    fn default() -> Self {
        Self {
            users: vec![FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)],
            apps: vec![FakeApp::new(
                DEFAULT_APP,
                &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)],
            )],
            session_lifetime: Duration::from_secs(3600),
            push_lifetime: Duration::from_secs(60),
            relay_state: String::new(),
        }
    }
}

impl FakeJumpCloudConfig {
    /// The default config with `user` as the only user.
    pub fn with_user(user: FakeUser) -> Self {
        Self {
            users: vec![user],
            ..Self::default()
        }
    }
}

/// What the fake has seen and done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeJumpCloudStats {
    /// `GET /userconsole/xsrf`.
    pub xsrf_requests: u64,
    /// Every `POST /userconsole/auth`.
    pub auth_posts: u64,
    /// Auth POSTs that carried a password and passed the XSRF and key checks.
    pub password_posts: u64,
    /// Auth POSTs that carried a TOTP code.
    pub totp_posts: u64,
    /// Auth POSTs refused with 403 (XSRF header/cookie mismatch, or keys not lower camelCase).
    pub rejected_auth_posts: u64,
    /// Of those, the ones without an `X-Xsrftoken` header.
    pub missing_xsrf_header: u64,
    /// Of those, the ones whose body keys were not exactly the lower-camelCase ones.
    pub non_camel_case_bodies: u64,
    /// Password checks that failed (401 Authentication failed.).
    pub failed_passwords: u64,
    /// Completed logins (a session signed in, with MFA when needed).
    pub logins: u64,
    /// TOTP codes accepted.
    pub totp_accepted: u64,
    /// TOTP codes refused (wrong or already used).
    pub totp_rejected: u64,
    /// Pushes started.
    pub pushes_started: u64,
    /// Push status polls.
    pub push_polls: u64,
    /// Pushes that reached `accepted`.
    pub pushes_accepted: u64,
    /// `GET /userconsole/api/self`.
    pub self_probes: u64,
    /// SAML pages served with a SAMLResponse.
    pub saml_pages: u64,
    /// SAML page requests sent to the login page for lack of a session.
    pub login_redirects: u64,
    /// Faults injected so far (all kinds).
    pub faults_served: u64,
}

/// An endpoint faults can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /userconsole/xsrf`.
    Xsrf,
    /// `POST /userconsole/auth`.
    Auth,
    /// `POST /userconsole/auth/push`.
    PushStart,
    /// `GET /userconsole/auth/push/{id}`.
    PushPoll,
    /// `POST /userconsole/auth/push/{id}/login`.
    PushLogin,
    /// `GET /userconsole/api/self`.
    SelfProbe,
    /// `GET /saml2/{app}`.
    SamlPage,
}

/// What an injected fault does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with a JSON `{"message": <reason>}` body.
    Status(u16),
    /// Answer an HTML page (like a proxy or maintenance page) with this status.
    Html(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Send the status line and headers, then break the connection mid-body.
    Reset,
}

/// A running fake JumpCloud. Dropping it stops the server.
pub struct FakeJumpCloud {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeJumpCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeJumpCloud")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeJumpCloud {
    /// Starts the fake on a free port of 127.0.0.1. It accepts connections as soon as this
    /// returns (the listener is bound before).
    pub async fn start(config: FakeJumpCloudConfig) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .expect("binding the fake JumpCloud to 127.0.0.1")
    }

    /// Starts the fake on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr, config: FakeJumpCloudConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let users = config
            .users
            .iter()
            .map(|u| {
                (
                    u.email.to_ascii_lowercase(),
                    UserState {
                        user: u.clone(),
                        used_codes: HashSet::new(),
                    },
                )
            })
            .collect();
        let inner = Arc::new(Inner {
            base_url,
            changed: watch::Sender::new(0),
            state: Mutex::new(ServerState {
                users,
                apps: config.apps.clone(),
                session_lifetime: config.session_lifetime,
                push_lifetime: config.push_lifetime,
                relay_state: config.relay_state.clone(),
                sessions: HashMap::new(),
                pushes: HashMap::new(),
                faults: HashMap::new(),
                stats: FakeJumpCloudStats::default(),
                cookie_values: Vec::new(),
                saml_responses: Vec::new(),
            }),
        });
        let app = router(Arc::clone(&inner));
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                eprintln!("fake JumpCloud stopped: {e}");
            }
        });
        Ok(Self {
            inner,
            addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: the console URL (`jumpcloud_console_url`).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IdP URL of an app, `http://127.0.0.1:PORT/saml2/{app}` (the account's `url`).
    pub fn app_url(&self, app: &str) -> String {
        format!("{}/saml2/{app}", self.inner.base_url)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FakeJumpCloudStats {
        self.inner.lock().stats
    }

    /// Waits until the counters satisfy `done`: a real signal (every change of the fake's
    /// state wakes the waiter), for tests that must know a request reached the fake.
    pub async fn wait_for_stats(&self, done: impl Fn(&FakeJumpCloudStats) -> bool) {
        let mut changes = self.inner.changed.subscribe();
        loop {
            // Marks the current version seen before looking, so no change slips between.
            changes.borrow_and_update();
            // Read without `lock()`, which would wake this very waiter.
            let stats = self
                .inner
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stats;
            if done(&stats) {
                return;
            }
            changes
                .changed()
                .await
                .expect("the sender lives in the fake itself");
        }
    }

    /// Every cookie value the fake ever set (`_xsrf` tokens and console session ids), in
    /// order: secrets a client must never log or write down.
    pub fn issued_cookie_values(&self) -> Vec<String> {
        self.inner.lock().cookie_values.clone()
    }

    /// Every SAMLResponse (base64) the fake ever served, in order.
    pub fn saml_responses(&self) -> Vec<String> {
        self.inner.lock().saml_responses.clone()
    }

    /// Ends every console session, as an org-wide session timeout would.
    pub fn expire_all_sessions(&self) {
        let mut state = self.inner.lock();
        state.sessions.clear();
        state.pushes.clear();
    }

    /// How many signed-in sessions are alive.
    pub fn live_sessions(&self) -> usize {
        let state = self.inner.lock();
        let now = Instant::now();
        state
            .sessions
            .values()
            .filter(|s| s.user.is_some() && s.expires_at > now)
            .count()
    }

    /// Sets the lifetime of sessions signed in from now on.
    pub fn set_session_lifetime(&self, lifetime: Duration) {
        self.inner.lock().session_lifetime = lifetime;
    }

    /// Sets the lifetime of pushes started from now on.
    pub fn set_push_lifetime(&self, lifetime: Duration) {
        self.inner.lock().push_lifetime = lifetime;
    }

    /// Sets how `email` answers pushes started from now on.
    pub fn set_push_behavior(&self, email: &str, behavior: PushBehavior) {
        if let Some(u) = self.inner.lock().users.get_mut(&email.to_ascii_lowercase()) {
            u.user.push = behavior;
        }
    }

    /// Makes every push still pending answer as `behavior` says, counting polls from now:
    /// the phone answering when the test decides.
    pub fn answer_pending_pushes(&self, behavior: PushBehavior) {
        for push in self.inner.lock().pushes.values_mut() {
            if push.status == "pending" {
                push.behavior = behavior;
                push.polls = 0;
            }
        }
    }

    /// Makes `code` a valid (single-use) TOTP code for `email`.
    pub fn add_totp_code(&self, email: &str, code: &str) {
        if let Some(u) = self.inner.lock().users.get_mut(&email.to_ascii_lowercase()) {
            u.user.totp_codes.push(code.to_owned());
        }
    }

    /// Changes the password of `email`.
    pub fn set_password(&self, email: &str, password: &str) {
        if let Some(u) = self.inner.lock().users.get_mut(&email.to_ascii_lowercase()) {
            u.user.password = password.to_owned();
        }
    }

    /// Makes the next `times` requests to `endpoint` suffer `fault` (queued after any faults
    /// already injected there).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        let mut state = self.inner.lock();
        let queue = state.faults.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(fault, times as usize));
    }

    /// Stops the server and waits until it has stopped accepting connections.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Graceful shutdown waits for idle keep-alive connections of clients that are still
        // alive; tests only need the listener closed, so stop waiting after a moment.
        let task = &mut self.task;
        if tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for FakeJumpCloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

struct Inner {
    base_url: String,
    state: Mutex<ServerState>,
    /// Bumped each time the state has been locked (and so may have changed), for
    /// [`FakeJumpCloud::wait_for_stats`].
    changed: watch::Sender<u64>,
}

impl Inner {
    fn lock(&self) -> StateGuard<'_> {
        StateGuard {
            guard: Some(self.state.lock().unwrap_or_else(|e| e.into_inner())),
            changed: &self.changed,
        }
    }
}

/// The locked state; tells the waiters once the lock is released.
struct StateGuard<'a> {
    guard: Option<MutexGuard<'a, ServerState>>,
    changed: &'a watch::Sender<u64>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = ServerState;

    fn deref(&self) -> &ServerState {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut ServerState {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        // Unlocked first, so a woken waiter does not block on the mutex.
        drop(self.guard.take());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

struct ServerState {
    users: HashMap<String, UserState>,
    apps: Vec<FakeApp>,
    session_lifetime: Duration,
    push_lifetime: Duration,
    relay_state: String,
    sessions: HashMap<String, ConsoleSession>,
    pushes: HashMap<String, PushState>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    stats: FakeJumpCloudStats,
    /// See [`FakeJumpCloud::issued_cookie_values`].
    cookie_values: Vec<String>,
    /// See [`FakeJumpCloud::saml_responses`].
    saml_responses: Vec<String>,
}

struct UserState {
    user: FakeUser,
    used_codes: HashSet<String>,
}

/// A console session: created by the XSRF request, signed in by a completed login.
struct ConsoleSession {
    xsrf: String,
    /// The email whose password was accepted, waiting for a second factor, and the
    /// `redirectTo` of that auth POST.
    pending: Option<(String, String)>,
    /// The signed-in user.
    user: Option<String>,
    expires_at: Instant,
}

struct PushState {
    sid: String,
    email: String,
    behavior: PushBehavior,
    polls: u32,
    status: &'static str,
    expires_at: OffsetDateTime,
    initiated_at: OffsetDateTime,
    redirect_to: String,
}

type Shared = State<Arc<Inner>>;

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/userconsole/xsrf", get(xsrf))
        .route("/userconsole/auth", post(auth))
        .route("/userconsole/auth/push", post(push_start))
        .route("/userconsole/auth/push/{id}", get(push_poll))
        .route("/userconsole/auth/push/{id}/login", post(push_login))
        .route("/userconsole/api/self", get(api_self))
        .route("/saml2/{app}", get(saml_page))
        .route("/login", get(login_page))
        .with_state(inner)
}

fn token(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

fn session_cookie(sid: &str) -> String {
    format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax")
}

/// Takes the next injected fault of `endpoint`: an answer to send instead, or `None` to go on
/// (after a delay, if that was the fault).
async fn fault(inner: &Inner, endpoint: Endpoint) -> Option<Response> {
    let fault = {
        let mut state = inner.lock();
        let fault = state
            .faults
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front);
        if fault.is_some() {
            state.stats.faults_served += 1;
        }
        fault
    }?;
    match fault {
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(message(
                status,
                status.canonical_reason().unwrap_or("Error"),
            ))
        }
        Fault::Html(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            Some(
                (
                    status,
                    Html(
                        "<!DOCTYPE html>\n<html><head><title>JumpCloud</title></head>\n\
                         <body><h1>We'll be right back</h1><p>JumpCloud is undergoing \
                         maintenance.</p></body></html>\n",
                    ),
                )
                    .into_response(),
            )
        }
        Fault::Reset => Some(
            Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "application/json")
                .body(Body::new(BrokenBody))
                .expect("a static response"),
        ),
    }
}

/// A body that fails at once, so that hyper aborts the connection mid-response.
struct BrokenBody;

impl HttpBody for BrokenBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset by the fake JumpCloud",
        ))))
    }
}

/// R1: a new console session and its XSRF token, both as cookies; the token also as JSON.
async fn xsrf(State(inner): Shared) -> Response {
    inner.lock().stats.xsrf_requests += 1;
    if let Some(r) = fault(&inner, Endpoint::Xsrf).await {
        return r;
    }
    let (sid, xsrf) = (token(40), token(32));
    {
        let mut state = inner.lock();
        let expires_at = Instant::now() + Duration::from_secs(15 * 60);
        state.sessions.insert(
            sid.clone(),
            ConsoleSession {
                xsrf: xsrf.clone(),
                pending: None,
                user: None,
                expires_at,
            },
        );
        state.cookie_values.extend([sid.clone(), xsrf.clone()]);
    }
    (
        AppendHeaders([
            (
                SET_COOKIE,
                format!("{XSRF_COOKIE}={xsrf}; Path=/; SameSite=Lax"),
            ),
            (SET_COOKIE, session_cookie(&sid)),
        ]),
        Json(json!({ "xsrf": xsrf })),
    )
        .into_response()
}

/// Checks the XSRF header against the cookie and the session; the session id on success.
fn check_xsrf(state: &ServerState, headers: &HeaderMap) -> Result<String, &'static str> {
    let header = headers
        .get("x-xsrftoken")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing header")?;
    let sid = cookie(headers, SESSION_COOKIE).ok_or("no session cookie")?;
    let session = state.sessions.get(&sid).ok_or("unknown session")?;
    let cookie_token = cookie(headers, XSRF_COOKIE).ok_or("no xsrf cookie")?;
    if header != session.xsrf || cookie_token != session.xsrf {
        return Err("token mismatch");
    }
    Ok(sid)
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "Forbidden").into_response()
}

/// Signs the session in under a fresh id (so a pre-login id is never a signed-in one) and
/// answers `{redirectTo}` with the new session cookie.
fn complete_login(
    inner: &Inner,
    state: &mut ServerState,
    old_sid: &str,
    email: &str,
    redirect_to: &str,
) -> Response {
    let xsrf = state
        .sessions
        .remove(old_sid)
        .map(|s| s.xsrf)
        .unwrap_or_else(|| token(32));
    let sid = token(40);
    let expires_at = Instant::now() + state.session_lifetime;
    state.sessions.insert(
        sid.clone(),
        ConsoleSession {
            xsrf,
            pending: None,
            user: Some(email.to_owned()),
            expires_at,
        },
    );
    state.stats.logins += 1;
    state.cookie_values.push(sid.clone());
    let target = format!("{}/{}", inner.base_url, redirect_to.trim_start_matches('/'));
    (
        AppendHeaders([(SET_COOKIE, session_cookie(&sid))]),
        Json(json!({ "redirectTo": target })),
    )
        .into_response()
}

const AUTH_KEYS: [&str; 5] = ["context", "redirectTo", "email", "password", "otp"];

/// R2 and its TOTP repetition.
async fn auth(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    inner.lock().stats.auth_posts += 1;
    if let Some(r) = fault(&inner, Endpoint::Auth).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let sid = match check_xsrf(state, &headers) {
        Ok(sid) => sid,
        Err(why) => {
            state.stats.rejected_auth_posts += 1;
            if why == "missing header" {
                state.stats.missing_xsrf_header += 1;
            }
            return forbidden();
        }
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let camel = fields.keys().all(|k| AUTH_KEYS.contains(&k.as_str()))
        && ["email", "password"]
            .iter()
            .all(|k| fields.contains_key(*k));
    if !camel {
        state.stats.rejected_auth_posts += 1;
        state.stats.non_camel_case_bodies += 1;
        return forbidden();
    }
    let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
    let (email, password, otp) = (text("email"), text("password"), text("otp"));
    let redirect_to = text("redirectTo").to_owned();
    if !password.is_empty() {
        state.stats.password_posts += 1;
    }
    if !otp.is_empty() {
        state.stats.totp_posts += 1;
    }

    let key = email.to_ascii_lowercase();
    let Some(user) = state
        .users
        .get_mut(&key)
        .filter(|u| u.user.password == password)
    else {
        state.stats.failed_passwords += 1;
        return message(StatusCode::UNAUTHORIZED, AUTH_FAILED);
    };
    if !user.user.needs_mfa() {
        return complete_login(&inner, state, &sid, &key, &redirect_to);
    }
    if otp.is_empty() {
        let factors: Vec<Value> = user
            .user
            .factors
            .iter()
            .map(|f| json!({ "type": f.kind, "status": f.status }))
            .collect();
        if let Some(session) = state.sessions.get_mut(&sid) {
            session.pending = Some((key, redirect_to));
        }
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": MFA_REQUIRED, "factors": factors })),
        )
            .into_response();
    }
    let valid = user.user.has_available("totp")
        && user.user.totp_codes.iter().any(|c| c == otp)
        && !user.used_codes.contains(otp);
    if !valid {
        state.stats.totp_rejected += 1;
        return message(StatusCode::UNAUTHORIZED, AUTH_FAILED);
    }
    user.used_codes.insert(otp.to_owned());
    state.stats.totp_accepted += 1;
    complete_login(&inner, state, &sid, &key, &redirect_to)
}

fn push_json(id: &str, push: &PushState) -> Value {
    json!({
        "id": id,
        "status": push.status,
        "expiresAt": push.expires_at.format(&Rfc3339).unwrap_or_default(),
        "initiatedAt": push.initiated_at.format(&Rfc3339).unwrap_or_default(),
        "userId": format!("user-{}", push.email),
    })
}

/// R3-push, step 1.
async fn push_start(State(inner): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = fault(&inner, Endpoint::PushStart).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let Ok(sid) = check_xsrf(state, &headers) else {
        return forbidden();
    };
    let Some((email, redirect_to)) = state.sessions.get(&sid).and_then(|s| s.pending.clone())
    else {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let Some(user) = state
        .users
        .get(&email)
        .filter(|u| u.user.has_available("push"))
    else {
        return message(
            StatusCode::BAD_REQUEST,
            "Push is not available for this user.",
        );
    };
    let now = OffsetDateTime::now_utc();
    let push = PushState {
        sid,
        email,
        behavior: user.user.push,
        polls: 0,
        status: "pending",
        expires_at: now + state.push_lifetime,
        initiated_at: now,
        redirect_to,
    };
    let id = token(24).to_ascii_lowercase();
    let body = push_json(&id, &push);
    state.pushes.insert(id, push);
    state.stats.pushes_started += 1;
    Json(body).into_response()
}

/// R3-push, step 2.
async fn push_poll(State(inner): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = fault(&inner, Endpoint::PushPoll).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let Ok(sid) = check_xsrf(state, &headers) else {
        return forbidden();
    };
    state.stats.push_polls += 1;
    let Some(push) = state.pushes.get_mut(&id).filter(|p| p.sid == sid) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    push.polls += 1;
    if push.status == "pending" {
        let (status, reached) = match push.behavior {
            PushBehavior::AcceptAfterPolls(n) => ("accepted", push.polls >= n),
            PushBehavior::DenyAfterPolls(n) => ("denied", push.polls >= n),
            PushBehavior::ExpireAfterPolls(n) => ("expired", push.polls >= n),
            PushBehavior::NeverAnswer => ("pending", false),
        };
        if reached {
            push.status = status;
            if status == "accepted" {
                state.stats.pushes_accepted += 1;
            }
        } else if OffsetDateTime::now_utc() >= push.expires_at {
            push.status = "expired";
        }
    }
    let push = &state.pushes[&id];
    Json(push_json(&id, push)).into_response()
}

/// R3-push, step 3.
async fn push_login(State(inner): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = fault(&inner, Endpoint::PushLogin).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let Ok(sid) = check_xsrf(state, &headers) else {
        return forbidden();
    };
    let accepted = state
        .pushes
        .get(&id)
        .is_some_and(|p| p.sid == sid && p.status == "accepted");
    if !accepted {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let push = state.pushes.remove(&id).expect("checked above");
    complete_login(&inner, state, &sid, &push.email, &push.redirect_to)
}

/// The signed-in user of the request's session, if it is alive.
fn signed_in(state: &ServerState, headers: &HeaderMap) -> Option<String> {
    let sid = cookie(headers, SESSION_COOKIE)?;
    let session = state.sessions.get(&sid)?;
    (session.expires_at > Instant::now())
        .then(|| session.user.clone())
        .flatten()
}

/// The session probe.
async fn api_self(State(inner): Shared, headers: HeaderMap) -> Response {
    inner.lock().stats.self_probes += 1;
    if let Some(r) = fault(&inner, Endpoint::SelfProbe).await {
        return r;
    }
    let state = inner.lock();
    match signed_in(&state, &headers) {
        Some(email) => Json(json!({
            "_id": format!("user-{email}"),
            "email": email,
            "username": email.split('@').next().unwrap_or_default(),
            "enableMultiFactor": false,
        }))
        .into_response(),
        None => message(StatusCode::UNAUTHORIZED, "Unauthorized"),
    }
}

/// R4: the auto-post form with a fresh SAMLResponse, or the login page without a session.
async fn saml_page(State(inner): Shared, Path(app): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = fault(&inner, Endpoint::SamlPage).await {
        return r;
    }
    let mut state = inner.lock();
    let Some(app) = state.apps.iter().find(|a| a.name == app).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Html("<!DOCTYPE html>\n<html><body><h1>Application not found</h1></body></html>\n"),
        )
            .into_response();
    };
    let Some(email) = signed_in(&state, &headers) else {
        state.stats.login_redirects += 1;
        let location = format!("/login?redirectTo=saml2%2F{}", app.name);
        return (
            StatusCode::FOUND,
            [(LOCATION, HeaderValue::from_str(&location).expect("ascii"))],
        )
            .into_response();
    };
    let mut spec = SamlSpec::new(&email, &[]);
    spec.roles = app.roles.clone();
    spec.session_duration = app.session_duration;
    let saml_response = saml_builder::saml_response_base64(&spec);
    let page = saml_builder::saml_post_page(
        &saml_response,
        &state.relay_state,
        saml_builder::AWS_SAML_ENDPOINT,
    );
    state.saml_responses.push(saml_response);
    state.stats.saml_pages += 1;
    Html(page).into_response()
}

/// Where the SAML page sends browsers without a session.
async fn login_page() -> Html<&'static str> {
    Html(
        "<!DOCTYPE html>\n<html><head><title>JumpCloud User Portal</title></head>\n<body>\n\
         <form method=\"post\" action=\"/userconsole/auth\">\n\
         <input type=\"email\" name=\"email\" />\n<input type=\"password\" name=\"password\" />\n\
         <button type=\"submit\">Continue</button>\n</form>\n</body></html>\n",
    )
}
