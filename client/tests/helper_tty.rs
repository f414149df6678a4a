//! `samld-helper` logging in on a terminal while its stdout and stderr are captured, as when
//! the AWS CLI runs it: the helper gets a pseudo-terminal as its controlling terminal, the
//! test plays the user at the other end, and the fake daemon asks for secrets.

#[path = "../src/fake_daemon.rs"]
mod fake_daemon;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_daemon::{Conn, FakeDaemon};
use samld_proto::{Credentials, Request, Response, Secret, SecretKind};

/// How long the user side waits for the helper to show something; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(20);

const PASSWORD_PROMPT: &str = "JumpCloud password for alice@example.com";

struct Pty {
    master: File,
    slave: File,
}

fn open_pty() -> Pty {
    let (mut master, mut slave): (RawFd, RawFd) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the name, termios and winsize are optional.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, slave] {
        // SAFETY: fcntl on descriptors we just got. The helper must not inherit them: it
        // is to find its terminal through /dev/tty only.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    unsafe {
        libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK);
        Pty {
            master: File::from_raw_fd(master),
            slave: File::from_raw_fd(slave),
        }
    }
}

impl Pty {
    /// Reads what the helper wrote to its terminal until `needle` shows up.
    fn read_until(&mut self, transcript: &mut String, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !transcript.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the terminal never showed {needle:?}; it showed {transcript:?}"
            );
            self.wait_readable(left);
            self.drain(transcript);
        }
    }

    fn wait_readable(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    }

    /// Whatever the terminal has to read right now.
    fn drain(&mut self, transcript: &mut String) {
        let mut buf = [0u8; 4096];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => transcript.push_str(&String::from_utf8_lossy(&buf[..n])),
                // WouldBlock: nothing more now; EIO: the helper closed the terminal.
                Err(_) => return,
            }
        }
    }

    fn type_line(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    fn echo_is_on(&self) -> bool {
        // SAFETY: tcgetattr fills the struct on success, checked by the assert.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.slave.as_raw_fd(), &mut t), 0);
            t.c_lflag & libc::ECHO != 0
        }
    }
}

/// Starts the helper with `pty` as its controlling terminal and stdout/stderr captured.
fn helper_on_tty(socket: &Path, pty: &Pty) -> Child {
    let slave = pty.slave.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_samld-helper"));
    cmd.arg("production")
        .env("SAMLD_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid, ioctl and signal are async-signal-safe; the slave descriptor stays
    // open in the parent until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 || libc::ioctl(slave, libc::TIOCSCTTY as _, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // A person's terminal delivers Ctrl-C. The test runner may have been started in
            // the background by a shell, which leaves SIGINT ignored, and the helper rightly
            // keeps an ignored signal ignored.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.spawn().expect("start samld-helper")
}

fn creds() -> Credentials {
    Credentials {
        account: "production".into(),
        role_arn: "arn:aws:iam::012345678987:role/Admin".into(),
        access_key_id: "ASIAEXAMPLEEXAMPLE01".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        session_token: Secret::new("FQoGZXIvYXdzEBYaDEXAMPLETOKEN"),
        expiration: "2099-01-01T00:00:00Z".into(),
        region: None,
    }
}

fn need(kind: SecretKind, prompt: &str) -> Response {
    Response::NeedSecret {
        kind,
        prompt: prompt.into(),
    }
}

fn interactive_request() -> Request {
    Request::GetCredentials {
        account: "production".into(),
        role: None,
        interactive: true,
        via: None,
    }
}

#[test]
fn password_is_asked_on_the_terminal_unechoed_and_only_json_reaches_stdout() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(need(SecretKind::Password, PASSWORD_PROMPT))
            .recv()
            .send(Response::Progress {
                message: "Approve the JumpCloud Protect push on your phone".into(),
            })
            .send(Response::Credentials(creds())),
    ]);
    let mut pty = open_pty();
    let child = helper_on_tty(&daemon.socket, &pty);
    let mut screen = String::new();

    pty.read_until(&mut screen, &format!("{PASSWORD_PROMPT}: "));
    assert!(
        !pty.echo_is_on(),
        "echo must be off while the password is typed"
    );
    pty.type_line("correct horse\n");
    // The terminal turns "\n" into "\r\n".
    pty.read_until(
        &mut screen,
        "\r\nsamld: Approve the JumpCloud Protect push on your phone\r\n",
    );

    let out = child.wait_with_output().unwrap();
    pty.drain(&mut screen);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim_end()).unwrap();
    assert_eq!(doc["AccessKeyId"], "ASIAEXAMPLEEXAMPLE01");
    assert!(!screen.contains("correct horse"), "echoed: {screen:?}");
    assert!(pty.echo_is_on(), "echo must be back on after the prompt");
    assert_eq!(
        daemon.requests(),
        [
            interactive_request(),
            Request::ProvideSecret {
                kind: SecretKind::Password,
                value: Secret::new("correct horse"),
            },
        ]
    );
}

