//! The production identity providers, chosen by each account's `provider` key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use samld_config::{Account, Provider, SessionKey};

use crate::idp::jumpcloud::{JumpCloud, JumpCloudSettings, SharedSession};
use crate::idp::saml_idp::{GenericSaml, SharedBrowserSession};
use crate::idp::{IdentityProvider, IdpError};
use crate::manager::ProviderFactory;

/// Builds real providers from account settings. Accounts of the same user at the same
/// console get providers that share one JumpCloud session; accounts at the same generic IdP
/// share its browser session.
#[derive(Debug, Default)]
pub struct DefaultProviders {
    sessions: Mutex<HashMap<SessionKey, SharedSession>>,
    browser_sessions: Mutex<HashMap<SessionKey, SharedBrowserSession>>,
}

impl ProviderFactory for DefaultProviders {
    fn provider(&self, account: &Account) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        match account.provider {
            Provider::JumpCloud => {
                let session = self
                    .sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(account.session_key())
                    .or_default()
                    .clone();
                Ok(Arc::new(JumpCloud::with_session(
                    JumpCloudSettings::from_account(account),
                    session,
                )?))
            }
            Provider::Saml => {
                let session = self
                    .browser_sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(account.session_key())
                    .or_default()
                    .clone();
                Ok(Arc::new(GenericSaml::new(
                    &account.name,
                    &account.url,
                    account.request_timeout,
                    session,
                )?))
            }
        }
    }
}
