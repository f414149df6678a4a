//! samld's STS client ([`SdkSts`], on aws-sdk-sts) against the fake STS on loopback, and
//! against moto in an ignored test that scripts/interop.sh runs with
//! `SAMLD_MOTO_URL=http://127.0.0.1:PORT`.

use std::time::Duration;

use base64::Engine as _;
use samld::sts::{AssumeRequest, SdkSts, SdkStsOptions, StsApi, StsError, StsTarget};
use samld_proto::Secret;
use samld_tests::fake_sts::{FakeSts, FakeStsConfig, FakeStsFault};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ACCOUNT: &str = "123456789012";
const DEV_ROLE: &str = "arn:aws:iam::123456789012:role/Dev";
const OPS_ROLE: &str = "arn:aws:iam::123456789012:role/ops/Operator";
const PROVIDER: &str = "arn:aws:iam::123456789012:saml-provider/JumpCloud";
const SESSION_NAME: &str = "alice@example.com";

/// A minimal JumpCloud-like SAMLResponse (unsigned: neither the fake nor moto checks
/// signatures), base64 as the IdP's form carries it. Each Role value is written as given.
fn saml_response(role_values: &[String], valid_for: time::Duration) -> Secret {
    encode(&saml_xml(role_values, valid_for))
}

fn encode(xml: &str) -> Secret {
    Secret::new(base64::engine::general_purpose::STANDARD.encode(xml))
}

/// The XML of [`saml_response`], issued now.
fn saml_xml(role_values: &[String], valid_for: time::Duration) -> String {
    saml_xml_issued(role_values, OffsetDateTime::now_utc(), valid_for)
}

/// The XML of [`saml_response`], issued at `now`: Audience `urn:amazon:webservices`,
/// Recipient and Destination `https://signin.aws.amazon.com/saml`, NotBefore a minute before.
fn saml_xml_issued(
    role_values: &[String],
    now: OffsetDateTime,
    valid_for: time::Duration,
) -> String {
    let values: String = role_values
        .iter()
        .map(|v| format!("<saml2:AttributeValue>{v}</saml2:AttributeValue>"))
        .collect();
    let ts = |t: OffsetDateTime| t.format(&Rfc3339).unwrap();
    let xml = format!(
        r#"<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" Destination="https://signin.aws.amazon.com/saml" ID="_r1" IssueInstant="{now}" Version="2.0">
<saml2:Issuer>JumpCloud</saml2:Issuer>
<saml2p:Status><saml2p:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></saml2p:Status>
<saml2:Assertion ID="_a1" IssueInstant="{now}" Version="2.0">
<saml2:Issuer>JumpCloud</saml2:Issuer>
<saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{SESSION_NAME}</saml2:NameID>
<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml2:SubjectConfirmationData NotOnOrAfter="{end}" Recipient="https://signin.aws.amazon.com/saml"/></saml2:SubjectConfirmation></saml2:Subject>
<saml2:Conditions NotBefore="{start}" NotOnOrAfter="{end}"><saml2:AudienceRestriction><saml2:Audience>urn:amazon:webservices</saml2:Audience></saml2:AudienceRestriction></saml2:Conditions>
<saml2:AuthnStatement AuthnInstant="{now}" SessionIndex="_a1"/>
<saml2:AttributeStatement>
<saml2:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role">{values}</saml2:Attribute>
<saml2:Attribute Name="https://aws.amazon.com/SAML/Attributes/RoleSessionName"><saml2:AttributeValue>{SESSION_NAME}</saml2:AttributeValue></saml2:Attribute>
</saml2:AttributeStatement>
</saml2:Assertion>
</saml2p:Response>"#,
        now = ts(now),
        start = ts(now - time::Duration::minutes(1)),
        end = ts(now + valid_for),
    );
    xml
}