#[test]
fn mfa_code_is_asked_with_echo() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(need(
                SecretKind::MfaCode,
                "MFA code from your authenticator app",
            ))
            .recv()
            .send(Response::Credentials(creds())),
    ]);
    let mut pty = open_pty();
    let child = helper_on_tty(&daemon.socket, &pty);
    let mut screen = String::new();
    pty.read_until(&mut screen, "MFA code from your authenticator app: ");
    pty.type_line("123456\n");
    pty.read_until(&mut screen, "123456");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        daemon.requests()[1],
        Request::ProvideSecret {
            kind: SecretKind::MfaCode,
            value: Secret::new("123456"),
        }
    );
}

#[test]
fn ctrl_c_at_the_password_prompt_leaves_echo_on() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(need(SecretKind::Password, PASSWORD_PROMPT))
            .recv(),
    ]);
    let mut pty = open_pty();
    let child = helper_on_tty(&daemon.socket, &pty);
    let mut screen = String::new();
    pty.read_until(&mut screen, &format!("{PASSWORD_PROMPT}: "));
    assert!(!pty.echo_is_on());
    pty.type_line("\x03");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(pty.echo_is_on(), "Ctrl-C left the terminal without echo");
    // The daemon saw the question go unanswered.
    assert_eq!(daemon.requests(), [interactive_request()]);
}

#[test]
fn an_empty_answer_cancels_the_login() {
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(need(SecretKind::Password, PASSWORD_PROMPT))
            .recv(),
    ]);
    let mut pty = open_pty();
    let child = helper_on_tty(&daemon.socket, &pty);
    let mut screen = String::new();
    pty.read_until(&mut screen, &format!("{PASSWORD_PROMPT}: "));
    pty.type_line("\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "samld: login cancelled: nothing entered for the JumpCloud password\n"
    );
    assert_eq!(daemon.requests(), [interactive_request()]);
}

#[test]
fn without_a_terminal_the_daemon_is_told_not_to_ask() {
    // A daemon that asks anyway gets no answer, and the user a reason.
    let daemon = FakeDaemon::serve(vec![
        Conn::new()
            .recv()
            .send(need(SecretKind::Password, PASSWORD_PROMPT))
            .recv(),
    ]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_samld-helper"));
    cmd.arg("production")
        .env("SAMLD_SOCKET", &daemon.socket)
        .stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe. A new session has no controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "samld: samld asked for the JumpCloud password but this program cannot prompt for it\n"
    );
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "production".into(),
            role: None,
            interactive: false,
            via: None,
        }]
    );
}

#[test]
fn a_background_job_does_not_ask_on_the_terminal() {
    // Reading the terminal from a background process group would stop the job (SIGTTIN), so
    // the helper of `aws … &` must act as if it had no terminal.
    let daemon = FakeDaemon::serve(vec![Conn::new().answer(Response::Credentials(creds()))]);
    let pty = open_pty();
    let slave = pty.slave.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    // A job-control shell puts `&` jobs in a process group of their own.
    cmd.args(["-mc", "\"$0\" production & wait $!"])
        .arg(env!("CARGO_BIN_EXE_samld-helper"))
        .env("SAMLD_SOCKET", &daemon.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: as in helper_on_tty.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 || libc::ioctl(slave, libc::TIOCSCTTY as _, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        daemon.requests(),
        [Request::GetCredentials {
            account: "production".into(),
            role: None,
            interactive: false,
            via: None,
        }]
    );
}
