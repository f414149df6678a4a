//! Where the socket lives.
//!
//! `SAMLD_SOCKET` wins; otherwise `$XDG_RUNTIME_DIR/samld/samld.sock`, which systemd makes
//! private to the user; otherwise a directory with the uid in its name under the temp dir,
//! which the daemon creates with mode 0700 (and refuses if someone else owns it).

use std::env;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Why a socket directory cannot be used. The message says what is wrong and what to do.
#[derive(Debug)]
pub struct PrivateDirError {
    dir: PathBuf,
    problem: DirProblem,
}

#[derive(Debug)]
enum DirProblem {
    /// The last component is a symlink (planted, maybe, to take over our socket).
    Symlink,
    /// Something other than a directory is in the way.
    NotADirectory,
    /// The directory belongs to another user.
    Foreign { owner: u32, me: u32 },
    /// A system call failed.
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl PrivateDirError {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What a user whose fallback directory was taken can do about it.
const USE_ANOTHER_DIR: &str = "set XDG_RUNTIME_DIR to a private directory of yours (as a login \
     session does), or SAMLD_SOCKET to a socket path in one";

impl fmt::Display for PrivateDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        match &self.problem {
            DirProblem::Symlink => write!(
                f,
                "the socket directory {dir} is a symlink, which samld never follows (another \
                 user could have planted it to receive samld's socket); remove it if it is \
                 yours, or {USE_ANOTHER_DIR}"
            ),
            DirProblem::NotADirectory => write!(
                f,
                "the socket directory {dir} exists and is not a directory; remove it if it is \
                 yours, or {USE_ANOTHER_DIR}"
            ),
            DirProblem::Foreign { owner, me } => write!(
                f,
                "the socket directory {dir} belongs to uid {owner}, not to you (uid {me}), so \
                 samld refuses to use it (another user may have created it first); \
                 {USE_ANOTHER_DIR}"
            ),
            DirProblem::Io { what, source } => {
                write!(f, "cannot {what} the socket directory {dir}: {source}")
            }
        }
    }
}

impl std::error::Error for PrivateDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            DirProblem::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Makes `dir` a directory of ours with mode 0700, for the socket (and autostart's lock):
/// creates it if missing, refuses a symlink, something else than a directory, or a directory
/// of another user, and tightens the mode of one of ours.
///
/// `dir` may sit in a directory everyone can write to (`$TMPDIR/samld-UID`), where another
/// user can create the name first. So the checks and the chmod apply to the directory
/// opened without following a link (`O_NOFOLLOW`), through its descriptor: what was checked
/// is what gets tightened, whatever happens to the name meanwhile.
pub fn prepare_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let fail = |problem| PrivateDirError {
        dir: dir.to_owned(),
        problem,
    };
    let io_fail = |what, source| fail(DirProblem::Io { what, source });
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_fail("create the parent of", e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Whatever is there is judged below, through a descriptor.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_fail("create", e)),
    }
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir);
    let handle = match opened {
        Ok(handle) => handle,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            // Only for the message: the refusal does not depend on this second look.
            let is_link = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            return Err(fail(if is_link {
                DirProblem::Symlink
            } else {
                DirProblem::NotADirectory
            }));
        }
        Err(e) => return Err(io_fail("open", e)),
    };
    let meta = handle.metadata().map_err(|e| io_fail("inspect", e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(fail(DirProblem::Foreign {
            owner: meta.uid(),
            me,
        }));
    }
    if meta.mode() & 0o7777 != 0o700 {
        handle
            .set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(|e| io_fail("tighten", e))?;
    }
    Ok(())
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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn temp_dir(name: &str) -> PathBuf {
        // No tempfile here: the crate stays light. The pid keeps parallel runs apart.
        let dir = env::temp_dir().join(format!("samld-proto-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn private_dir_is_created_and_tightened() {
        let root = temp_dir("tighten");
        let dir = root.join("a").join("samld");
        prepare_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_left_alone() {
        let root = temp_dir("symlink");
        let target = root.join("target");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = root.join("samld-1000");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = prepare_private_dir(&link).unwrap_err().to_string();
        assert!(
            e.contains("is a symlink") && e.contains("SAMLD_SOCKET"),
            "{e}"
        );
        assert_eq!(mode(&target), 0o755);
        // A dangling link too (the target would be created through it).
        let dangling = root.join("dangling");
        std::os::unix::fs::symlink(root.join("nowhere"), &dangling).unwrap();
        let e = prepare_private_dir(&dangling).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
        assert!(!root.join("nowhere").exists());
        // A file in the way.
        let file = root.join("file");
        fs::write(&file, "").unwrap();
        let e = prepare_private_dir(&file).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        let root = (unsafe { libc::geteuid() } == 0).then(|| temp_dir("foreign"));
        let dir = match &root {
            Some(root) => {
                let dir = root.join("samld-0");
                fs::create_dir(&dir).unwrap();
                std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
                dir
            }
            // Not root: the root directory is someone else's.
            None => PathBuf::from("/"),
        };
        let before = mode(&dir);
        let e = prepare_private_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("not to you"), "{e}");
        assert_eq!(
            mode(&dir),
            before,
            "another user's directory is not chmodded"
        );
        if let Some(root) = root {
            fs::remove_dir_all(root).unwrap();
        }
    }

    #[test]
    fn dir_of_socket() {
        assert_eq!(socket_dir_for(Path::new("/a/b/c.sock")), Path::new("/a/b"));
        assert_eq!(socket_dir_for(Path::new("c.sock")), Path::new("."));
    }
}
