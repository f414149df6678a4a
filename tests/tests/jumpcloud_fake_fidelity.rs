//! The fake JumpCloud answers the way the real service does where leniency would hide bugs
//! (separate hosts, XSRF and session cookies, expiring pre-login sessions, one push at a
//! time, throttled polls), checked over raw HTTP; and a SessionDuration attribute an
//! admin mistyped does not stop a login through the real binaries.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN, DEFAULT_ROLE_ARN, FakeApp,
    FakeJumpCloud, FakeJumpCloudConfig, FakeUser, PUSH_PENDING, PUSH_POLL_MIN_GAP, PushBehavior,
    XSRF_LIFETIME,
};
use samld_tests::fake_sts::FakeStsConfig;
use samld_tests::fixture::succeeded;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use support::World;

/// One HTTP/1.1 exchange; the answer's status, headers (lower-case names) and body.
async fn exchange(addr: SocketAddr, request: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .filter_map(|(_, c)| c.split(';').next()?.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// A console session as a client holds it after `GET /userconsole/xsrf`.
struct Client {
    console: SocketAddr,
    sso: SocketAddr,
    /// The `_xsrf` cookie, exactly as set.
    xsrf_cookie: String,
    /// The token from the JSON body (the `X-Xsrftoken` header).
    token: String,
    session: String,
}

impl Client {
    async fn start(fake: &FakeJumpCloud) -> Client {
        let answer = exchange(
            fake.addr(),
            "GET /userconsole/xsrf HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        Client {
            console: fake.addr(),
            sso: fake.sso_addr(),
            xsrf_cookie: answer.cookie("_xsrf").expect("an _xsrf cookie"),
            token: answer.json()["xsrf"].as_str().unwrap().to_owned(),
            session: answer
                .cookie("_jumpcloud_user_console_")
                .expect("a session cookie"),
        }
    }

    fn cookies(&self) -> String {
        format!(
            "_xsrf={}; _jumpcloud_user_console_={}",
            self.xsrf_cookie, self.session
        )
    }

    /// A JSON API request to the console with the XSRF header and both cookies.
    async fn api(&self, method: &str, path: &str, body: &str) -> Answer {
        self.api_with(method, path, body, &self.token, &self.cookies())
            .await
    }

    async fn api_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        header: &str,
        cookies: &str,
    ) -> Answer {
        exchange(
            self.console,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nAccept: application/json\r\n\
                 X-Xsrftoken: {header}\r\nCookie: {cookies}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await
    }

    async fn password(&self, email: &str, password: &str) -> Answer {
        let body = format!(
            r#"{{"context":"sso","redirectTo":"saml2/{DEFAULT_APP}","email":"{email}","password":"{password}","otp":""}}"#
        );
        self.api("POST", "/userconsole/auth", &body).await
    }

    async fn saml_page(&self, session: &str) -> Answer {
        exchange(
            self.sso,
            &format!(
                "GET /saml2/{DEFAULT_APP} HTTP/1.1\r\nHost: sso\r\nConnection: close\r\n\
                 Cookie: _jumpcloud_user_console_={session}\r\n\r\n"
            ),
        )
        .await
    }
}

fn push_user() -> FakeUser {
    FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::AcceptAfterPolls(1))
}

#[tokio::test]
async fn the_console_and_the_sso_host_are_separate() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    assert_ne!(fake.addr(), fake.sso_addr());
    assert!(
        fake.app_url(DEFAULT_APP)
            .starts_with(&format!("http://{}/saml2/", fake.sso_addr())),
        "{}",
        fake.app_url(DEFAULT_APP)
    );
    let client = Client::start(&fake).await;

    // The console serves no SAML pages.
    let on_console = exchange(
        fake.addr(),
        &format!("GET /saml2/{DEFAULT_APP} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(on_console.status, 404, "{on_console:?}");
    // Without a session the SSO host sends the browser to the console's login page.
    let anonymous = client.saml_page("nobody").await;
    assert_eq!(anonymous.status, 302, "{anonymous:?}");
    assert_eq!(
        anonymous.header("location"),
        Some(format!("{}/login?redirectTo=saml2%2F{DEFAULT_APP}", fake.base_url()).as_str())
    );

    // The answer names the app on the SSO host, whatever host the client has in mind.
    let login = client.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(
        login.json()["redirectTo"].as_str(),
        Some(fake.app_url(DEFAULT_APP).as_str())
    );
}

#[tokio::test]
async fn the_xsrf_cookie_is_the_signed_token_and_must_match_the_header() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let client = Client::start(&fake).await;

    // base64(token)|timestamp|signature, like the cookie in saml2aws#230.
    let parts: Vec<&str> = client.xsrf_cookie.split('|').collect();
    assert_eq!(parts.len(), 3, "{}", client.xsrf_cookie);
    let decoded = base64::engine::general_purpose::URL_SAFE
        .decode(parts[0])
        .expect("base64");
    assert_eq!(String::from_utf8(decoded).unwrap(), client.token);
    let nanos: i128 = parts[1].parse().expect("a timestamp");
    let issued = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
    assert!((time::OffsetDateTime::now_utc() - issued).abs() < time::Duration::minutes(1));
    assert!(
        parts[2].len() == 64 && parts[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        parts[2]
    );

    let body = format!(
        r#"{{"context":"sso","redirectTo":"saml2/aws","email":"{DEFAULT_EMAIL}","password":"{DEFAULT_PASSWORD}","otp":""}}"#
    );
    // The cookie value is not the token: sending it as the header fails.
    let cookie_as_header = client
        .api_with(
            "POST",
            "/userconsole/auth",
            &body,
            &client.xsrf_cookie,
            &client.cookies(),
        )
        .await;
    assert_eq!(cookie_as_header.status, 403, "{cookie_as_header:?}");
    // A forged signature fails.
    let forged = format!("{}|{}|{}", parts[0], parts[1], "0".repeat(64));
    let forged = client
        .api_with(
            "POST",
            "/userconsole/auth",
            &body,
            &client.token,
            &format!(
                "_xsrf={forged}; _jumpcloud_user_console_={}",
                client.session
            ),
        )
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");
    // The token in the header and the signed cookie together pass.
    let good = client.api("POST", "/userconsole/auth", &body).await;
    assert_eq!(good.status, 200, "{good:?}");
    assert_eq!(fake.stats().rejected_auth_posts, 2);
}

#[tokio::test]
async fn the_session_cookie_is_kept_at_login() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let client = Client::start(&fake).await;

    let login = client.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;

    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(
        login.cookie("_jumpcloud_user_console_"),
        None,
        "no new session cookie at login"
    );
    let page = client.saml_page(&client.session).await;
    assert_eq!(
        page.status, 200,
        "the pre-login cookie is now signed in: {page:?}"
    );
    assert!(page.body.contains("SAMLResponse"));
}

#[tokio::test]
async fn xsrf_tokens_and_pre_login_sessions_expire() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::default()).await;
    let stale = Client::start(&fake).await;

    fake.advance_clock(XSRF_LIFETIME + Duration::from_secs(1));

    let refused = stale.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(fake.stats().stale_xsrf, 1);
    // A token fetched after the clock moved works.
    let renewed = Client::start(&fake).await;
    let ok = renewed.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test]
