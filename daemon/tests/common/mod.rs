//! What the daemon's integration tests share: the SAML assertion their scripted IdPs hand
//! out. One builder, so that every fake IdP here answers in the shape samld parses (the
//! end-to-end fakes use `tests/src/saml_builder.rs`, which also signs and wraps in HTML).

use base64::Engine;
use samld_proto::Secret;

/// A base64 SAMLResponse offering each `(role ARN, SAML provider ARN)` pair, with a
/// SessionDuration attribute when `session_duration` is given.
#[allow(dead_code)] // The simulation names its assertions.
pub fn assertion(roles: &[(&str, &str)], session_duration: Option<u32>) -> Secret {
    named_assertion(roles, session_duration, None)
}

/// [`assertion`], naming its subject and carrying an ID when `subject` is `(NameID, ID)`:
/// what a scripted STS reads to tell whose assertion it was handed, and whether it is one it
/// has seen before.
#[allow(dead_code)] // Only the simulation names its assertions.
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
