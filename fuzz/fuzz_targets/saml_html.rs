//! Extraction of the SAMLResponse from the IdP's auto-post HTML page. Seeds: the fixtures'
//! .html pages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samld::saml::SamlError;

fuzz_target!(|html: &str| {
    match samld::saml::extract_saml_response(html) {
        Ok(secret) => {
            let value = secret.expose();
            // What goes to STS is one non-empty line of base64-ish text.
            assert!(!value.is_empty());
            assert!(!value.bytes().any(|b| b.is_ascii_whitespace()), "{value:?}");
            // And whatever it is, the next step must cope with it.
            samld_fuzz::check_assertion(&samld::saml::parse_saml_response(value));
        }
        Err(
            SamlError::NoSamlResponse | SamlError::EmptySamlResponse | SamlError::NotBase64 { .. },
        ) => {}
        Err(other) => panic!("unexpected error from the HTML step: {other:?}"),
    }
});
