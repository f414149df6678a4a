//! The browser of the browser sign-in tests: Debian's Chromium, headless and reaching
//! nothing beyond 127.0.0.1, and the person at it, who comes in through a second DevTools
//! channel while samlctl drives the browser over its pipe.

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use samld_tests::browser_person::BrowserPerson;

use super::World;

/// The browser every test runs.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the person waits for a page or an element: a cold Chromium on a loaded 2-core
/// machine takes a few seconds to start.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Flags every test browser runs with: headless as root, and unable to resolve any name but
/// loopback, so that the POST to the real AWS host name is proven caught before anything
/// leaves the machine.
pub fn offline_args() -> Vec<String> {
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

/// `--remote-debugging-port=0` lets the person in through a second DevTools channel; the
/// rest keeps the browser on 127.0.0.1.
pub fn browser_args_toml() -> String {
    let mut args = offline_args();
    args.push("--remote-debugging-port=0".into());
    let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// samld's browser profile in this world (`$HOME/.local/state/samld/browser`).
pub fn profile_of(w: &World) -> PathBuf {
    w.env.path().join(".local/state/samld/browser")
}

/// Starts `samlctl ARGS`, which waits for the browser sign-in.
pub fn start_samlctl(w: &World, args: &[&str]) -> Child {
    w.env
        .command("samlctl")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start samlctl")
}

/// Waits for a `samlctl` started by [`start_samlctl`] to end.
pub fn finish(child: Child) -> Output {
    child.wait_with_output().expect("samlctl's output")
}

/// The person at the browser samlctl opened, on the JumpCloud login page.
pub fn person_at_login_page(w: &World) -> BrowserPerson {
    let person = BrowserPerson::attach(&profile_of(w), PAGE_WAIT).expect("attach to the browser");
    person
        .wait_for_url("/login", PAGE_WAIT)
        .expect("the login page");
    person
        .wait_for_selector("#email", PAGE_WAIT)
        .expect("the email field");
    person
}

/// The person types `email` and `password` on the login page and presses Continue.
pub fn enter_password(person: &BrowserPerson, email: &str, password: &str) {
    person.fill("#email", email).unwrap();
    person.fill("#password", password).unwrap();
    person.click("#continue").unwrap();
}
