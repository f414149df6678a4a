//! Identity providers: how samld gets a SAML assertion for an account.
//!
//! The session manager talks to a provider through [`IdentityProvider`], so that its logic
//! (single flight, refresh, re-login) can be tested without HTTP. Secrets the provider needs
//! during a login (password, TOTP code) are asked for lazily through [`LoginInteraction`],
//! because most logins reuse the JumpCloud session and need none.

pub mod browser_session;
pub mod identity;
pub mod jumpcloud;
pub mod saml_idp;
pub mod session;
pub(crate) mod transport;

use std::fmt;
use std::time::Duration;

use samld_proto::{ErrorCode, Secret};

pub use self::session::{ExternalSession, IdpSession};
use crate::future::BoxFuture;

/// A provider of SAML assertions for one account.
pub trait IdentityProvider: Send + Sync {
    /// Fetches a fresh SAMLResponse (base64) using only the held IdP session: no password,
    /// no MFA. Fails with [`IdpError::SessionExpired`] when there is no live session.
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>>;

    /// A full login, ending with a fresh SAMLResponse: the sign-in the person finished in a
    /// browser when [`LoginInteraction::browser_sign_in`] has one (its cookies become the held
    /// session), else the provider's own (password, then MFA when asked). The session it
    /// establishes is kept for [`IdentityProvider::assertion_from_session`].
    fn login<'a>(
        &'a self,
        io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>>;

    /// Whom the account's sign-ins must be for when it is not the configured `username`:
    /// for `provider = "saml"`, the subject of the first sign-in. `None` when the configured
    /// `username` is the identity, or before any sign-in.
    fn identity(&self) -> Option<String> {
        None
    }

