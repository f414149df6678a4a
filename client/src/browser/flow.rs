//! The sign-in itself: open the account's URL, wait while the person signs in, and take the
//! SAML response from the browser's POST to AWS before it leaves the machine.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use samld_proto::{BrowserCookie, BrowserSignIn, Secret};
use serde_json::{Value, json};

use super::pipe::{Browser, CallError, Incoming};
use samld_config::Partition;

use super::BrowserError;

/// What the browser shows once samlctl has the SAML response.
const DONE_PAGE: &str = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Signed in \
     - samld</title></head><body style=\"font-family:sans-serif;margin:3em\"><h1>Signed \
     in</h1><p>samld has the sign-in. You can close this window.</p></body></html>";

/// How long a command to the browser may take to be answered.
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// Drives the started browser until the SAML POST is caught, the person gives up, or
/// `deadline` passes.
pub(super) fn run(
    browser: &mut Browser,
    url: &str,
    deadline: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<BrowserSignIn, BrowserError> {
    // Attach to every page the browser has or opens (a popup may carry the sign-in), each
    // paused until its interception is in place.
    browser
        .call(
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
            None,
            soon(deadline),
        )
        .map_err(|e| call_failed(browser, e))?;
    let mut sign_in = SignIn {
        browser,
        url,
        deadline,
        progress,
        pages: HashSet::new(),
        navigated: false,
        last_host: String::new(),
    };
    loop {
        let message = match sign_in.browser.next(deadline) {
            Ok(message) => message,
            Err(CallError::TimedOut) => return Err(BrowserError::TimedOut),
            Err(e) => return Err(call_failed(sign_in.browser, e)),
        };
        let Incoming::Event {
            method,
            params,
            session,
        } = message
        else {
            continue;
        };
        match method.as_str() {
            "Target.attachedToTarget" => sign_in.attached(&params)?,
            "Target.targetInfoChanged" => sign_in.info_changed(&params),
            "Target.detachedFromTarget" | "Target.targetDestroyed" => sign_in.detached(&params)?,
            "Fetch.requestPaused" => {
                let Some(session) = session else { continue };
                if let Some(done) = sign_in.request_paused(&params, &session)? {
                    return Ok(done);
                }
            }
            _ => {}
        }
    }
}

/// When a command to the browser must be answered by: soon, and never after the sign-in's
/// own deadline.
fn soon(deadline: Instant) -> Instant {
    (Instant::now() + COMMAND_WAIT).min(deadline)
}

/// One sign-in in progress: the browser, and what the events so far have told about it.
struct SignIn<'a> {
    browser: &'a mut Browser,
    url: &'a str,
    deadline: Instant,
    progress: &'a mut dyn FnMut(&str),
    /// The page targets still open; when the last one goes, the person has given up.
    pages: HashSet<String>,
    /// Whether the account's URL has been opened (in the first page attached).
    navigated: bool,
    /// The last host reported to the person, so that each is told once.
    last_host: String,
}

