//! SAML: the SAMLResponse form in JumpCloud's HTML page, and the assertion inside it.
//!
//! SKELETON: signatures are the contract; bodies are to be written.

use samld_proto::Secret;
use time::OffsetDateTime;

/// One `role ARN, SAML provider ARN` pair from the Role attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePair {
    /// `arn:PARTITION:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// `arn:PARTITION:iam::ACCOUNT:saml-provider/NAME`.
    pub principal_arn: String,
}

/// What samld needs from an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// Every role offered, in document order.
    pub roles: Vec<RolePair>,
    /// The SessionDuration attribute, in seconds.
    pub session_duration: Option<u32>,
    /// The RoleSessionName attribute.
    pub role_session_name: Option<String>,
    /// SubjectConfirmationData/@NotOnOrAfter (else Conditions/@NotOnOrAfter).
    pub not_on_or_after: Option<OffsetDateTime>,
}

/// Why a SAML page or assertion could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlError {
    /// The page has no SAMLResponse input.
    NoSamlResponse,
}

/// Takes the SAMLResponse value (base64) from the auto-post form of the IdP's HTML page.
pub fn extract_saml_response(html: &str) -> Result<Secret, SamlError> {
    let _ = html;
    todo!()
}

/// Decodes and parses a base64 SAMLResponse.
pub fn parse_saml_response(base64: &str) -> Result<Assertion, SamlError> {
    let _ = base64;
    todo!()
}