    /// Whom the held session signs in: the subjects an assertion may name to be handed on
    /// to STS (the session manager refuses any other). Empty when no identity is known yet,
    /// before the first sign-in of a `provider = "saml"` account.
    fn identities(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where a login gets its secrets and where it reports progress.
pub trait LoginInteraction: Send {
    /// The IdP password. `prompt` names the user, such as `JumpCloud password for a@b.c`.
    fn password<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>>;

    /// A TOTP code. Called once per attempt; a code is never reused.
    fn mfa_code<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>>;

    /// Something the user should see now ("approve the push on your phone").
    fn progress<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()>;

    /// A sign-in the person already finished in a browser, taken at most once. A provider
    /// given one adopts it instead of signing in itself.
    fn browser_sign_in(&mut self) -> Option<samld_proto::BrowserSignIn> {
        None
    }

    /// Called right before the provider sends something that reaches the person or counts
    /// against their account (a password, a push, a code). The session manager counts these,
    /// because an unattended login may do so at most once per need: a second wrong password
    /// or unwanted push is how accounts get locked and people get annoyed.
    fn reaching_person(&mut self, contact: Contact) {
        let _ = contact;
    }
}

/// What a login is about to send that reaches the person or their account's lockout counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contact {
    /// A password post.
    Password,
    /// A push to the phone.
    Push,
    /// A one-time code.
    Code,
}

/// Why a login or an assertion fetch failed. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdpError {
    /// JumpCloud rejected the email or password (its message, e.g. "Authentication failed.").
    AuthFailed {
        /// JumpCloud's message.
        message: String,
    },
    /// The TOTP code was wrong or already used.
    MfaCodeRejected {
        /// JumpCloud's message.
        message: String,
    },
    /// The push was denied on the phone.
    PushDenied,
    /// The push was not answered before it expired.
    PushExpired,
    /// A second factor is needed but no code could be had without a terminal.
    MfaCodeUnavailable {
        /// Why (e.g. "no terminal and no mfa_command").
        reason: String,
    },
    /// No password could be had without a terminal.
    PasswordUnavailable {
        /// Why.
        reason: String,
    },
    /// The factor that would be used is not supported yet.
    MfaUnsupported {
        /// The factor (`webauthn`, `duo`).
        factor: String,
        /// The available factors samld does support, possibly empty.
        alternatives: Vec<String>,
    },
    /// JumpCloud asked for MFA but offered no factor samld can use, or `mfa` names one the
    /// account does not have.
    NoUsableFactor {
        /// What the account offers.
        offered: Vec<String>,
        /// What the config asked for.
        configured: String,
    },
    /// The IdP session has ended (or there never was one); a password login is needed.
    SessionExpired,
    /// A request got HTML (or other non-JSON) where JSON was expected.
    UnexpectedHtml {
        /// Which request, e.g. "GET /userconsole/xsrf".
        request: String,
        /// The HTTP status.
        status: u16,
    },
    /// A request got a status it should not.
    UnexpectedStatus {
        /// Which request.
        request: String,
        /// The HTTP status.
        status: u16,
        /// JumpCloud's `message`, when the body had one.
        message: Option<String>,
    },
    /// The page for the AWS app did not carry a usable SAMLResponse.
    Saml(crate::saml::SamlError),
    /// A server could not be reached.
    Network {
        /// The URL (no query string, which could hold tokens).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The config cannot work (e.g. an unparsable URL).
    Config(String),
    /// The user or the client gave up (closed the connection, Ctrl-C).
    Cancelled,
    /// JumpCloud asked for a second factor without naming it (a bare `"MFA required."` with
    /// no `factors` list), and samld had no way to answer it under the `mfa` setting.
    MfaUnnamed {
        /// The `mfa` setting (`auto`, `none`, `webauthn`).
        configured: String,
        /// Why no TOTP code could be had, when one was looked for.
        reason: Option<String>,
    },
    /// JumpCloud answered an error body (`{"error": ...}`) to a request: its own words about
    /// why, which may concern the account (locked, suspended) rather than the password.
    JumpCloudError {
        /// Which request.
        request: String,
        /// The HTTP status (4xx: 5xx answers stay [`IdpError::UnexpectedStatus`]).
        status: u16,
        /// JumpCloud's words, cleaned of control characters and shortened.
        error: String,
    },
    /// JumpCloud answered a request with a redirect to its login page instead of signing in
    /// or asking for a second factor.
    SentToLoginPage {
        /// Which request.
        request: String,
    },
    /// JumpCloud answered HTTP 429: too many requests. Transient, after
    /// [`IdpError::retry_after`].
    Throttled {
        /// Which request.
        request: String,
        /// How long JumpCloud asked to wait (its `Retry-After`), when it said.
        retry_after: Option<Duration>,
    },
    /// Signed in, but the app's page is neither JumpCloud's login page nor the SAML form:
    /// a policy (conditional access, device trust) that only a browser passes.
    BrowserRequired {
        /// Which request, e.g. "GET /saml2/acme-aws".
        request: String,
        /// The app URL for the user to open in a browser (no query string).
        url: String,
    },
    /// A generic SAML IdP answered a refresh with a server error or 429: it is having
    /// trouble, and asking again later costs the person nothing.
    IdpUnavailable {
        /// Which request.
        request: String,
        /// The HTTP status.
        status: u16,
    },
    /// An answer was larger than samld reads of its kind; samld stopped reading it.
    TooLarge {
        /// Which request.
        request: String,
        /// The cap, in bytes.
        limit: usize,
        /// What kind of answer it was meant to be ("a page", "a JSON answer").
        kind: &'static str,
    },
    /// A sign-in or an assertion for someone other than the account's identity: refused
    /// before it could replace a session or reach STS.
    IdentityMismatch(identity::IdentityMismatch),
}

impl IdpError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            IdpError::AuthFailed { .. } => ErrorCode::AuthFailed,
            IdpError::MfaCodeRejected { .. } | IdpError::PushDenied | IdpError::PushExpired => {
                ErrorCode::MfaFailed
            }
            IdpError::MfaCodeUnavailable { .. } => ErrorCode::MfaRequired,
            IdpError::PasswordUnavailable { .. } | IdpError::SessionExpired => {
                ErrorCode::NeedsLogin
            }
            IdpError::MfaUnsupported { .. } | IdpError::NoUsableFactor { .. } => {
                ErrorCode::MfaUnsupported
            }
            IdpError::UnexpectedHtml { .. } | IdpError::UnexpectedStatus { .. } => {
                ErrorCode::IdpError
            }
            IdpError::Saml(_) => ErrorCode::SamlError,
            IdpError::Network { .. } => ErrorCode::NetworkError,
            IdpError::Config(_) => ErrorCode::ConfigError,
            IdpError::Cancelled => ErrorCode::BadRequest,
            IdpError::MfaUnnamed { .. } => ErrorCode::MfaRequired,
            // A 401 with JumpCloud's own words about the sign-in: the user must look (a
            // locked account must not be retried into more lockout).
            IdpError::JumpCloudError { status: 401, .. } | IdpError::SentToLoginPage { .. } => {
                ErrorCode::AuthFailed
            }
            IdpError::JumpCloudError { .. }
            | IdpError::IdpUnavailable { .. }
            | IdpError::Throttled { .. }
            | IdpError::TooLarge { .. } => ErrorCode::IdpError,
            // Nothing samld can do about it: the closest code that makes clients stop.
            IdpError::BrowserRequired { .. } => ErrorCode::MfaUnsupported,
            // Signing in again, as the right person, is what mends it.
            IdpError::IdentityMismatch(_) => ErrorCode::NeedsLogin,
        }
    }

    /// How long the IdP asked to be left alone before the next try (HTTP 429 with
    /// `Retry-After`); `None` when it did not say, or for any other error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IdpError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

