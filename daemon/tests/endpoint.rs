//! The loopback credential endpoint in-process: tokens, Host and path binding, revocation,
//! hostile clients, and botocore's container provider as a real consumer.

mod common;

use common::{ScriptedIdp, ScriptedProviders, ScriptedSts};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use samld::clock::SystemClock;
use samld::exec_endpoint::{Endpoint, EndpointOptions, Lease};
use samld::manager::{DaemonOptions, Manager};
use samld_proto::{LoginIntent, PasswordLogin};

const ADMIN: &str = "arn:aws:iam::123456789012:role/Admin";
const READ: &str = "arn:aws:iam::123456789012:role/team/ReadOnly";
const CONFIG: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
role = "Admin"
region = "us-east-2"

[accounts.stage]
url = "https://sso.jumpcloud.com/saml2/stage"
username = "alice@example.com"
role = "Admin"
"#;

async fn logged_in_daemon() -> Arc<Manager> {
    let config = samld_config::parse(CONFIG, Path::new("/test/config.toml")).unwrap();
    let daemon = Manager::new(
        config,
        DaemonOptions::new("/test/config.toml".into()),
        Arc::new(SystemClock),
        ScriptedSts::new(Arc::new(SystemClock), Duration::from_secs(7200)),
        ScriptedProviders::serving(Arc::new(ScriptedIdp::live(&[ADMIN, READ]))),
    );
    for account in ["prod", "stage"] {
        daemon
            .login(
                account,
                LoginIntent::Password(PasswordLogin::default()),
                None,
            )
            .await
            .expect("login reuses the live session");
    }
    daemon
}

fn options() -> EndpointOptions {
    EndpointOptions {
        header_read_timeout: Duration::from_millis(300),
        ..EndpointOptions::default()
    }
}

/// One HTTP/1.1 exchange written by hand, so that every header is exactly what the test says.
/// Returns the status code (0 when the server closed without answering) and the body.
fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may close before reading everything (oversized heads); that is an answer too.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str, host: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
    raw_request(addr, request.as_bytes())
}

