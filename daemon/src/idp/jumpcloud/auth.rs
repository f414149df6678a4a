//! R1 and R2: the XSRF token, and the password POST (with its TOTP retry), with what each
//! answer of `POST /userconsole/auth` means: signed in, a second factor needed, or a failure.

use reqwest::{Method, StatusCode, Url};
use samld_proto::Secret;
use serde::Deserialize;

use super::http::{Answer, BodyKind, error_text, exchange, parse_json, unexpected_status};
use super::mfa::OfferedFactor;
use super::{JumpCloud, Session};
use crate::idp::IdpError;

/// Any answer of `POST /userconsole/auth` (and of the push login).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuthReply {
    #[serde(rename = "redirectTo")]
    pub(super) redirect_to: Option<String>,
    message: Option<String>,
    /// Any JSON: some answers carry an object here rather than a string.
    error: Option<serde_json::Value>,
    factors: Option<Vec<OfferedFactor>>,
}

impl AuthReply {
    /// JumpCloud's explanation, whichever key carries it.
    pub(super) fn explanation(&self) -> Option<String> {
        self.message
            .clone()
            .or_else(|| self.error.as_ref().and_then(error_text))
    }

    fn asks_for_mfa(&self) -> bool {
        self.factors.as_ref().is_some_and(|f| !f.is_empty())
            || self
                .message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains("mfa required"))
    }
}

#[derive(Deserialize)]
struct XsrfReply {
    xsrf: String,
}

/// Where an answer of `POST /userconsole/auth` leads.
pub(super) enum AuthStep {
    /// Logged in: fetch the SAML page here.
    Done(Url),
    /// A second factor is needed; these are the factors JumpCloud listed, or `None` for a
    /// bare "MFA required." that names none.
    Mfa(Option<Vec<OfferedFactor>>),
}

/// Which `POST /userconsole/auth` is being answered: the password alone, or password + code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthStage {
    Password,
    Totp,
}

impl JumpCloud {
    /// R1: the XSRF token (the console cookies land in the jar).
    pub(super) async fn xsrf(&self, session: &Session) -> Result<Secret, IdpError> {
        const NAME: &str = "GET /userconsole/xsrf";
        let url = self.console_endpoint("/userconsole/xsrf");
        let request = self.api_request(session, Method::GET, &url, None)?;
        let Answer { status, body, .. } = exchange(request, NAME, &url, BodyKind::Json).await?;
        if status != StatusCode::OK {
            return Err(unexpected_status(NAME, status, &body));
        }
        let reply: XsrfReply = parse_json(NAME, status, &body)?;
        if reply.xsrf.is_empty() {
            return Err(IdpError::UnexpectedStatus {
                request: NAME.to_owned(),
                status: status.as_u16(),
                message: Some("the answer carried an empty XSRF token".to_owned()),
            });
        }
        Ok(Secret::new(reply.xsrf))
    }

    /// R2 (and the TOTP retry of R2): the password, and the code when `otp` is given.
    pub(super) async fn post_auth(
        &self,
        session: &Session,
        xsrf: &Secret,
        password: &Secret,
        otp: Option<&Secret>,
    ) -> Result<AuthStep, IdpError> {
        const NAME: &str = "POST /userconsole/auth";
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct AuthBody<'a> {
            context: &'a str,
            redirect_to: &'a str,
            email: &'a str,
            password: &'a str,
            otp: &'a str,
        }
        let stage = if otp.is_some() {
            AuthStage::Totp
        } else {
            AuthStage::Password
        };
        let url = self.console_endpoint("/userconsole/auth");
        let request = self
            .api_request(session, Method::POST, &url, Some(xsrf))?
            .json(&AuthBody {
                context: "sso",
                redirect_to: &self.redirect_to,
                email: &self.username,
                password: password.expose(),
                otp: otp.map_or("", Secret::expose),
            });
        let Answer {
            status,
            location,
            body,
        } = exchange(request, NAME, &url, BodyKind::Json).await?;
        if status.is_server_error() {
            return Err(unexpected_status(NAME, status, &body));
        }
        if status.is_redirection() {
            return Err(self.redirected(NAME, &url, status, location.as_deref()));
        }
        let reply: AuthReply = parse_json(NAME, status, &body)?;
        match status {
            StatusCode::OK => {
                if let Some(target) = reply.redirect_to.as_deref() {
                    return Ok(AuthStep::Done(self.resolve_redirect(NAME, target)?));
                }
                // Some clients saw JumpCloud ask for a factor on a 2xx; honour it.
                if stage == AuthStage::Password && reply.asks_for_mfa() {
                    return Ok(AuthStep::Mfa(reply.factors));
                }
                Err(IdpError::UnexpectedStatus {
                    request: NAME.to_owned(),
                    status: 200,
                    message: Some(
                        reply
                            .explanation()
                            .unwrap_or_else(|| "the answer carried no redirectTo".to_owned()),
                    ),
                })
            }
            StatusCode::UNAUTHORIZED => match stage {
                AuthStage::Password if reply.asks_for_mfa() => Ok(AuthStep::Mfa(reply.factors)),
                // Not the "Authentication failed." message: JumpCloud's own words, which may
                // be about the account rather than the password (a saved password must not be
                // dropped for them).
                AuthStage::Password if reply.message.is_none() && reply.error.is_some() => {
                    Err(IdpError::JumpCloudError {
                        request: NAME.to_owned(),
                        status: status.as_u16(),
                        error: reply.explanation().unwrap_or_default(),
                    })
                }
                AuthStage::Password => Err(IdpError::AuthFailed {
                    message: reply
                        .explanation()
                        .unwrap_or_else(|| "Authentication failed.".to_owned()),
                }),
                AuthStage::Totp => Err(IdpError::MfaCodeRejected {
                    message: reply
                        .explanation()
                        .unwrap_or_else(|| "the code was not accepted".to_owned()),
                }),
            },
            _ => Err(unexpected_status(NAME, status, &body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfa_is_recognised_by_factors_or_message() {
        let by_factors: AuthReply = serde_json::from_str(
            r#"{"message":"x","factors":[{"type":"totp","status":"available"}]}"#,
        )
        .unwrap();
        assert!(by_factors.asks_for_mfa());
        let by_message: AuthReply = serde_json::from_str(r#"{"message":"MFA required."}"#).unwrap();
        assert!(by_message.asks_for_mfa());
        let failed: AuthReply =
            serde_json::from_str(r#"{"message":"Authentication failed."}"#).unwrap();
        assert!(!failed.asks_for_mfa());
    }
}
