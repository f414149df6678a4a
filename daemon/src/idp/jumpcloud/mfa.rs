//! R3, the second factor: which factor a login uses among those JumpCloud offers (following
//! the `mfa` setting), a TOTP code, a JumpCloud Protect push, and a bare "MFA required." that
//! names no factor.

use std::time::Instant;

use reqwest::{Method, StatusCode, Url};
use samld_proto::Secret;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{debug, trace};

use super::auth::{AuthReply, AuthStep};
use super::http::{Answer, BodyKind, exchange, parse_json, unexpected_status};
use super::{JumpCloud, MfaMode, Session};
use crate::idp::{Contact, IdpError, LoginInteraction};

/// The second factor a login goes on with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Factor {
    Push,
    Totp,
}

/// One entry of the `factors` list in JumpCloud's "MFA required." answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct OfferedFactor {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct PushReply {
    id: String,
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct PushStatus {
    #[serde(default)]
    status: String,
}

impl JumpCloud {
    /// Picks the factor to use among those JumpCloud offered, following the `mfa` setting.
    pub(super) fn choose_factor(&self, offered: &[OfferedFactor]) -> Result<Factor, IdpError> {
        choose_factor(self.mfa, offered)
    }

    /// R3 for TOTP: one code, one attempt. A rejected code is not retried, because a second
    /// code would need the user again and JumpCloud accepts each code only once anyway.
    pub(super) async fn totp(
        &self,
        session: &Session,
        io: &mut dyn LoginInteraction,
        xsrf: &Secret,
        password: &Secret,
        prompt: &str,
    ) -> Result<Url, IdpError> {
        let code = io.mfa_code(prompt).await?;
        let code = Secret::new(code.expose().trim());
        if code.is_empty() {
            return Err(IdpError::MfaCodeUnavailable {
                reason: "an empty code was given".to_owned(),
            });
        }
        io.reaching_person(Contact::Code);
        match self.post_auth(session, xsrf, password, Some(&code)).await? {
            AuthStep::Done(url) => Ok(url),
            AuthStep::Mfa(_) => Err(IdpError::MfaCodeRejected {
                message: "JumpCloud asked for a second factor again".to_owned(),
            }),
        }
    }

