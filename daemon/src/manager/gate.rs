//! The gate: whether a trip may run now, for whom, and if not, why; and every "why not" in
//! words, once, for the helper's error, `samlctl status` and the desktop notification.
//!
//! [`gate`] is pure: the manager hands it a view of the account and of its IdP session (read
//! under their locks), the clock and who asks, so the rules are tested as a table below. It
//! is asked before a request starts a trip and again, under the session's lock, right before
//! a sign-in: a refusal that lands in between still stops it.

use samld_config::{Account, LoginMethod};
use samld_proto::{ErrorCode, ErrorInfo, WireError};
use time::OffsetDateTime;

use super::policy::{self, Failure, Phase, SessionPhase};
use super::state::SessionData;
use crate::clock::rfc3339;

/// Who asks for a trip: what they may start depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A person's `samlctl login`: their decision to sign in, which lifts any refusal.
    PersonLogin,
    /// `samld-helper` on a terminal: it may ask the person for what only they can type (a
    /// password, a code), but it is no decision to sign in again after they refused.
    TerminalHelper,
    /// Nobody to ask: a helper without a terminal, the exec endpoint, the scheduler,
    /// `samlctl refresh` (which reuses a session and signs nobody in).
    Unattended,
}

/// The account as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct AccountView<'a> {
    /// Where the account stands.
    pub phase: Phase,
    /// Why its last trip failed, if it did.
    pub last_error: Option<&'a ErrorInfo>,
    /// A trip for it runs now (a request joins it instead of starting one).
    pub flight_running: bool,
    /// It can sign in with nobody at the keyboard (a password samld can get, a second
    /// factor that needs no typing).
    pub signs_in_alone: bool,
    /// It holds credentials.
    pub holds_credentials: bool,
}

/// The account's IdP session as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    /// Where the session stands.
    pub phase: &'a SessionPhase,
    /// A sign-in of the session runs now (a trip waits for it and uses what it makes).
    pub login_running: bool,
    /// The session has been seen signed in since the daemon started or it was forgotten.
    pub signed_in_before: bool,
    /// When unattended sign-ins of the session started (only the last hour counts).
    pub unattended_logins: &'a [OffsetDateTime],
}

impl<'a> SessionView<'a> {
    /// The session as held, its lock held by the caller.
    pub(super) fn of(data: &'a SessionData) -> Self {
        Self {
            phase: &data.phase,
            login_running: data.login.is_some(),
            signed_in_before: data.times.is_some(),
            unattended_logins: &data.unattended_logins,
        }
    }
}

/// What the gate lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Make the trip (or join the one running); a sign-in it needs runs unattended.
    Trip,
    /// Sign in with the asker's help first: a person to type a password or code.
    SignIn,
}

/// Why a trip may not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhyNot {
    /// A person logged the account out.
    LoggedOut,
    /// Never signed in, and samld cannot sign it in alone.
    NeverSignedIn,
    /// Refused for good (STS, the IdP); `last` says by what, when known.
    Refused {
        /// The refusal.
        last: Option<ErrorInfo>,
    },
    /// A passing failure; the next try is at `retry_at`.
    BackingOff {
        /// The failure.
        last: ErrorInfo,
        /// When samld tries again by itself.
        retry_at: OffsetDateTime,
    },
    /// The person refused (a denied or expired push, a rejected password or code): nothing
    /// reaches them again until they run `samlctl login`.
    PersonRefused {
        /// What they refused, as the IdP said it.
        reason: String,
    },
    /// The IdP session ended and samld cannot sign in alone.
    SessionEnded,
    /// The IdP session ended; samld signs in by itself at `at` (a backoff, the hourly cap).
    SignsInAgainAt {
        /// Why it waits, when a failure says it better than "the session has ended".
        why: Option<String>,
        /// When it signs in.
        at: OffsetDateTime,
    },
    /// STS handed out credentials for `role` that died at once; asking again before `at`
    /// would be a loop.
    TooSoon {
        /// The role.
        role: String,
        /// How long the credentials lived, in seconds.
        life_secs: i64,
        /// When samld asks again.
        at: OffsetDateTime,
    },
    /// The account signs in only through a browser, and this request cannot open one.
    BrowserOnly,
}