async fn a_push_cannot_start_on_a_stale_pre_login_session() {
    // The password was accepted, then the user walked away: the half-done login is gone.
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::with_user(push_user())).await;
    let client = Client::start(&fake).await;
    let mfa = client.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    assert_eq!(mfa.status, 401, "{mfa:?}");

    fake.advance_clock(XSRF_LIFETIME + Duration::from_secs(1));

    let push = client.api("POST", "/userconsole/auth/push", "{}").await;
    assert_eq!(push.status, 403, "{push:?}");
    assert_eq!(fake.stats().pushes_started, 0);
}

#[tokio::test]
async fn one_push_at_a_time_per_user() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::with_user(
        push_user().with_push(PushBehavior::AcceptAfterPolls(2)),
    ))
    .await;
    let first = Client::start(&fake).await;
    let second = Client::start(&fake).await;
    for client in [&first, &second] {
        let mfa = client.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
        assert_eq!(mfa.status, 401, "{mfa:?}");
    }

    let started = first.api("POST", "/userconsole/auth/push", "{}").await;
    assert_eq!(started.status, 200, "{started:?}");
    let id = started.json()["id"].as_str().unwrap().to_owned();
    // Another login of the same user (another session) while it is pending.
    let refused = second.api("POST", "/userconsole/auth/push", "{}").await;
    assert_eq!(refused.status, 409, "{refused:?}");
    assert_eq!(refused.json()["message"], PUSH_PENDING);
    assert_eq!(
        (fake.stats().pushes_started, fake.stats().pushes_refused),
        (1, 1)
    );

    // Once answered, a new push may start.
    for _ in 0..2 {
        let poll = first
            .api("GET", &format!("/userconsole/auth/push/{id}"), "")
            .await;
        assert_eq!(poll.status, 200, "{poll:?}");
        // At the pace JumpCloud allows.
        fake.advance_clock(PUSH_POLL_MIN_GAP);
    }
    let again = second.api("POST", "/userconsole/auth/push", "{}").await;
    assert_eq!(again.status, 200, "{again:?}");
}

