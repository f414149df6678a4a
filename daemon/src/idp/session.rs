//! [`IdpSession`]: the IdP side of one sign-in (its cookies), owned by the session manager.
//!
//! The manager makes one handle for each IdP session it keeps (one user at one console) and
//! builds every provider of that session on it, so the cookies live exactly as long as the
//! manager's session slot: when no configured account uses the session any more, the slot
//! and its cookies go together.

use std::fmt;
use std::sync::Arc;

use super::jumpcloud::SharedSession;
use super::saml_idp::SharedBrowserSession;

/// A handle to the IdP-side state of one sign-in. Clones share the state.
#[derive(Clone)]
pub enum IdpSession {
    /// A JumpCloud user-console session (`provider = "jumpcloud"`).
    JumpCloud(SharedSession),
    /// The cookies a browser handed over for a generic SAML IdP (`provider = "saml"`).
    Browser(SharedBrowserSession),
    /// State kept outside samld's providers: the test doubles, which stand for a whole IdP
    /// and hold its sessions themselves, and need only be told when one is forgotten.
    External(Arc<dyn ExternalSession>),
}

/// A session [`IdpSession::External`] stands for.
pub trait ExternalSession: Send + Sync {
    /// Forgets the session: what [`IdpSession::forget`] does to cookies.
    fn forget(&self);
}

impl IdpSession {
    /// Signs the session out for every provider built on it: the cookies go, and a login
    /// running meanwhile keeps nothing.
    pub fn forget(&self) {
        match self {
            IdpSession::JumpCloud(session) => session.forget(),
            IdpSession::Browser(session) => session.forget(),
            IdpSession::External(session) => session.forget(),
        }
    }
}

impl fmt::Debug for IdpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the cookies.
        match self {
            IdpSession::JumpCloud(session) => session.fmt(f),
            IdpSession::Browser(session) => session.fmt(f),
            IdpSession::External(_) => f.write_str("External(..)"),
        }
    }
}