    /// R3 for JumpCloud Protect: start a push, poll it until it is answered, then exchange it
    /// for the `redirectTo`.
    pub(super) async fn push(
        &self,
        session: &Session,
        io: &mut dyn LoginInteraction,
        xsrf: &Secret,
    ) -> Result<Url, IdpError> {
        const START: &str = "POST /userconsole/auth/push";
        const POLL: &str = "GET /userconsole/auth/push/{id}";
        const LOGIN: &str = "POST /userconsole/auth/push/{id}/login";

        let url = self.console_endpoint("/userconsole/auth/push");
        io.reaching_person(Contact::Push);
        let request = self
            .api_request(session, Method::POST, &url, Some(xsrf))?
            .json(&serde_json::json!({}));
        let Answer { status, body, .. } = exchange(request, START, &url, BodyKind::Json).await?;
        if status != StatusCode::OK {
            return Err(unexpected_status(START, status, &body));
        }
        let push: PushReply = parse_json(START, status, &body)?;
        let expires_at = push
            .expires_at
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        debug!(status = %push.status, "JumpCloud Protect push started");

        io.progress(&format!(
            "Approve the JumpCloud Protect push on your phone (sign-in of {}) …",
            self.username
        ))
        .await;

        let mut poll_url = url.clone();
        poll_url
            .path_segments_mut()
            .map_err(|()| IdpError::Config("the console URL cannot be a base".to_owned()))?
            .push(&push.id);
        let deadline = Instant::now() + self.timeouts.push_max_wait;
        let mut polls: u32 = 0;
        loop {
            let request = self.api_request(session, Method::GET, &poll_url, Some(xsrf))?;
            let Answer { status, body, .. } =
                exchange(request, POLL, &poll_url, BodyKind::Json).await?;
            // How saml2aws's own tests model a denial: a 401 on the poll rather than
            // `{"status":"denied"}`. The push exists (it was just started), so a 401 here is
            // the phone's answer, not a lost session.
            if status == StatusCode::UNAUTHORIZED {
                return Err(IdpError::PushDenied);
            }
            if status != StatusCode::OK {
                return Err(unexpected_status(POLL, status, &body));
            }
            let state: PushStatus = parse_json(POLL, status, &body)?;
            polls += 1;
            trace!(polls, status = %state.status, "push polled");
            match state.status.as_str() {
                "accepted" => break,
                "denied" => return Err(IdpError::PushDenied),
                "expired" => return Err(IdpError::PushExpired),
                "pending" | "" => {}
                other => {
                    return Err(IdpError::UnexpectedStatus {
                        request: POLL.to_owned(),
                        status: 200,
                        message: Some(format!("unknown push status {other:?}")),
                    });
                }
            }
            let expired = expires_at.is_some_and(|t| OffsetDateTime::now_utc() >= t);
            if expired || Instant::now() >= deadline {
                return Err(IdpError::PushExpired);
            }
            tokio::time::sleep(self.timeouts.push_poll_interval).await;
        }
        debug!(polls, "JumpCloud Protect push accepted");

        let mut login_url = poll_url;
        login_url
            .path_segments_mut()
            .map_err(|()| IdpError::Config("the console URL cannot be a base".to_owned()))?
            .push("login");
        let request = self
            .api_request(session, Method::POST, &login_url, Some(xsrf))?
            .json(&serde_json::json!({}));
        let Answer { status, body, .. } =
            exchange(request, LOGIN, &login_url, BodyKind::Json).await?;
        if status != StatusCode::OK {
            return Err(unexpected_status(LOGIN, status, &body));
        }
        let reply: AuthReply = parse_json(LOGIN, status, &body)?;
        match reply.redirect_to.as_deref() {
            Some(target) => self.resolve_redirect(LOGIN, target),
            None => Err(IdpError::UnexpectedStatus {
                request: LOGIN.to_owned(),
                status: 200,
                message: Some("the answer carried no redirectTo".to_owned()),
            }),
        }
    }

    /// A bare "MFA required." that names no factor (documented by a JumpCloud engineer in
    /// saml2aws #230). Other clients answer it with the TOTP code in the same POST, so that is
    /// what `mfa = "totp"` does, and `auto` when a code is at hand (given, from
    /// `mfa_command`, or typed at a terminal). A push is only started when `mfa = "push"`
    /// says so: guessing one would buzz a phone that may not be enrolled.
    pub(super) async fn unnamed_factor(
        &self,
        session: &Session,
        io: &mut dyn LoginInteraction,
        xsrf: &Secret,
        password: &Secret,
    ) -> Result<Url, IdpError> {
        debug!(
            mfa = self.mfa.as_str(),
            "JumpCloud asked for MFA without naming a factor"
        );
        let prompt = format!(
            "JumpCloud asks for a second factor without naming it; TOTP code for {}",
            self.username
        );
        match self.mfa {
            MfaMode::Totp => self.totp(session, io, xsrf, password, &prompt).await,
            MfaMode::Push => self.push(session, io, xsrf).await,
            MfaMode::Auto => match self.totp(session, io, xsrf, password, &prompt).await {
                Err(IdpError::MfaCodeUnavailable { reason }) => Err(IdpError::MfaUnnamed {
                    configured: self.mfa.as_str().to_owned(),
                    reason: Some(reason),
                }),
                other => other,
            },
            MfaMode::Webauthn | MfaMode::None => Err(IdpError::MfaUnnamed {
                configured: self.mfa.as_str().to_owned(),
                reason: None,
            }),
        }
    }
}

