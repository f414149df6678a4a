//! SAML: the SAMLResponse form in JumpCloud's HTML page, and the assertion inside it.
//!
//! Two steps, kept apart so each fails with its own message: [`extract_saml_response`] finds
//! the base64 blob in the IdP's auto-post page, and [`parse_saml_response`] reads what samld
//! needs from it (the roles on offer, SessionDuration, RoleSessionName, the expiry).
//! [`select_role`], [`default_role`] and [`resolve_role`] then pick the role to assume.
//!
//! Nothing here verifies the signature or the validity window: STS does both when it gets the
//! assertion, and a second opinion on the client side could only disagree with it. The parser
//! is deliberately lenient about the envelope (any namespace prefix, signed or not, with or
//! without an XML declaration) and strict about the values AWS acts on (the role ARNs).
//!
//! The SAMLResponse is a bearer credential for as long as it is valid, so it never appears in
//! an error or in Debug output, and the decoded copies made here are wiped after use.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use html5gum::{DefaultEmitter, Token, Tokenizer};
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use samld_config::{RoleArn, is_saml_provider_arn};
use samld_proto::Secret;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::{Zeroize, Zeroizing};

/// The attribute whose values are `role ARN, SAML provider ARN` pairs.
const ROLE_ATTRIBUTE: &str = "https://aws.amazon.com/SAML/Attributes/Role";
/// The attribute STS uses as the session name.
const ROLE_SESSION_NAME_ATTRIBUTE: &str = "https://aws.amazon.com/SAML/Attributes/RoleSessionName";
/// The attribute capping the session length, in seconds.
const SESSION_DURATION_ATTRIBUTE: &str = "https://aws.amazon.com/SAML/Attributes/SessionDuration";
/// The status a Response carries when the IdP issued an assertion.
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// One `role ARN, SAML provider ARN` pair from the Role attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePair {
    /// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`; its name is what users usually type.
    pub role_arn: RoleArn,
    /// `arn:PARTITION:iam::ACCOUNT:saml-provider/NAME`.
    pub principal_arn: String,
}

/// What samld needs from an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// Every role offered, in document order.
    pub roles: Vec<RolePair>,
    /// The SessionDuration attribute, in seconds.
    pub session_duration: Option<u32>,
    /// The RoleSessionName attribute.
    pub role_session_name: Option<String>,
    /// SubjectConfirmationData/@NotOnOrAfter (else Conditions/@NotOnOrAfter).
    pub not_on_or_after: Option<OffsetDateTime>,
    /// Subject/NameID: who the IdP signed in (an email address at JumpCloud), trimmed.
    pub subject: Option<String>,
}

/// Why a SAML page or assertion could not be used.
///
/// No variant holds the SAMLResponse or any part of it; role ARNs and attribute values other
/// than the response itself are not secret and are shown to help the user fix their setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlError {
    /// The page has no SAMLResponse input.
    NoSamlResponse,
    /// The page has a SAMLResponse input, but its value is missing or empty.
    EmptySamlResponse,
    /// The SAMLResponse is not valid base64.
    NotBase64 {
        /// What is wrong with it (never the value itself).
        detail: String,
    },
    /// The decoded SAMLResponse is not well-formed XML.
    NotXml {
        /// Byte offset in the decoded document where the problem was found.
        position: u64,
        /// The parser's description of the problem.
        detail: String,
    },
    /// The Response holds an EncryptedAssertion, which samld cannot read.
    EncryptedAssertion,
    /// The IdP answered with a non-success status and no assertion.
    IdpStatus {
        /// The StatusCode's `Value` URI.
        status: String,
        /// The StatusMessage, when there is one.
        message: Option<String>,
    },
    /// The Response has no Assertion element.
    NoAssertion,
    /// The assertion has no (non-empty) `https://aws.amazon.com/SAML/Attributes/Role` attribute.
    NoRoleAttribute,
    /// A Role value is not a role ARN / SAML provider ARN pair.
    InvalidRole {
        /// The offending value (ARNs are not secret).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A NotOnOrAfter attribute is not an RFC 3339 timestamp.
    InvalidTimestamp {
        /// Which element carries it (`SubjectConfirmationData` or `Conditions`).
        element: &'static str,
        /// The attribute's value.
        value: String,
    },
    /// The wanted role is not among those the assertion offers.
    RoleNotInAssertion {
        /// The role ARN or name asked for.
        wanted: String,
        /// The role ARNs the assertion offers.
        available: Vec<String>,
    },
    /// A role name matches roles in several accounts.
    AmbiguousRole {
        /// The role name asked for.
        wanted: String,
        /// The role ARNs with that name.
        candidates: Vec<String>,
    },
    /// The assertion offers several roles and none was configured or asked for.
    RoleChoiceNeeded {
        /// The role ARNs the assertion offers.
        available: Vec<String>,
    },
}