// The messages, one group of variants per helper; `fmt` sends each variant to its group, so
// the helpers' last arm is never taken.
impl fmt::Display for IdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::AuthFailed { .. }
            | IdpError::PasswordUnavailable { .. }
            | IdpError::SessionExpired
            | IdpError::Cancelled => self.fmt_sign_in(f),
            IdpError::MfaCodeRejected { .. }
            | IdpError::PushDenied
            | IdpError::PushExpired
            | IdpError::MfaCodeUnavailable { .. }
            | IdpError::MfaUnnamed { .. } => self.fmt_mfa(f),
            IdpError::MfaUnsupported { .. } | IdpError::NoUsableFactor { .. } => {
                self.fmt_factors(f)
            }
            IdpError::Network { .. }
            | IdpError::UnexpectedHtml { .. }
            | IdpError::UnexpectedStatus { .. }
            | IdpError::Throttled { .. }
            | IdpError::IdpUnavailable { .. }
            | IdpError::TooLarge { .. } => self.fmt_http(f),
            IdpError::JumpCloudError { .. }
            | IdpError::SentToLoginPage { .. }
            | IdpError::BrowserRequired { .. } => self.fmt_refusal(f),
            // The saml error already says what to check.
            IdpError::Saml(e) => write!(f, "{e}"),
            IdpError::Config(message) => write!(f, "Configuration error: {message}"),
            IdpError::IdentityMismatch(mismatch) => mismatch.fmt(f),
        }
    }
}

