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
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{ACCEPT, COOKIE, HeaderValue, LOCATION};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, Url, redirect};
use samld_proto::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{debug, trace};

use super::{BoxFuture, Contact, IdentityProvider, IdpError, LoginInteraction};

pub use samld_config::MfaMode;

/// Where the JumpCloud user console lives unless the account says otherwise.
pub const DEFAULT_CONSOLE_URL: &str = "https://console.jumpcloud.com";

const USER_AGENT: &str = concat!("samld/", env!("CARGO_PKG_VERSION"));

/// How long an idle connection to JumpCloud is kept for the next request. A login's requests
/// follow each other within a second or so (push polls every 500 ms), while a refresh comes
/// tens of minutes after the previous one, so a connection kept longer is never reused: it
/// only holds a socket and its buffers (about 50 KB per account), and hyper's default of
/// 90 s wakes an idle daemon once per client a minute and a half after each login or
/// refresh.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `mfa` config value as written in the config file, for messages.
fn mfa_name(mode: MfaMode) -> &'static str {
    match mode {
        MfaMode::Auto => "auto",
        MfaMode::Push => "push",
        MfaMode::Totp => "totp",
        MfaMode::Webauthn => "webauthn",
        MfaMode::None => "none",
    }
}

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
            console_url: DEFAULT_CONSOLE_URL.to_owned(),
            app_url: app_url.into(),
            username: username.into(),
            mfa: MfaMode::Auto,
            timeouts: JumpCloudTimeouts::default(),
        }
    }

    /// The settings of a configured account, with the default timeouts (the request timeout
    /// overridden by [`TIMEOUT_ENV`] when it is set).
    pub fn from_account(account: &samld_config::Account) -> Self {
        Self {
            console_url: account.jumpcloud_console_url.clone(),
            app_url: account.url.clone(),
            username: account.username.clone(),
            mfa: account.mfa,
            timeouts: JumpCloudTimeouts::from_env(),
        }
    }
}

/// Overrides the JumpCloud request timeout, in whole seconds (connect is capped by it too).
///
/// For tests only, so that an end-to-end test of a JumpCloud that never answers finishes in
/// seconds rather than 30: deliberately not documented for users, who have no reason to wait
/// less (a real outage is retried with backoff either way).
pub const TIMEOUT_ENV: &str = "SAMLD_HTTP_TIMEOUT_SECS";

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

impl JumpCloudTimeouts {
    /// The defaults, with the request timeout from [`TIMEOUT_ENV`] when it holds a positive
    /// number of seconds (anything else is ignored).
    fn from_env() -> Self {
        let mut timeouts = Self::default();
        let secs = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0);
        if let Some(secs) = secs {
            timeouts.request = Duration::from_secs(secs);
            timeouts.connect = timeouts.connect.min(timeouts.request);
        }
        timeouts
    }
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
    error: Option<String>,
    factors: Option<Vec<OfferedFactor>>,
}

impl AuthReply {
    /// JumpCloud's explanation, whichever key carries it.
    fn explanation(&self) -> Option<String> {
        self.message.clone().or_else(|| self.error.clone())
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
    error: Option<String>,
}

/// Where an answer of `POST /userconsole/auth` leads.
enum AuthStep {
    /// Logged in: fetch the SAML page here.
    Done(Url),
    /// A second factor is needed; these are the factors JumpCloud listed.
    Mfa(Vec<OfferedFactor>),
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
        let (status, body) = exchange(request, NAME, &url).await?;
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
        let (status, body) = exchange(request, NAME, &url).await?;
        if status.is_server_error() {
            return Err(unexpected_status(NAME, status, &body));
        }
        let reply: AuthReply = parse_json(NAME, status, &body)?;
        match status {
            StatusCode::OK => {
                if let Some(target) = reply.redirect_to.as_deref() {
                    return Ok(AuthStep::Done(self.resolve_redirect(NAME, target)?));
                }
                // Some clients saw JumpCloud ask for a factor on a 2xx; honour it.
                if stage == AuthStage::Password && reply.asks_for_mfa() {
                    return Ok(AuthStep::Mfa(reply.factors.unwrap_or_default()));
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
                AuthStage::Password if reply.asks_for_mfa() => {
                    Ok(AuthStep::Mfa(reply.factors.unwrap_or_default()))
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
            _ => Err(IdpError::UnexpectedStatus {
                request: NAME.to_owned(),
                status: status.as_u16(),
                message: reply.explanation(),
            }),
        }
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
    ) -> Result<Url, IdpError> {
        let prompt = format!("JumpCloud TOTP code for {}", self.username);
        let code = io.mfa_code(&prompt).await?;
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
        let (status, body) = exchange(request, START, &url).await?;
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
            let (status, body) = exchange(request, POLL, &poll_url).await?;
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
        let (status, body) = exchange(request, LOGIN, &login_url).await?;
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
        let response = request.send().await.map_err(|e| network_error(url, e))?;
        let status = response.status();
        let landed_on_login = response.url().path().contains("/login");
        debug!(request = %name, status = status.as_u16(), landed_on_login, "JumpCloud answered");
        let body = response.bytes().await.map_err(|e| network_error(url, e))?;
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
        crate::saml::extract_saml_response(&html).map_err(IdpError::Saml)
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
        let response = request.send().await.map_err(|e| network_error(&url, e))?;
        let status = response.status();
        let to_login = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.contains("/login"));
        debug!(
            request = NAME,
            status = status.as_u16(),
            "JumpCloud answered"
        );
        if status.is_success() && !to_login {
            return Ok(());
        }
        if status.is_redirection()
            || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || to_login
        {
            return Err(IdpError::SessionExpired);
        }
        let body = response.bytes().await.map_err(|e| network_error(&url, e))?;
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
            AuthStep::Mfa(offered) => match self.choose_factor(&offered)? {
                Factor::Totp => self.totp(&session, io, &xsrf, &password).await?,
                Factor::Push => self.push(&session, io, &xsrf).await?,
            },
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
        configured: mfa_name(mode).to_owned(),
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

/// Sends a request and reads the whole answer.
async fn exchange(
    request: RequestBuilder,
    name: &str,
    url: &Url,
) -> Result<(StatusCode, Vec<u8>), IdpError> {
    let response: Response = request.send().await.map_err(|e| network_error(url, e))?;
    let status = response.status();
    debug!(
        request = name,
        status = status.as_u16(),
        "JumpCloud answered"
    );
    let body = response.bytes().await.map_err(|e| network_error(url, e))?;
    Ok((status, body.to_vec()))
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

fn unexpected_status(request: &str, status: StatusCode, body: &[u8]) -> IdpError {
    let message = serde_json::from_slice::<MessageOnly>(body)
        .ok()
        .and_then(|m| m.message.or(m.error));
    IdpError::UnexpectedStatus {
        request: request.to_owned(),
        status: status.as_u16(),
        message,
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

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper and the io layer often repeat the same words; keep the chain readable.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
    fn debug_shows_no_session() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app")).unwrap();
        let text = format!("{jc:?}");
        assert!(text.contains("a@b.c") && !text.contains("jar"), "{text}");
    }
}
