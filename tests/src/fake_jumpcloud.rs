//! A fake JumpCloud on 127.0.0.1 that speaks the real user-console protocol
//! (`docs/jumpcloud-protocol.md`, R1–R4 and the session probe), with counters, controls and
//! fault injection for tests.
//!
//! Like the real service it has two hosts: the console (`console.jumpcloud.com`: the
//! `/userconsole/...` API and the login page) and the SSO host (`sso.jumpcloud.com`: the
//! `/saml2/{app}` pages), here two listeners on 127.0.0.1 with their own ports. Cookies are
//! not scoped by port, so the console's session cookie reaches the SSO listener the way
//! saml2aws's plain cookie jar carries it from `console.` to `sso.` (which only works if the
//! real cookie is scoped to the parent domain).
//!
//! What it enforces, like the real service: the `X-Xsrftoken` header must match the token
//! signed into the `_xsrf` cookie (`base64(token)|timestamp|signature`, saml2aws#230) and the
//! session; XSRF tokens and pre-login sessions expire after 15 minutes (saml2aws#230); the auth
//! body must use lower-camelCase keys (403 otherwise); TOTP codes work once; one push at a time
//! per user; a push must be accepted, and not past its `expiresAt`, before its login; the
//! session cookie set with the XSRF token is the one signed in (it is kept at login); the
//! `redirectTo` answered is the SSO host's app URL; and the SAML page needs a live session
//! (else a 302 to the console's `/login`).
//!
//! The fake's clock can be moved forward ([`FakeJumpCloud::advance_clock`]) so that tests
//! reach those expiries without waiting.
//!
//! It can also give the answers the real service gives off the happy path (issue 11): a bare
//! "MFA required." without factors ([`FakeUser::with_bare_mfa`]), a push denied as HTTP 401 on
//! the poll ([`PushBehavior::DenyWith401AfterPolls`]), an app behind a policy only a browser
//! passes ([`FakeApp::requiring_a_browser`]), and as faults an `{"error": ...}` body, a 302 to
//! the login page, HTTP 429 with `Retry-After`, and bodies of any size ([`Fault`]).
//!
//! For browsers (issue 13) it can hand out `http://localhost:PORT` URLs
//! ([`FakeJumpCloudConfig::host`]); its `/login` is a scripted sign-in page on the same JSON
//! API; security keys are verified like a relying party does ([`FakeUser::with_webauthn`],
//! [`verify_assertion`]); and a browser-only app's page carries a single-use device check
//! that only a browser's script passes, once per app launch.
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

use base64::Engine as _;
use base64::engine::general_purpose::{
    URL_SAFE, URL_SAFE_NO_PAD as B64URL, URL_SAFE_NO_PAD_INDIFFERENT as B64URL_LENIENT,
};

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
use tokio::sync::watch;
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
/// The fake's answer to a push started while another one of the same user is pending (the
/// real wording is not documented).
pub const PUSH_PENDING: &str = "A push notification is already pending.";
/// How long an XSRF token, and the pre-login session it came with, stays valid: "the XSRF
/// token will expire after about 15 minutes" (a JumpCloud engineer in saml2aws#230).
pub const XSRF_LIFETIME: Duration = Duration::from_secs(15 * 60);

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
    /// Ask for the second factor with a bare `401 {"message":"MFA required."}`, without the
    /// `factors` list (as in the exchange a JumpCloud engineer posted in saml2aws #230).
    pub bare_mfa: bool,
    /// Registered security keys (factor `webauthn`).
    pub security_keys: Vec<FakeSecurityKey>,
}

/// A security key registered for a user: what a relying party keeps from the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSecurityKey {
    /// The credential id (`allowCredentials[].id`, the assertion's `rawId`).
    pub credential_id: Vec<u8>,
    /// The credential's public key: an uncompressed P-256 point (65 bytes, `04 ‖ x ‖ y`).
    pub public_key: Vec<u8>,
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
            bare_mfa: false,
            security_keys: Vec::new(),
        }
    }

    /// Registers a security key and offers factor `webauthn` (once, however many keys).
    /// `public_key` is the uncompressed P-256 point (65 bytes), as
    /// [`crate::browser_person::security_key`] makes it.
    pub fn with_webauthn(mut self, credential_id: Vec<u8>, public_key: Vec<u8>) -> Self {
        if !self.has_available("webauthn") {
            self = self.with_factor("webauthn", "available");
        }
        self.security_keys.push(FakeSecurityKey {
            credential_id,
            public_key,
        });
        self
    }

    /// Asks for the second factor without listing the factors (see [`FakeUser::bare_mfa`]).
    pub fn with_bare_mfa(mut self) -> Self {
        self.bare_mfa = true;
        self
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
    /// Status `accepted` once this long has passed since the push started, however often it
    /// was polled: a person who takes a few seconds to reach for the phone.
    AcceptAfter(Duration),
    /// Denied from the Nth poll on, answered as HTTP 401 on the poll rather than as
    /// `{"status":"denied"}` (how saml2aws's own tests model a denial).
    DenyWith401AfterPolls(u32),
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
    /// A policy (conditional access, device trust) that lets only a browser into this app:
    /// the API login succeeds, and the app URL then answers a page that is neither the login
    /// page nor the SAML form (saml2aws #771).
    pub browser_only: bool,
    /// The SessionDuration attribute as an admin typed it (`""`, `"12h"`), written verbatim
    /// instead of `session_duration`.
    pub session_duration_text: Option<String>,
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
            browser_only: false,
            session_duration_text: None,
        }
    }

    /// Puts the app behind a policy only a browser passes (see [`FakeApp::browser_only`]).
    pub fn requiring_a_browser(mut self) -> Self {
        self.browser_only = true;
        self
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
    /// How long an XSRF token and a session not yet signed in stay valid.
    pub xsrf_lifetime: Duration,
    /// The RelayState of the SAML form.
    pub relay_state: String,
    /// The host name in the URLs the fake hands out (`base_url`, `sso_url`, `app_url`, the
    /// login redirect, `redirectTo`) and its WebAuthn RP ID; the listeners bind 127.0.0.1
    /// whatever it says. `"localhost"` for browser tests: WebAuthn refuses an IP address as
    /// RP ID, and with one host name for both listeners the browser sends the console's
    /// cookies to the SSO host (cookies ignore ports), as it sends `.jumpcloud.com` cookies
    /// from `console.` to `sso.`.
    pub host: String,
    /// A person the sign-in page plays by itself, for demos where nobody sits at the browser
    /// (`samld-sandbox --browser-headless`); `None` (the default) leaves the page to whoever
    /// is at it.
    pub page_signs_in: Option<PageSignIn>,
    /// The least time between two polls of one push; a poll sooner than that is answered
    /// `429 Too Many Requests` with `Retry-After: 1`, and counted in
    /// [`FakeJumpCloudStats::push_polls_throttled`].
    ///
    /// JumpCloud rate-limits its API and answers 429 past the limit (its "Best Practices:
    /// JumpCloud API" page lists 429 among the answers and asks clients to back off); the
    /// limit for the push poll is not published. Every client seen polls every 500 ms
    /// (saml2aws `jumpcloud_protect.go`, JumpCloud's own console; see
    /// docs/jumpcloud-protocol.md, R3-PUSH), so the default, 250 ms, refuses only a client
    /// polling at twice that pace or faster: a hot loop fails here as it would there.
    pub push_poll_min_gap: Duration,
}

/// What the sign-in page types in by itself (see [`FakeJumpCloudConfig::page_signs_in`]):
/// the email and password, then the TOTP code if one is given, else the push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSignIn {
    /// The user's email.
    pub email: String,
    /// Their password (a fake user's).
    pub password: String,
    /// A code to enter when the page asks for one; without it the page takes the push.
    pub totp_code: Option<String>,
}

