//! Requests, responses and the data they carry.
//!
//! Enums are internally tagged (`{"type": "status", ...}`) so that a frame read with `socat`
//! is readable, and timestamps are RFC 3339 strings in UTC so that this crate needs no time
//! library.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{LoginRequest, LogoutOutcome, Secret};

/// What a client asks of the daemon. One request per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Answered by [`Response::Status`]: the daemon and every account, or just one.
    Status {
        /// Only this account; `None` lists all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
    /// Answered by [`Response::Credentials`]: AWS credentials for one role of an account,
    /// logging in or refreshing first when needed (single flight: concurrent requests share
    /// one attempt).
    GetCredentials {
        /// The account name from the config.
        account: String,
        /// A role ARN or role name; `None` takes the account's default role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// The client can answer [`Response::NeedSecret`] (it has a terminal).
        #[serde(default)]
        interactive: bool,
        /// Why the client wants them, for the audit; `None` is `samld-helper`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<Handout>,
    },
    /// Answered by [`Response::LoggedIn`], after any [`Response::Progress`] and
    /// [`Response::NeedSecret`] exchanges.
    Login(LoginRequest),
    /// The answer to a [`Response::NeedSecret`] on the same connection.
    ProvideSecret {
        /// What the daemon asked for.
        kind: SecretKind,
        /// The secret.
        value: Secret,
    },
    /// Answered by [`Response::LoggedOut`]: forget the JumpCloud session and credentials.
    Logout {
        /// The account to log out; `None` logs out every account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
    /// Answered by [`Response::PasswordForgotten`]: remove the password that
    /// `samlctl login --save-password` kept in the OS keyring for the account. The session
    /// and credentials are left alone (that is [`Request::Logout`]).
    ForgetPassword {
        /// The account whose saved password to remove.
        account: String,
    },
    /// Answered by [`Response::Refreshed`]: fetch fresh credentials now.
    Refresh {
        /// The account to refresh.
        account: String,
    },
    /// Answered by [`Response::Roles`]: the roles from the last assertion.
    Roles {
        /// The account whose roles to list.
        account: String,
    },
    /// Answered by [`Response::ShuttingDown`]: stop the daemon gracefully.
    Shutdown,
    /// Answered by [`Response::EndpointToken`]: a token for the daemon's loopback credential
    /// endpoint (the AWS container credential protocol), bound to one role of one account.
    ///
    /// The token lives exactly as long as this connection: the client keeps it open while
    /// the program using the token runs, and closing it (or dying) revokes the token.
    IssueEndpointToken {
        /// The account name from the config.
        account: String,
        /// A role ARN or role name; `None` takes the account's default role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// Answered by [`Response::ConsoleUrl`]: an AWS console sign-in URL for one role.
    ConsoleUrl {
        /// The account name from the config.
        account: String,
        /// A role ARN or role name; `None` takes the account's default role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// How long the console session may last, in seconds (the federation endpoint's
        /// `SessionDuration`, 900 to 43200); `None` lets AWS decide.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_duration: Option<u32>,
    },
    /// The daemon's record of who got which credentials, oldest first: one
    /// [`Response::AuditEvent`] frame per event (the record is larger than a frame may be),
    /// then [`Response::Audit`]. With `follow`, the events so far, then
    /// [`Response::AuditFollowing`], then one [`Response::AuditEvent`] per new event, for as
    /// long as the client keeps the connection.
    Audit {
        /// Only this account's events; `None` for all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        /// Only events of the last this many seconds; `None` for all that are kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_secs: Option<u64>,
        /// Keep the connection and stream new events.
        #[serde(default)]
        follow: bool,
    },
    /// Answered by [`Response::BrowserPlan`]: what `samlctl login` needs to know to sign the
    /// account in through a browser (or whether it should).
    BrowserPlan {
        /// The account name from the config.
        account: String,
    },
}

/// What a browser sign-in hands the daemon: the SAML response the browser was about to post
/// to AWS, and the IdP's session cookies, so that later assertions need no browser while the
/// IdP session lives. Both travel only over the socket and live only in the daemon's memory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrowserSignIn {
    /// The `SAMLResponse` form field (base64), as the browser posted it.
    pub saml_response: Secret,
    /// The browser profile's cookies for the IdP (never those of AWS's own sites).
    #[serde(default)]
    pub cookies: Vec<BrowserCookie>,
    /// The person forced this sign-in (`samlctl login --browser --force`): for an account
    /// whose identity is the subject of its first sign-in (`provider = "saml"`), a sign-in as
    /// another subject makes that subject the identity instead of being refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_identity: bool,
}

/// One cookie of the browser profile, as the DevTools protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserCookie {
    /// The cookie's name.
    pub name: String,
    /// The cookie's value: a session credential.
    pub value: Secret,
    /// The domain: a host (`console.jumpcloud.com`, host-only) or, with a leading `.`, a
    /// domain and its subdomains.
    pub domain: String,
    /// The path it is sent for.
    pub path: String,
    /// Sent only over https.
    #[serde(default)]
    pub secure: bool,
    /// When it expires, in seconds since the Unix epoch; `None` for a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

/// How `samlctl login --browser` should sign an account in, from the daemon's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserPlan {
    /// The account name.
    pub account: String,
    /// The URL to open: the account's `url` (the IdP's sign-in URL of the AWS app).
    pub url: String,
    /// The account's `login` setting: `api` or `browser`.
    pub login: String,
    /// The account's `browser`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// The account's `browser_args`.
    #[serde(default)]
    pub browser_args: Vec<String>,
}