impl IdpError {
    /// The errors about the password and the session: what the person signs in with.
    fn fmt_sign_in(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::AuthFailed { message } => write!(
                f,
                "JumpCloud rejected the email or password: {message} Check `username` (it must \
                     be the JumpCloud email address, not the JumpCloud username) and the password."
            ),
            IdpError::PasswordUnavailable { reason } => write!(
                f,
                "No JumpCloud password could be had ({reason}); run `samlctl login` in a \
                     terminal, pipe the password to `samlctl login --password-stdin`, or set \
                     `password_command`."
            ),
            IdpError::SessionExpired => f.write_str(
                "The JumpCloud session has expired; a password login is needed (`samlctl login`).",
            ),
            IdpError::Cancelled => f.write_str("The login was cancelled."),
            _ => unreachable!("{self:?} is not one of fmt_sign_in's errors"),
        }
    }

    /// The errors about answering a second factor.
    fn fmt_mfa(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::MfaCodeRejected { message } => write!(
                f,
                "JumpCloud rejected the TOTP code: {message} Each code works only once: wait for \
                     the next code and log in again."
            ),
            IdpError::PushDenied => f.write_str(
                "The JumpCloud Protect push was denied on the phone; log in again and approve it.",
            ),
            IdpError::PushExpired => f.write_str(
                "The JumpCloud Protect push was not approved before it expired; log in again and \
                     approve it on your phone.",
            ),
            IdpError::MfaCodeUnavailable { reason } => write!(
                f,
                "JumpCloud asks for a TOTP code but none could be had ({reason}); run `samlctl \
                     login` in a terminal, pipe the code to `samlctl login --mfa-code-stdin`, or set \
                     `mfa_command`."
            ),
            IdpError::MfaUnnamed { configured, reason } => {
                f.write_str("JumpCloud asks for a second factor without saying which")?;
                match (configured.as_str(), reason) {
                    ("auto", Some(reason)) => write!(
                        f,
                        ", and no TOTP code was at hand ({reason}): to answer it with a TOTP \
                             code, set mfa = \"totp\" and `mfa_command`, or pass the code to \
                             `samlctl login`; if you use JumpCloud Protect, set mfa = \"push\"."
                    ),
                    (other, _) => write!(
                        f,
                        ", and mfa = \"{other}\" cannot answer it: set mfa = \"totp\" (with \
                             `mfa_command` for unattended logins) or mfa = \"push\"."
                    ),
                }
            }
            _ => unreachable!("{self:?} is not one of fmt_mfa's errors"),
        }
    }

    /// The errors about which second factor to use: the config and the account disagree.
    fn fmt_factors(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::MfaUnsupported {
                factor,
                alternatives,
            } => {
                match factor.as_str() {
                    "webauthn" => f.write_str("WebAuthn security keys are not supported yet")?,
                    "duo" => f.write_str("Duo is not supported yet")?,
                    other => write!(f, "The JumpCloud factor {other:?} is not supported yet")?,
                }
                match alternatives.first() {
                    Some(first) => write!(
                        f,
                        "; this account also offers: {} — set mfa = \"{first}\".",
                        alternatives.join(", ")
                    ),
                    None => f.write_str(
                        "; this account offers no factor samld supports: enroll JumpCloud \
                             Protect (push) or a TOTP authenticator in the JumpCloud user console.",
                    ),
                }
            }
            IdpError::NoUsableFactor {
                offered,
                configured,
            } => {
                if offered.is_empty() {
                    write!(
                        f,
                        "JumpCloud asks for a second factor but offers none that is available \
                             (mfa = \"{configured}\"); enroll JumpCloud Protect (push) or a TOTP \
                             authenticator in the JumpCloud user console."
                    )
                } else if configured == "none" {
                    write!(
                        f,
                        "JumpCloud asks for a second factor but mfa = \"none\"; this account \
                             offers: {} — set mfa = \"auto\".",
                        offered.join(", ")
                    )
                } else {
                    write!(
                        f,
                        "mfa = \"{configured}\" but this JumpCloud account offers only: {} — set \
                             mfa to one of them, or \"auto\".",
                        offered.join(", ")
                    )
                }
            }
            _ => unreachable!("{self:?} is not one of fmt_factors's errors"),
        }
    }

    /// The errors about what came back over the network: unreachable, odd statuses,
    /// throttling, oversized answers.
    fn fmt_http(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::Network { url, reason } => write!(
                f,
                "Could not reach {url}: {reason}. Check the network connection, any proxy, and \
                     the configured URL."
            ),
            IdpError::UnexpectedHtml { request, status } => write!(
                f,
                "JumpCloud answered HTML instead of JSON to {request} (HTTP {status}); JumpCloud \
                     may be down or a proxy is intercepting: check `jumpcloud_console_url` and any \
                     proxy settings, and try again later."
            ),
            IdpError::UnexpectedStatus {
                request,
                status,
                message,
            } => {
                write!(f, "JumpCloud answered HTTP {status} to {request}")?;
                if let Some(message) = message {
                    write!(f, ": {message}")?;
                }
                match status {
                    500.. => {
                        f.write_str("; JumpCloud seems to be having trouble, try again later.")
                    }
                    429 => f.write_str("; too many requests, try again in a minute."),
                    403 => f.write_str(
                        "; JumpCloud refused the XSRF token or the session cookies (a proxy or \
                             a JumpCloud change may be the cause).",
                    ),
                    404 => f.write_str("; check `url` and `jumpcloud_console_url`."),
                    _ => f.write_str("."),
                }
            }
            IdpError::Throttled {
                request,
                retry_after,
            } => {
                write!(
                    f,
                    "JumpCloud is limiting requests (HTTP 429 to {request}); "
                )?;
                match retry_after {
                    Some(wait) => write!(
                        f,
                        "it asks to wait {} before trying again.",
                        human_duration(*wait)
                    ),
                    None => f.write_str("wait a minute before trying again."),
                }
            }
            IdpError::IdpUnavailable { request, status } => write!(
                f,
                "The IdP answered {request} with HTTP {status}; it seems to be having trouble: \
                     samld asks again later."
            ),
            IdpError::TooLarge {
                request,
                limit,
                kind,
            } => write!(
                f,
                "JumpCloud's answer to {request} is larger than {}, samld's limit for {kind}; \
                     samld stopped reading it. Real JumpCloud answers are far smaller (a SAML page \
                     is a few KiB), so something else answered, such as a proxy or a captive \
                     portal: check `url`, `jumpcloud_console_url` and any proxy settings.",
                human_bytes(*limit)
            ),
            _ => unreachable!("{self:?} is not one of fmt_http's errors"),
        }
    }

    /// The errors where JumpCloud itself declines the sign-in and says, or shows, why.
    fn fmt_refusal(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::JumpCloudError {
                request,
                status,
                error,
            } => write!(
                f,
                "JumpCloud refused {request} (HTTP {status}): \"{error}\". These are \
                     JumpCloud's own words: if they are about your account (locked, suspended, \
                     password expired), sign in to the JumpCloud user console in a browser or ask \
                     your JumpCloud administrator."
            ),
            IdpError::SentToLoginPage { request } => write!(
                f,
                "JumpCloud answered {request} with a redirect to its login page instead of \
                     signing in or asking for a second factor: it wants this sign-in done on its \
                     own login page. Sign in to the JumpCloud user console in a browser once to see \
                     what it asks for, then try again; if it keeps happening, your organisation's \
                     policy may require signing in through a browser."
            ),
            IdpError::BrowserRequired { request, url } => write!(
                f,
                "JumpCloud accepted the sign-in but answered {request} with a page that is \
                     neither its login page nor the SAML form: your organisation's policy requires \
                     signing in to this app through a browser (conditional access or device trust): \
                     sign in with `samlctl login ACCOUNT --browser`, and set login = \"browser\" \
                     for the account. If {url} shows an error or a maintenance notice in a browser \
                     instead, check that `url` is the IdP URL of the AWS app and that you are \
                     assigned to it, or try again later."
            ),
            _ => unreachable!("{self:?} is not one of fmt_refusal's errors"),
        }
    }
}

