use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use samld::sts::{AssumeRequest, SdkSts, SdkStsOptions, StsApi, StsError, StsTarget};
use samld_proto::Secret;

/// Distinctive enough that finding it in an error text can only be an echo.
const ASSERTION: &str = "PHNhbWxwOlJlc3BvbnNlIHhtbG5zOnNhbWxwPSJ1cm4i+/Zm9vYmFy==";

const STATUSES: [u16; 8] = [200, 200, 400, 403, 404, 500, 503, 302];
const CONTENT_TYPES: [&str; 2] = ["text/xml", "text/html"];

/// The answer the next request gets: status, content type, body.
static ANSWER: Mutex<(u16, &str, Vec<u8>)> = Mutex::new((200, "text/xml", Vec::new()));

/// Held for a whole call: the answer is shared, and the stable test's threads may call in
/// together.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
});

static STS: LazyLock<SdkSts> = LazyLock::new(|| {
    // samld's own client makes one request per call: the answer goes through once.
    SdkSts::with_http_client(SharedHttpClient::new(Answering), SdkStsOptions::default())
});

static TARGET: LazyLock<StsTarget> = LazyLock::new(|| StsTarget {
    region: Some("us-east-1".to_owned()),
    // An explicit endpoint, as in the tests: no endpoint rules, and the request never
    // leaves the process anyway.
    endpoint: Some("http://127.0.0.1:9".to_owned()),
});

/// The in-process HTTP client: every request gets [`ANSWER`]. (The SDK's own test client,
/// aws-smithy-http-client's `test-util`, would bring a protocol-test crate and its
/// dependencies into the workspace for these few lines.)
#[derive(Debug)]
struct Answering;

impl HttpClient for Answering {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Answering)
    }
}

impl HttpConnector for Answering {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let answer = lock(&ANSWER);
        let status = StatusCode::try_from(answer.0).expect("a valid status");
        let mut response = HttpResponse::new(status, SdkBody::from(answer.2.clone()));
        response.headers_mut().insert("content-type", answer.1);
        HttpConnectorFuture::ready(Ok(response))
    }
}

/// A panic in one call (a finding) must not fail every later one with a poisoned lock: the
/// stable test reports each failing input.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_text(text: &str) {
    assert!(!text.contains(ASSERTION), "assertion leaked: {text}");
    // Each text field is cut at 600 characters, so the whole message is bounded too.
    assert!(
        text.chars().count() <= 3 * 601 + 200,
        "unbounded: {} chars",
        text.len()
    );
}

/// STS answers to AssumeRoleWithSAML, through the real aws-sdk-sts client (its Query-protocol
/// XML deserializer) and samld's mapping of its results, with an in-process
/// HTTP client that answers with the fuzz input instead of a network.
///
/// The first input byte picks the HTTP status and content type, the rest is the body.
/// Checks: no panic; neither the assertion nor the returned secrets leak into an error's
/// text; error texts are bounded; credentials are only returned when complete.
pub fn sts_response(data: &[u8]) {
    let Some((&shape, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(shape & 0x07)];
    let content_type = CONTENT_TYPES[usize::from(shape >> 3 & 0x01)];
    let _one_at_a_time = lock(&ONE_AT_A_TIME);
    *lock(&ANSWER) = (status, content_type, body.to_vec());

    let request = AssumeRequest {
        role_arn: "arn:aws:iam::123456789012:role/Fuzz".to_owned(),
        principal_arn: "arn:aws:iam::123456789012:saml-provider/Fuzz".to_owned(),
        saml_assertion: Secret::new(ASSERTION),
        duration_seconds: 3600,
    };
    let outcome = RUNTIME.block_on(STS.assume_role_with_saml(&TARGET, &request));
    match outcome {
        Ok(creds) => {
            // Only a 2xx answer carries credentials.
            assert!(
                (200..300).contains(&status),
                "credentials from HTTP {status}"
            );
            let _ = format!("{creds:?}");
        }
        Err(error) => {
            let text = error.to_string();
            check_text(&text);
            check_text(&format!("{error:?}"));
            match &error {
                StsError::Service { status: got, .. } => assert_eq!(*got, Some(status)),
                // Any status for an answer over samld's cap, which is cut off unread.
                StsError::BadResponse { reason } => {
                    assert!(
                        (200..300).contains(&status) || reason.contains("larger than"),
                        "BadResponse for HTTP {status}"
                    )
                }
                StsError::Network { .. } => {}
            }
            // Classification must not panic either.
            let _ = (
                error.is_transient(),
                error.is_duration_too_long(),
                error.is_expired_assertion(),
            );
        }
    }
}
