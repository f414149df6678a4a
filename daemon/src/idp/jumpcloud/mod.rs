//! JumpCloud SSO: the user-console login (XSRF token, password, TOTP or JumpCloud Protect
//! push) and the SAML page of the AWS app.
//!
//! The wire protocol (requests R1–R4 and the session probe) is described in
//! `docs/jumpcloud-protocol.md`. In short:
//!
//! 1. `GET /userconsole/xsrf` gives an XSRF token and the console cookies;
//! 2. `POST /userconsole/auth` with the password answers either `{redirectTo}` or a 401 listing
//!    the second factors;
//! 3. TOTP repeats the same POST with `otp` set; a push is started, polled and then exchanged
//!    for `{redirectTo}`;
//! 4. `GET redirectTo` answers the auto-post form that carries the SAMLResponse.
//!
//! The JumpCloud session lives in a cookie jar in memory only, so that later assertions need
//! neither password nor MFA ([`IdentityProvider::assertion_from_session`]).

use std::fmt;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{ACCEPT, COOKIE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, Url, redirect};
use samld_proto::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{debug, trace};

use super::{Contact, IdentityProvider, IdpError, LoginInteraction};
use crate::error_chain::error_chain;
use crate::future::BoxFuture;

pub use samld_config::MfaMode;

const USER_AGENT: &str = concat!("samld/", env!("CARGO_PKG_VERSION"));

/// How long an idle connection to JumpCloud is kept for the next request. A login's requests
/// follow each other within a second or so (push polls every 500 ms), while a refresh comes
/// tens of minutes after the previous one, so a connection kept longer is never reused: it
/// only holds a socket and its buffers (about 50 KB per account), and hyper's default of
/// 90 s wakes an idle daemon once per client a minute and a half after each login or
/// refresh.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most samld reads of a page from JumpCloud (the SAML page of the app). A real SAML page
/// is a few KiB (the assertion of a user with dozens of roles stays well under 100 KiB);
/// anything bigger is not JumpCloud, and reading it whole would let whatever answers grow the
/// daemon's memory without bound.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The most samld reads of a JSON answer from JumpCloud (XSRF token, sign-in, push, session
/// probe): real ones are a few hundred bytes.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` samld passes on: a larger one (a bogus date, or years) would stop
/// an account's refreshes for that long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The longest piece of JumpCloud's own error text kept for a message.
const MAX_ERROR_TEXT: usize = 200;

/// What [`JumpCloud`] needs from an account's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpCloudSettings {
    /// The user console, `https://console.jumpcloud.com` unless overridden.
    pub console_url: String,
    /// The IdP URL of the AWS app, such as `https://sso.jumpcloud.com/saml2/acme-aws`.
    pub app_url: String,
    /// The JumpCloud login: the user's email address.
    pub username: String,
    /// Which second factor to use when JumpCloud asks for one.
    pub mfa: MfaMode,
    /// Network timeouts and push polling.
    pub timeouts: JumpCloudTimeouts,
}

impl JumpCloudSettings {
    /// Settings for `app_url` and `username` with the default console, `mfa = auto` and the
    /// default timeouts.
    pub fn new(app_url: impl Into<String>, username: impl Into<String>) -> Self {
        Self {
            console_url: samld_config::DEFAULT_JUMPCLOUD_CONSOLE_URL.to_owned(),
            app_url: app_url.into(),
            username: username.into(),
            mfa: MfaMode::Auto,
            timeouts: JumpCloudTimeouts::default(),
        }
    }

    /// The settings of a configured account: its `request_timeout` bounds each request
    /// (and connecting, which takes at most the default 10 s).
    pub fn from_account(account: &samld_config::Account) -> Self {
        let defaults = JumpCloudTimeouts::default();
        Self {
            console_url: account.jumpcloud_console_url.clone(),
            app_url: account.url.clone(),
            username: account.username.clone(),
            mfa: account.mfa,
            timeouts: JumpCloudTimeouts {
                request: account.request_timeout,
                connect: defaults.connect.min(account.request_timeout),
                ..defaults
            },
        }
    }
}

/// Timeouts and the push polling pace. The defaults suit the real service; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JumpCloudTimeouts {
    /// Establishing a TCP + TLS connection (default 10 s).
    pub connect: Duration,
    /// One whole request, redirects and body included (default 30 s).
    pub request: Duration,
    /// Pause between two polls of a pending push (default 500 ms, as JumpCloud's own clients).
    pub push_poll_interval: Duration,
    /// The longest a push is waited for, in case JumpCloud sends no usable `expiresAt`
    /// (default 3 min).
    pub push_max_wait: Duration,
}

impl Default for JumpCloudTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            push_poll_interval: Duration::from_millis(500),
            push_max_wait: Duration::from_secs(180),
        }
    }
}

/// The JumpCloud identity provider of one account.
pub struct JumpCloud {
    /// The console base URL, without a trailing slash in its path.
    console: Url,
    /// The configured app URL: the SAML page fetched when reusing a session.
    app: Url,
    /// The `redirectTo` sent with the password: the app URL's path (and query) without the
    /// leading `/`, the way JumpCloud's own login page sends it.
    redirect_to: String,
    username: String,
    mfa: MfaMode,
    timeouts: JumpCloudTimeouts,
    slot: SharedSession,
}

/// The JumpCloud session (cookie jar) of one user at one console, shared by the providers of
/// every account with that user: a login through any of them signs them all in, and each
/// fetches its own app's SAML page with the same cookies, as a browser would.
#[derive(Clone, Default)]
pub struct SharedSession(Arc<Mutex<SessionSlot>>);

impl fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSession(..)")
    }
}

/// The held JumpCloud session. `generation` moves on every [`IdentityProvider::forget_session`],
/// so that a login that was running while the session was forgotten does not bring it back.
#[derive(Default)]
struct SessionSlot {
    generation: u64,
    session: Option<Arc<Session>>,
}

/// One cookie jar and the two clients that share it. A new login starts a new jar, so that
/// cookies of a dead session never mix with the new one.
struct Session {
    jar: Arc<Jar>,
    /// Follows redirects: for the SAML page, which may bounce between JumpCloud hosts.
    browse: Client,
    /// Never follows redirects: JSON API calls and the session probe, where a redirect means
    /// "not logged in" and must be seen rather than followed to an HTML login page.
    api: Client,
}

