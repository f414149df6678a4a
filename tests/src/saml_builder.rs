//! JumpCloud-like SAML 2.0 Responses for the fakes, and the HTML auto-post page around them.
//!
//! The XML has the shape of what JumpCloud's AWS connector sends (the team's lab sample
//! `lab/observed/sample_make_saml_response.xml`, outside this repository): `samlp:Response` › `saml:Assertion` with a
//! bearer `Subject`, `Conditions`, an `AuthnStatement` and an `AttributeStatement` holding the
//! AWS attributes. It is unsigned: neither moto nor the fake STS checks signatures.
//!
//! moto reads `Response/Assertion/AttributeStatement/Attribute[]` and crashes (HTTP 500) when
//! the Role attribute has more than one value, so multi-role specs are for the fake STS only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The Role attribute's name.
pub const ROLE_ATTRIBUTE: &str = "https://aws.amazon.com/SAML/Attributes/Role";
/// The RoleSessionName attribute's name.
pub const ROLE_SESSION_NAME_ATTRIBUTE: &str =
    "https://aws.amazon.com/SAML/Attributes/RoleSessionName";
/// The SessionDuration attribute's name.
pub const SESSION_DURATION_ATTRIBUTE: &str =
    "https://aws.amazon.com/SAML/Attributes/SessionDuration";
/// Where AWS wants the assertion posted; also the Destination and Recipient.
pub const AWS_SAML_ENDPOINT: &str = "https://signin.aws.amazon.com/saml";

/// What goes into a SAML Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSpec {
    /// The Issuer (JumpCloud uses `JumpCloud`).
    pub issuer: String,
    /// The NameID (the user's email).
    pub name_id: String,
    /// Role attribute values, each `role ARN,provider ARN` (or the reverse, to test that
    /// order too). One value per entry; none leaves the Role attribute out.
    pub roles: Vec<String>,
    /// The RoleSessionName attribute; `None` leaves it out.
    pub role_session_name: Option<String>,
    /// The SessionDuration attribute in seconds; `None` leaves it out.
    pub session_duration: Option<u32>,
    /// The SessionDuration attribute written verbatim instead, as an admin may have typed it
    /// (`""`, `"12h"`); wins over `session_duration`.
    pub session_duration_text: Option<String>,
    /// IssueInstant of the Response and the Assertion.
    pub issued_at: OffsetDateTime,
    /// How long the assertion is valid from `issued_at` (SubjectConfirmationData and
    /// Conditions NotOnOrAfter). Negative for an assertion that has already expired.
    pub valid_for: Duration,
    /// Destination, Recipient and Audience-adjacent target (AWS's SAML endpoint by default).
    pub destination: String,
}

impl SamlSpec {
    /// A spec for `email` with the given `(role ARN, provider ARN)` pairs in AWS's documented
    /// order, RoleSessionName = `email`, SessionDuration 3600, issued now, valid 5 minutes.
    pub fn new(email: &str, roles: &[(&str, &str)]) -> Self {
        Self {
            issuer: "JumpCloud".to_owned(),
            name_id: email.to_owned(),
            roles: roles
                .iter()
                .map(|(role, provider)| role_value(role, provider))
                .collect(),
            role_session_name: Some(email.to_owned()),
            session_duration: Some(3600),
            session_duration_text: None,
            issued_at: OffsetDateTime::now_utc(),
            valid_for: Duration::minutes(5),
            destination: AWS_SAML_ENDPOINT.to_owned(),
        }
    }

    /// When the assertion stops being valid.
    pub fn not_on_or_after(&self) -> OffsetDateTime {
        self.issued_at + self.valid_for
    }
}

/// A Role attribute value in AWS's documented order: `role ARN,provider ARN`.
pub fn role_value(role_arn: &str, provider_arn: &str) -> String {
    format!("{role_arn},{provider_arn}")
}

