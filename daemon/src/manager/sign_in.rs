//! What a person starts and ends: `samlctl login`, `logout` and `refresh`.

use std::sync::Arc;
use std::time::Duration;

use samld_proto::{
    AuditKind, ErrorCode, LoginIntent, LoginOutcome, LogoutOutcome, RoleStatus, WireError,
};
use tokio::sync::watch;

use super::gate::Asker;
use super::policy::{Phase, SessionPhase};
use super::secrets::SecretSources;
use super::state::{AccountData, AccountSlot, FlightKind, FlightResult, SessionSlot};
use super::{ClientChannel, FlightGuard, Manager, not_logged_in, status, wait_flight};
use crate::audit::Record;

impl Manager {
    /// `samlctl logout`: forgets every credential of the account and keeps it logged out
    /// until a person logs in again; a flight still running stores nothing. The shared IdP
    /// session is signed out too once no account of that user is still logged in. Without
    /// an account, every account is logged out and every IdP session signed out.
    pub fn logout(&self, account: Option<&str>) -> Result<LogoutOutcome, WireError> {
        let slots: Vec<Arc<AccountSlot>> = match account {
            Some(name) => vec![self.slot(name)?],
            None => self.all_slots(),
        };
        for slot in &slots {
            self.log_out_account(slot);
        }
        let sessions: Vec<Arc<SessionSlot>> = match account {
            // Whatever the config says: a session is never left behind to sign the next
            // account of that user in with no password.
            None => self.lock_sessions().values().cloned().collect(),
            Some(_) => slots
                .iter()
                .map(|slot| slot.session.clone())
                .filter(|session| !self.session_in_use(session))
                .collect(),
        };
        let signed_out = sessions.iter().filter(|s| self.sign_out(s)).count();
        self.schedule_changed.notify_one();
        Ok(LogoutOutcome {
            accounts: slots.iter().map(|s| s.account.name.clone()).collect(),
            idp_sessions: u32::try_from(signed_out).unwrap_or(u32::MAX),
        })
    }

    fn log_out_account(&self, slot: &AccountSlot) {
        let mut data = slot.data();
        let flight = data.flight.take();
        let generation = data.generation.wrapping_add(1);
        *data = AccountData {
            phase: Phase::LoggedOut,
            generation,
            max_duration: std::mem::take(&mut data.max_duration),
            saved_password: data.saved_password,
            // Still the account's trip: a config change that replaces the account must
            // be able to abort it, or it runs beside the new account's own.
            trip_task: data.trip_task.take(),
            ..AccountData::default()
        };
        // A flight still running finds the generation moved when it finishes.
        data.flight = flight;
        tracing::info!(account = %slot.account.name, "logged out");
        self.audit
            .record(Record::new(AuditKind::Logout, Some(&slot.account.name)));
    }

    /// Whether an account still uses the IdP session: an account never logged in (idle)
    /// does not keep it alive, or logging out of the only account in use would leave a
    /// session that signs the next `samlctl login` in unasked.
    fn session_in_use(&self, session: &Arc<SessionSlot>) -> bool {
        self.slots_of(session).iter().any(|other| {
            let data = other.data();
            data.phase != Phase::LoggedOut
                && (data.phase != Phase::Idle || !data.creds.is_empty() || data.flight.is_some())
        })
    }

    /// Signs an IdP session out (its cookies too) and says whether it held a sign-in.
    pub(super) fn sign_out(&self, session: &Arc<SessionSlot>) -> bool {
        session.idp.forget();
        let mut data = session.data();
        let held = data.phase == SessionPhase::Live || data.times.is_some();
        // A refusal waits for the person's login whatever else happens: signing out is no
        // answer to it.
        data.forget(true);
        tracing::info!(session = %session.key, "IdP session signed out");
        held
    }

    /// `samlctl refresh`: fresh credentials for every role in use, now. A person asked, so
    /// refusals and backoffs are set aside for this one trip.
    pub async fn refresh(self: &Arc<Self>, account: &str) -> Result<Vec<RoleStatus>, WireError> {
        let slot = self.slot(account)?;
        {
            let data = slot.data();
            let never = data.phase == Phase::Idle
                && data.creds.is_empty()
                && slot.session.data().phase != SessionPhase::Live;
            if data.phase == Phase::LoggedOut || never {
                return Err(not_logged_in(&slot.account));
            }
        }
        self.refresh_asked(&slot);
        // A refresh already running may have started before the user asked; wait for it and
        // then run one of our own so the answer is really fresh.
        let running = slot.data().flight.as_ref().map(|(_, rx)| rx.clone());
        if let Some(rx) = running {
            let _ = wait_flight(rx, slot.account.login_wait, &slot.account.name).await;
        }
        let rx = self.start_trip(&slot, None, true);
        let outcome = wait_flight(rx, slot.account.login_wait, &slot.account.name).await;
        self.audit
            .record(Record::new(AuditKind::Refresh, Some(&slot.account.name)).outcome(&outcome));
        outcome?;
        let now = self.clock.now();
        let data = slot.data();
        Ok(status::role_statuses(
            &slot.account,
            &data,
            &self.audit,
            now,
        ))
    }

