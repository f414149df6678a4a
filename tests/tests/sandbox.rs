//! `samld-sandbox` as a new user meets it: started as the README says, ready when its ready
//! file (a FIFO here) is written, then the commands it suggests, run in a shell that sourced
//! its `export` lines. Each of them must reach the sandbox's fakes: AWS is out of reach
//! here, so a command that went to AWS fails.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use samld_tests::fake_jumpcloud::{DEFAULT_EMAIL, DEFAULT_PASSWORD};
use samld_tests::fixture::{bin_path, stderr, stdout};

/// How long the sandbox may take to be ready, and then to stop: a cold Chromium on a loaded
/// 2-core machine takes several seconds to start. A limit, not a wait: the ready file and
/// the exit are the signals.
const LIMIT: Duration = Duration::from_secs(120);

/// What the sandbox's two watchers report.
enum Event {
    /// The ready file's text: the export lines.
    Ready(String),
    Exited(ExitStatus),
}

/// A running `samld-sandbox`, its output going to a file.
struct Sandbox {
    pid: u32,
    dir: tempfile::TempDir,
    events: mpsc::Receiver<Event>,
    stopped: bool,
}

impl Sandbox {
    /// Starts `samld-sandbox ARGS --ready-file FIFO` and returns once it wrote the FIFO.
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ready");
        let c_path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let output = File::create(dir.path().join("output")).unwrap();
        let mut child = Command::new(bin_path("samld-sandbox"))
            .args(args)
            .arg("--ready-file")
            .arg(&fifo)
            // As cargo's child it would first build the workspace (`cargo run` does not); the
            // test command built it already.
            .env_remove("CARGO")
            .env_remove("CARGO_MANIFEST_DIR")
            // Its own process group, so that a failed test can end samld, samlctl and the
            // browser with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("start samld-sandbox");
        let pid = child.id();
        let (tx, events) = mpsc::channel();
        let ready = tx.clone();
        // A sandbox that dies first never opens the FIFO: this reader then stays blocked,
        // and the exit below is what the test sees.
        thread::spawn(move || {
            let mut text = String::new();
            if File::open(&fifo)
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_ok()
            {
                let _ = ready.send(Event::Ready(text));
            }
        });
        thread::spawn(move || {
            let status = child.wait().expect("wait for samld-sandbox");
            let _ = tx.send(Event::Exited(status));
        });
        let sandbox = Sandbox {
            pid,
            dir,
            events,
            stopped: false,
        };
        match sandbox.events.recv_timeout(LIMIT) {
            Ok(Event::Ready(exports)) => {
                std::fs::write(sandbox.exports(), exports).unwrap();
                sandbox
            }
            Ok(Event::Exited(status)) => {
                panic!("samld-sandbox exited ({status}):\n{}", sandbox.output())
            }
            Err(_) => panic!(
                "samld-sandbox not ready in {LIMIT:?}:\n{}",
                sandbox.output()
            ),
        }
    }

    fn exports(&self) -> PathBuf {
        self.dir.path().join("exports.sh")
    }

    /// Everything it printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output")).unwrap_or_default()
    }

    /// `sh -c SCRIPT` after sourcing the export lines, as the user's shell would run it.
    fn shell(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(format!(". {} && {script}", shell_quote(&self.exports())))
            // Nothing of the test runner's own AWS setup may steer the commands.
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_STS")
            .stdin(Stdio::null())
            .output()
            .expect("run sh")
    }

    /// SIGTERM, as Ctrl-C would; returns its output once it has stopped cleanly.
    fn stop(mut self) -> String {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        loop {
            match self.events.recv_timeout(LIMIT) {
                Ok(Event::Exited(status)) => {
                    self.stopped = true;
                    assert!(status.success(), "{status}:\n{}", self.output());
                    return self.output();
                }
                Ok(Event::Ready(_)) => {}
                Err(_) => panic!("samld-sandbox did not stop:\n{}", self.output()),
            }
        }
    }
}

impl Drop for Sandbox {
    /// After a failure: a sandbox stuck in its login would not act on SIGTERM before its
    /// samlctl returns, so the whole group goes.
    fn drop(&mut self) {
        if !self.stopped {
            // SAFETY: kill only sends a signal to the process group of our own child.
            unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
        }
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// A plain HTTP GET of `url` (http://127.0.0.1:PORT/...): the status line and the body.
fn get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = TcpStream::connect(host).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

#[test]
fn exec_console_and_a_second_login_reach_the_sandboxs_fakes() {
    let sandbox = Sandbox::start(&[]);

    // The programs samlctl exec runs get samld's credentials endpoint and no profile; their
    // STS must be the sandbox's.
    let out = sandbox
        .shell("samlctl exec sandbox -- aws sts get-caller-identity --query Account --output text");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "123456789012");

    // The console sign-in goes to the fake federation endpoint, which opens the fake console.
    let out = sandbox.shell("samlctl console sandbox --print");
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).trim().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/federation?Action=login&"),
        "{url}"
    );
    let page = get(&url);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("Signed in to the AWS Management Console (fake)"),
        "{page}"
    );

    // After a logout, the password the sandbox printed logs in again.
    let password = format!("the fake user's password is \"{DEFAULT_PASSWORD}\"");
    assert!(sandbox.output().contains(&password), "{}", sandbox.output());
    let out = sandbox.shell(&format!(
        "samlctl logout sandbox && printf '%s\\n' '{DEFAULT_PASSWORD}' | \
         samlctl login sandbox --password-stdin"
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("Logged in to sandbox as {DEFAULT_EMAIL}")),
        "{}",
        stdout(&out)
    );
    sandbox.stop();
}

#[test]
fn the_headless_browser_sandbox_signs_in_by_itself() {
    let sandbox = Sandbox::start(&["--browser-headless"]);
    let output = sandbox.output();
    assert!(output.contains("Got the SAML response"), "{output}");
    assert!(
        output.contains(&format!("Logged in to sandbox as {DEFAULT_EMAIL}")),
        "{output}"
    );
    assert!(output.contains("{\"AccessKeyId\":\"ASIA"), "{output}");
    let out = sandbox.shell("samlctl status --json");
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["accounts"][0]["state"], "active", "{status:#}");
    sandbox.stop();
}
