//! Where the socket lives.
//!
//! `SAMLD_SOCKET` wins; otherwise `$XDG_RUNTIME_DIR/samld/samld.sock`, which systemd makes
//! private to the user; otherwise a directory with the uid in its name under the temp dir,
//! which the daemon creates with mode 0700 (and refuses if someone else owns it).

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};

/// The socket path could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPathError(String);

impl fmt::Display for SocketPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SocketPathError {}

/// The socket path for this user, from the environment.
pub fn default_socket_path() -> Result<PathBuf, SocketPathError> {
    socket_path_from(
        env::var_os("SAMLD_SOCKET").map(PathBuf::from),
        env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        env::temp_dir(),
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() },
    )
}

fn socket_path_from(
    explicit: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    temp_dir: PathBuf,
    uid: u32,
) -> Result<PathBuf, SocketPathError> {
    if let Some(path) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        if path.file_name().is_none() {
            return Err(SocketPathError(format!(
                "SAMLD_SOCKET={} does not name a file",
                path.display()
            )));
        }
        return Ok(path);
    }
    // XDG says a relative XDG_RUNTIME_DIR must be ignored.
    if let Some(dir) = runtime_dir.filter(|d| d.is_absolute()) {
        return Ok(dir.join("samld").join("samld.sock"));
    }
    Ok(temp_dir.join(format!("samld-{uid}")).join("samld.sock"))
}

/// The directory that holds a socket path (created 0700 by the daemon).
pub fn socket_dir_for(socket: &Path) -> &Path {
    socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins() {
        let p = socket_path_from(
            Some("/x/y.sock".into()),
            Some("/run/user/1".into()),
            "/tmp".into(),
            1,
        );
        assert_eq!(p.unwrap(), PathBuf::from("/x/y.sock"));
    }

    #[test]
    fn runtime_dir_next() {
        let p = socket_path_from(None, Some("/run/user/1000".into()), "/tmp".into(), 1000);
        assert_eq!(p.unwrap(), PathBuf::from("/run/user/1000/samld/samld.sock"));
    }

    #[test]
    fn temp_dir_with_uid_last() {
        let p = socket_path_from(None, None, "/tmp".into(), 1000).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/samld-1000/samld.sock"));
        let p = socket_path_from(Some("".into()), Some("relative".into()), "/tmp".into(), 5);
        assert_eq!(p.unwrap(), PathBuf::from("/tmp/samld-5/samld.sock"));
    }

    #[test]
    fn dir_of_socket() {
        assert_eq!(socket_dir_for(Path::new("/a/b/c.sock")), Path::new("/a/b"));
        assert_eq!(socket_dir_for(Path::new("c.sock")), Path::new("."));
    }
}