impl fmt::Display for SamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamlError::NoSamlResponse => f.write_str(
                "the IdP page for the AWS app has no SAMLResponse form field; check that the \
                 account's `url` is the IdP URL of the AWS app (JumpCloud: \
                 https://sso.jumpcloud.com/saml2/<app>) and that the user is assigned to that \
                 AWS app in JumpCloud; if both are right, JumpCloud served some other page (an \
                 outage or maintenance notice): try again later",
            ),
            SamlError::EmptySamlResponse => f.write_str(
                "the IdP page has a SAMLResponse form field, but it is empty; JumpCloud did not \
                 issue an assertion (is the user assigned to the AWS app?)",
            ),
            SamlError::NotBase64 { detail } => {
                write!(f, "the SAMLResponse is not valid base64: {detail}")
            }
            SamlError::NotXml { position, detail } => write!(
                f,
                "the SAMLResponse does not hold well-formed XML (at byte {position} of the \
                 decoded document): {detail}"
            ),
            SamlError::EncryptedAssertion => f.write_str(
                "the SAML assertion is encrypted, which samld does not support; ask the JumpCloud \
                 administrator to turn off assertion encryption for the AWS app (AWS itself does \
                 not need it)",
            ),
            SamlError::IdpStatus { status, message } => {
                let status = status.rsplit(':').next().unwrap_or(status);
                write!(f, "the IdP refused to issue an assertion (status {status})")?;
                match message {
                    Some(message) => write!(f, ": {message}"),
                    None => Ok(()),
                }
            }
            SamlError::NoAssertion => {
                f.write_str("the SAML response from the IdP contains no assertion")
            }
            SamlError::NoRoleAttribute => write!(
                f,
                "the SAML assertion offers no AWS role: the JumpCloud AWS app needs the \
                 `{ROLE_ATTRIBUTE}` attribute with values like \
                 `arn:aws:iam::ACCOUNT:role/NAME,arn:aws:iam::ACCOUNT:saml-provider/NAME` \
                 (see saml2aws#743)"
            ),
            SamlError::InvalidRole { value, reason } => write!(
                f,
                "the SAML assertion's Role attribute has the value `{value}`, which is not a role \
                 and SAML provider ARN pair: {reason}"
            ),
            SamlError::InvalidTimestamp { element, value } => write!(
                f,
                "the SAML assertion's {element} NotOnOrAfter is `{value}`, not an RFC 3339 \
                 timestamp"
            ),
            SamlError::RoleNotInAssertion { wanted, available } => {
                write!(f, "role `{wanted}` is not offered by the IdP; it offers:")?;
                write_list(f, available)
            }
            SamlError::AmbiguousRole { wanted, candidates } => {
                write!(
                    f,
                    "role name `{wanted}` exists in several accounts; give the full ARN, one of:"
                )?;
                write_list(f, candidates)
            }
            SamlError::RoleChoiceNeeded { available } => {
                f.write_str(
                    "the IdP offers several roles; set `role` in the account's config or pass \
                     `--role` (a role ARN or name), one of:",
                )?;
                write_list(f, available)
            }
        }
    }
}

