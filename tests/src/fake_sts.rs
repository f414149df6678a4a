//! A fake AWS STS on 127.0.0.1 that speaks the Query protocol like the real service.
//!
//! It serves `AssumeRoleWithSAML` (unsigned form POST, XML answer in the
//! `https://sts.amazonaws.com/doc/2011-06-15/` namespace) and `GetCallerIdentity` for requests
//! signed with a key it issued, so that a consumer test can prove which credentials were used.
//!
//! Unlike moto, it checks the assertion the way STS documents it: the (RoleArn, PrincipalArn)
//! pair must be one of the assertion's Role values (either order); the SubjectConfirmationData
//! must name AWS's sign-in endpoint as its Recipient and the Audience must be AWS (its SAML
//! entity ID `urn:amazon:webservices` or the sign-in endpoint, of the role's partition)
//! (IAM User Guide, "Configure SAML assertions for the authentication response"); the
//! assertion must be redeemed within 5 minutes of its IssueInstant and before any
//! NotOnOrAfter (`ExpiredTokenException`), and not before its NotBefore (with
//! [`CLOCK_SKEW`] of tolerance); a GovCloud or China role must reach its own partition's STS
//! host; and DurationSeconds must be 900 ..= the role's MaxSessionDuration. The assertion is
//! parsed here with quick-xml on purpose, independently of samld's parser, so that a bug
//! there cannot hide itself.
//!
//! One assertion may be redeemed several times (for several roles) while it is valid, as the
//! real STS allows: saml2aws#526 describes sending one assertion "to AWS repeatedly to create
//! multiple sessions to different AWS accounts and AWS roles" within its validity, which is
//! what the SAML caches of saml2aws (`--cache-saml`), aws-google-auth (PR #47) and OneLogin's
//! CLI rely on. Signatures are not checked: the fake has no registered IdP certificate and
//! the assertions the tests build are unsigned.
//!
//! Tests steer it with [`FakeSts::inject`] (throttling, service errors, an HTML 500 page like
//! moto's, a slow answer, a connection reset) and observe it through counters, the requests
//! received and the credentials issued.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use base64::Engine as _;
use quick_xml::events::{BytesStart, Event};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, macros::format_description};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The STS API version every request must name.
const API_VERSION: &str = "2011-06-15";
/// The namespace of every STS answer.
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The SAML attribute listing "role ARN,provider ARN" pairs.
const ROLE_ATTRIBUTE: &str = "https://aws.amazon.com/SAML/Attributes/Role";
/// The SAML attribute naming the session.
const SESSION_NAME_ATTRIBUTE: &str = "https://aws.amazon.com/SAML/Attributes/RoleSessionName";
/// STS's bounds on DurationSeconds whatever the role says.
const MIN_DURATION: u32 = 900;
const MAX_DURATION: u32 = 43_200;
/// How long after its IssueInstant an assertion can be redeemed ("Token must be redeemed
/// within 5 minutes of issuance").
const REDEEM_WITHIN: time::Duration = time::Duration::minutes(5);
/// How far in the future a NotBefore may be (the IdP's clock running ahead). STS's own
/// tolerance is not documented; nothing is granted after NotOnOrAfter, the strict side.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// How the fake behaves, fixed at start (the limits can be changed later too).
#[derive(Debug, Clone)]
pub struct FakeStsConfig {
    /// MaxSessionDuration per role ARN.
    pub max_session: HashMap<String, u32>,
    /// MaxSessionDuration of the roles not in `max_session` (IAM's default is one hour).
    pub default_max_session: u32,
    /// When set, issued credentials live this long whatever DurationSeconds asked for, so
    /// that refresh can be tested in seconds.
    pub credential_lifetime: Option<Duration>,
}

impl Default for FakeStsConfig {
    fn default() -> Self {
        Self {
            max_session: HashMap::new(),
            default_max_session: 3600,
            credential_lifetime: None,
        }
    }
}

impl FakeStsConfig {
    /// Sets one role's MaxSessionDuration.
    pub fn with_max_session(mut self, role_arn: impl Into<String>, secs: u32) -> Self {
        self.max_session.insert(role_arn.into(), secs);
        self
    }

    /// Issues credentials that live `lifetime` whatever DurationSeconds says.
    pub fn with_credential_lifetime(mut self, lifetime: Duration) -> Self {
        self.credential_lifetime = Some(lifetime);
        self
    }
}

/// A misbehaviour for the next AssumeRoleWithSAML call (see [`FakeSts::inject`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeStsFault {
    /// HTTP 400 `Throttling` "Rate exceeded".
    Throttling,
    /// HTTP 400 `ValidationError` with this message.
    ValidationError(String),
    /// HTTP 400 `ExpiredTokenException` "Token must be redeemed within 5 minutes of issuance".
    ExpiredToken,
    /// HTTP 400 `InvalidIdentityToken` with this message.
    InvalidIdentityToken(String),
    /// HTTP 403 `AccessDenied` "Not authorized to perform sts:AssumeRoleWithSAML".
    AccessDenied,
    /// HTTP 500 `InternalFailure`, as an STS error document.
    InternalFailure,
    /// HTTP 503 `ServiceUnavailable`, as an STS error document.
    ServiceUnavailable,
    /// HTTP 500 with Werkzeug's `text/html` page, which is what moto answers to anything it
    /// cannot handle.
    HtmlInternalError,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Hold the answer until [`FakeSts::release`], then answer normally: keeps a call in
    /// flight for exactly as long as a test needs, however loaded the machine.
    Hold,
    /// Reset the TCP connection (RST) instead of answering.
    ConnectionReset,
}