/// `xml` addressed to AWS in GovCloud or China instead: that partition's SAML entity ID as the
/// Audience and its sign-in endpoint as the Recipient (what the IdP app for such an account
/// is set up with).
fn for_partition(xml: &str, partition: &str) -> String {
    let (entity_id, endpoint) = match partition {
        "aws-us-gov" => (
            "urn:amazon:webservices:govcloud",
            "https://signin.amazonaws-us-gov.com/saml",
        ),
        "aws-cn" => (
            "urn:amazon:webservices:cn-north-1",
            "https://signin.amazonaws.cn/saml",
        ),
        _ => return xml.to_owned(),
    };
    xml.replace(">urn:amazon:webservices<", &format!(">{entity_id}<"))
        .replace("https://signin.aws.amazon.com/saml", endpoint)
}

fn pair(role: &str, provider: &str) -> String {
    format!("{role},{provider}")
}

/// An assertion listing Dev (role first) and Operator (provider first), valid 5 minutes.
fn fresh_assertion() -> Secret {
    saml_response(
        &[pair(DEV_ROLE, PROVIDER), pair(PROVIDER, OPS_ROLE)],
        time::Duration::minutes(5),
    )
}

fn request(role: &str, assertion: &Secret, duration_seconds: u32) -> AssumeRequest {
    AssumeRequest {
        role_arn: role.to_owned(),
        principal_arn: PROVIDER.to_owned(),
        saml_assertion: assertion.clone(),
        duration_seconds,
    }
}

fn target(endpoint: String) -> StsTarget {
    StsTarget {
        region: Some("us-east-1".to_owned()),
        endpoint: Some(endpoint),
    }
}

/// The production settings.
fn client() -> SdkSts {
    SdkSts::new()
}

/// Neither the assertion nor anything the fake issued may show in an error.
fn assert_no_secrets(err: &StsError, assertion: &Secret) {
    for text in [format!("{err}"), format!("{err:?}")] {
        assert!(
            !text.contains(assertion.expose()),
            "assertion leaked into {text}"
        );
    }
}

#[tokio::test]
async fn issued_credentials_are_mapped() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let assertion = fresh_assertion();
    let creds = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &assertion, 3600),
        )
        .await
        .expect("credentials");

    let issued = fake.issued();
    assert_eq!(issued.len(), 1);
    let issued = &issued[0];
    assert_eq!(creds.access_key_id, issued.access_key_id);
    assert!(creds.access_key_id.starts_with("ASIA") && creds.access_key_id.len() == 20);
    assert_eq!(creds.secret_access_key.expose(), issued.secret_access_key);
    assert_eq!(creds.session_token.expose(), issued.session_token);
    assert_eq!(creds.expiration, issued.expiration);
    let lifetime = creds.expiration - OffsetDateTime::now_utc();
    assert!(
        lifetime > time::Duration::seconds(3590) && lifetime <= time::Duration::seconds(3600),
        "{lifetime}"
    );
    assert_eq!(
        creds.assumed_role_arn.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/Dev/alice@example.com")
    );

    let received = fake.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].role_arn, DEV_ROLE);
    assert_eq!(received[0].principal_arn, PROVIDER);
    assert_eq!(
        received[0].assertion,
        assertion.expose(),
        "sent exactly as given"
    );
    assert_eq!(fake.durations(), [3600]);
}

#[tokio::test]
async fn one_assertion_serves_several_roles_and_the_lifetime_override_applies() {
    let fake =
        FakeSts::start(FakeStsConfig::default().with_credential_lifetime(Duration::from_secs(60)))
            .await;
    let sts = client();
    let at = target(fake.endpoint_url());
    let assertion = fresh_assertion();

    let dev = sts
        .assume_role_with_saml(&at, &request(DEV_ROLE, &assertion, 900))
        .await
        .unwrap();
    // Operator is listed provider-first in the assertion; STS accepts either order.
    let ops = sts
        .assume_role_with_saml(&at, &request(OPS_ROLE, &assertion, 900))
        .await
        .unwrap();

    assert_eq!(
        ops.assumed_role_arn.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/Operator/alice@example.com")
    );
    assert_ne!(dev.access_key_id, ops.access_key_id);
    assert_eq!(
        fake.issued_key_ids(),
        [dev.access_key_id.clone(), ops.access_key_id.clone()]
    );
    assert_eq!((fake.calls_for(DEV_ROLE), fake.calls_for(OPS_ROLE)), (1, 1));
    let assertions: Vec<String> = fake.requests().into_iter().map(|r| r.assertion).collect();
    assert_eq!(assertions, [assertion.expose(), assertion.expose()]);
    assert!(dev.expiration - OffsetDateTime::now_utc() <= time::Duration::seconds(60));
}

