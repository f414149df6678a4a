//! Browser sign-in (`samlctl login --browser`) with Debian's Chromium, headless, reaching
//! nothing beyond 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use samld_client::browser::{self, BrowserError, BrowserSettings};

/// Flags every test browser runs with: headless as root, and unable to resolve any name but
/// loopback, so that the POST to the real AWS host name is proven caught before anything
/// leaves the machine.
fn offline_args() -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ]
    .map(str::to_owned)
    .to_vec()
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Serves one page at every path and records the request lines it got.
fn serve(page: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/app", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Chromium opens spare connections it may never send on.
            if line.trim().is_empty() {
                continue;
            }
            log.lock().unwrap().push(line.trim().to_owned());
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: idp_session=s3cr3t; Path=/; HttpOnly\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.flush();
            let _ = reader.read(&mut [0; 1]);
        }
    });
    (url, seen)
}

fn settings(url: &str) -> BrowserSettings {
    BrowserSettings {
        account: "prod".into(),
        url: url.into(),
        browser: Some(CHROMIUM.into()),
        args: offline_args(),
    }
}

fn profile() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("state").join("samld").join("browser");
    (dir, profile)
}

#[test]
fn the_saml_post_to_aws_is_caught_with_the_idp_cookies() {
    const PAGE: &str = "<!DOCTYPE html><html><body><form method=\"post\" \
        action=\"https://signin.aws.amazon.com/saml\"><input type=\"hidden\" name=\"SAMLResponse\" \
        value=\"PHNhbWw+PC9zYW1sPg==\"><input type=\"hidden\" name=\"RelayState\" value=\"\">\
        </form><script>document.forms[0].submit()</script></body></html>";
    let (url, seen) = serve(PAGE);
    let (_dir, profile) = profile();
    let mut heard = Vec::new();
    let signed_in =
        browser::sign_in(&settings(&url), &profile, &mut |m| heard.push(m.to_owned())).unwrap();
    assert_eq!(signed_in.saml_response.expose(), "PHNhbWw+PC9zYW1sPg==");
    let cookie = signed_in
        .cookies
        .iter()
        .find(|c| c.name == "idp_session")
        .expect("the IdP's cookie");
    assert_eq!((cookie.value.expose(), cookie.domain.as_str()), ("s3cr3t", "127.0.0.1"));
    assert_eq!(*seen.lock().unwrap(), ["GET /app HTTP/1.1"]);
    assert!(heard.iter().any(|m| m.contains("sign in")), "{heard:?}");
    let mode = std::fs::metadata(&profile).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o700);
}

#[test]
fn a_browser_that_dies_gives_a_clear_error() {
    let (_dir, profile) = profile();
    let mut s = settings("http://127.0.0.1:9/app");
    // `false` exits at once, like a browser that crashes on start.
    s.browser = Some("/bin/false".into());
    let error = browser::sign_in(&s, &profile, &mut |_| {}).unwrap_err();
    assert!(matches!(error, BrowserError::Exited { .. }), "{error:?}");
    assert!(error.to_string().contains("the browser exited before the sign-in finished"), "{error}");
}

#[test]
fn a_missing_browser_says_where_it_looked() {
    let (_dir, profile) = profile();
    let mut s = settings("http://127.0.0.1:9/app");
    s.browser = Some("/nonexistent/chrome".into());
    let error = browser::sign_in(&s, &profile, &mut |_| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the account's browser = \"/nonexistent/chrome\" is not an executable file"
    );
}
