//! STS AssumeRoleWithSAML.
//!
//! [`SdkSts`] makes the call with aws-sdk-sts over hyper + rustls (ring), without credentials:
//! the operation is unsigned, the assertion is the proof. The SDK brings the regional and
//! partition endpoints (aws, aws-cn, aws-us-gov), the Query protocol and the error document.
//! The SDK's own retries are off: each [`StsApi::assume_role_with_saml`] is exactly one request,
//! because samld has its own schedule (the manager's backoff, and its single retry with a
//! shorter duration or a fresh assertion). With the SDK's three attempts on top, every
//! throttled refresh made three requests where the README promises at most two per role.
//!
//! The assertion and the returned secrets never reach logs or error texts: the SDK's input
//! redacts the assertion in its `Debug`, the secrets go straight into [`Secret`], and error
//! texts are scrubbed of the assertion before they leave this module. (The SDK's own `trace`
//! level logs whole HTTP bodies: never enable `trace` for the `aws_smithy_*` targets.)

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_sts::config::endpoint::{DefaultResolver, Params as EndpointParams, ResolveEndpoint};
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Region, SharedHttpClient};
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role_with_saml::{
    AssumeRoleWithSAMLError, AssumeRoleWithSamlOutput,
};
use aws_smithy_http_client::tls;
use aws_smithy_types::body::SdkBody;
use samld_config::Partition;
use samld_proto::Secret;
use time::OffsetDateTime;
use tracing::debug;

use crate::error_chain::error_chain;
use crate::future::BoxFuture;

/// Where to send the call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StsTarget {
    /// The account's region; `None` means the global endpoint (us-east-1).
    pub region: Option<String>,
    /// `sts_endpoint` from the config, overriding the regional endpoint.
    pub endpoint: Option<String>,
}

impl StsTarget {
    /// Where to assume `role_arn`: this target, except that with neither a region nor an
    /// endpoint configured, a GovCloud or China role goes to its own partition's STS
    /// (`sts.us-gov-west-1.amazonaws.com`, `sts.cn-north-1.amazonaws.com.cn`) instead of the
    /// commercial global endpoint, which does not know that partition's SAML providers
    /// ("Specified provider doesn't exist", saml2aws#89). A configured region or endpoint is
    /// the user's choice and is kept as it is.
    ///
    /// [`SdkSts`] applies this to every call, so a caller may pass the account's target as
    /// configured; calling it first only matters to code that keys anything on the target.
    pub fn for_role(&self, role_arn: &str) -> StsTarget {
        if self.region.is_some() || self.endpoint.is_some() {
            return self.clone();
        }
        StsTarget {
            region: Partition::of_role_arn(role_arn)
                .default_sts_region()
                .map(str::to_owned),
            endpoint: None,
        }
    }
}

/// One AssumeRoleWithSAML call.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    /// The role to assume.
    pub role_arn: String,
    /// The SAML provider paired with it in the assertion.
    pub principal_arn: String,
    /// The base64 SAMLResponse exactly as taken from the IdP's form.
    pub saml_assertion: Secret,
    /// DurationSeconds.
    pub duration_seconds: u32,
}

/// Temporary AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// AccessKeyId.
    pub access_key_id: String,
    /// SecretAccessKey.
    pub secret_access_key: Secret,
    /// SessionToken.
    pub session_token: Secret,
    /// Expiration.
    pub expiration: OffsetDateTime,
    /// AssumedRoleUser/Arn.
    pub assumed_role_arn: Option<String>,
}

/// Why STS did not give credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsError {
    /// STS answered with an error document.
    Service {
        /// The error code, e.g. `ValidationError`, `AccessDenied`, `ExpiredTokenException`.
        code: String,
        /// STS's message.
        message: String,
        /// The HTTP status.
        status: Option<u16>,
    },
    /// STS could not be reached, or timed out.
    Network {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// STS answered something that is not an STS document.
    BadResponse {
        /// What was wrong with it.
        reason: String,
    },
}