/// The factor to use among the available ones, following the `mfa` setting.
fn choose_factor(mode: MfaMode, offered: &[OfferedFactor]) -> Result<Factor, IdpError> {
    let available: Vec<String> = offered
        .iter()
        .filter(|f| f.status.eq_ignore_ascii_case("available"))
        .map(|f| f.kind.to_ascii_lowercase())
        .collect();
    let has = |kind: &str| available.iter().any(|k| k == kind);
    let supported_alternatives = || {
        ["push", "totp"]
            .into_iter()
            .filter(|k| has(k))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let no_usable = || IdpError::NoUsableFactor {
        offered: available.clone(),
        configured: mode.as_str().to_owned(),
    };
    match mode {
        MfaMode::Push if has("push") => Ok(Factor::Push),
        MfaMode::Totp if has("totp") => Ok(Factor::Totp),
        MfaMode::Webauthn if has("webauthn") => Err(IdpError::MfaUnsupported {
            factor: "webauthn".to_owned(),
            alternatives: supported_alternatives(),
        }),
        MfaMode::Auto if has("push") => Ok(Factor::Push),
        MfaMode::Auto if has("totp") => Ok(Factor::Totp),
        MfaMode::Auto => match available.first() {
            Some(unsupported) => Err(IdpError::MfaUnsupported {
                factor: unsupported.clone(),
                alternatives: Vec::new(),
            }),
            None => Err(no_usable()),
        },
        MfaMode::Push | MfaMode::Totp | MfaMode::Webauthn | MfaMode::None => Err(no_usable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(kind: &str, status: &str) -> OfferedFactor {
        OfferedFactor {
            kind: kind.to_owned(),
            status: status.to_owned(),
        }
    }

    #[test]
    fn auto_prefers_push_then_totp() {
        let both = [factor("totp", "available"), factor("push", "available")];
        assert_eq!(choose_factor(MfaMode::Auto, &both).unwrap(), Factor::Push);
        let totp = [factor("totp", "available"), factor("push", "unavailable")];
        assert_eq!(choose_factor(MfaMode::Auto, &totp).unwrap(), Factor::Totp);
        assert_eq!(choose_factor(MfaMode::Totp, &both).unwrap(), Factor::Totp);
        assert_eq!(choose_factor(MfaMode::Push, &both).unwrap(), Factor::Push);
    }

    #[test]
    fn webauthn_and_duo_are_unsupported_with_alternatives() {
        let offered = [factor("webauthn", "available"), factor("totp", "available")];
        assert_eq!(
            choose_factor(MfaMode::Webauthn, &offered).unwrap_err(),
            IdpError::MfaUnsupported {
                factor: "webauthn".to_owned(),
                alternatives: vec!["totp".to_owned()],
            }
        );
        let duo_only = [factor("duo", "available"), factor("totp", "unavailable")];
        assert_eq!(
            choose_factor(MfaMode::Auto, &duo_only).unwrap_err(),
            IdpError::MfaUnsupported {
                factor: "duo".to_owned(),
                alternatives: vec![],
            }
        );
    }

    #[test]
    fn a_configured_factor_the_account_lacks_is_reported() {
        let offered = [factor("totp", "available"), factor("push", "unavailable")];
        assert_eq!(
            choose_factor(MfaMode::Push, &offered).unwrap_err(),
            IdpError::NoUsableFactor {
                offered: vec!["totp".to_owned()],
                configured: "push".to_owned(),
            }
        );
        assert_eq!(
            choose_factor(MfaMode::None, &offered).unwrap_err(),
            IdpError::NoUsableFactor {
                offered: vec!["totp".to_owned()],
                configured: "none".to_owned(),
            }
        );
        // Each configured factor is used only when offered, and then said to be missing.
        let push_only = [factor("push", "available"), factor("totp", "pending")];
        for mode in [MfaMode::Totp, MfaMode::Webauthn] {
            assert_eq!(
                choose_factor(mode, &push_only).unwrap_err(),
                IdpError::NoUsableFactor {
                    offered: vec!["push".to_owned()],
                    configured: mode.as_str().to_owned(),
                }
            );
        }
        assert!(matches!(
            choose_factor(MfaMode::Auto, &[]).unwrap_err(),
            IdpError::NoUsableFactor { .. }
        ));
    }
}
