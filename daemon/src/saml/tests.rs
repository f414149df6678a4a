use super::*;
use base64::engine::general_purpose::STANDARD;
use time::macros::datetime;

// Real signed responses made with the lab script; see tests/fixtures/saml/README.md.
const SIGNED_ASSERTION: &str =
    include_str!("../../tests/fixtures/saml/jumpcloud_signed_assertion.xml");
const SIGNED_BOTH_SAML2: &str = include_str!("../../tests/fixtures/saml/signed_both_saml2.xml");
const SIGNED_MULTI_ROLE: &str = include_str!("../../tests/fixtures/saml/signed_multi_role.xml");
const SAML_IDP_RESPONSE: &str = include_str!("../../tests/fixtures/saml/saml_idp_response.xml");
const JUMPCLOUD_PAGE: &str = include_str!("../../tests/fixtures/saml/jumpcloud_autopost.html");
const SAML_IDP_PAGE: &str = include_str!("../../tests/fixtures/saml/saml_idp_form.html");

const ACCT: &str = "123456789012";

fn b64(xml: &str) -> String {
    STANDARD.encode(xml)
}

fn pair(role_arn: &str, principal_arn: &str) -> RolePair {
    RolePair {
        role_arn: role_arn.parse().expect("a role ARN"),
        principal_arn: principal_arn.to_owned(),
    }
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCT}:role/{name}")
}

fn provider() -> String {
    format!("arn:aws:iam::{ACCT}:saml-provider/JumpCloud")
}

/// An `Attribute` element with the `saml:` prefix.
fn attribute(name: &str, values: &[&str]) -> String {
    let values: String = values
        .iter()
        .map(|value| format!("<saml:AttributeValue>{value}</saml:AttributeValue>"))
        .collect();
    format!("<saml:Attribute Name=\"{name}\">{values}</saml:Attribute>")
}

fn role_attribute(values: &[&str]) -> String {
    attribute(ROLE_ATTRIBUTE, values)
}

/// An unsigned JumpCloud-like Response with the given AttributeStatement content.
fn response(attributes: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Version="2.0">
  <saml:Issuer>JumpCloud</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  <saml:Assertion ID="_a" Version="2.0">
    <saml:Issuer>JumpCloud</saml:Issuer>
    <saml:Subject>
      <saml:NameID>alice@example.com</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData NotOnOrAfter="2026-11-28T10:05:00Z" Recipient="https://signin.aws.amazon.com/saml"/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="2026-11-28T09:59:00Z" NotOnOrAfter="2026-11-28T10:06:00Z"/>
    <saml:AttributeStatement>{attributes}</saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>"#
    )
}

fn parse_xml(xml: &str) -> Result<Assertion, SamlError> {
    parse_saml_response(&b64(xml))
}

fn roles_of(xml: &str) -> Vec<RolePair> {
    parse_xml(xml).expect("assertion parses").roles
}

// ---- real signed fixtures ----

#[test]
fn signed_assertion_fixture() {
    let assertion = parse_xml(SIGNED_ASSERTION).unwrap();
    assert_eq!(
        assertion,
        Assertion {
            roles: vec![pair(&role("JumpCloud-Admin"), &provider())],
            session_duration: Some(7200),
            role_session_name: Some("alice@example.com".to_owned()),
            not_on_or_after: Some(datetime!(2036-11-25 10:37:56 UTC)),
            subject: Some("alice@example.com".to_owned()),
        }
    );
}

#[test]
fn signed_both_saml2_fixture_has_provider_first_and_a_role_path() {
    let assertion = parse_xml(SIGNED_BOTH_SAML2).unwrap();
    assert_eq!(
        assertion.roles,
        [pair(
            "arn:aws:iam::210987654321:role/ops/Deploy",
            "arn:aws:iam::210987654321:saml-provider/JumpCloud"
        )]
    );
    assert_eq!(assertion.roles[0].role_arn.name(), "Deploy");
    assert_eq!(assertion.roles[0].role_arn.account_id(), "210987654321");
    assert_eq!(assertion.session_duration, Some(3600));
    assert_eq!(
        assertion.role_session_name.as_deref(),
        Some("bob@example.com")
    );
}

