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
//!
//! The code is split by request:
//!
//! - this file: the public types ([`JumpCloudSettings`], [`JumpCloudTimeouts`], [`JumpCloud`],
//!   [`SharedSession`]), the held session, the login as a whole and the session probe;
//! - `http.rs`: the HTTP exchange (size caps, `Retry-After`, TLS) and the mapping of its
//!   failures to [`IdpError`];
//! - `auth.rs`: R1 and R2, the XSRF token and the password;
//! - `mfa.rs`: R3, the choice of a second factor, TOTP and push;
//! - `saml_page.rs`: R4, the SAML page, and the URLs around it.

mod auth;
mod http;
mod mfa;
mod saml_page;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::LOCATION;
use reqwest::{Client, Method, StatusCode, Url, redirect};
use samld_proto::Secret;
use tracing::debug;

use self::auth::AuthStep;
use self::http::{BodyKind, parse_json, read_capped, send, shared_tls_config, unexpected_status};
use self::mfa::Factor;
use self::saml_page::{SamlFetch, parse_url, redirect_to_for};
use super::identity::{self, CheckedAt, IdentityMismatch, IdentitySource};
use super::{Contact, IdentityProvider, IdpError, LoginInteraction};
use crate::error_chain::error_chain;
use crate::future::BoxFuture;
use crate::idp::transport::{POOL_IDLE_TIMEOUT, USER_AGENT};

pub use self::http::{MAX_JSON_BYTES, MAX_PAGE_BYTES, MAX_RETRY_AFTER};
pub use samld_config::MfaMode;

/// The console's account of who is signed in, also the session probe.
const SELF_REQUEST: &str = "GET /userconsole/api/self";

/// What [`JumpCloud`] needs from an account's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpCloudSettings {
    /// The account's name in the config, for messages that tell the person what to run.
    pub account: String,
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
            account: "this account".to_owned(),
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
            account: account.name.clone(),
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
    account: String,
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

impl SharedSession {
    /// Forgets the session (its cookie jar) for every provider that shares it; a login
    /// running meanwhile finds the generation moved and keeps nothing.
    pub fn forget(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.generation += 1;
        slot.session = None;
        debug!("JumpCloud session forgotten");
    }
}

/// The held JumpCloud session. `generation` moves on every [`SharedSession::forget`],
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
    /// Whom this session signs in: the subjects its assertions may carry.
    identity: Mutex<SessionIdentity>,
}

/// What samld learnt of whom a session signs in, beyond the configured `username`.
#[derive(Default)]
struct SessionIdentity {
    /// The console's names for the user (`/userconsole/api/self`: email and username), when
    /// a browser handed the session over.
    console: Vec<String>,
    /// After a password login, the subject of each app's first assertion, by app URL:
    /// JumpCloud had just authenticated the configured user, whatever NameID format (email
    /// or user name) that app sends.
    first_subjects: HashMap<String, String>,
}

/// The part of `GET /userconsole/api/self` that says who is signed in.
#[derive(serde::Deserialize)]
struct SignedInUser {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
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

impl JumpCloud {
    /// A provider for these settings. Fails with [`IdpError::Config`] when a URL cannot be
    /// used: unparsable, not http(s), or plain http to a host other than loopback (the
    /// password would cross the network in clear).
    pub fn new(settings: JumpCloudSettings) -> Result<Self, IdpError> {
        Self::with_session(settings, SharedSession::default())
    }

