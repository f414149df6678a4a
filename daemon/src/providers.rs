//! The production identity providers, chosen by each account's `provider` key.

use std::sync::Arc;

use samld_config::{Account, Provider};

use crate::idp::jumpcloud::{JumpCloud, JumpCloudSettings};
use crate::idp::{IdentityProvider, IdpError};
use crate::session::ProviderFactory;

/// Builds real providers from account settings.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultProviders;

impl ProviderFactory for DefaultProviders {
    fn provider(&self, account: &Account) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        match account.provider {
            Provider::JumpCloud => Ok(Arc::new(JumpCloud::new(JumpCloudSettings::from_account(
                account,
            ))?)),
        }
    }
}
