//! The HTTP exchange with JumpCloud and what its failures become: sending a request (a 429
//! becomes [`IdpError::Throttled`]), reading an answer under the size cap of its kind, parsing
//! JSON, turning an unexpected status or a transport failure into an [`IdpError`], and the TLS
//! configuration from [`crate::idp::transport`].

use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use samld_proto::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use super::{JumpCloud, Session};
use crate::idp::IdpError;
pub(super) use crate::idp::transport::{network_error, redacted_url, shared_tls_config};

/// The most samld reads of a page from JumpCloud (the SAML page of the app). A real SAML page
/// is a few KiB (the assertion of a user with dozens of roles stays well under 100 KiB);
/// anything bigger is not JumpCloud, and reading it whole would let whatever answers grow the
/// daemon's memory without bound.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The most samld reads of a JSON answer from JumpCloud (XSRF token, sign-in, push, session
/// probe): real ones are a few hundred bytes.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` samld passes on: a larger one (a bogus date, or years) would stop
/// an account's refreshes for that long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The longest piece of JumpCloud's own error text kept for a message.
const MAX_ERROR_TEXT: usize = 200;

/// A JSON error body, when a failing response has one.
#[derive(Deserialize)]
struct MessageOnly {
    message: Option<String>,
    error: Option<serde_json::Value>,
}

/// What an answer is expected to be, for its size cap.
#[derive(Clone, Copy)]
pub(super) enum BodyKind {
    Json,
    Page,
}

impl BodyKind {
    fn limit(self) -> usize {
        match self {
            BodyKind::Json => MAX_JSON_BYTES,
            BodyKind::Page => MAX_PAGE_BYTES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BodyKind::Json => "a JSON answer",
            BodyKind::Page => "a page",
        }
    }
}

/// A whole (capped) answer.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// The `Location` header, for the redirects of the API client (which follows none).
    pub(super) location: Option<String>,
    pub(super) body: Vec<u8>,
}

impl JumpCloud {
    /// A JSON API request with the headers JumpCloud's own console sends.
    pub(super) fn api_request(
        &self,
        session: &Session,
        method: Method,
        url: &Url,
        xsrf: Option<&Secret>,
    ) -> Result<RequestBuilder, IdpError> {
        let mut request = session
            .api
            .request(method, url.clone())
            .header(ACCEPT, "application/json")
            .header("X-Requested-With", "XMLHttpRequest");
        if let Some(token) = xsrf {
            let mut value =
                HeaderValue::from_str(token.expose()).map_err(|_| IdpError::UnexpectedStatus {
                    request: "GET /userconsole/xsrf".to_owned(),
                    status: 200,
                    message: Some("the XSRF token is not a valid header value".to_owned()),
                })?;
            value.set_sensitive(true);
            request = request.header("X-Xsrftoken", value);
        }
        Ok(request)
    }
}

/// Sends a request; an HTTP 429 becomes [`IdpError::Throttled`], whatever the request.
pub(super) async fn send(
    request: RequestBuilder,
    name: &str,
    url: &Url,
) -> Result<Response, IdpError> {
    let response: Response = request.send().await.map_err(|e| network_error(url, e))?;
    let status = response.status();
    debug!(
        request = name,
        status = status.as_u16(),
        "JumpCloud answered"
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(IdpError::Throttled {
            request: name.to_owned(),
            retry_after: retry_after(response.headers(), SystemTime::now()),
        });
    }
    Ok(response)
}

/// Sends a request and reads the whole answer, up to the cap of its kind.
pub(super) async fn exchange(
    request: RequestBuilder,
    name: &str,
    url: &Url,
    kind: BodyKind,
) -> Result<Answer, IdpError> {
    let response = send(request, name, url).await?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(response, name, url, kind).await?;
    Ok(Answer {
        status,
        location,
        body,
    })
}

