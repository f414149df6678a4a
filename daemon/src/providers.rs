//! The production identity providers, chosen by each account's `provider` key.

use std::sync::Arc;

use samld_config::{Account, Provider};

use crate::idp::jumpcloud::{JumpCloud, JumpCloudSettings, SharedSession};
use crate::idp::saml_idp::{GenericSaml, SharedBrowserSession};
use crate::idp::{IdentityProvider, IdpError, IdpSession};
use crate::manager::ProviderFactory;

/// Builds real providers from account settings, on the IdP session the manager hands over:
/// it keeps no session of its own, so a session lives only as long as the manager's slot.
#[derive(Debug, Default)]
pub struct DefaultProviders;

impl ProviderFactory for DefaultProviders {
    fn new_session(&self, account: &Account) -> IdpSession {
        match account.provider {
            Provider::JumpCloud => IdpSession::JumpCloud(SharedSession::default()),
            Provider::Saml => IdpSession::Browser(SharedBrowserSession::default()),
        }
    }

    fn provider(
        &self,
        account: &Account,
        session: &IdpSession,
    ) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        match (account.provider, session) {
            (Provider::JumpCloud, IdpSession::JumpCloud(session)) => Ok(Arc::new(
                JumpCloud::with_session(JumpCloudSettings::from_account(account), session.clone())?,
            )),
            (Provider::Saml, IdpSession::Browser(session)) => Ok(Arc::new(GenericSaml::new(
                &account.name,
                &account.url,
                account.request_timeout,
                session.clone(),
            )?)),
            // The provider is part of the session key, so the manager never mixes them.
            (provider, session) => Err(IdpError::Config(format!(
                "internal error: a {provider:?} account was given the session {session:?}"
            ))),
        }
    }
}