#[tokio::test]
async fn a_role_missing_from_the_assertion_is_access_denied() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let assertion = fresh_assertion();
    let other = "arn:aws:iam::123456789012:role/Admin";
    let err = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(other, &assertion, 3600),
        )
        .await
        .unwrap_err();

    assert_eq!(
        err,
        StsError::Service {
            code: "AccessDenied".into(),
            message: "Not authorized to perform sts:AssumeRoleWithSAML".into(),
            status: Some(403),
        }
    );
    assert!(!err.is_transient());
    assert_eq!(fake.calls(), 1, "a refusal is not retried");
    assert_no_secrets(&err, &assertion);
}

#[tokio::test]
async fn a_duration_above_the_role_maximum_is_recognised() {
    let fake = FakeSts::start(FakeStsConfig::default().with_max_session(DEV_ROLE, 3600)).await;
    let sts = client();
    let at = target(fake.endpoint_url());
    let assertion = fresh_assertion();

    let err = sts
        .assume_role_with_saml(&at, &request(DEV_ROLE, &assertion, 7200))
        .await
        .unwrap_err();
    assert!(err.is_duration_too_long(), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "STS refused: ValidationError: The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    );

    // What the daemon then does: ask again within the maximum.
    sts.assume_role_with_saml(&at, &request(DEV_ROLE, &assertion, 3600))
        .await
        .unwrap();
    assert_eq!(fake.durations(), [7200, 3600]);
}

#[tokio::test]
async fn an_expired_assertion_is_recognised() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let stale = saml_response(&[pair(DEV_ROLE, PROVIDER)], time::Duration::seconds(-1));
    let err = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &stale, 3600),
        )
        .await
        .unwrap_err();

    assert!(err.is_expired_assertion(), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("Token must be redeemed within 5 minutes of issuance"),
        "{err}"
    );
    assert_no_secrets(&err, &stale);
}

/// One call, one request: the SDK does not retry (samld's manager has its own schedule, and
/// a retry here would multiply every request its budget counts). Only the first request
/// meets `fault`, so a retry would have succeeded; the call's answer is the STS error,
/// classified as worth retrying later.
async fn answered_once(fake: &FakeSts, fault: FakeStsFault) -> StsError {
    let calls = fake.calls();
    fake.inject(fault);
    let err = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &fresh_assertion(), 3600),
        )
        .await
        .expect_err("the fault is the answer: no retry");
    assert_eq!(fake.calls(), calls + 1, "one request: {err:?}");
    assert!(err.is_transient(), "{err:?}");
    err
}

#[tokio::test]
async fn throttling_is_not_retried_by_the_sdk() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let err = answered_once(&fake, FakeStsFault::Throttling).await;
    assert_eq!(
        err,
        StsError::Service {
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
            status: Some(400)
        }
    );
    assert!(fake.issued().is_empty());
}