#[test]
fn the_subject_is_the_assertions_name_id_whatever_its_prefix() {
    // `saml2:` prefixes; the RoleSessionName (bob) is not the subject.
    let fixture = parse_xml(SIGNED_BOTH_SAML2).unwrap();
    assert_eq!(fixture.subject.as_deref(), Some("alice@example.com"));
    let attributes = role_attribute(&[&format!("{},{}", role("A"), provider())]);
    let spaced = response(&attributes).replace(
        "<saml:NameID>alice@example.com</saml:NameID>",
        "<saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">\n  alice@example.com\n</saml:NameID>",
    );
    assert_eq!(
        parse_xml(&spaced).unwrap().subject.as_deref(),
        Some("alice@example.com")
    );
    let anonymous =
        response(&attributes).replace("<saml:NameID>alice@example.com</saml:NameID>", "");
    assert_eq!(parse_xml(&anonymous).unwrap().subject, None);
}

#[test]
fn signed_multi_role_fixture() {
    let assertion = parse_xml(SIGNED_MULTI_ROLE).unwrap();
    let arns: Vec<&str> = assertion
        .roles
        .iter()
        .map(|r| r.role_arn.as_str())
        .collect();
    assert_eq!(
        arns,
        [
            "arn:aws:iam::111111111111:role/Admin",
            "arn:aws:iam::222222222222:role/Admin",
            "arn:aws:iam::111111111111:role/ReadOnly",
        ]
    );
    assert_eq!(
        assertion.roles[1].principal_arn,
        "arn:aws:iam::222222222222:saml-provider/JumpCloud"
    );
    assert_eq!(assertion.session_duration, None);
    assert_eq!(assertion.role_session_name, None);
}

#[test]
fn saml_idp_response_without_declaration_and_default_namespace_signature() {
    assert!(!SAML_IDP_RESPONSE.starts_with("<?xml"));
    let assertion = parse_xml(SAML_IDP_RESPONSE).unwrap();
    assert_eq!(
        assertion.roles,
        [pair(
            "arn:aws:iam::123456789012:role/X",
            "arn:aws:iam::123456789012:saml-provider/Y"
        )]
    );
    assert_eq!(assertion.session_duration, Some(7200));
    assert_eq!(
        assertion.not_on_or_after,
        Some(datetime!(2026-11-28 10:11:13.669 UTC))
    );
}

// ---- roles ----

#[test]
fn role_values_in_either_order() {
    let role_first = format!("{},{}", role("A"), provider());
    let provider_first = format!("{},{}", provider(), role("B"));
    assert_eq!(
        roles_of(&response(&role_attribute(&[&role_first, &provider_first]))),
        [pair(&role("A"), &provider()), pair(&role("B"), &provider())]
    );
}

#[test]
fn govcloud_and_china_partitions() {
    let gov = "arn:aws-us-gov:iam::123456789012:role/Gov,\
                   arn:aws-us-gov:iam::123456789012:saml-provider/JumpCloud";
    let china = "arn:aws-cn:iam::123456789012:saml-provider/JumpCloud,\
                     arn:aws-cn:iam::123456789012:role/China";
    assert_eq!(
        roles_of(&response(&role_attribute(&[gov, china]))),
        [
            pair(
                "arn:aws-us-gov:iam::123456789012:role/Gov",
                "arn:aws-us-gov:iam::123456789012:saml-provider/JumpCloud"
            ),
            pair(
                "arn:aws-cn:iam::123456789012:role/China",
                "arn:aws-cn:iam::123456789012:saml-provider/JumpCloud"
            ),
        ]
    );
}