/// Reads a body chunk by chunk, failing as soon as it passes the cap of its kind: never more
/// than the cap (and one chunk) is held, and dropping the response closes the connection
/// rather than reading the rest.
pub(super) async fn read_capped(
    mut response: Response,
    name: &str,
    url: &Url,
    kind: BodyKind,
) -> Result<Vec<u8>, IdpError> {
    let limit = kind.limit();
    let too_large = || IdpError::TooLarge {
        request: name.to_owned(),
        limit,
        kind: kind.name(),
    };
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize));
    while let Some(chunk) = response.chunk().await.map_err(|e| network_error(url, e))? {
        if body.len() + chunk.len() > limit {
            debug!(request = name, limit, "JumpCloud's answer is over the cap");
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as a wait from `now`: whole seconds or an HTTP date (a date already past is
/// no wait), capped at [`MAX_RETRY_AFTER`]. `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// JumpCloud's `error` as text: a string as is, an object by its `message` (or as JSON),
/// without control characters and at most [`MAX_ERROR_TEXT`] characters long.
pub(super) fn error_text(error: &serde_json::Value) -> Option<String> {
    let text = match error {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => match map.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    };
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_TEXT + 1)
        .collect();
    if clean.chars().count() > MAX_ERROR_TEXT {
        clean = clean.chars().take(MAX_ERROR_TEXT).collect();
        clean.push('…');
    }
    let clean = clean.trim().to_owned();
    (!clean.is_empty()).then_some(clean)
}

/// Parses a JSON answer; anything else (typically an HTML error or login page) is reported
/// as [`IdpError::UnexpectedHtml`] naming the request.
pub(super) fn parse_json<T: DeserializeOwned>(
    request: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, IdpError> {
    serde_json::from_slice(body).map_err(|_| IdpError::UnexpectedHtml {
        request: request.to_owned(),
        status: status.as_u16(),
    })
}

/// A status the request should not get. A 4xx whose body is JumpCloud's `{"error": ...}`
/// (and no `message`) is reported in JumpCloud's words ([`IdpError::JumpCloudError`]).
pub(super) fn unexpected_status(request: &str, status: StatusCode, body: &[u8]) -> IdpError {
    let parsed = serde_json::from_slice::<MessageOnly>(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|m| m.error.as_ref())
        .and_then(error_text);
    let message = parsed.and_then(|m| m.message);
    if status.is_client_error()
        && message.is_none()
        && let Some(error) = error
    {
        return IdpError::JumpCloudError {
            request: request.to_owned(),
            status: status.as_u16(),
            error,
        };
    }
    IdpError::UnexpectedStatus {
        request: request.to_owned(),
        status: status.as_u16(),
        message: message.or(error),
    }
}

/// `own` plus those `extra` cookies whose names `own` lacks, as one Cookie header.
pub(super) fn merge_cookie_headers(
    own: Option<&HeaderValue>,
    extra: &HeaderValue,
) -> Option<String> {
    let pairs = |v: &HeaderValue| -> Vec<String> {
        v.to_str()
            .unwrap_or_default()
            .split(';')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let name = |pair: &str| pair.split('=').next().unwrap_or_default().to_owned();
    let mut merged = own.map(pairs).unwrap_or_default();
    let names: Vec<String> = merged.iter().map(|p| name(p)).collect();
    merged.extend(
        pairs(extra)
            .into_iter()
            .filter(|p| !names.contains(&name(p))),
    );
    (!merged.is_empty()).then(|| merged.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::jumpcloud::auth::AuthReply;

    #[test]
    fn network_urls_lose_query_and_credentials() {
        let url = Url::parse("https://u:p@console.jumpcloud.com/a/b?token=secret#frag").unwrap();
        assert_eq!(redacted_url(&url), "https://console.jumpcloud.com/a/b");
    }

    #[test]
    fn cookie_merge_keeps_own_values_first() {
        let own = HeaderValue::from_static("a=1; b=2");
        let extra = HeaderValue::from_static("b=9; c=3");
        assert_eq!(
            merge_cookie_headers(Some(&own), &extra).unwrap(),
            "a=1; b=2; c=3"
        );
        assert_eq!(merge_cookie_headers(None, &extra).unwrap(), "b=9; c=3");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            h
        };
        let in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        // (Retry-After value, the wait it asks for)
        let cases = [
            ("120", Some(Duration::from_secs(120))),
            (in_90s.as_str(), Some(Duration::from_secs(90))),
            (past.as_str(), Some(Duration::ZERO)),
            ("99999999", Some(MAX_RETRY_AFTER)),
            ("soon", None),
        ];
        for (value, want) in cases {
            assert_eq!(retry_after(&headers(value), now), want, "{value:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_bodies_of_any_shape_are_read_not_taken_for_html() {
        let object: AuthReply =
            serde_json::from_str(r#"{"error":{"code":4014,"message":"MFA needed"}}"#).unwrap();
        assert_eq!(object.explanation().as_deref(), Some("MFA needed"));
        let code: AuthReply = serde_json::from_str(r#"{"error":4014}"#).unwrap();
        assert_eq!(code.explanation().as_deref(), Some("4014"));
        let long = "x".repeat(1000);
        let text = error_text(&serde_json::Value::String(format!("a\nb\u{1b}[31m{long}"))).unwrap();
        assert!(
            text.starts_with("a b [31m") && text.ends_with('…'),
            "{text}"
        );
        assert_eq!(text.chars().count(), MAX_ERROR_TEXT + 1);
        let err = unexpected_status(
            "GET /userconsole/xsrf",
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad"}"#,
        );
        assert_eq!(
            err,
            IdpError::JumpCloudError {
                request: "GET /userconsole/xsrf".to_owned(),
                status: 400,
                error: "bad".to_owned(),
            }
        );
    }
}
