//! AWS console sign-in (`samlctl console`): trade a role's credentials for a sign-in token at
//! the federation endpoint, then build the console login URL around it.
//!
//! `GET {federation}?Action=getSigninToken&Session={"sessionId","sessionKey","sessionToken"}`
//! answers `{"SigninToken": ...}`; `{federation}?Action=login&Issuer=samld&Destination=...&
//! SigninToken=...` is the URL the browser opens. The call happens here rather than in
//! `samlctl` because the daemon holds the credentials and already has an HTTP client.
//!
//! The query of the first request carries the secret key and session token, and the sign-in
//! token opens the console for as long as the credentials live, so no URL of either request is
//! ever logged or put into an error message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use samld_config::{DEFAULT_FEDERATION_URL, Partition};
use samld_proto::{ConsoleSignin, CredentialSource, Credentials, ErrorCode, Secret, WireError};
use url::Url;

use crate::manager::Manager;

/// The `Issuer` shown by the console's sign-out page.
const ISSUER: &str = "samld";

/// A sign-in token answer is about 1 KiB; anything much larger is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long the federation endpoint may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A console sign-in URL for `role` (or the default role) of `account`.
///
/// `session_duration` is the federation endpoint's `SessionDuration` in seconds; `None` leaves
/// it to AWS.
pub async fn console_url(
    daemon: &Arc<Manager>,
    account: &str,
    role: Option<&str>,
    session_duration: Option<u32>,
) -> Result<ConsoleSignin, WireError> {
    console_url_traced(daemon, account, role, session_duration, &mut None).await
}

/// [`console_url`], noting in `handed_out` the role whose credentials went to the federation
/// endpoint and where they came from, for the audit: set as soon as they are sent, so a
/// federation call that fails afterwards is still recorded as theirs.
pub async fn console_url_traced(
    daemon: &Arc<Manager>,
    account: &str,
    role: Option<&str>,
    session_duration: Option<u32>,
    handed_out: &mut Option<(String, CredentialSource)>,
) -> Result<ConsoleSignin, WireError> {
    if let Some(d) = session_duration
        && !(900..=43_200).contains(&d)
    {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!("a console session lasts 15 minutes to 12 hours, not {d} seconds"),
        ));
    }
    let (creds, source) = daemon.get_credentials_traced(account, role, None).await?;
    let config = daemon.config();
    let settings = config.account(account).ok_or_else(|| {
        WireError::new(
            ErrorCode::UnknownAccount,
            format!("the account `{account}` was removed from the config"),
        )
    })?;
    let partition = Partition::of_role_arn(&creds.role_arn);
    // The configured URL wins, except the built-in default, which only suits the commercial
    // partition: a GovCloud or China role gets its own partition's endpoint.
    let federation = if settings.federation_url == DEFAULT_FEDERATION_URL {
        partition.federation_url()
    } else {
        settings.federation_url.as_str()
    };
    let federation = Url::parse(federation).map_err(|e| {
        WireError::new(
            ErrorCode::ConfigError,
            format!("federation_url of {account} is not a URL: {e}"),
        )
    })?;
    *handed_out = Some((creds.role_arn.clone(), source));
    let token = signin_token(&federation, &creds, session_duration).await?;
    let destination = destination(partition, settings.region.as_deref());
    let url = login_url(&federation, &destination, &token);
    tracing::info!(account, role = %creds.role_arn, "console sign-in URL issued");
    Ok(ConsoleSignin {
        url,
        account: creds.account.clone(),
        role_arn: creds.role_arn.clone(),
    })
}

/// The console page to land on: the home page, in the account's region when it has one.
fn destination(partition: Partition, region: Option<&str>) -> String {
    match region {
        Some(region) => format!("{}console/home?region={region}", partition.console_url()),
        None => partition.console_url().to_owned(),
    }
}

fn client() -> Result<&'static reqwest::Client, WireError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    // reqwest is built without a default TLS provider; the daemon installs ring at start-up,
    // and this makes sure of it for every other caller.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        // A redirect would be the endpoint misbehaving; its answer is checked as it is.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            WireError::new(
                ErrorCode::Internal,
                format!("cannot build an HTTP client: {}", e.without_url()),
            )
        })?;
    Ok(CLIENT.get_or_init(|| client))
}

async fn signin_token(
    federation: &Url,
    creds: &Credentials,
    session_duration: Option<u32>,
) -> Result<Secret, WireError> {
    let host = federation.host_str().unwrap_or("the federation endpoint");
    let session = Secret::from(
        serde_json::json!({
            "sessionId": creds.access_key_id,
            "sessionKey": creds.secret_access_key.expose(),
            "sessionToken": creds.session_token.expose(),
        })
        .to_string(),
    );
    let mut url = federation.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("Action", "getSigninToken");
        if let Some(d) = session_duration {
            query.append_pair("SessionDuration", &d.to_string());
        }
        query.append_pair("Session", session.expose());
    }
    let url = Secret::from(String::from(url));
    let response = client()?
        .get(url.expose())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            // `without_url`: the URL carries the secret key.
            WireError::new(
                ErrorCode::NetworkError,
                format!(
                    "cannot reach {host} for a console sign-in token: {}",
                    e.without_url()
                ),
            )
        })?;
    let status = response.status();
    let body = read_capped(response).await.map_err(|e| {
        WireError::new(
            ErrorCode::NetworkError,
            format!("{host} broke off its sign-in token answer: {e}"),
        )
    })?;
    if !status.is_success() {
        return Err(WireError::new(
            ErrorCode::StsError,
            format!(
                "{host} refused the console sign-in (HTTP {status}); the role's credentials may \
                 be too short-lived, or the session duration too long"
            ),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "SigninToken")]
        signin_token: Secret,
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
        WireError::new(
            ErrorCode::StsError,
            format!("{host} answered without a sign-in token"),
        )
    })?;
    Ok(answer.signin_token)
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn login_url(federation: &Url, destination: &str, token: &Secret) -> Secret {
    let mut url = federation.clone();
    url.query_pairs_mut()
        .clear()
        .append_pair("Action", "login")
        .append_pair("Issuer", ISSUER)
        .append_pair("Destination", destination)
        .append_pair("SigninToken", token.expose());
    Secret::from(String::from(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_lands_in_the_region() {
        assert_eq!(
            destination(Partition::Aws, Some("us-east-2")),
            "https://console.aws.amazon.com/console/home?region=us-east-2"
        );
        assert_eq!(
            destination(Partition::China, None),
            "https://console.amazonaws.cn/"
        );
    }

    #[test]
    fn login_url_has_the_federation_shape() {
        let federation = Url::parse("https://signin.aws.amazon.com/federation").unwrap();
        let url = login_url(
            &federation,
            "https://console.aws.amazon.com/",
            &Secret::new("tok+/="),
        );
        assert_eq!(
            url.expose(),
            "https://signin.aws.amazon.com/federation?Action=login&Issuer=samld&Destination=https%3A%2F%2Fconsole.aws.amazon.com%2F&SigninToken=tok%2B%2F%3D"
        );
    }
}