/// The SAML Response XML for `spec`.
pub fn build_saml_response(spec: &SamlSpec) -> String {
    let issued = timestamp(spec.issued_at);
    let not_before = timestamp(spec.issued_at - Duration::minutes(1));
    let not_on_or_after = timestamp(spec.not_on_or_after());
    let response_id = random_id();
    let assertion_id = random_id();
    let issuer = xml_escape(&spec.issuer);
    let destination = xml_escape(&spec.destination);
    let name_id = xml_escape(&spec.name_id);

    let mut attributes = String::new();
    if !spec.roles.is_empty() {
        push_attribute(&mut attributes, ROLE_ATTRIBUTE, &spec.roles);
    }
    if let Some(name) = &spec.role_session_name {
        push_attribute(
            &mut attributes,
            ROLE_SESSION_NAME_ATTRIBUTE,
            std::slice::from_ref(name),
        );
    }
    let session_duration = spec
        .session_duration_text
        .clone()
        .or_else(|| spec.session_duration.map(|s| s.to_string()));
    if let Some(value) = session_duration {
        push_attribute(&mut attributes, SESSION_DURATION_ATTRIBUTE, &[value]);
    }

    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{response_id}" Version="2.0" IssueInstant="{issued}" Destination="{destination}">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#,
            r#"<saml:Assertion ID="{assertion_id}" Version="2.0" IssueInstant="{issued}">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name_id}</saml:NameID>"#,
            r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{not_on_or_after}" Recipient="{destination}"/></saml:SubjectConfirmation></saml:Subject>"#,
            r#"<saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{not_on_or_after}"><saml:AudienceRestriction><saml:Audience>urn:amazon:webservices</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#,
            r#"<saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{assertion_id}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
            r#"<saml:AttributeStatement>{attributes}</saml:AttributeStatement>"#,
            r#"</saml:Assertion></samlp:Response>"#,
        ),
        response_id = response_id,
        issued = issued,
        destination = destination,
        issuer = issuer,
        assertion_id = assertion_id,
        name_id = name_id,
        not_on_or_after = not_on_or_after,
        not_before = not_before,
        attributes = attributes,
    )
}

/// Standard base64 (with padding), as the SAMLResponse form field carries it.
pub fn encode_base64(xml: &str) -> String {
    STANDARD.encode(xml.as_bytes())
}

/// The base64 SAMLResponse for `spec`.
pub fn saml_response_base64(spec: &SamlSpec) -> String {
    encode_base64(&build_saml_response(spec))
}

/// The auto-posting HTML page an IdP answers with, the way real IdPs write it: the `value`
/// on its own line, `=` escaped as `&#x3D;` (as Handlebars-based IdPs do), and a nameless
/// submit button for browsers without JavaScript.
pub fn saml_post_page(saml_response_b64: &str, relay_state: &str, action: &str) -> String {
    format!(
        concat!(
            "<!DOCTYPE html>\n",
            "<html>\n",
            "<head>\n",
            "  <meta charset=\"utf-8\">\n",
            "  <title>Redirecting to AWS</title>\n",
            "</head>\n",
            "<body onload=\"document.forms[0].submit()\">\n",
            "  <noscript><p>JavaScript is disabled. Press Continue to proceed.</p></noscript>\n",
            "  <form method=\"post\" action=\"{action}\">\n",
            "    <input type=\"hidden\" name=\"SAMLResponse\"\n",
            "      value=\"{saml}\" />\n",
            "    <input type=\"hidden\" name=\"RelayState\" value=\"{relay}\" />\n",
            "    <noscript><input type=\"submit\" value=\"Continue\" /></noscript>\n",
            "  </form>\n",
            "</body>\n",
            "</html>\n",
        ),
        action = html_escape(action),
        saml = html_escape(saml_response_b64),
        relay = html_escape(relay_state),
    )
}

/// Escapes text for an HTML attribute value, including `=` as `&#x3D;` like Handlebars.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '`' => out.push_str("&#x60;"),
            '=' => out.push_str("&#x3D;"),
            c => out.push(c),
        }
    }
    out
}