impl SignIn<'_> {
    /// A target was attached, paused: guard it before letting it run, and open the
    /// account's URL in the first page.
    fn attached(&mut self, params: &Value) -> Result<(), BrowserError> {
        let Some(session) = params["sessionId"].as_str() else {
            return Ok(());
        };
        let info = &params["targetInfo"];
        let kind = info["type"].as_str().unwrap_or_default();
        if !matches!(kind, "page" | "iframe") {
            // Browser UI and workers carry no sign-in: let them run.
            let _ = self
                .browser
                .send("Runtime.runIfWaitingForDebugger", json!({}), Some(session));
            return Ok(());
        }
        // A frame of another site may run in a target of its own: it gets the same
        // guard, so that nothing bound for AWS leaves from it either.
        let is_page = kind == "page";
        if is_page {
            self.pages
                .insert(info["targetId"].as_str().unwrap_or_default().to_owned());
        }
        self.browser
            .call(
                "Fetch.enable",
                json!({"patterns": patterns()}),
                Some(session),
                soon(self.deadline),
            )
            .map_err(|e| call_failed(self.browser, e))?;
        // Its out-of-process frames (and their workers) are attached the same way.
        let _ = self.browser.send(
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
            Some(session),
        );
        let _ = self
            .browser
            .send("Runtime.runIfWaitingForDebugger", json!({}), Some(session));
        if is_page && !self.navigated {
            self.navigated = true;
            self.browser
                .call(
                    "Page.navigate",
                    json!({"url": self.url}),
                    Some(session),
                    soon(self.deadline),
                )
                .map_err(|e| call_failed(self.browser, e))?;
            (self.progress)("Waiting for you to sign in in the browser window.");
        }
        Ok(())
    }

    /// A target's URL changed: tell the person when a page reaches a new host.
    fn info_changed(&mut self, params: &Value) {
        let info = &params["targetInfo"];
        if info["type"] == "page"
            && let Some(host) = info["url"].as_str().and_then(origin_of)
            && host != self.last_host
            && !host.starts_with("about:")
        {
            (self.progress)(&format!("The browser is at {host}"));
            self.last_host = host;
        }
    }

    /// A target went away: once the person has closed every page after the sign-in
    /// started, they have given up.
    fn detached(&mut self, params: &Value) -> Result<(), BrowserError> {
        if let Some(target) = params["targetId"].as_str()
            && self.pages.remove(target)
            && self.pages.is_empty()
            && self.navigated
        {
            return Err(BrowserError::ClosedByPerson);
        }
        Ok(())
    }

    /// A request to an AWS sign-in host is paused: the sign-in if it carries the SAML
    /// response, otherwise it is let through or stopped.
    fn request_paused(
        &mut self,
        params: &Value,
        session: &str,
    ) -> Result<Option<BrowserSignIn>, BrowserError> {
        if let Some(saml_response) = caught_saml_post(params) {
            return self.finish(params, session, saml_response).map(Some);
        }
        // Anything else bound for AWS (a GET of the console, a post without an
        // assertion) is stopped here: nothing of this sign-in leaves for AWS.
        let url = params["request"]["url"].as_str().unwrap_or_default();
        let aws = host_of(url).is_some_and(|h| Partition::is_aws_web_host(&h));
        let (command, params) = if aws {
            (
                "Fetch.failRequest",
                json!({"requestId": params["requestId"], "errorReason": "BlockedByClient"}),
            )
        } else {
            // The pattern is wider than the check (a '*' matches across '/').
            (
                "Fetch.continueRequest",
                json!({"requestId": params["requestId"]}),
            )
        };
        let _ = self.browser.send(command, params, Some(session));
        Ok(None)
    }

    /// The SAML POST was caught: answer it in the browser instead of AWS, take the
    /// identity provider's cookies, and close the browser.
    fn finish(
        &mut self,
        params: &Value,
        session: &str,
        saml_response: Secret,
    ) -> Result<BrowserSignIn, BrowserError> {
        let request_id = params["requestId"].clone();
        let body = base64::engine::general_purpose::STANDARD.encode(DONE_PAGE);
        let _ = self.browser.call(
            "Fetch.fulfillRequest",
            json!({
                "requestId": request_id,
                "responseCode": 200,
                "responseHeaders": [
                    {"name": "Content-Type", "value": "text/html; charset=utf-8"},
                    {"name": "Cache-Control", "value": "no-store"},
                ],
                "body": body,
            }),
            Some(session),
            soon(self.deadline),
        );
        (self.progress)("Got the SAML response; closing the browser.");
        let cookies = self
            .browser
            .call("Storage.getCookies", json!({}), None, soon(self.deadline))
            .map_err(|e| call_failed(self.browser, e))?;
        let _ = self
            .browser
            .call("Browser.close", json!({}), None, soon(self.deadline));
        Ok(BrowserSignIn {
            saml_response,
            cookies: idp_cookies(&cookies["cookies"]),
            replace_identity: false,
        })
    }
}

/// Fetch patterns for every AWS sign-in host and its regional subdomains; requests are
/// paused before they are sent, so nothing reaches the network until samlctl has decided.
fn patterns() -> Value {
    Partition::ALL
        .iter()
        .map(|p| p.signin_host())
        .flat_map(|host| {
            [
                json!({"urlPattern": format!("https://{host}/*"), "requestStage": "Request"}),
                json!({"urlPattern": format!("https://*.{host}/*"), "requestStage": "Request"}),
            ]
        })
        .collect()
}

