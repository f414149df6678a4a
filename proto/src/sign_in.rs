//! What a person's `samlctl login` and `logout` send and get back: a login's intent as one
//! type, so that no combination the daemon would have to refuse can be sent.

use serde::{Deserialize, Serialize};

use crate::{BrowserSignIn, Secret};

/// What a [`crate::Request::Logout`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogoutOutcome {
    /// The accounts that were logged out.
    pub accounts: Vec<String>,
    /// How many IdP sessions were signed out: a session goes with the last account that
    /// uses it, and a logout of every account signs out every session.
    #[serde(default)]
    pub idp_sessions: u32,
}

/// The parameters of [`crate::Request::Login`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The account name from the config.
    pub account: String,
    /// What the login is for.
    pub intent: LoginIntent,
}

/// What a person's login asks for. Each kind carries only what it uses, so that nothing the
/// daemon would have to refuse (a browser's sign-in that only reuses, a password saved from
/// a session reused without one) can be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginIntent {
    /// Reuse the IdP session while it lives, or fail with [`crate::ErrorCode::NeedsLogin`]; never
    /// sign in (`samlctl login --browser` asks this first, so that a live session needs no
    /// browser).
    ReuseOnly,
    /// Adopt the sign-in the person made in a browser, whatever session is held.
    Browser {
        /// What the browser handed over.
        sign_in: BrowserSignIn,
    },
    /// Sign in with a password and, when the IdP asks for one, a code.
    Password(PasswordLogin),
}

impl LoginIntent {
    /// Whether the login signs in anew even while the IdP session lives: the one place
    /// where that is decided.
    pub fn skips_held_session(&self) -> bool {
        match self {
            LoginIntent::ReuseOnly => false,
            LoginIntent::Browser { .. } => true,
            LoginIntent::Password(login) => login.session != HeldSession::Reuse,
        }
    }

    /// Whether the password the IdP accepts is to be kept in the OS keyring.
    pub fn saves_password(&self) -> bool {
        matches!(
            self,
            LoginIntent::Password(PasswordLogin {
                session: HeldSession::SignInAndSavePassword,
                ..
            })
        )
    }

    /// Whether the client answers [`crate::Response::NeedSecret`].
    pub fn interactive(&self) -> bool {
        matches!(self, LoginIntent::Password(login) if login.interactive)
    }
}

/// A [`LoginIntent::Password`] login.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PasswordLogin {
    /// A password the client already has (`--password-stdin`); otherwise the daemon uses
    /// `password_command`, the keyring, or asks with [`crate::Response::NeedSecret`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A TOTP code the client already has (`--mfa-code-stdin`, `--mfa-code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_code: Option<Secret>,
    /// The client can answer [`crate::Response::NeedSecret`].
    #[serde(default)]
    pub interactive: bool,
    /// What to do with an IdP session that still lives.
    #[serde(default)]
    pub session: HeldSession,
}

/// What a password login does with an IdP session that still lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldSession {
    /// Reuse it: no password is asked for while it lives.
    #[default]
    Reuse,
    /// Sign in anew (`samlctl login --force`).
    SignInAnew,
    /// Sign in anew and keep the password in the OS keyring once the IdP accepts it
    /// (`--save-password`: a reused session has no password to save).
    SignInAndSavePassword,
}

impl HeldSession {
    /// From `samlctl login`'s `--force` and `--save-password`.
    pub fn from_flags(force: bool, save_password: bool) -> Self {
        match (force, save_password) {
            (_, true) => HeldSession::SignInAndSavePassword,
            (true, false) => HeldSession::SignInAnew,
            (false, false) => HeldSession::Reuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_intent_says_once_whether_it_skips_the_session_saves_or_asks() {
        let password = |session, interactive| {
            LoginIntent::Password(PasswordLogin {
                interactive,
                session,
                ..PasswordLogin::default()
            })
        };
        let browser = LoginIntent::Browser {
            sign_in: BrowserSignIn::default(),
        };
        // (intent, skips a live session, saves the password, answers questions)
        let table = [
            (LoginIntent::ReuseOnly, false, false, false),
            (browser, true, false, false),
            (password(HeldSession::Reuse, true), false, false, true),
            (password(HeldSession::SignInAnew, false), true, false, false),
            (
                password(HeldSession::SignInAndSavePassword, false),
                true,
                true,
                false,
            ),
        ];
        for (intent, skips, saves, asks) in table {
            assert_eq!(intent.skips_held_session(), skips, "{intent:?}");
            assert_eq!(intent.saves_password(), saves, "{intent:?}");
            assert_eq!(intent.interactive(), asks, "{intent:?}");
        }
        // `--save-password` needs a password, which a reused session would not ask for.
        assert_eq!(
            HeldSession::from_flags(false, true),
            HeldSession::SignInAndSavePassword
        );
        assert_eq!(
            HeldSession::from_flags(true, false),
            HeldSession::SignInAnew
        );
        assert_eq!(HeldSession::from_flags(false, false), HeldSession::Reuse);
    }
}