/// Which secret the daemon needs from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    /// The JumpCloud password.
    Password,
    /// A TOTP code from the authenticator app.
    MfaCode,
}

/// What the daemon sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The first frame of every connection, sent by the daemon before it reads anything.
    Hello {
        /// The daemon's [`crate::PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The daemon's crate version.
        daemon_version: String,
        /// The daemon's process id.
        pid: u32,
    },
    /// Answers [`Request::Status`].
    Status(StatusReport),
    /// Answers [`Request::GetCredentials`].
    Credentials(Credentials),
    /// The daemon needs a secret to go on; answer with [`Request::ProvideSecret`].
    NeedSecret {
        /// What is needed.
        kind: SecretKind,
        /// Text to show the user, such as `JumpCloud password for alice@example.com`.
        prompt: String,
    },
    /// Something the user should see while a login runs ("approve the push on your phone").
    Progress {
        /// The text to show.
        message: String,
    },
    /// Answers [`Request::Login`].
    LoggedIn(LoginOutcome),
    /// Answers [`Request::BrowserPlan`].
    BrowserPlan(BrowserPlan),
    /// Answers [`Request::Logout`].
    LoggedOut(LogoutOutcome),
    /// Answers [`Request::ForgetPassword`].
    PasswordForgotten {
        /// The account.
        account: String,
        /// Whether a saved password was there to remove.
        removed: bool,
    },
    /// Answers [`Request::Refresh`].
    Refreshed {
        /// The account.
        account: String,
        /// Every role's state after the refresh.
        roles: Vec<RoleStatus>,
    },
    /// Answers [`Request::Roles`].
    Roles {
        /// The account.
        account: String,
        /// The roles of the last assertion.
        roles: Vec<RoleInfo>,
    },
    /// Answers [`Request::Shutdown`].
    ShuttingDown,
    /// Answers [`Request::IssueEndpointToken`]; the token is revoked when the connection
    /// closes.
    EndpointToken(EndpointToken),
    /// Answers [`Request::ConsoleUrl`].
    ConsoleUrl(ConsoleSignin),
    /// Ends the answer to [`Request::Audit`] without `follow`.
    Audit {
        /// Events not already sent as [`Response::AuditEvent`] frames (samld sends none
        /// here), oldest first.
        events: Vec<AuditEvent>,
        /// How many events the daemon's bounded record has dropped (the oldest first) since
        /// it started.
        dropped: u64,
    },
    /// With `follow`: the events so far have been sent; new ones follow as
    /// [`Response::AuditEvent`].
    AuditFollowing {
        /// As in [`Response::Audit`].
        events: Vec<AuditEvent>,
        /// As in [`Response::Audit`].
        dropped: u64,
    },
    /// One event of the record (before [`Response::Audit`] or [`Response::AuditFollowing`]),
    /// or a new one (after [`Response::AuditFollowing`]).
    AuditEvent(AuditEvent),
    /// Any request can end with an error.
    Error(WireError),
}

