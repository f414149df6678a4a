//! R4, the SAML page of the app, and the URLs around it: checking the configured URLs, the
//! `redirectTo` sent with the password, the `redirectTo` JumpCloud answers, recognising its
//! login page (where a browser without a session is sent), and the console cookies sent
//! explicitly to the SSO host.

use reqwest::cookie::CookieStore as _;
use reqwest::header::{ACCEPT, COOKIE, HeaderValue};
use reqwest::{StatusCode, Url};
use samld_proto::Secret;
use tracing::debug;

use super::http::{
    BodyKind, merge_cookie_headers, read_capped, redacted_url, send, unexpected_status,
};
use super::{JumpCloud, Session};
use crate::idp::IdpError;

/// Why the SAML page was fetched: a login that just succeeded, or a reused session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SamlFetch {
    AfterLogin,
    FromSession,
}

impl JumpCloud {
    /// A redirect where a JSON answer was due (the API client follows none): to the login
    /// page, or elsewhere.
    pub(super) fn redirected(
        &self,
        request: &str,
        url: &Url,
        status: StatusCode,
        location: Option<&str>,
    ) -> IdpError {
        let target = location.and_then(|l| url.join(l).ok());
        if target.as_ref().is_some_and(|t| self.is_login_page(t)) {
            return IdpError::SentToLoginPage {
                request: request.to_owned(),
            };
        }
        IdpError::UnexpectedStatus {
            request: request.to_owned(),
            status: status.as_u16(),
            message: Some(match target {
                Some(t) => format!("a redirect to {}", redacted_url(&t)),
                None => "a redirect".to_owned(),
            }),
        }
    }

    /// Whether `url` is JumpCloud's login page: `/login` (or below it, such as
    /// `/login/admin`) on the console, where JumpCloud sends a browser without a session.
    /// Compared by path segment, so that an app whose IdP URL merely contains the word (such
    /// as `.../saml2/login-aws`) is never taken for it. The app's host counts too, in case
    /// the SSO host serves the login page itself.
    pub(super) fn is_login_page(&self, url: &Url) -> bool {
        let same_origin = |base: &Url| {
            url.scheme() == base.scheme()
                && url.host_str() == base.host_str()
                && url.port_or_known_default() == base.port_or_known_default()
        };
        if !same_origin(&self.console) && !same_origin(&self.app) {
            return false;
        }
        let base = self.console.path().trim_end_matches('/');
        let path = url.path();
        let rest = if same_origin(&self.console) {
            path.strip_prefix(base).unwrap_or(path)
        } else {
            path
        };
        rest == "/login" || rest.starts_with("/login/")
    }