    /// `samlctl login`: what `intent` asks, at once, whatever backoff or refusal stood: reuse
    /// the IdP session, adopt a browser's sign-in, or sign in with a password and MFA
    /// obtained through `channel` (reusing a live session unless the intent skips it). Only
    /// a login that succeeds lifts a logout, refusals or a backoff.
    pub async fn login(
        self: &Arc<Self>,
        account: &str,
        intent: LoginIntent,
        channel: Option<&mut dyn ClientChannel>,
    ) -> Result<LoginOutcome, WireError> {
        self.login_as(account, intent, channel, Asker::PersonLogin)
            .await
    }

    /// [`Manager::login`] for `asker`: a person's, or a helper's on a terminal, which may ask
    /// for a password or code but lifts no refusal (the gate is asked again right before it
    /// signs in).
    pub(super) async fn login_as(
        self: &Arc<Self>,
        account: &str,
        intent: LoginIntent,
        channel: Option<&mut dyn ClientChannel>,
        asker: Asker,
    ) -> Result<LoginOutcome, WireError> {
        let slot = self.slot(account)?;
        let (tx, guard) = self.become_login_flight(&slot).await?;
        // Nothing is lifted before the trip: a login that fails leaves the account's logout,
        // refusals and backoff as they were (the trip sets them aside for itself).
        // A new password is being saved: do not read the old one back.
        let passwords = (!intent.saves_password())
            .then(|| self.options.password_store.as_ref().cloned())
            .flatten();
        let reuse_only = intent == LoginIntent::ReuseOnly;
        let mut sources = SecretSources::new(
            &slot.account,
            intent,
            channel,
            self.options.command_timeout,
            passwords,
        );
        sources.asker = asker;
        let result = self.run_trip(&slot, None, Some(&mut sources), true).await;
        drop(guard);
        let _ = tx.send(Some(result.as_ref().map(|_| ()).map_err(Clone::clone)));
        // samlctl asks to reuse the session before it opens a browser: "none to reuse" is
        // the answer to that question, not a failed login, and the browser login follows.
        let nothing_to_reuse =
            reuse_only && matches!(&result, Err(e) if e.code == ErrorCode::NeedsLogin);
        if !nothing_to_reuse {
            self.audit
                .record(Record::new(AuditKind::Login, Some(&slot.account.name)).outcome(&result));
        }
        let reused = result?;
        if let Some(password) = sources.to_save.take() {
            let message = self.save_password(&slot, password).await;
            sources.tell(&message).await;
        }
        let data = slot.data();
        Ok(LoginOutcome {
            account: slot.account.name.clone(),
            // A `provider = "saml"` account has no username: it is whom it signed in as.
            username: slot
                .idp
                .identity()
                .unwrap_or_else(|| slot.account.username.clone()),
            reused_session: reused,
            roles: status::role_infos(&slot.account, &data.roles),
        })
    }

    /// Makes a person's login the account's only flight, once any other one has ended
    /// (within `login_wait`); the guard clears it however the login ends.
    async fn become_login_flight(
        self: &Arc<Self>,
        slot: &Arc<AccountSlot>,
    ) -> Result<(watch::Sender<Option<FlightResult>>, FlightGuard), WireError> {
        let deadline = tokio::time::Instant::now()
            .checked_add(slot.account.login_wait)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        loop {
            let waiting = {
                let mut data = slot.data();
                match &data.flight {
                    Some((_, rx)) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        data.flight = Some((FlightKind::Login, rx));
                        let guard = FlightGuard {
                            slot: slot.clone(),
                            manager: self.clone(),
                        };
                        return Ok((tx, guard));
                    }
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = wait_flight(waiting, left, &slot.account.name).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(WireError::new(
                    ErrorCode::Timeout,
                    format!(
                        "another login for {} is still running; try again shortly",
                        slot.account.name
                    ),
                ));
            }
        }
    }

    /// Saves an accepted password; the message says what happened, for the user.
    async fn save_password(&self, slot: &AccountSlot, password: samld_proto::Secret) -> String {
        let Some(store) = self.options.password_store.as_ref() else {
            return "Logged in, but the password was not saved: this samld has no keyring".into();
        };
        let (name, username) = (slot.account.name.clone(), slot.account.username.clone());
        match crate::keyring::run(store, move |s| s.set(&name, &username, &password)).await {
            Ok(()) => {
                slot.data().saved_password = Some(true);
                "Saved the password in the OS keyring; samld can now log in again by itself.".into()
            }
            Err(e) => format!("Logged in, but the password was not saved: {e}"),
        }
    }
}