impl Response {
    /// Whether this response ends the exchange; `Progress`, `NeedSecret` and `Hello` do not.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Response::Progress { .. }
                | Response::NeedSecret { .. }
                | Response::Hello { .. }
                | Response::AuditFollowing { .. }
                | Response::AuditEvent(_)
        )
    }

    /// Shorthand for an error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error(WireError::new(code, message))
    }
}

/// How credentials left the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handout {
    /// `samld-helper` (`credential_process`).
    Helper,
    /// The loopback endpoint of `samlctl exec`.
    ExecEndpoint,
    /// `samlctl env`, or `samlctl exec --static`.
    Env,
    /// `samlctl console` (the credentials went to the AWS federation endpoint).
    Console,
}

impl Handout {
    /// The kebab-case name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Handout::Helper => "helper",
            Handout::ExecEndpoint => "exec-endpoint",
            Handout::Env => "env",
            Handout::Console => "console",
        }
    }
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// Credentials were handed out (or a request for them failed).
    Handout,
    /// A person's login (`samlctl login`, or a helper that prompted on a terminal).
    Login,
    /// A logout.
    Logout,
    /// A refresh asked for by a person (`samlctl refresh`).
    Refresh,
    /// A trip samld made by itself: a scheduled refresh, or an unattended login.
    Unattended,
}

impl AuditKind {
    /// The kebab-case name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Handout => "handout",
            AuditKind::Login => "login",
            AuditKind::Logout => "logout",
            AuditKind::Refresh => "refresh",
            AuditKind::Unattended => "unattended",
        }
    }
}

/// Where handed-out credentials came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    /// Held in memory, fresh.
    Memory,
    /// A refresh ran (or was joined) first.
    Refresh,
    /// A login ran (or was joined) first.
    Login,
}

impl CredentialSource {
    /// The kebab-case name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Memory => "memory",
            CredentialSource::Refresh => "refresh",
            CredentialSource::Login => "login",
        }
    }
}

/// One process in the chain that asked, as the audit records it. Command lines are bounded
/// and the values of options that can hold secrets (`--mfa-code 123456`) are masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its process id.
    pub pid: u32,
    /// Its name (the kernel's short command name).
    pub name: String,
    /// The path of its executable, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Its command line, bounded and masked, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
}

/// One entry of the daemon's audit: never a credential, token, password, code or cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Its number: one more than the event before it.
    pub seq: u64,
    /// When it happened, RFC 3339.
    pub at: String,
    /// What happened.
    pub kind: AuditKind,
    /// The account, when the event concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The role, for a hand-out or a trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// How the credentials left, for a hand-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Handout>,
    /// Where the credentials came from, for a hand-out that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CredentialSource>,
    /// Why it failed; `None` when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The process that asked (the socket's peer; for the exec endpoint, the
    /// `samlctl exec` that holds the token), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    /// Its parent, grandparent and so on, nearest first, up to a few levels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<ProcessInfo>,
}

/// When a role's credentials were last handed out, and to what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUse {
    /// When, RFC 3339.
    pub at: String,
    /// How.
    pub via: Handout,
    /// The program that wanted them: for `samld-helper`, the tool that ran it (its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<ProcessInfo>,
}

/// The outcome of a successful login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOutcome {
    /// The account.
    pub account: String,
    /// The JumpCloud user name (email).
    pub username: String,
    /// True when the JumpCloud session was still alive and no password or MFA was needed.
    pub reused_session: bool,
    /// The roles of the assertion.
    pub roles: Vec<RoleInfo>,
}