/// The SAMLResponse of a POST to an AWS sign-in host, if this paused request (the params of
/// a `Fetch.requestPaused` event) is one. Its body is whatever the page posted.
pub fn caught_saml_post(params: &Value) -> Option<Secret> {
    let request = &params["request"];
    let host = host_of(request["url"].as_str()?)?;
    let is_signin = Partition::ALL
        .iter()
        .any(|p| Partition::host_is_under(&host, p.signin_host()));
    if !is_signin || request["method"] != "POST" {
        return None;
    }
    let body = match request["postData"].as_str() {
        Some(body) => body.as_bytes().to_vec(),
        None => request["postDataEntries"]
            .as_array()?
            .iter()
            .filter_map(|entry| entry["bytes"].as_str())
            .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .flatten()
            .collect(),
    };
    form_field(&body, "SAMLResponse").filter(|v| !v.is_empty())
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<Secret> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut parts = pair.splitn(2, |&b| b == b'=');
        let key = parts.next()?;
        (percent_decode(key) == name.as_bytes()).then(|| {
            Secret::new(String::from_utf8_lossy(&percent_decode(
                parts.next().unwrap_or_default(),
            )))
        })
    })
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => {
                let hex = std::str::from_utf8(&input[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}

/// The most cookies handed to samld, which keeps as many.
const MAX_COOKIES: usize = 300;

/// The most cookie bytes handed to samld: with the SAML response they must fit in one frame
/// on the socket (1 MiB), and a profile of samld's own holds a few KiB of IdP cookies.
const MAX_COOKIE_BYTES: usize = 256 * 1024;

/// The cookies a refresh needs, from `Storage.getCookies`'s `cookies` array: the profile's,
/// minus AWS's own, within the bounds above. Pages set cookies, so every field is checked.
pub fn idp_cookies(cookies: &Value) -> Vec<BrowserCookie> {
    let Some(cookies) = cookies.as_array() else {
        return Vec::new();
    };
    let mut total = 0;
    cookies
        .iter()
        .filter_map(|c| {
            let domain = c["domain"].as_str()?.to_owned();
            if Partition::is_aws_web_host(domain.trim_start_matches('.')) {
                return None;
            }
            let session = c["session"].as_bool().unwrap_or(false);
            let expires = c["expires"].as_f64().filter(|e| !session && *e > 0.0);
            Some(BrowserCookie {
                name: c["name"].as_str()?.to_owned(),
                value: Secret::new(c["value"].as_str()?),
                domain,
                path: c["path"].as_str().unwrap_or("/").to_owned(),
                secure: c["secure"].as_bool().unwrap_or(false),
                expires: expires.map(|e| e as i64),
            })
        })
        .take_while(|c| {
            total += c.name.len() + c.value.expose().len() + c.domain.len() + c.path.len();
            total <= MAX_COOKIE_BYTES
        })
        .take(MAX_COOKIES)
        .collect()
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    Some(host.to_ascii_lowercase())
}

/// `scheme://host[:port]` of a page, for progress (never its path or query, which may carry
/// tokens).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    Some(format!("{scheme}://{authority}"))
}

fn call_failed(browser: &mut Browser, error: CallError) -> BrowserError {
    match error {
        CallError::Closed => {
            let status = browser.finish(Duration::from_secs(2));
            BrowserError::Exited {
                status: status.map(|s| s.to_string()),
                stderr: browser.stderr_tail(),
                hint: None,
            }
        }
        CallError::TimedOut => BrowserError::TimedOut,
        CallError::Protocol { method, message } => BrowserError::Protocol { method, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saml_post_is_recognised_on_every_partition_and_nothing_else() {
        let post = |url: &str, body: &str| json!({"request": {"url": url, "method": "POST", "postData": body}});
        let cases = [
            (
                "https://signin.aws.amazon.com/saml",
                "SAMLResponse=PHNhbWw%2BCg%3D%3D&RelayState=",
                Some("PHNhbWw+Cg=="),
            ),
            (
                "https://us-east-1.signin.aws.amazon.com/saml",
                "RelayState=x&SAMLResponse=abc",
                Some("abc"),
            ),
            (
                "https://signin.amazonaws-us-gov.com/saml",
                "SAMLResponse=gov",
                Some("gov"),
            ),
            (
                "https://signin.amazonaws.cn/saml",
                "SAMLResponse=cn",
                Some("cn"),
            ),
            (
                "https://evil.example/?x=signin.aws.amazon.com/saml",
                "SAMLResponse=abc",
                None,
            ),
            (
                "https://signin.aws.amazon.com.evil.example/saml",
                "SAMLResponse=abc",
                None,
            ),
            ("https://signin.aws.amazon.com/saml", "RelayState=x", None),
            ("https://signin.aws.amazon.com/saml", "SAMLResponse=", None),
        ];
        for (url, body, expected) in cases {
            let got = caught_saml_post(&post(url, body));
            assert_eq!(got.as_ref().map(Secret::expose), expected, "{url} {body}");
        }
        let get = json!({"request": {"url": "https://signin.aws.amazon.com/saml?SAMLResponse=abc", "method": "GET"}});
        assert!(caught_saml_post(&get).is_none());
        let entries = json!({"request": {"url": "https://signin.aws.amazon.com/saml", "method": "POST",
            "postDataEntries": [{"bytes": base64::engine::general_purpose::STANDARD.encode("SAMLResponse=a%2Bb")}]}});
        assert_eq!(caught_saml_post(&entries).unwrap().expose(), "a+b");
    }

    #[test]
    fn percent_decoding() {
        let cases: [(&str, &str); 5] = [
            ("a+b", "a b"),
            ("%41%2b%2F", "A+/"),
            ("100%", "100%"),
            ("%zz", "%zz"),
            ("%4", "%4"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                percent_decode(input.as_bytes()),
                expected.as_bytes(),
                "{input}"
            );
        }
    }

    #[test]
    fn cookies_of_aws_are_left_in_the_browser() {
        let cookies = json!([
            {"name": "jc", "value": "s", "domain": "console.jumpcloud.com", "path": "/", "secure": true, "session": true, "expires": -1},
            {"name": "keep", "value": "k", "domain": ".jumpcloud.com", "path": "/", "secure": true, "session": false, "expires": 1900000000.5},
            {"name": "aws-creds", "value": "x", "domain": ".signin.aws.amazon.com", "path": "/", "secure": true, "session": true},
            {"name": "aws-console", "value": "x", "domain": "console.aws.amazon.com", "path": "/", "secure": true, "session": true},
        ]);
        let got = idp_cookies(&cookies);
        let names: Vec<_> = got.iter().map(|c| (c.name.as_str(), c.expires)).collect();
        assert_eq!(names, [("jc", None), ("keep", Some(1_900_000_000))]);
    }

    #[test]
    fn a_flood_of_cookies_stays_within_a_frame() {
        let big = "x".repeat(4000);
        let cookies: Vec<Value> = (0..1000)
            .map(|i| json!({"name": format!("c{i}"), "value": big, "domain": "idp.example", "path": "/"}))
            .collect();
        let kept = idp_cookies(&Value::Array(cookies));
        let bytes: usize = kept.iter().map(|c| c.value.expose().len()).sum();
        assert!(
            !kept.is_empty() && bytes <= MAX_COOKIE_BYTES,
            "{} cookies",
            kept.len()
        );
        let small: Vec<Value> = (0..1000)
            .map(|i| json!({"name": format!("c{i}"), "value": "v", "domain": "idp.example", "path": "/"}))
            .collect();
        assert_eq!(idp_cookies(&Value::Array(small)).len(), MAX_COOKIES);
    }

    #[test]
    fn progress_shows_origins_only() {
        assert_eq!(
            origin_of("https://console.jumpcloud.com/login?token=secret#x").as_deref(),
            Some("https://console.jumpcloud.com")
        );
        assert_eq!(
            host_of("https://u:p@Host.Example:8443/x").as_deref(),
            Some("host.example")
        );
    }
}