#[tokio::test]
async fn a_push_polled_too_fast_is_answered_429() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::with_user(
        push_user().with_push(PushBehavior::AcceptAfterPolls(2)),
    ))
    .await;
    let client = Client::start(&fake).await;
    client.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    let started = client.api("POST", "/userconsole/auth/push", "{}").await;
    let poll = format!(
        "/userconsole/auth/push/{}",
        started.json()["id"].as_str().unwrap()
    );

    let first = client.api("GET", &poll, "").await;
    assert_eq!(first.json()["status"], "pending", "{first:?}");
    let hasty = client.api("GET", &poll, "").await;
    assert_eq!(hasty.status, 429, "{hasty:?}");
    assert_eq!(hasty.header("retry-after"), Some("1"));
    // A throttled poll does not count towards the push's answer.
    fake.advance_clock(PUSH_POLL_MIN_GAP);
    let paced = client.api("GET", &poll, "").await;
    assert_eq!(paced.json()["status"], "accepted", "{paced:?}");
    let stats = fake.stats();
    assert_eq!((stats.push_polls, stats.push_polls_throttled), (3, 1));
}

#[tokio::test]
async fn a_push_login_after_expires_at_is_refused() {
    let fake = FakeJumpCloud::start(FakeJumpCloudConfig::with_user(push_user())).await;
    let client = Client::start(&fake).await;
    client.password(DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    let started = client.api("POST", "/userconsole/auth/push", "{}").await;
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let poll = client
        .api("GET", &format!("/userconsole/auth/push/{id}"), "")
        .await;
    assert_eq!(poll.json()["status"], "accepted", "{poll:?}");

    // Past expiresAt (a minute by default), but well within the XSRF lifetime.
    fake.advance_clock(Duration::from_secs(61));

    let late = client
        .api("POST", &format!("/userconsole/auth/push/{id}/login"), "{}")
        .await;
    assert_eq!(late.status, 401, "{late:?}");
    assert_eq!(fake.stats().late_push_logins, 1);
    assert_eq!(fake.stats().logins, 0);
}

/// SessionDuration attributes an admin mistyped: the login works and STS is asked for the
/// configured session_duration; the daemon says why in its log.
#[test]
fn an_unusable_session_duration_attribute_does_not_stop_a_login() {
    let mut typo = FakeApp::new("typo", &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]);
    typo.session_duration_text = Some("12h".to_owned());
    let mut empty = FakeApp::new("empty", &[(DEFAULT_ROLE_ARN, DEFAULT_PROVIDER_ARN)]);
    empty.session_duration_text = Some(String::new());
    let jc = FakeJumpCloudConfig {
        apps: vec![typo, empty],
        ..FakeJumpCloudConfig::default()
    };
    let w = World::with_setup(
        jc,
        FakeStsConfig::default(),
        |jc, sts, _| {
            let mut toml = format!(
                "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{}\"\n\
                 sts_endpoint = \"{}\"\nsession_duration = \"30m\"\n",
                jc.base_url(),
                sts.endpoint_url()
            );
            for app in ["typo", "empty"] {
                toml += &format!(
                    "\n[accounts.{app}]\nurl = \"{}\"\nusername = \"{DEFAULT_EMAIL}\"\n",
                    jc.app_url(app)
                );
            }
            toml
        },
        None,
    );

    for account in ["typo", "empty"] {
        succeeded(&w.login(account, DEFAULT_PASSWORD, None), account);
    }

    assert_eq!(w.sts.durations(), [1800, 1800]);
    let log = w.daemon_log();
    assert!(
        log.contains("SessionDuration attribute is \"12h\"")
            && log.contains("SessionDuration attribute is \"\""),
        "{log}"
    );
}
