//! The person at the browser: drives a Chromium that someone else started (samlctl, over its
//! `--remote-debugging-pipe`) through a second DevTools channel, the way a person types,
//! clicks and touches a security key.
//!
//! The browser must have been started with `--remote-debugging-port=0`: Chromium then writes
//! the port it picked and its browser websocket path into `DevToolsActivePort` in its
//! `--user-data-dir`, which [`BrowserPerson::attach`] waits for. Everything here is
//! synchronous (a blocking websocket) and every wait has a deadline whose error names what
//! was awaited.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use notify::Watcher as _;
use ring::rand::SecureRandom as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The file Chromium writes into its profile directory when it listens for DevTools.
pub const DEVTOOLS_ACTIVE_PORT: &str = "DevToolsActivePort";

/// Evaluations that fail because the page navigated away while they ran are tried again
/// (in the new document) at most this many times.
const NAVIGATION_RETRIES: u32 = 20;

/// A fresh security key: `(credential id, PKCS#8 private key, public key)`, the public key as
/// the uncompressed P-256 point [`crate::fake_jumpcloud::FakeUser::with_webauthn`] takes and
/// the PKCS#8 document (v1, as ring makes it) [`BrowserPerson::add_security_key`] takes.
pub fn security_key() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("system randomness");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
        .expect("ring reads back its own PKCS#8");
    let mut credential_id = vec![0u8; 32];
    rng.fill(&mut credential_id).expect("system randomness");
    let public_key = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    (credential_id, pkcs8.as_ref().to_vec(), public_key)
}

/// A person at a running Chromium, through its DevTools websocket.
pub struct BrowserPerson {
    cdp: RefCell<Cdp>,
}

impl std::fmt::Debug for BrowserPerson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cdp = self.cdp.borrow();
        f.debug_struct("BrowserPerson")
            .field("page", &cdp.page)
            .finish_non_exhaustive()
    }
}

impl BrowserPerson {
    /// Waits (at most `timeout`) for the browser using `profile_dir` to listen for DevTools,
    /// connects, and attaches to its page (the one showing something other than a blank page
    /// if there are several; [`BrowserPerson::wait_for_url`] moves to another page target if
    /// the awaited URL shows up there).
    pub fn attach(profile_dir: &Path, timeout: Duration) -> Result<Self, String> {
        let deadline = Instant::now() + timeout;
        let ws = connect_when_listening(profile_dir, deadline, timeout)?;
        let mut cdp = Cdp {
            ws,
            next_id: 0,
            targets: HashMap::new(),
            page: None,
        };
        cdp.call(
            "Target.setDiscoverTargets",
            json!({ "discover": true }),
            None,
            deadline,
        )?;
        cdp.refresh_targets(deadline)?;
        let target = loop {
            let pages = cdp.pages();
            let shown = pages.iter().find(|(_, url)| !is_blank(url));
            if let Some((id, _)) = shown.or(pages.first()) {
                break id.clone();
            }
            cdp.read_one(deadline, "a page target in the browser", timeout)?;
        };
        cdp.attach_to(&target, deadline)?;
        Ok(Self {
            cdp: RefCell::new(cdp),
        })
    }

