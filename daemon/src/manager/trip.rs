//! One trip to the IdP and STS: an assertion (from the held session, or a login), then
//! AssumeRoleWithSAML for each role due. Its outcome is typed, and [`Manager::run_trip`]
//! hands it to [`policy::decide`]; nothing here decides about retries.

use std::sync::Arc;

use samld_config::{Account, LoginMethod};
use samld_proto::{ErrorCode, ErrorInfo, LoginIntent, PasswordLogin, Secret, WireError};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::gate::{self, AccountView, Asker, Pass, SessionView, WhyNot, explain};
use super::policy::{self, Failure, LoginOutcome, Phase, SessionPhase, TripOutcome};
use super::secrets::{self, SavedPassword, SecretSources};
use super::state::{
    AccountData, AccountSlot, FlightResult, HeldCredentials, SessionData, SessionSlot, SessionTimes,
};
use super::{Manager, wait_flight};
use crate::clock::rfc3339;
use crate::idp::{IdpError, identity};
use crate::saml::{self, Assertion, RolePair};
use crate::sts::{AssumeRequest, AwsCredentials, StsError, StsTarget, choose_duration};

/// STS's default session length, which every role accepts; used after a role refused longer.
const SAFE_DURATION_SECS: u32 = 3600;

/// Roles due for refresh within this window ride along with a trip made for another role:
/// one assertion then serves them all.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// A failed trip: how the policy sees it, and what the person is told.
pub(super) struct TripError {
    pub(super) failure: Failure,
    pub(super) error: WireError,
}

impl TripError {
    fn idp(account: &Account, e: IdpError) -> Self {
        if account.login == LoginMethod::Browser
            && let IdpError::BrowserRequired { request, .. } = &e
        {
            // Expected for such an account: a policy that the IdP checks at every launch of
            // the app, which only the person, in the browser, passes.
            return Self {
                failure: Failure::SessionEnded,
                error: WireError::new(
                    ErrorCode::NeedsLogin,
                    format!(
                        "{name}: {idp} asked for the browser again when samld fetched the app \
                         headlessly ({request} answered a page only a browser passes, such as \
                         a device check); run: {command}",
                        name = account.name,
                        idp = account.idp_name(),
                        command = account.login_command(),
                    ),
                ),
            };
        }
        Self {
            failure: policy::classify_idp(&e),
            error: WireError::new(e.code(), format!("{}: {e}", account.name)),
        }
    }

    fn new(failure: Failure, error: WireError) -> Self {
        Self { failure, error }
    }
}

/// A login that ran.
struct LoginAttempt {
    result: Result<Secret, IdpError>,
    /// It sent a password, a push or a code.
    reached_person: bool,
    /// Its password came from the keyring.
    from_keyring: bool,
}

/// The person at the other end of a login, if any: what they asked for, and where its
/// secrets come from.
pub(super) type Person<'a, 'b> = Option<&'a mut SecretSources<'b>>;

