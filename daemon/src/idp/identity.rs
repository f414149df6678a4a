//! Whose sign-in a session is. A session belongs to one identity: the account's configured
//! `username` for JumpCloud, the subject of the first sign-in for `provider = "saml"`. A
//! browser can be signed in as anyone, and an IdP session can in principle start answering
//! for someone else, so every sign-in handed over and every assertion fetched from a session
//! is checked against that identity before it can replace a session or reach STS.

use std::fmt;

use samld_proto::Secret;

use super::IdpError;
use crate::saml::{self, Assertion};

/// Where the identity an assertion was checked against comes from; it decides what the
/// person can do about a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The account's `username`: only signing in as that user helps.
    Configured,
    /// The subject of the account's first sign-in (`provider = "saml"`): the person may
    /// make another subject the account's identity with `--force`.
    FirstSignIn,
}

/// When the mismatch was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckedAt {
    /// A sign-in finished in a browser, before samld adopted it.
    BrowserSignIn,
    /// An assertion about to be handed to STS (from a refresh of the held session, or any
    /// sign-in): the session manager's last check.
    BeforeSts,
}

/// A sign-in or an assertion for someone other than the account's identity. Nothing was
/// adopted and nothing was sent to STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMismatch {
    /// The account whose sign-in it was.
    pub account: String,
    /// Who the IdP says is signed in (`None`: the assertion names no one).
    pub signed_in: Option<String>,
    /// The account's identity.
    pub expected: String,
    /// Where that identity comes from.
    pub source: IdentitySource,
    /// When the mismatch was found.
    pub at: CheckedAt,
    /// The IdP's name for the person, such as `JumpCloud` or `the IdP`.
    pub idp: &'static str,
}

impl fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            account,
            expected,
            idp,
            ..
        } = self;
        let signed_in = self
            .signed_in
            .as_deref()
            .unwrap_or("no one (the assertion has no NameID)");
        match (self.at, self.source) {
            (CheckedAt::BrowserSignIn, IdentitySource::Configured) => write!(
                f,
                "Signed in to the browser as {signed_in}, but {account} is configured for \
                 {expected}; nothing changed. Sign out of {idp} in that browser, or run \
                 `samlctl login {account} --browser` again and sign in as {expected}."
            ),
            (CheckedAt::BrowserSignIn, IdentitySource::FirstSignIn) => write!(
                f,
                "Signed in to the browser as {signed_in}, but {account} is {expected}'s (the \
                 identity of its first sign-in); nothing changed. Run `samlctl login \
                 {account} --browser` again and sign in as {expected}, or run `samlctl login \
                 {account} --browser --force` to make {signed_in} the identity of {account}."
            ),
            (CheckedAt::BeforeSts, _) => write!(
                f,
                "{idp} gave samld an assertion for {signed_in} for {account}, but {account}'s \
                 session is {expected}'s; samld did not send it to AWS. Sign in again as \
                 {expected}: `samlctl login {account}` (with `--browser` for a browser \
                 account)."
            ),
        }
    }
}

/// Refuses, before STS, an assertion whose subject is none of `identities` (the held
/// session's, [`super::IdentityProvider::identities`]); with no identity known yet, any.
pub fn check_hand_out(
    account: &samld_config::Account,
    identities: &[String],
    assertion: &Assertion,
) -> Result<(), IdentityMismatch> {
    if identities.is_empty() || is_one_of(assertion.subject.as_deref(), identities) {
        return Ok(());
    }
    Err(IdentityMismatch {
        account: account.name.clone(),
        signed_in: assertion.subject.clone(),
        expected: identities[0].clone(),
        source: match account.provider {
            samld_config::Provider::JumpCloud => IdentitySource::Configured,
            samld_config::Provider::Saml => IdentitySource::FirstSignIn,
        },
        at: CheckedAt::BeforeSts,
        idp: account.idp_name(),
    })
}

/// The subject (NameID) of a SAMLResponse; an unreadable response is a SAML error, as it
/// would be at STS.
pub fn subject_of(saml_response: &Secret) -> Result<Option<String>, IdpError> {
    saml::parse_saml_response(saml_response.expose())
        .map(|assertion| assertion.subject)
        .map_err(IdpError::Saml)
}

/// Whether `subject` is any of `identities`: IdPs match email addresses and user names
/// case-insensitively, so `Alice@Example.com` and `alice@example.com` are one identity. No
/// subject is no one's.
pub fn is_one_of(subject: Option<&str>, identities: &[String]) -> bool {
    subject.is_some_and(|s| {
        identities
            .iter()
            .any(|id| s.trim().eq_ignore_ascii_case(id.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(source: IdentitySource, at: CheckedAt) -> String {
        IdentityMismatch {
            account: "web".to_owned(),
            signed_in: Some("bob@example.com".to_owned()),
            expected: "alice@example.com".to_owned(),
            source,
            at,
            idp: "JumpCloud",
        }
        .to_string()
    }

    #[test]
    fn the_message_names_both_identities_and_what_to_do() {
        let configured = mismatch(IdentitySource::Configured, CheckedAt::BrowserSignIn);
        assert_eq!(
            configured,
            "Signed in to the browser as bob@example.com, but web is configured for \
             alice@example.com; nothing changed. Sign out of JumpCloud in that browser, or run \
             `samlctl login web --browser` again and sign in as alice@example.com."
        );
        let first = mismatch(IdentitySource::FirstSignIn, CheckedAt::BrowserSignIn);
        assert!(
            first.contains("web is alice@example.com's")
                && first.contains("`samlctl login web --browser --force` to make bob@example.com"),
            "{first}"
        );
        let refresh = mismatch(IdentitySource::Configured, CheckedAt::BeforeSts);
        assert!(
            refresh
                .contains("an assertion for bob@example.com for web, but web's session is alice@"),
            "{refresh}"
        );
    }

    fn assertion_for(subject: Option<&str>) -> Assertion {
        Assertion {
            roles: Vec::new(),
            session_duration: None,
            role_session_name: None,
            not_on_or_after: None,
            subject: subject.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_sessions_identity_reaches_sts_once_one_is_known() {
        let config = samld_config::parse(
            "[accounts.okta]\nprovider = \"saml\"\nurl = \"https://idp.example.com/app\"\n",
            std::path::Path::new("/test/config.toml"),
        )
        .unwrap();
        let okta = &config.accounts["okta"];
        let alice = ["alice@example.com".to_owned()];
        assert!(check_hand_out(okta, &alice, &assertion_for(Some("ALICE@example.com"))).is_ok());
        let refused = check_hand_out(okta, &alice, &assertion_for(Some("bob@example.com")))
            .expect_err("bob's assertion");
        assert_eq!(
            (refused.signed_in.as_deref(), refused.expected.as_str()),
            (Some("bob@example.com"), "alice@example.com")
        );
        assert_eq!(refused.source, IdentitySource::FirstSignIn);
        assert!(check_hand_out(okta, &alice, &assertion_for(None)).is_err());
        // Before the first sign-in of a provider = "saml" account, whoever signs in is it.
        assert!(check_hand_out(okta, &[], &assertion_for(Some("bob@example.com"))).is_ok());
    }

    #[test]
    fn identities_match_case_insensitively_and_no_subject_matches_none() {
        let ids = ["alice@example.com".to_owned(), "alice".to_owned()];
        assert!(is_one_of(Some("Alice@Example.COM"), &ids));
        assert!(is_one_of(Some("ALICE"), &ids));
        assert!(!is_one_of(Some("bob@example.com"), &ids));
        assert!(!is_one_of(None, &ids));
    }
}