    /// Waits until a page of the browser shows a URL containing `contains` and its document
    /// has loaded (`readyState == "complete"`); the URL. Attaches to that page if it is not
    /// the current one.
    pub fn wait_for_url(&self, contains: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let what = format!("a page whose URL contains {contains:?}");
        let mut cdp = self.cdp.borrow_mut();
        cdp.refresh_targets(deadline)?;
        let target = loop {
            let found = cdp
                .pages()
                .into_iter()
                .find(|(_, url)| url.contains(contains));
            if let Some((id, _)) = found {
                break id;
            }
            cdp.read_one(deadline, &what, timeout)
                .map_err(|e| format!("{e} (pages: {:?})", cdp.pages()))?;
        };
        if cdp.page.as_ref().map(|p| &p.target_id) != Some(&target) {
            cdp.attach_to(&target, deadline)?;
        }
        let loaded = "new Promise((resolve) => {
            const done = () => resolve(location.href);
            if (document.readyState === 'complete') done();
            else addEventListener('load', done, { once: true });
        })";
        let url = cdp.evaluate(loaded, deadline, &format!("{what} to load"), timeout)?;
        let url = url.as_str().unwrap_or_default().to_owned();
        if url.contains(contains) {
            Ok(url)
        } else {
            // The page moved on between the two steps.
            Err(format!("{what}: the page is at {url} once loaded"))
        }
    }

    /// Waits until the page has an element matching `selector` that is rendered (not
    /// `hidden`, not `display: none`): a MutationObserver in the page, no polling.
    pub fn wait_for_selector(&self, selector: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let js = format!(
            "new Promise((resolve) => {{
                const sel = {sel};
                const shown = () => {{
                    const el = document.querySelector(sel);
                    return el !== null && el.checkVisibility();
                }};
                if (shown()) {{ resolve(true); return; }}
                const watch = new MutationObserver(() => {{
                    if (shown()) {{ watch.disconnect(); resolve(true); }}
                }});
                watch.observe(document, {{ subtree: true, childList: true, attributes: true }});
            }})",
            sel = js_string(selector)
        );
        let what = format!("the element {selector:?} to be shown");
        self.cdp
            .borrow_mut()
            .evaluate(&js, deadline, &what, timeout)
            .map(drop)
    }

    /// Waits until the text of the element matching `selector` contains `contains` (any
    /// non-empty text when `contains` is empty); the text.
    pub fn wait_for_text(
        &self,
        selector: &str,
        contains: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let js = format!(
            "new Promise((resolve) => {{
                const sel = {sel}, want = {want};
                const text = () => {{
                    const el = document.querySelector(sel);
                    const t = el === null ? '' : el.textContent;
                    return (want === '' ? t !== '' : t.includes(want)) ? t : null;
                }};
                if (text() !== null) {{ resolve(text()); return; }}
                const watch = new MutationObserver(() => {{
                    const t = text();
                    if (t !== null) {{ watch.disconnect(); resolve(t); }}
                }});
                watch.observe(document, {{ subtree: true, childList: true, characterData: true }});
            }})",
            sel = js_string(selector),
            want = js_string(contains)
        );
        let what = format!("the text of {selector:?} to contain {contains:?}");
        let mut cdp = self.cdp.borrow_mut();
        let text = cdp.evaluate(&js, deadline, &what, timeout)?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Types `text` into the input matching `selector` (replacing what it held).
    pub fn fill(&self, selector: &str, text: &str) -> Result<(), String> {
        let js = format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (el === null) throw new Error('no element ' + {sel});
                el.focus();
                el.value = {text};
                el.dispatchEvent(new Event('input', {{ bubbles: true }}));
                el.dispatchEvent(new Event('change', {{ bubbles: true }}));
                return true;
            }})()",
            sel = js_string(selector),
            text = js_string(text)
        );
        self.eval(&js).map(drop)
    }

    /// Clicks the element matching `selector` (with a user gesture, as a person's click).
    pub fn click(&self, selector: &str) -> Result<(), String> {
        let js = format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (el === null) throw new Error('no element ' + {sel});
                el.click();
                return true;
            }})()",
            sel = js_string(selector)
        );
        self.eval(&js).map(drop)
    }

    /// The text content of the element matching `selector`.
    pub fn text_of(&self, selector: &str) -> Result<String, String> {
        let js = format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (el === null) throw new Error('no element ' + {sel});
                return el.textContent;
            }})()",
            sel = js_string(selector)
        );
        let text = self.eval(&js)?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value as JSON, within
    /// ten seconds.
    pub fn eval(&self, js: &str) -> Result<Value, String> {
        let timeout = Duration::from_secs(10);
        let what = format!("the page to evaluate {js:.60?}");
        self.cdp
            .borrow_mut()
            .evaluate(js, Instant::now() + timeout, &what, timeout)
    }

    /// Plugs a security key into the current page: a virtual CTAP2 authenticator holding one
    /// non-resident credential for `rp_id`, touched automatically when asked.
    /// `pkcs8_private_key` is a P-256 key as PKCS#8 (ring's v1 documents are accepted).
    pub fn add_security_key(
        &self,
        rp_id: &str,
        credential_id: &[u8],
        pkcs8_private_key: &[u8],
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cdp = self.cdp.borrow_mut();
        let session = cdp.session()?;
        let session = Some(session.as_str());
        cdp.call(
            "WebAuthn.enable",
            json!({ "enableUI": false }),
            session,
            deadline,
        )?;
        let added = cdp.call(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": false,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
            session,
            deadline,
        )?;
        let authenticator = added
            .get("authenticatorId")
            .and_then(Value::as_str)
            .ok_or("WebAuthn.addVirtualAuthenticator answered no authenticatorId")?
            .to_owned();
        cdp.call(
            "WebAuthn.addCredential",
            json!({
                "authenticatorId": authenticator,
                "credential": {
                    // CDP's binary type: standard base64 with padding.
                    "credentialId": STANDARD.encode(credential_id),
                    "isResidentCredential": false,
                    "rpId": rp_id,
                    "privateKey": STANDARD.encode(pkcs8_private_key),
                    "signCount": 0,
                },
            }),
            session,
            deadline,
        )?;
        Ok(())
    }

    /// Closes the current page's window, as a person closing it would.
    pub fn close_window(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cdp = self.cdp.borrow_mut();
        let page = cdp.page.take().ok_or("no page to close")?;
        cdp.call(
            "Target.closeTarget",
            json!({ "targetId": page.target_id }),
            None,
            deadline,
        )?;
        Ok(())
    }
}