    /// The JumpCloud session this provider signs in and reuses: whoever holds it (the
    /// manager's session slot) forgets it with [`SharedSession::forget`].
    pub fn session(&self) -> &SharedSession {
        &self.slot
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
            account: settings.account,
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
            identity: Mutex::default(),
        })
    }

    fn console_endpoint(&self, path: &str) -> Url {
        let mut url = self.console.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// `GET /userconsole/api/self` without following redirects: is the session alive?
    async fn probe(&self, session: &Session) -> Result<(), IdpError> {
        self.ask_self(session).await.map(drop)
    }

    /// Who the session is signed in as, by the console's own account of it.
    async fn signed_in_user(&self, session: &Session) -> Result<Vec<String>, IdpError> {
        let (response, url) = self.ask_self(session).await?;
        let status = response.status();
        let body = read_capped(response, SELF_REQUEST, &url, BodyKind::Json).await?;
        let user: SignedInUser = parse_json(SELF_REQUEST, status, &body)?;
        Ok([user.email, user.username]
            .into_iter()
            .flatten()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect())
    }

    /// `GET /userconsole/api/self`: its answer when the session is alive.
    async fn ask_self(&self, session: &Session) -> Result<(reqwest::Response, Url), IdpError> {
        const NAME: &str = SELF_REQUEST;
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
            return Ok((response, url));
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
        let saml = self
            .fetch_saml(&session, &self.app, SamlFetch::FromSession)
            .await?;
        self.remember_subject(&session, &saml);
        Ok(saml)
    }

    /// Keeps the subject of this app's first assertion from a password login's session.
    fn remember_subject(&self, session: &Session, saml: &Secret) {
        let mut identity = session.identity();
        if identity.console.is_empty()
            && let Ok(Some(subject)) = identity::subject_of(saml)
        {
            identity
                .first_subjects
                .entry(self.app.to_string())
                .or_insert(subject);
        }
    }

    fn refused_sign_in(&self, signed_in: Option<String>) -> IdpError {
        IdpError::IdentityMismatch(IdentityMismatch {
            account: self.account.clone(),
            signed_in,
            expected: self.username.clone(),
            source: IdentitySource::Configured,
            at: CheckedAt::BrowserSignIn,
            idp: "JumpCloud",
        })
    }

    /// Who a browser's session signs in, refused unless it is the configured user: by the
    /// console's `/userconsole/api/self` when the browser handed over its cookies, and by
    /// the assertion's subject in any case.
    async fn browser_identity(
        &self,
        session: &Session,
        saml: &Secret,
    ) -> Result<Vec<String>, IdpError> {
        let mut identities = vec![self.username.clone()];
        if session.jar.cookies(&self.console).is_some() {
            match self.signed_in_user(session).await {
                Ok(names) if identity::is_one_of(Some(&self.username), &names) => {
                    identities.extend(names);
                }
                // A console that names no one leaves it to the assertion.
                Ok(names) if names.is_empty() => {}
                Ok(names) => {
                    let shown = names.into_iter().next();
                    return Err(self.refused_sign_in(shown));
                }
                // Cookies the console does not know: only the assertion can tell.
                Err(IdpError::SessionExpired) => {}
                Err(e) => return Err(e),
            }
        }
        let subject = identity::subject_of(saml)?;
        if !identity::is_one_of(subject.as_deref(), &identities) {
            return Err(self.refused_sign_in(subject));
        }
        Ok(identities)
    }

    /// Takes in the JumpCloud session the person signed in to in a browser: once it proves
    /// to be the configured user's, its cookies become the held session, exactly as if samld
    /// had signed in itself. Anyone else's is refused and the held session stays as it was.
    async fn adopt_browser_session(
        &self,
        signed_in: samld_proto::BrowserSignIn,
    ) -> Result<Secret, IdpError> {
        let session = Arc::new(self.new_session()?);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let taken =
            crate::idp::browser_session::adopt_cookies(&session.jar, &signed_in.cookies, now);
        if session.jar.cookies(&self.console).is_none() {
            // The assertion still serves this login; refreshes will need the browser again.
            tracing::warn!(
                taken,
                "the browser handed over no cookie for the JumpCloud console: refreshes will need another browser sign-in"
            );
        }
        let identities = self
            .browser_identity(&session, &signed_in.saml_response)
            .await?;
        session.identity().console = identities;
        let mut slot = self.slot();
        slot.generation += 1;
        slot.session = Some(session);
        debug!(taken, "took the browser's JumpCloud session");
        Ok(signed_in.saml_response.clone())
    }

    async fn full_login(&self, io: &mut dyn LoginInteraction) -> Result<Secret, IdpError> {
        if let Some(signed_in) = io.browser_sign_in() {
            return self.adopt_browser_session(signed_in).await;
        }
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
        let saml = self
            .fetch_saml(&session, &target, SamlFetch::AfterLogin)
            .await?;
        self.remember_subject(&session, &saml);
        Ok(saml)
    }
}

impl Session {
    fn identity(&self) -> std::sync::MutexGuard<'_, SessionIdentity> {
        // Names only: no invariant a panic could break halfway.
        self.identity.lock().unwrap_or_else(|e| e.into_inner())
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

    fn identities(&self) -> Vec<String> {
        let mut names = vec![self.username.clone()];
        if let Some(session) = self.current_session() {
            let identity = session.identity();
            names.extend(identity.console.iter().cloned());
            names.extend(identity.first_subjects.get(self.app.as_str()).cloned());
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(app: &str) -> JumpCloudSettings {
        JumpCloudSettings::new(app, "a@b.c")
    }

    #[test]
    fn debug_shows_no_session() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app")).unwrap();
        let text = format!("{jc:?}");
        assert!(text.contains("a@b.c") && !text.contains("jar"), "{text}");
    }
}