impl fmt::Debug for JumpCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session (cookies) is deliberately left out.
        f.debug_struct("JumpCloud")
            .field("console", &self.console.as_str())
            .field("app", &self.app.as_str())
            .field("username", &self.username)
            .field("mfa", &self.mfa)
            .finish_non_exhaustive()
    }
}

/// The second factor a login goes on with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    Push,
    Totp,
}

/// One entry of the `factors` list in JumpCloud's "MFA required." answer.
#[derive(Debug, Clone, Deserialize)]
struct OfferedFactor {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    status: String,
}

/// Any answer of `POST /userconsole/auth` (and of the push login).
#[derive(Debug, Default, Deserialize)]
struct AuthReply {
    #[serde(rename = "redirectTo")]
    redirect_to: Option<String>,
    message: Option<String>,
    /// Any JSON: some answers carry an object here rather than a string.
    error: Option<serde_json::Value>,
    factors: Option<Vec<OfferedFactor>>,
}

impl AuthReply {
    /// JumpCloud's explanation, whichever key carries it.
    fn explanation(&self) -> Option<String> {
        self.message
            .clone()
            .or_else(|| self.error.as_ref().and_then(error_text))
    }

    fn asks_for_mfa(&self) -> bool {
        self.factors.as_ref().is_some_and(|f| !f.is_empty())
            || self
                .message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains("mfa required"))
    }
}

#[derive(Deserialize)]
struct XsrfReply {
    xsrf: String,
}

#[derive(Debug, Deserialize)]
struct PushReply {
    id: String,
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct PushStatus {
    #[serde(default)]
    status: String,
}

/// A JSON error body, when a failing response has one.
#[derive(Deserialize)]
struct MessageOnly {
    message: Option<String>,
    error: Option<serde_json::Value>,
}

/// Where an answer of `POST /userconsole/auth` leads.
enum AuthStep {
    /// Logged in: fetch the SAML page here.
    Done(Url),
    /// A second factor is needed; these are the factors JumpCloud listed, or `None` for a
    /// bare "MFA required." that names none.
    Mfa(Option<Vec<OfferedFactor>>),
}

/// What an answer is expected to be, for its size cap.
#[derive(Clone, Copy)]
enum BodyKind {
    Json,
    Page,
}

impl BodyKind {
    fn limit(self) -> usize {
        match self {
            BodyKind::Json => MAX_JSON_BYTES,
            BodyKind::Page => MAX_PAGE_BYTES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BodyKind::Json => "a JSON answer",
            BodyKind::Page => "a page",
        }
    }
}

/// A whole (capped) answer.
struct Answer {
    status: StatusCode,
    /// The `Location` header, for the redirects of the API client (which follows none).
    location: Option<String>,
    body: Vec<u8>,
}

/// Which `POST /userconsole/auth` is being answered: the password alone, or password + code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthStage {
    Password,
    Totp,
}

/// Why the SAML page was fetched: a login that just succeeded, or a reused session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SamlFetch {
    AfterLogin,
    FromSession,
}

impl JumpCloud {
    /// A provider for these settings. Fails with [`IdpError::Config`] when a URL cannot be
    /// used: unparsable, not http(s), or plain http to a host other than loopback (the
    /// password would cross the network in clear).
    pub fn new(settings: JumpCloudSettings) -> Result<Self, IdpError> {
        Self::with_session(settings, SharedSession::default())
    }

    /// A provider that shares its JumpCloud session with every other provider given the same
    /// [`SharedSession`] (they must be for the same console and user).
    pub fn with_session(
        settings: JumpCloudSettings,
        session: SharedSession,
    ) -> Result<Self, IdpError> {
        let console = parse_url("jumpcloud_console_url", &settings.console_url)?;
        let app = parse_url("url", &settings.app_url)?;
        let redirect_to = redirect_to_for(&app)?;
        if settings.username.trim().is_empty() {
            return Err(IdpError::Config(
                "`username` is empty: set it to the JumpCloud email address".to_owned(),
            ));
        }
        if settings.timeouts.push_poll_interval.is_zero() {
            return Err(IdpError::Config(
                "the push poll interval must not be zero".to_owned(),
            ));
        }
        Ok(Self {
            console,
            app,
            redirect_to,
            username: settings.username,
            mfa: settings.mfa,
            timeouts: settings.timeouts,
            slot: session,
        })
    }

    /// The JumpCloud login (email) this provider signs in as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The `redirectTo` value sent with the password, such as `saml2/acme-aws`.
    pub fn redirect_to(&self) -> &str {
        &self.redirect_to
    }