fn is_blank(url: &str) -> bool {
    url.is_empty() || url == "about:blank" || url.starts_with("chrome://")
}

/// A JavaScript string literal (JSON's is one).
fn js_string(text: &str) -> String {
    Value::from(text).to_string()
}

#[derive(Debug)]
struct Page {
    target_id: String,
    session_id: String,
}

/// The DevTools connection and what it has learnt of the browser's targets.
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Every target discovered: its type and URL.
    targets: HashMap<String, (String, String)>,
    page: Option<Page>,
}

impl Cdp {
    /// Sends a command and waits for its answer (the `result`), taking in the events that
    /// arrive meanwhile.
    fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = Value::from(session);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .map_err(|e| format!("sending {method} to the browser: {e}"))?;
        let what = format!("the browser's answer to {method}");
        let timeout = deadline.saturating_duration_since(Instant::now());
        loop {
            let message = self.read_one(deadline, &what, timeout)?;
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Reads one message (answer or event), before `deadline`; events update what is known
    /// of the targets.
    fn read_one(
        &mut self,
        deadline: Instant,
        what: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let timed_out = || format!("timed out after {timeout:?} waiting for {what}");
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(timed_out)?;
            self.ws
                .get_mut()
                .set_read_timeout(Some(left))
                .map_err(|e| format!("waiting for {what}: {e}"))?;
            let message = match self.ws.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(format!("waiting for {what}: the DevTools connection: {e}")),
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => {
                    return Err(format!("waiting for {what}: the browser closed DevTools"));
                }
                _ => continue,
            };
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            self.take_event(&value);
            return Ok(value);
        }
    }

    fn take_event(&mut self, message: &Value) {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return;
        };
        let params = &message["params"];
        match method {
            "Target.targetCreated" | "Target.targetInfoChanged" => {
                self.learn(&params["targetInfo"]);
            }
            "Target.targetDestroyed" => {
                if let Some(id) = params["targetId"].as_str() {
                    self.targets.remove(id);
                    if self.page.as_ref().is_some_and(|p| p.target_id == id) {
                        self.page = None;
                    }
                }
            }
            "Target.detachedFromTarget" => {
                let session = params["sessionId"].as_str();
                if self.page.as_ref().map(|p| p.session_id.as_str()) == session {
                    self.page = None;
                }
            }
            _ => {}
        }
    }

    fn learn(&mut self, info: &Value) {
        let field = |name: &str| info[name].as_str().unwrap_or_default().to_owned();
        let id = field("targetId");
        if !id.is_empty() {
            self.targets.insert(id, (field("type"), field("url")));
        }
    }

    fn refresh_targets(&mut self, deadline: Instant) -> Result<(), String> {
        let answer = self.call("Target.getTargets", json!({}), None, deadline)?;
        if let Some(infos) = answer["targetInfos"].as_array() {
            for info in infos {
                self.learn(info);
            }
        }
        Ok(())
    }

    /// The page targets and their URLs, in a stable order.
    fn pages(&self) -> Vec<(String, String)> {
        let mut pages: Vec<(String, String)> = self
            .targets
            .iter()
            .filter(|(_, (kind, _))| kind == "page")
            .map(|(id, (_, url))| (id.clone(), url.clone()))
            .collect();
        pages.sort();
        pages
    }

    fn attach_to(&mut self, target_id: &str, deadline: Instant) -> Result<(), String> {
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            None,
            deadline,
        )?;
        let session_id = attached["sessionId"]
            .as_str()
            .ok_or("Target.attachToTarget answered no sessionId")?
            .to_owned();
        self.page = Some(Page {
            target_id: target_id.to_owned(),
            session_id,
        });
        Ok(())
    }

    fn session(&self) -> Result<String, String> {
        self.page
            .as_ref()
            .map(|p| p.session_id.clone())
            .ok_or_else(|| "no page attached (was its window closed?)".to_owned())
    }

    /// `Runtime.evaluate` in the current page, promises awaited, the value returned as JSON;
    /// tried again in the new document when a navigation destroyed the one it ran in.
    fn evaluate(
        &mut self,
        js: &str,
        deadline: Instant,
        what: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let mut retries = 0;
        loop {
            let session = self.session()?;
            let answer = self.call(
                "Runtime.evaluate",
                json!({
                    "expression": js,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                }),
                Some(&session),
                deadline,
            );
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) if e.starts_with("timed out") => {
                    return Err(format!("timed out after {timeout:?} waiting for {what}"));
                }
                Err(e) if navigated(&e) && retries < NAVIGATION_RETRIES => {
                    retries += 1;
                    continue;
                }
                Err(e) => return Err(format!("waiting for {what}: {e}")),
            };
            if let Some(details) = answer.get("exceptionDetails") {
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("an exception");
                if navigated(text) && retries < NAVIGATION_RETRIES {
                    retries += 1;
                    continue;
                }
                return Err(format!("waiting for {what}: {text}"));
            }
            return Ok(answer["result"]
                .get("value")
                .cloned()
                .unwrap_or(Value::Null));
        }
    }
}