/// `42 s`, or whole minutes (rounded up) from two minutes on.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

/// `1 MiB`, `64 KiB`, or bytes.
fn human_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

impl std::error::Error for IdpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let unsupported = IdpError::MfaUnsupported {
            factor: "webauthn".to_owned(),
            alternatives: vec!["totp".to_owned(), "push".to_owned()],
        };
        assert_eq!(
            unsupported.to_string(),
            "WebAuthn security keys are not supported yet; this account also offers: totp, push \
             — set mfa = \"totp\"."
        );
        let html = IdpError::UnexpectedHtml {
            request: "GET /userconsole/xsrf".to_owned(),
            status: 200,
        };
        assert!(html.to_string().starts_with(
            "JumpCloud answered HTML instead of JSON to GET /userconsole/xsrf (HTTP 200)"
        ));
        let failed = IdpError::AuthFailed {
            message: "Authentication failed.".to_owned(),
        };
        assert!(
            failed
                .to_string()
                .contains("Authentication failed. Check `username`")
        );
        let status = IdpError::UnexpectedStatus {
            request: "POST /userconsole/auth".to_owned(),
            status: 503,
            message: Some("down".to_owned()),
        };
        assert_eq!(
            status.to_string(),
            "JumpCloud answered HTTP 503 to POST /userconsole/auth: down; JumpCloud seems to be \
             having trouble, try again later."
        );
    }

    #[test]
    fn throttling_is_transient_and_says_how_long() {
        use crate::manager::policy::{Failure, classify_idp};
        let throttled = |secs: Option<u64>| IdpError::Throttled {
            request: "GET /userconsole/xsrf".to_owned(),
            retry_after: secs.map(Duration::from_secs),
        };
        assert!(matches!(
            classify_idp(&throttled(None)),
            Failure::Transient { .. }
        ));
        assert_eq!(throttled(None).retry_after(), None);
        assert_eq!(
            throttled(Some(42)).retry_after(),
            Some(Duration::from_secs(42))
        );
        assert!(
            throttled(Some(42))
                .to_string()
                .ends_with("it asks to wait 42 s before trying again.")
        );
        assert!(
            throttled(Some(601))
                .to_string()
                .ends_with("it asks to wait 11 min before trying again.")
        );
        assert!(
            throttled(None)
                .to_string()
                .ends_with("wait a minute before trying again.")
        );
        // Only a 429 carries a wait.
        assert_eq!(IdpError::PushDenied.retry_after(), None);
    }

    #[test]
    fn answers_that_need_the_user_are_not_transient() {
        use crate::manager::policy::{Failure, classify_idp};
        for e in [
            IdpError::BrowserRequired {
                request: "GET /saml2/x".to_owned(),
                url: "https://sso.jumpcloud.com/saml2/x".to_owned(),
            },
            IdpError::SentToLoginPage {
                request: "POST /userconsole/auth".to_owned(),
            },
            IdpError::JumpCloudError {
                request: "POST /userconsole/auth".to_owned(),
                status: 401,
                error: "locked".to_owned(),
            },
            IdpError::MfaUnnamed {
                configured: "auto".to_owned(),
                reason: None,
            },
            IdpError::TooLarge {
                request: "GET /saml2/x".to_owned(),
                limit: 1 << 20,
                kind: "a page",
            },
        ] {
            assert!(
                !matches!(classify_idp(&e), Failure::Transient { .. }),
                "{e:?}"
            );
            assert_eq!(e.retry_after(), None);
        }
        let big = IdpError::TooLarge {
            request: "GET /saml2/x".to_owned(),
            limit: 1 << 20,
            kind: "a page",
        };
        assert!(big.to_string().starts_with(
            "JumpCloud's answer to GET /saml2/x is larger than 1 MiB, samld's limit for a page;"
        ));
    }
}