impl std::error::Error for SamlError {}

/// One role ARN per line, indented, for the role-listing errors.
fn write_list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for item in items {
        write!(f, "\n  {item}")?;
    }
    Ok(())
}

/// Takes the SAMLResponse value (base64) from the auto-post form of the IdP's HTML page.
///
/// The first `<input>` named `SAMLResponse` wins; inputs without a name (a submit button) are
/// skipped rather than treated as an error, unlike saml2aws. Character references are decoded
/// by the tokenizer (saml-idp escapes the base64 padding as `&#x3D;`), and whitespace is dropped
/// from the value so that line-wrapped base64 comes out as the single line STS expects.
pub fn extract_saml_response(html: &str) -> Result<Secret, SamlError> {
    let mut emitter = DefaultEmitter::default();
    // Treat script, style and textarea bodies as text: otherwise an `<input` inside a script
    // string would be taken for a tag.
    emitter.naively_switch_states(true);
    for token in Tokenizer::new_with_emitter(html, emitter) {
        let Ok(Token::StartTag(mut tag)) = token else {
            continue;
        };
        // The tokenizer lowercases tag and attribute names, so `<INPUT NAME=…>` is covered.
        // The field name is compared without regard to case too: samld reads the value
        // rather than re-posting the form, so only the value matters.
        if tag.name.as_slice() != b"input"
            || !tag
                .attributes
                .get(b"name".as_slice())
                .is_some_and(|name| name.value.eq_ignore_ascii_case(b"SAMLResponse"))
        {
            continue;
        }
        // Take the value out of the tag rather than copying it, so the only copy left is the
        // one the Secret wipes.
        let value = tag
            .attributes
            .remove(b"value".as_slice())
            .map(|value| value.value.0)
            .unwrap_or_default();
        return secret_from_value(value);
    }
    Err(SamlError::NoSamlResponse)
}

/// Turns the raw attribute bytes into a whitespace-free Secret.
fn secret_from_value(mut value: Vec<u8>) -> Result<Secret, SamlError> {
    value.retain(|byte| !byte.is_ascii_whitespace());
    if value.is_empty() {
        return Err(SamlError::EmptySamlResponse);
    }
    String::from_utf8(value).map(Secret::new).map_err(|error| {
        error.into_bytes().zeroize();
        SamlError::NotBase64 {
            detail: "it contains non-ASCII characters".to_owned(),
        }
    })
}

/// Decodes and parses a base64 SAMLResponse.
///
/// Whitespace inside the base64 is ignored, and padding may be present or not.
pub fn parse_saml_response(base64: &str) -> Result<Assertion, SamlError> {
    let xml = decode_base64(base64)?;
    let text = std::str::from_utf8(&xml).map_err(|error| SamlError::NotXml {
        position: error.valid_up_to() as u64,
        detail: "the document is not UTF-8".to_owned(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    AssertionParser::default().parse(text)
}

/// Standard-alphabet base64 with embedded whitespace (line wrapping) removed.
fn decode_base64(base64: &str) -> Result<Zeroizing<Vec<u8>>, SamlError> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        base64
            .bytes()
            .filter(|byte| !byte.is_ascii_whitespace())
            .collect(),
    );
    if compact.is_empty() {
        return Err(SamlError::NotBase64 {
            detail: "it is empty".to_owned(),
        });
    }
    STANDARD_PAD_INDIFFERENT
        .decode(compact.as_slice())
        .map(Zeroizing::new)
        .map_err(|error| SamlError::NotBase64 {
            // base64's own messages quote the offending byte; the offset is enough to debug
            // with and keeps every character of the credential out of the error.
            detail: match error {
                base64::DecodeError::InvalidByte(offset, _) => {
                    format!("invalid character at offset {offset}")
                }
                base64::DecodeError::InvalidLength(_) => {
                    "its length is not that of base64 (truncated?)".to_owned()
                }
                base64::DecodeError::InvalidLastSymbol { offset, .. } => {
                    format!("invalid last character at offset {offset} (truncated?)")
                }
                base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
            },
        })
}

/// The elements the parser cares about, by local name (any namespace prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Response,
    Status,
    StatusCode,
    StatusMessage,
    Assertion,
    EncryptedAssertion,
    Subject,
    NameId,
    SubjectConfirmation,
    SubjectConfirmationData,
    Conditions,
    AttributeStatement,
    Attribute,
    AttributeValue,
    Other,
}