/// Whether an evaluation failed because its document went away.
fn navigated(error: &str) -> bool {
    [
        "context was destroyed",
        "navigated or closed",
        "Cannot find context",
    ]
    .iter()
    .any(|m| error.contains(m))
}

/// Waits for `DevToolsActivePort` in `profile_dir` (watching the directory, or its parent
/// until the directory exists) and connects to the browser websocket it names. A file left
/// by an earlier browser names a port nobody listens on: then it waits for the next write.
fn connect_when_listening(
    profile_dir: &Path,
    deadline: Instant,
    timeout: Duration,
) -> Result<WebSocket<TcpStream>, String> {
    let what = format!("{DEVTOOLS_ACTIVE_PORT} in {}", profile_dir.display());
    let timed_out = || format!("timed out after {timeout:?} waiting for {what}");
    let file = profile_dir.join(DEVTOOLS_ACTIVE_PORT);
    let (tx, rx) = mpsc::channel();
    let mut watcher =
        notify::recommended_watcher(tx).map_err(|e| format!("watching for {what}: {e}"))?;
    let mut watching: Option<PathBuf> = None;
    let mut last_error = None;
    loop {
        // Watch the directory itself once it exists; before that, the nearest of its
        // ancestors that does (samlctl creates the whole chain when it starts).
        let wanted = profile_dir
            .ancestors()
            .find(|dir| dir.is_dir())
            .ok_or_else(|| format!("no ancestor of {} to watch", profile_dir.display()))?;
        if watching.as_deref() != Some(wanted) {
            if let Some(old) = watching.take() {
                let _ = watcher.unwatch(&old);
            }
            watcher
                .watch(wanted, notify::RecursiveMode::NonRecursive)
                .map_err(|e| format!("watching {} for {what}: {e}", wanted.display()))?;
            watching = Some(wanted.to_owned());
            // A deeper directory may have appeared before this watch began, and its events
            // would never come here: look again before reading or waiting.
            continue;
        }
        if let Some((port, path)) = read_port_file(&file) {
            match connect(port, &path, deadline) {
                Ok(ws) => return Ok(ws),
                Err(e) => last_error = Some(e),
            }
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(timed_out)?;
        match rx.recv_timeout(left) {
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(match last_error {
                    Some(e) => format!("{} (last try: {e})", timed_out()),
                    None => timed_out(),
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("the watcher for {what} stopped"));
            }
        }
    }
}

/// The port and websocket path of a complete `DevToolsActivePort` file.
fn read_port_file(file: &Path) -> Option<(u16, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    let port: u16 = lines.next()?.trim().parse().ok().filter(|p| *p != 0)?;
    let path = lines.next()?.trim();
    // A write caught halfway has a short or missing path; the next event brings the rest.
    let id = path.strip_prefix("/devtools/browser/")?;
    (id.len() >= 36).then(|| (port, path.to_owned()))
}

fn connect(port: u16, path: &str, deadline: Instant) -> Result<WebSocket<TcpStream>, String> {
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or("no time left to connect")?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, left).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tungstenite::client(url.as_str(), stream)
        .map_err(|e| format!("the DevTools handshake with {url}: {e}"))?;
    Ok(ws)
}