#[tokio::test]
async fn server_errors_are_transient_and_not_retried_by_the_sdk() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let err = answered_once(&fake, FakeStsFault::InternalFailure).await;
    assert!(
        matches!(&err, StsError::Service { code, status: Some(500), .. } if code == "InternalFailure"),
        "{err:?}"
    );
    let err = answered_once(&fake, FakeStsFault::ServiceUnavailable).await;
    assert!(
        matches!(
            &err,
            StsError::Service {
                status: Some(503),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(fake.issued().is_empty());
}

#[tokio::test]
async fn an_html_error_page_gives_a_clear_message() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    fake.inject(FakeStsFault::HtmlInternalError);
    let assertion = fresh_assertion();
    let err = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &assertion, 3600),
        )
        .await
        .unwrap_err();

    let StsError::Service {
        code,
        message,
        status,
    } = &err
    else {
        panic!("expected a service error with the status, got {err:?}");
    };
    assert_eq!((code.as_str(), *status), ("HTTP 500", Some(500)));
    assert!(
        message.contains("text/html") && message.contains("not an STS error document"),
        "{message}"
    );
    assert!(err.is_transient(), "a 5xx page is worth retrying later");
    assert!(
        err.to_string()
            .starts_with("STS refused: HTTP 500: the answer (text/html"),
        "{err}"
    );
    assert_no_secrets(&err, &assertion);
}

#[tokio::test]
async fn a_connection_reset_is_a_network_error_and_not_retried() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let err = answered_once(&fake, FakeStsFault::ConnectionReset).await;
    assert!(
        matches!(&err, StsError::Network { endpoint, .. } if *endpoint == fake.endpoint_url()),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_endpoint() {
    // A port held without listening: connections to it are refused.
    let closed = samld_tests::fixture::ClosedPort::new();
    let port = closed.port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let assertion = fresh_assertion();
    let err = client()
        .assume_role_with_saml(
            &target(endpoint.clone()),
            &request(DEV_ROLE, &assertion, 3600),
        )
        .await
        .unwrap_err();

    let StsError::Network {
        endpoint: named,
        reason,
    } = &err
    else {
        panic!("expected a network error, got {err:?}");
    };
    assert_eq!(named, &endpoint);
    assert!(
        reason.to_lowercase().contains("connection refused"),
        "{reason}"
    );
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .starts_with(&format!("could not reach STS at {endpoint}: ")),
        "{err}"
    );
    assert_no_secrets(&err, &assertion);
}

#[tokio::test]
async fn a_slow_sts_times_out_as_a_network_error() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    fake.inject(FakeStsFault::Delay(Duration::from_secs(30)));
    let sts = SdkSts::with_options(SdkStsOptions {
        operation_timeout: Duration::from_millis(300),
        ..SdkStsOptions::default()
    });
    let started = std::time::Instant::now();
    let err = sts
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &fresh_assertion(), 3600),
        )
        .await
        .unwrap_err();

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the operation timeout applies"
    );
    let StsError::Network { endpoint, reason } = &err else {
        panic!("expected a network error, got {err:?}");
    };
    assert_eq!(endpoint, &fake.endpoint_url());
    assert!(reason.contains("no answer within 0.3 s"), "{reason}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn issued_keys_identify_the_caller() {
    use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let creds = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &fresh_assertion(), 3600),
        )
        .await
        .unwrap();

    // A signed SDK client, as a credential_process consumer would build it.
    let signed_client = |key: &str, secret: &str, token: &str| {
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(fake.endpoint_url())
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .credentials_provider(Credentials::new(
                key,
                secret,
                Some(token.to_owned()),
                None,
                "test",
            ))
            .build();
        aws_sdk_sts::Client::from_conf(config)
    };
    let me = signed_client(
        &creds.access_key_id,
        creds.secret_access_key.expose(),
        creds.session_token.expose(),
    )
    .get_caller_identity()
    .send()
    .await
    .expect("known key");
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/Dev/alice@example.com")
    );
    assert_eq!(me.account(), Some(ACCOUNT));
    assert!(
        me.user_id()
            .is_some_and(|id| id.starts_with("AROA") && id.ends_with(":alice@example.com"))
    );

    let unknown = signed_client("ASIAUNKNOWNUNKNOWN00", "x", "y")
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&unknown),
        Some("InvalidClientTokenId")
    );
    assert_eq!(
        fake.caller_identity_keys(),
        [
            creds.access_key_id.clone(),
            "ASIAUNKNOWNUNKNOWN00".to_owned()
        ]
    );
}