    /// Whether a session (a cookie jar holding console cookies) is held. It may still have
    /// expired on JumpCloud's side.
    pub fn has_session(&self) -> bool {
        self.current_session()
            .is_some_and(|s| s.jar.cookies(&self.console).is_some())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, SessionSlot> {
        // The slot holds no invariant a panic could break halfway.
        self.slot.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current_session(&self) -> Option<Arc<Session>> {
        self.slot().session.clone()
    }

    fn new_session(&self) -> Result<Session, IdpError> {
        let tls = shared_tls_config()?;
        let jar = Arc::new(Jar::default());
        let build = |policy: redirect::Policy| {
            Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .cookie_provider(Arc::clone(&jar))
                .user_agent(USER_AGENT)
                .connect_timeout(self.timeouts.connect)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .timeout(self.timeouts.request)
                .redirect(policy)
                .build()
                .map_err(|e| {
                    IdpError::Config(format!(
                        "cannot set up the HTTP client: {}",
                        error_chain(&e.without_url())
                    ))
                })
        };
        Ok(Session {
            browse: build(redirect::Policy::limited(10))?,
            api: build(redirect::Policy::none())?,
            jar,
        })
    }

    fn console_endpoint(&self, path: &str) -> Url {
        let mut url = self.console.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// A JSON API request with the headers JumpCloud's own console sends.
    fn api_request(
        &self,
        session: &Session,
        method: Method,
        url: &Url,
        xsrf: Option<&Secret>,
    ) -> Result<RequestBuilder, IdpError> {
        let mut request = session
            .api
            .request(method, url.clone())
            .header(ACCEPT, "application/json")
            .header("X-Requested-With", "XMLHttpRequest");
        if let Some(token) = xsrf {
            let mut value =
                HeaderValue::from_str(token.expose()).map_err(|_| IdpError::UnexpectedStatus {
                    request: "GET /userconsole/xsrf".to_owned(),
                    status: 200,
                    message: Some("the XSRF token is not a valid header value".to_owned()),
                })?;
            value.set_sensitive(true);
            request = request.header("X-Xsrftoken", value);
        }
        Ok(request)
    }

    /// R1: the XSRF token (the console cookies land in the jar).
    async fn xsrf(&self, session: &Session) -> Result<Secret, IdpError> {
        const NAME: &str = "GET /userconsole/xsrf";
        let url = self.console_endpoint("/userconsole/xsrf");
        let request = self.api_request(session, Method::GET, &url, None)?;
        let Answer { status, body, .. } = exchange(request, NAME, &url, BodyKind::Json).await?;
        if status != StatusCode::OK {
            return Err(unexpected_status(NAME, status, &body));
        }
        let reply: XsrfReply = parse_json(NAME, status, &body)?;
        if reply.xsrf.is_empty() {
            return Err(IdpError::UnexpectedStatus {
                request: NAME.to_owned(),
                status: status.as_u16(),
                message: Some("the answer carried an empty XSRF token".to_owned()),
            });
        }
        Ok(Secret::new(reply.xsrf))
    }

    /// R2 (and the TOTP retry of R2): the password, and the code when `otp` is given.
    async fn post_auth(
        &self,
        session: &Session,
        xsrf: &Secret,
        password: &Secret,
        otp: Option<&Secret>,
    ) -> Result<AuthStep, IdpError> {
        const NAME: &str = "POST /userconsole/auth";
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct AuthBody<'a> {
            context: &'a str,
            redirect_to: &'a str,
            email: &'a str,
            password: &'a str,
            otp: &'a str,
        }
        let stage = if otp.is_some() {
            AuthStage::Totp
        } else {
            AuthStage::Password
        };
        let url = self.console_endpoint("/userconsole/auth");
        let request = self
            .api_request(session, Method::POST, &url, Some(xsrf))?
            .json(&AuthBody {
                context: "sso",
                redirect_to: &self.redirect_to,
                email: &self.username,
                password: password.expose(),
                otp: otp.map_or("", Secret::expose),
            });
        let Answer {
            status,
            location,
            body,
        } = exchange(request, NAME, &url, BodyKind::Json).await?;
        if status.is_server_error() {
            return Err(unexpected_status(NAME, status, &body));
        }
        if status.is_redirection() {
            return Err(self.redirected(NAME, &url, status, location.as_deref()));
        }
        let reply: AuthReply = parse_json(NAME, status, &body)?;
        match status {
            StatusCode::OK => {
                if let Some(target) = reply.redirect_to.as_deref() {
                    return Ok(AuthStep::Done(self.resolve_redirect(NAME, target)?));
                }
                // Some clients saw JumpCloud ask for a factor on a 2xx; honour it.
                if stage == AuthStage::Password && reply.asks_for_mfa() {
                    return Ok(AuthStep::Mfa(reply.factors));
                }
                Err(IdpError::UnexpectedStatus {
                    request: NAME.to_owned(),
                    status: 200,
                    message: Some(
                        reply
                            .explanation()
                            .unwrap_or_else(|| "the answer carried no redirectTo".to_owned()),
                    ),
                })
            }
            StatusCode::UNAUTHORIZED => match stage {
                AuthStage::Password if reply.asks_for_mfa() => Ok(AuthStep::Mfa(reply.factors)),
                // Not the "Authentication failed." message: JumpCloud's own words, which may
                // be about the account rather than the password (a saved password must not be
                // dropped for them).
                AuthStage::Password if reply.message.is_none() && reply.error.is_some() => {
                    Err(IdpError::JumpCloudError {
                        request: NAME.to_owned(),
                        status: status.as_u16(),
                        error: reply.explanation().unwrap_or_default(),
                    })
                }
                AuthStage::Password => Err(IdpError::AuthFailed {
                    message: reply
                        .explanation()
                        .unwrap_or_else(|| "Authentication failed.".to_owned()),
                }),
                AuthStage::Totp => Err(IdpError::MfaCodeRejected {
                    message: reply
                        .explanation()
                        .unwrap_or_else(|| "the code was not accepted".to_owned()),
                }),
            },
            _ => Err(unexpected_status(NAME, status, &body)),
        }
    }

    /// A redirect where a JSON answer was due (the API client follows none): to the login
    /// page, or elsewhere.
    fn redirected(
        &self,
        request: &str,
        url: &Url,
        status: StatusCode,
        location: Option<&str>,
    ) -> IdpError {
        let target = location.and_then(|l| url.join(l).ok());
        if target.as_ref().is_some_and(|t| self.is_login_page(t)) {
            return IdpError::SentToLoginPage {
                request: request.to_owned(),
            };
        }
        IdpError::UnexpectedStatus {
            request: request.to_owned(),
            status: status.as_u16(),
            message: Some(match target {
                Some(t) => format!("a redirect to {}", redacted_url(&t)),
                None => "a redirect".to_owned(),
            }),
        }
    }

    /// Whether `url` is JumpCloud's login page: `/login` (or below it, such as
    /// `/login/admin`) on the console, where JumpCloud sends a browser without a session.
    /// Compared by path segment, so that an app whose IdP URL merely contains the word (such
    /// as `.../saml2/login-aws`) is never taken for it. The app's host counts too, in case
    /// the SSO host serves the login page itself.
    fn is_login_page(&self, url: &Url) -> bool {
        let same_origin = |base: &Url| {
            url.scheme() == base.scheme()
                && url.host_str() == base.host_str()
                && url.port_or_known_default() == base.port_or_known_default()
        };
        if !same_origin(&self.console) && !same_origin(&self.app) {
            return false;
        }
        let base = self.console.path().trim_end_matches('/');
        let path = url.path();
        let rest = if same_origin(&self.console) {
            path.strip_prefix(base).unwrap_or(path)
        } else {
            path
        };
        rest == "/login" || rest.starts_with("/login/")
    }

    fn resolve_redirect(&self, request: &str, target: &str) -> Result<Url, IdpError> {
        self.console
            .join(target)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| IdpError::UnexpectedStatus {
                request: request.to_owned(),
                status: 200,
                message: Some("the redirectTo in the answer is not an http(s) URL".to_owned()),
            })
    }

    /// Picks the factor to use among those JumpCloud offered, following the `mfa` setting.
    fn choose_factor(&self, offered: &[OfferedFactor]) -> Result<Factor, IdpError> {
        choose_factor(self.mfa, offered)
    }

    /// R3 for TOTP: one code, one attempt. A rejected code is not retried, because a second
    /// code would need the user again and JumpCloud accepts each code only once anyway.
    async fn totp(
        &self,
        session: &Session,
        io: &mut dyn LoginInteraction,
        xsrf: &Secret,
        password: &Secret,
        prompt: &str,
    ) -> Result<Url, IdpError> {
        let code = io.mfa_code(prompt).await?;
        let code = Secret::new(code.expose().trim());
        if code.is_empty() {
            return Err(IdpError::MfaCodeUnavailable {
                reason: "an empty code was given".to_owned(),
            });
        }
        io.reaching_person(Contact::Code);
        match self.post_auth(session, xsrf, password, Some(&code)).await? {
            AuthStep::Done(url) => Ok(url),
            AuthStep::Mfa(_) => Err(IdpError::MfaCodeRejected {
                message: "JumpCloud asked for a second factor again".to_owned(),
            }),
        }
    }

    /// R3 for JumpCloud Protect: start a push, poll it until it is answered, then exchange it
    /// for the `redirectTo`.
    async fn push(
        &self,
        session: &Session,
        io: &mut dyn LoginInteraction,
        xsrf: &Secret,
    ) -> Result<Url, IdpError> {
        const START: &str = "POST /userconsole/auth/push";
        const POLL: &str = "GET /userconsole/auth/push/{id}";
        const LOGIN: &str = "POST /userconsole/auth/push/{id}/login";

        let url = self.console_endpoint("/userconsole/auth/push");
        io.reaching_person(Contact::Push);
        let request = self
            .api_request(session, Method::POST, &url, Some(xsrf))?
            .json(&serde_json::json!({}));
        let Answer { status, body, .. } = exchange(request, START, &url, BodyKind::Json).await?;
        if status != StatusCode::OK {
            return Err(unexpected_status(START, status, &body));
        }
        let push: PushReply = parse_json(START, status, &body)?;
        let expires_at = push
            .expires_at
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        debug!(status = %push.status, "JumpCloud Protect push started");

        io.progress(&format!(
            "Approve the JumpCloud Protect push on your phone (sign-in of {}) …",
            self.username
        ))
        .await;

        let mut poll_url = url.clone();
        poll_url
            .path_segments_mut()
            .map_err(|()| IdpError::Config("the console URL cannot be a base".to_owned()))?
            .push(&push.id);
        let deadline = Instant::now() + self.timeouts.push_max_wait;
        let mut polls: u32 = 0;
        loop {
            let request = self.api_request(session, Method::GET, &poll_url, Some(xsrf))?;
            let Answer { status, body, .. } =
                exchange(request, POLL, &poll_url, BodyKind::Json).await?;
            // How saml2aws's own tests model a denial: a 401 on the poll rather than
            // `{"status":"denied"}`. The push exists (it was just started), so a 401 here is
            // the phone's answer, not a lost session.
            if status == StatusCode::UNAUTHORIZED {
                return Err(IdpError::PushDenied);
            }
            if status != StatusCode::OK {
                return Err(unexpected_status(POLL, status, &body));
            }
            let state: PushStatus = parse_json(POLL, status, &body)?;
            polls += 1;
            trace!(polls, status = %state.status, "push polled");
            match state.status.as_str() {
                "accepted" => break,
                "denied" => return Err(IdpError::PushDenied),
                "expired" => return Err(IdpError::PushExpired),
                "pending" | "" => {}
                other => {
                    return Err(IdpError::UnexpectedStatus {
                        request: POLL.to_owned(),
                        status: 200,
                        message: Some(format!("unknown push status {other:?}")),
                    });
                }
            }
            let expired = expires_at.is_some_and(|t| OffsetDateTime::now_utc() >= t);
            if expired || Instant::now() >= deadline {
                return Err(IdpError::PushExpired);
            }
            tokio::time::sleep(self.timeouts.push_poll_interval).await;
        }
        debug!(polls, "JumpCloud Protect push accepted");

        let mut login_url = poll_url;
        login_url
            .path_segments_mut()
            .map_err(|()| IdpError::Config("the console URL cannot be a base".to_owned()))?
            .push("login");
        let request = self
            .api_request(session, Method::POST, &login_url, Some(xsrf))?
            .json(&serde_json::json!({}));
        let Answer { status, body, .. } =
            exchange(request, LOGIN, &login_url, BodyKind::Json).await?;
        if status != StatusCode::OK {
            return Err(unexpected_status(LOGIN, status, &body));
        }
        let reply: AuthReply = parse_json(LOGIN, status, &body)?;
        match reply.redirect_to.as_deref() {
            Some(target) => self.resolve_redirect(LOGIN, target),
            None => Err(IdpError::UnexpectedStatus {
                request: LOGIN.to_owned(),
                status: 200,
                message: Some("the answer carried no redirectTo".to_owned()),
            }),
        }
    }

    /// R4: the SAML page, and the SAMLResponse in it.
    async fn fetch_saml(
        &self,
        session: &Session,
        url: &Url,
        why: SamlFetch,
    ) -> Result<Secret, IdpError> {
        let name = format!("GET {}", url.path());
        let mut request = session
            .browse
            .get(url.clone())
            .header(ACCEPT, "text/html,application/xhtml+xml");
        if let Some(cookies) = self.explicit_console_cookies(session, url) {
            request = request.header(COOKIE, cookies);
        }
        let response = send(request, &name, url).await?;
        let status = response.status();
        let landed_on_login = self.is_login_page(response.url());
        debug!(request = %name, landed_on_login, "JumpCloud's page");
        let body = read_capped(response, &name, url, BodyKind::Page).await?;
        if status.is_server_error() {
            return Err(unexpected_status(&name, status, &body));
        }
        let logged_out =
            landed_on_login || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        if logged_out {
            return match why {
                SamlFetch::FromSession => Err(IdpError::SessionExpired),
                SamlFetch::AfterLogin => Err(IdpError::UnexpectedStatus {
                    request: name,
                    status: status.as_u16(),
                    message: Some(
                        "JumpCloud sent its login page instead of the SAML form right after \
                         signing in"
                            .to_owned(),
                    ),
                }),
            };
        }
        if status != StatusCode::OK {
            return Err(unexpected_status(&name, status, &body));
        }
        let html = String::from_utf8_lossy(&body);
        match crate::saml::extract_saml_response(&html) {
            Ok(saml) => Ok(saml),
            // Neither the login page nor the SAML form, from a signed-in session: what a
            // policy that only a browser passes (conditional access, device trust) serves.
            Err(crate::saml::SamlError::NoSamlResponse) => Err(IdpError::BrowserRequired {
                request: name,
                url: redacted_url(&self.app),
            }),
            Err(e) => Err(IdpError::Saml(e)),
        }
    }

    /// The console cookies, for a SAML page on another host than the console.
    ///
    /// JumpCloud's SSO host (`sso.jumpcloud.com`) is not the console's, and whether the
    /// session cookies are scoped to the parent domain is not documented; other clients send
    /// them explicitly. They are only ever sent to the host of the configured app URL, never
    /// to a host named by an answer.
    fn explicit_console_cookies(&self, session: &Session, url: &Url) -> Option<HeaderValue> {
        if url.host_str() == self.console.host_str() || url.host_str() != self.app.host_str() {
            return None;
        }
        let console = session.jar.cookies(&self.console)?;
        let own = session.jar.cookies(url);
        let merged = merge_cookie_headers(own.as_ref(), &console)?;
        let mut value = HeaderValue::from_str(&merged).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// `GET /userconsole/api/self` without following redirects: is the session alive?
    async fn probe(&self, session: &Session) -> Result<(), IdpError> {
        const NAME: &str = "GET /userconsole/api/self";
        let url = self.console_endpoint("/userconsole/api/self");
        let request = self.api_request(session, Method::GET, &url, None)?;
        let response = send(request, NAME, &url).await?;
        let status = response.status();
        let to_login = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .is_some_and(|l| self.is_login_page(&l));
        if status.is_success() && !to_login {
            return Ok(());
        }
        if status.is_redirection()
            || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || to_login
        {
            return Err(IdpError::SessionExpired);
        }
        let body = read_capped(response, NAME, &url, BodyKind::Json).await?;
        Err(unexpected_status(NAME, status, &body))
    }

    async fn session_assertion(&self) -> Result<Secret, IdpError> {
        let Some(session) = self.current_session() else {
            debug!("no JumpCloud session held");
            return Err(IdpError::SessionExpired);
        };
        if session.jar.cookies(&self.console).is_none() {
            debug!("the JumpCloud session holds no cookies");
            return Err(IdpError::SessionExpired);
        }
        self.probe(&session).await?;
        self.fetch_saml(&session, &self.app, SamlFetch::FromSession)
            .await
    }

    /// A bare "MFA required." that names no factor (documented by a JumpCloud engineer in
    /// saml2aws #230). Other clients answer it with the TOTP code in the same POST, so that is
    /// what `mfa = "totp"` does, and `auto` when a code is at hand (given, from
    /// `mfa_command`, or typed at a terminal). A push is only started when `mfa = "push"`
    /// says so: guessing one would buzz a phone that may not be enrolled.
    async fn unnamed_factor(
        &self,
        session: &Session,
        io: &mut dyn LoginInteraction,
        xsrf: &Secret,
        password: &Secret,
    ) -> Result<Url, IdpError> {
        debug!(
            mfa = self.mfa.as_str(),
            "JumpCloud asked for MFA without naming a factor"
        );
        let prompt = format!(
            "JumpCloud asks for a second factor without naming it; TOTP code for {}",
            self.username
        );
        match self.mfa {
            MfaMode::Totp => self.totp(session, io, xsrf, password, &prompt).await,
            MfaMode::Push => self.push(session, io, xsrf).await,
            MfaMode::Auto => match self.totp(session, io, xsrf, password, &prompt).await {
                Err(IdpError::MfaCodeUnavailable { reason }) => Err(IdpError::MfaUnnamed {
                    configured: self.mfa.as_str().to_owned(),
                    reason: Some(reason),
                }),
                other => other,
            },
            MfaMode::Webauthn | MfaMode::None => Err(IdpError::MfaUnnamed {
                configured: self.mfa.as_str().to_owned(),
                reason: None,
            }),
        }
    }

    async fn full_login(&self, io: &mut dyn LoginInteraction) -> Result<Secret, IdpError> {
        let generation = self.slot().generation;
        let session = Arc::new(self.new_session()?);
        let password = io
            .password(&format!("JumpCloud password for {}", self.username))
            .await?;
        if password.is_empty() {
            return Err(IdpError::PasswordUnavailable {
                reason: "an empty password was given".to_owned(),
            });
        }
        // The XSRF token is fetched after the password so that a slow prompt cannot outlive
        // it (JumpCloud expires it after about 15 minutes).
        let xsrf = self.xsrf(&session).await?;
        io.reaching_person(Contact::Password);
        let target = match self.post_auth(&session, &xsrf, &password, None).await? {
            AuthStep::Done(url) => url,
            AuthStep::Mfa(Some(offered)) => match self.choose_factor(&offered)? {
                Factor::Totp => {
                    let prompt = format!("JumpCloud TOTP code for {}", self.username);
                    self.totp(&session, io, &xsrf, &password, &prompt).await?
                }
                Factor::Push => self.push(&session, io, &xsrf).await?,
            },
            AuthStep::Mfa(None) => self.unnamed_factor(&session, io, &xsrf, &password).await?,
        };
        drop(password);
        {
            // The session is signed in from here on: keep it even if the SAML page fails,
            // so that a retry needs no password or MFA.
            let mut slot = self.slot();
            if slot.generation == generation {
                slot.session = Some(Arc::clone(&session));
            }
        }
        debug!("JumpCloud login succeeded");
        self.fetch_saml(&session, &target, SamlFetch::AfterLogin)
            .await
    }
}

impl IdentityProvider for JumpCloud {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        Box::pin(self.session_assertion())
    }

    fn login<'a>(
        &'a self,
        io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(self.full_login(io))
    }

