//! Invariants shared by the fuzz targets.

use samld::saml::{Assertion, SamlError, default_role, select_role};

/// Checks what every caller of `parse_saml_response` relies on, whatever the input.
pub fn check_assertion(outcome: &Result<Assertion, SamlError>) {
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