fn push_attribute(out: &mut String, name: &str, values: &[String]) {
    out.push_str(&format!(
        r#"<saml:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">"#,
        xml_escape(name)
    ));
    for value in values {
        out.push_str(&format!(
            r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
            xml_escape(value)
        ));
    }
    out.push_str("</saml:Attribute>");
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// SAML timestamps are UTC with milliseconds and a `Z`, as JumpCloud writes them.
fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// An XML ID: must not start with a digit, hence the underscore.
fn random_id() -> String {
    format!("_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;
    use quick_xml::events::Event;

    fn spec() -> SamlSpec {
        let mut s = SamlSpec::new(
            "alice@example.com",
            &[
                (
                    "arn:aws:iam::123456789012:role/X",
                    "arn:aws:iam::123456789012:saml-provider/JC",
                ),
                (
                    "arn:aws:iam::123456789012:role/Y",
                    "arn:aws:iam::123456789012:saml-provider/JC",
                ),
            ],
        );
        s.issued_at = time::macros::datetime!(2026-11-28 09:14:06.123456 UTC);
        s.session_duration = Some(7200);
        s
    }

    /// (element path by local names, text) of every text node, and every element's path.
    fn walk(xml: &str) -> (Vec<(String, String)>, Vec<String>) {
        let mut reader = Reader::from_str(xml);
        let mut path: Vec<String> = Vec::new();
        let (mut texts, mut elements) = (Vec::new(), Vec::new());
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) => {
                    path.push(e.name().as_ref().to_owned());
                    elements.push(path.join("/"));
                }
                Event::Empty(e) => {
                    let name = e.name().as_ref().to_owned();
                    elements.push(format!("{}/{name}", path.join("/")));
                }
                Event::End(_) => {
                    path.pop();
                }
                Event::Text(t) => {
                    let text = t.xml10_content().into_owned();
                    texts.push((path.join("/"), text));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        (texts, elements)
    }

    #[test]
    fn response_has_the_shape_moto_reads() {
        let xml = build_saml_response(&spec());
        let (texts, elements) = walk(&xml);
        let values: Vec<&str> = texts
            .iter()
            .filter(|(p, _)| {
                p == "samlp:Response/saml:Assertion/saml:AttributeStatement/saml:Attribute/saml:AttributeValue"
            })
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(
            values,
            [
                "arn:aws:iam::123456789012:role/X,arn:aws:iam::123456789012:saml-provider/JC",
                "arn:aws:iam::123456789012:role/Y,arn:aws:iam::123456789012:saml-provider/JC",
                "alice@example.com",
                "7200",
            ]
        );
        assert!(elements.iter().any(|e| e
            == "samlp:Response/saml:Assertion/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"));
        assert!(
            xml.contains(r#"NotOnOrAfter="2026-11-28T09:19:06.123Z""#),
            "{xml}"
        );
        assert!(xml.contains(r#"IssueInstant="2026-11-28T09:14:06.123Z""#));
    }

    #[test]
    fn optional_attributes_can_be_left_out() {
        let mut s = spec();
        s.roles.truncate(1);
        s.role_session_name = None;
        s.session_duration = None;
        let xml = build_saml_response(&s);
        assert!(!xml.contains(ROLE_SESSION_NAME_ATTRIBUTE));
        assert!(!xml.contains(SESSION_DURATION_ATTRIBUTE));
        assert_eq!(xml.matches("<saml:AttributeValue").count(), 1);
    }

    #[test]
    fn post_page_escapes_padding_and_puts_value_on_its_own_line() {
        let page = saml_post_page("QUJD+/x==", "", AWS_SAML_ENDPOINT);
        assert!(page.contains("name=\"SAMLResponse\"\n      value=\"QUJD+/x&#x3D;&#x3D;\" />"));
        assert!(page.contains("action=\"https://signin.aws.amazon.com/saml\""));
        assert_eq!(html_escape("a&b\"<>"), "a&amp;b&quot;&lt;&gt;");
    }

    #[test]
    fn base64_round_trips() {
        let xml = build_saml_response(&spec());
        let decoded = STANDARD.decode(saml_response_base64(&spec())).unwrap();
        // IDs are random, so compare everything but them.
        assert_eq!(decoded.len(), xml.len());
        assert!(String::from_utf8(decoded).unwrap().starts_with("<?xml"));
    }
}
