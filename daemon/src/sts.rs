//! STS AssumeRoleWithSAML.
//!
//! SKELETON: the types and the trait are the contract; [`SdkSts`] is to be written with
//! aws-sdk-sts (no credentials: the operation is unsigned), rustls with ring.

use std::fmt;

use samld_proto::Secret;
use time::OffsetDateTime;

use crate::idp::BoxFuture;

/// Where to send the call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StsTarget {
    /// The account's region; `None` means the global endpoint (us-east-1).
    pub region: Option<String>,
    /// `sts_endpoint` from the config, overriding the regional endpoint.
    pub endpoint: Option<String>,
}

/// One AssumeRoleWithSAML call.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    /// The role to assume.
    pub role_arn: String,
    /// The SAML provider paired with it in the assertion.
    pub principal_arn: String,
    /// The base64 SAMLResponse exactly as taken from the IdP's form.
    pub saml_assertion: Secret,
    /// DurationSeconds.
    pub duration_seconds: u32,
}

/// Temporary AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// AccessKeyId.
    pub access_key_id: String,
    /// SecretAccessKey.
    pub secret_access_key: Secret,
    /// SessionToken.
    pub session_token: Secret,
    /// Expiration.
    pub expiration: OffsetDateTime,
    /// AssumedRoleUser/Arn.
    pub assumed_role_arn: Option<String>,
}

/// Why STS did not give credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsError {
    /// STS answered with an error document.
    Service {
        /// The error code, e.g. `ValidationError`, `AccessDenied`, `ExpiredTokenException`.
        code: String,
        /// STS's message.
        message: String,
        /// The HTTP status.
        status: Option<u16>,
    },
    /// STS could not be reached, or timed out.
    Network {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// STS answered something that is not an STS document.
    BadResponse {
        /// What was wrong with it.
        reason: String,
    },
}

impl StsError {
    /// STS said DurationSeconds exceeds the role's MaxSessionDuration.
    pub fn is_duration_too_long(&self) -> bool {
        matches!(self, StsError::Service { code, message, .. }
            if code == "ValidationError" && message.contains("MaxSessionDuration"))
    }

    /// STS said the assertion is too old (redeem within 5 minutes of issuance).
    pub fn is_expired_assertion(&self) -> bool {
        matches!(self, StsError::Service { code, .. } if code == "ExpiredTokenException")
    }

    /// Worth retrying with backoff: throttling, 5xx, network trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            StsError::Network { .. } => true,
            StsError::Service { code, status, .. } => {
                code.contains("Throttl") || status.is_some_and(|s| s >= 500)
            }
            StsError::BadResponse { .. } => false,
        }
    }
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StsError::Service { code, message, .. } => write!(f, "STS refused: {code}: {message}"),
            StsError::Network { endpoint, reason } => {
                write!(f, "could not reach STS at {endpoint}: {reason}")
            }
            StsError::BadResponse { reason } => write!(f, "STS answered something unexpected: {reason}"),
        }
    }
}

impl std::error::Error for StsError {}

/// The STS operations samld uses; implemented by [`SdkSts`] and by test doubles.
pub trait StsApi: Send + Sync {
    /// Calls AssumeRoleWithSAML once (the SDK's own retries for throttling apply).
    fn assume_role_with_saml<'a>(
        &'a self,
        target: &'a StsTarget,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<AwsCredentials, StsError>>;
}

/// DurationSeconds to ask for: the configured duration, capped by the assertion's
/// SessionDuration and by a MaxSessionDuration learnt from an earlier refusal, never below
/// STS's minimum of 900.
pub fn choose_duration(configured_secs: u64, assertion: Option<u32>, learnt_cap: Option<u32>) -> u32 {
    let mut secs = configured_secs.min(u64::from(u32::MAX)) as u32;
    if let Some(a) = assertion {
        secs = secs.min(a);
    }
    if let Some(cap) = learnt_cap {
        secs = secs.min(cap);
    }
    secs.max(900)
}