/// The default [`FakeJumpCloudConfig::push_poll_min_gap`].
pub const PUSH_POLL_MIN_GAP: Duration = Duration::from_millis(250);

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
            xsrf_lifetime: XSRF_LIFETIME,
            relay_state: String::new(),
            host: "127.0.0.1".to_owned(),
            page_signs_in: None,
            push_poll_min_gap: PUSH_POLL_MIN_GAP,
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

    /// The same config with URLs on `http://localhost:PORT` (see [`FakeJumpCloudConfig::host`]),
    /// for a browser.
    pub fn on_localhost(self) -> Self {
        Self {
            host: "localhost".to_owned(),
            ..self
        }
    }
}

/// What the fake has seen and done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeJumpCloudStats {
    /// Every HTTP request, whatever its path or outcome (faulted, refused and unknown ones
    /// included): "samld sent nothing more" is this number standing still.
    pub requests: u64,
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
    /// Requests refused for an XSRF token or a pre-login session past its lifetime.
    pub stale_xsrf: u64,
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
    /// Push status polls (throttled ones included).
    pub push_polls: u64,
    /// Push status polls answered 429 for coming sooner than
    /// [`FakeJumpCloudConfig::push_poll_min_gap`] after the last one.
    pub push_polls_throttled: u64,
    /// Pushes that reached `accepted`.
    pub pushes_accepted: u64,
    /// Pushes refused because another one of the same user was pending.
    pub pushes_refused: u64,
    /// Push logins refused because the push was past its `expiresAt`.
    pub late_push_logins: u64,
    /// Pushes that reached `denied`.
    pub pushes_denied: u64,
    /// Pushes that reached `expired` (by their behaviour or past their `expiresAt`).
    pub pushes_expired: u64,
    /// `GET /userconsole/api/self`.
    pub self_probes: u64,
    /// SAML pages served with a SAMLResponse.
    pub saml_pages: u64,
    /// SAML page requests sent to the login page for lack of a session.
    pub login_redirects: u64,
    /// Faults injected so far (all kinds).
    pub faults_served: u64,
    /// Bytes of [`Fault::Oversized`] bodies handed to the connection so far: how much of an
    /// endless answer the client actually read.
    pub oversized_bytes_sent: u64,
    /// App pages answered with the browser-only policy page ([`FakeApp::browser_only`]).
    pub policy_pages: u64,
    /// Device checks of a browser-only app passed (a fresh nonce's proof, computed by the
    /// policy page's script), each answered with the SAML form.
    pub device_checks_passed: u64,
    /// Device check posts refused (unknown or reused nonce, wrong proof, other session).
    pub device_checks_failed: u64,
    /// WebAuthn challenges issued (`GET /userconsole/auth/webauthn`).
    pub webauthn_challenges: u64,
    /// WebAuthn assertions verified.
    pub webauthn_accepted: u64,
    /// WebAuthn assertions refused (see [`FakeJumpCloud::webauthn_refusals`] for why).
    pub webauthn_refused: u64,
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
    /// `GET /userconsole/auth/webauthn`.
    WebAuthnChallenge,
    /// `POST /userconsole/auth/webauthn`.
    WebAuthnLogin,
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
    /// Answer this status with a JSON `{"error": <text>}` body (no `message`), as some
    /// JumpCloud answers do (aws-jumpcloud reads `error`).
    ErrorBody(u16, &'static str),
    /// Answer `302 Found` to the console's login page (`/login`), as the password POST did
    /// for aws-jumpcloud (issue #43).
    RedirectToLogin,
    /// Answer `429 Too Many Requests`, with this `Retry-After`.
    Throttle(RetryAfter),
    /// Answer `200` with a body of this many bytes, streamed without a `Content-Length`
    /// (an HTML page for the SAML page, JSON-looking text elsewhere).
    Oversized(u64),
}

/// The `Retry-After` header of a [`Fault::Throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// No `Retry-After` header.
    Absent,
    /// `Retry-After: N` (seconds).
    Seconds(u64),
    /// `Retry-After: <HTTP date>`, this long from when the answer is sent.
    DateIn(Duration),
}

/// A running fake JumpCloud (console and SSO listeners). Dropping it stops the server.
pub struct FakeJumpCloud {
    inner: Arc<Inner>,
    addr: SocketAddr,
    sso_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeJumpCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeJumpCloud")
            .field("addr", &self.addr)
            .field("sso_addr", &self.sso_addr)
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