    pub(super) fn resolve_redirect(&self, request: &str, target: &str) -> Result<Url, IdpError> {
        self.console
            .join(target)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| IdpError::UnexpectedStatus {
                request: request.to_owned(),
                status: 200,
                message: Some("the redirectTo in the answer is not an http(s) URL".to_owned()),
            })
    }

    /// R4: the SAML page, and the SAMLResponse in it.
    pub(super) async fn fetch_saml(
        &self,
        session: &Session,
        url: &Url,
        why: SamlFetch,
    ) -> Result<Secret, IdpError> {
        let name = format!("GET {}", url.path());
        let mut request = session
            .browse
            .get(url.clone())
            .header(ACCEPT, "text/html,application/xhtml+xml");
        if let Some(cookies) = self.explicit_console_cookies(session, url) {
            request = request.header(COOKIE, cookies);
        }
        let response = send(request, &name, url).await?;
        let status = response.status();
        let landed_on_login = self.is_login_page(response.url());
        debug!(request = %name, landed_on_login, "JumpCloud's page");
        let body = read_capped(response, &name, url, BodyKind::Page).await?;
        if status.is_server_error() {
            return Err(unexpected_status(&name, status, &body));
        }
        let logged_out =
            landed_on_login || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        if logged_out {
            return match why {
                SamlFetch::FromSession => Err(IdpError::SessionExpired),
                SamlFetch::AfterLogin => Err(IdpError::UnexpectedStatus {
                    request: name,
                    status: status.as_u16(),
                    message: Some(
                        "JumpCloud sent its login page instead of the SAML form right after \
                         signing in"
                            .to_owned(),
                    ),
                }),
            };
        }
        if status != StatusCode::OK {
            return Err(unexpected_status(&name, status, &body));
        }
        let html = String::from_utf8_lossy(&body);
        match crate::saml::extract_saml_response(&html) {
            Ok(saml) => Ok(saml),
            // Neither the login page nor the SAML form, from a signed-in session: what a
            // policy that only a browser passes (conditional access, device trust) serves.
            Err(crate::saml::SamlError::NoSamlResponse) => Err(IdpError::BrowserRequired {
                request: name,
                url: redacted_url(&self.app),
            }),
            Err(e) => Err(IdpError::Saml(e)),
        }
    }

    /// The console cookies, for a SAML page on another host than the console.
    ///
    /// JumpCloud's SSO host (`sso.jumpcloud.com`) is not the console's, and whether the
    /// session cookies are scoped to the parent domain is not documented; other clients send
    /// them explicitly. They are only ever sent to the host of the configured app URL, never
    /// to a host named by an answer.
    fn explicit_console_cookies(&self, session: &Session, url: &Url) -> Option<HeaderValue> {
        if url.host_str() == self.console.host_str() || url.host_str() != self.app.host_str() {
            return None;
        }
        let console = session.jar.cookies(&self.console)?;
        let own = session.jar.cookies(url);
        let merged = merge_cookie_headers(own.as_ref(), &console)?;
        let mut value = HeaderValue::from_str(&merged).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Parses the URL configured as `key`: https, or plain http to a loopback host only, and
/// with a host.
pub(super) fn parse_url(key: &str, value: &str) -> Result<Url, IdpError> {
    let url = Url::parse(value.trim())
        .map_err(|e| IdpError::Config(format!("`{key}` = {value:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if samld_config::is_loopback(&url) => {}
        "http" => {
            return Err(IdpError::Config(format!(
                "`{key}` = {value:?} uses plain http; use https (the password would travel \
                 in clear)"
            )));
        }
        other => {
            return Err(IdpError::Config(format!(
                "`{key}` = {value:?} has scheme {other:?}; expected https"
            )));
        }
    }
    if url.host_str().is_none() {
        return Err(IdpError::Config(format!("`{key}` = {value:?} has no host")));
    }
    Ok(url)
}

/// `redirectTo` for the password POST: the app URL's path without its leading `/`, query
/// kept. Derived from the path rather than by stripping `https://sso.jumpcloud.com/`, so that
/// any host (a test server, a regional SSO host) works the same way.
pub(super) fn redirect_to_for(app: &Url) -> Result<String, IdpError> {
    let path = app.path().trim_start_matches('/');
    if path.is_empty() {
        return Err(IdpError::Config(format!(
            "`url` = {:?} names no app; it should look like \
             https://sso.jumpcloud.com/saml2/YOUR-APP",
            app.as_str()
        )));
    }
    Ok(match app.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::jumpcloud::JumpCloudSettings;

    fn settings(app: &str) -> JumpCloudSettings {
        JumpCloudSettings::new(app, "a@b.c")
    }

    #[test]
    fn redirect_to_is_the_app_path_on_any_host() {
        let real = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/acme-aws")).unwrap();
        assert_eq!(real.redirect_to(), "saml2/acme-aws");
        let local = JumpCloud::new(settings("http://127.0.0.1:8080/saml2/acme-aws")).unwrap();
        assert_eq!(local.redirect_to(), "saml2/acme-aws");
        let query =
            JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app?x=1&y=2")).unwrap();
        assert_eq!(query.redirect_to(), "saml2/app?x=1&y=2");
    }

    #[test]
    fn unusable_urls_are_config_errors() {
        for bad in [
            "not a url",
            "ftp://sso.jumpcloud.com/saml2/x",
            "http://sso.jumpcloud.com/saml2/x",
            "https://sso.jumpcloud.com/",
        ] {
            let err = JumpCloud::new(settings(bad)).unwrap_err();
            assert!(matches!(err, IdpError::Config(_)), "{bad}: {err:?}");
        }
        let mut s = settings("https://sso.jumpcloud.com/saml2/x");
        s.console_url = "http://console.example.com".to_owned();
        assert!(matches!(JumpCloud::new(s), Err(IdpError::Config(_))));
        let mut s = settings("https://sso.jumpcloud.com/saml2/x");
        s.username = " ".to_owned();
        assert!(matches!(JumpCloud::new(s), Err(IdpError::Config(_))));
    }

    #[test]
    fn console_cookies_go_only_to_the_configured_sso_host() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/app")).unwrap();
        let session = jc.new_session().unwrap();
        session.jar.add_cookie_str(
            "_jumpcloud_user_console_=s3ss; Path=/",
            &Url::parse("https://console.jumpcloud.com/userconsole/auth").unwrap(),
        );
        let sso = Url::parse("https://sso.jumpcloud.com/saml2/app").unwrap();
        let header = jc.explicit_console_cookies(&session, &sso).unwrap();
        assert_eq!(header.to_str().unwrap(), "_jumpcloud_user_console_=s3ss");
        assert!(header.is_sensitive());
        let elsewhere = Url::parse("https://evil.example.com/saml2/app").unwrap();
        assert!(jc.explicit_console_cookies(&session, &elsewhere).is_none());
        let console = Url::parse("https://console.jumpcloud.com/saml2/app").unwrap();
        assert!(jc.explicit_console_cookies(&session, &console).is_none());
    }

    #[test]
    fn the_login_page_is_recognised_by_its_path_segment() {
        let jc = JumpCloud::new(settings("https://sso.jumpcloud.com/saml2/login-aws")).unwrap();
        let url = |u: &str| Url::parse(u).unwrap();
        for login in [
            "https://console.jumpcloud.com/login",
            "https://console.jumpcloud.com/login/",
            "https://console.jumpcloud.com/login?context=sso&redirectTo=saml2%2Flogin-aws",
            "https://console.jumpcloud.com/login/admin",
            "https://sso.jumpcloud.com/login",
        ] {
            assert!(jc.is_login_page(&url(login)), "{login}");
        }
        for other in [
            "https://sso.jumpcloud.com/saml2/login-aws",
            "https://sso.jumpcloud.com/saml2/login",
            "https://console.jumpcloud.com/loginx",
            "https://console.jumpcloud.com/userconsole/login",
            "https://evil.example.com/login",
            "http://console.jumpcloud.com:8080/login",
        ] {
            assert!(!jc.is_login_page(&url(other)), "{other}");
        }
        // A console under a path prefix (a test server, a proxy).
        let mut s = settings("http://127.0.0.1:9/saml2/app");
        s.console_url = "http://127.0.0.1:9/jc/".to_owned();
        let prefixed = JumpCloud::new(s).unwrap();
        assert!(prefixed.is_login_page(&url("http://127.0.0.1:9/jc/login")));
        assert!(!prefixed.is_login_page(&url("http://127.0.0.1:9/saml2/login-x")));
    }
}
