//! What every IdP client shares, whichever IdP it speaks to: one TLS configuration for the
//! process, and transport failures turned into [`IdpError`] without the query strings that
//! may carry tokens.

use std::sync::{Arc, Once, OnceLock};

use reqwest::Url;

use crate::error_chain::error_chain;
use crate::idp::IdpError;

/// The `User-Agent` of every IdP request.
pub(crate) const USER_AGENT: &str = concat!("samld/", env!("CARGO_PKG_VERSION"));

/// How long an idle connection to an IdP is kept for the next request. A login's requests
/// follow each other within a second or so (push polls every 500 ms), while a refresh comes
/// tens of minutes after the previous one, so a connection kept longer is never reused: it
/// only holds a socket and its buffers (about 50 KB per account), and hyper's default of
/// 90 s wakes an idle daemon once per client a minute and a half after each login or
/// refresh.
pub(crate) const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The TLS configuration of every IdP client in the process.
///
/// Left to itself, reqwest builds a new platform verifier for each client, and on Linux that
/// reads and parses every root certificate of the system and keeps its own copy of them:
/// about 130 KB held per client (each session has two) and the parsing paid at each login, so a
/// daemon with 500 accounts held a thousand copies of the same roots. One verifier, shared
/// through the `Arc` inside the config, serves them all (and so does one TLS session cache).
/// The roots are read once per process: a CA bundle updated later is seen after a restart.
pub(crate) fn shared_tls_config() -> Result<rustls::ClientConfig, IdpError> {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    // Not cached on failure: a later login tries again.
    let failed = |e: rustls::Error| IdpError::Config(format!("cannot set up TLS: {e}"));
    install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(failed)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(failed)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest offers when it builds the config itself: it speaks HTTP/1.1 only here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(CONFIG.get_or_init(|| config).clone())
}

/// Installs ring as the process-wide rustls provider (reqwest is built without one).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error only means some other part of the process installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A transport failure, with the URL stripped of its query (which may carry tokens) and the
/// error's causes spelled out (reqwest's own text is only "error sending request").
pub(crate) fn network_error(url: &Url, error: reqwest::Error) -> IdpError {
    let timed_out = error.is_timeout();
    let mut reason = error_chain(&error.without_url());
    if timed_out && !reason.contains("timed out") {
        reason.push_str(" (timed out)");
    }
    IdpError::Network {
        url: redacted_url(url),
        reason,
    }
}

/// The URL without user info, query or fragment.
pub(crate) fn redacted_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}
