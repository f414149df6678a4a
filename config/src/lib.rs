//! The samld configuration file (TOML), shared by the daemon and `samlctl config check`.
//!
//! ```toml
//! [defaults]                 # optional; any account key can be set here
//! region = "us-east-1"
//!
//! [accounts.production]
//! url = "https://sso.jumpcloud.com/saml2/acme-prod-aws-admin"
//! username = "road.runner@the-acme-corporation.com"
//! role = "arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO"
//! ```
//!
//! [`load`] reads and validates a file; every error names the file, line, column and key
//! (see [`ConfigError`]). [`resolve_config_path`] finds the file.

#![warn(missing_docs)]

mod arn;
mod duration;
mod error;
mod parse;
mod paths;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

pub use arn::{Partition, RoleArn, RoleArnError, is_saml_provider_arn};
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ErrorKind, Location};
pub use parse::is_loopback;
pub use paths::{
    CONFIG_ENV, ConfigPathError, default_config_path, resolve_config_path, resolve_config_path_from,
};

/// `session_duration` when not set.
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(60 * 60);
/// The shortest `session_duration` STS accepts (DurationSeconds 900).
pub const MIN_SESSION_DURATION: Duration = Duration::from_secs(15 * 60);
/// The longest `session_duration` STS accepts (DurationSeconds 43200).
pub const MAX_SESSION_DURATION: Duration = Duration::from_secs(12 * 60 * 60);
/// `refresh_before` when not set, unless `session_duration` is under twice this long (then
/// half of it).
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(20 * 60);
/// The shortest `refresh_before`; its longest is [`MAX_SESSION_DURATION`] (and it is always
/// shorter than the account's `session_duration`).
pub const MIN_REFRESH_BEFORE: Duration = Duration::from_secs(1);
/// How long a request waits for a login or refresh that is already running for its account.
pub const DEFAULT_LOGIN_WAIT: Duration = Duration::from_secs(2 * 60);
/// The shortest `login_wait`.
pub const MIN_LOGIN_WAIT: Duration = Duration::from_secs(1);
/// The longest `login_wait`. Bounded so that `now + login_wait` can never overflow an
/// `Instant`, whatever the file says.
pub const MAX_LOGIN_WAIT: Duration = Duration::from_secs(60 * 60);
/// How long one request to the IdP may take, redirects and body included, when
/// `request_timeout` is not set.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest `request_timeout`.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest `request_timeout`: past this a hung IdP holds a login (and the helpers waiting
/// for it) for longer than anyone waits.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// `jumpcloud_console_url` when not set.
pub const DEFAULT_JUMPCLOUD_CONSOLE_URL: &str = "https://console.jumpcloud.com";
/// `federation_url` when not set.
pub const DEFAULT_FEDERATION_URL: &str = "https://signin.aws.amazon.com/federation";

/// Configuration files larger than this are refused rather than read: a real one is a few
/// kilobytes, and `SAMLD_CONFIG=/dev/zero` should fail, not exhaust memory.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Parses and validates configuration text; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse::parse(text, path)
}

/// Reads and validates the configuration file at `path`.
///
/// A missing file is an error here (see [`ConfigError::is_not_found`]); use
/// [`load_or_empty`] where a missing file means "no accounts yet".
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| ConfigError::read(path, &e))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        let error = io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {} KiB", MAX_FILE_SIZE / 1024),
        );
        return Err(ConfigError::read(path, &error));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(text, path),
        Err(e) => Err(ConfigError::not_utf8(path, &bytes[..e.valid_up_to()])),
    }
}

/// Like [`load`], but a file that does not exist gives an empty configuration. The flag says
/// whether the file existed.
pub fn load_or_empty(path: &Path) -> Result<(Config, bool), ConfigError> {
    match load(path) {
        Ok(config) => Ok((config, true)),
        Err(error) if error.is_not_found() => Ok((Config::default(), false)),
        Err(error) => Err(error),
    }
}

impl Config {
    /// The account called `name`.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }
}

/// A whole, validated configuration. The default is the empty one (no accounts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Accounts by name, sorted.
    pub accounts: BTreeMap<String, Account>,
    /// `audit_log`: an absolute path where samld also writes its audit of credential
    /// hand-outs, one JSON object per line (none: the audit stays in memory).
    pub audit_log: Option<std::path::PathBuf>,
}

/// Which identity provider an account signs in with (`provider`, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    /// JumpCloud SSO.
    JumpCloud,
    /// Any SAML IdP, signed in to through a browser; refreshed with the browser's cookies.
    Saml,
}

/// How a person signs an account in (`login`, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginMethod {
    /// samld posts the password and second factor to JumpCloud's API (`samlctl login`).
    Api,
    /// samlctl opens a browser where the person signs in however their organisation requires
    /// (`samlctl login --browser`).
    Browser,
}

