//! The daemon's test doubles, one set for every test of the manager, the server and the
//! endpoint: a scripted IdP, a scripted STS, the provider factory that hands the IdP out, and
//! the SAML assertion they speak.
//!
//! One file serves two kinds of test. The unit tests in `src/` reach it as
//! `crate::test_doubles`; the integration tests in `daemon/tests/` include it with
//! `#[path]` from `tests/common/mod.rs`. It names this crate `samld` in both (the library
//! calls itself that under `cfg(test)`), so it compiles the same in each, and it is never
//! part of the library that samld ships, unlike a module behind a cargo feature, which the
//! workspace's test build would switch on for the binaries too.
//!
//! Each test crate uses a part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use samld::clock::Clock;
use samld::future::BoxFuture;
use samld::idp::{ExternalSession, IdentityProvider, IdpError, IdpSession, LoginInteraction};
use samld::manager::ProviderFactory;
use samld::sts::{AssumeRequest, AwsCredentials, StsApi, StsError, StsTarget};
use samld_config::Account;
use samld_proto::Secret;

/// The SAML provider of every role the scripted IdP offers.
pub const PROVIDER: &str = "arn:aws:iam::123456789012:saml-provider/JumpCloud";

/// A base64 SAMLResponse offering each `(role ARN, SAML provider ARN)` pair, with a
/// SessionDuration attribute when `session_duration` is given: one builder, so that every
/// scripted IdP answers in the shape samld parses (the end-to-end fakes use
/// `tests/src/saml_builder.rs`, which also signs and wraps in HTML).
pub fn assertion(roles: &[(&str, &str)], session_duration: Option<u32>) -> Secret {
    named_assertion(roles, session_duration, None)
}

/// [`assertion`], naming its subject and carrying an ID when `subject` is `(NameID, ID)`:
/// what a scripted STS reads to tell whose assertion it was handed, and whether it is one it
/// has seen before.
pub fn named_assertion(
    roles: &[(&str, &str)],
    session_duration: Option<u32>,
    subject: Option<(&str, &str)>,
) -> Secret {
    let values: String = roles
        .iter()
        .map(|(role, provider)| {
            format!("<saml:AttributeValue>{role},{provider}</saml:AttributeValue>")
        })
        .collect();
    let duration = session_duration
        .map(|d| {
            format!(
                r#"<saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/SessionDuration"><saml:AttributeValue>{d}</saml:AttributeValue></saml:Attribute>"#
            )
        })
        .unwrap_or_default();
    let (id, subject) = subject
        .map(|(name, id)| {
            (
                format!(r#" ID="{id}""#),
                format!("<saml:Subject><saml:NameID>{name}</saml:NameID></saml:Subject>"),
            )
        })
        .unwrap_or_default();
    let xml = format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Assertion{id}>{subject}<saml:AttributeStatement><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role">{values}</saml:Attribute>{duration}</saml:AttributeStatement></saml:Assertion></samlp:Response>"#
    );
    Secret::new(base64::engine::general_purpose::STANDARD.encode(xml))
}

/// An IdP whose session can be alive or not, counting what it is asked. A login takes a
/// browser's sign-in when there is one; otherwise it asks for the password, keeps it in
/// `given`, and with the right one (and a push not denied) starts a live session.
pub struct ScriptedIdp {
    /// Whether `assertion_from_session` answers.
    pub session_alive: Mutex<bool>,
    /// The password a login accepts.
    pub password: &'static str,
    /// The role ARNs the assertion offers, each with [`PROVIDER`].
    pub roles: Mutex<Vec<&'static str>>,
    /// The assertion's SessionDuration.
    pub session_duration: Option<u32>,
    /// Whether the person denies the push a login sends.
    pub push_denied: bool,
    /// How many times the session was asked for an assertion.
    pub session_fetches: AtomicUsize,
    /// How many logins posted a password.
    pub password_logins: AtomicUsize,
    /// How many logins took a browser's sign-in.
    pub browser_logins: AtomicUsize,
    /// Every password a login was given, in order.
    pub given: Mutex<Vec<String>>,
    /// Held while a fetch runs, so tests can line up concurrent callers behind it.
    pub gate: tokio::sync::RwLock<()>,
}

impl Default for ScriptedIdp {
    /// A session that has ended, the password `correct horse`, no roles.
    fn default() -> Self {
        Self {
            session_alive: Mutex::new(false),
            password: "correct horse",
            roles: Mutex::new(Vec::new()),
            session_duration: None,
            push_denied: false,
            session_fetches: AtomicUsize::new(0),
            password_logins: AtomicUsize::new(0),
            browser_logins: AtomicUsize::new(0),
            given: Mutex::new(Vec::new()),
            gate: tokio::sync::RwLock::new(()),
        }
    }
}

impl ScriptedIdp {
    /// The IdP ends its session (as JumpCloud does when it expires or an admin ends it).
    pub fn end_session(&self) {
        *self.session_alive.lock().unwrap() = false;
    }

