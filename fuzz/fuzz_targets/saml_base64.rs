//! The SAML assertion parser, fed raw text as it comes out of the IdP's form: base64 with
//! whitespace, padding or not, or garbage.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    samld_fuzz::check_assertion(&samld::saml::parse_saml_response(text));
});