/// moto 5.x as STS: checks nothing in the assertion but answers the real document shape
/// (with microseconds in Expiration, unlike real STS).
/// Needs moto: `scripts/interop.sh` (run by `scripts/test.sh` and CI) starts `moto_server`
/// and runs this with `--ignored`, and fails if it did not run.
#[tokio::test]
#[ignore = "needs moto: scripts/interop.sh runs it with SAMLD_MOTO_URL set"]
async fn against_moto() {
    let moto = samld_tests::fixture::moto_url();
    // moto crashes (HTML 500) on a multi-valued Role attribute: give it one value.
    let assertion = saml_response(&[pair(DEV_ROLE, PROVIDER)], time::Duration::minutes(5));
    let sts = client();
    let creds = sts
        .assume_role_with_saml(&target(moto.clone()), &request(DEV_ROLE, &assertion, 3600))
        .await
        .expect("moto issues credentials");
    assert!(creds.access_key_id.starts_with("ASIA") && creds.access_key_id.len() == 20);
    assert_eq!(creds.secret_access_key.expose().len(), 40);
    assert!(!creds.session_token.is_empty());
    assert_eq!(
        creds.assumed_role_arn.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/Dev/alice@example.com")
    );
    let lifetime = creds.expiration - OffsetDateTime::now_utc();
    assert!(
        lifetime > time::Duration::minutes(55) && lifetime <= time::Duration::hours(1),
        "{lifetime}"
    );

    // What moto does with what it cannot parse: an HTML 500.
    let garbage = Secret::new(base64::engine::general_purpose::STANDARD.encode("<not-saml/>"));
    let err = sts
        .assume_role_with_saml(&target(moto), &request(DEV_ROLE, &garbage, 3600))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StsError::Service {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_dropped_fake_stops_answering_even_on_pooled_connections() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let sts = client();
    let at = target(fake.endpoint_url());
    let assertion = fresh_assertion();
    sts.assume_role_with_saml(&at, &request(DEV_ROLE, &assertion, 3600))
        .await
        .unwrap();

    drop(fake);
    let err = sts
        .assume_role_with_saml(&at, &request(DEV_ROLE, &assertion, 3600))
        .await
        .unwrap_err();
    assert!(matches!(err, StsError::Network { .. }), "{err:?}");
}

/// A server on loopback that answers every request with `200 OK` and an XML body of `total`
/// bytes that never closes its elements, sent in chunks; it counts the bytes it managed to
/// hand to the connections (a client that stops reading makes the writes fail).
async fn endless_sts(
    total: u64,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // The request: headers, then Content-Length bytes of form body.
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                let body_start = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < body_start + length {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut left = total;
                let mut first = true;
                while left > 0 {
                    let n = left.min(64 * 1024) as usize;
                    let mut data = vec![b'a'; n];
                    if first {
                        let open = b"<AssumeRoleWithSAMLResponse><AssumeRoleWithSAMLResult><X>";
                        data[..open.len()].copy_from_slice(open);
                        first = false;
                    }
                    let mut chunk = format!("{n:x}\r\n").into_bytes();
                    chunk.extend_from_slice(&data);
                    chunk.extend_from_slice(b"\r\n");
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    left -= n as u64;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (url, sent, task)
}

#[tokio::test]
async fn an_endless_answer_is_cut_off_at_the_cap() {
    use samld::sts::MAX_STS_BYTES;
    const TOTAL: u64 = 256 * 1024 * 1024;
    let (url, sent, server) = endless_sts(TOTAL).await;
    let assertion = fresh_assertion();
    let err = client()
        .assume_role_with_saml(&target(url.clone()), &request(DEV_ROLE, &assertion, 3600))
        .await
        .unwrap_err();
    let read = sent.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("{err}\nthe server handed {read} bytes to the connections");
    assert!(
        matches!(err, StsError::BadResponse { .. }) && !err.is_transient(),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!(
            "the answer to AssumeRoleWithSAML is larger than {} KiB, samld's limit for an STS \
             answer",
            MAX_STS_BYTES / 1024
        )) && err.to_string().contains(&url),
        "{err}"
    );
    // Each attempt (the SDK may retry a broken answer) stops at the cap; the rest of what the
    // server managed to send went into the kernel's socket buffers (a few MiB each).
    assert!(read < TOTAL / 4, "the server sent {read} of {TOTAL} bytes");
    assert_no_secrets(&err, &assertion);
    server.abort();
}

/// An HTTP client for [`SdkSts`] that sends every request to `fake` instead of the host the
/// SDK resolved (a real `sts….amazonaws.com` name), keeping that host in the `Host` header the
/// way it would reach the real service, and records it. The fake STS judges the request by
/// that header, so the endpoint choice itself is what is tested, without the internet.
#[derive(Debug, Clone)]
struct RoutedToFake {
    fake: std::net::SocketAddr,
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    hosts: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RoutedToFake {
    fn new(fake: &FakeSts) -> Self {
        Self {
            fake: fake.addr(),
            inner: aws_smithy_http_client::Builder::new().build_http(),
            hosts: Default::default(),
        }
    }

    fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }
}

impl aws_smithy_runtime_api::client::http::HttpClient for RoutedToFake {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(RoutedConnector {
            fake: self.fake,
            inner: self.inner.http_connector(settings, components),
            hosts: std::sync::Arc::clone(&self.hosts),
        })
    }
}

#[derive(Debug)]
struct RoutedConnector {
    fake: std::net::SocketAddr,
    inner: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    hosts: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl aws_smithy_runtime_api::client::http::HttpConnector for RoutedConnector {
    fn call(
        &self,
        mut request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let original = url::Url::parse(request.uri()).expect("the SDK sends absolute URLs");
        let host = original.host_str().unwrap_or_default().to_owned();
        self.hosts.lock().unwrap().push(host.clone());
        let mut routed = original.clone();
        routed.set_scheme("http").unwrap();
        routed.set_host(Some(&self.fake.ip().to_string())).unwrap();
        routed.set_port(Some(self.fake.port())).unwrap();
        request.set_uri(routed.as_str()).expect("a valid URI");
        request.headers_mut().insert("host", host);
        self.inner.call(request)
    }
}

/// The role's partition decides the STS endpoint when the account names no region: a
/// GovCloud or China role sent to the commercial global endpoint fails with "Specified
/// provider doesn't exist" (saml2aws#89, #187). An explicit region still wins.
#[tokio::test]
async fn a_role_without_region_goes_to_its_partitions_sts() {
    const GOV_ROLE: &str = "arn:aws-us-gov:iam::123456789012:role/Dev";
    const GOV_PROVIDER: &str = "arn:aws-us-gov:iam::123456789012:saml-provider/JumpCloud";
    const CN_ROLE: &str = "arn:aws-cn:iam::123456789012:role/Dev";
    const CN_PROVIDER: &str = "arn:aws-cn:iam::123456789012:saml-provider/JumpCloud";
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let routed = RoutedToFake::new(&fake);
    let sts = SdkSts::with_http_client(
        aws_smithy_runtime_api::client::http::SharedHttpClient::new(routed.clone()),
        SdkStsOptions::default(),
    );
    let no_region = StsTarget {
        region: None,
        endpoint: None,
    };
    let assume = |role: &'static str, provider: &'static str, target: StsTarget| {
        let sts = &sts;
        // Each partition's app addresses the assertion to that partition's sign-in.
        let partition = role.split(':').nth(1).unwrap();
        let xml = saml_xml(&[pair(role, provider)], time::Duration::minutes(5));
        let assertion = encode(&for_partition(&xml, partition));
        async move {
            let request = AssumeRequest {
                role_arn: role.to_owned(),
                principal_arn: provider.to_owned(),
                saml_assertion: assertion,
                duration_seconds: 900,
            };
            sts.assume_role_with_saml(&target, &request).await
        }
    };

    let gov = assume(GOV_ROLE, GOV_PROVIDER, no_region.clone()).await;
    let cn = assume(CN_ROLE, CN_PROVIDER, no_region.clone()).await;
    let commercial = assume(DEV_ROLE, PROVIDER, no_region.clone()).await;
    let east = StsTarget {
        region: Some("us-gov-east-1".to_owned()),
        endpoint: None,
    };
    let explicit = assume(GOV_ROLE, GOV_PROVIDER, east).await;

    assert_eq!(
        routed.hosts(),
        [
            "sts.us-gov-west-1.amazonaws.com",
            "sts.cn-north-1.amazonaws.com.cn",
            "sts.amazonaws.com",
            "sts.us-gov-east-1.amazonaws.com",
        ]
    );
    let gov = gov.expect("a GovCloud role with no region");
    assert_eq!(
        gov.assumed_role_arn.as_deref(),
        Some("arn:aws-us-gov:sts::123456789012:assumed-role/Dev/alice@example.com")
    );
    cn.expect("a China role with no region");
    commercial.expect("a commercial role with no region");
    explicit.expect("a GovCloud role with an explicit region");
}

/// The fake STS refuses a role of another partition than the STS host it was sent to, as
/// the real one does; the test above relies on it.
#[tokio::test]
async fn a_govcloud_role_at_the_commercial_endpoint_is_an_unknown_provider() {
    const GOV_ROLE: &str = "arn:aws-us-gov:iam::123456789012:role/Dev";
    const GOV_PROVIDER: &str = "arn:aws-us-gov:iam::123456789012:saml-provider/JumpCloud";
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let routed = RoutedToFake::new(&fake);
    let sts = SdkSts::with_http_client(
        aws_smithy_runtime_api::client::http::SharedHttpClient::new(routed.clone()),
        SdkStsOptions::default(),
    );
    let xml = saml_xml(&[pair(GOV_ROLE, GOV_PROVIDER)], time::Duration::minutes(5));
    let assertion = encode(&for_partition(&xml, "aws-us-gov"));
    let commercial = StsTarget {
        region: Some("us-east-1".to_owned()),
        endpoint: None,
    };
    let err = sts
        .assume_role_with_saml(&commercial, &request(GOV_ROLE, &assertion, 900))
        .await
        .unwrap_err();
    assert_eq!(routed.hosts(), ["sts.us-east-1.amazonaws.com"]);
    match &err {
        StsError::Service { code, message, .. } => {
            assert_eq!(code, "InvalidIdentityToken");
            assert!(
                message.contains("Specified provider doesn't exist"),
                "{message}"
            );
        }
        other => panic!("expected InvalidIdentityToken, got {other:?}"),
    }
    assert_no_secrets(&err, &assertion);
}

/// Sends `xml` for Dev to the fake STS; the error if refused.
async fn refusal(xml: &str) -> Option<StsError> {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let assertion = encode(xml);
    let result = client()
        .assume_role_with_saml(
            &target(fake.endpoint_url()),
            &request(DEV_ROLE, &assertion, 900),
        )
        .await;
    result
        .err()
        .inspect(|err| assert_no_secrets(err, &assertion))
}

fn invalid_identity_token(err: Option<StsError>, expected: &str) {
    match err {
        Some(StsError::Service { code, message, .. }) => {
            assert_eq!(code, "InvalidIdentityToken", "{message}");
            assert!(message.contains(expected), "{message}");
        }
        other => panic!("expected InvalidIdentityToken, got {other:?}"),
    }
}

/// The assertion must be meant for AWS: the IAM User Guide requires a Recipient matching the
/// sign-in endpoint and an Audience naming AWS. An assertion for another service provider is
/// refused, which is what stops an IdP's assertion for app X being replayed into AWS.
#[tokio::test]
async fn an_assertion_for_another_audience_or_recipient_is_refused() {
    let good = saml_xml(&[pair(DEV_ROLE, PROVIDER)], time::Duration::minutes(5));
    assert!(refusal(&good).await.is_none(), "the unmodified assertion");
    // The sign-in endpoint itself, and a regional one, are accepted as the Audience too.
    for audience in [
        "https://signin.aws.amazon.com/saml",
        "https://us-east-2.signin.aws.amazon.com/saml",
    ] {
        let xml = good.replace(">urn:amazon:webservices<", &format!(">{audience}<"));
        assert!(refusal(&xml).await.is_none(), "{audience}");
    }

    let other_audience = good.replace(
        ">urn:amazon:webservices<",
        ">https://app.example.com/saml/metadata<",
    );
    invalid_identity_token(refusal(&other_audience).await, "audience");
    let govcloud_audience = good.replace(
        ">urn:amazon:webservices<",
        ">urn:amazon:webservices:govcloud<",
    );
    invalid_identity_token(refusal(&govcloud_audience).await, "audience");
    let other_recipient = good.replace(
        r#"Recipient="https://signin.aws.amazon.com/saml""#,
        r#"Recipient="https://app.example.com/acs""#,
    );
    invalid_identity_token(refusal(&other_recipient).await, "Recipient");
    let lookalike = good.replace(
        r#"Recipient="https://signin.aws.amazon.com/saml""#,
        r#"Recipient="https://signin.aws.amazon.com.evil.example/saml""#,
    );
    invalid_identity_token(refusal(&lookalike).await, "Recipient");
    let no_recipient = good.replace(r#" Recipient="https://signin.aws.amazon.com/saml""#, "");
    invalid_identity_token(refusal(&no_recipient).await, "no Recipient");
}

/// Redeemed within 5 minutes of issuance, not before NotBefore (allowing for clock skew).
#[tokio::test]
async fn an_assertion_is_redeemed_within_its_window() {
    let now = OffsetDateTime::now_utc();
    // Issued six minutes ago, its NotOnOrAfter still ahead: too old all the same.
    let old = saml_xml_issued(
        &[pair(DEV_ROLE, PROVIDER)],
        now - time::Duration::minutes(6),
        time::Duration::minutes(10),
    );
    let err = refusal(&old).await.expect("refused");
    assert!(err.is_expired_assertion(), "{err:?}");

    // The IdP's clock runs ahead: NotBefore a minute in the future is within the skew, ten
    // minutes is not.
    let ahead = |by: time::Duration| {
        saml_xml_issued(
            &[pair(DEV_ROLE, PROVIDER)],
            now + by,
            time::Duration::minutes(5),
        )
    };
    // IssueInstant in the future is not "too old"; NotBefore is a minute before it.
    assert!(refusal(&ahead(time::Duration::minutes(2))).await.is_none());
    invalid_identity_token(
        refusal(&ahead(time::Duration::minutes(10))).await,
        "not yet valid",
    );
}

/// Real STS redeems one assertion several times while it is valid (saml2aws#526: "the SAML
/// assertion can be sent to AWS repeatedly to create multiple sessions to different AWS
/// accounts and AWS roles"; saml2aws --cache-saml relies on it), so the fake does too: the
/// same role twice, and another role.
#[tokio::test]
async fn one_assertion_is_redeemed_again_while_valid() {
    let fake = FakeSts::start(FakeStsConfig::default()).await;
    let sts = client();
    let at = target(fake.endpoint_url());
    let assertion = fresh_assertion();
    for role in [DEV_ROLE, DEV_ROLE, OPS_ROLE] {
        sts.assume_role_with_saml(&at, &request(role, &assertion, 900))
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    assert_eq!(fake.issued_count(), 3);
}