/// A role offered by the assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// The role ARN.
    pub role_arn: String,
    /// The SAML provider ARN paired with it.
    pub principal_arn: String,
    /// True for the account's configured role.
    #[serde(default)]
    pub default: bool,
}

/// AWS credentials for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The account.
    pub account: String,
    /// The role these credentials are for.
    pub role_arn: String,
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: Secret,
    /// `SessionToken`.
    pub session_token: Secret,
    /// When they expire, RFC 3339 in UTC.
    pub expiration: String,
    /// The account's AWS region, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Credentials {
    /// The JSON document the AWS SDKs expect from a `credential_process`.
    pub fn to_credential_process_json(&self) -> String {
        let doc = serde_json::json!({
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key.expose(),
            "SessionToken": self.session_token.expose(),
            "Expiration": self.expiration,
        });
        doc.to_string()
    }
}

/// Where and how a program fetches credentials from the daemon's loopback endpoint; the
/// values of `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointToken {
    /// The full URL, `http://127.0.0.1:PORT/v1/credentials/ACCOUNT/ROLE`.
    pub url: String,
    /// The value of the `Authorization` header; good for this account and role only.
    pub token: Secret,
    /// The account.
    pub account: String,
    /// The role the token serves.
    pub role_arn: String,
    /// The account's AWS region, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// An AWS console sign-in URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSignin {
    /// The URL; it carries a sign-in token that is as good as the credentials for about
    /// 15 minutes, so it is a secret.
    pub url: Secret,
    /// The account.
    pub account: String,
    /// The role the console session is for.
    pub role_arn: String,
}

/// The daemon and its accounts, for `samlctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon itself.
    pub daemon: DaemonInfo,
    /// Every configured account (or the one asked for), sorted by name.
    pub accounts: Vec<AccountStatus>,
    /// Every IdP session (one per console and username), each with the accounts it serves.
    #[serde(default)]
    pub sessions: Vec<IdpSessionStatus>,
}

/// The state of one IdP sign-in, shared by every account of the same user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdpSessionState {
    /// Never signed in, or forgotten by a logout.
    None,
    /// Signed in: assertions come without the person.
    Live,
    /// A login (by a person or unattended) is running.
    LoggingIn,
    /// The IdP ended it; samld will sign in again by itself once.
    Ended,
    /// Only a person can sign in again (see `reason`).
    NeedsLogin,
}

impl IdpSessionState {
    /// The kebab-case name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            IdpSessionState::None => "none",
            IdpSessionState::Live => "live",
            IdpSessionState::LoggingIn => "logging-in",
            IdpSessionState::Ended => "ended",
            IdpSessionState::NeedsLogin => "needs-login",
        }
    }
}

/// One IdP session in [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpSessionStatus {
    /// The identity provider (`jumpcloud`).
    pub provider: String,
    /// The console (sign-in) base URL.
    pub console_url: String,
    /// The user signed in.
    pub username: String,
    /// Its state.
    pub state: IdpSessionState,
    /// Established and last-verified times, while signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
    /// The accounts it serves, sorted.
    pub accounts: Vec<String>,
    /// Why a person is needed (with `needs-login`): what happened and what to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Facts about the running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Crate version.
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Process id.
    pub pid: u32,
    /// The config file in force.
    pub config_path: String,
    /// When the daemon started, RFC 3339.
    pub started_at: String,
    /// Set when the config file on disk is invalid and the last good one stays in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
}

/// The state machine of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    /// No JumpCloud session and no credentials.
    LoggedOut,
    /// A login is running.
    LoggingIn,
    /// Credentials are held and fresh.
    Active,
    /// A refresh is running.
    Refreshing,
    /// The JumpCloud session has ended and samld cannot log in unattended.
    NeedsLogin,
    /// The last attempt failed; it is retried with backoff.
    Error,
}

impl AccountState {
    /// The kebab-case name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::LoggedOut => "logged-out",
            AccountState::LoggingIn => "logging-in",
            AccountState::Active => "active",
            AccountState::Refreshing => "refreshing",
            AccountState::NeedsLogin => "needs-login",
            AccountState::Error => "error",
        }
    }
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_login() -> String {
    "api".to_owned()
}