#[test]
fn roles_from_several_values_and_several_role_attributes_concatenate() {
    let value = |name: &str| format!("{},{}", role(name), provider());
    let attributes = format!(
        "{}{}{}",
        role_attribute(&[&value("A"), &value("B")]),
        attribute(ROLE_SESSION_NAME_ATTRIBUTE, &["alice"]),
        // A second Role attribute, repeating B: duplicates collapse.
        role_attribute(&[&value("C"), &value("B")]),
    );
    let names: Vec<String> = roles_of(&response(&attributes))
        .iter()
        .map(|r| r.role_arn.name().to_owned())
        .collect();
    assert_eq!(names, ["A", "B", "C"]);
}

#[test]
fn whitespace_around_arns_is_trimmed() {
    let value = format!("\n   {} ,\t{}  \n ", role("Spaced"), provider());
    assert_eq!(
        roles_of(&response(&role_attribute(&[&value]))),
        [pair(&role("Spaced"), &provider())]
    );
}

#[test]
fn entities_cdata_and_char_refs_in_values_are_decoded() {
    // `&#44;` is the comma; the session name carries an escaped ampersand.
    let value = format!("{}&#44;{}", role("Escaped"), provider());
    let cdata = format!("<![CDATA[{},{}]]>", role("Cdata"), provider());
    let attributes = format!(
        "{}{}",
        role_attribute(&[&value, &cdata]),
        attribute(
            ROLE_SESSION_NAME_ATTRIBUTE,
            &["alice&amp;bob&#x40;example.com"]
        )
    );
    let assertion = parse_xml(&response(&attributes)).unwrap();
    assert_eq!(
        assertion.roles,
        [
            pair(&role("Escaped"), &provider()),
            pair(&role("Cdata"), &provider())
        ]
    );
    assert_eq!(
        assertion.role_session_name.as_deref(),
        Some("alice&bob@example.com")
    );
}

#[test]
fn invalid_role_values_name_the_value() {
    let cases = [
        (role("Alone"), "exactly two ARNs"),
        (
            format!("{},{},{}", role("A"), provider(), role("B")),
            "exactly two ARNs",
        ),
        (
            format!("{},{}", role("A"), role("B")),
            "both ARNs are roles",
        ),
        (
            format!("{},{}", provider(), provider()),
            "both ARNs are SAML providers",
        ),
        // An 11-digit account, an unknown partition, the wrong service.
        (
            format!("arn:aws:iam::12345678901:role/A,{}", provider()),
            "12-digit ACCOUNT",
        ),
        (
            format!("arn:azure:iam::{ACCT}:role/A,{}", provider()),
            "12-digit ACCOUNT",
        ),
        (
            format!("arn:aws:sts::{ACCT}:role/A,{}", provider()),
            "12-digit ACCOUNT",
        ),
        (
            format!("arn:aws:iam::{ACCT}:role/,{}", provider()),
            "12-digit ACCOUNT",
        ),
    ];
    for (value, reason) in cases {
        let error = parse_xml(&response(&role_attribute(&[&value]))).unwrap_err();
        let SamlError::InvalidRole { value: shown, .. } = &error else {
            panic!("{value}: expected InvalidRole, got {error:?}");
        };
        assert_eq!(shown, &value);
        let message = error.to_string();
        assert!(message.contains(&value), "{message}");
        assert!(message.contains(reason), "{message}");
    }
}

#[test]
fn missing_role_attribute_points_at_the_jumpcloud_app() {
    let attributes = attribute(ROLE_SESSION_NAME_ATTRIBUTE, &["alice"]);
    let error = parse_xml(&response(&attributes)).unwrap_err();
    assert_eq!(error, SamlError::NoRoleAttribute);
    let message = error.to_string();
    assert!(message.contains(ROLE_ATTRIBUTE), "{message}");
    assert!(message.contains("saml2aws#743"), "{message}");
    // A Role attribute with no values offers nothing either.
    assert_eq!(
        parse_xml(&response(&role_attribute(&[]))).unwrap_err(),
        SamlError::NoRoleAttribute
    );
}