    /// Starts the fake with its console on `addr` (port 0 picks a free one) and its SSO host
    /// on a free port of the same address.
    pub async fn start_on(addr: SocketAddr, config: FakeJumpCloudConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sso_listener = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let sso_addr = sso_listener.local_addr()?;
        let host = match config.host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => config.host.clone(),
        };
        let base_url = format!("http://{host}:{}", addr.port());
        let sso_url = format!("http://{host}:{}", sso_addr.port());
        let users = config
            .users
            .iter()
            .map(|u| {
                (
                    u.email.to_ascii_lowercase(),
                    UserState {
                        user: u.clone(),
                        used_codes: HashSet::new(),
                        sign_counts: HashMap::new(),
                    },
                )
            })
            .collect();
        let inner = Arc::new(Inner {
            login_page: login_page_html(config.page_signs_in.as_ref()),
            base_url,
            sso_url,
            rp_id: config.host.clone(),
            xsrf_key: ring::hmac::Key::generate(
                ring::hmac::HMAC_SHA256,
                &ring::rand::SystemRandom::new(),
            )
            .expect("system randomness"),
            changed: watch::Sender::new(0),
            state: Mutex::new(ServerState {
                users,
                apps: config.apps.clone(),
                session_lifetime: config.session_lifetime,
                remember_browsers: false,
                named_instead: HashMap::new(),
                push_lifetime: config.push_lifetime,
                push_poll_min_gap: config.push_poll_min_gap,
                push_poll_times: Vec::new(),
                xsrf_lifetime: config.xsrf_lifetime,
                clock_offset: Duration::ZERO,
                relay_state: config.relay_state.clone(),
                sessions: HashMap::new(),
                pushes: HashMap::new(),
                faults: HashMap::new(),
                stats: FakeJumpCloudStats::default(),
                cookie_values: Vec::new(),
                saml_responses: Vec::new(),
                webauthn: HashMap::new(),
                webauthn_refusals: Vec::new(),
                device_checks: HashMap::new(),
            }),
        });
        let console = router(Arc::clone(&inner));
        let sso = sso_router(Arc::clone(&inner));
        let (shutdown, stop) = watch::channel(false);
        let serve = |listener: TcpListener, app: Router| {
            let mut stop = stop.clone();
            async move {
                let stopped = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    eprintln!("fake JumpCloud stopped: {e}");
                }
            }
        };
        let (console, sso) = (serve(listener, console), serve(sso_listener, sso));
        let task = tokio::spawn(async move {
            tokio::join!(console, sso);
        });
        Ok(Self {
            inner,
            addr,
            sso_addr,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:PORT` (or the [`FakeJumpCloudConfig::host`]): the console URL
    /// (`jumpcloud_console_url`).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The address the console listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT2` (or the [`FakeJumpCloudConfig::host`]): the SSO host, where
    /// the apps' SAML pages are.
    pub fn sso_url(&self) -> String {
        self.inner.sso_url.clone()
    }

    /// The address the SSO host listens on.
    pub fn sso_addr(&self) -> SocketAddr {
        self.sso_addr
    }

    /// The IdP URL of an app, `http://127.0.0.1:PORT2/saml2/{app}` on the SSO host (the
    /// account's `url`).
    pub fn app_url(&self, app: &str) -> String {
        format!("{}/saml2/{app}", self.inner.sso_url)
    }

    /// Moves the fake's clock forward: sessions, XSRF tokens and pushes expire as if `by` had
    /// passed (the `expiresAt` of pushes started later is reported from the moved clock).
    pub fn advance_clock(&self, by: Duration) {
        self.inner.lock().clock_offset += by;
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

    /// Why each refused WebAuthn assertion was refused, in order (the answer itself says only
    /// [`WEBAUTHN_FAILED`], like a relying party).
    pub fn webauthn_refusals(&self) -> Vec<String> {
        self.inner.lock().webauthn_refusals.clone()
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

    /// A console session signed in as `email`, as a browser holds one once the person has
    /// signed in: the value of its session cookie ([`SESSION_COOKIE`]).
    pub fn signed_in_session(&self, email: &str) -> String {
        let sid = token(40);
        let mut state = self.inner.lock();
        let expires_at = state.now() + state.session_lifetime;
        state.sessions.insert(
            sid.clone(),
            ConsoleSession {
                xsrf: token(32),
                pending: None,
                user: Some(email.to_owned()),
                expires_at,
            },
        );
        sid
    }

    /// How many signed-in sessions are alive.
    pub fn live_sessions(&self) -> usize {
        let state = self.inner.lock();
        let now = state.now();
        state
            .sessions
            .values()
            .filter(|s| s.user.is_some() && s.expires_at > now)
            .count()
    }

    /// Makes the assertions of `email`'s sessions name `subject` from now on: an IdP whose
    /// session starts answering for someone else (a mix-up at the IdP, or an attack on it).
    pub fn name_in_assertions(&self, email: &str, subject: &str) {
        self.inner
            .lock()
            .named_instead
            .insert(email.to_ascii_lowercase(), subject.to_owned());
    }

    /// Makes the session cookie of sessions started from now on persistent (`Max-Age`), so
    /// that a browser profile stays signed in across restarts, as with an IdP's "keep me
    /// signed in".
    pub fn remember_browsers(&self) {
        self.inner.lock().remember_browsers = true;
    }

    /// Sets the lifetime of sessions signed in from now on.
    pub fn set_session_lifetime(&self, lifetime: Duration) {
        self.inner.lock().session_lifetime = lifetime;
    }

    /// Sets the lifetime of pushes started from now on.
    pub fn set_push_lifetime(&self, lifetime: Duration) {
        self.inner.lock().push_lifetime = lifetime;
    }

    /// When each push status poll arrived (throttled ones included), in order, by the
    /// fake's monotonic clock: the pace a client polls at.
    pub fn push_poll_times(&self) -> Vec<Instant> {
        self.inner.lock().push_poll_times.clone()
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
        self.shutdown.send_replace(true);
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
        self.shutdown.send_replace(true);
        self.task.abort();
    }
}

struct Inner {
    /// The sign-in page: [`LOGIN_PAGE`], with the script of [`PageSignIn`] when one is set.
    login_page: String,
    /// The console.
    base_url: String,
    /// The SSO host.
    sso_url: String,
    /// The WebAuthn relying party id: the host name of both URLs.
    rp_id: String,
    /// Signs the `_xsrf` cookie.
    xsrf_key: ring::hmac::Key,
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
    /// The session cookie carries `Max-Age` (the session lifetime) and so outlives the
    /// browser, as an IdP's "keep me signed in" cookie does.
    remember_browsers: bool,
    /// See [`FakeJumpCloud::name_in_assertions`].
    named_instead: HashMap<String, String>,
    push_lifetime: Duration,
    /// See [`FakeJumpCloudConfig::push_poll_min_gap`].
    push_poll_min_gap: Duration,
    /// See [`FakeJumpCloud::push_poll_times`].
    push_poll_times: Vec<Instant>,
    xsrf_lifetime: Duration,
    /// How far [`FakeJumpCloud::advance_clock`] moved the clock.
    clock_offset: Duration,
    relay_state: String,
    sessions: HashMap<String, ConsoleSession>,
    pushes: HashMap<String, PushState>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    stats: FakeJumpCloudStats,
    /// See [`FakeJumpCloud::issued_cookie_values`].
    cookie_values: Vec<String>,
    /// See [`FakeJumpCloud::saml_responses`].
    saml_responses: Vec<String>,
    /// Issued WebAuthn challenges not yet answered, by their `token`.
    webauthn: HashMap<String, WebAuthnChallenge>,
    /// See [`FakeJumpCloud::webauthn_refusals`].
    webauthn_refusals: Vec<String>,
    /// Device-check nonces of policy pages not yet answered.
    device_checks: HashMap<String, DeviceCheck>,
}

/// A WebAuthn challenge issued to a session waiting for its second factor.
struct WebAuthnChallenge {
    sid: String,
    challenge: Vec<u8>,
    issued: Instant,
}

/// The nonce of one policy page: good for one launch of one app by one session.
struct DeviceCheck {
    sid: String,
    app: String,
}

impl ServerState {
    /// The fake's monotonic clock.
    fn now(&self) -> Instant {
        Instant::now() + self.clock_offset
    }

    /// The fake's wall clock.
    fn wall_now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.clock_offset
    }
}

struct UserState {
    user: FakeUser,
    used_codes: HashSet<String>,
    /// The last signature counter seen of each security key, by credential id.
    sign_counts: HashMap<Vec<u8>, u32>,
}

/// A console session: created by the XSRF request, signed in by a completed login.
struct ConsoleSession {
    /// The XSRF token (the `_xsrf` cookie carries it signed).
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
    /// When it was last polled, by the fake's monotonic clock.
    last_poll: Option<Instant>,
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
        .route(
            "/userconsole/auth/webauthn",
            get(webauthn_challenge).post(webauthn_login),
        )
        .route("/userconsole/api/self", get(api_self))
        .route("/login", get(login_page))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&inner),
            count_request,
        ))
        .with_state(inner)
}

/// The SSO host: only the apps' SAML pages.
fn sso_router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/saml2/{app}", get(saml_page))
        .route("/saml2/{app}/device-check", post(device_check))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&inner),
            count_request,
        ))
        .with_state(inner)
}

/// Counts every request ([`FakeJumpCloudStats::requests`]) before any handler sees it.
async fn count_request(
    State(inner): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    inner.lock().stats.requests += 1;
    next.run(request).await
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

/// The `_xsrf` cookie for `token` issued at `at`: `base64(token)|nanoseconds|hex(HMAC)`, the
/// form JumpCloud's cookie has (saml2aws#230 shows one; it is Beego's signed cookie).
fn signed_xsrf(key: &ring::hmac::Key, token: &str, at: OffsetDateTime) -> String {
    let encoded = URL_SAFE.encode(token);
    let timestamp = at.unix_timestamp_nanos().to_string();
    let signature = ring::hmac::sign(key, format!("{encoded}{timestamp}").as_bytes());
    let hex: String = signature
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{encoded}|{timestamp}|{hex}")
}

/// The token in a signed `_xsrf` cookie and when it was issued, if the signature holds.
fn verify_xsrf(key: &ring::hmac::Key, cookie: &str) -> Option<(String, OffsetDateTime)> {
    let mut parts = cookie.splitn(3, '|');
    let (encoded, timestamp, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    let signature = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    ring::hmac::verify(key, format!("{encoded}{timestamp}").as_bytes(), &signature).ok()?;
    let token = String::from_utf8(URL_SAFE.decode(encoded).ok()?).ok()?;
    let issued = OffsetDateTime::from_unix_timestamp_nanos(timestamp.parse().ok()?).ok()?;
    Some((token, issued))
}

/// Takes the next injected fault of `endpoint`: an answer to send instead, or `None` to go on
/// (after a delay, if that was the fault).
async fn fault(inner: &Arc<Inner>, endpoint: Endpoint) -> Option<Response> {
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
        Fault::ErrorBody(code, text) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            Some((status, Json(json!({ "error": text }))).into_response())
        }
        Fault::RedirectToLogin => Some(
            (
                StatusCode::FOUND,
                [(LOCATION, HeaderValue::from_static("/login?context=sso"))],
            )
                .into_response(),
        ),
        Fault::Throttle(retry_after) => {
            let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            let value = match retry_after {
                RetryAfter::Absent => None,
                RetryAfter::Seconds(n) => Some(n.to_string()),
                RetryAfter::DateIn(d) => {
                    Some(httpdate::fmt_http_date(std::time::SystemTime::now() + d))
                }
            };
            if let Some(v) = value {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from_str(&v).expect("ascii"),
                );
            }
            Some(response)
        }
        Fault::Oversized(len) => {
            let html = endpoint == Endpoint::SamlPage;
            Some(
                Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        CONTENT_TYPE,
                        if html {
                            "text/html; charset=utf-8"
                        } else {
                            "application/json"
                        },
                    )
                    .body(Body::new(EndlessBody {
                        inner: Arc::clone(inner),
                        left: len,
                        html,
                        started: false,
                    }))
                    .expect("a static response"),
            )
        }
    }
}