/// One account in [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatus {
    /// The account name.
    pub name: String,
    /// Its state.
    pub state: AccountState,
    /// The identity provider (`jumpcloud`, `saml`).
    pub provider: String,
    /// How a person signs it in: `api` (`samlctl login`) or `browser`
    /// (`samlctl login --browser`).
    #[serde(default = "default_login")]
    pub login: String,
    /// The JumpCloud user name.
    pub username: String,
    /// Whom the account's sign-ins must be for when that is not `username`: for
    /// `provider = "saml"`, the subject of its first sign-in (absent before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The IdP URL of the AWS app.
    pub url: String,
    /// The AWS region, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The configured default role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
    /// The JumpCloud session, while one is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
    /// Roles with credentials (or known from the last assertion).
    #[serde(default)]
    pub roles: Vec<RoleStatus>,
    /// The last failure, until a success clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    /// When the next retry after a failure is due, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
}

/// The JumpCloud session held for an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// When the password login that started it happened, RFC 3339.
    pub established_at: String,
    /// When JumpCloud last confirmed it alive, RFC 3339.
    pub last_verified_at: String,
}

/// One role's credentials in [`AccountStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    /// The role ARN.
    pub role_arn: String,
    /// The assumed-role ARN STS returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_role_arn: Option<String>,
    /// When the credentials expire, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the daemon will refresh them, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_at: Option<String>,
    /// True for the account's configured role.
    #[serde(default)]
    pub default: bool,
    /// Something odd about these credentials the user should know (they arrived with less
    /// life than `refresh_before`, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// When they were last handed out, and to what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<LastUse>,
}

/// The last error of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Its code.
    pub code: ErrorCode,
    /// Its text.
    pub message: String,
    /// When it happened, RFC 3339.
    pub at: String,
}

/// An error on the wire: a code for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What kind of failure; clients decide by this, never by the message.
    pub code: ErrorCode,
    /// What happened and what to do next. Never contains a secret.
    pub message: String,
}

impl WireError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// Stable error codes. New codes may be added; old clients read them as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The account has never logged in, or logged out.
    NotLoggedIn,
    /// The JumpCloud session ended and no unattended login is possible.
    NeedsLogin,
    /// No such account in the config.
    UnknownAccount,
    /// The role is not in the account's assertion.
    UnknownRole,
    /// JumpCloud rejected the email or password.
    AuthFailed,
    /// The OTP was wrong or used, or the push was denied or expired.
    MfaFailed,
    /// A second factor is required but none could be obtained without a terminal.
    MfaRequired,
    /// The account only offers factors samld does not support yet.
    MfaUnsupported,
    /// JumpCloud answered something unexpected.
    IdpError,
    /// The SAML assertion could not be used.
    SamlError,
    /// STS refused or failed.
    StsError,
    /// A server could not be reached.
    NetworkError,
    /// The config file is invalid.
    ConfigError,
    /// Client and daemon speak different protocol versions.
    VersionMismatch,
    /// The request could not be understood.
    BadRequest,
    /// Something took longer than allowed.
    Timeout,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The OS keyring could not be used (absent, locked, failing).
    KeyringError,
    /// A bug in samld.
    Internal,
    /// A code this client does not know (sent by a newer daemon).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The kebab-case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotLoggedIn => "not-logged-in",
            ErrorCode::NeedsLogin => "needs-login",
            ErrorCode::UnknownAccount => "unknown-account",
            ErrorCode::UnknownRole => "unknown-role",
            ErrorCode::AuthFailed => "auth-failed",
            ErrorCode::MfaFailed => "mfa-failed",
            ErrorCode::MfaRequired => "mfa-required",
            ErrorCode::MfaUnsupported => "mfa-unsupported",
            ErrorCode::IdpError => "idp-error",
            ErrorCode::SamlError => "saml-error",
            ErrorCode::StsError => "sts-error",
            ErrorCode::NetworkError => "network-error",
            ErrorCode::ConfigError => "config-error",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::KeyringError => "keyring-error",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