/// One AssumeRoleWithSAML request as received (faulted ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAssume {
    /// `RoleArn`, empty when missing.
    pub role_arn: String,
    /// `PrincipalArn`, empty when missing.
    pub principal_arn: String,
    /// `DurationSeconds` when present and numeric.
    pub duration_seconds: Option<u32>,
    /// `SAMLAssertion` exactly as received (base64).
    pub assertion: String,
    /// When it arrived, for tests that measure the pace of what samld sends.
    pub received_at: std::time::Instant,
}

/// Credentials the fake issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    /// AccessKeyId (`ASIA…`, 20 characters).
    pub access_key_id: String,
    /// SecretAccessKey (40 characters).
    pub secret_access_key: String,
    /// SessionToken.
    pub session_token: String,
    /// Expiration, whole seconds.
    pub expiration: OffsetDateTime,
    /// The role assumed.
    pub role_arn: String,
    /// AssumedRoleUser/Arn: `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
    /// AssumedRoleUser/AssumedRoleId: `AROA…:SESSION`.
    pub assumed_role_id: String,
}

/// A running fake STS. It stops when dropped.
pub struct FakeSts {
    addr: SocketAddr,
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    /// Aborting it also closes the open connections: axum shuts them down gracefully when
    /// its serve future goes away.
    server: JoinHandle<()>,
}