/// Whether a trip may run now for `asker`, and if not, why.
pub fn gate(
    account: &AccountView<'_>,
    session: &SessionView<'_>,
    asker: Asker,
    now: OffsetDateTime,
) -> Result<Pass, WhyNot> {
    if asker == Asker::PersonLogin {
        return Ok(Pass::SignIn);
    }
    match why_not(account, session, now) {
        None => Ok(Pass::Trip),
        Some(why) if asker == Asker::TerminalHelper && why.a_terminal_answers() => Ok(Pass::SignIn),
        Some(why) => Err(why),
    }
}

/// Why nobody's trip may run now, if it may not.
fn why_not(
    account: &AccountView<'_>,
    session: &SessionView<'_>,
    now: OffsetDateTime,
) -> Option<WhyNot> {
    match account.phase {
        Phase::LoggedOut => return Some(WhyNot::LoggedOut),
        Phase::Refused => {
            return Some(WhyNot::Refused {
                last: account.last_error.cloned(),
            });
        }
        _ => {}
    }
    if account.flight_running {
        return None;
    }
    // The person's refusal comes before any wait of the account's own: a terminal may answer
    // a backoff for a locked keyring, but never a refusal.
    if let SessionPhase::NeedsPerson { reason } = session.phase {
        return Some(WhyNot::PersonRefused {
            reason: reason.clone(),
        });
    }
    if let Phase::Backoff { retry_at, .. } = account.phase
        && retry_at > now
        && let Some(last) = account.last_error
    {
        return Some(WhyNot::BackingOff {
            last: last.clone(),
            retry_at,
        });
    }
    if session.login_running || *session.phase == SessionPhase::Live {
        return None;
    }
    let ended = if account.holds_credentials || session.signed_in_before {
        WhyNot::SessionEnded
    } else {
        WhyNot::NeverSignedIn
    };
    if !account.signs_in_alone {
        return Some(ended);
    }
    let logins = session.unattended_logins;
    if session.phase.may_login_unattended(now, logins) {
        return None;
    }
    match session.phase.next_unattended_at(now, logins) {
        Some(at) => Some(WhyNot::SignsInAgainAt {
            why: account.last_error.map(|e| e.message.clone()),
            at,
        }),
        None => Some(ended),
    }
}

impl WhyNot {
    /// Whether a person at a terminal can answer it by typing a password or a code. Not a
    /// refusal (they said no, and only their `samlctl login` says otherwise) nor anything a
    /// sign-in does not fix.
    fn a_terminal_answers(&self) -> bool {
        match self {
            WhyNot::NeverSignedIn | WhyNot::SessionEnded | WhyNot::SignsInAgainAt { .. } => true,
            // A keyring that could not be read: the person can type the password instead.
            WhyNot::BackingOff { last, .. } => last.code == ErrorCode::NeedsLogin,
            // A logout is lifted only by the person's `samlctl login` of that account: with
            // a password_command, a helper run on a terminal would otherwise send a push
            // for an account they left.
            WhyNot::LoggedOut
            | WhyNot::Refused { .. }
            | WhyNot::PersonRefused { .. }
            | WhyNot::TooSoon { .. }
            | WhyNot::BrowserOnly => false,
        }
    }

    /// What a trip stopped by it means for the policy: a wait samld sees the end of is
    /// passing, anything else waits for a person.
    pub(super) fn failure(&self, now: OffsetDateTime) -> Failure {
        match self {
            WhyNot::SignsInAgainAt { at, .. } | WhyNot::BackingOff { retry_at: at, .. } => {
                Failure::Transient {
                    retry_after: Some((*at - now).try_into().unwrap_or(policy::BACKOFF_BASE)),
                }
            }
            _ => Failure::NeedsPerson,
        }
    }
}