impl Manager {
    /// One trip, and what it means for the account's state. Returns whether the IdP session
    /// was reused. A trip that a logout overtook stores nothing and changes no state.
    pub(super) async fn run_trip(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        extra_role: Option<String>,
        person: Person<'_, '_>,
        renew_all: bool,
    ) -> Result<bool, WireError> {
        let attended = person.is_some();
        let (generation, prev) = {
            let data = slot.data();
            (data.generation, data.phase)
        };
        let result = self
            .trip(slot, generation, extra_role, person, renew_all)
            .await;
        let now = self.clock.now();
        let mut data = slot.data();
        if data.generation != generation {
            tracing::info!(account = %slot.account.name, "logged out during the trip; its result is discarded");
            return Err(super::not_logged_in(&slot.account));
        }
        if prev == Phase::LoggedOut && result.is_err() {
            // Only a person's login runs for a logged-out account, and only one that
            // succeeds lifts the logout: this one leaves the account as the logout left it,
            // even if STS answered for some of its roles.
            data.creds.clear();
            data.roles.clear();
            data.wanted.clear();
            return result.map_err(|e| e.error);
        }
        let failure = result.as_ref().err().map(|e| e.failure.clone());
        if attended && matches!(failure, Some(Failure::NeedsPerson | Failure::SessionEnded)) {
            // What the person typed (or could not type) is shown to them where they typed
            // it; it is not the account's state. Credentials still held keep their schedule.
            if data.phase == Phase::Idle
                && let Some(at) = data.next_refresh()
            {
                data.phase = Phase::Active {
                    refresh_at: Some(at.max(policy::add(now, policy::REFRESH_FLOOR))),
                };
            }
            drop(data);
            self.schedule_changed.notify_one();
            return result.map_err(|e| e.error);
        }
        let outcome = TripOutcome {
            failure,
            next_refresh: data.next_refresh(),
            attended,
        };
        let next = policy::decide(prev, &outcome, now);
        match &result {
            Ok(_) => data.last_error = None,
            Err(e) => {
                tracing::warn!(account = %slot.account.name, code = %e.error.code, error = %e.error.message, ?next, "trip failed");
                data.last_error = Some(ErrorInfo {
                    code: e.error.code,
                    message: e.error.message.clone(),
                    at: rfc3339(now),
                });
            }
        }
        let announce = next == Phase::AwaitingSession
            && prev != Phase::AwaitingSession
            && !matches!(slot.session.data().phase, SessionPhase::NeedsPerson { .. })
            && result.is_err();
        data.phase = next;
        // What the helpers now answer is what the notification says (this trip is still
        // the account's flight, which they would join).
        let why = announce
            .then(|| {
                let view = self.account_view(&slot.account, &data, false);
                let session = slot.session.data();
                gate::gate(&view, &SessionView::of(&session), Asker::Unattended, now).err()
            })
            .flatten();
        drop(data);
        if let Some(why) = why {
            self.announce_needs_login(&slot.account, &why);
        }
        self.schedule_changed.notify_one();
        result.map_err(|e| e.error)
    }