    /// An IdP offering `roles`, whose session has ended.
    pub fn offering(roles: &[&'static str]) -> Self {
        Self {
            roles: Mutex::new(roles.to_vec()),
            ..Self::default()
        }
    }

    /// An IdP offering `roles`, whose session is alive and stays so.
    pub fn live(roles: &[&'static str]) -> Self {
        let idp = Self::offering(roles);
        *idp.session_alive.lock().unwrap() = true;
        idp
    }

    /// The assertion the session hands out now.
    pub fn current(&self) -> Secret {
        let pairs: Vec<(&str, &str)> = self
            .roles
            .lock()
            .unwrap()
            .iter()
            .map(|role| (*role, PROVIDER))
            .collect();
        assertion(&pairs, self.session_duration)
    }
}

impl IdentityProvider for ScriptedIdp {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        Box::pin(async move {
            let _held = self.gate.read().await;
            self.session_fetches.fetch_add(1, Ordering::SeqCst);
            if *self.session_alive.lock().unwrap() {
                Ok(self.current())
            } else {
                Err(IdpError::SessionExpired)
            }
        })
    }

    fn login<'a>(
        &'a self,
        io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            if let Some(signed_in) = io.browser_sign_in() {
                self.browser_logins.fetch_add(1, Ordering::SeqCst);
                *self.session_alive.lock().unwrap() = true;
                return Ok(signed_in.saml_response);
            }
            let password = io.password("JumpCloud password").await?;
            self.password_logins.fetch_add(1, Ordering::SeqCst);
            self.given
                .lock()
                .unwrap()
                .push(password.expose().to_owned());
            if password.expose() != self.password {
                return Err(IdpError::AuthFailed {
                    message: "Authentication failed.".into(),
                });
            }
            io.progress("Approve the push").await;
            if self.push_denied {
                return Err(IdpError::PushDenied);
            }
            *self.session_alive.lock().unwrap() = true;
            Ok(self.current())
        })
    }
}

/// The provider factory: every account gets the one scripted IdP, or, with none, a
/// configuration error (for tests that never sign in).
pub struct ScriptedProviders(pub Option<Arc<ScriptedIdp>>);

impl ScriptedProviders {
    /// Hands `idp` to every account.
    pub fn serving(idp: Arc<ScriptedIdp>) -> Arc<Self> {
        Arc::new(Self(Some(idp)))
    }

    /// Hands no account an IdP.
    pub fn none() -> Arc<Self> {
        Arc::new(Self(None))
    }
}

/// The scripted IdP holds the one session it scripts: forgetting the manager's handle
/// forgets it.
impl ExternalSession for ScriptedIdp {
    fn forget(&self) {
        self.end_session();
    }
}

/// A session with nothing behind it, for a factory that hands out no IdP.
struct NoSession;

impl ExternalSession for NoSession {
    fn forget(&self) {}
}

impl ProviderFactory for ScriptedProviders {
    fn new_session(&self, _account: &Account) -> IdpSession {
        match &self.0 {
            Some(idp) => IdpSession::External(idp.clone()),
            None => IdpSession::External(Arc::new(NoSession)),
        }
    }

    fn provider(
        &self,
        _account: &Account,
        _session: &IdpSession,
    ) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        match &self.0 {
            Some(idp) => Ok(idp.clone()),
            None => Err(IdpError::Config("not used in these tests".into())),
        }
    }
}

/// An STS that issues numbered keys valid for `lifetime` by `clock`, with scripted failures,
/// keeping the durations it was asked for.
pub struct ScriptedSts {
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    /// How many times it was called.
    pub calls: AtomicUsize,
    /// Counts calls too, for tests that wait for background work.
    pub call_count: tokio::sync::watch::Sender<usize>,
    /// The DurationSeconds of each call, in order.
    pub durations: Mutex<Vec<u32>>,
    /// Errors the next calls return, one a call, before it issues keys again.
    pub faults: Mutex<VecDeque<StsError>>,
}

impl ScriptedSts {
    /// An STS issuing keys valid for `lifetime` by `clock`.
    pub fn new(clock: Arc<dyn Clock>, lifetime: Duration) -> Arc<Self> {
        Arc::new(Self {
            clock,
            lifetime,
            calls: AtomicUsize::new(0),
            call_count: tokio::sync::watch::Sender::new(0),
            durations: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
        })
    }

    /// The secret access key of the `n`th call (from 1): distinctive, so that a test can
    /// search any output for it.
    pub fn secret_key(n: usize) -> String {
        format!("wJalrXUtnFEMI-secret-{n}")
    }

    /// The session token of the `n`th call (from 1).
    pub fn session_token(n: usize) -> String {
        format!("FwoGZXIvYXdz-token-{n}")
    }

    /// Waits (bounded) until STS has been called `n` times in all.
    pub async fn wait_for_calls(&self, n: usize) {
        let mut rx = self.call_count.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("STS was not called {n} times"))
            .unwrap();
    }
}

impl StsApi for ScriptedSts {
    fn assume_role_with_saml<'a>(
        &'a self,
        _target: &'a StsTarget,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<AwsCredentials, StsError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.durations
                .lock()
                .unwrap()
                .push(request.duration_seconds);
            let fault = self.faults.lock().unwrap().pop_front();
            self.call_count.send_replace(n);
            if let Some(fault) = fault {
                return Err(fault);
            }
            Ok(AwsCredentials {
                access_key_id: format!("ASIAKEY{n:013}"),
                secret_access_key: Secret::new(Self::secret_key(n)),
                session_token: Secret::new(Self::session_token(n)),
                expiration: self.clock.now() + self.lifetime,
                assumed_role_arn: Some(request.role_arn.replace(":iam:", ":sts:")),
            })
        })
    }
}
