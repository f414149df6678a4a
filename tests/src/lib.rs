//! Test support for samld: fake JumpCloud and fake STS servers on 127.0.0.1 that speak the
//! real wire formats, a SAML assertion builder, and fixtures that run the real binaries.

pub mod browser_person;
pub mod fake_federation;
pub mod fake_jumpcloud;
pub mod fake_sts;
pub mod fixture;
pub mod interaction;
pub mod saml_builder;