fn path_of(lease: &Lease) -> String {
    let url = lease.url();
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_owned()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_token_gets_the_credentials_of_its_role() {
    let daemon = logged_in_daemon().await;
    let endpoint = Endpoint::new(options());
    assert_eq!(
        endpoint.local_addr(),
        None,
        "no listener before the first token"
    );
    let lease = endpoint.issue(&daemon, "prod", ADMIN).await.unwrap();
    let addr = lease.addr();
    assert_eq!(endpoint.local_addr(), Some(addr));
    assert!(addr.ip().is_loopback());
    assert!(
        lease
            .url()
            .starts_with(&format!("http://{addr}/v1/credentials/prod/")),
        "{}",
        lease.url()
    );

    let token = lease.token().expose().to_owned();
    let (path, host) = (path_of(&lease), addr.to_string());
    let (status, body) = blocking(move || get(addr, &path, &host, Some(&token))).await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let expected = daemon
        .get_credentials("prod", Some(ADMIN), None)
        .await
        .unwrap();
    assert_eq!(doc["AccessKeyId"], expected.access_key_id.as_str());
    assert_eq!(doc["SecretAccessKey"], expected.secret_access_key.expose());
    assert_eq!(doc["Token"], expected.session_token.expose());
    assert_eq!(doc["Expiration"], expected.expiration.as_str());
    assert_eq!(doc["RoleArn"], ADMIN);

    // The account alone, and the role by name, name the same grant.
    let token = lease.token().expose().to_owned();
    let host = addr.to_string();
    let (by_account, by_name) = blocking(move || {
        (
            get(addr, "/v1/credentials/prod", &host, Some(&token)).0,
            get(addr, "/v1/credentials/prod/Admin", &host, Some(&token)).0,
        )
    })
    .await;
    assert_eq!((by_account, by_name), (200, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_or_from_elsewhere_are_refused() {
    let daemon = logged_in_daemon().await;
    let endpoint = Endpoint::new(options());
    let lease = endpoint.issue(&daemon, "prod", ADMIN).await.unwrap();
    let addr = lease.addr();
    let token = lease.token().expose().to_owned();
    let path = path_of(&lease);
    let host = addr.to_string();

    let results = blocking(move || {
        let mut wrong = token.clone();
        // Same length, one digit off: only a full comparison tells them apart.
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        let origin = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n"
        );
        vec![
            ("no token", get(addr, &path, &host, None)),
            ("wrong token", get(addr, &path, &host, Some(&wrong))),
            ("empty token", get(addr, &path, &host, Some(""))),
            (
                "foreign Host",
                get(addr, &path, "rebound.evil.example:80", Some(&token)),
            ),
            (
                "Host without the port",
                get(addr, &path, "127.0.0.1", Some(&token)),
            ),
            ("localhost Host", get(addr, &path, &format!("localhost:{}", addr.port()), Some(&token))),
            ("browser Origin", raw_request(addr, origin.as_bytes())),
            (
                "another account",
                get(addr, "/v1/credentials/stage", &host, Some(&token)),
            ),
            (
                "another role",
                get(addr, "/v1/credentials/prod/ReadOnly", &host, Some(&token)),
            ),
            ("unknown path", get(addr, "/latest/meta-data/", &host, Some(&token))),
        ]
    })
    .await;
    let expected = [401, 401, 401, 403, 403, 403, 403, 403, 403, 404];
    for ((what, (status, body)), want) in results.iter().zip(expected) {
        assert_eq!(*status, want, "{what}: {body}");
        assert!(
            !body.contains("secret-"),
            "{what} leaked credentials: {body}"
        );
        let doc: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
        assert!(
            doc["Code"].is_string() && doc["Message"].is_string(),
            "{what}: {body}"
        );
    }
    drop(lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_dies_with_its_lease_and_the_listener_with_the_last_one() {
    let daemon = logged_in_daemon().await;
    let endpoint = Endpoint::new(options());
    let first = endpoint.issue(&daemon, "prod", ADMIN).await.unwrap();
    let second = endpoint.issue(&daemon, "stage", ADMIN).await.unwrap();
    assert_eq!(
        first.addr(),
        second.addr(),
        "one listener serves every token"
    );
    assert_ne!(first.token().expose(), second.token().expose());
    assert_eq!(endpoint.active_tokens(), 2);
    let addr = first.addr();
    let (t1, p1) = (first.token().expose().to_owned(), path_of(&first));
    let (t2, p2) = (second.token().expose().to_owned(), path_of(&second));

    drop(first);
    assert_eq!(endpoint.active_tokens(), 1);
    let host = addr.to_string();
    let (revoked, alive) = blocking(move || {
        (
            get(addr, &p1, &host, Some(&t1)).0,
            get(addr, &p2, &host, Some(&t2)).0,
        )
    })
    .await;
    assert_eq!(revoked, 401, "a revoked token is refused");
    assert_eq!(alive, 200, "the other token still works");

    drop(second);
    assert_eq!(endpoint.active_tokens(), 0);
    assert_eq!(
        endpoint.local_addr(),
        None,
        "the idle endpoint stops listening"
    );

    // The next token starts a listener again (possibly on another port).
    let again = endpoint.issue(&daemon, "prod", ADMIN).await.unwrap();
    let (addr, token, path) = (
        again.addr(),
        again.token().expose().to_owned(),
        path_of(&again),
    );
    let status = blocking(move || get(addr, &path, &addr.to_string(), Some(&token)).0).await;
    assert_eq!(status, 200);
}

/// A free port below the kernel's ephemeral range, for a fixed-port endpoint. A port found by
/// binding port 0 and releasing it could be handed to any other process binding port 0
/// before the endpoint binds it (and again each time the endpoint lets go of it); one outside
/// that range is only ever taken by someone asking for it by number. Where to start looking
/// depends on the pid, so that test runs side by side try different ports.
fn fixed_port() -> u16 {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let first = 10_000u16;
    let span = ephemeral_low.saturating_sub(first).max(1);
    let start = (std::process::id() % u32::from(span)) as u16;
    (0..span)
        .map(|i| first + (start + i) % span)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_port_is_reused_after_the_listener_stopped() {
    // The second issue must wait for the first listener to let go of the port.
    let port = fixed_port();
    let daemon = logged_in_daemon().await;
    let endpoint = Endpoint::new(EndpointOptions { port, ..options() });
    for _ in 0..3 {
        let lease = endpoint.issue(&daemon, "prod", ADMIN).await.unwrap();
        assert_eq!(lease.addr().port(), port);
        drop(lease);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests_are_cut_off() {
    let daemon = logged_in_daemon().await;
    let endpoint = Endpoint::new(options());
    let lease = endpoint.issue(&daemon, "prod", ADMIN).await.unwrap();
    let addr = lease.addr();
    let token = lease.token().expose().to_owned();
    let path = path_of(&lease);

    let (oversized, many_headers, slow, after) = blocking(move || {
        let huge = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let oversized = raw_request(addr, huge.as_bytes()).0;
        let headers: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
        let many_headers = raw_request(addr, many.as_bytes()).0;

        // Half a request, then silence: the server hangs up after the header deadline.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
            .unwrap();
        let started = std::time::Instant::now();
        let mut sink = Vec::new();
        let read = slow.read_to_end(&mut sink);
        let slow = (read.is_ok(), started.elapsed());

        let after = get(addr, &path, &addr.to_string(), Some(&token)).0;
        (oversized, many_headers, slow, after)
    })
    .await;
    assert_eq!(oversized, 431, "an oversized head is refused");
    assert_eq!(many_headers, 431, "too many headers are refused");
    assert!(slow.0, "the slow connection was closed by the server");
    assert!(
        slow.1 < Duration::from_secs(5),
        "closed after the header deadline, not the read timeout: {:?}",
        slow.1
    );
    assert_eq!(after, 200, "the endpoint still serves after the abuse");
}

/// botocore's own container provider (`AWS_CONTAINER_CREDENTIALS_FULL_URI` and
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`) against the endpoint. Fails where python3 with
/// botocore is not on PATH (scripts/test.sh puts the interop venv there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_reads_the_endpoint() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import botocore"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with botocore is not on PATH: this test needs it; scripts/test.sh puts the \
         interop venv (scripts/interop/venv.sh) there"
    );
    let daemon = logged_in_daemon().await;
    let endpoint = Endpoint::new(options());
    let lease = endpoint.issue(&daemon, "prod", READ).await.unwrap();
    let (url, token) = (lease.url().to_owned(), lease.token().expose().to_owned());
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let script = r#"
import botocore.session
creds = botocore.session.get_session().get_credentials()
frozen = creds.get_frozen_credentials()
print(creds.method)
print(frozen.access_key)
print(frozen.secret_key)
print(frozen.token)
"#;
    let output = blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
            .output()
            .unwrap()
    })
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "botocore failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = daemon
        .get_credentials("prod", Some(READ), None)
        .await
        .unwrap();
    assert_eq!(lines[0], "container-role");
    assert_eq!(lines[1], expected.access_key_id);
    assert_eq!(lines[2], expected.secret_access_key.expose());
    assert_eq!(lines[3], expected.session_token.expose());
    drop(lease);
}