impl StsError {
    /// STS said DurationSeconds exceeds the role's MaxSessionDuration.
    pub fn is_duration_too_long(&self) -> bool {
        matches!(self, StsError::Service { code, message, .. }
            if code == "ValidationError" && message.contains("MaxSessionDuration"))
    }

    /// STS said the assertion is too old (redeem within 5 minutes of issuance).
    pub fn is_expired_assertion(&self) -> bool {
        matches!(self, StsError::Service { code, .. } if code == "ExpiredTokenException")
    }

    /// Worth retrying with backoff: throttling, 5xx, network trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            StsError::Network { .. } => true,
            StsError::Service { code, status, .. } => {
                code.contains("Throttl") || status.is_some_and(|s| s >= 500)
            }
            StsError::BadResponse { .. } => false,
        }
    }
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StsError::Service { code, message, .. } => write!(f, "STS refused: {code}: {message}"),
            StsError::Network { endpoint, reason } => {
                write!(f, "could not reach STS at {endpoint}: {reason}")
            }
            StsError::BadResponse { reason } => {
                write!(f, "STS answered something unexpected: {reason}")
            }
        }
    }
}

impl std::error::Error for StsError {}

/// The STS operations samld uses; implemented by [`SdkSts`] and by test doubles.
pub trait StsApi: Send + Sync {
    /// Calls AssumeRoleWithSAML once: one request, never retried here (the manager decides
    /// whether and when to try again).
    fn assume_role_with_saml<'a>(
        &'a self,
        target: &'a StsTarget,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<AwsCredentials, StsError>>;
}

/// DurationSeconds to ask for: the configured duration, capped by the assertion's
/// SessionDuration and by a MaxSessionDuration learnt from an earlier refusal, never below
/// STS's minimum of 900.
pub fn choose_duration(
    configured_secs: u64,
    assertion: Option<u32>,
    learnt_cap: Option<u32>,
) -> u32 {
    let mut secs = configured_secs.min(u64::from(u32::MAX)) as u32;
    if let Some(a) = assertion {
        secs = secs.min(a);
    }
    if let Some(cap) = learnt_cap {
        secs = secs.min(cap);
    }
    secs.max(900)
}

/// Timeouts for [`SdkSts`]. There is no retry setting: every call is one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkStsOptions {
    /// Limit on establishing the TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Limit on one whole call: connecting, sending, and reading the answer.
    pub operation_timeout: Duration,
}

impl Default for SdkStsOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// [`StsApi`] on aws-sdk-sts, over hyper + rustls with ring.
///
/// No credentials provider is configured: AssumeRoleWithSAML is an unsigned operation (the
/// assertion is the proof), and the SDK's auth resolver picks no-auth for it.
pub struct SdkSts {
    http_client: SharedHttpClient,
    options: SdkStsOptions,
    /// One SDK client per target. All of them share `http_client` and so its connection pool.
    clients: Mutex<HashMap<StsTarget, TargetClient>>,
}

#[derive(Clone)]
struct TargetClient {
    client: aws_sdk_sts::Client,
    /// The URL the calls go to, for error messages and logs.
    endpoint: String,
}

/// How long an idle connection to STS is kept for the next call.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most samld reads of an STS answer. A real AssumeRoleWithSAML answer is 2–3 KiB (the
/// session token is the biggest part, about 1 KiB); reading whatever answers without a bound
/// would let it grow the daemon's memory at will.
pub const MAX_STS_BYTES: usize = 64 * 1024;

/// Puts [`MAX_STS_BYTES`] on every answer's body before the SDK reads it: the SDK reads
/// non-streaming answers whole, with no limit of its own. The body is read chunk by chunk
/// through the cap, so no more than the cap (and one chunk) is ever held.
#[derive(Debug)]
struct CapAnswer;

impl Intercept for CapAnswer {
    fn name(&self) -> &'static str {
        "samld::sts::CapAnswer"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let response = context.response_mut();
        let body = response.take_body();
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_STS_BYTES));
        Ok(())
    }
}

