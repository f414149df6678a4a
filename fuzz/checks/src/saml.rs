//! The SAML targets and the invariants they share.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use samld::saml::{Assertion, SamlError, default_role, select_role};

/// The SAML assertion parser, fed XML: the input is base64-encoded here so that the fuzzer
/// mutates XML structure rather than base64 text. Seeds: daemon/tests/fixtures/saml/*.xml.
pub fn saml_xml(xml: &[u8]) {
    let encoded = STANDARD.encode(xml);
    check_assertion(&samld::saml::parse_saml_response(&encoded));
}

/// The SAML assertion parser, fed raw text as it comes out of the IdP's form: base64 with
/// whitespace, padding or not, or garbage (the input's longest valid UTF-8 prefix, what a
/// libfuzzer-sys `&str` target receives).
pub fn saml_base64(data: &[u8]) {
    let text = crate::utf8_prefix(data);
    check_assertion(&samld::saml::parse_saml_response(text));
}

/// Extraction of the SAMLResponse from the IdP's auto-post HTML page (the input's longest
/// valid UTF-8 prefix, what a libfuzzer-sys `&str` target receives). Seeds: the fixtures'
/// .html pages.
pub fn saml_html(data: &[u8]) {
    let html = crate::utf8_prefix(data);
    match samld::saml::extract_saml_response(html) {
        Ok(secret) => {
            let value = secret.expose();
            // What goes to STS is one non-empty line of base64-ish text.
            assert!(!value.is_empty());
            assert!(!value.bytes().any(|b| b.is_ascii_whitespace()), "{value:?}");
            // And whatever it is, the next step must cope with it.
            check_assertion(&samld::saml::parse_saml_response(value));
        }
        Err(
            SamlError::NoSamlResponse | SamlError::EmptySamlResponse | SamlError::NotBase64 { .. },
        ) => {}
        Err(other) => panic!("unexpected error from the HTML step: {other:?}"),
    }
}

/// Checks what every caller of `parse_saml_response` relies on, whatever the input.
fn check_assertion(outcome: &Result<Assertion, SamlError>) {
    match outcome {
        Ok(assertion) => {
            // The parser promises this much about the ARNs it hands to STS and the user.
            for pair in &assertion.roles {
                assert!(pair.role_arn.as_str().contains(":role/"), "{pair:?}");
                assert!(pair.principal_arn.contains(":saml-provider/"), "{pair:?}");
                for arn in [pair.role_arn.as_str(), pair.principal_arn.as_str()] {
                    assert!(
                        !arn.bytes().any(|b| b.is_ascii_whitespace() || b == b','),
                        "{pair:?}"
                    );
                }
                assert!(!pair.role_arn.name().is_empty(), "{pair:?}");
                let account = pair.role_arn.account_id();
                assert!(
                    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
                    "{pair:?}"
                );
                // Every role on offer can be chosen by its ARN, and its name either picks a
                // role of that name or is reported as ambiguous.
                let by_arn = select_role(&assertion.roles, pair.role_arn.as_str()).expect("by ARN");
                assert_eq!(by_arn.role_arn, pair.role_arn);
                // (RoleArn refuses a name with a colon, so no name passes for an ARN.)
                match select_role(&assertion.roles, pair.role_arn.name()) {
                    Ok(found) => assert_eq!(found.role_arn.name(), pair.role_arn.name()),
                    Err(SamlError::AmbiguousRole { candidates, .. }) => {
                        assert!(candidates.len() > 1, "{candidates:?}")
                    }
                    Err(other) => panic!("{pair:?} not found by name: {other:?}"),
                }
            }
            let _ = default_role(&assertion.roles, None);
        }
        Err(error) => {
            // Rendering must not panic either (it slices status URIs).
            let _ = error.to_string();
        }
    }
}
