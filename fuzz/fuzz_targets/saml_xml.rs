//! The SAML assertion parser, fed XML: the input is base64-encoded here so that the fuzzer
//! mutates XML structure rather than base64 text. Seeds: daemon/tests/fixtures/saml/*.xml.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|xml: &[u8]| {
    let encoded = STANDARD.encode(xml);
    samld_fuzz::check_assertion(&samld::saml::parse_saml_response(&encoded));
});