/// The one wording of every "why not": what happened and the command that moves it on.
pub fn explain(account: &Account, why: &WhyNot) -> WireError {
    let (name, idp, command) = (&account.name, account.idp_name(), account.login_command());
    let needs_login = |message: String| WireError::new(ErrorCode::NeedsLogin, message);
    match why {
        WhyNot::LoggedOut | WhyNot::NeverSignedIn | WhyNot::Refused { last: None } => {
            WireError::new(
                ErrorCode::NotLoggedIn,
                format!("{name} is not logged in; run: {command}"),
            )
        }
        WhyNot::Refused { last: Some(last) } => WireError::new(
            last.code,
            format!(
                "{} (samld does not retry this by itself; once it is fixed, run: samlctl refresh {name})",
                last.message
            ),
        ),
        WhyNot::BackingOff { last, retry_at } => WireError::new(
            last.code,
            format!("{} (samld retries at {})", last.message, rfc3339(*retry_at)),
        ),
        WhyNot::PersonRefused { reason } => needs_login(format!(
            "{name} needs you to log in: {reason} samld sends nothing more to {idp} for it, \
             from a terminal or not, until you run: {command}"
        )),
        WhyNot::SessionEnded => {
            let mut message = format!("the {idp} session for {name} has ended; run: {command}");
            if account.login == LoginMethod::Browser {
                message.push_str(BROWSER_MAY_REMEMBER);
            }
            needs_login(message)
        }
        WhyNot::SignsInAgainAt { why, at } => {
            let why = why
                .clone()
                .unwrap_or_else(|| format!("the {idp} session for {name} has ended"));
            needs_login(format!(
                "{why} (samld signs in again at {}; or run: {command})",
                rfc3339(*at)
            ))
        }
        WhyNot::TooSoon {
            role,
            life_secs,
            at,
        } => WireError::new(
            ErrorCode::StsError,
            format!(
                "STS issued credentials for {role} ({name}) that expired {life_secs}s after they were obtained; samld asks again at {} (check this machine's clock and any proxy)",
                rfc3339(*at)
            ),
        ),
        WhyNot::BrowserOnly => needs_login(format!(
            "{name} signs in through a browser (login = \"browser\"); run: {command}"
        )),
    }
}

