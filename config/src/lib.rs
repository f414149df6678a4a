//! The samld configuration file (TOML), shared by the daemon and `samlctl config check`.
//!
//! SKELETON: the data model below is the contract; parsing and validation are to be written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Accounts by name, sorted.
    pub accounts: BTreeMap<String, Account>,
}

/// Which identity provider an account signs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// JumpCloud SSO.
    JumpCloud,
}

/// The `mfa` key: which second factor to use when JumpCloud asks for one.
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
    /// `url`: the IdP URL of the AWS app, such as `https://sso.jumpcloud.com/saml2/acme-aws`.
    pub url: String,
    /// `username`: the JumpCloud email.
    pub username: String,
    /// `role`: default role, an ARN or a role name.
    pub role: Option<String>,
    /// `mfa`.
    pub mfa: MfaMode,
    /// `region`.
    pub region: Option<String>,
    /// `session_duration`: DurationSeconds asked of STS (default 1h).
    pub session_duration: Duration,
    /// `refresh_before`: refresh this long before expiry (default 20m).
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
}