/// A body of a given size, made up as it is sent (never held whole), counting what it hands
/// to the connection in [`FakeJumpCloudStats::oversized_bytes_sent`].
struct EndlessBody {
    inner: Arc<Inner>,
    left: u64,
    html: bool,
    started: bool,
}

impl HttpBody for EndlessBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        const CHUNK: u64 = 64 * 1024;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK);
        let mut chunk = vec![b'a'; n as usize];
        if !self.started {
            let head: &[u8] = if self.html {
                b"<!DOCTYPE html><html><body><p>"
            } else {
                b"{\"xsrf\":\""
            };
            let k = head.len().min(chunk.len());
            chunk[..k].copy_from_slice(&head[..k]);
            self.started = true;
        }
        self.left -= n;
        self.inner.lock().stats.oversized_bytes_sent += n;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(chunk)))))
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
    let (xsrf_cookie, remember) = {
        let mut state = inner.lock();
        let expires_at = state.now() + state.xsrf_lifetime;
        let signed = signed_xsrf(&inner.xsrf_key, &xsrf, state.wall_now());
        state.sessions.insert(
            sid.clone(),
            ConsoleSession {
                xsrf: xsrf.clone(),
                pending: None,
                user: None,
                expires_at,
            },
        );
        state
            .cookie_values
            .extend([sid.clone(), xsrf.clone(), signed.clone()]);
        let remember = state
            .remember_browsers
            .then(|| format!("; Max-Age={}", state.session_lifetime.as_secs()));
        (signed, remember.unwrap_or_default())
    };
    (
        AppendHeaders([
            (SET_COOKIE, format!("{XSRF_COOKIE}={xsrf_cookie}; Path=/")),
            (SET_COOKIE, session_cookie(&sid) + &remember),
        ]),
        Json(json!({ "xsrf": xsrf })),
    )
        .into_response()
}

/// Checks the XSRF header against the token signed into the cookie and against the session;
/// the session id on success. `"stale"` when the token or the session has outlived its time.
fn check_xsrf(
    inner: &Inner,
    state: &ServerState,
    headers: &HeaderMap,
) -> Result<String, &'static str> {
    let header = headers
        .get("x-xsrftoken")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing header")?;
    let sid = cookie(headers, SESSION_COOKIE).ok_or("no session cookie")?;
    let session = state.sessions.get(&sid).ok_or("unknown session")?;
    let cookie_value = cookie(headers, XSRF_COOKIE).ok_or("no xsrf cookie")?;
    let (cookie_token, issued) =
        verify_xsrf(&inner.xsrf_key, &cookie_value).ok_or("bad xsrf signature")?;
    if header != session.xsrf || cookie_token != session.xsrf {
        return Err("token mismatch");
    }
    let lifetime = time::Duration::try_from(state.xsrf_lifetime).expect("a sane lifetime");
    if session.expires_at <= state.now() || state.wall_now() - issued > lifetime {
        return Err("stale");
    }
    Ok(sid)
}

/// The 403 for a failed [`check_xsrf`], counted.
fn xsrf_refused(state: &mut ServerState, why: &str) -> Response {
    if why == "stale" {
        state.stats.stale_xsrf += 1;
    }
    forbidden()
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "Forbidden").into_response()
}

