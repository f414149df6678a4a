//! Starting samld on demand, when a client finds nobody on the socket.
//!
//! [`ConnectOptions::connect`](crate::ConnectOptions::connect) calls [`start_daemon`] only
//! after its first `connect(2)` failed with "no such file" or "connection refused", so the
//! helper's fast path is untouched. What happens then:
//!
//! - If systemd's `samld.socket` is enabled for this socket path, nothing is started: systemd
//!   owns the path, and a second listener would fight it. The error says how to look.
//! - On macOS, if the launchd agent serves this socket, launchd is asked to start it.
//! - Otherwise `samld --socket PATH` is started in its own session with stdio detached and
//!   stderr appended to [`log_path`], and we wait for its `READY=1` on a `NOTIFY_SOCKET` of
//!   ours: real readiness (the listener is bound), bounded by [`READY_TIMEOUT`].
//!
//! Ten clients failing at once must start one daemon, so the whole decision runs under an
//! exclusive `flock` on `<socket>.lock` in the socket's private directory: the first client
//! spawns; the others block on the lock and, once they hold it, find the daemon answering.
//! A daemon started by hand in the meantime makes ours exit non-zero (samld refuses to start
//! when another answers); that counts as success if the socket now answers.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use samld_proto::{PrivateDirError, prepare_private_dir, socket_dir_for};

use super::env::{ServiceEnv, SystemRunner, launchd_kickstart};

/// Set to `1` to turn autostart off (the tests' fixtures do, and so can scripts that want a
/// plain "not running" error).
pub const NO_AUTOSTART_ENV: &str = "SAMLD_NO_AUTOSTART";

/// How long a started samld may take to announce that it serves the socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A log that grew past this is moved to `samld.log.old` before the next autostart, so an
/// autostarted daemon never fills the disk over months of use.
const LOG_ROTATE_BYTES: u64 = 8 << 20;

/// Credential variables a client may carry (`samlctl exec` sets them) that have no business
/// in the environment of a long-lived daemon.
const SCRUBBED_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    // Socket activation is for the process systemd started, not for its children.
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// True unless [`NO_AUTOSTART_ENV`] is `1`.
pub fn enabled_by_env() -> bool {
    std::env::var_os(NO_AUTOSTART_ENV).is_none_or(|v| v != "1")
}

/// How the daemon came to be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// It answered by the time we held the lock: another client (or the user) started it.
    AlreadyRunning,
    /// We started it and it announced readiness.
    Spawned {
        /// Its process id.
        pid: u32,
        /// Where its log goes.
        log: PathBuf,
    },
    /// launchd started its agent, which now answers.
    Launchd,
}

/// Why samld could not be started. The messages say what to do, and where the log is.
#[derive(Debug)]
pub enum AutostartError {
    /// systemd's `samld.socket` is enabled for this path but nothing listens on it.
    ManagedBySystemd {
        /// The socket.
        socket: PathBuf,
    },
    /// No `samld` next to this program or in `PATH`.
    NoBinary {
        /// The program whose directory was searched first.
        exe: Option<PathBuf>,
    },
    /// The socket directory is unsafe (a symlink, another user's) or cannot be made.
    SocketDir(PrivateDirError),
    /// The lock, notify socket or log could not be set up.
    Setup {
        /// What was being done, with the path.
        what: String,
        /// The failure.
        source: io::Error,
    },
    /// `samld` could not be executed.
    Spawn {
        /// The binary.
        program: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// samld exited before it was ready.
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// Its last log line (samld prints `samld: <error>` last).
        last_line: Option<String>,
        /// Its log.
        log: PathBuf,
    },
    /// samld did not announce readiness in time (it keeps running).
    NotReady {
        /// Its process id.
        pid: u32,
        /// Its log.
        log: PathBuf,
    },
    /// launchd was asked to start the agent but the socket does not answer.
    Launchd {
        /// The socket.
        socket: PathBuf,
        /// What launchctl said, or why we gave up.
        detail: String,
    },
}