    fn forget_session(&self) {
        let mut slot = self.slot();
        slot.generation += 1;
        slot.session = None;
        debug!("JumpCloud session forgotten");
    }
}

/// The TLS configuration of every JumpCloud client in the process.
///
/// Left to itself, reqwest builds a new platform verifier for each client, and on Linux that
/// reads and parses every root certificate of the system and keeps its own copy of them:
/// about 130 KB held per client (each session has two) and the parsing paid at each login, so a
/// daemon with 500 accounts held a thousand copies of the same roots. One verifier, shared
/// through the `Arc` inside the config, serves them all (and so does one TLS session cache).
/// The roots are read once per process: a CA bundle updated later is seen after a restart.
fn shared_tls_config() -> Result<rustls::ClientConfig, IdpError> {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    // Not cached on failure: a later login tries again.
    let failed = |e: rustls::Error| IdpError::Config(format!("cannot set up TLS: {e}"));
    install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(failed)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(failed)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest offers when it builds the config itself: it speaks HTTP/1.1 only here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(CONFIG.get_or_init(|| config).clone())
}

/// Installs ring as the process-wide rustls provider (reqwest is built without one).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error only means some other part of the process installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn parse_url(key: &str, value: &str) -> Result<Url, IdpError> {
    let url = Url::parse(value.trim())
        .map_err(|e| IdpError::Config(format!("`{key}` = {value:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(IdpError::Config(format!(
                "`{key}` = {value:?} uses plain http; use https (the password would travel \
                 in clear)"
            )));
        }
        other => {
            return Err(IdpError::Config(format!(
                "`{key}` = {value:?} has scheme {other:?}; expected https"
            )));
        }
    }
    if url.host_str().is_none() {
        return Err(IdpError::Config(format!("`{key}` = {value:?} has no host")));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `redirectTo` for the password POST: the app URL's path without its leading `/`, query
/// kept. Derived from the path rather than by stripping `https://sso.jumpcloud.com/`, so that
/// any host (a test server, a regional SSO host) works the same way.
fn redirect_to_for(app: &Url) -> Result<String, IdpError> {
    let path = app.path().trim_start_matches('/');
    if path.is_empty() {
        return Err(IdpError::Config(format!(
            "`url` = {:?} names no app; it should look like \
             https://sso.jumpcloud.com/saml2/YOUR-APP",
            app.as_str()
        )));
    }
    Ok(match app.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    })
}