/// Said whenever a browser sign-in is asked for: the profile keeps the IdP's own session.
const BROWSER_MAY_REMEMBER: &str = " (the browser profile may still be signed in to the IdP, \
     in which case the browser finishes by itself with no typing)";

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn secs(s: i64) -> OffsetDateTime {
        NOW + time::Duration::seconds(s)
    }

    fn error(code: ErrorCode, message: &str) -> ErrorInfo {
        ErrorInfo {
            code,
            message: message.to_owned(),
            at: rfc3339(NOW),
        }
    }

    /// One row: the account and session, and what each asker gets.
    #[expect(
        clippy::struct_excessive_bools,
        reason = "a table row: each bool is one column of the gate's input"
    )]
    struct Row {
        what: &'static str,
        phase: Phase,
        last_error: Option<ErrorInfo>,
        flight_running: bool,
        signs_in_alone: bool,
        holds_credentials: bool,
        session: SessionPhase,
        login_running: bool,
        unattended_logins: Vec<OffsetDateTime>,
        /// What a helper without a terminal (or the scheduler) gets.
        unattended: Result<Pass, WhyNot>,
        /// What a helper on a terminal gets.
        terminal: Result<Pass, WhyNot>,
    }

    /// A signed-in account that can sign in alone, its session live.
    fn row(what: &'static str) -> Row {
        Row {
            what,
            phase: Phase::Active { refresh_at: None },
            last_error: None,
            flight_running: false,
            signs_in_alone: true,
            holds_credentials: true,
            session: SessionPhase::Live,
            login_running: false,
            unattended_logins: Vec::new(),
            unattended: Ok(Pass::Trip),
            terminal: Ok(Pass::Trip),
        }
    }

    fn refusal() -> SessionPhase {
        SessionPhase::NeedsPerson {
            reason: "the push was denied.".to_owned(),
        }
    }

    fn person_refused() -> WhyNot {
        WhyNot::PersonRefused {
            reason: "the push was denied.".to_owned(),
        }
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "a table: one row per case, read side by side"
    )]
    fn who_may_trip_as_a_table() {
        let keyring = error(ErrorCode::NeedsLogin, "the keyring is locked");
        let five_xx = error(ErrorCode::IdpError, "JumpCloud answered 503");
        let full_hour: Vec<_> = (0..6).map(|i| secs(-600 * i)).collect();
        let rows = vec![
            row("a live session: trip"),
            Row {
                phase: Phase::LoggedOut,
                unattended: Err(WhyNot::LoggedOut),
                terminal: Err(WhyNot::LoggedOut),
                ..row("logged out: only the person's login lifts it")
            },
            Row {
                phase: Phase::Refused,
                last_error: Some(five_xx.clone()),
                unattended: Err(WhyNot::Refused {
                    last: Some(five_xx.clone()),
                }),
                terminal: Err(WhyNot::Refused {
                    last: Some(five_xx.clone()),
                }),
                ..row("refused for good")
            },
            Row {
                session: refusal(),
                flight_running: true,
                ..row("a trip runs: join it")
            },
            Row {
                phase: Phase::Backoff {
                    attempts: 1,
                    retry_at: secs(30),
                },
                last_error: Some(five_xx.clone()),
                unattended: Err(WhyNot::BackingOff {
                    last: five_xx.clone(),
                    retry_at: secs(30),
                }),
                terminal: Err(WhyNot::BackingOff {
                    last: five_xx,
                    retry_at: secs(30),
                }),
                ..row("backing off from an outage")
            },
            Row {
                phase: Phase::Backoff {
                    attempts: 1,
                    retry_at: secs(30),
                },
                last_error: Some(keyring.clone()),
                unattended: Err(WhyNot::BackingOff {
                    last: keyring.clone(),
                    retry_at: secs(30),
                }),
                terminal: Ok(Pass::SignIn),
                ..row("the keyring could not be read: the person can type the password")
            },
            Row {
                phase: Phase::Backoff {
                    attempts: 1,
                    retry_at: secs(30),
                },
                last_error: Some(keyring.clone()),
                session: refusal(),
                unattended: Err(person_refused()),
                terminal: Err(person_refused()),
                ..row("a locked keyring after the person refused: the refusal stands")
            },
            Row {
                phase: Phase::Backoff {
                    attempts: 1,
                    retry_at: secs(-1),
                },
                ..row("a backoff that is over: trip")
            },
            Row {
                session: SessionPhase::ended(),
                login_running: true,
                ..row("another account signs the session in: wait for it")
            },
            Row {
                session: refusal(),
                unattended: Err(person_refused()),
                terminal: Err(person_refused()),
                ..row("the person refused: nothing, whoever asks")
            },
            Row {
                session: refusal(),
                phase: Phase::Idle,
                holds_credentials: false,
                signs_in_alone: false,
                unattended: Err(person_refused()),
                terminal: Err(person_refused()),
                ..row("the person refused, nothing held, nothing saved: still nothing")
            },
            Row {
                session: SessionPhase::ended(),
                ..row("ended, signs in alone: one unattended sign-in")
            },
            Row {
                session: SessionPhase::ended(),
                signs_in_alone: false,
                unattended: Err(WhyNot::SessionEnded),
                terminal: Ok(Pass::SignIn),
                ..row("ended, needs typing: the terminal asks")
            },
            Row {
                phase: Phase::Idle,
                session: SessionPhase::None,
                holds_credentials: false,
                signs_in_alone: false,
                unattended: Err(WhyNot::NeverSignedIn),
                terminal: Ok(Pass::SignIn),
                ..row("never signed in, needs typing")
            },
            Row {
                session: SessionPhase::ended(),
                unattended_logins: full_hour.clone(),
                unattended: Err(WhyNot::SignsInAgainAt {
                    why: None,
                    at: secs(-3000 + 3600),
                }),
                terminal: Ok(Pass::SignIn),
                ..row("six unattended sign-ins this hour: the next waits")
            },
            Row {
                phase: Phase::Idle,
                holds_credentials: false,
                session: SessionPhase::None,
                unattended_logins: full_hour,
                unattended: Err(WhyNot::SignsInAgainAt {
                    why: None,
                    at: secs(-3000 + 3600),
                }),
                terminal: Ok(Pass::SignIn),
                ..row("a forgotten session keeps the hourly cap")
            },
            Row {
                session: SessionPhase::Ended {
                    retry_at: Some(secs(60)),
                    attempts: 1,
                },
                unattended: Err(WhyNot::SignsInAgainAt {
                    why: None,
                    at: secs(60),
                }),
                terminal: Ok(Pass::SignIn),
                ..row("a sign-in that failed on the way backs off")
            },
        ];
        for row in rows {
            let account = AccountView {
                phase: row.phase,
                last_error: row.last_error.as_ref(),
                flight_running: row.flight_running,
                signs_in_alone: row.signs_in_alone,
                holds_credentials: row.holds_credentials,
            };
            let session = SessionView {
                phase: &row.session,
                login_running: row.login_running,
                signed_in_before: false,
                unattended_logins: &row.unattended_logins,
            };
            let gate = |asker| gate(&account, &session, asker, NOW);
            assert_eq!(gate(Asker::Unattended), row.unattended, "{}", row.what);
            assert_eq!(gate(Asker::TerminalHelper), row.terminal, "{}", row.what);
            // A person's login runs whatever stood.
            assert_eq!(gate(Asker::PersonLogin), Ok(Pass::SignIn), "{}", row.what);
        }
    }

    fn account() -> Account {
        let config = samld_config::parse(
            "[accounts.prod]\nurl = \"https://sso.jumpcloud.com/saml2/prod\"\n\
             username = \"alice@example.com\"\n",
            std::path::Path::new("/c.toml"),
        )
        .unwrap();
        config.accounts["prod"].clone()
    }

    #[test]
    fn every_why_not_that_waits_for_a_person_names_the_command() {
        let account = account();
        for why in [
            WhyNot::LoggedOut,
            WhyNot::NeverSignedIn,
            WhyNot::Refused { last: None },
            person_refused(),
            WhyNot::SessionEnded,
            WhyNot::SignsInAgainAt {
                why: None,
                at: secs(60),
            },
            WhyNot::BrowserOnly,
        ] {
            let e = explain(&account, &why);
            assert!(
                e.message.contains("samlctl login prod"),
                "{why:?}: {}",
                e.message
            );
            assert!(
                matches!(e.code, ErrorCode::NotLoggedIn | ErrorCode::NeedsLogin),
                "{why:?}: {:?}",
                e.code
            );
        }
        // A refusal says what was refused, and never that samld signs in by itself.
        let refused = explain(&account, &person_refused()).message;
        assert!(refused.contains("the push was denied."), "{refused}");
        assert!(!refused.contains("signs in again"), "{refused}");
    }

    #[test]
    fn only_a_wait_with_an_end_is_passing() {
        let at = WhyNot::SignsInAgainAt {
            why: None,
            at: secs(90),
        };
        assert_eq!(
            at.failure(NOW),
            Failure::Transient {
                retry_after: Some(std::time::Duration::from_secs(90))
            }
        );
        for why in [person_refused(), WhyNot::SessionEnded, WhyNot::LoggedOut] {
            assert_eq!(why.failure(NOW), Failure::NeedsPerson, "{why:?}");
        }
    }
}