#[test]
fn roles_outside_the_attribute_statement_are_ignored() {
    // Advice may carry other assertions; their attributes are not ours. A Role attribute
    // outside any AttributeStatement does not count either.
    let real = format!("{},{}", role("Real"), provider());
    let advised = format!("{},{}", role("Advised"), provider());
    let xml = response(&role_attribute(&[&real])).replace(
        "<saml:AttributeStatement>",
        &format!(
            "<saml:Advice><saml:Assertion><saml:AttributeStatement>{}\
                 </saml:AttributeStatement></saml:Assertion></saml:Advice>{}\
                 <saml:AttributeStatement>",
            role_attribute(&[&advised]),
            role_attribute(&[&advised]),
        ),
    );
    assert_eq!(roles_of(&xml), [pair(&role("Real"), &provider())]);
}

#[test]
fn only_the_first_assertion_is_read() {
    let first = response(&role_attribute(&[&format!(
        "{},{}",
        role("First"),
        provider()
    )]));
    let second_assertion = {
        let other = response(&role_attribute(&[&format!(
            "{},{}",
            role("Second"),
            provider()
        )]));
        let start = other.find("<saml:Assertion").unwrap();
        let end = other.find("</samlp:Response>").unwrap();
        other[start..end].to_owned()
    };
    let xml = first.replace(
        "</samlp:Response>",
        &format!("{second_assertion}</samlp:Response>"),
    );
    assert_eq!(roles_of(&xml), [pair(&role("First"), &provider())]);
}

// ---- namespaces and envelope ----

