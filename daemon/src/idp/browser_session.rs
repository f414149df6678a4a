//! A browser's IdP session, taken into a cookie jar: what lets samld fetch assertions
//! headlessly after `samlctl login --browser`, with no JumpCloud-specific step.

use reqwest::Url;
use reqwest::cookie::Jar;
use samld_config::Partition;
use samld_proto::BrowserCookie;

/// The most cookies taken from one sign-in. samld's own browser profile holds only what the
/// IdP set; a sign-in that hands over more is not one samld should hold in memory.
pub const MAX_COOKIES: usize = 300;

/// Puts the browser's cookies into `jar`, as the browser holds them (host-only or domain,
/// path, secure), skipping expired ones and those of AWS's own sites. Returns how many were
/// taken.
pub fn adopt_cookies(jar: &Jar, cookies: &[BrowserCookie], now_unix: i64) -> usize {
    let mut taken = 0;
    for cookie in cookies.iter().take(MAX_COOKIES) {
        let host = cookie.domain.trim_start_matches('.');
        // AWS's own cookies (a console session the browser may hold) are not samld's business.
        if host.is_empty() || Partition::is_aws_web_host(host) || cookie.name.is_empty() {
            continue;
        }
        let mut text = format!(
            "{}={}; Path={}",
            cookie.name,
            cookie.value.expose(),
            if cookie.path.starts_with('/') {
                cookie.path.as_str()
            } else {
                "/"
            }
        );
        if cookie.domain.starts_with('.') {
            text.push_str(&format!("; Domain={host}"));
        }
        match cookie.expires {
            Some(at) if at <= now_unix => continue,
            Some(at) => text.push_str(&format!("; Max-Age={}", at - now_unix)),
            None => {}
        }
        // The scheme decides whether a Secure cookie may be set at all.
        let scheme = if cookie.secure {
            text.push_str("; Secure");
            "https"
        } else {
            "http"
        };
        let Ok(url) = Url::parse(&format!("{scheme}://{host}/")) else {
            continue;
        };
        jar.add_cookie_str(&text, &url);
        taken += 1;
    }
    taken
}

#[cfg(test)]
mod tests {
    use reqwest::cookie::CookieStore as _;
    use samld_proto::Secret;

    use super::*;

    fn cookie(
        name: &str,
        domain: &str,
        path: &str,
        secure: bool,
        expires: Option<i64>,
    ) -> BrowserCookie {
        BrowserCookie {
            name: name.into(),
            value: Secret::new(format!("v-{name}")),
            domain: domain.into(),
            path: path.into(),
            secure,
            expires,
        }
    }

    /// The cookies the jar sends to `url`, sorted (the jar's order is its own).
    fn sent(jar: &Jar, url: &str) -> String {
        let header = jar
            .cookies(&Url::parse(url).unwrap())
            .map(|h| h.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut cookies: Vec<&str> = header.split("; ").filter(|c| !c.is_empty()).collect();
        cookies.sort_unstable();
        cookies.join("; ")
    }

    #[test]
    fn cookies_go_where_the_browser_would_send_them() {
        let jar = Jar::default();
        let now = 1_000_000;
        let cookies = [
            cookie("console", "console.jumpcloud.com", "/", true, None),
            cookie("shared", ".jumpcloud.com", "/", true, Some(now + 60)),
            cookie("saml", "sso.jumpcloud.com", "/saml2", true, None),
            cookie("old", ".jumpcloud.com", "/", true, Some(now - 1)),
            cookie("aws", ".signin.aws.amazon.com", "/", true, None),
            cookie("local", "localhost", "/", false, None),
        ];
        assert_eq!(adopt_cookies(&jar, &cookies, now), 4);
        assert_eq!(
            sent(&jar, "https://console.jumpcloud.com/userconsole/api/self"),
            "console=v-console; shared=v-shared"
        );
        assert_eq!(
            sent(&jar, "https://sso.jumpcloud.com/saml2/aws"),
            "saml=v-saml; shared=v-shared"
        );
        assert_eq!(sent(&jar, "http://console.jumpcloud.com/"), "");
        assert_eq!(sent(&jar, "https://signin.aws.amazon.com/saml"), "");
        assert_eq!(sent(&jar, "http://localhost:8080/login"), "local=v-local");
    }

    #[test]
    fn a_flood_of_cookies_is_cut_off() {
        let jar = Jar::default();
        let cookies: Vec<_> = (0..MAX_COOKIES + 50)
            .map(|i| cookie(&format!("c{i}"), "idp.example", "/", true, None))
            .collect();
        assert_eq!(adopt_cookies(&jar, &cookies, 0), MAX_COOKIES);
    }
}
