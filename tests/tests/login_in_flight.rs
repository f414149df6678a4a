//! While a login is under way, with the real `samld`, `samlctl` and `samld-helper` against a
//! fake JumpCloud and a fake STS: the README's promises that no second push is sent while
//! one is pending, that other requests wait for the login only up to `login_wait` and then
//! say so, and that helpers wait for the one asking its user on a terminal.
//!
//! The phone is the test: pushes stay pending until the test answers them
//! ([`FakeJumpCloud::answer_pending_pushes`]), and every wait is on a count at the fake or
//! on the connections the daemon holds.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, FakeJumpCloud, FakeJumpCloudConfig, FakeJumpCloudStats, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{failed, failed_silently, succeeded, without_terminal};
use support::World;
use support::flows::credential_document;

/// The push user: the phone answers only when the test says so.
const PUSH_EMAIL: &str = "phone.user@example.com";
const PUSH_PASSWORD: &str = "pw-phone-Gx5!Rk9#";
/// The TOTP user of the terminal test.
const TOTP_EMAIL: &str = "desk.user@example.com";
const TOTP_PASSWORD: &str = "pw-desk-Tb3$Wq7%";
const TOTP_CODE: &str = "58204716";
/// `login_wait` of the `patient` account.
const LOGIN_WAIT: Duration = Duration::from_secs(2);
/// Bounds waits for events; only reached when something is broken.
const EVENT_DEADLINE: Duration = Duration::from_secs(60);

/// Accounts:
/// - `phone`: push, `password_command`, the default `login_wait` (2 minutes);
/// - `patient`: the same user with `login_wait = "2s"`;
/// - `desk`: password and TOTP code, both typed by a person.
fn world() -> World {
    let phone = FakeUser::new(PUSH_EMAIL, PUSH_PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::NeverAnswer);
    let desk = FakeUser::new(TOTP_EMAIL, TOTP_PASSWORD)
        .with_factor("totp", "available")
        .with_totp_codes(&[TOTP_CODE]);
    let mut jc = FakeJumpCloudConfig::with_user(phone);
    jc.users.push(desk);
    // Longer than any test: a push that ends on its own would end the waits it must not.
    jc.push_lifetime = Duration::from_secs(600);
    World::with_setup(jc, FakeStsConfig::default(), config_toml, None)
}

fn config_toml(jc: &FakeJumpCloud, sts: &FakeSts, _closed_port: u16) -> String {
    let app = jc.app_url(DEFAULT_APP);
    format!(
        "[defaults]\nregion = \"us-east-1\"\njumpcloud_console_url = \"{console}\"\n\
         sts_endpoint = \"{sts}\"\n\
         \n[accounts.phone]\nurl = \"{app}\"\nusername = \"{PUSH_EMAIL}\"\nmfa = \"push\"\n\
         password_command = \"echo '{PUSH_PASSWORD}'\"\n\
         \n[accounts.patient]\nurl = \"{app}\"\nusername = \"{PUSH_EMAIL}\"\nmfa = \"push\"\n\
         password_command = \"echo '{PUSH_PASSWORD}'\"\nlogin_wait = \"{wait}s\"\n\
         \n[accounts.desk]\nurl = \"{app}\"\nusername = \"{TOTP_EMAIL}\"\nmfa = \"totp\"\n",
        console = jc.base_url(),
        sts = sts.endpoint_url(),
        wait = LOGIN_WAIT.as_secs(),
    )
}