impl fmt::Display for AutostartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutostartError::ManagedBySystemd { socket } => write!(
                f,
                "samld is not running: nothing listens on {}, which systemd's samld.socket \
                 owns, so it was not started here; see `systemctl --user status samld.socket \
                 samld.service`, and start it with `samlctl daemon start`",
                socket.display()
            ),
            AutostartError::NoBinary { exe } => {
                f.write_str("samld is not running and cannot be started: no samld binary ")?;
                if let Some(dir) = exe.as_deref().and_then(Path::parent) {
                    write!(f, "in {} or ", dir.display())?;
                }
                f.write_str("in PATH")
            }
            AutostartError::SocketDir(e) => write!(f, "cannot start samld: {e}"),
            AutostartError::Setup { what, source } => {
                write!(f, "cannot start samld: cannot {what}: {source}")
            }
            AutostartError::Spawn { program, source } => {
                write!(f, "cannot start {}: {source}", program.display())
            }
            AutostartError::Exited {
                status,
                last_line,
                log,
            } => {
                write!(f, "samld exited ({status}) before it was ready")?;
                if let Some(line) = last_line {
                    write!(f, ": {line}")?;
                }
                write!(f, " (log: {})", log.display())
            }
            AutostartError::NotReady { pid, log } => write!(
                f,
                "samld (pid {pid}) was started but did not get ready within {}s; see its log \
                 at {}",
                READY_TIMEOUT.as_secs(),
                log.display()
            ),
            AutostartError::Launchd { socket, detail } => write!(
                f,
                "launchd did not bring samld up on {}: {detail}; see ~/Library/Logs/samld.log",
                socket.display()
            ),
        }
    }
}

impl std::error::Error for AutostartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AutostartError::Setup { source, .. } | AutostartError::Spawn { source, .. } => {
                Some(source)
            }
            AutostartError::SocketDir(e) => Some(e),
            _ => None,
        }
    }
}

/// Makes a daemon answer on `socket`: leaves it to systemd, asks launchd, or starts
/// `samld --socket socket` and waits for its readiness. Safe to call from many processes at
/// once: one of them starts the daemon.
pub fn start_daemon(socket: &Path) -> Result<Started, AutostartError> {
    let env = ServiceEnv::from_env(socket.to_owned()).ok();
    if let Some(env) = &env
        && env.systemd_owns_socket()
    {
        return Err(AutostartError::ManagedBySystemd {
            socket: socket.to_owned(),
        });
    }

    let dir = socket_dir_for(socket);
    prepare_private_dir(dir).map_err(AutostartError::SocketDir)?;
    let lock_path = lock_path_for(socket);
    let _lock = lock_exclusive(&lock_path)?;
    if answers(socket) {
        return Ok(Started::AlreadyRunning);
    }
    if let Some(env) = &env
        && env.launchd_serves_socket()
        && launchd_kickstart(env, &mut SystemRunner).is_ok()
    {
        return wait_until_answers(socket).map(|()| Started::Launchd);
    }
    spawn_and_wait(socket)
}

/// The samld binary: next to the running program (where the release archive and `cargo
/// install` put it), else the first `samld` in `PATH`.
pub fn find_samld() -> Result<PathBuf, AutostartError> {
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_deref()
        .and_then(Path::parent)
        .map(|dir| dir.join("samld"));
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        // A relative PATH entry would make the daemon depend on the caller's directory.
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("samld"));
    beside
        .into_iter()
        .chain(in_path)
        .find(|p| is_executable(p))
        .ok_or(AutostartError::NoBinary { exe })
}

/// Where an autostarted samld logs: `~/Library/Logs/samld.log` on macOS (as the launchd
/// agent), else `$XDG_STATE_HOME/samld/samld.log` (`~/.local/state/samld/samld.log`);
/// without a home, next to the socket.
pub fn log_path(socket: &Path) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute());
    if cfg!(target_os = "macos")
        && let Some(home) = &home
    {
        return home.join("Library/Logs/samld.log");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/state")));
    match state {
        Some(state) => state.join("samld").join("samld.log"),
        None => socket_dir_for(socket).join("samld.log"),
    }
}

/// `<socket>.lock`, in the socket's private directory.
fn lock_path_for(socket: &Path) -> PathBuf {
    let mut name = socket.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    socket.with_file_name(name)
}

fn setup(what: impl Into<String>) -> impl FnOnce(io::Error) -> AutostartError {
    let what = what.into();
    move |source| AutostartError::Setup { what, source }
}

/// Opens (creating, 0600) and exclusively locks `path`; the lock goes with the file.
fn lock_exclusive(path: &Path) -> Result<File, AutostartError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(setup(format!("open the lock file {}", path.display())))?;
    // Blocking is bounded: the holder is another client, which gives up after
    // READY_TIMEOUT, and the kernel drops the lock if it dies.
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(setup(format!("lock {}", path.display()))(e));
        }
    }
}