/// The SDK's name for the partition-global endpoint (`https://sts.amazonaws.com`, signing
/// region us-east-1): what saml2aws reaches when the account has no region.
const GLOBAL_REGION: &str = "aws-global";

impl SdkSts {
    /// A client with the default timeouts (connect 10 s, whole call 30 s).
    pub fn new() -> Self {
        Self::with_options(SdkStsOptions::default())
    }

    /// A client with the given timeouts.
    pub fn with_options(options: SdkStsOptions) -> Self {
        let http_client = aws_smithy_http_client::Builder::new()
            // One refresh makes its calls back to back, and the next comes tens of minutes
            // later: a connection kept idle for hyper's default 90 s is never reused, and only
            // wakes an idle daemon to close it.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        Self::with_http_client(http_client, options)
    }

    /// A client that sends its requests through `http_client` instead of hyper + rustls: the
    /// fuzz target uses it to feed arbitrary answers through the SDK's deserializer and this
    /// module's error mapping, exactly as a real STS answer would go.
    pub fn with_http_client(http_client: SharedHttpClient, options: SdkStsOptions) -> Self {
        Self {
            http_client,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn client_for(&self, target: &StsTarget) -> TargetClient {
        if let Some(found) = self.lock_clients().get(target) {
            return found.clone();
        }
        // Built outside the lock: endpoint resolution is async. Two racing callers may both
        // build one; the first insert wins and the other copy is dropped, which is harmless.
        let region = Region::new(
            target
                .region
                .clone()
                .unwrap_or_else(|| GLOBAL_REGION.to_owned()),
        );
        let endpoint = match &target.endpoint {
            Some(url) => url.clone(),
            None => resolve_endpoint(&region).await,
        };
        let mut config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(self.http_client.clone())
            .interceptor(CapAnswer)
            .region(region)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.options.connect_timeout)
                    .operation_timeout(self.options.operation_timeout)
                    .build(),
            )
            // One request per call: a retry here would multiply every request the manager's
            // budget counts (see the module documentation).
            .retry_config(RetryConfig::disabled());
        if let Some(url) = &target.endpoint {
            config = config.endpoint_url(url);
        }
        let built = TargetClient {
            client: aws_sdk_sts::Client::from_conf(config.build()),
            endpoint,
        };
        self.lock_clients()
            .entry(target.clone())
            .or_insert(built)
            .clone()
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<StsTarget, TargetClient>> {
        // The map holds no invariant a panicking holder could break; keep serving.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn call(
        &self,
        target: &StsTarget,
        request: &AssumeRequest,
    ) -> Result<AwsCredentials, StsError> {
        let target = target.for_role(&request.role_arn);
        let TargetClient { client, endpoint } = self.client_for(&target).await;
        debug!(
            role_arn = %request.role_arn,
            endpoint = %endpoint,
            duration_seconds = request.duration_seconds,
            "calling STS AssumeRoleWithSAML"
        );
        let result = client
            .assume_role_with_saml()
            .role_arn(&request.role_arn)
            .principal_arn(&request.principal_arn)
            .saml_assertion(request.saml_assertion.expose())
            .duration_seconds(i32::try_from(request.duration_seconds).unwrap_or(i32::MAX))
            .send()
            .await;
        let outcome = match result {
            Ok(output) => credentials_from(output),
            Err(err) => Err(map_sdk_error(err, &endpoint, &self.options)),
        };
        match &outcome {
            Ok(creds) => debug!(
                role_arn = %request.role_arn,
                expiration = %creds.expiration,
                "STS issued credentials"
            ),
            Err(err) => debug!(role_arn = %request.role_arn, error = %err, "STS call failed"),
        }
        // Belt and braces: an error text built from a server's answer or from a transport error
        // must never carry the assertion, even if a server echoed the request back.
        outcome.map_err(|err| redact_error(err, request.saml_assertion.expose()))
    }
}

impl Default for SdkSts {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SdkSts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkSts")
            .field("options", &self.options)
            .field("targets", &self.lock_clients().len())
            .finish_non_exhaustive()
    }
}