/// Starts a client binary in a session of its own (no terminal), output piped.
fn spawn(w: &World, bin: &str, args: &[&str]) -> Child {
    let mut cmd = w.env.command(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    without_terminal(&mut cmd);
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"))
}

/// Waits until the fake JumpCloud's counters satisfy `done`.
fn wait_jc(w: &World, what: &str, done: impl Fn(&FakeJumpCloudStats) -> bool) {
    let waited =
        w.block_on(async { tokio::time::timeout(EVENT_DEADLINE, w.jc.wait_for_stats(done)).await });
    assert!(
        waited.is_ok(),
        "{what}: not within {EVENT_DEADLINE:?}; {:?}\nsamld log:\n{}",
        w.jc.stats(),
        w.daemon_log()
    );
}

/// Waits until the daemon holds `n` client connections, failing at once if one of
/// `waiting` exits meanwhile (it was supposed to be waiting).
fn wait_connections(w: &World, n: usize, waiting: &mut [Child]) {
    let deadline = Instant::now() + EVENT_DEADLINE;
    while w.env.accepted_connections() < n {
        for child in waiting.iter_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("a client that should be waiting exited ({status}): {err}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon holds {} connections, not {n}",
            w.env.accepted_connections()
        );
        // Pacing between looks at /proc/net/unix.
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn collect(children: Vec<Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for the client"))
        .collect()
}

#[test]
fn no_push_is_started_while_one_is_pending() {
    let w = world();
    let first = spawn(&w, "samlctl", &["login", "phone"]);
    wait_jc(&w, "the first login's push", |s| s.pushes_started == 1);

    // Everyone who could start a login asks while the push is pending: helpers (the
    // account can log in unattended) and a second `samlctl login`.
    let mut waiting: Vec<Child> = (0..10).map(|_| w.spawn_helper(&["phone"])).collect();
    waiting.push(spawn(&w, "samlctl", &["login", "phone"]));
    wait_connections(&w, 1 + waiting.len(), &mut waiting);
    // The daemon polls the pending push meanwhile; a few polls with everyone waiting give
    // any second push every chance to be sent.
    let polls = w.jc.stats().push_polls;
    wait_jc(&w, "the pending push is polled", |s| {
        s.push_polls >= polls + 3
    });
    assert_eq!(
        w.jc.stats().pushes_started,
        1,
        "a second push was sent while the first was pending"
    );

    w.jc.answer_pending_pushes(PushBehavior::AcceptAfterPolls(1));
    succeeded(
        &first.wait_with_output().unwrap(),
        "the first samlctl login",
    );
    let second = waiting.pop().unwrap();
    succeeded(
        &second.wait_with_output().unwrap(),
        "the second samlctl login",
    );
    let keys: Vec<String> = collect(waiting)
        .iter()
        .map(|out| credential_document(&w, out).access_key_id)
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "one key: {keys:?}");
    let stats = w.jc.stats();
    assert_eq!(stats.pushes_started, 1, "{stats:?}");
    assert_eq!(stats.password_posts, 1, "{stats:?}");
    assert_eq!(stats.logins, 1, "{stats:?}");
}

#[test]
fn requests_give_up_after_login_wait_and_say_so() {
    let w = world();
    let first = spawn(&w, "samlctl", &["login", "patient"]);
    wait_jc(&w, "the first login's push", |s| s.pushes_started == 1);

    // The push stays pending (for 10 minutes): without login_wait the helper would wait
    // for all of it.
    let started = Instant::now();
    let out = w.helper(&["patient"]);
    let took = started.elapsed();
    let text = failed_silently(&out, "a helper while the login waits for the push");
    assert!(
        text.contains(&format!(
            "a login or refresh for patient is taking longer than {}s (waiting for MFA?); \
             see `samlctl status patient`",
            LOGIN_WAIT.as_secs()
        )),
        "{text}"
    );
    assert!(
        took >= LOGIN_WAIT,
        "gave up after {took:?}, before login_wait"
    );
    assert!(
        took < Duration::from_secs(60),
        "gave up after {took:?}, not after login_wait"
    );

    let started = Instant::now();
    let out = w.samlctl(&["login", "patient"]);
    let took = started.elapsed();
    let text = failed(
        &out,
        "a second samlctl login while the first waits for the push",
    );
    assert!(
        text.contains("another login for patient is still running; try again shortly"),
        "{text}"
    );
    assert!(
        took >= LOGIN_WAIT,
        "gave up after {took:?}, before login_wait"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");

    // Giving up started nothing, and the first login still completes.
    assert_eq!(w.jc.stats().pushes_started, 1);
    w.jc.answer_pending_pushes(PushBehavior::AcceptAfterPolls(1));
    succeeded(
        &first.wait_with_output().unwrap(),
        "the first samlctl login",
    );
    credential_document(&w, &w.helper(&["patient"]));
}

/// A pseudo-terminal: the test types at the master, the helper has the slave as its
/// controlling terminal.
struct Pty {
    master: File,
    slave: File,
}

impl Pty {
    fn open() -> Self {
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
        // SAFETY: fcntl on descriptors just opened and owned by nothing else. Neither may be
        // inherited: the helper finds its terminal through /dev/tty only.
        unsafe {
            for fd in [master, slave] {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK);
            Pty {
                master: File::from_raw_fd(master),
                slave: File::from_raw_fd(slave),
            }
        }
    }

    /// Reads what the helper wrote to its terminal until `needle` shows up.
    fn read_until(&mut self, screen: &mut String, needle: &str) {
        let deadline = Instant::now() + EVENT_DEADLINE;
        while !screen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the terminal never showed {needle:?}: {screen:?}"
            );
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
            let mut buf = [0u8; 4096];
            while let Ok(n) = self.master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }

    fn type_line(&mut self, text: &str) {
        self.master
            .write_all(format!("{text}\n").as_bytes())
            .unwrap();
    }

    /// Starts `samld-helper ARGS` with this terminal as its controlling terminal.
    fn helper(&self, w: &World, args: &[&str]) -> Child {
        let slave = self.slave.as_raw_fd();
        let mut cmd = w.env.command("samld-helper");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setsid, ioctl and signal are async-signal-safe; the slave stays open in
        // the parent until the child has exec'd.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() == -1 || libc::ioctl(slave, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        cmd.spawn().expect("start samld-helper on the terminal")
    }
}

/// Helpers without a terminal wait for the login of the one asking on a terminal, and
/// share it. (Before the session manager of `daemon/src/manager/`, they answered "not
/// logged in" at once.)
#[test]
fn helpers_wait_for_the_one_asking_on_a_terminal() {
    let w = world();
    let mut pty = Pty::open();
    let asking = pty.helper(&w, &["desk"]);
    let mut screen = String::new();
    pty.read_until(
        &mut screen,
        &format!("JumpCloud password for {TOTP_EMAIL}: "),
    );

    // While the person is at the prompt, helpers without a terminal ask too.
    let mut waiting: Vec<Child> = (0..5).map(|_| w.spawn_helper(&["desk"])).collect();
    wait_connections(&w, 1 + waiting.len(), &mut waiting);
    for child in &mut waiting {
        assert!(child.try_wait().unwrap().is_none(), "a helper did not wait");
    }

    pty.type_line(TOTP_PASSWORD);
    pty.read_until(
        &mut screen,
        &format!("JumpCloud TOTP code for {TOTP_EMAIL}: "),
    );
    pty.type_line(TOTP_CODE);
    let first = credential_document(&w, &asking.wait_with_output().unwrap());
    for out in collect(waiting) {
        let doc = credential_document(&w, &out);
        assert_eq!(
            doc.access_key_id, first.access_key_id,
            "the one login's key"
        );
    }
    let stats = w.jc.stats();
    assert_eq!(stats.xsrf_requests, 1, "one login: {stats:?}");
    assert_eq!(
        stats.password_posts, 2,
        "password, then with the code: {stats:?}"
    );
    assert_eq!(stats.totp_accepted, 1, "{stats:?}");
    assert_eq!(stats.logins, 1, "{stats:?}");
    assert_eq!(w.sts.calls(), 1, "one STS call");
}