impl Node {
    fn from_local_name(name: &str) -> Node {
        match name {
            "Response" => Node::Response,
            "Status" => Node::Status,
            "StatusCode" => Node::StatusCode,
            "StatusMessage" => Node::StatusMessage,
            "Assertion" => Node::Assertion,
            "EncryptedAssertion" => Node::EncryptedAssertion,
            "Subject" => Node::Subject,
            "NameID" => Node::NameId,
            "SubjectConfirmation" => Node::SubjectConfirmation,
            "SubjectConfirmationData" => Node::SubjectConfirmationData,
            "Conditions" => Node::Conditions,
            "AttributeStatement" => Node::AttributeStatement,
            "Attribute" => Node::Attribute,
            "AttributeValue" => Node::AttributeValue,
            _ => Node::Other,
        }
    }
}

/// Where the parser stands with respect to the (first) Assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssertionState {
    NotSeen,
    /// Inside it; the value is the stack length just after pushing the Assertion.
    Inside(usize),
    /// Past it: later Assertions are ignored.
    Done,
}

/// Which AWS attribute the current `Attribute` element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AwsAttribute {
    Role,
    RoleSessionName,
    SessionDuration,
    Other,
}

/// A streaming walk over the Response that keeps only what [`Assertion`] needs.
///
/// Elements are matched by their path of local names below the Assertion, so `ds:Signature`
/// contents, `Advice` (which may nest other assertions) and extensions are passed over
/// whatever their prefixes.
struct AssertionParser {
    stack: Vec<Node>,
    assertion: AssertionState,
    seen_root: bool,
    seen_encrypted: bool,
    status: Option<String>,
    status_message: Option<String>,
    attribute: Option<AwsAttribute>,
    role_attribute_seen: bool,
    /// Text being gathered for an element, with the stack depth of that element.
    text: Option<(usize, String)>,
    roles: Vec<RolePair>,
    session_duration: Option<u32>,
    role_session_name: Option<String>,
    subject_not_on_or_after: Option<OffsetDateTime>,
    conditions_not_on_or_after: Option<OffsetDateTime>,
    subject: Option<String>,
}

impl Default for AssertionParser {
    fn default() -> Self {
        AssertionParser {
            stack: Vec::with_capacity(16),
            assertion: AssertionState::NotSeen,
            seen_root: false,
            seen_encrypted: false,
            status: None,
            status_message: None,
            attribute: None,
            role_attribute_seen: false,
            text: None,
            roles: Vec::new(),
            session_duration: None,
            role_session_name: None,
            subject_not_on_or_after: None,
            conditions_not_on_or_after: None,
            subject: None,
        }
    }
}