impl StsApi for SdkSts {
    fn assume_role_with_saml<'a>(
        &'a self,
        target: &'a StsTarget,
        request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<AwsCredentials, StsError>> {
        Box::pin(self.call(target, request))
    }
}

/// The URL the SDK will call for `region`, or a description when the rules reject the region
/// (the call itself then fails with the SDK's explanation).
async fn resolve_endpoint(region: &Region) -> String {
    let params = EndpointParams::builder()
        .region(region.as_ref())
        .use_fips(false)
        .use_dual_stack(false)
        .use_global_endpoint(false)
        .build();
    let resolved = match params {
        Ok(params) => DefaultResolver::new().resolve_endpoint(&params).await.ok(),
        Err(_) => None,
    };
    match resolved {
        Some(endpoint) => endpoint.url().to_owned(),
        None => format!("STS in region {region}"),
    }
}

fn credentials_from(output: AssumeRoleWithSamlOutput) -> Result<AwsCredentials, StsError> {
    let assumed_role_arn = output.assumed_role_user.map(|user| user.arn);
    let Some(creds) = output.credentials else {
        return Err(StsError::BadResponse {
            reason: "the AssumeRoleWithSAML answer has no Credentials".to_owned(),
        });
    };
    let expiration =
        OffsetDateTime::from_unix_timestamp(creds.expiration.secs()).map_err(|_| {
            StsError::BadResponse {
                reason: format!("Expiration out of range: {}", creds.expiration),
            }
        })?;
    Ok(AwsCredentials {
        access_key_id: creds.access_key_id,
        secret_access_key: Secret::new(creds.secret_access_key),
        session_token: Secret::new(creds.session_token),
        expiration,
        assumed_role_arn,
    })
}

fn map_sdk_error(
    err: SdkError<AssumeRoleWithSAMLError, HttpResponse>,
    endpoint: &str,
    options: &SdkStsOptions,
) -> StsError {
    let network = |reason: String| StsError::Network {
        endpoint: endpoint.to_owned(),
        reason,
    };
    match err {
        SdkError::TimeoutError(_) => network(format!(
            "no answer within {} s",
            options.operation_timeout.as_secs_f32()
        )),
        SdkError::DispatchFailure(ref failure) => {
            let what = if failure.is_timeout() {
                "timed out"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "request failed"
            };
            network(format!("{what}: {}", causes(&err)))
        }
        SdkError::ResponseError(_) if over_the_cap(&err) => StsError::BadResponse {
            reason: format!(
                "the answer to AssumeRoleWithSAML is larger than {} KiB, samld's limit for an \
                 STS answer (a real one is 2–3 KiB), so samld stopped reading it: something \
                 other than STS answered at {endpoint}; check `sts_endpoint` and any proxy",
                MAX_STS_BYTES / 1024
            ),
        },
        // The connection broke while the answer was being read.
        SdkError::ResponseError(_) => network(format!("the answer was cut off: {}", causes(&err))),
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let content_type = context
                .raw()
                .headers()
                .get("content-type")
                .unwrap_or("no content type")
                .to_owned();
            let service_err = context.into_err();
            match service_err.code() {
                Some(code) => StsError::Service {
                    code: code.to_owned(),
                    message: service_err.message().unwrap_or_default().to_owned(),
                    status: Some(status),
                },
                None => unparsable_answer(status, &content_type, &service_err),
            }
        }
        // Only an invalid input or an unusable configuration (a region the endpoint rules
        // refuse) gets here: nothing was sent.
        other => network(format!(
            "the request could not be built: {}",
            error_chain(&other)
        )),
    }
}