/// Signs the session in, keeping its id (JumpCloud does not rotate the console cookie at
/// login), and answers `{redirectTo}`: the app's URL on the SSO host, not an echo of the
/// client's value.
fn complete_login(
    inner: &Inner,
    state: &mut ServerState,
    sid: &str,
    email: &str,
    redirect_to: &str,
) -> Response {
    let expires_at = state.now() + state.session_lifetime;
    if let Some(session) = state.sessions.get_mut(sid) {
        session.pending = None;
        session.user = Some(email.to_owned());
        session.expires_at = expires_at;
    }
    state.stats.logins += 1;
    let target = match redirect_to.trim_start_matches('/') {
        // Clients that send no redirectTo land on the console's user portal.
        "" => format!("{}/userconsole/", inner.base_url),
        path => format!("{}/{path}", inner.sso_url),
    };
    Json(json!({ "redirectTo": target })).into_response()
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
    let sid = match check_xsrf(&inner, state, &headers) {
        Ok(sid) => sid,
        Err(why) => {
            state.stats.rejected_auth_posts += 1;
            if why == "missing header" {
                state.stats.missing_xsrf_header += 1;
            }
            return xsrf_refused(state, why);
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
        if user.user.bare_mfa {
            return message(StatusCode::UNAUTHORIZED, MFA_REQUIRED);
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
    let sid = match check_xsrf(&inner, state, &headers) {
        Ok(sid) => sid,
        Err(why) => return xsrf_refused(state, why),
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
    let now = state.wall_now();
    let pending = state
        .pushes
        .values()
        .any(|p| p.email == email && p.status == "pending" && p.expires_at > now);
    if pending {
        // One push at a time: the phone shows one prompt.
        state.stats.pushes_refused += 1;
        return message(StatusCode::CONFLICT, PUSH_PENDING);
    }
    let push = PushState {
        sid,
        email,
        behavior: user.user.push,
        polls: 0,
        last_poll: None,
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
    let sid = match check_xsrf(&inner, state, &headers) {
        Ok(sid) => sid,
        Err(why) => return xsrf_refused(state, why),
    };
    state.stats.push_polls += 1;
    let now = state.wall_now();
    let at = state.now();
    state.push_poll_times.push(at);
    let min_gap = state.push_poll_min_gap;
    let Some(push) = state.pushes.get_mut(&id).filter(|p| p.sid == sid) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let too_soon = push.last_poll.is_some_and(|last| at < last + min_gap);
    push.last_poll = Some(at);
    if too_soon {
        state.stats.push_polls_throttled += 1;
        let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
        return response;
    }
    push.polls += 1;
    if push.status == "pending" {
        let (status, reached) = match push.behavior {
            PushBehavior::AcceptAfterPolls(n) => ("accepted", push.polls >= n),
            PushBehavior::DenyAfterPolls(n) => ("denied", push.polls >= n),
            PushBehavior::ExpireAfterPolls(n) => ("expired", push.polls >= n),
            PushBehavior::NeverAnswer => ("pending", false),
            PushBehavior::AcceptAfter(wait) => ("accepted", now >= push.initiated_at + wait),
            PushBehavior::DenyWith401AfterPolls(n) => ("denied", push.polls >= n),
        };
        if reached {
            push.status = status;
        } else if now >= push.expires_at {
            push.status = "expired";
        }
        match push.status {
            "accepted" => state.stats.pushes_accepted += 1,
            "denied" => state.stats.pushes_denied += 1,
            "expired" => state.stats.pushes_expired += 1,
            _ => {}
        }
    }
    let push = &state.pushes[&id];
    if push.status == "denied" && matches!(push.behavior, PushBehavior::DenyWith401AfterPolls(_)) {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    Json(push_json(&id, push)).into_response()
}

/// R3-push, step 3.
async fn push_login(State(inner): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = fault(&inner, Endpoint::PushLogin).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let sid = match check_xsrf(&inner, state, &headers) {
        Ok(sid) => sid,
        Err(why) => return xsrf_refused(state, why),
    };
    let accepted = state
        .pushes
        .get(&id)
        .is_some_and(|p| p.sid == sid && p.status == "accepted");
    if !accepted {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let now = state.wall_now();
    if state.pushes.get(&id).is_some_and(|p| p.expires_at <= now) {
        // Accepted, but its login comes too late.
        state.stats.late_push_logins += 1;
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let push = state.pushes.remove(&id).expect("checked above");
    complete_login(&inner, state, &sid, &push.email, &push.redirect_to)
}

/// How long a WebAuthn challenge may wait for its assertion.
pub const WEBAUTHN_CHALLENGE_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The fake's answer to a refused WebAuthn assertion (the real wording is not documented).
pub const WEBAUTHN_FAILED: &str = "Security key verification failed.";

/// The `publicKey.timeout` the fake asks browsers to wait for a touch, in milliseconds.
const WEBAUTHN_TIMEOUT_MS: u64 = 60_000;

/// R3-WebAuthn, step 1: a fresh challenge for a session whose password was accepted.
///
/// Only the session cookie is needed (saml2aws sends no other header here).
async fn webauthn_challenge(State(inner): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = fault(&inner, Endpoint::WebAuthnChallenge).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let now = state.now();
    let Some((sid, email)) = cookie(&headers, SESSION_COOKIE).and_then(|sid| {
        let session = state.sessions.get(&sid).filter(|s| s.expires_at > now)?;
        let (email, _) = session.pending.clone()?;
        Some((sid, email))
    }) else {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let Some(user) = state
        .users
        .get(&email)
        .filter(|u| u.user.has_available("webauthn") && !u.user.security_keys.is_empty())
    else {
        return message(
            StatusCode::BAD_REQUEST,
            "WebAuthn is not available for this user.",
        );
    };
    let allow: Vec<Value> = user
        .user
        .security_keys
        .iter()
        .map(|k| json!({ "type": "public-key", "id": B64URL.encode(&k.credential_id) }))
        .collect();
    let mut challenge = vec![0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut challenge).is_err() {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    }
    let token = token(40);
    let body = json!({
        "publicKey": {
            "challenge": B64URL.encode(&challenge),
            "rpId": inner.rp_id,
            "allowCredentials": allow,
            "timeout": WEBAUTHN_TIMEOUT_MS,
            "userVerification": "discouraged",
        },
        "token": token,
    });
    state.webauthn.insert(
        token,
        WebAuthnChallenge {
            sid,
            challenge,
            issued: now,
        },
    );
    state.stats.webauthn_challenges += 1;
    Json(body).into_response()
}

/// R3-WebAuthn, step 3: verifies the assertion like a relying party and signs the session in.
async fn webauthn_login(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = fault(&inner, Endpoint::WebAuthnLogin).await {
        return r;
    }
    let mut guard = inner.lock();
    let state = &mut *guard;
    let sid = match check_xsrf(&inner, state, &headers) {
        Ok(sid) => sid,
        Err(why) => return xsrf_refused(state, why),
    };
    let Some(posted) = PostedAssertion::parse(&body) else {
        return message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    // Single use: the challenge is gone whatever the outcome.
    let issued = state.webauthn.remove(&posted.token);
    let pending = state.sessions.get(&sid).and_then(|s| s.pending.clone());
    let verdict = (|| -> Result<(String, String), String> {
        let issued = issued.ok_or("unknown or already used token")?;
        if issued.sid != sid {
            return Err("the challenge was issued to another session".to_owned());
        }
        if state.now().saturating_duration_since(issued.issued) > WEBAUTHN_CHALLENGE_LIFETIME {
            return Err("the challenge has expired".to_owned());
        }
        let (email, redirect_to) = pending.ok_or("no password accepted in this session")?;
        let user = state.users.get_mut(&email).ok_or("unknown user")?;
        let key = user
            .user
            .security_keys
            .iter()
            .find(|k| k.credential_id == posted.raw_id)
            .ok_or("unknown credential")?;
        let previous = user.sign_counts.get(&posted.raw_id).copied().unwrap_or(0);
        let count = verify_assertion(
            &AssertionExpectation {
                challenge: &issued.challenge,
                origin: &inner.base_url,
                rp_id: &inner.rp_id,
                public_key: &key.public_key,
                previous_sign_count: previous,
            },
            &posted.client_data_json,
            &posted.authenticator_data,
            &posted.signature,
        )?;
        user.sign_counts.insert(posted.raw_id.clone(), count);
        Ok((email, redirect_to))
    })();
    match verdict {
        Ok((email, redirect_to)) => {
            state.stats.webauthn_accepted += 1;
            complete_login(&inner, state, &sid, &email, &redirect_to)
        }
        Err(why) => {
            state.stats.webauthn_refused += 1;
            state.webauthn_refusals.push(why);
            message(StatusCode::UNAUTHORIZED, WEBAUTHN_FAILED)
        }
    }
}

/// The fields of a posted assertion, decoded.
struct PostedAssertion {
    token: String,
    raw_id: Vec<u8>,
    client_data_json: Vec<u8>,
    authenticator_data: Vec<u8>,
    signature: Vec<u8>,
}

impl PostedAssertion {
    /// `None` for anything malformed (the 400 of a relying party).
    fn parse(body: &[u8]) -> Option<Self> {
        let body: Value = serde_json::from_slice(body).ok()?;
        let credential = body.get("publicKeyCredential")?;
        let bytes = |v: Option<&Value>| B64URL_LENIENT.decode(v?.as_str()?).ok();
        let response = credential.get("response")?;
        if credential.get("type")?.as_str()? != "public-key" {
            return None;
        }
        let raw_id = bytes(credential.get("rawId"))?;
        // `id` is the same credential id, base64url: a client that sends two different ones
        // is broken.
        if bytes(credential.get("id"))? != raw_id {
            return None;
        }
        Some(Self {
            token: body.get("token")?.as_str()?.to_owned(),
            raw_id,
            client_data_json: bytes(response.get("clientDataJSON"))?,
            authenticator_data: bytes(response.get("authenticatorData"))?,
            signature: bytes(response.get("signature"))?,
        })
    }
}

/// What a relying party expects of one WebAuthn assertion.
#[derive(Debug, Clone, Copy)]
pub struct AssertionExpectation<'a> {
    /// The challenge it issued.
    pub challenge: &'a [u8],
    /// The origin the browser was on (`http://localhost:PORT`, the console).
    pub origin: &'a str,
    /// The RP ID (`localhost`).
    pub rp_id: &'a str,
    /// The credential's public key, an uncompressed P-256 point.
    pub public_key: &'a [u8],
    /// The signature counter last seen of this credential (0 at first).
    pub previous_sign_count: u32,
}

/// Verifies a WebAuthn assertion (WebAuthn Level 2, §7.2 "Verifying an Authentication
/// Assertion", the steps that concern a security key); the new signature counter, or why it
/// is refused.
pub fn verify_assertion(
    expected: &AssertionExpectation<'_>,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
) -> Result<u32, String> {
    let client_data: Value =
        serde_json::from_slice(client_data_json).map_err(|_| "clientDataJSON is not JSON")?;
    let field = |name: &str| client_data.get(name).and_then(Value::as_str);
    if field("type") != Some("webauthn.get") {
        return Err(format!("clientDataJSON.type is {:?}", field("type")));
    }
    let challenge = field("challenge")
        .and_then(|c| B64URL_LENIENT.decode(c).ok())
        .ok_or("clientDataJSON.challenge is missing or not base64url")?;
    if challenge != expected.challenge {
        return Err("clientDataJSON.challenge is not the one issued".to_owned());
    }
    if field("origin") != Some(expected.origin) {
        return Err(format!(
            "clientDataJSON.origin is {:?}, not {}",
            field("origin"),
            expected.origin
        ));
    }
    // rpIdHash (32) ‖ flags (1) ‖ signCount (4) ‖ extensions.
    let Some((rp_id_hash, rest)) = authenticator_data.split_at_checked(32) else {
        return Err("authenticatorData is too short".to_owned());
    };
    let Some((&flags, rest)) = rest.split_first() else {
        return Err("authenticatorData is too short".to_owned());
    };
    let count = rest
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or("authenticatorData is too short")?;
    if rp_id_hash != ring::digest::digest(&ring::digest::SHA256, expected.rp_id.as_bytes()).as_ref()
    {
        return Err(format!("rpIdHash is not SHA-256({})", expected.rp_id));
    }
    if flags & 0x01 == 0 {
        return Err("the user-present flag is not set".to_owned());
    }
    // A counter that does not grow betrays a cloned authenticator; 0 means it keeps none.
    if (count != 0 || expected.previous_sign_count != 0) && count <= expected.previous_sign_count {
        return Err(format!(
            "signCount {count} did not grow past {}",
            expected.previous_sign_count
        ));
    }
    let client_data_hash = ring::digest::digest(&ring::digest::SHA256, client_data_json);
    let signed = [authenticator_data, client_data_hash.as_ref()].concat();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        expected.public_key,
    )
    .verify(&signed, signature)
    .map_err(|_| "the signature does not verify".to_owned())?;
    Ok(count)
}

/// The signed-in user of the request's session, if it is alive.
fn signed_in(state: &ServerState, headers: &HeaderMap) -> Option<String> {
    let sid = cookie(headers, SESSION_COOKIE)?;
    let session = state.sessions.get(&sid)?;
    (session.expires_at > state.now())
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
        let location = format!("{}/login?redirectTo=saml2%2F{}", inner.base_url, app.name);
        return (
            StatusCode::FOUND,
            [(LOCATION, HeaderValue::from_str(&location).expect("ascii"))],
        )
            .into_response();
    };
    if app.browser_only {
        state.stats.policy_pages += 1;
        let Some(sid) = cookie(&headers, SESSION_COOKIE) else {
            return forbidden();
        };
        let nonce = token(32);
        let page = policy_page(&app.name, &nonce);
        state
            .device_checks
            .insert(nonce, DeviceCheck { sid, app: app.name });
        return Html(page).into_response();
    }
    saml_form(&mut state, &app, &email)
}

/// The auto-post form with a fresh SAMLResponse for `email`, counted.
fn saml_form(state: &mut ServerState, app: &FakeApp, email: &str) -> Response {
    let named = state.named_instead.get(&email.to_ascii_lowercase());
    let mut spec = SamlSpec::new(named.map_or(email, String::as_str), &[]);
    spec.roles = app.roles.clone();
    spec.session_duration = app.session_duration;
    spec.session_duration_text = app.session_duration_text.clone();
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

/// The device check a browser-only app's page (below) posts: its nonce and the proof its
/// script computed. Passed, it is answered with the SAML form for this launch only: the
/// nonce is gone, so a client replaying cookies (samld's headless refresh) gets the policy
/// page again, as from a policy evaluated at each app launch.
async fn device_check(
    State(inner): Shared,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = inner.lock();
    let state = &mut *guard;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (Some(nonce), Some(proof)) = (form.get("nonce"), form.get("proof")) else {
        state.stats.device_checks_failed += 1;
        return message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let check = state.device_checks.remove(nonce);
    let email = signed_in(state, &headers);
    let sid = cookie(&headers, SESSION_COOKIE);
    let expected = hex(ring::digest::digest(&ring::digest::SHA256, nonce.as_bytes()).as_ref());
    let app = state.apps.iter().find(|a| a.name == app).cloned();
    match (check, email, app) {
        (Some(check), Some(email), Some(app))
            if Some(&check.sid) == sid.as_ref()
                && check.app == app.name
                && proof.eq_ignore_ascii_case(&expected) =>
        {
            state.stats.device_checks_passed += 1;
            saml_form(state, &app, &email)
        }
        _ => {
            state.stats.device_checks_failed += 1;
            (StatusCode::FORBIDDEN, Html(POLICY_REFUSED)).into_response()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a browser-only app (conditional access, device trust) answers a signed-in session
/// without a passed device check: a page with neither the login form nor the SAML form in
/// it, whose script proves it runs in a browser (SHA-256 of a single-use nonce, through
/// `crypto.subtle`, which only a secure context such as `http://localhost` has) and posts the
/// proof back.
fn policy_page(app: &str, nonce: &str) -> String {
    // Form-encoded, the path segment is safe in an HTML attribute too.
    let path = url::form_urlencoded::byte_serialize(app.as_bytes()).collect::<String>();
    format!(
        concat!(
            "<!DOCTYPE html>\n<html><head><title>JumpCloud</title></head>\n",
            "<body><div id=\"root\"><h1>Verify your device</h1><p>Your organization's policy ",
            "requires a trusted device to access this application.</p></div>\n",
            "<form id=\"device-check\" method=\"post\" action=\"/saml2/{path}/device-check\">",
            "<input type=\"hidden\" name=\"nonce\" value=\"{nonce}\" />",
            "<input type=\"hidden\" name=\"proof\" value=\"\" /></form>\n",
            "<script>\n(async () => {{\n",
            "  const form = document.getElementById('device-check');\n",
            "  const nonce = new TextEncoder().encode(form.elements.nonce.value);\n",
            "  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', nonce));\n",
            "  form.elements.proof.value = Array.from(digest, ",
            "b => b.toString(16).padStart(2, '0')).join('');\n",
            "  form.submit();\n}})();\n</script></body></html>\n",
        ),
        path = path,
        nonce = nonce,
    )
}

/// The answer to a failed device check.
const POLICY_REFUSED: &str = "<!DOCTYPE html>\n<html><head><title>JumpCloud</title></head>\n\
     <body><div id=\"root\"><h1>Access denied</h1><p>This device does not meet your \
     organization's policy.</p></div></body></html>\n";

/// Where the SAML page sends browsers without a session: the console's sign-in page, a
/// small single-page app on the same JSON API as samld's API client (R1–R3). Test drivers
/// rely on its element ids: `#email`, `#password`, `#continue`; `#otp`, `#verify` (TOTP);
/// `#security-key` (WebAuthn); `#push` (JumpCloud Protect); `#message` (errors).
async fn login_page(State(inner): Shared) -> Html<String> {
    Html(inner.login_page.clone())
}

/// [`LOGIN_PAGE`], and after its script one that plays `person`: it types the email and
/// password in, then the code or the push, as soon as the page shows each step.
fn login_page_html(person: Option<&PageSignIn>) -> String {
    let Some(person) = person else {
        return LOGIN_PAGE.to_owned();
    };
    let me = serde_json::json!({
        "email": person.email,
        "password": person.password,
        "totpCode": person.totp_code,
    })
    .to_string()
    // Inside a <script>, "</script>" in a value would end it.
    .replace('<', "\\u003c");
    let script = format!(
        r#"<script>
"use strict";
// The page signs in by itself (FakeJumpCloudConfig::page_signs_in).
(() => {{
  const me = {me};
  $("email").value = me.email;
  $("password").value = me.password;
  $("password-step").requestSubmit();
  const next = setInterval(() => {{
    if (me.totpCode !== null && !$("totp-step").hidden) {{
      clearInterval(next);
      $("otp").value = me.totpCode;
      $("totp-step").requestSubmit();
    }} else if (me.totpCode === null && !$("push-step").hidden) {{
      clearInterval(next);
      $("push").click();
    }}
  }}, 100);
}})();
</script>
</body>"#
    );
    LOGIN_PAGE.replacen("</body>", &script, 1)
}

const LOGIN_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>JumpCloud User Portal</title>
</head>
<body>
<h1>Sign in to JumpCloud</h1>
<form id="password-step">
  <label>Email <input type="email" id="email" autocomplete="username"></label>
  <label>Password <input type="password" id="password" autocomplete="current-password"></label>
  <button type="submit" id="continue">Continue</button>
</form>
<form id="totp-step" hidden>
  <label>Verification code <input type="text" id="otp" inputmode="numeric" autocomplete="one-time-code"></label>
  <button type="submit" id="verify">Verify</button>
</form>
<div id="webauthn-step" hidden>
  <button type="button" id="security-key">Use security key</button>
</div>
<div id="push-step" hidden>
  <button type="button" id="push">Send a push notification</button>
</div>
<p id="message" role="alert"></p>
<script>
"use strict";
const redirectTo = new URLSearchParams(location.search).get("redirectTo") || "";
let xsrf = null;
let credentials = null;
const $ = (id) => document.getElementById(id);
const say = (text) => { $("message").textContent = text; };

async function call(method, path, body) {
  if (xsrf === null) {
    const r = await fetch("/userconsole/xsrf", { headers: { Accept: "application/json" } });
    xsrf = (await r.json()).xsrf;
  }
  const init = { method, headers: { Accept: "application/json", "X-Xsrftoken": xsrf } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let json = {};
  try { json = await r.json(); } catch (e) { /* not JSON: keep the status */ }
  return { status: r.status, body: json };
}

// A 200 with redirectTo ends the sign-in: the browser goes to the app (the SAML form).
function finish(r) {
  if (r.status === 200 && r.body.redirectTo) {
    location.assign(r.body.redirectTo);
    return;
  }
  say(r.body.message || r.body.error || ("Sign-in failed (HTTP " + r.status + ")."));
}

async function auth(otp) {
  const body = { context: "sso", email: credentials.email, password: credentials.password,
                 redirectTo };
  if (otp !== undefined) body.otp = otp;
  return call("POST", "/userconsole/auth", body);
}

$("password-step").addEventListener("submit", async (e) => {
  e.preventDefault();
  say("");
  credentials = { email: $("email").value, password: $("password").value };
  const r = await auth();
  if (r.status === 401 && (r.body.factors || r.body.message === "MFA required.")) {
    // A bare "MFA required." lists no factors: a code is what such clients send.
    const factors = (r.body.factors || [{ type: "totp", status: "available" }])
      .filter((f) => f.status === "available").map((f) => f.type);
    $("password-step").hidden = true;
    $("totp-step").hidden = !factors.includes("totp");
    $("webauthn-step").hidden = !factors.includes("webauthn");
    $("push-step").hidden = !factors.includes("push");
    return;
  }
  finish(r);
});

$("totp-step").addEventListener("submit", async (e) => {
  e.preventDefault();
  say("");
  finish(await auth($("otp").value));
});

const fromB64url = (text) => {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
};
const toB64url = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

$("security-key").addEventListener("click", async () => {
  say("");
  const options = await call("GET", "/userconsole/auth/webauthn");
  if (options.status !== 200) { finish(options); return; }
  const pk = options.body.publicKey;
  const publicKey = {
    challenge: fromB64url(pk.challenge),
    rpId: pk.rpId,
    timeout: pk.timeout,
    userVerification: pk.userVerification,
    allowCredentials: (pk.allowCredentials || []).map((c) => ({ type: c.type, id: fromB64url(c.id) })),
  };
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey });
  } catch (e) {
    say("The security key did not answer: " + e.name + ": " + e.message);
    return;
  }
  const response = credential.response;
  finish(await call("POST", "/userconsole/auth/webauthn", {
    publicKeyCredential: {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: "public-key",
      response: {
        clientDataJSON: toB64url(response.clientDataJSON),
        authenticatorData: toB64url(response.authenticatorData),
        signature: toB64url(response.signature),
        userHandle: null,
      },
    },
    token: options.body.token,
  }));
});

$("push").addEventListener("click", async () => {
  say("Waiting for the push to be accepted…");
  const started = await call("POST", "/userconsole/auth/push", {});
  if (started.status !== 200) { finish(started); return; }
  const id = started.body.id;
  const poll = async () => {
    const r = await call("GET", "/userconsole/auth/push/" + encodeURIComponent(id));
    if (r.status !== 200) { finish(r); return; }
    if (r.body.status === "pending") { setTimeout(poll, 500); return; }
    if (r.body.status !== "accepted") { say("Push " + r.body.status + "."); return; }
    finish(await call("POST", "/userconsole/auth/push/" + encodeURIComponent(id) + "/login", {}));
  };
  poll();
});
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

    const ORIGIN: &str = "http://localhost:4242";

    /// A software security key: signs assertions the way an authenticator does.
    struct SoftKey {
        pair: EcdsaKeyPair,
        id: Vec<u8>,
        public_key: Vec<u8>,
    }

    impl SoftKey {
        fn new() -> Self {
            let (id, pkcs8, public_key) = crate::browser_person::security_key();
            let rng = ring::rand::SystemRandom::new();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
                .expect("a key");
            Self {
                pair,
                id,
                public_key,
            }
        }

        /// `(clientDataJSON, authenticatorData, signature)` for a challenge.
        fn assert(
            &self,
            challenge: &[u8],
            origin: &str,
            rp_id: &str,
            flags: u8,
            count: u32,
        ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
            let client_data = json!({
                "type": "webauthn.get",
                "challenge": B64URL.encode(challenge),
                "origin": origin,
                "crossOrigin": false,
            })
            .to_string()
            .into_bytes();
            let mut auth_data = ring::digest::digest(&ring::digest::SHA256, rp_id.as_bytes())
                .as_ref()
                .to_vec();
            auth_data.push(flags);
            auth_data.extend(count.to_be_bytes());
            let hash = ring::digest::digest(&ring::digest::SHA256, &client_data);
            let signed = [auth_data.as_slice(), hash.as_ref()].concat();
            let signature = self
                .pair
                .sign(&ring::rand::SystemRandom::new(), &signed)
                .expect("signing")
                .as_ref()
                .to_vec();
            (client_data, auth_data, signature)
        }
    }

    fn expect<'a>(key: &'a SoftKey, challenge: &'a [u8]) -> AssertionExpectation<'a> {
        AssertionExpectation {
            challenge,
            origin: ORIGIN,
            rp_id: "localhost",
            public_key: &key.public_key,
            previous_sign_count: 0,
        }
    }

    #[test]
    fn a_good_assertion_passes_and_its_counter_must_grow() {
        let key = SoftKey::new();
        let challenge = [7u8; 32];
        let (c, a, s) = key.assert(&challenge, ORIGIN, "localhost", 0x01, 5);
        assert_eq!(
            verify_assertion(&expect(&key, &challenge), &c, &a, &s),
            Ok(5)
        );
        let seen = AssertionExpectation {
            previous_sign_count: 5,
            ..expect(&key, &challenge)
        };
        let refused = verify_assertion(&seen, &c, &a, &s).unwrap_err();
        assert!(refused.contains("signCount"), "{refused}");
        // A key that keeps no counter (always 0) passes every time.
        let (c, a, s) = key.assert(&challenge, ORIGIN, "localhost", 0x05, 0);
        assert_eq!(
            verify_assertion(&expect(&key, &challenge), &c, &a, &s),
            Ok(0)
        );
    }

    #[test]
    fn a_wrong_signature_origin_rp_id_challenge_or_presence_is_refused() {
        let key = SoftKey::new();
        let other = SoftKey::new();
        let challenge = [9u8; 32];
        let expected = expect(&key, &challenge);
        let cases = [
            (
                "signature",
                other.assert(&challenge, ORIGIN, "localhost", 1, 1),
            ),
            (
                "origin",
                key.assert(&challenge, "http://localhost:1", "localhost", 1, 1),
            ),
            (
                "rpIdHash",
                key.assert(&challenge, ORIGIN, "example.com", 1, 1),
            ),
            (
                "challenge",
                key.assert(&[8u8; 32], ORIGIN, "localhost", 1, 1),
            ),
            (
                "user-present",
                key.assert(&challenge, ORIGIN, "localhost", 0x04, 1),
            ),
        ];
        for (why, (c, a, s)) in cases {
            let refused = verify_assertion(&expected, &c, &a, &s).unwrap_err();
            assert!(refused.contains(why), "{why}: {refused}");
        }
        // Garbage is refused, not a panic.
        let (c, a, s) = key.assert(&challenge, ORIGIN, "localhost", 1, 1);
        assert!(verify_assertion(&expected, b"{", &a, &s).is_err());
        assert!(verify_assertion(&expected, &c, &a[..36], &s).is_err());
        assert!(verify_assertion(&expected, &c, &a, b"").is_err());
        let create = String::from_utf8(c)
            .unwrap()
            .replace("webauthn.get", "webauthn.create");
        assert!(verify_assertion(&expected, create.as_bytes(), &a, &s).is_err());
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client")
    }

    /// Password accepted, second factor pending: the client, its XSRF token.
    async fn pending_login(fake: &FakeJumpCloud) -> (reqwest::Client, String) {
        let http = client();
        let xsrf: Value = http
            .get(format!("{}/userconsole/xsrf", fake.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let xsrf = xsrf["xsrf"].as_str().unwrap().to_owned();
        let answer = http
            .post(format!("{}/userconsole/auth", fake.base_url()))
            .header("X-Xsrftoken", &xsrf)
            .json(&json!({
                "context": "sso", "email": DEFAULT_EMAIL, "password": DEFAULT_PASSWORD,
                "redirectTo": "saml2/aws",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["factors"][0]["type"], "webauthn", "{body}");
        (http, xsrf)
    }

    async fn post_assertion(
        fake: &FakeJumpCloud,
        http: &reqwest::Client,
        xsrf: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let answer = http
            .post(format!("{}/userconsole/auth/webauthn", fake.base_url()))
            .header("X-Xsrftoken", xsrf)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_webauthn_login_over_http_and_its_replay() {
        let key = SoftKey::new();
        let user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)
            .with_webauthn(key.id.clone(), key.public_key.clone());
        let fake = FakeJumpCloud::start(FakeJumpCloudConfig::with_user(user).on_localhost()).await;
        assert!(fake.base_url().starts_with("http://localhost:"));
        let (http, xsrf) = pending_login(&fake).await;

        let options: Value = http
            .get(format!("{}/userconsole/auth/webauthn", fake.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pk = &options["publicKey"];
        assert_eq!(pk["rpId"], "localhost");
        assert_eq!(pk["allowCredentials"][0]["id"], B64URL.encode(&key.id));
        assert_eq!(pk["allowCredentials"][0]["type"], "public-key");
        assert!(
            pk["timeout"].is_u64() && pk["userVerification"].is_string(),
            "{pk}"
        );
        let challenge = B64URL.decode(pk["challenge"].as_str().unwrap()).unwrap();
        let (c, a, s) = key.assert(&challenge, &fake.base_url(), "localhost", 1, 1);
        let body = json!({
            "publicKeyCredential": {
                "id": B64URL.encode(&key.id),
                "rawId": B64URL.encode(&key.id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": B64URL.encode(&c),
                    "authenticatorData": B64URL.encode(&a),
                    "signature": B64URL.encode(&s),
                    "userHandle": null,
                },
            },
            "token": options["token"],
        });
        let (status, answer) = post_assertion(&fake, &http, &xsrf, &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["redirectTo"],
            format!("{}/saml2/aws", fake.sso_url()).as_str()
        );

        // The same assertion again: the challenge was single-use.
        let (status, answer) = post_assertion(&fake, &http, &xsrf, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer["message"], WEBAUTHN_FAILED);
        let stats = fake.stats();
        assert_eq!(
            (
                stats.webauthn_challenges,
                stats.webauthn_accepted,
                stats.webauthn_refused,
                stats.logins
            ),
            (1, 1, 1, 1),
            "{stats:?}"
        );
        assert!(fake.webauthn_refusals()[0].contains("already used"));

        // Garbage is a 400, never a panic.
        for garbage in [
            json!("x"),
            json!({"publicKeyCredential": {}}),
            json!({"token": 1}),
        ] {
            let (status, _) = post_assertion(&fake, &http, &xsrf, &garbage).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{garbage}");
        }
    }

    #[tokio::test]
    async fn a_device_check_nonce_serves_one_launch_and_a_cookie_client_cannot_pass() {
        let config = FakeJumpCloudConfig {
            apps: vec![
                FakeApp::new(DEFAULT_APP, &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)])
                    .requiring_a_browser(),
            ],
            ..FakeJumpCloudConfig::default()
        };
        let fake = FakeJumpCloud::start(config).await;
        let http = client();
        let xsrf: Value = http
            .get(format!("{}/userconsole/xsrf", fake.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let answer = http
            .post(format!("{}/userconsole/auth", fake.base_url()))
            .header("X-Xsrftoken", xsrf["xsrf"].as_str().unwrap())
            .json(&json!({"email": DEFAULT_EMAIL, "password": DEFAULT_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let page = http
            .get(fake.app_url(DEFAULT_APP))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains("SAMLResponse"), "{page}");
        let nonce = page
            .split("name=\"nonce\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a nonce")
            .to_owned();
        let proof = hex(ring::digest::digest(&ring::digest::SHA256, nonce.as_bytes()).as_ref());
        let check = format!("{}/saml2/{DEFAULT_APP}/device-check", fake.sso_url());
        let post = |proof: String| {
            http.post(&check)
                .form(&[("nonce", nonce.as_str()), ("proof", proof.as_str())])
                .send()
        };
        // A wrong proof uses the nonce up, like any answer.
        let wrong = post("00".repeat(32)).await.unwrap();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        let late = post(proof.clone()).await.unwrap();
        assert_eq!(late.status(), StatusCode::FORBIDDEN);

        // A fresh launch, proved: the SAML form, once.
        let page = http
            .get(fake.app_url(DEFAULT_APP))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let nonce = page
            .split("name=\"nonce\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        let proof = hex(ring::digest::digest(&ring::digest::SHA256, nonce.as_bytes()).as_ref());
        let form = [("nonce", nonce.as_str()), ("proof", proof.as_str())];
        let passed = http.post(&check).form(&form).send().await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
        let saml = passed.text().await.unwrap();
        assert!(saml.contains("name=\"SAMLResponse\""), "{saml}");
        assert!(saml.contains("document.forms[0].submit()"), "{saml}");
        assert!(saml.contains(saml_builder::AWS_SAML_ENDPOINT), "{saml}");
        let replayed = http.post(&check).form(&form).send().await.unwrap();
        assert_eq!(replayed.status(), StatusCode::FORBIDDEN);
        // The next launch (a headless refresh replaying cookies) meets the policy again.
        let again = http.get(fake.app_url(DEFAULT_APP)).send().await.unwrap();
        assert!(!again.text().await.unwrap().contains("SAMLResponse"));
        let garbage = http.post(&check).body("%%%").send().await.unwrap();
        assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);

        let stats = fake.stats();
        assert_eq!(
            (
                stats.policy_pages,
                stats.device_checks_passed,
                stats.device_checks_failed,
                stats.saml_pages
            ),
            (3, 1, 4, 1),
            "{stats:?}"
        );
    }
}
