//! Getting the listening socket: handed over by systemd, or bound safely by us.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use samld_proto::{Response, read_frame, socket_dir_for};

/// How the daemon got its socket; decides whether it removes the file on exit.
#[derive(Debug)]
pub enum ListenerOrigin {
    /// We bound it: the file is ours to remove.
    Bound(PathBuf),
    /// systemd handed it over: systemd owns the file and keeps listening while we are gone.
    Activated,
}

/// Why the socket could not be set up. The messages are meant for the user as they are.
#[derive(Debug)]
pub enum ListenError {
    /// Another daemon answers on the socket.
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
        /// What the other daemon said about itself, if it said hello.
        other: Option<(String, u32)>,
    },
    /// Something else went wrong, with a message that says what and where.
    Other(String),
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::AlreadyRunning { path, other } => {
                write!(f, "another samld is already running on {}", path.display())?;
                if let Some((version, pid)) = other {
                    write!(f, " (version {version}, pid {pid})")?;
                }
                write!(
                    f,
                    "; stop it with `samlctl daemon stop`, or pass --socket to run a second one elsewhere"
                )
            }
            ListenError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ListenError {}

/// The listener systemd passed with socket activation, if any (`LISTEN_PID` must be us).
///
/// Must run before any thread starts, because it clears the activation variables so that
/// the commands we run (password_command, ...) do not believe they were activated too.
pub fn take_activated_listener() -> Result<Option<StdUnixListener>, ListenError> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    // SAFETY: called at start-up, before the runtime or any other thread exists.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if !pid_matches || fds < 1 {
        return Ok(None);
    }
    const SD_LISTEN_FDS_START: i32 = 3;
    let fd = SD_LISTEN_FDS_START;
    // SAFETY: fd 3 is ours by the socket activation protocol; we check it is a Unix
    // stream listener before using it.
    let listener = unsafe {
        use std::os::fd::FromRawFd;
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let ok = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        ) == 0;
        if !ok || kind != libc::SOCK_STREAM {
            return Err(ListenError::Other(format!(
                "systemd passed fd {fd}, which is not a stream socket; check samld.socket"
            )));
        }
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        StdUnixListener::from_raw_fd(fd)
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| ListenError::Other(format!("socket from systemd: {e}")))?;
    Ok(Some(listener))
}

/// Creates the socket directory (0700, tightened if it exists), clears a stale socket left
/// by a dead daemon, refuses if a live one answers, and binds with mode 0600.
pub fn bind_socket(path: &Path) -> Result<StdUnixListener, ListenError> {
    let dir = socket_dir_for(path);
    prepare_private_dir(dir)?;

    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match probe(path) {
            Probe::Alive(other) => {
                return Err(ListenError::AlreadyRunning {
                    path: path.to_owned(),
                    other,
                });
            }
            Probe::Dead => {
                tracing::info!(socket = %path.display(), "removing a stale socket left by a previous samld");
                fs::remove_file(path).map_err(|e| {
                    ListenError::Other(format!(
                        "cannot remove the stale socket {}: {e}",
                        path.display()
                    ))
                })?;
            }
        },
        Ok(_) => {
            return Err(ListenError::Other(format!(
                "{} exists and is not a socket; move it away or choose another --socket",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ListenError::Other(format!(
                "cannot inspect {}: {e}",
                path.display()
            )));
        }
    }

    // The umask makes the socket 0600 from its first instant; the chmod is for filesystems
    // that ignore it.
    // SAFETY: umask has no preconditions; the old mask is restored right after bind.
    let old_mask = unsafe { libc::umask(0o177) };
    let bound = StdUnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old_mask) };
    let listener = bound
        .map_err(|e| ListenError::Other(format!("cannot listen on {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| {
        ListenError::Other(format!("cannot set the mode of {}: {e}", path.display()))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ListenError::Other(format!("{}: {e}", path.display())))?;
    Ok(listener)
}

/// Makes `dir` exist with mode 0700 and belong to us, refusing a symlink or a directory of
/// another user ([`samld_proto::prepare_private_dir`], shared with autostart).
pub fn prepare_private_dir(dir: &Path) -> Result<(), ListenError> {
    samld_proto::prepare_private_dir(dir).map_err(|e| ListenError::Other(e.to_string()))
}

enum Probe {
    Alive(Option<(String, u32)>),
    Dead,
}

/// Is a daemon answering on this socket? A refused connection means the file is stale.
fn probe(path: &Path) -> Probe {
    match StdUnixStream::connect(path) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let other = match read_frame::<_, Response>(&mut stream) {
                Ok(Some(Response::Hello {
                    daemon_version,
                    pid,
                    ..
                })) => Some((daemon_version, pid)),
                _ => None,
            };
            // Drain nothing more: dropping the stream closes it; the other daemon times the
            // idle connection out.
            let _ = stream.read(&mut [0u8; 0]);
            Probe::Alive(other)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Probe::Dead,
        // Permission denied and the like: somebody else's socket; do not remove it.
        Err(_) => Probe::Alive(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn binds_0600_in_a_0700_dir_and_replaces_a_stale_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("samld.sock");

        // A socket file with nobody listening, as a killed daemon leaves behind.
        drop(StdUnixListener::bind(&path).unwrap());
        assert!(path.exists());

        let listener = bind_socket(&path).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);

        // While it listens, a second bind is refused.
        match bind_socket(&path) {
            Err(ListenError::AlreadyRunning { .. }) => {}
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(listener);
    }

    #[test]
    fn refuses_a_regular_file_in_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("samld.sock");
        fs::write(&path, "not a socket").unwrap();
        let err = bind_socket(&path).unwrap_err().to_string();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