/// Whether the answer was cut off by [`CapAnswer`].
fn over_the_cap(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The causes of `err` without its own text ("dispatch failure", "response error"), which
/// the caller replaces with a plainer one.
fn causes(err: &dyn std::error::Error) -> String {
    err.source()
        .map(error_chain)
        .unwrap_or_else(|| err.to_string())
}

/// An answer that is neither an AssumeRoleWithSAMLResponse nor an STS ErrorResponse, such as
/// a proxy's or moto's HTML error page.
fn unparsable_answer(status: u16, content_type: &str, err: &AssumeRoleWithSAMLError) -> StsError {
    let detail = error_chain(err);
    if (200..300).contains(&status) {
        StsError::BadResponse {
            reason: format!(
                "HTTP {status} ({content_type}) is not an AssumeRoleWithSAML answer: {detail}"
            ),
        }
    } else {
        // Kept as a service error so that the status decides whether it is worth retrying:
        // a 503 page from a load balancer is transient, a 404 from a wrong endpoint is not.
        StsError::Service {
            code: format!("HTTP {status}"),
            message: format!("the answer ({content_type}) is not an STS error document: {detail}"),
            status: Some(status),
        }
    }
}

/// Longest error text kept from a server or transport error.
const MAX_REASON_CHARS: usize = 600;

fn redact_error(err: StsError, assertion: &str) -> StsError {
    let clean = |text: String| scrub(text, assertion);
    match err {
        StsError::Service {
            code,
            message,
            status,
        } => StsError::Service {
            code: clean(code),
            message: clean(message),
            status,
        },
        StsError::Network { endpoint, reason } => StsError::Network {
            endpoint,
            reason: clean(reason),
        },
        StsError::BadResponse { reason } => StsError::BadResponse {
            reason: clean(reason),
        },
    }
}

/// Removes the assertion from `text`, as sent (base64) and as it appears form-encoded in the
/// request body, and bounds the length.
fn scrub(text: String, assertion: &str) -> String {
    let mut text = text;
    if !assertion.is_empty() {
        let form_encoded: String =
            url::form_urlencoded::byte_serialize(assertion.as_bytes()).collect();
        for needle in [assertion, form_encoded.as_str()] {
            if text.contains(needle) {
                text = text.replace(needle, "[redacted SAML assertion]");
            }
        }
    }
    if text.chars().count() > MAX_REASON_CHARS {
        text = text
            .chars()
            .take(MAX_REASON_CHARS)
            .chain("…".chars())
            .collect();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, message: &str, status: u16) -> StsError {
        StsError::Service {
            code: code.into(),
            message: message.into(),
            status: Some(status),
        }
    }

    #[test]
    fn duration_is_the_configured_one_when_nothing_caps_it() {
        assert_eq!(choose_duration(3600, None, None), 3600);
        assert_eq!(choose_duration(43_200, None, None), 43_200);
    }

    #[test]
    fn duration_is_capped_by_the_assertion_and_by_a_learnt_maximum() {
        // (configured seconds, the assertion's SessionDuration, a learnt cap, what is asked for)
        const CASES: &[(u64, Option<u32>, Option<u32>, u32)] = &[
            (43_200, Some(28_800), None, 28_800),
            (43_200, None, Some(3600), 3600),
            (43_200, Some(28_800), Some(7200), 7200),
            (3600, Some(28_800), Some(7200), 3600),
        ];
        for &(configured, assertion, learnt, want) in CASES {
            assert_eq!(
                choose_duration(configured, assertion, learnt),
                want,
                "{configured} {assertion:?} {learnt:?}"
            );
        }
    }

    #[test]
    fn duration_never_goes_below_the_sts_minimum() {
        assert_eq!(choose_duration(60, None, None), 900);
        assert_eq!(choose_duration(3600, Some(300), None), 900);
        assert_eq!(choose_duration(0, None, Some(0)), 900);
    }

    #[test]
    fn huge_configured_durations_saturate_instead_of_wrapping() {
        assert_eq!(choose_duration(u64::MAX, None, None), u32::MAX);
        assert_eq!(
            choose_duration(u64::from(u32::MAX) + 1000, Some(3600), None),
            3600
        );
    }

    #[test]
    fn max_session_duration_refusal_is_recognised() {
        let err = service(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            400,
        );
        assert!(err.is_duration_too_long());
        assert!(!err.is_transient());
        assert!(!err.is_expired_assertion());
        // Other validation errors are not about the duration.
        assert!(
            !service("ValidationError", "1 validation error detected", 400).is_duration_too_long()
        );
    }

    #[test]
    fn expired_assertion_is_recognised() {
        let err = service(
            "ExpiredTokenException",
            "Token must be redeemed within 5 minutes of issuance",
            400,
        );
        assert!(err.is_expired_assertion());
        assert!(!err.is_transient());
        assert!(!service("AccessDenied", "Not authorized", 403).is_expired_assertion());
    }

    #[test]
    fn throttling_server_errors_and_network_trouble_are_transient() {
        // (code, message, HTTP status) of a transient STS answer
        const TRANSIENT: &[(&str, &str, u16)] = &[
            ("Throttling", "Rate exceeded", 400),
            ("InternalFailure", "", 500),
            ("ServiceUnavailable", "", 503),
            ("HTTP 502", "not an STS error document", 502),
        ];
        for &(code, message, status) in TRANSIENT {
            assert!(service(code, message, status).is_transient(), "{code:?}");
        }
        let network = StsError::Network {
            endpoint: "https://sts.amazonaws.com".into(),
            reason: "refused".into(),
        };
        assert!(network.is_transient());
        assert!(!service("AccessDenied", "Not authorized", 403).is_transient());
        assert!(!service("HTTP 404", "not an STS error document", 404).is_transient());
        assert!(!StsError::BadResponse { reason: "x".into() }.is_transient());
    }

    #[test]
    fn display_names_the_code_and_the_endpoint() {
        assert_eq!(
            service(
                "AccessDenied",
                "Not authorized to perform sts:AssumeRoleWithSAML",
                403
            )
            .to_string(),
            "STS refused: AccessDenied: Not authorized to perform sts:AssumeRoleWithSAML"
        );
        let network = StsError::Network {
            endpoint: "http://127.0.0.1:9".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            network.to_string(),
            "could not reach STS at http://127.0.0.1:9: connection refused"
        );
    }

    #[test]
    fn scrub_removes_the_assertion_raw_and_form_encoded() {
        let assertion = "PHNhbWxwOlJlc3BvbnNlIC8++/==";
        let encoded: String = url::form_urlencoded::byte_serialize(assertion.as_bytes()).collect();
        assert_ne!(
            encoded, assertion,
            "the sample must change when form-encoded"
        );
        let text = format!("echo: {assertion} and body SAMLAssertion={encoded}&x");
        let clean = scrub(text, assertion);
        assert!(
            !clean.contains(assertion) && !clean.contains(&encoded),
            "{clean}"
        );
        assert_eq!(
            clean,
            "echo: [redacted SAML assertion] and body SAMLAssertion=[redacted SAML assertion]&x"
        );
    }

    #[test]
    fn scrub_bounds_the_length() {
        let clean = scrub("é".repeat(5000), "unrelated");
        assert_eq!(clean.chars().count(), MAX_REASON_CHARS + 1);
        assert!(clean.ends_with('…'));
    }

    #[test]
    fn redact_error_cleans_every_text_field() {
        let err = StsError::Service {
            code: "X".into(),
            message: "got SECRET back".into(),
            status: Some(400),
        };
        assert_eq!(
            redact_error(err, "SECRET"),
            StsError::Service {
                code: "X".into(),
                message: "got [redacted SAML assertion] back".into(),
                status: Some(400)
            }
        );
    }

    #[tokio::test]
    async fn endpoints_follow_the_region_and_its_partition() {
        // (region, the endpoint resolved for it)
        const CASES: &[(&str, &str)] = &[
            // No region: the partition-global endpoint, as saml2aws with an empty region.
            (GLOBAL_REGION, "https://sts.amazonaws.com"),
            ("eu-west-1", "https://sts.eu-west-1.amazonaws.com"),
            ("us-gov-west-1", "https://sts.us-gov-west-1.amazonaws.com"),
            ("cn-north-1", "https://sts.cn-north-1.amazonaws.com.cn"),
            ("not a region", "STS in region not a region"),
        ];
        for &(region, want) in CASES {
            assert_eq!(
                resolve_endpoint(&Region::new(region)).await,
                want,
                "{region:?}"
            );
        }
    }

    #[test]
    fn a_role_with_no_region_or_endpoint_goes_to_its_partition() {
        let unset = StsTarget {
            region: None,
            endpoint: None,
        };
        let region = |arn: &str| unset.for_role(arn).region;
        // (role ARN, the region its STS target gets)
        const CASES: &[(&str, Option<&str>)] = &[
            (
                "arn:aws-us-gov:iam::123456789012:role/Dev",
                Some("us-gov-west-1"),
            ),
            ("arn:aws-cn:iam::123456789012:role/Dev", Some("cn-north-1")),
            ("arn:aws:iam::123456789012:role/Dev", None),
            ("not an arn", None),
        ];
        for &(arn, want) in CASES {
            assert_eq!(region(arn).as_deref(), want, "{arn:?}");
        }

        let configured = [
            StsTarget {
                region: Some("us-gov-east-1".into()),
                endpoint: None,
            },
            StsTarget {
                region: None,
                endpoint: Some("https://sts.example.test".into()),
            },
        ];
        for target in configured {
            assert_eq!(
                target.for_role("arn:aws-cn:iam::123456789012:role/Dev"),
                target
            );
        }
    }

    #[tokio::test]
    async fn one_client_per_target_is_cached() {
        let sts = SdkSts::new();
        let global = StsTarget {
            region: None,
            endpoint: None,
        };
        let custom = StsTarget {
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
        };
        assert_eq!(
            sts.client_for(&global).await.endpoint,
            "https://sts.amazonaws.com"
        );
        assert_eq!(sts.client_for(&custom).await.endpoint, "http://127.0.0.1:1");
        sts.client_for(&global).await;
        assert_eq!(sts.lock_clients().len(), 2);
    }

    #[test]
    fn credentials_are_mapped_with_whole_second_expiration() {
        let output = AssumeRoleWithSamlOutput::builder()
            .credentials(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id("ASIAEXAMPLEEXAMPLE12")
                    .secret_access_key("s".repeat(40))
                    .session_token("token")
                    .expiration(aws_smithy_types::DateTime::from_fractional_secs(
                        1_800_000_000,
                        0.847,
                    ))
                    .build()
                    .unwrap(),
            )
            .assumed_role_user(
                aws_sdk_sts::types::AssumedRoleUser::builder()
                    .assumed_role_id("AROAEXAMPLE:alice")
                    .arn("arn:aws:sts::123456789012:assumed-role/Dev/alice")
                    .build()
                    .unwrap(),
            )
            .build();
        let creds = credentials_from(output).unwrap();
        assert_eq!(creds.access_key_id, "ASIAEXAMPLEEXAMPLE12");
        assert_eq!(creds.secret_access_key.expose(), "s".repeat(40));
        assert_eq!(creds.session_token.expose(), "token");
        assert_eq!(creds.expiration.unix_timestamp(), 1_800_000_000);
        assert_eq!(
            creds.assumed_role_arn.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/Dev/alice")
        );
        assert!(
            !format!("{creds:?}").contains("ssss"),
            "Debug must not show the secret key"
        );
    }

    #[test]
    fn an_answer_without_credentials_is_a_bad_response() {
        let err = credentials_from(AssumeRoleWithSamlOutput::builder().build()).unwrap_err();
        assert!(matches!(err, StsError::BadResponse { .. }), "{err:?}");
    }
}