impl FakeSts {
    /// Binds 127.0.0.1 on a free port and starts serving; the port accepts connections as
    /// soon as this returns.
    pub async fn start(config: FakeStsConfig) -> FakeSts {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (changed, changes) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                config,
                ..FakeState::default()
            }),
            changed,
            releases: tokio::sync::Semaphore::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = ResettableListener(listener);
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<Connection>();
            // Only ends if the runtime goes away.
            let _ = axum::serve(listener, service).await;
        });
        FakeSts {
            addr,
            shared,
            changes,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `sts_endpoint` / `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to the next AssumeRoleWithSAML call. Faults queue up in order.
    pub fn inject(&self, fault: FakeStsFault) {
        self.inject_n(fault, 1);
    }

    /// Applies `fault` to the next `times` AssumeRoleWithSAML calls.
    pub fn inject_n(&self, fault: FakeStsFault, times: usize) {
        let mut state = self.shared.lock();
        state.faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Faults injected but not yet used.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Changes one role's MaxSessionDuration.
    pub fn set_max_session(&self, role_arn: &str, secs: u32) {
        self.shared
            .lock()
            .config
            .max_session
            .insert(role_arn.to_owned(), secs);
    }

    /// Changes the forced credential lifetime (`None`: DurationSeconds decides).
    pub fn set_credential_lifetime(&self, lifetime: Option<Duration>) {
        self.shared.lock().config.credential_lifetime = lifetime;
    }

    /// AssumeRoleWithSAML calls received, faulted and refused ones included.
    pub fn calls(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// AssumeRoleWithSAML calls received for one role.
    pub fn calls_for(&self, role_arn: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.role_arn == role_arn)
            .count()
    }

    /// Every AssumeRoleWithSAML request, in order of arrival.
    pub fn requests(&self) -> Vec<ReceivedAssume> {
        self.shared.lock().requests.clone()
    }

    /// The DurationSeconds of every AssumeRoleWithSAML request, in order (0 when missing).
    pub fn durations(&self) -> Vec<u32> {
        self.shared
            .lock()
            .requests
            .iter()
            .map(|r| r.duration_seconds.unwrap_or(0))
            .collect()
    }

    /// The assertion of the latest AssumeRoleWithSAML request.
    pub fn last_assertion(&self) -> Option<String> {
        self.shared
            .lock()
            .requests
            .last()
            .map(|r| r.assertion.clone())
    }

    /// Credentials issued, in order.
    pub fn issued(&self) -> Vec<IssuedCredentials> {
        self.shared.lock().issued.clone()
    }

    /// How many times credentials were issued.
    pub fn issued_count(&self) -> usize {
        self.shared.lock().issued.len()
    }

    /// The access key ids issued, in order.
    pub fn issued_key_ids(&self) -> Vec<String> {
        self.shared
            .lock()
            .issued
            .iter()
            .map(|c| c.access_key_id.clone())
            .collect()
    }

    /// The access key id of every GetCallerIdentity request, in order (known or not).
    pub fn caller_identity_keys(&self) -> Vec<String> {
        self.shared.lock().caller_identity_keys.clone()
    }

    /// Waits until at least `n` AssumeRoleWithSAML calls have arrived.
    pub async fn wait_for_calls(&self, n: usize) {
        self.wait_until(|state| state.requests.len() >= n).await;
    }

    /// Waits until credentials have been issued at least `n` times.
    pub async fn wait_for_issued(&self, n: usize) {
        self.wait_until(|state| state.issued.len() >= n).await;
    }

    /// Waits until credentials for `role_arn` have been issued at least `n` times.
    pub async fn wait_for_issued_for(&self, role_arn: &str, n: usize) {
        self.wait_until(|state| {
            state
                .issued
                .iter()
                .filter(|c| c.role_arn == role_arn)
                .count()
                >= n
        })
        .await;
    }

    /// How many times credentials for `role_arn` were issued.
    pub fn issued_count_for(&self, role_arn: &str) -> usize {
        self.shared
            .lock()
            .issued
            .iter()
            .filter(|c| c.role_arn == role_arn)
            .count()
    }

    /// Lets one call held by [`FakeStsFault::Hold`] (now or later) answer.
    pub fn release(&self) {
        self.shared.releases.add_permits(1);
    }

    async fn wait_until(&self, done: impl Fn(&FakeState) -> bool) {
        let mut changes = self.changes.clone();
        loop {
            if done(&self.shared.lock()) {
                return;
            }
            changes
                .changed()
                .await
                .expect("the fake STS state outlives its server");
        }
    }
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSts")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<FakeState>,
    /// Bumped after every change, for the `wait_for_*` methods.
    changed: watch::Sender<u64>,
    /// One permit per [`FakeSts::release`]; each held call takes one.
    releases: tokio::sync::Semaphore,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }
}

#[derive(Default)]
struct FakeState {
    config: FakeStsConfig,
    faults: VecDeque<FakeStsFault>,
    requests: Vec<ReceivedAssume>,
    issued: Vec<IssuedCredentials>,
    caller_identity_keys: Vec<String>,
    /// Stable `AROA…` ids per role ARN, as IAM has.
    role_ids: HashMap<String, String>,
}

/// An answer: status, content type, body.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let request_id = request_id();
        (
            self.status,
            [
                (header::CONTENT_TYPE, self.content_type),
                (
                    header::HeaderName::from_static("x-amzn-requestid"),
                    &request_id,
                ),
            ],
            self.body.replace("{REQUEST_ID}", &request_id),
        )
            .into_response()
    }
}

fn xml_ok(body: String) -> Answer {
    Answer {
        status: StatusCode::OK,
        content_type: "text/xml",
        body,
    }
}

/// An STS `ErrorResponse`. `{REQUEST_ID}` is filled in by [`Answer::into_response`].
fn sts_error(status: u16, code: &str, message: &str) -> Answer {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    Answer {
        status: StatusCode::from_u16(status).expect("valid status"),
        content_type: "text/xml",
        body: format!(
            "<ErrorResponse xmlns=\"{STS_NS}\"><Error><Type>{kind}</Type><Code>{}</Code>\
             <Message>{}</Message></Error><RequestId>{{REQUEST_ID}}</RequestId></ErrorResponse>",
            esc(code),
            esc(message)
        ),
    }
}

fn access_denied() -> Answer {
    sts_error(
        403,
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithSAML",
    )
}

fn expired_token() -> Answer {
    sts_error(
        400,
        "ExpiredTokenException",
        "Token must be redeemed within 5 minutes of issuance",
    )
}

/// Werkzeug's 500 page, byte for byte what moto sends when its handler raises.
const WERKZEUG_500: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n\
<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete \
your request. Either the server is overloaded or there is an error in the application.</p>\n";

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Answer {
    // The Query protocol accepts parameters in the query string or in a form body.
    let mut params: HashMap<String, String> = HashMap::new();
    for source in [query.as_deref().unwrap_or("").as_bytes(), &body[..]] {
        params.extend(url::form_urlencoded::parse(source).into_owned());
    }
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    let version = params.get("Version").map(String::as_str).unwrap_or("");
    if version != API_VERSION {
        return sts_error(
            400,
            "InvalidAction",
            &format!("Could not find operation {action} for version {version}"),
        );
    }
    match action {
        "AssumeRoleWithSAML" => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let partition = endpoint_partition(host);
            assume_role_with_saml(&shared, &connection, &params, partition).await
        }
        "GetCallerIdentity" => get_caller_identity(&shared, &headers),
        _ => sts_error(
            400,
            "InvalidAction",
            &format!("Could not find operation {action} for version {version}"),
        ),
    }
}

async fn assume_role_with_saml(
    shared: &Shared,
    connection: &Connection,
    params: &HashMap<String, String>,
    partition: Option<&'static str>,
) -> Answer {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let received = ReceivedAssume {
        role_arn: param("RoleArn"),
        principal_arn: param("PrincipalArn"),
        duration_seconds: params.get("DurationSeconds").and_then(|d| d.parse().ok()),
        assertion: param("SAMLAssertion"),
        received_at: std::time::Instant::now(),
    };
    let fault = {
        let mut state = shared.lock();
        state.requests.push(received.clone());
        state.faults.pop_front()
    };
    shared.notify();

    match fault {
        None => {}
        Some(FakeStsFault::Throttling) => return sts_error(400, "Throttling", "Rate exceeded"),
        Some(FakeStsFault::ValidationError(message)) => {
            return sts_error(400, "ValidationError", &message);
        }
        Some(FakeStsFault::ExpiredToken) => return expired_token(),
        Some(FakeStsFault::InvalidIdentityToken(message)) => {
            return sts_error(400, "InvalidIdentityToken", &message);
        }
        Some(FakeStsFault::AccessDenied) => return access_denied(),
        Some(FakeStsFault::InternalFailure) => {
            return sts_error(
                500,
                "InternalFailure",
                "The request processing has failed because of an unknown error, exception or failure.",
            );
        }
        Some(FakeStsFault::ServiceUnavailable) => {
            return sts_error(
                503,
                "ServiceUnavailable",
                "Service is unable to handle request.",
            );
        }
        Some(FakeStsFault::HtmlInternalError) => {
            return Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                content_type: "text/html; charset=utf-8",
                body: WERKZEUG_500.to_owned(),
            };
        }
        Some(FakeStsFault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(FakeStsFault::Hold) => {
            if let Ok(permit) = shared.releases.acquire().await {
                permit.forget();
            }
        }
        Some(FakeStsFault::ConnectionReset) => {
            connection.reset.store(true, Ordering::SeqCst);
            // Never delivered: writing it fails and the socket is closed with an RST.
            return sts_error(500, "InternalFailure", "connection reset");
        }
    }

    let answer = issue(shared, &received, partition);
    shared.notify();
    answer
}

/// The partition of the real STS host a request was addressed to (its `Host` header), or
/// `None` for any other host, such as `127.0.0.1:PORT` when a test points `sts_endpoint` here.
///
/// Each partition's STS knows only that partition's SAML providers.
fn endpoint_partition(host: &str) -> Option<&'static str> {
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    if host.ends_with(".amazonaws.com.cn") {
        Some("aws-cn")
    } else if host.starts_with("sts.us-gov-") && host.ends_with(".amazonaws.com") {
        Some("aws-us-gov")
    } else if host.starts_with("sts.") && host.ends_with(".amazonaws.com") {
        Some("aws")
    } else {
        None
    }
}

/// Validates the request as STS would and issues credentials. `partition` is that of the
/// STS host the request was addressed to, when it names one.
fn issue(shared: &Shared, request: &ReceivedAssume, partition: Option<&str>) -> Answer {
    let answer = || -> Result<Answer, Answer> {
        let (duration, role) = check_request(request, partition)?;
        let checked = check_assertion(request, &role)?;
        let issued = issue_credentials(shared, request, &role, duration, &checked)?;
        Ok(assume_role_answer(
            request,
            &role,
            &issued,
            checked.assertion,
        ))
    };
    answer().unwrap_or_else(|error| error)
}

/// An assertion STS accepts for the requested role, and the time it was checked at.
struct CheckedAssertion {
    assertion: SamlFacts,
    session_name: String,
    /// When it was checked, to the second.
    now: OffsetDateTime,
}

/// The checks STS makes of the request itself, before it reads the assertion: the
/// `DurationSeconds` it asks for and the role it names, or the error answer.
fn check_request(
    request: &ReceivedAssume,
    partition: Option<&str>,
) -> Result<(u32, RoleArn), Answer> {
    for (name, value) in [
        ("roleArn", &request.role_arn),
        ("principalArn", &request.principal_arn),
        ("SAMLAssertion", &request.assertion),
    ] {
        if value.is_empty() {
            return Err(sts_error(
                400,
                "ValidationError",
                &format!(
                    "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
                ),
            ));
        }
    }
    let duration = request.duration_seconds.unwrap_or(3600);
    if duration < MIN_DURATION {
        return Err(sts_error(
            400,
            "ValidationError",
            &format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION}"
            ),
        ));
    }
    if duration > MAX_DURATION {
        return Err(sts_error(
            400,
            "ValidationError",
            &format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_DURATION}"
            ),
        ));
    }
    let Some(role) = RoleArn::parse(&request.role_arn) else {
        return Err(sts_error(
            400,
            "ValidationError",
            &format!("{} is invalid", request.role_arn),
        ));
    };
    if partition.is_some_and(|p| p != role.partition) {
        // What the commercial STS answers for a GovCloud role (saml2aws#89, #187): the SAML
        // provider lives in another partition, so this one has never heard of it.
        return Err(sts_error(
            400,
            "InvalidIdentityToken",
            "Specified provider doesn't exist (Service: AWSOpenIdDiscoveryService; Status Code: \
             400; Error Code: AuthSamlManifestNotFoundException)",
        ));
    }
    Ok((duration, role))
}

/// The checks STS makes of the assertion: well-formed, addressed to AWS in the role's
/// partition, within its time limits, listing the role, and naming a session.
fn check_assertion(request: &ReceivedAssume, role: &RoleArn) -> Result<CheckedAssertion, Answer> {
    let assertion = match SamlFacts::parse(&request.assertion) {
        Ok(facts) => facts,
        Err(why) => return Err(sts_error(400, "InvalidIdentityToken", &why)),
    };

    if let Err(why) = assertion.addressed_to_aws(&role.partition) {
        return Err(sts_error(400, "InvalidIdentityToken", &why));
    }
    let exact_now = OffsetDateTime::now_utc();
    let now = exact_now
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    let too_old = assertion
        .issue_instant
        .is_some_and(|issued| exact_now > issued + REDEEM_WITHIN);
    if too_old || assertion.not_on_or_after.iter().any(|limit| *limit <= now) {
        return Err(expired_token());
    }
    if assertion
        .not_before
        .iter()
        .any(|start| *start > exact_now + CLOCK_SKEW)
    {
        return Err(sts_error(
            400,
            "InvalidIdentityToken",
            "The SAML assertion is not yet valid (NotBefore is in the future)",
        ));
    }
    let listed = assertion.roles.iter().any(|value| {
        let parts: Vec<&str> = value.split(',').map(str::trim).collect();
        matches!(parts[..], [a, b] if (a == request.role_arn && b == request.principal_arn)
            || (a == request.principal_arn && b == request.role_arn))
    });
    if !listed {
        return Err(access_denied());
    }
    let Some(session_name) = assertion.session_name.clone() else {
        return Err(sts_error(
            400,
            "InvalidIdentityToken",
            "RoleSessionName is required in AuthnResponse",
        ));
    };
    Ok(CheckedAssertion {
        assertion,
        session_name,
        now,
    })
}

/// Issues and records the role's credentials, unless `duration` is longer than the role
/// allows. They last no longer than the assertion's session either.
fn issue_credentials(
    shared: &Shared,
    request: &ReceivedAssume,
    role: &RoleArn,
    duration: u32,
    checked: &CheckedAssertion,
) -> Result<IssuedCredentials, Answer> {
    let mut state = shared.lock();
    let max = state
        .config
        .max_session
        .get(&request.role_arn)
        .copied()
        .unwrap_or(state.config.default_max_session);
    if duration > max {
        return Err(sts_error(
            400,
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    let mut lifetime = time::Duration::seconds(i64::from(duration));
    if let Some(forced) = state.config.credential_lifetime {
        lifetime = lifetime.min(time::Duration::try_from(forced).expect("a short lifetime"));
    }
    let mut expiration = checked.now + lifetime;
    if let Some(session_end) = checked.assertion.session_not_on_or_after {
        expiration = expiration.min(
            session_end
                .replace_nanosecond(0)
                .expect("0 is a valid nanosecond"),
        );
    }

    let session_name = &checked.session_name;
    let role_id = state
        .role_ids
        .entry(request.role_arn.clone())
        .or_insert_with(|| format!("AROA{}", random_chars(UPPER_DIGITS, 17)))
        .clone();
    let issued = IssuedCredentials {
        access_key_id: format!("ASIA{}", random_chars(UPPER_DIGITS, 16)),
        secret_access_key: random_chars(SECRET_CHARS, 40),
        session_token: format!("FwoGZXIvYXdzE{}", random_chars(SECRET_CHARS, 300)),
        expiration,
        role_arn: request.role_arn.clone(),
        assumed_role_arn: format!(
            "arn:{}:sts::{}:assumed-role/{}/{session_name}",
            role.partition, role.account, role.name
        ),
        assumed_role_id: format!("{role_id}:{session_name}"),
    };
    state.issued.push(issued.clone());
    drop(state);
    Ok(issued)
}

/// The `AssumeRoleWithSAMLResponse` for `issued`, with what STS reports of the assertion.
fn assume_role_answer(
    request: &ReceivedAssume,
    role: &RoleArn,
    issued: &IssuedCredentials,
    assertion: SamlFacts,
) -> Answer {
    let subject = assertion.name_id.unwrap_or_default();
    let subject_type = subject_type(assertion.name_id_format.as_deref());
    let issuer = assertion.issuer.unwrap_or_default();
    // STS reports the SubjectConfirmationData's Recipient as the `Audience`.
    let audience = assertion
        .recipients
        .first()
        .cloned()
        .flatten()
        .unwrap_or_default();
    let provider_name = request.principal_arn.rsplit('/').next().unwrap_or_default();
    let name_qualifier = name_qualifier(&issuer, &role.account, provider_name);
    xml_ok(format!(
        "<AssumeRoleWithSAMLResponse xmlns=\"{STS_NS}\">\n  <AssumeRoleWithSAMLResult>\n    \
         <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      \
         <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n    \
         <AssumedRoleUser>\n      <AssumedRoleId>{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n    \
         <Subject>{}</Subject>\n    <SubjectType>{}</SubjectType>\n    <Issuer>{}</Issuer>\n    \
         <Audience>{}</Audience>\n    <NameQualifier>{}</NameQualifier>\n  </AssumeRoleWithSAMLResult>\n  \
         <ResponseMetadata>\n    <RequestId>{{REQUEST_ID}}</RequestId>\n  </ResponseMetadata>\n\
         </AssumeRoleWithSAMLResponse>\n",
        issued.access_key_id,
        issued.secret_access_key,
        issued.session_token,
        iso8601(issued.expiration),
        esc(&issued.assumed_role_id),
        esc(&issued.assumed_role_arn),
        esc(&subject),
        esc(&subject_type),
        esc(&issuer),
        esc(&audience),
        name_qualifier,
    ))
}

fn get_caller_identity(shared: &Shared, headers: &HeaderMap) -> Answer {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // SigV4: "AWS4-HMAC-SHA256 Credential=AKID/20261128/us-east-1/sts/aws4_request, ...".
    // The signature is not checked: which key signed is what the tests want to know.
    let key_id = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_owned();
    if key_id.is_empty() {
        return sts_error(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        );
    }
    let session_token = header("x-amz-security-token").to_owned();
    let found = {
        let mut state = shared.lock();
        state.caller_identity_keys.push(key_id.clone());
        state
            .issued
            .iter()
            .find(|c| c.access_key_id == key_id)
            .cloned()
    };
    shared.notify();

    let Some(creds) = found.filter(|c| c.session_token == session_token) else {
        return sts_error(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    };
    if creds.expiration <= OffsetDateTime::now_utc() {
        return sts_error(
            400,
            "ExpiredToken",
            "The security token included in the request is expired",
        );
    }
    let account = RoleArn::parse(&creds.role_arn)
        .map(|r| r.account)
        .unwrap_or_default();
    xml_ok(format!(
        "<GetCallerIdentityResponse xmlns=\"{STS_NS}\">\n  <GetCallerIdentityResult>\n    \
         <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  \
         <ResponseMetadata>\n    <RequestId>{{REQUEST_ID}}</RequestId>\n  </ResponseMetadata>\n\
         </GetCallerIdentityResponse>\n",
        esc(&creds.assumed_role_arn),
        esc(&creds.assumed_role_id),
        esc(&account),
    ))
}

/// The parts of `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME` the answer needs.
struct RoleArn {
    partition: String,
    account: String,
    name: String,
}

impl RoleArn {
    fn parse(arn: &str) -> Option<RoleArn> {
        let mut fields = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return None;
        };
        let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
        let valid = !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty();
        valid.then(|| RoleArn {
            partition: partition.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// What STS reads from an assertion. Namespace prefixes are ignored (JumpCloud uses `saml2:`,
/// others `saml:` or none).
#[derive(Debug, Default)]
struct SamlFacts {
    roles: Vec<String>,
    session_name: Option<String>,
    /// Conditions/@NotOnOrAfter and SubjectConfirmationData/@NotOnOrAfter.
    not_on_or_after: Vec<OffsetDateTime>,
    session_not_on_or_after: Option<OffsetDateTime>,
    /// Conditions/@NotBefore and SubjectConfirmationData/@NotBefore.
    not_before: Vec<OffsetDateTime>,
    /// Assertion/@IssueInstant.
    issue_instant: Option<OffsetDateTime>,
    /// SubjectConfirmationData/@Recipient of each SubjectConfirmationData.
    recipients: Vec<Option<String>>,
    issuer: Option<String>,
    name_id: Option<String>,
    name_id_format: Option<String>,
    /// The first Audience (STS reports the Recipient as `Audience`; kept for the unit test).
    audience: Option<String>,
    /// Every Audience.
    audiences: Vec<String>,
}

impl SamlFacts {
    fn parse(assertion_b64: &str) -> Result<SamlFacts, String> {
        let compact: String = assertion_b64
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let xml = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| "Invalid base64 SAMLResponse".to_owned())?;
        let xml = String::from_utf8(xml).map_err(|_| "SAMLResponse is not UTF-8".to_owned())?;
        Self::parse_xml(&xml).map_err(|why| format!("Response is not well-formed: {why}"))
    }

    fn parse_xml(xml: &str) -> Result<SamlFacts, String> {
        let mut facts = SamlFacts::default();
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut root_seen = false;
        let mut attribute: Option<String> = None;
        // Text being collected and where it goes when its element ends.
        let mut capture: Option<(Capture, String)> = None;
        loop {
            let event = reader.read_event().map_err(|e| e.to_string())?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    let local = e.local_name();
                    let name: &str = local.as_ref();
                    if !root_seen {
                        root_seen = true;
                        if name != "Response" {
                            return Err(format!("root element is {name}, not Response"));
                        }
                    }
                    if let Some(what) = facts.start_element(e, &mut attribute)? {
                        if empty {
                            facts.store(what, String::new(), attribute.as_deref());
                        } else {
                            capture = Some((what, String::new()));
                        }
                    }
                }
                Event::Text(ref t) => {
                    if let Some((_, text)) = &mut capture {
                        text.push_str(&t.xml10_content());
                    }
                }
                Event::CData(ref t) => {
                    if let Some((_, text)) = &mut capture {
                        text.push_str(t.as_ref());
                    }
                }
                Event::GeneralRef(ref r) => {
                    if let Some((_, text)) = &mut capture {
                        let reference = format!("&{};", r.xml10_content());
                        let resolved =
                            quick_xml::escape::unescape(&reference).map_err(|e| e.to_string())?;
                        text.push_str(&resolved);
                    }
                }
                Event::End(ref e) => {
                    let local = e.local_name();
                    match local.as_ref() {
                        "Attribute" => attribute = None,
                        "AttributeValue" | "Issuer" | "NameID" | "Audience" => {
                            if let Some((what, text)) = capture.take() {
                                facts.store(what, text.trim().to_owned(), attribute.as_deref());
                            }
                        }
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !root_seen {
            return Err("no root element".to_owned());
        }
        Ok(facts)
    }

    /// Reads the facts an opening (or empty) element carries in its attributes, and says
    /// which, if any, its text is. `attribute` is the Name of the Attribute being read.
    fn start_element(
        &mut self,
        e: &BytesStart<'_>,
        attribute: &mut Option<String>,
    ) -> Result<Option<Capture>, String> {
        let local = e.local_name();
        let name: &str = local.as_ref();
        let attr = |key: &str| -> Result<Option<String>, String> {
            match e.try_get_attribute(key).map_err(|e| e.to_string())? {
                Some(a) => Ok(Some(
                    a.normalized_value(quick_xml::XmlVersion::default())
                        .map_err(|e| e.to_string())?
                        .into_owned(),
                )),
                None => Ok(None),
            }
        };
        Ok(match name {
            "Conditions" | "SubjectConfirmationData" => {
                if let Some(limit) = attr("NotOnOrAfter")? {
                    self.not_on_or_after.push(parse_time(&limit)?);
                }
                if let Some(start) = attr("NotBefore")? {
                    self.not_before.push(parse_time(&start)?);
                }
                if name == "SubjectConfirmationData" {
                    self.recipients.push(attr("Recipient")?);
                }
                None
            }
            "Assertion" if self.issue_instant.is_none() => {
                if let Some(instant) = attr("IssueInstant")? {
                    self.issue_instant = Some(parse_time(&instant)?);
                }
                None
            }
            "AuthnStatement" => {
                if let Some(limit) = attr("SessionNotOnOrAfter")? {
                    self.session_not_on_or_after = Some(parse_time(&limit)?);
                }
                None
            }
            "Attribute" => {
                *attribute = attr("Name")?;
                None
            }
            "AttributeValue" => Some(Capture::AttributeValue),
            "Issuer" if self.issuer.is_none() => Some(Capture::Issuer),
            "NameID" => {
                self.name_id_format = attr("Format")?;
                Some(Capture::NameId)
            }
            "Audience" => Some(Capture::Audience),
            _ => None,
        })
    }

    /// Whether the assertion is meant for AWS in `partition`: exactly one
    /// SubjectConfirmationData whose Recipient is a sign-in endpoint of the partition, and an
    /// Audience naming AWS there (its entity ID or the sign-in endpoint). The reason if not.
    fn addressed_to_aws(&self, partition: &str) -> Result<(), String> {
        let (entity_id, endpoint, host) = match partition {
            "aws-us-gov" => (
                "urn:amazon:webservices:govcloud",
                "https://signin.amazonaws-us-gov.com/saml",
                "signin.amazonaws-us-gov.com",
            ),
            "aws-cn" => (
                "urn:amazon:webservices:cn-north-1",
                "https://signin.amazonaws.cn/saml",
                "signin.amazonaws.cn",
            ),
            _ => (
                "urn:amazon:webservices",
                "https://signin.aws.amazon.com/saml",
                "signin.aws.amazon.com",
            ),
        };
        // The global endpoint, or a regional one (`https://REGION.signin...`), optionally
        // with the `/acs/IdP-ID` suffix of encrypted-assertion providers.
        let is_endpoint = |url: &str| {
            url == endpoint
                || url.strip_prefix("https://").is_some_and(|rest| {
                    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                    let regional = authority
                        .strip_suffix(host)
                        .and_then(|r| r.strip_suffix('.'))
                        .is_some_and(|region| {
                            !region.is_empty()
                                && region
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        });
                    (authority == host || regional)
                        && (path == "saml" || path.starts_with("saml/acs/"))
                })
        };
        match self.recipients.as_slice() {
            [Some(recipient)] if is_endpoint(recipient) => {}
            [Some(recipient)] => {
                return Err(format!(
                    "The SAML assertion's Recipient {recipient:?} is not the AWS sign-in \
                     endpoint {endpoint}"
                ));
            }
            [None] => return Err("The SAML assertion has no Recipient".to_owned()),
            [] => return Err("The SAML assertion has no SubjectConfirmationData".to_owned()),
            _ => {
                return Err(
                    "The SAML assertion must have exactly one SubjectConfirmation".to_owned(),
                );
            }
        }
        if !self
            .audiences
            .iter()
            .any(|a| a == entity_id || is_endpoint(a))
        {
            return Err(format!(
                "The SAML assertion's audience {:?} is not AWS ({entity_id} or {endpoint})",
                self.audiences
            ));
        }
        Ok(())
    }

    fn store(&mut self, what: Capture, text: String, attribute: Option<&str>) {
        match what {
            Capture::AttributeValue => match attribute {
                Some(ROLE_ATTRIBUTE) => self.roles.push(text),
                Some(SESSION_NAME_ATTRIBUTE) if self.session_name.is_none() => {
                    self.session_name = Some(text)
                }
                _ => {}
            },
            Capture::Issuer => self.issuer = Some(text),
            Capture::NameId => self.name_id = Some(text),
            Capture::Audience => {
                if self.audience.is_none() {
                    self.audience = Some(text.clone());
                }
                self.audiences.push(text);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Capture {
    AttributeValue,
    Issuer,
    NameId,
    Audience,
}

fn parse_time(value: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|e| format!("bad time {value:?}: {e}"))
}

/// STS's SubjectType: the short form of the SAML 2.0 NameID formats, otherwise the format itself.
fn subject_type(format: Option<&str>) -> String {
    const PREFIX: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:";
    match format {
        None => "unspecified".to_owned(),
        Some(f) => f.strip_prefix(PREFIX).unwrap_or(f).to_owned(),
    }
}

/// A stable stand-in for STS's NameQualifier (base64 of SHA-1 over issuer, account and
/// provider name): same inputs, same value, 28 base64 characters like the real one.
fn name_qualifier(issuer: &str, account: &str, provider: &str) -> String {
    let mut digest = [0u8; 20];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, byte) in format!("{issuer}{account}/{provider}")
        .bytes()
        .cycle()
        .take(200)
        .enumerate()
    {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        digest[i % 20] ^= (h >> 24) as u8;
    }
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// `2026-11-28T11:16:07Z`: STS prints whole seconds.
fn iso8601(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("formattable time")
}

fn esc(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_chars(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[fastrand::usize(..alphabet.len())]))
        .collect()
}

fn request_id() -> String {
    let hex = |n: usize| -> String {
        (0..n).fold(String::new(), |mut s, _| {
            let _ = write!(s, "{:x}", fastrand::u8(..16));
            s
        })
    };
    format!("{}-{}-{}-{}-{}", hex(8), hex(4), hex(4), hex(4), hex(12))
}

/// Accepts TCP connections whose [`ResettableStream`] a handler can order reset.
struct ResettableListener(TcpListener);

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        ResettableStream {
                            stream,
                            reset: Arc::new(AtomicBool::new(false)),
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails every I/O once `reset` is set and is then closed
/// with an RST (SO_LINGER 0), the way a crashing server or a middlebox drops a connection.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
            return Err(io::Error::from(io::ErrorKind::ConnectionReset));
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// Per-connection handle given to the handler, so that it can reset its own connection.
#[derive(Clone)]
struct Connection {
    reset: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, ResettableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        Connection {
            reset: Arc::clone(&stream.io().reset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_split_into_partition_account_and_name() {
        let role = RoleArn::parse("arn:aws-us-gov:iam::123456789012:role/path/to/Dev").unwrap();
        assert_eq!(
            (
                role.partition.as_str(),
                role.account.as_str(),
                role.name.as_str()
            ),
            ("aws-us-gov", "123456789012", "Dev")
        );
        assert!(RoleArn::parse("arn:aws:iam::123456789012:saml-provider/JumpCloud").is_none());
        assert!(RoleArn::parse("arn:aws:iam::12345:role/Dev").is_none());
    }

    #[test]
    fn the_assertion_facts_are_read_whatever_the_prefix() {
        let xml = r#"<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion">
  <saml2:Issuer>JumpCloud</saml2:Issuer>
  <saml2:Assertion><saml2:Issuer>JumpCloud</saml2:Issuer>
    <saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">a&amp;b@example.com</saml2:NameID>
      <saml2:SubjectConfirmation><saml2:SubjectConfirmationData NotOnOrAfter="2030-01-01T00:05:00Z"/></saml2:SubjectConfirmation></saml2:Subject>
    <saml2:Conditions NotOnOrAfter="2030-01-01T00:06:00.123Z"><saml2:AudienceRestriction><saml2:Audience>urn:amazon:webservices</saml2:Audience></saml2:AudienceRestriction></saml2:Conditions>
    <saml2:AuthnStatement SessionNotOnOrAfter="2030-01-01T08:00:00Z"/>
    <saml2:AttributeStatement>
      <saml2:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role">
        <saml2:AttributeValue> arn:aws:iam::1:role/A,arn:aws:iam::1:saml-provider/J </saml2:AttributeValue>
        <saml2:AttributeValue>arn:aws:iam::1:saml-provider/J,arn:aws:iam::1:role/B</saml2:AttributeValue>
      </saml2:Attribute>
      <saml2:Attribute Name="https://aws.amazon.com/SAML/Attributes/RoleSessionName"><saml2:AttributeValue>alice</saml2:AttributeValue></saml2:Attribute>
    </saml2:AttributeStatement></saml2:Assertion></saml2p:Response>"#;
        let facts = SamlFacts::parse_xml(xml).unwrap();
        assert_eq!(
            facts.roles,
            [
                "arn:aws:iam::1:role/A,arn:aws:iam::1:saml-provider/J",
                "arn:aws:iam::1:saml-provider/J,arn:aws:iam::1:role/B"
            ]
        );
        assert_eq!(facts.session_name.as_deref(), Some("alice"));
        assert_eq!(facts.issuer.as_deref(), Some("JumpCloud"));
        assert_eq!(facts.name_id.as_deref(), Some("a&b@example.com"));
        assert_eq!(subject_type(facts.name_id_format.as_deref()), "persistent");
        assert_eq!(facts.audience.as_deref(), Some("urn:amazon:webservices"));
        assert_eq!(facts.not_on_or_after.len(), 2);
        assert_eq!(
            facts.session_not_on_or_after.unwrap().unix_timestamp(),
            1_893_456_000 + 8 * 3600
        );
    }

    #[test]
    fn non_saml_documents_are_rejected() {
        assert!(
            SamlFacts::parse_xml("<html><body/></html>")
                .unwrap_err()
                .contains("not Response")
        );
        assert!(SamlFacts::parse_xml("").is_err());
        assert!(SamlFacts::parse("!!!not base64").is_err());
    }

    #[test]
    fn expiration_is_printed_in_whole_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(iso8601(t), "2027-01-15T08:00:00Z");
    }
}