/// The factor to use among the available ones, following the `mfa` setting.
fn choose_factor(mode: MfaMode, offered: &[OfferedFactor]) -> Result<Factor, IdpError> {
    let available: Vec<String> = offered
        .iter()
        .filter(|f| f.status.eq_ignore_ascii_case("available"))
        .map(|f| f.kind.to_ascii_lowercase())
        .collect();
    let has = |kind: &str| available.iter().any(|k| k == kind);
    let supported_alternatives = || {
        ["push", "totp"]
            .into_iter()
            .filter(|k| has(k))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let no_usable = || IdpError::NoUsableFactor {
        offered: available.clone(),
        configured: mode.as_str().to_owned(),
    };
    match mode {
        MfaMode::Push if has("push") => Ok(Factor::Push),
        MfaMode::Totp if has("totp") => Ok(Factor::Totp),
        MfaMode::Webauthn if has("webauthn") => Err(IdpError::MfaUnsupported {
            factor: "webauthn".to_owned(),
            alternatives: supported_alternatives(),
        }),
        MfaMode::Auto if has("push") => Ok(Factor::Push),
        MfaMode::Auto if has("totp") => Ok(Factor::Totp),
        MfaMode::Auto => match available.first() {
            Some(unsupported) => Err(IdpError::MfaUnsupported {
                factor: unsupported.clone(),
                alternatives: Vec::new(),
            }),
            None => Err(no_usable()),
        },
        MfaMode::Push | MfaMode::Totp | MfaMode::Webauthn | MfaMode::None => Err(no_usable()),
    }
}

/// Sends a request; an HTTP 429 becomes [`IdpError::Throttled`], whatever the request.
async fn send(request: RequestBuilder, name: &str, url: &Url) -> Result<Response, IdpError> {
    let response: Response = request.send().await.map_err(|e| network_error(url, e))?;
    let status = response.status();
    debug!(
        request = name,
        status = status.as_u16(),
        "JumpCloud answered"
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(IdpError::Throttled {
            request: name.to_owned(),
            retry_after: retry_after(response.headers(), SystemTime::now()),
        });
    }
    Ok(response)
}

/// Sends a request and reads the whole answer, up to the cap of its kind.
async fn exchange(
    request: RequestBuilder,
    name: &str,
    url: &Url,
    kind: BodyKind,
) -> Result<Answer, IdpError> {
    let response = send(request, name, url).await?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(response, name, url, kind).await?;
    Ok(Answer {
        status,
        location,
        body,
    })
}

/// Reads a body chunk by chunk, failing as soon as it passes the cap of its kind: never more
/// than the cap (and one chunk) is held, and dropping the response closes the connection
/// rather than reading the rest.
async fn read_capped(
    mut response: Response,
    name: &str,
    url: &Url,
    kind: BodyKind,
) -> Result<Vec<u8>, IdpError> {
    let limit = kind.limit();
    let too_large = || IdpError::TooLarge {
        request: name.to_owned(),
        limit,
        kind: kind.name(),
    };
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize));
    while let Some(chunk) = response.chunk().await.map_err(|e| network_error(url, e))? {
        if body.len() + chunk.len() > limit {
            debug!(request = name, limit, "JumpCloud's answer is over the cap");
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as a wait from `now`: whole seconds or an HTTP date (a date already past is
/// no wait), capped at [`MAX_RETRY_AFTER`]. `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// JumpCloud's `error` as text: a string as is, an object by its `message` (or as JSON),
/// without control characters and at most [`MAX_ERROR_TEXT`] characters long.
fn error_text(error: &serde_json::Value) -> Option<String> {
    let text = match error {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => match map.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    };
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_TEXT + 1)
        .collect();
    if clean.chars().count() > MAX_ERROR_TEXT {
        clean = clean.chars().take(MAX_ERROR_TEXT).collect();
        clean.push('…');
    }
    let clean = clean.trim().to_owned();
    (!clean.is_empty()).then_some(clean)
}

/// Parses a JSON answer; anything else (typically an HTML error or login page) is reported
/// as [`IdpError::UnexpectedHtml`] naming the request.
fn parse_json<T: DeserializeOwned>(
    request: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, IdpError> {
    serde_json::from_slice(body).map_err(|_| IdpError::UnexpectedHtml {
        request: request.to_owned(),
        status: status.as_u16(),
    })
}

/// A status the request should not get. A 4xx whose body is JumpCloud's `{"error": ...}`
/// (and no `message`) is reported in JumpCloud's words ([`IdpError::JumpCloudError`]).
fn unexpected_status(request: &str, status: StatusCode, body: &[u8]) -> IdpError {
    let parsed = serde_json::from_slice::<MessageOnly>(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|m| m.error.as_ref())
        .and_then(error_text);
    let message = parsed.and_then(|m| m.message);
    if status.is_client_error()
        && message.is_none()
        && let Some(error) = error
    {
        return IdpError::JumpCloudError {
            request: request.to_owned(),
            status: status.as_u16(),
            error,
        };
    }
    IdpError::UnexpectedStatus {
        request: request.to_owned(),
        status: status.as_u16(),
        message: message.or(error),
    }
}

/// A transport failure, with the URL stripped of its query (which may carry tokens) and the
/// error's causes spelled out (reqwest's own text is only "error sending request").
fn network_error(url: &Url, error: reqwest::Error) -> IdpError {
    let timed_out = error.is_timeout();
    let mut reason = error_chain(&error.without_url());
    if timed_out && !reason.contains("timed out") {
        reason.push_str(" (timed out)");
    }
    IdpError::Network {
        url: redacted_url(url),
        reason,
    }
}

/// The URL without user info, query or fragment.
fn redacted_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// `own` plus those `extra` cookies whose names `own` lacks, as one Cookie header.
fn merge_cookie_headers(own: Option<&HeaderValue>, extra: &HeaderValue) -> Option<String> {
    let pairs = |v: &HeaderValue| -> Vec<String> {
        v.to_str()
            .unwrap_or_default()
            .split(';')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let name = |pair: &str| pair.split('=').next().unwrap_or_default().to_owned();
    let mut merged = own.map(pairs).unwrap_or_default();
    let names: Vec<String> = merged.iter().map(|p| name(p)).collect();
    merged.extend(
        pairs(extra)
            .into_iter()
            .filter(|p| !names.contains(&name(p))),
    );
    (!merged.is_empty()).then(|| merged.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(kind: &str, status: &str) -> OfferedFactor {
        OfferedFactor {
            kind: kind.to_owned(),
            status: status.to_owned(),
        }
    }

    fn settings(app: &str) -> JumpCloudSettings {
        JumpCloudSettings::new(app, "a@b.c")
    }

    #[test]
    fn redirect_to_is_the_app_path_on_any_host() {
        let real = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/acme-aws")).unwrap();
        assert_eq!(real.redirect_to(), "saml2/acme-aws");
        let local = JumpCloud::new(settings("http://127.0.0.1:8080/saml2/acme-aws")).unwrap();
        assert_eq!(local.redirect_to(), "saml2/acme-aws");
        let query =
            JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app?x=1&y=2")).unwrap();
        assert_eq!(query.redirect_to(), "saml2/app?x=1&y=2");
    }

    #[test]
    fn unusable_urls_are_config_errors() {
        for bad in [
            "not a url",
            "ftp://sso.jumpcloud.com/saml2/x",
            "http://sso.jumpcloud.com/saml2/x",
            "https://sso.jumpcloud.com/",
        ] {
            let err = JumpCloud::new(settings(bad)).unwrap_err();
            assert!(matches!(err, IdpError::Config(_)), "{bad}: {err:?}");
        }
        let mut s = settings("https://sso.jumpcloud.com/saml2/x");
        s.console_url = "http://console.example.com".to_owned();
        assert!(matches!(JumpCloud::new(s), Err(IdpError::Config(_))));
        let mut s = settings("https://sso.jumpcloud.com/saml2/x");
        s.username = " ".to_owned();
        assert!(matches!(JumpCloud::new(s), Err(IdpError::Config(_))));
    }

    #[test]
    fn auto_prefers_push_then_totp() {
        let both = [factor("totp", "available"), factor("push", "available")];
        assert_eq!(choose_factor(MfaMode::Auto, &both).unwrap(), Factor::Push);
        let totp = [factor("totp", "available"), factor("push", "unavailable")];
        assert_eq!(choose_factor(MfaMode::Auto, &totp).unwrap(), Factor::Totp);
        assert_eq!(choose_factor(MfaMode::Totp, &both).unwrap(), Factor::Totp);
        assert_eq!(choose_factor(MfaMode::Push, &both).unwrap(), Factor::Push);
    }

    #[test]
    fn webauthn_and_duo_are_unsupported_with_alternatives() {
        let offered = [factor("webauthn", "available"), factor("totp", "available")];
        assert_eq!(
            choose_factor(MfaMode::Webauthn, &offered).unwrap_err(),
            IdpError::MfaUnsupported {
                factor: "webauthn".to_owned(),
                alternatives: vec!["totp".to_owned()],
            }
        );
        let duo_only = [factor("duo", "available"), factor("totp", "unavailable")];
        assert_eq!(
            choose_factor(MfaMode::Auto, &duo_only).unwrap_err(),
            IdpError::MfaUnsupported {
                factor: "duo".to_owned(),
                alternatives: vec![],
            }
        );
    }

    #[test]
    fn a_configured_factor_the_account_lacks_is_reported() {
        let offered = [factor("totp", "available"), factor("push", "unavailable")];
        assert_eq!(
            choose_factor(MfaMode::Push, &offered).unwrap_err(),
            IdpError::NoUsableFactor {
                offered: vec!["totp".to_owned()],
                configured: "push".to_owned(),
            }
        );
        assert_eq!(
            choose_factor(MfaMode::None, &offered).unwrap_err(),
            IdpError::NoUsableFactor {
                offered: vec!["totp".to_owned()],
                configured: "none".to_owned(),
            }
        );
        assert!(matches!(
            choose_factor(MfaMode::Auto, &[]).unwrap_err(),
            IdpError::NoUsableFactor { .. }
        ));
    }

    #[test]
    fn mfa_is_recognised_by_factors_or_message() {
        let by_factors: AuthReply = serde_json::from_str(
            r#"{"message":"x","factors":[{"type":"totp","status":"available"}]}"#,
        )
        .unwrap();
        assert!(by_factors.asks_for_mfa());
        let by_message: AuthReply = serde_json::from_str(r#"{"message":"MFA required."}"#).unwrap();
        assert!(by_message.asks_for_mfa());
        let failed: AuthReply =
            serde_json::from_str(r#"{"message":"Authentication failed."}"#).unwrap();
        assert!(!failed.asks_for_mfa());
    }

    #[test]
    fn network_urls_lose_query_and_credentials() {
        let url = Url::parse("https://u:p@console.jumpcloud.com/a/b?token=secret#frag").unwrap();
        assert_eq!(redacted_url(&url), "https://console.jumpcloud.com/a/b");
    }

    #[test]
    fn cookie_merge_keeps_own_values_first() {
        let own = HeaderValue::from_static("a=1; b=2");
        let extra = HeaderValue::from_static("b=9; c=3");
        assert_eq!(
            merge_cookie_headers(Some(&own), &extra).unwrap(),
            "a=1; b=2; c=3"
        );
        assert_eq!(merge_cookie_headers(None, &extra).unwrap(), "b=9; c=3");
    }

    #[test]
    fn console_cookies_go_only_to_the_configured_sso_host() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app")).unwrap();
        let session = jc.new_session().unwrap();
        session.jar.add_cookie_str(
            "_jumpcloud_user_console_=s3ss; Path=/",
            &Url::parse("https://console.jumpcloud.com/userconsole/auth").unwrap(),
        );
        let sso = Url::parse("https://sso.jumpcloud.com/saml2/app").unwrap();
        let header = jc.explicit_console_cookies(&session, &sso).unwrap();
        assert_eq!(header.to_str().unwrap(), "_jumpcloud_user_console_=s3ss");
        assert!(header.is_sensitive());
        let elsewhere = Url::parse("https://evil.example.com/saml2/app").unwrap();
        assert!(jc.explicit_console_cookies(&session, &elsewhere).is_none());
        let console = Url::parse("https://console.jumpcloud.com/saml2/app").unwrap();
        assert!(jc.explicit_console_cookies(&session, &console).is_none());
    }

    #[test]
    fn the_login_page_is_recognised_by_its_path_segment() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/login-aws")).unwrap();
        let url = |u: &str| Url::parse(u).unwrap();
        for login in [
            "https://console.jumpcloud.com/login",
            "https://console.jumpcloud.com/login/",
            "https://console.jumpcloud.com/login?context=sso&redirectTo=saml2%2Flogin-aws",
            "https://console.jumpcloud.com/login/admin",
            "https://sso.jumpcloud.com/login",
        ] {
            assert!(jc.is_login_page(&url(login)), "{login}");
        }
        for other in [
            "https://sso.jumpcloud.com/saml2/login-aws",
            "https://sso.jumpcloud.com/saml2/login",
            "https://console.jumpcloud.com/loginx",
            "https://console.jumpcloud.com/userconsole/login",
            "https://evil.example.com/login",
            "http://console.jumpcloud.com:8080/login",
        ] {
            assert!(!jc.is_login_page(&url(other)), "{other}");
        }
        // A console under a path prefix (a test server, a proxy).
        let mut s = settings("http://127.0.0.1:9/saml2/app");
        s.console_url = "http://127.0.0.1:9/jc/".to_owned();
        let prefixed = JumpCloud::new(s).unwrap();
        assert!(prefixed.is_login_page(&url("http://127.0.0.1:9/jc/login")));
        assert!(!prefixed.is_login_page(&url("http://127.0.0.1:9/saml2/login-x")));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        let in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            retry_after(&headers(&in_90s), now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&headers(&past), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers("99999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_bodies_of_any_shape_are_read_not_taken_for_html() {
        let object: AuthReply =
            serde_json::from_str(r#"{"error":{"code":4014,"message":"MFA needed"}}"#).unwrap();
        assert_eq!(object.explanation().as_deref(), Some("MFA needed"));
        let code: AuthReply = serde_json::from_str(r#"{"error":4014}"#).unwrap();
        assert_eq!(code.explanation().as_deref(), Some("4014"));
        let long = "x".repeat(1000);
        let text = error_text(&serde_json::Value::String(format!("a\nb\u{1b}[31m{long}"))).unwrap();
        assert!(
            text.starts_with("a b [31m") && text.ends_with('…'),
            "{text}"
        );
        assert_eq!(text.chars().count(), MAX_ERROR_TEXT + 1);
        let err = unexpected_status(
            "GET /userconsole/xsrf",
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad"}"#,
        );
        assert_eq!(
            err,
            IdpError::JumpCloudError {
                request: "GET /userconsole/xsrf".to_owned(),
                status: 400,
                error: "bad".to_owned(),
            }
        );
    }

    #[test]
    fn debug_shows_no_session() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app")).unwrap();
        let text = format!("{jc:?}");
        assert!(text.contains("a@b.c") && !text.contains("jar"), "{text}");
    }
}