impl LoginMethod {
    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Browser => "browser",
        }
    }
}

/// The `mfa` key (case-insensitive): which second factor to use when JumpCloud asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaMode {
    /// Pick what the account offers: push when available (it needs no typing), else TOTP.
    Auto,
    /// JumpCloud Protect push.
    Push,
    /// A TOTP code.
    Totp,
    /// A security key (not supported yet: reported clearly).
    Webauthn,
    /// The account has no second factor.
    None,
}

/// One `[accounts.NAME]` table with `[defaults]` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The table name.
    pub name: String,
    /// `provider`.
    pub provider: Provider,
    /// `login`: how a person signs in (default `api` for JumpCloud, `browser` for `saml`).
    pub login: LoginMethod,
    /// `browser`: the Chromium-family browser samlctl starts for a browser sign-in (default:
    /// the first one found in the usual places).
    pub browser: Option<String>,
    /// `browser_args`: extra flags for that browser (e.g. `--no-sandbox` as root).
    pub browser_args: Vec<String>,
    /// `url`: the IdP URL of the AWS app, such as `https://sso.jumpcloud.com/saml2/acme-aws`.
    pub url: String,
    /// `username`: the JumpCloud email (may be empty for `provider = "saml"`, where the
    /// browser sign-in says who the person is).
    pub username: String,
    /// `role`: default role, an ARN or a role name.
    pub role: Option<String>,
    /// `mfa`.
    pub mfa: MfaMode,
    /// `region`.
    pub region: Option<String>,
    /// `session_duration`: DurationSeconds asked of STS (default 1h).
    pub session_duration: Duration,
    /// `refresh_before`: refresh this long before expiry (default 20m, or half of
    /// `session_duration` when that is shorter than 40m); always shorter than
    /// `session_duration`.
    pub refresh_before: Duration,
    /// `password_command`: run with `sh -c`, prints the password.
    pub password_command: Option<String>,
    /// `mfa_command`: run with `sh -c`, prints a TOTP code.
    pub mfa_command: Option<String>,
    /// `jumpcloud_console_url` (default `https://console.jumpcloud.com`).
    pub jumpcloud_console_url: String,
    /// `sts_endpoint`: overrides the regional STS endpoint.
    pub sts_endpoint: Option<String>,
    /// `federation_url` for console sign-in (default `https://signin.aws.amazon.com/federation`).
    pub federation_url: String,
    /// `notifications`: desktop notifications when a login is needed (default true).
    pub notifications: bool,
    /// `login_wait`: how long a request waits for a login or refresh already under way for
    /// the account (default 2m: long enough to approve a push).
    pub login_wait: Duration,
    /// `request_timeout`: how long one request to the IdP may take (default 30s; connecting
    /// is capped at 10s or this, whichever is shorter).
    pub request_timeout: Duration,
}

/// Which IdP sign-in an account uses: one per provider, console and user. Accounts with the
/// same key share one session, so that one login (and one push) serves all of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    /// The provider.
    pub provider: Provider,
    /// The console (sign-in) base URL, without a trailing `/`.
    pub console_url: String,
    /// The user, as compared by the IdP: email addresses are case-insensitive.
    pub username: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.username, self.console_url)
    }
}

impl Account {
    /// The IdP session this account signs in through.
    pub fn session_key(&self) -> SessionKey {
        let console_url = match self.provider {
            Provider::JumpCloud => self.jumpcloud_console_url.trim_end_matches('/').to_owned(),
            // The IdP's origin: its cookies are the session, whichever app they open.
            Provider::Saml => url::Url::parse(&self.url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| self.url.clone()),
        };
        SessionKey {
            provider: self.provider,
            console_url,
            username: self.username.trim().to_lowercase(),
        }
    }

    /// What messages call the account's IdP: `JumpCloud`, or `IdP` for a generic one.
    pub fn idp_name(&self) -> &'static str {
        match self.provider {
            Provider::JumpCloud => "JumpCloud",
            Provider::Saml => "IdP",
        }
    }

    /// The command that signs this account in, as messages tell the person to run it.
    pub fn login_command(&self) -> String {
        match self.login {
            LoginMethod::Api => format!("samlctl login {}", self.name),
            LoginMethod::Browser => format!("samlctl login {} --browser", self.name),
        }
    }
}

impl Provider {
    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JumpCloud => "jumpcloud",
            Self::Saml => "saml",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MfaMode {
    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Push => "push",
            Self::Totp => "totp",
            Self::Webauthn => "webauthn",
            Self::None => "none",
        }
    }
}

impl fmt::Display for MfaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