/// Does anything accept connections on `socket`?
fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Starts samld and waits for `READY=1`, or for it to exit, or for the deadline.
fn spawn_and_wait(socket: &Path) -> Result<Started, AutostartError> {
    let samld = find_samld()?;
    let log = log_path(socket);
    let (log_file, log_start) = open_log(&log)?;

    // In the socket's 0700 directory, so only we can send to it; the pid keeps two sockets
    // of one directory apart, and we hold the lock, so a leftover file is ours to replace.
    let notify_path = socket_dir_for(socket).join(format!(".notify-{}", std::process::id()));
    let _ = fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).map_err(setup(format!(
        "listen for readiness on {}",
        notify_path.display()
    )))?;
    let _remove_notify = RemoveOnDrop(&notify_path);

    let mut cmd = Command::new(&samld);
    cmd.arg("--socket")
        .arg(socket)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        // Not the caller's directory: the daemon must not keep a mount busy.
        .current_dir("/");
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own: no controlling terminal, so neither the terminal's
            // SIGHUP nor a Ctrl-C aimed at the AWS CLI reaches the daemon.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| AutostartError::Spawn {
        program: samld.clone(),
        source,
    })?;
    wait_ready(socket, &notify, child, &log, log_start)
}

fn wait_ready(
    socket: &Path,
    notify: &UnixDatagram,
    mut child: Child,
    log: &Path,
    log_start: u64,
) -> Result<Started, AutostartError> {
    let pid = child.id();
    // The datagram wakes us the moment it arrives; the timeout only bounds how late an
    // early exit is noticed.
    notify
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(setup("set a timeout on the readiness socket"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        match notify.recv(&mut buf) {
            Ok(n) if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") => {
                // Not waited for: the daemon outlives us and is reparented when we exit.
                drop(child);
                return Ok(Started::Spawned {
                    pid,
                    log: log.to_owned(),
                });
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(setup("read the readiness socket")(e)),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Someone started a daemon outside the lock (by hand, or systemd): ours lost.
            if answers(socket) {
                return Ok(Started::AlreadyRunning);
            }
            return Err(AutostartError::Exited {
                status,
                last_line: last_log_line(log, log_start),
                log: log.to_owned(),
            });
        }
        if Instant::now() >= deadline {
            return Err(AutostartError::NotReady {
                pid,
                log: log.to_owned(),
            });
        }
    }
}

/// Opens the log for appending (dir 0700, file 0600), moving an oversized one aside first;
/// returns it with its current length, where this daemon's lines begin.
fn open_log(log: &Path) -> Result<(File, u64), AutostartError> {
    if let Some(dir) = log.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(setup(format!("create the log directory {}", dir.display())))?;
    }
    if fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = OsString::from(log.as_os_str());
        old.push(".old");
        // samld's own log, not a user's file: rotated in place, no backup wanted.
        #[allow(clippy::disallowed_methods)]
        let _ = fs::rename(log, old);
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(setup(format!("open the log {}", log.display())))?;
    let start = file
        .metadata()
        .map_err(setup(format!("inspect the log {}", log.display())))?
        .len();
    Ok((file, start))
}

/// The last non-empty line samld wrote after `start`, for the error message.
fn last_log_line(log: &Path, start: u64) -> Option<String> {
    let mut file = File::open(log).ok()?;
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut text = String::new();
    // A failing daemon writes a few lines; the cap keeps a runaway log from being read whole.
    file.take(64 << 10).read_to_string(&mut text).ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Waits for the socket to accept connections (launchd gives no readiness signal of ours).
fn wait_until_answers(socket: &Path) -> Result<(), AutostartError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !answers(socket) {
        if Instant::now() >= deadline {
            return Err(AutostartError::Launchd {
                socket: socket.to_owned(),
                detail: format!("no answer within {}s", READY_TIMEOUT.as_secs()),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

#[cfg(test)]
// Fixtures are written directly; only the code under test must use write_atomically.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn lock_sits_next_to_the_socket() {
        assert_eq!(
            lock_path_for(Path::new("/run/user/1/samld/samld.sock")),
            Path::new("/run/user/1/samld/samld.sock.lock")
        );
    }

    #[test]
    fn last_log_line_reads_only_this_runs_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("samld.log");
        fs::write(&log, "old run: samld: old error\n").unwrap();
        let start = fs::metadata(&log).unwrap().len();
        assert_eq!(last_log_line(&log, start), None);
        fs::write(
            &log,
            "old run: samld: old error\nINFO starting\nsamld: cannot listen\n\n",
        )
        .unwrap();
        assert_eq!(
            last_log_line(&log, start).as_deref(),
            Some("samld: cannot listen")
        );
    }

    #[test]
    fn oversized_log_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("state").join("samld.log");
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        fs::write(&log, vec![b'x'; LOG_ROTATE_BYTES as usize + 1]).unwrap();
        let (_file, start) = open_log(&log).unwrap();
        assert_eq!(start, 0);
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
        let old = tmp.path().join("state").join("samld.log.old");
        assert_eq!(
            fs::metadata(old).unwrap().len(),
            LOG_ROTATE_BYTES + 1,
            "the old log is kept once"
        );
    }
}