impl AssertionParser {
    fn parse(mut self, xml: &str) -> Result<Assertion, SamlError> {
        let mut reader = Reader::from_str(xml);
        let not_xml = |reader: &Reader<&[u8]>, detail: String| SamlError::NotXml {
            position: reader.buffer_position(),
            detail,
        };
        loop {
            let event = reader.read_event().map_err(|error| SamlError::NotXml {
                position: reader.error_position(),
                detail: error.to_string(),
            })?;
            match event {
                Event::Start(ref start) | Event::Empty(ref start) => {
                    if self.stack.is_empty() && self.seen_root {
                        return Err(not_xml(&reader, "more than one root element".to_owned()));
                    }
                    self.seen_root = true;
                    // Check every element's attributes, not only those read below: a broken
                    // document should fail here, not later at STS with a vaguer message.
                    if let Some(Err(error)) = start.attributes().find(Result::is_err) {
                        return Err(not_xml(&reader, error.to_string()));
                    }
                    let node = Node::from_local_name(start.local_name().into_inner());
                    self.stack.push(node);
                    self.start(node, start).map_err(|error| match error {
                        StartError::Saml(error) => error,
                        StartError::Xml(error) => not_xml(&reader, error.to_string()),
                    })?;
                    if matches!(event, Event::Empty(_)) {
                        self.end()?;
                        self.stack.pop();
                    }
                }
                Event::End(_) => {
                    self.end()?;
                    self.stack.pop();
                }
                Event::Text(text) => {
                    if self.stack.is_empty() {
                        if !text.trim_ascii().is_empty() {
                            return Err(not_xml(
                                &reader,
                                "text outside the root element".to_owned(),
                            ));
                        }
                    } else if self.collecting() {
                        self.push_text(&text.xml10_content());
                    }
                }
                Event::CData(cdata) => self.push_text(&cdata.into_inner()),
                Event::GeneralRef(reference) => {
                    if self.stack.is_empty() {
                        return Err(not_xml(&reader, "text outside the root element".to_owned()));
                    }
                    let mut char_buf = [0; 4];
                    let text = match reference.resolve_char_ref() {
                        Ok(Some(ch)) => &*ch.encode_utf8(&mut char_buf),
                        Ok(None) => {
                            quick_xml::escape::resolve_xml_entity(&reference).ok_or_else(|| {
                                not_xml(&reader, format!("unknown entity `&{};`", &*reference))
                            })?
                        }
                        Err(error) => return Err(not_xml(&reader, error.to_string())),
                    };
                    self.push_text(text);
                }
                Event::DocType(_) => {
                    // SAML bindings forbid DTDs; refusing them also rules out entity tricks.
                    return Err(not_xml(
                        &reader,
                        "a DOCTYPE is not allowed in a SAML message".to_owned(),
                    ));
                }
                Event::Eof => break,
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
        }
        if !self.stack.is_empty() {
            return Err(SamlError::NotXml {
                position: reader.buffer_position(),
                detail: "the document ends before its elements are closed (truncated?)".to_owned(),
            });
        }
        if !self.seen_root {
            return Err(SamlError::NotXml {
                position: reader.buffer_position(),
                detail: "there is no root element".to_owned(),
            });
        }
        self.finish()
    }

    /// Handles an element start; the element is already on the stack.
    fn start(&mut self, node: Node, start: &BytesStart<'_>) -> Result<(), StartError> {
        match self.assertion {
            AssertionState::NotSeen => match (node, self.stack.as_slice()) {
                (Node::Assertion, _) => self.assertion = AssertionState::Inside(self.stack.len()),
                (Node::EncryptedAssertion, _) => self.seen_encrypted = true,
                (_, [Node::Response, Node::Status, Node::StatusCode]) if self.status.is_none() => {
                    self.status = attribute(start, "Value")?;
                }
                (_, [Node::Response, Node::Status, Node::StatusMessage]) => {
                    self.text = Some((self.stack.len(), String::new()));
                }
                _ => {}
            },
            AssertionState::Inside(depth) => match &self.stack[depth..] {
                [
                    Node::Subject,
                    Node::SubjectConfirmation,
                    Node::SubjectConfirmationData,
                ] if self.subject_not_on_or_after.is_none() => {
                    self.subject_not_on_or_after = timestamp(start, "SubjectConfirmationData")?;
                }
                [Node::Subject, Node::NameId] if self.subject.is_none() => {
                    self.text = Some((self.stack.len(), String::new()));
                }
                [Node::Conditions] if self.conditions_not_on_or_after.is_none() => {
                    self.conditions_not_on_or_after = timestamp(start, "Conditions")?;
                }
                [Node::AttributeStatement, Node::Attribute] => {
                    self.attribute = Some(match attribute(start, "Name")?.as_deref() {
                        Some(ROLE_ATTRIBUTE) => {
                            self.role_attribute_seen = true;
                            AwsAttribute::Role
                        }
                        Some(ROLE_SESSION_NAME_ATTRIBUTE) => AwsAttribute::RoleSessionName,
                        Some(SESSION_DURATION_ATTRIBUTE) => AwsAttribute::SessionDuration,
                        _ => AwsAttribute::Other,
                    });
                }
                [
                    Node::AttributeStatement,
                    Node::Attribute,
                    Node::AttributeValue,
                ] if self
                    .attribute
                    .is_some_and(|kind| kind != AwsAttribute::Other) =>
                {
                    self.text = Some((self.stack.len(), String::new()));
                }
                _ => {}
            },
            AssertionState::Done => {}
        }
        Ok(())
    }

    /// Handles an element end; the element is still on the stack.
    fn end(&mut self) -> Result<(), SamlError> {
        let depth = self.stack.len();
        let text = match self.text.take() {
            Some((text_depth, text)) if text_depth == depth => Some(text),
            other => {
                self.text = other;
                None
            }
        };
        match self.assertion {
            AssertionState::NotSeen => {
                if let Some(text) = text {
                    self.status_message = Some(text.trim().to_owned());
                }
            }
            AssertionState::Inside(assertion_depth) if assertion_depth == depth => {
                self.assertion = AssertionState::Done;
            }
            AssertionState::Inside(assertion_depth) => {
                let in_name_id = self.stack[assertion_depth..] == [Node::Subject, Node::NameId];
                match text {
                    Some(name) if in_name_id => {
                        self.subject = Some(name.trim().to_owned()).filter(|n| !n.is_empty());
                    }
                    Some(value) => self.attribute_value(&value)?,
                    None => {}
                }
                if self.stack[assertion_depth..] == [Node::AttributeStatement, Node::Attribute] {
                    self.attribute = None;
                }
            }
            AssertionState::Done => {}
        }
        Ok(())
    }

    /// Records one AttributeValue of the current AWS attribute.
    fn attribute_value(&mut self, value: &str) -> Result<(), SamlError> {
        match self.attribute {
            Some(AwsAttribute::Role) => {
                let pair = parse_role_pair(value)?;
                // The same pair listed twice (two JumpCloud groups granting one role) is one
                // choice, not an ambiguity.
                if !self.roles.contains(&pair) {
                    self.roles.push(pair);
                }
            }
            Some(AwsAttribute::RoleSessionName) if self.role_session_name.is_none() => {
                self.role_session_name = Some(value.trim().to_owned());
            }
            Some(AwsAttribute::SessionDuration) if self.session_duration.is_none() => {
                // Admins type this value; a typo must not cost the user the whole assertion.
                // Without it the configured duration applies, as in saml2aws.
                match value.trim().parse::<u32>() {
                    Ok(seconds) => self.session_duration = Some(seconds),
                    Err(_) => warn_unusable_session_duration(value.trim()),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether text at the current position belongs to a value being gathered (direct text of
    /// that element only; text of nested elements is not part of it).
    fn collecting(&self) -> bool {
        self.text
            .as_ref()
            .is_some_and(|(depth, _)| *depth == self.stack.len())
    }

    fn push_text(&mut self, content: &str) {
        if let Some((depth, text)) = &mut self.text
            && *depth == self.stack.len()
        {
            text.push_str(content);
        }
    }

    fn finish(self) -> Result<Assertion, SamlError> {
        if self.assertion == AssertionState::NotSeen {
            return Err(if self.seen_encrypted {
                SamlError::EncryptedAssertion
            } else {
                match self.status {
                    Some(status) if status != STATUS_SUCCESS => SamlError::IdpStatus {
                        status,
                        message: self.status_message.filter(|message| !message.is_empty()),
                    },
                    _ => SamlError::NoAssertion,
                }
            });
        }
        if !self.role_attribute_seen || self.roles.is_empty() {
            return Err(SamlError::NoRoleAttribute);
        }
        Ok(Assertion {
            roles: self.roles,
            session_duration: self.session_duration,
            role_session_name: self.role_session_name,
            not_on_or_after: self
                .subject_not_on_or_after
                .or(self.conditions_not_on_or_after),
            subject: self.subject,
        })
    }
}

/// Failures while handling a start tag: our own, or the XML layer's (which need the reader's
/// position, so they are turned into [`SamlError::NotXml`] by the caller).
enum StartError {
    Saml(SamlError),
    Xml(quick_xml::Error),
}

impl From<SamlError> for StartError {
    fn from(error: SamlError) -> Self {
        StartError::Saml(error)
    }
}

impl From<quick_xml::Error> for StartError {
    fn from(error: quick_xml::Error) -> Self {
        StartError::Xml(error)
    }
}

impl From<quick_xml::events::attributes::AttrError> for StartError {
    fn from(error: quick_xml::events::attributes::AttrError) -> Self {
        StartError::Xml(error.into())
    }
}

/// Longest part of an unusable SessionDuration value shown in the warning.
const MAX_SHOWN_DURATION_CHARS: usize = 40;

/// Says that the SessionDuration attribute was ignored, and why. The value is an admin's
/// setting, not a secret, but it comes from the network, so only its start is shown, escaped.
fn warn_unusable_session_duration(value: &str) {
    let shown: String = value.chars().take(MAX_SHOWN_DURATION_CHARS).collect();
    let cut = if shown.len() < value.len() { "…" } else { "" };
    tracing::warn!(
        "the SAML assertion's SessionDuration attribute is {shown:?}{cut}, not a whole number \
         of seconds: ignored, the configured session_duration applies (fix the attribute in \
         the JumpCloud app's settings)"
    );
}

/// The unescaped value of the unprefixed attribute `name` (SAML's own attributes are all
/// unqualified).
fn attribute(start: &BytesStart<'_>, name: &str) -> Result<Option<String>, StartError> {
    for attr in start.attributes() {
        let attr = attr?;
        if attr.key.into_inner() == name {
            return Ok(Some(
                attr.normalized_value(XmlVersion::Implicit1_0)?.into_owned(),
            ));
        }
    }
    Ok(None)
}

/// The NotOnOrAfter attribute of `element`, parsed.
fn timestamp(
    start: &BytesStart<'_>,
    element: &'static str,
) -> Result<Option<OffsetDateTime>, StartError> {
    let Some(value) = attribute(start, "NotOnOrAfter")? else {
        return Ok(None);
    };
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map(Some)
        .map_err(|_| StartError::Saml(SamlError::InvalidTimestamp { element, value }))
}

/// What an ARN in a Role value names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IamResource {
    Role(RoleArn),
    SamlProvider,
}

/// A role ARN or a SAML provider ARN; anything else, including a malformed partition or
/// account, is `None`.
fn classify_arn(arn: &str) -> Option<IamResource> {
    match arn.parse::<RoleArn>() {
        Ok(role) => Some(IamResource::Role(role)),
        Err(_) => is_saml_provider_arn(arn).then_some(IamResource::SamlProvider),
    }
}

/// Parses one Role value: two ARNs separated by a comma, in either order.
fn parse_role_pair(value: &str) -> Result<RolePair, SamlError> {
    let invalid = |reason| SamlError::InvalidRole {
        value: value.trim().to_owned(),
        reason,
    };
    // Empty pieces are tolerated so that a trailing comma does not break a login.
    let mut arns = value
        .split(',')
        .map(str::trim)
        .filter(|arn| !arn.is_empty());
    let (Some(first), Some(second), None) = (arns.next(), arns.next(), arns.next()) else {
        return Err(invalid("expected exactly two ARNs separated by a comma"));
    };
    match (classify_arn(first), classify_arn(second)) {
        (Some(IamResource::Role(role_arn)), Some(IamResource::SamlProvider)) => Ok(RolePair {
            role_arn,
            principal_arn: second.to_owned(),
        }),
        (Some(IamResource::SamlProvider), Some(IamResource::Role(role_arn))) => Ok(RolePair {
            role_arn,
            principal_arn: first.to_owned(),
        }),
        (Some(IamResource::Role(_)), Some(IamResource::Role(_))) => Err(invalid(
            "both ARNs are roles; one must be the SAML provider",
        )),
        (Some(IamResource::SamlProvider), Some(IamResource::SamlProvider)) => {
            Err(invalid("both ARNs are SAML providers; one must be a role"))
        }
        _ => Err(invalid(
            "expected arn:PARTITION:iam::ACCOUNT:role/NAME and \
             arn:PARTITION:iam::ACCOUNT:saml-provider/NAME, with a 12-digit ACCOUNT",
        )),
    }
}

/// The distinct role ARNs on offer, in document order, for error messages.
fn role_arns<'a>(roles: impl IntoIterator<Item = &'a RolePair>) -> Vec<String> {
    let mut arns: Vec<String> = Vec::new();
    for role in roles {
        if !arns.iter().any(|arn| role.role_arn == *arn) {
            arns.push(role.role_arn.to_string());
        }
    }
    arns
}

/// Picks the role `wanted` from those the assertion offers.
///
/// `wanted` is either a full role ARN (matched exactly) or a role name (the last segment of the
/// ARN, matched case-sensitively like IAM does). A name that exists in several accounts is an
/// error listing the candidate ARNs.
pub fn select_role<'a>(roles: &'a [RolePair], wanted: &str) -> Result<&'a RolePair, SamlError> {
    let not_found = || SamlError::RoleNotInAssertion {
        wanted: wanted.to_owned(),
        available: role_arns(roles),
    };
    if wanted.starts_with("arn:") {
        return roles
            .iter()
            .find(|role| role.role_arn == wanted)
            .ok_or_else(not_found);
    }
    let mut matches = roles.iter().filter(|role| role.role_arn.name() == wanted);
    let first = matches.next().ok_or_else(not_found)?;
    // The same role under two providers is still one role.
    if matches.all(|role| role.role_arn == first.role_arn) {
        Ok(first)
    } else {
        Err(SamlError::AmbiguousRole {
            wanted: wanted.to_owned(),
            candidates: role_arns(roles.iter().filter(|role| role.role_arn.name() == wanted)),
        })
    }
}

/// The role to use when the user did not pass one: the configured role if set, else the only
/// role on offer.
pub fn default_role<'a>(
    roles: &'a [RolePair],
    configured: Option<&str>,
) -> Result<&'a RolePair, SamlError> {
    if let Some(wanted) = configured {
        return select_role(roles, wanted);
    }
    match roles {
        [] => Err(SamlError::NoRoleAttribute),
        [only] => Ok(only),
        [first, rest @ ..] if rest.iter().all(|role| role.role_arn == first.role_arn) => Ok(first),
        _ => Err(SamlError::RoleChoiceNeeded {
            available: role_arns(roles),
        }),
    }
}

/// The role ARN a request means, if the roles known so far can tell: the role `asked` for
/// (an ARN or a name), else the `configured` one, else the only one on offer.
///
/// `roles` is empty until an assertion has been read. An ARN needs no assertion to be
/// recognised, only to be checked, so it is the answer then; a name, or no role at all, is
/// `None` until an assertion says what it means.
pub fn resolve_role(
    roles: &[RolePair],
    asked: Option<&str>,
    configured: Option<&str>,
) -> Result<Option<String>, SamlError> {
    if let Some(wanted) = asked.or(configured)
        && wanted.starts_with("arn:")
        && (roles.is_empty() || roles.iter().any(|pair| pair.role_arn == wanted))
    {
        return Ok(Some(wanted.to_owned()));
    }
    if roles.is_empty() {
        return Ok(None);
    }
    let picked = match asked {
        Some(wanted) => select_role(roles, wanted),
        None => default_role(roles, configured),
    };
    picked.map(|pair| Some(pair.role_arn.to_string()))
}

#[cfg(test)]
mod tests;
