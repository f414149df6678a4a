//! Running the real binaries in a temp dir: `samld` with its socket, config and XDG dirs
//! pointed into the dir, and `samlctl`/`samld-helper` talking to it.
//!
//! Readiness is the daemon's own `READY=1` on `$NOTIFY_SOCKET` (the systemd protocol), so
//! tests never sleep and hope.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The directory of the workspace's binaries (`target/<profile>`): the running executable's
/// own directory, or its parent for a test executable in `deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Where one of the workspace's binaries is (see [`bin_dir`]).
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace` (which builds every binary)",
        path.display()
    );
    path
}

/// An isolated home for one daemon: socket, config, runtime and config dirs, all inside a
/// temp dir that disappears with it.
pub struct TestEnv {
    dir: tempfile::TempDir,
    /// The socket path (`SAMLD_SOCKET`).
    pub socket: PathBuf,
    /// The config path (`SAMLD_CONFIG`).
    pub config: PathBuf,
    /// Extra environment for every process started from this env.
    pub extra_env: Vec<(String, String)>,
    /// Variables of this env's own environment left out (to test the fallbacks when, say,
    /// `XDG_RUNTIME_DIR` is not set).
    pub removed_env: Vec<String>,
}

impl TestEnv {
    /// A fresh env with `config_toml` written as the config file.
    pub fn new(config_toml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("samld-test-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("run").join("samld").join("samld.sock");
        let config = dir.path().join("config").join("samld").join("config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, config_toml).unwrap();
        Self {
            dir,
            socket,
            config,
            extra_env: Vec::new(),
            removed_env: Vec::new(),
        }
    }

    /// The temp dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command for one of the workspace's binaries, with this env's environment.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(bin_path(bin));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("SAMLD_SOCKET", &self.socket)
            .env("SAMLD_CONFIG", &self.config)
            .env("SAMLD_NO_AUTOSTART", "1")
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for k in &self.removed_env {
            cmd.env_remove(k);
        }
        cmd
    }

    /// How many client connections the daemon has accepted on this env's socket and still
    /// holds open, from `/proc/net/unix` (accepted sockets carry the listener's path and
    /// state 03, connected): the signal that a burst of clients has landed.
    pub fn accepted_connections(&self) -> usize {
        let table = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
        let path = self.socket.to_string_lossy();
        table
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() == 8 && fields[5] == "03" && fields[7] == path
            })
            .count()
    }

    /// Runs `samlctl ARGS` to completion.
    pub fn samlctl(&self, args: &[&str]) -> Output {
        self.command("samlctl")
            .args(args)
            .output()
            .expect("run samlctl")
    }

    /// Runs `samlctl ARGS` with `stdin` as its standard input.
    pub fn samlctl_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command("samlctl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn samlctl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait samlctl")
    }

    /// Runs `samld-helper ARGS` to completion.
    pub fn helper(&self, args: &[&str]) -> Output {
        self.command("samld-helper")
            .args(args)
            .output()
            .expect("run samld-helper")
    }

    /// Starts `samld` and waits for its readiness notification.
    pub fn start_daemon(&self) -> DaemonProcess {
        self.start_daemon_with(&[])
            .expect("samld did not become ready")
    }

    /// Starts `samld` with extra arguments; `Err` carries its exit status and log when it
    /// exits before becoming ready.
    pub fn start_daemon_with(&self, args: &[&str]) -> Result<DaemonProcess, (ExitStatus, String)> {
        let notify_path = self.dir.path().join(format!(
            "notify-{}.sock",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        // The level: this env's own SAMLD_LOG (a test that needs a trace log sets it in
        // `extra_env`), else SAMLD_TEST_LOG, else debug.
        let level = self
            .extra_env
            .iter()
            .find(|(k, _)| k == "SAMLD_LOG")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("SAMLD_TEST_LOG").ok())
            .unwrap_or_else(|| "debug".into());
        let mut cmd = self.command("samld");
        cmd.args(args)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("SAMLD_LOG", level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn samld");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let echo = std::env::var_os("SAMLD_TEST_ECHO").is_some();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("samld| {line}");
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        // Wait for READY=1, or for the process to exit first.
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 512];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Some(status) = child.try_wait().expect("try_wait") {
                        let _ = reader.join();
                        let log = log.lock().unwrap().clone();
                        return Err((status, log));
                    }
                    assert!(Instant::now() < deadline, "samld not ready within 30 s");
                }
            }
        }
        Ok(DaemonProcess {
            child: Some(child),
            log,
            reader: Some(reader),
        })
    }
}

/// A running `samld`; sent SIGTERM (then killed if it hangs) when dropped.
pub struct DaemonProcess {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl DaemonProcess {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    /// Waits for it to exit (after a signal or a shutdown request), with a deadline.
    pub fn wait(mut self, within: Duration) -> (ExitStatus, String) {
        let child = self.child.take().expect("running");
        let status = match wait_with_deadline(child, within) {
            Some(status) => status,
            None => panic!("samld did not exit within {within:?}; log:\n{}", self.log()),
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.log())
    }
}

/// Waits for a child on a thread so the wait can have a deadline; past it the child is
/// killed and `None` returned.
fn wait_with_deadline(mut child: Child, within: Duration) -> Option<ExitStatus> {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(within) {
        Ok(status) => status.ok(),
        Err(_) => {
            // SAFETY: kill only sends a signal to our own (not yet reaped) child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = rx.recv();
            None
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = wait_with_deadline(child, Duration::from_secs(10));
        }
    }
}

/// Makes `cmd` start in a session of its own: no controlling terminal, so a samld client
/// behaves as under an AWS tool or a service (it cannot prompt on `/dev/tty`), whatever
/// terminal the test runner has.
pub fn without_terminal(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    }
}

/// stdout of a finished command as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of a finished command as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a run succeeded and returns its stdout; the panic shows both streams.
pub fn succeeded(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts a run failed and returns its stderr; the panic shows both streams.
pub fn failed(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} should fail\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

/// [`failed`], and nothing on stdout (where the helper's credentials would go).
pub fn failed_silently(o: &Output, what: &str) -> String {
    let err = failed(o, what);
    assert!(
        o.stdout.is_empty(),
        "{what}: nothing on stdout: {}",
        stdout(o)
    );
    err
}

/// A 127.0.0.1 TCP port that refuses connections for as long as this lives: a socket bound
/// to it but never listening holds the port, so no other process can start serving on it
/// meanwhile (as one could on a port that was bound and released).
pub struct ClosedPort {
    _socket: std::os::fd::OwnedFd,
    port: u16,
}

impl ClosedPort {
    /// Binds a free port without listening on it.
    pub fn new() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor this function owns; `addr` and `len`
        // outlive the calls that write to them.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let socket = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let bound = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
            let named = libc::getsockname(fd, (&raw mut addr).cast(), &mut len);
            assert_eq!(named, 0, "getsockname: {}", std::io::Error::last_os_error());
            Self {
                _socket: socket,
                port: u16::from_be(addr.sin_port),
            }
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// `SAMLD_MOTO_URL` (without a trailing `/`): the `moto_server` that scripts/interop.sh
/// starts for the tests that need it. They are `#[ignore]`d so that a plain `cargo test`
/// does not run them; run without moto they fail here rather than pass having tested
/// nothing.
pub fn moto_url() -> String {
    match std::env::var("SAMLD_MOTO_URL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "SAMLD_MOTO_URL is not set: this test needs moto; run scripts/interop.sh (or \
             scripts/test.sh), which starts moto_server and runs it"
        ),
    }
}