#[test]
fn default_namespace_without_prefixes_and_no_declaration() {
    let xml = format!(
        r#"<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol"><Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><Subject><SubjectConfirmation><SubjectConfirmationData NotOnOrAfter="2030-01-02T03:04:05Z"/></SubjectConfirmation></Subject><AttributeStatement><Attribute Name="{ROLE_ATTRIBUTE}"><AttributeValue>{},{}</AttributeValue></Attribute><Attribute Name="{SESSION_DURATION_ATTRIBUTE}"><AttributeValue>900</AttributeValue></Attribute></AttributeStatement></Assertion></Response>"#,
        role("Plain"),
        provider()
    );
    let assertion = parse_xml(&xml).unwrap();
    assert_eq!(assertion.roles, [pair(&role("Plain"), &provider())]);
    assert_eq!(assertion.session_duration, Some(900));
    assert_eq!(
        assertion.not_on_or_after,
        Some(datetime!(2030-01-02 03:04:05 UTC))
    );
    // No namespace declarations at all still works: the walk goes by local names.
    let bare = xml
        .replace(r#" xmlns="urn:oasis:names:tc:SAML:2.0:protocol""#, "")
        .replace(r#" xmlns="urn:oasis:names:tc:SAML:2.0:assertion""#, "");
    assert_eq!(roles_of(&bare), [pair(&role("Plain"), &provider())]);
}

#[test]
fn line_wrapped_and_unpadded_base64() {
    let encoded = b64(SIGNED_ASSERTION);
    assert!(encoded.ends_with('='));
    let wrapped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| format!("{}\r\n", std::str::from_utf8(line).unwrap()))
        .collect();
    let expected = parse_xml(SIGNED_ASSERTION).unwrap();
    assert_eq!(parse_saml_response(&wrapped).unwrap(), expected);
    assert_eq!(
        parse_saml_response(encoded.trim_end_matches('=')).unwrap(),
        expected
    );
}

#[test]
fn encrypted_assertion_is_refused_with_advice() {
    let xml = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#;
    let error = parse_xml(xml).unwrap_err();
    assert_eq!(error, SamlError::EncryptedAssertion);
    assert!(error.to_string().contains("turn off assertion encryption"));
}

#[test]
fn response_without_assertion() {
    let ok = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:Response>"#;
    assert_eq!(parse_xml(ok).unwrap_err(), SamlError::NoAssertion);

    let refused = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:RequestDenied"/></samlp:StatusCode><samlp:StatusMessage>User is not assigned to this application</samlp:StatusMessage></samlp:Status></samlp:Response>"#;
    let error = parse_xml(refused).unwrap_err();
    assert_eq!(
        error,
        SamlError::IdpStatus {
            status: "urn:oasis:names:tc:SAML:2.0:status:Responder".to_owned(),
            message: Some("User is not assigned to this application".to_owned()),
        }
    );
    assert_eq!(
        error.to_string(),
        "the IdP refused to issue an assertion (status Responder): \
             User is not assigned to this application"
    );
}

// ---- malformed input ----

#[test]
fn garbage_base64() {
    for input in ["this is not base64!", "PD94bWw=gdmVy", "", " \n "] {
        let error = parse_saml_response(input).unwrap_err();
        assert!(
            matches!(error, SamlError::NotBase64 { .. }),
            "{input:?}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("the SAMLResponse is not valid base64")
        );
    }
}

#[test]
fn garbage_xml_reports_a_position() {
    let cases = [
        "just some text",
        "<samlp:Response><saml:Assertion></samlp:Response>",
        "<Response><Assertion>",
        "<Response attr=\"1\" attr=\"2\"/>",
        "<a/><b/>",
        "<!DOCTYPE x [<!ENTITY e \"boom\">]><Response>&e;</Response>",
        "<Response>&unknown;</Response>",
    ];
    for xml in cases {
        let error = parse_xml(xml).unwrap_err();
        assert!(
            matches!(error, SamlError::NotXml { .. }),
            "{xml}: {error:?}"
        );
        assert!(error.to_string().contains("at byte"), "{error}");
    }
    let SamlError::NotXml { position, .. } =
        parse_xml("<Response>\n<Assertion></Response>").unwrap_err()
    else {
        panic!("expected NotXml");
    };
    assert!(position >= 22, "mismatched end tag reported at {position}");
    // Not UTF-8 at all.
    let error = parse_saml_response(&STANDARD.encode([0x3c, 0xff, 0xfe, 0x3e])).unwrap_err();
    assert_eq!(
        error,
        SamlError::NotXml {
            position: 1,
            detail: "the document is not UTF-8".to_owned()
        }
    );
}

#[test]
fn an_unusable_session_duration_is_ignored_not_fatal() {
    // Admins type this attribute; an empty or non-numeric value must not cost the user
    // the whole assertion (saml2aws ignores it too): the configured duration applies.
    let role_value = format!("{},{}", role("A"), provider());
    for bad in ["12h", "-5", "3600.0", "", "  ", "99999999999"] {
        let attributes = format!(
            "{}{}",
            role_attribute(&[&role_value]),
            attribute(SESSION_DURATION_ATTRIBUTE, &[bad])
        );
        let assertion = parse_xml(&response(&attributes))
            .unwrap_or_else(|e| panic!("SessionDuration {bad:?} made the assertion unusable: {e}"));
        assert_eq!(assertion.session_duration, None, "{bad:?}");
        assert_eq!(assertion.roles, vec![pair(&role("A"), &provider())]);
    }
    let attributes = format!(
        "{}{}",
        role_attribute(&[&role_value]),
        attribute(SESSION_DURATION_ATTRIBUTE, &[" 43200 "])
    );
    assert_eq!(
        parse_xml(&response(&attributes)).unwrap().session_duration,
        Some(43200)
    );
    assert_eq!(
        parse_xml(&response(&role_attribute(&[&role_value])))
            .unwrap()
            .session_duration,
        None
    );
}

#[test]
fn not_on_or_after_with_and_without_fractions_and_conditions_fallback() {
    let xml = response(&role_attribute(&[&format!("{},{}", role("A"), provider())]));
    assert_eq!(
        parse_xml(&xml).unwrap().not_on_or_after,
        Some(datetime!(2026-11-28 10:05:00 UTC))
    );
    let fractional = xml.replace("2026-11-28T10:05:00Z", "2026-11-28T10:05:00.123456Z");
    assert_eq!(
        parse_xml(&fractional).unwrap().not_on_or_after,
        Some(datetime!(2026-11-28 10:05:00.123456 UTC))
    );
    let offset = xml.replace("2026-11-28T10:05:00Z", "2026-11-28T11:05:00+01:00");
    assert_eq!(
        parse_xml(&offset).unwrap().not_on_or_after,
        Some(datetime!(2026-11-28 10:05:00 UTC))
    );
    // Without it on SubjectConfirmationData, Conditions' value is used.
    let fallback = xml.replace(r#"NotOnOrAfter="2026-11-28T10:05:00Z" "#, "");
    assert_eq!(
        parse_xml(&fallback).unwrap().not_on_or_after,
        Some(datetime!(2026-11-28 10:06:00 UTC))
    );
    let neither = fallback.replace(r#" NotOnOrAfter="2026-11-28T10:06:00Z""#, "");
    assert_eq!(parse_xml(&neither).unwrap().not_on_or_after, None);

    let bad = xml.replace("2026-11-28T10:05:00Z", "tomorrow");
    assert_eq!(
        parse_xml(&bad).unwrap_err(),
        SamlError::InvalidTimestamp {
            element: "SubjectConfirmationData",
            value: "tomorrow".to_owned()
        }
    );
}

// ---- the HTML page ----

#[test]
fn jumpcloud_page_fixture() {
    // The decoy in the <script> and the nameless submit input come first in the page.
    let secret = extract_saml_response(JUMPCLOUD_PAGE).unwrap();
    assert_eq!(secret.expose(), b64(SIGNED_ASSERTION));
    assert_eq!(
        parse_saml_response(secret.expose()).unwrap().roles[0]
            .role_arn
            .name(),
        "JumpCloud-Admin"
    );
}

#[test]
fn saml_idp_page_with_escaped_padding_on_its_own_line() {
    assert!(SAML_IDP_PAGE.contains("&#x3D;&#x3D;\""));
    let secret = extract_saml_response(SAML_IDP_PAGE).unwrap();
    assert_eq!(secret.expose(), b64(SIGNED_BOTH_SAML2));
    assert!(secret.expose().ends_with("=="));
    assert_eq!(
        parse_saml_response(secret.expose()).unwrap(),
        parse_xml(SIGNED_BOTH_SAML2).unwrap()
    );
}

#[test]
fn input_variants() {
    let cases = [
        // Upper case, single quotes, value first.
        "<FORM><INPUT VALUE='QUJD' TYPE=hidden NAME='SAMLResponse'></FORM>",
        // Unquoted value, self-closing, other attributes around.
        "<input type=hidden name=SAMLResponse value=QUJD />",
        // Character references and a line-wrapped value.
        "<input name=\"SAMLResponse\"\n   value=\"Q&#x55;\r\n&#74;D\">",
        // A nameless input and other named inputs first; the first SAMLResponse wins.
        "<input type=submit><input name=RelayState value=x>\
             <input name=SAMLResponse value=QUJD><input name=SAMLResponse value=WFla>",
        // An `<input` in a textarea or a comment is text, not a tag.
        "<textarea><input name=SAMLResponse value=bad></textarea>\
             <!-- <input name=SAMLResponse value=bad> --><input name=SAMLResponse value=QUJD>",
    ];
    for html in cases {
        let secret = extract_saml_response(html).unwrap_or_else(|e| panic!("{html}: {e}"));
        assert_eq!(secret.expose(), "QUJD", "{html}");
    }
}

#[test]
fn page_without_the_form() {
    let login_page = "<!DOCTYPE html><html><body><form action=/login method=post>\
            <input name=email><input type=password name=password><input type=submit>\
            </form></body></html>";
    for html in [
        login_page,
        "",
        "not even html",
        "<input name=SAMLResponseX value=QUJD>",
    ] {
        let error = extract_saml_response(html).unwrap_err();
        assert_eq!(error, SamlError::NoSamlResponse);
        let message = error.to_string();
        assert!(message.contains("`url`"), "{message}");
        assert!(message.contains("assigned"), "{message}");
    }
}

#[test]
fn empty_or_missing_value() {
    for html in [
        "<input name=SAMLResponse>",
        "<input name=SAMLResponse value=\"\">",
        "<input name=SAMLResponse value=\" \n \">",
    ] {
        assert_eq!(
            extract_saml_response(html).unwrap_err(),
            SamlError::EmptySamlResponse,
            "{html}"
        );
    }
}

// ---- choosing a role ----

fn multi_roles() -> Vec<RolePair> {
    parse_xml(SIGNED_MULTI_ROLE).unwrap().roles
}

#[test]
fn select_role_by_arn_and_by_name() {
    let roles = multi_roles();
    let by_arn = select_role(&roles, "arn:aws:iam::222222222222:role/Admin").unwrap();
    assert_eq!(by_arn, &roles[1]);
    let by_name = select_role(&roles, "ReadOnly").unwrap();
    assert_eq!(by_name, &roles[2]);
    // Names are case-sensitive, like IAM's.
    assert!(matches!(
        select_role(&roles, "readonly"),
        Err(SamlError::RoleNotInAssertion { .. })
    ));
    // A role with a path is found by its last segment.
    let deploy = parse_xml(SIGNED_BOTH_SAML2).unwrap().roles;
    assert_eq!(select_role(&deploy, "Deploy").unwrap(), &deploy[0]);
}

#[test]
fn select_role_with_an_ambiguous_name_lists_candidates() {
    let roles = multi_roles();
    let error = select_role(&roles, "Admin").unwrap_err();
    assert_eq!(
        error,
        SamlError::AmbiguousRole {
            wanted: "Admin".to_owned(),
            candidates: vec![
                "arn:aws:iam::111111111111:role/Admin".to_owned(),
                "arn:aws:iam::222222222222:role/Admin".to_owned(),
            ],
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("\n  arn:aws:iam::111111111111:role/Admin"),
        "{message}"
    );
    assert!(
        message.contains("\n  arn:aws:iam::222222222222:role/Admin"),
        "{message}"
    );
    assert!(!message.contains("ReadOnly"), "{message}");
}

#[test]
fn select_role_not_found_lists_what_is_offered() {
    let roles = multi_roles();
    for wanted in ["Billing", "arn:aws:iam::333333333333:role/Admin"] {
        let error = select_role(&roles, wanted).unwrap_err();
        let SamlError::RoleNotInAssertion { available, .. } = &error else {
            panic!("expected RoleNotInAssertion, got {error:?}");
        };
        assert_eq!(available.len(), 3);
        let message = error.to_string();
        assert!(message.contains(&format!("`{wanted}`")), "{message}");
        for role in &roles {
            assert!(message.contains(role.role_arn.as_str()), "{message}");
        }
    }
}

#[test]
fn default_role_choices() {
    let roles = multi_roles();
    assert_eq!(default_role(&roles, Some("ReadOnly")).unwrap(), &roles[2]);
    assert!(matches!(
        default_role(&roles, Some("Admin")),
        Err(SamlError::AmbiguousRole { .. })
    ));

    let error = default_role(&roles, None).unwrap_err();
    assert!(matches!(error, SamlError::RoleChoiceNeeded { ref available } if available.len() == 3));
    let message = error.to_string();
    assert!(
        message.contains("`role`") && message.contains("`--role`"),
        "{message}"
    );
    assert!(
        message.contains("arn:aws:iam::111111111111:role/ReadOnly"),
        "{message}"
    );

    let single = parse_xml(SIGNED_ASSERTION).unwrap().roles;
    assert_eq!(default_role(&single, None).unwrap(), &single[0]);
    assert!(matches!(
        default_role(&single, Some("Other")),
        Err(SamlError::RoleNotInAssertion { .. })
    ));
    // One role reachable through two providers is still one choice.
    let twice = [
        pair(&role("A"), &provider()),
        pair(
            &role("A"),
            &format!("arn:aws:iam::{ACCT}:saml-provider/Other"),
        ),
    ];
    assert_eq!(default_role(&twice, None).unwrap(), &twice[0]);
    assert_eq!(select_role(&twice, "A").unwrap(), &twice[0]);
    assert_eq!(
        default_role(&[], None).unwrap_err(),
        SamlError::NoRoleAttribute
    );
}

#[test]
fn resolve_role_before_and_after_an_assertion() {
    let admin = "arn:aws:iam::222222222222:role/Admin";
    let unknown = "arn:aws:iam::333333333333:role/Admin";
    // No assertion yet: an ARN is taken at its word, a name waits for one.
    // (role asked for, configured role, the ARN resolved without an assertion)
    let cases = [
        (Some(unknown), None, Some(unknown)),
        (None, Some(admin), Some(admin)),
        (Some("Admin"), Some(admin), None),
        (None, None, None),
    ];
    for (asked, configured, want) in cases {
        assert_eq!(
            resolve_role(&[], asked, configured),
            Ok(want.map(Into::into)),
            "{asked:?} {configured:?}"
        );
    }

    let roles = multi_roles();
    assert_eq!(
        resolve_role(&roles, Some(admin), None),
        Ok(Some(admin.into()))
    );
    // What is asked for wins over the configured role.
    assert_eq!(
        resolve_role(&roles, Some("ReadOnly"), Some(admin)),
        Ok(Some("arn:aws:iam::111111111111:role/ReadOnly".into()))
    );
    assert_eq!(
        resolve_role(&roles, None, Some(admin)),
        Ok(Some(admin.into()))
    );
    // Which error a refusal must be.
    type Is = fn(&SamlError) -> bool;
    let not_in_assertion: Is = |e| matches!(e, SamlError::RoleNotInAssertion { .. });
    let ambiguous: Is = |e| matches!(e, SamlError::AmbiguousRole { .. });
    let choice_needed: Is = |e| matches!(e, SamlError::RoleChoiceNeeded { .. });
    // (role asked for, configured role, the error it must be)
    let refused = [
        (Some(unknown), Some(admin), not_in_assertion),
        (None, Some(unknown), not_in_assertion),
        (Some("Admin"), None, ambiguous),
        (None, None, choice_needed),
    ];
    for (asked, configured, is_expected) in refused {
        let got = resolve_role(&roles, asked, configured);
        assert!(
            got.as_ref().is_err_and(is_expected),
            "{asked:?} {configured:?}: {got:?}"
        );
    }
}

// ---- secrecy ----

#[test]
fn errors_and_assertions_never_show_the_saml_response() {
    let encoded = b64(SIGNED_ASSERTION);
    // Any 24-character window of the base64 would be a leak.
    let windows: Vec<&str> = (0..encoded.len() - 24)
        .step_by(97)
        .map(|at| &encoded[at..at + 24])
        .collect();
    let assert_clean = |text: String| {
        for window in &windows {
            assert!(!text.contains(window), "leaked SAMLResponse: {text}");
        }
    };

    let mut corrupted = encoded.clone();
    corrupted.replace_range(2000..2001, "!");
    let truncated = b64(&SIGNED_ASSERTION[..SIGNED_ASSERTION.len() / 2]);
    let outcomes = [
        parse_saml_response(&corrupted),
        parse_saml_response(&encoded[..encoded.len() - 3]),
        parse_saml_response(&truncated),
        parse_saml_response(&encoded),
    ];
    for outcome in outcomes {
        match &outcome {
            Ok(assertion) => assert_clean(format!("{assertion:?}")),
            Err(error) => {
                assert_clean(format!("{error:?}"));
                assert_clean(error.to_string());
            }
        }
    }
    assert!(matches!(
        parse_saml_response(&corrupted),
        Err(SamlError::NotBase64 { .. })
    ));
    assert!(matches!(
        parse_saml_response(&truncated),
        Err(SamlError::NotXml { .. })
    ));

    let page = JUMPCLOUD_PAGE.replace("value=\"PD94", "value=\"!!PD94");
    let secret = extract_saml_response(JUMPCLOUD_PAGE).unwrap();
    assert_clean(format!("{secret:?} {secret}"));
    let error = parse_saml_response(extract_saml_response(&page).unwrap().expose()).unwrap_err();
    assert_clean(format!("{error:?} {error}"));
}