    async fn trip(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        generation: u64,
        extra_role: Option<String>,
        mut person: Person<'_, '_>,
        renew_all: bool,
    ) -> Result<bool, TripError> {
        let account = &slot.account;
        let attended = person.is_some();
        let (saml_response, reused) = self.assertion(slot, &mut person).await?;
        let assertion = parse_assertion(slot, &saml_response)?;
        let now = self.clock.now();
        let targets = {
            let mut data = slot.data();
            if data.generation != generation {
                return Err(TripError::new(
                    Failure::NeedsPerson,
                    super::not_logged_in(account),
                ));
            }
            data.roles = assertion.roles.clone();
            if attended {
                // The person signed in: roles STS refused are asked again. A sign-in that
                // failed never got here, and left the refusals as they were.
                data.refused.clear();
            }
            let renew_before = (!renew_all).then(|| policy::add(now, BATCH_WINDOW));
            choose_targets(
                account,
                &mut data,
                &assertion,
                extra_role.as_deref(),
                renew_before,
            )
        };
        let sts_target = StsTarget {
            region: account.region.clone(),
            endpoint: account.sts_endpoint.clone(),
        };
        let mut saml_response = saml_response;
        let mut assertion = assertion;
        let mut refetched = false;
        let mut first_failure: Option<TripError> = None;
        for pair in targets {
            // One retry per role per refresh, whichever STS asks for first (the README's
            // table: at most 2 AssumeRoleWithSAML per role per refresh).
            let mut retry_left = true;
            let result = loop {
                match self
                    .assume(
                        slot,
                        &sts_target,
                        &pair,
                        &saml_response,
                        &assertion,
                        &mut retry_left,
                    )
                    .await
                {
                    Err(e) if e.is_expired_assertion() && !refetched => {
                        // The assertion aged past STS's 5 minutes (slow MFA, many roles):
                        // the session is fresh, so a new one costs no user action. The roles
                        // after this one need it too, even when this role has had its retry.
                        refetched = true;
                        saml_response = slot
                            .idp
                            .assertion_from_session()
                            .await
                            .map_err(|e| TripError::idp(account, e))?;
                        assertion = parse_assertion(slot, &saml_response)?;
                        if !retry_left {
                            break Err(e);
                        }
                        retry_left = false;
                    }
                    other => break other,
                }
            };
            let now = self.clock.now();
            let mut data = slot.data();
            if data.generation != generation {
                return Err(TripError::new(
                    Failure::NeedsPerson,
                    super::not_logged_in(account),
                ));
            }
            if let Err(e) = record_assume(account, &mut data, &pair, result, now) {
                let transient = matches!(e.failure, Failure::Transient { .. });
                first_failure.get_or_insert(e);
                if transient {
                    // STS is in trouble: the other roles would only add to it.
                    break;
                }
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(reused),
        }
    }

    /// An assertion for the account's app: from the held IdP session when it lives, else by
    /// a login (the person's, or one unattended login when the policy allows).
    async fn assertion(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        person: &mut Person<'_, '_>,
    ) -> Result<(Secret, bool), TripError> {
        let account = &slot.account;
        let force = person
            .as_ref()
            .is_some_and(|sources| sources.intent.skips_held_session());
        not_overtaken_by_logout(slot, asker_of(person))?;
        if !force {
            // Another account of this user may be signing in right now: its session is ours.
            let running = slot.session.data().login.clone();
            if let Some(rx) = running {
                let _ = wait_flight(rx, account.login_wait, &account.name).await;
                not_overtaken_by_logout(slot, asker_of(person))?;
            }
            let needs_person =
                matches!(slot.session.data().phase, SessionPhase::NeedsPerson { .. });
            if person.is_some() || !needs_person {
                match slot.idp.assertion_from_session().await {
                    Ok(a) => {
                        self.session_alive(&slot.session, asker_of(person));
                        return Ok((a, true));
                    }
                    Err(IdpError::SessionExpired) => self.session_ended(&slot.session),
                    Err(e) => return Err(TripError::idp(account, e)),
                }
            }
        }
        self.session_login(slot, person).await.map(|a| (a, false))
    }

    fn session_alive(&self, session: &SessionSlot, asker: Asker) {
        let now = self.clock.now();
        let mut data = session.data();
        // A probe that started before the person refused a new sign-in may still find the
        // old session alive: it serves this trip, but the refusal stands for the next
        // sign-in, which only the person's login may start. The person's own login that
        // finds it alive answers the refusal.
        if asker == Asker::PersonLogin || !matches!(data.phase, SessionPhase::NeedsPerson { .. }) {
            data.phase = SessionPhase::Live;
        }
        match data.times.as_mut() {
            Some(t) => t.last_verified_at = now,
            // A session we did not see start (e.g. another account's before a restart).
            None => {
                data.times = Some(SessionTimes {
                    established_at: now,
                    last_verified_at: now,
                })
            }
        }
    }

    fn session_ended(&self, session: &SessionSlot) {
        let mut data = session.data();
        if data.phase == SessionPhase::Live {
            tracing::info!(session = %session.key, "the IdP session has ended");
            data.phase = SessionPhase::ended();
        }
        data.times = None;
    }

    /// Makes this trip the session's one login, or waits for the login running and takes the
    /// session it made. A session that another account's trip signed in meanwhile is used
    /// as it is.
    async fn lead_or_join_login(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        asker: Asker,
    ) -> Result<SessionLogin, TripError> {
        let account = &slot.account;
        let session = &slot.session;
        loop {
            let now = self.clock.now();
            // Lock order: an account before its session, never the other way round.
            let (phase, last_error, signs_in_alone, holds_credentials) = {
                let data = slot.data();
                let alone = self.can_login_unattended(account, &data);
                (
                    data.phase,
                    data.last_error.clone(),
                    alone,
                    !data.creds.is_empty(),
                )
            };
            let view = AccountView {
                phase,
                last_error: last_error.as_ref(),
                // This is the account's flight.
                flight_running: false,
                signs_in_alone,
                holds_credentials,
            };
            let waiting = {
                let mut data = session.data();
                match &data.login {
                    Some(rx) => Some(rx.clone()),
                    // Signed in meanwhile by another account's trip: use it.
                    None if data.phase == SessionPhase::Live && asker != Asker::PersonLogin => None,
                    None => {
                        // Asked again under the session's lock: a refusal that landed since
                        // the request passed the gate stops this sign-in too.
                        may_sign_in(account, &view, &mut data, asker, now)?;
                        let (tx, rx) = watch::channel(None);
                        data.login = Some(rx);
                        let guard = SessionLoginGuard {
                            session: session.clone(),
                        };
                        return Ok(SessionLogin::Leading {
                            tx,
                            guard,
                            generation: data.generation,
                        });
                    }
                }
            };
            if let Some(waiting) = waiting {
                let _ = wait_flight(waiting, account.login_wait, &account.name).await;
                not_overtaken_by_logout(slot, asker)?;
            }
            match slot.idp.assertion_from_session().await {
                Ok(a) => {
                    self.session_alive(session, asker);
                    return Ok(SessionLogin::Joined(a));
                }
                Err(IdpError::SessionExpired) => self.session_ended(session),
                Err(e) => return Err(TripError::idp(account, e)),
            }
        }
    }

    /// Signs the account's IdP session in: with the person's secrets, or unattended when the
    /// session's policy allows it. At most one login per session runs; a trip that finds one
    /// running waits for it and then uses the session it made.
    async fn session_login(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
        person: &mut Person<'_, '_>,
    ) -> Result<Secret, TripError> {
        let account = &slot.account;
        let session = &slot.session;
        refuse_login_not_asked_for(account, person.as_deref())?;
        let asker = asker_of(person);
        let (tx, _guard, generation) = match self.lead_or_join_login(slot, asker).await? {
            SessionLogin::Joined(saml_response) => return Ok(saml_response),
            SessionLogin::Leading {
                tx,
                guard,
                generation,
            } => (tx, guard, generation),
        };
        let unattended = person.is_none();
        if unattended {
            tracing::info!(account = %account.name, session = %session.key, "IdP session ended; signing in again unattended");
        }
        let attempt = match person.as_mut() {
            Some(sources) => LoginAttempt {
                result: slot.idp.login(&mut **sources).await,
                reached_person: sources.reached_person,
                from_keyring: false,
            },
            None => match self.unattended_login(slot).await {
                Ok(attempt) => attempt,
                Err(missing) => {
                    // Nothing was sent and the session is as it was: the account simply
                    // cannot sign in by itself (and now knows it).
                    let _ = tx.send(Some(Err(missing.error.clone())));
                    return Err(missing);
                }
            },
        };
        let LoginAttempt {
            result,
            reached_person,
            from_keyring,
        } = attempt;
        // A sign-in as someone else (a browser signed in as another person) is no sign-in of
        // this session: it fails here, before it can mark the session live and so lift a
        // refusal or start unattended sign-ins for the accounts that share it.
        let result = result.and_then(|saml_response| match someone_else(slot, &saml_response) {
            Some(mismatch) => Err(mismatch),
            None => Ok(saml_response),
        });
        if let Err(IdpError::AuthFailed { .. }) = &result
            && from_keyring
            && let Some(store) = self.options.password_store.as_ref()
        {
            secrets::forget_refused_password(store, account).await;
            slot.data().saved_password = Some(false);
        }
        let now = self.clock.now();
        let went_needs_person = settle_session_after_login(
            session,
            generation,
            &result,
            LoginReach {
                unattended,
                reached_person,
            },
            now,
        );
        let _ = tx.send(Some(result.as_ref().map(|_| ()).map_err(|e| {
            WireError::new(e.code(), format!("{}: {e}", account.name))
        })));
        if result.is_ok() {
            self.wake_awaiting(session, now);
        }
        if let Some(reason) = went_needs_person {
            let why = WhyNot::PersonRefused { reason };
            for other in self.slots_of(session) {
                if other.data().phase != Phase::LoggedOut {
                    self.announce_needs_login(&other.account, &why);
                }
            }
        }
        result.map_err(|e| match policy::classify_idp(&e) {
            // An unattended login that reached the person failed: whatever its kind, the
            // need is spent and only a person can go on.
            Failure::Transient { .. } if unattended && reached_person => TripError {
                failure: Failure::NeedsPerson,
                error: WireError::new(e.code(), format!("{}: {e}", account.name)),
            },
            _ => TripError::idp(account, e),
        })
    }

    /// A login with nobody at the keyboard: the password from `password_command` or the
    /// keyring, the second factor by push or `mfa_command`. Returns the result, whether it
    /// reached the person, and whether the password came from the keyring.
    async fn unattended_login(&self, slot: &AccountSlot) -> Result<LoginAttempt, TripError> {
        let account = &slot.account;
        let mut given = PasswordLogin::default();
        let mut from_keyring = false;
        if account.password_command.is_none() {
            let missing = || {
                let never = slot.data().creds.is_empty() && slot.session.data().times.is_none();
                let why = if never {
                    WhyNot::NeverSignedIn
                } else {
                    WhyNot::SessionEnded
                };
                TripError::new(Failure::NeedsPerson, explain(account, &why))
            };
            let Some(store) = self.options.password_store.as_ref() else {
                return Err(missing());
            };
            match secrets::saved_password(store, account).await {
                SavedPassword::Found(p) => {
                    slot.data().saved_password = Some(true);
                    given.password = Some(p);
                    from_keyring = true;
                }
                SavedPassword::None => {
                    slot.data().saved_password = Some(false);
                    return Err(missing());
                }
                SavedPassword::Unavailable(e) => {
                    // Locked, or not on D-Bus yet at boot: ask again later, never take it
                    // for "no saved password". Nothing was sent to the IdP.
                    let never = slot.data().creds.is_empty() && slot.session.data().times.is_none();
                    if never {
                        // Never signed in here: the person must log in anyway; the keyring
                        // is asked again at the next request.
                        return Err(TripError::new(
                            Failure::NeedsPerson,
                            super::not_logged_in(account),
                        ));
                    }
                    let (code, state) = (ErrorCode::NeedsLogin, "needs a new JumpCloud sign-in");
                    return Err(TripError::new(
                        Failure::Transient { retry_after: None },
                        WireError::new(
                            code,
                            format!(
                                "{name} {state}, and the saved password could not be read: {e} (samld asks the keyring again later; or run: {command})",
                                name = account.name,
                                command = account.login_command(),
                            ),
                        ),
                    ));
                }
            }
        }
        let mut sources = SecretSources::new(
            account,
            LoginIntent::Password(given),
            None,
            self.options.command_timeout,
            None,
        );
        let result = slot.idp.login(&mut sources).await;
        Ok(LoginAttempt {
            result,
            reached_person: sources.reached_person,
            from_keyring,
        })
    }

    /// The session is live again: every account that was waiting for it refreshes now.
    fn wake_awaiting(&self, session: &Arc<SessionSlot>, now: OffsetDateTime) {
        for slot in self.slots_of(session) {
            let mut data = slot.data();
            if data.phase == Phase::AwaitingSession {
                data.phase = Phase::Active {
                    refresh_at: Some(now),
                };
            }
        }
        self.schedule_changed.notify_one();
    }

    /// AssumeRoleWithSAML for one role, asking again with a shorter duration when the role
    /// refuses the one asked for and `retry_left` (which that spends) allows.
    async fn assume(
        &self,
        slot: &Arc<AccountSlot>,
        target: &StsTarget,
        pair: &RolePair,
        saml_response: &Secret,
        assertion: &Assertion,
        retry_left: &mut bool,
    ) -> Result<AwsCredentials, StsError> {
        let learnt = slot
            .data()
            .max_duration
            .get(pair.role_arn.as_str())
            .copied();
        let duration = choose_duration(
            slot.account.session_duration.as_secs(),
            assertion.session_duration,
            learnt,
        );
        let mut request = AssumeRequest {
            role_arn: pair.role_arn.to_string(),
            principal_arn: pair.principal_arn.clone(),
            saml_assertion: saml_response.clone(),
            duration_seconds: duration,
        };
        match self.sts.assume_role_with_saml(target, &request).await {
            Err(e) if e.is_duration_too_long() && duration > SAFE_DURATION_SECS => {
                tracing::warn!(
                    role = %pair.role_arn,
                    asked = duration,
                    "role refuses this session length; using 1h from now on"
                );
                // Learnt even when the retry is spent: the next refresh asks for less.
                slot.data()
                    .max_duration
                    .insert(pair.role_arn.to_string(), SAFE_DURATION_SECS);
                if !std::mem::take(retry_left) {
                    return Err(e);
                }
                request.duration_seconds = SAFE_DURATION_SECS;
                self.sts.assume_role_with_saml(target, &request).await
            }
            other => other,
        }
    }
}

/// Who is behind a trip's sign-in: its person's asker, or nobody.
fn asker_of(person: &Person<'_, '_>) -> Asker {
    person
        .as_ref()
        .map_or(Asker::Unattended, |sources| sources.asker)
}

/// Stops an unattended trip that a logout overtook before it reached the IdP (at its start,
/// or while it waited for another account's sign-in): nothing is sent for an account a
/// person left.
fn not_overtaken_by_logout(slot: &AccountSlot, asker: Asker) -> Result<(), TripError> {
    if asker == Asker::Unattended && slot.data().phase == Phase::LoggedOut {
        return Err(TripError::new(
            Failure::NeedsPerson,
            super::not_logged_in(&slot.account),
        ));
    }
    Ok(())
}

/// Whether `asker` may start a sign-in of `session` (under its lock) for this account, by
/// the one gate; an unattended one is counted for the hourly cap.
fn may_sign_in(
    account: &Account,
    view: &AccountView<'_>,
    session: &mut SessionData,
    asker: Asker,
    now: OffsetDateTime,
) -> Result<(), TripError> {
    match gate::gate(view, &SessionView::of(session), asker, now) {
        Err(why) => Err(TripError::new(why.failure(now), explain(account, &why))),
        Ok(Pass::Trip) if asker == Asker::Unattended => {
            session
                .unattended_logins
                .retain(|&t| t > now - time::Duration::HOUR);
            session.unattended_logins.push(now);
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// Refuses a person's login that would do what they did not ask for: a login when they
/// asked only to reuse a live session, or a headless one for an account that signs in only
/// in a browser.
fn refuse_login_not_asked_for(
    account: &Account,
    person: Option<&SecretSources<'_>>,
) -> Result<(), TripError> {
    if let Some(sources) = person
        && sources.intent == LoginIntent::ReuseOnly
    {
        return Err(TripError::new(
            Failure::NeedsPerson,
            WireError::new(
                ErrorCode::NeedsLogin,
                format!(
                    "no live {} session to reuse for {}",
                    account.idp_name(),
                    account.name
                ),
            ),
        ));
    }
    if let Some(sources) = person
        && account.login == LoginMethod::Browser
        && !matches!(sources.intent, LoginIntent::Browser { .. })
    {
        return Err(TripError::new(
            Failure::NeedsPerson,
            explain(account, &WhyNot::BrowserOnly),
        ));
    }
    Ok(())
}

/// How a trip comes to the session's login: it found a session signed in, or it is the one
/// login, which its watchers wait on until the guard drops.
enum SessionLogin {
    Joined(Secret),
    Leading {
        tx: watch::Sender<Option<FlightResult>>,
        guard: SessionLoginGuard,
        generation: u64,
    },
}

/// Who a login reached: whether a person was there to ask it, and whether it sent them
/// anything (a password, a push, a code).
#[derive(Clone, Copy)]
struct LoginReach {
    unattended: bool,
    reached_person: bool,
}

/// The session's phase after a login this trip led. Returns the reason when an unattended
/// login has just left the session needing the person, for the accounts to announce.
fn settle_session_after_login(
    session: &SessionSlot,
    generation: u64,
    result: &Result<Secret, IdpError>,
    reach: LoginReach,
    now: OffsetDateTime,
) -> Option<String> {
    let LoginReach {
        unattended,
        reached_person,
    } = reach;
    let mut went_needs_person = None;
    let mut data = session.data();
    let current = data.generation == generation;
    // A logout forgot the session while this login ran. What the login brings back
    // is discarded, but not the person's answer: a push they let expire or denied
    // still blocks the helpers of the accounts that share the session.
    let refusal_outlives_logout = !current && reached_person && data.phase == SessionPhase::None;
    if current || refusal_outlives_logout {
        match result {
            Ok(_) if !current => {}
            Ok(_) => {
                data.phase = SessionPhase::Live;
                data.times = Some(SessionTimes {
                    established_at: now,
                    last_verified_at: now,
                });
            }
            Err(e) if unattended => {
                let outcome = LoginOutcome {
                    reached_person,
                    failure: Some((policy::classify_idp(e), e.to_string())),
                };
                let was = data.phase.clone();
                data.phase = policy::after_login(&data.phase, &outcome, now);
                if let SessionPhase::NeedsPerson { reason } = &data.phase
                    && !matches!(was, SessionPhase::NeedsPerson { .. })
                {
                    went_needs_person = Some(reason.clone());
                }
            }
            // The person refused at their own login (a push denied, a password or
            // code rejected): that stands for every path until they log in again.
            Err(e) if reached_person && policy::classify_idp(e) == Failure::NeedsPerson => {
                data.phase = SessionPhase::NeedsPerson {
                    reason: e.to_string(),
                };
            }
            // What the person typed (or could not type) is shown to them; the
            // session stays as it was.
            Err(_) => {}
        }
    }
    went_needs_person
}

/// Clears a session's login marker however the login ends.
struct SessionLoginGuard {
    session: Arc<SessionSlot>,
}

impl Drop for SessionLoginGuard {
    fn drop(&mut self) {
        self.session.data().login = None;
    }
}

/// The identity mismatch, when a sign-in's assertion names someone other than the
/// session's identity (an unreadable assertion is left to [`parse_assertion`] to report).
fn someone_else(slot: &AccountSlot, saml_response: &Secret) -> Option<IdpError> {
    let assertion = saml::parse_saml_response(saml_response.expose()).ok()?;
    identity::check_hand_out(&slot.account, &slot.idp.identities(), &assertion)
        .err()
        .map(IdpError::IdentityMismatch)
}

/// The assertion a trip hands on to STS: readable, and for the held session's identity
/// (whatever path it came by: a browser's, a login's, a refresh's).
fn parse_assertion(slot: &AccountSlot, saml_response: &Secret) -> Result<Assertion, TripError> {
    let account = &slot.account;
    let assertion = saml::parse_saml_response(saml_response.expose()).map_err(|e| {
        TripError::new(
            Failure::Refused,
            WireError::new(
                ErrorCode::SamlError,
                format!("the SAML assertion for {} is unusable: {e}", account.name),
            ),
        )
    })?;
    identity::check_hand_out(account, &slot.idp.identities(), &assertion)
        .map_err(|e| TripError::idp(account, IdpError::IdentityMismatch(e)))?;
    Ok(assertion)
}

/// Keeps what STS answered for one role: the credentials, or a refusal that holds until a
/// person acts. A failure comes back for the trip to report.
fn record_assume(
    account: &Account,
    data: &mut AccountData,
    pair: &RolePair,
    result: Result<AwsCredentials, StsError>,
    now: OffsetDateTime,
) -> Result<(), TripError> {
    let e = match result {
        Ok(creds) => {
            store(account, data, pair, creds, now);
            return Ok(());
        }
        Err(e) => e,
    };
    let failure = policy::classify_sts(&e);
    let error = WireError::new(
        ErrorCode::StsError,
        format!(
            "AssumeRoleWithSAML for {} ({}) failed: {e}",
            pair.role_arn, account.name
        ),
    );
    if failure == Failure::Refused {
        // Not asked again until a person acts; other roles go on.
        data.refused.insert(
            pair.role_arn.to_string(),
            ErrorInfo {
                code: error.code,
                message: error.message.clone(),
                at: rfc3339(now),
            },
        );
        data.wanted.remove(pair.role_arn.as_str());
    }
    Err(TripError::new(failure, error))
}

/// Keeps new credentials, with their refresh deadline floored and jittered.
fn store(
    account: &Account,
    data: &mut AccountData,
    pair: &RolePair,
    creds: AwsCredentials,
    now: OffsetDateTime,
) {
    let life = creds.expiration - now;
    let jitter = refresh_jitter(life);
    let refresh_at = policy::floored_refresh(now, creds.expiration, account.refresh_before, jitter);
    let short_lived = policy::short_lived(now, creds.expiration, account.refresh_before);
    if short_lived {
        tracing::warn!(
            account = %account.name,
            role = %pair.role_arn,
            life_secs = life.whole_seconds(),
            "credentials arrived with less life than refresh_before"
        );
    }
    tracing::info!(
        account = %account.name,
        role = %pair.role_arn,
        expires = %rfc3339(creds.expiration),
        refresh = %rfc3339(refresh_at),
        "credentials obtained"
    );
    data.refused.remove(pair.role_arn.as_str());
    // A role obtained is a role in use: it is kept fresh from now on.
    data.wanted.insert(pair.role_arn.to_string());
    data.creds.insert(
        pair.role_arn.to_string(),
        HeldCredentials {
            creds,
            obtained_at: now,
            refresh_at,
            short_lived,
        },
    );
}

/// A little earlier than the deadline, at random, so that roles and accounts obtained
/// together do not all hit JumpCloud in the same second forever after.
fn refresh_jitter(life: time::Duration) -> time::Duration {
    if !life.is_positive() {
        return time::Duration::ZERO;
    }
    let most: time::Duration = (life / 50_i32).min(time::Duration::seconds(30));
    most * fastrand::f64()
}

/// Which roles a trip assumes: those in use, the default, and the one just asked for; with
/// `renew_before`, only those without credentials or due for refresh by then. Roles STS
/// refused for good are left out until a person acts.
fn choose_targets(
    account: &Account,
    data: &mut AccountData,
    assertion: &Assertion,
    extra: Option<&str>,
    renew_before: Option<OffsetDateTime>,
) -> Vec<RolePair> {
    let mut targets: Vec<RolePair> = Vec::new();
    let creds = &data.creds;
    let refused = &data.refused;
    let mut add = |pair: &RolePair| {
        let due = match (renew_before, creds.get(pair.role_arn.as_str())) {
            (Some(by), Some(held)) => held.refresh_at <= by,
            _ => true,
        };
        if due
            && !refused.contains_key(pair.role_arn.as_str())
            && !targets.iter().any(|t| t.role_arn == pair.role_arn)
        {
            targets.push(pair.clone());
        }
    };
    if let Ok(pair) = saml::default_role(&assertion.roles, account.role.as_deref()) {
        add(pair);
    }
    if let Some(Ok(pair)) = extra.map(|r| saml::select_role(&assertion.roles, r)) {
        add(pair);
    }
    let mut gone = Vec::new();
    for arn in &data.wanted {
        match assertion.roles.iter().find(|p| &p.role_arn == arn) {
            Some(pair) => add(pair),
            None => gone.push(arn.clone()),
        }
    }
    for arn in gone {
        tracing::warn!(account = %account.name, role = %arn, "role no longer in the assertion");
        data.wanted.remove(&arn);
        data.creds.remove(&arn);
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_jitter_spreads_deadlines_by_at_most_a_fiftieth_of_the_life() {
        // fastrand's generator is per thread: seeded here, the draws below are fixed.
        fastrand::seed(7);
        let hour = time::Duration::HOUR;
        let draws: Vec<_> = (0..100).map(|_| refresh_jitter(hour)).collect();
        let cap = time::Duration::seconds(30);
        assert!(
            draws.iter().all(|j| !j.is_negative() && *j <= cap),
            "{draws:?}"
        );
        // Spread over the whole range, not a constant.
        assert!(draws.iter().any(|j| *j > cap / 2), "{draws:?}");
        assert!(draws.iter().any(|j| *j < cap / 2), "{draws:?}");
        // A 100 s life moves its deadline by 2 s at most; a dead one not at all.
        let short = time::Duration::seconds(100);
        assert!((0..100).all(|_| refresh_jitter(short) <= time::Duration::seconds(2)));
        assert_eq!(refresh_jitter(-hour), time::Duration::ZERO);
    }
}
