//! `provider = "saml"`: any SAML IdP, signed in to in a browser (`samlctl login --browser`).
//!
//! samld knows nothing of the IdP's own sign-in: the person passes it in the browser, which
//! hands over the SAML response and the IdP's cookies. A refresh then GETs the account's
//! `url` (the IdP-initiated sign-in URL of the AWS app) with those cookies, following
//! redirects as a browser would, and takes the SAMLResponse from the auto-post form that a
//! live session gets. Anything else (the IdP's login page, a device check) means the session
//! is over for samld: the account waits for the person and their browser.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::cookie::Jar;
use reqwest::header::ACCEPT;
use reqwest::{Client, StatusCode, Url, redirect};
use samld_proto::Secret;
use tracing::debug;

use super::browser_session::adopt_cookies;
use super::identity::{CheckedAt, IdentityMismatch, IdentitySource, is_one_of, subject_of};
use super::transport::{
    POOL_IDLE_TIMEOUT, USER_AGENT, network_error, redacted_url, shared_tls_config,
};
use super::{IdentityProvider, IdpError, LoginInteraction};
use crate::error_chain::error_chain;
use crate::future::BoxFuture;

/// The most read of the IdP's answer: a SAML form is a few KiB.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The browser session of one IdP, shared by the accounts whose `url` is at its origin.
#[derive(Clone, Default)]
pub struct SharedBrowserSession(Arc<Mutex<Slot>>);

impl fmt::Debug for SharedBrowserSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedBrowserSession(..)")
    }
}

impl SharedBrowserSession {
    /// Forgets the browser's cookies for every provider that shares them. Whose the accounts
    /// are stays: a logout makes them no one else's.
    pub fn forget(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.generation += 1;
        slot.client = None;
        debug!("IdP browser session forgotten");
    }
}

#[derive(Default)]
struct Slot {
    generation: u64,
    client: Option<Client>,
    /// The subject of the first sign-in: whose the accounts at this IdP are. It outlives
    /// the session (a logout does not make the accounts anyone's), and changes only when the
    /// person forces a sign-in as someone else.
    identity: Option<String>,
}

/// A generic SAML IdP for one account.
pub struct GenericSaml {
    account: String,
    url: Url,
    request_timeout: Duration,
    session: SharedBrowserSession,
}

impl fmt::Debug for GenericSaml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericSaml")
            .field("url", &redacted_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl GenericSaml {
    /// A provider for `account` fetching assertions from `url` with the cookies of
    /// `session`.
    pub fn new(
        account: &str,
        url: &str,
        request_timeout: Duration,
        session: SharedBrowserSession,
    ) -> Result<Self, IdpError> {
        let url = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| IdpError::Config(format!("`url` is not an http(s) URL: {url:?}")))?;
        Ok(Self {
            account: account.to_owned(),
            url,
            request_timeout,
            session,
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // The slot holds no invariant a panic could break halfway.
        self.session.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(&self, jar: Arc<Jar>) -> Result<Client, IdpError> {
        Client::builder()
            .tls_backend_preconfigured(shared_tls_config()?)
            .cookie_provider(jar)
            .user_agent(USER_AGENT)
            .connect_timeout(self.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .timeout(self.request_timeout)
            .redirect(redirect::Policy::limited(10))
            .build()
            .map_err(|e| {
                IdpError::Config(format!(
                    "cannot set up the HTTP client: {}",
                    error_chain(&e.without_url())
                ))
            })
    }

    async fn fetch(&self) -> Result<Secret, IdpError> {
        let Some(client) = self.slot().client.clone() else {
            return Err(IdpError::SessionExpired);
        };
        let name = format!("GET {}", self.url.path());
        let mut response = client
            .get(self.url.clone())
            .header(ACCEPT, "text/html,application/xhtml+xml")
            .send()
            .await
            .map_err(|e| network_error(&self.url, e))?;
        let status = response.status();
        debug!(request = %name, status = status.as_u16(), "the IdP answered");
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(IdpError::IdpUnavailable {
                request: name,
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| network_error(&self.url, e))?
        {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(IdpError::SessionExpired);
            }
            body.extend_from_slice(&chunk);
        }
        match crate::saml::extract_saml_response(&String::from_utf8_lossy(&body)) {
            Ok(saml) => Ok(saml),
            // A login page, a consent page, a device check: whatever it is, only the person
            // in the browser gets past it.
            Err(crate::saml::SamlError::NoSamlResponse) => {
                debug!(request = %name, "no SAML form: the IdP session is over for samld");
                Err(IdpError::SessionExpired)
            }
            Err(e) => Err(IdpError::Saml(e)),
        }
    }

    fn refused_sign_in(&self, signed_in: Option<String>, expected: String) -> IdpError {
        IdpError::IdentityMismatch(IdentityMismatch {
            account: self.account.clone(),
            signed_in,
            expected,
            source: IdentitySource::FirstSignIn,
            at: CheckedAt::BrowserSignIn,
            idp: "the IdP",
        })
    }

    /// Takes in the browser's sign-in when it is the identity's, or the first one, or the
    /// person forced it; anyone else's is refused and the held session stays as it was.
    fn adopt(&self, signed_in: samld_proto::BrowserSignIn) -> Result<Secret, IdpError> {
        let subject = subject_of(&signed_in.saml_response)?;
        let expected = self.slot().identity.clone();
        if let Some(expected) = expected
            && !signed_in.replace_identity
            && !is_one_of(subject.as_deref(), std::slice::from_ref(&expected))
        {
            return Err(self.refused_sign_in(subject, expected));
        }
        let jar = Arc::new(Jar::default());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let taken = adopt_cookies(&jar, &signed_in.cookies, now);
        debug!(taken, "took the browser's IdP cookies");
        let client = self.client(jar)?;
        let mut slot = self.slot();
        slot.generation += 1;
        slot.client = Some(client);
        if subject.is_some() {
            slot.identity = subject;
        }
        Ok(signed_in.saml_response.clone())
    }
}

impl IdentityProvider for GenericSaml {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        Box::pin(self.fetch())
    }

    fn login<'a>(
        &'a self,
        io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            match io.browser_sign_in() {
                Some(signed_in) => self.adopt(signed_in),
                None => Err(IdpError::Config(
                    "provider = \"saml\" signs in only through a browser: run `samlctl login \
                     ACCOUNT --browser`"
                        .to_owned(),
                )),
            }
        })
    }

    fn identity(&self) -> Option<String> {
        self.slot().identity.clone()
    }

    fn identities(&self) -> Vec<String> {
        self.identity().into_iter().collect()
    }
}
