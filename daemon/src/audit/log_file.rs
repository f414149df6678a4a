//! The opt-in audit trail on disk (`audit_log = PATH`): the same events as the in-memory
//! record, one JSON object per line, for people who want them to survive a restart.
//!
//! The file is the user's own: created 0600, opened without following a symbolic link (a
//! link planted at the path is refused, not written through), refused when it is not a
//! regular file owned by this user, and never longer than [`MAX_BYTES`]: past that it is
//! renamed to `PATH.1` (replacing the previous one) and a new file is started, so the two
//! together hold at most twice that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use samld_proto::AuditEvent;

/// The most one audit file holds before it is rotated: about 20,000 events.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// An open audit file and its size so far.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl LogFile {
    /// Opens (or creates) the audit file at `path`, rotating at [`MAX_BYTES`].
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_with_limit(path, MAX_BYTES)
    }

    /// [`LogFile::open`] with another rotation size (tests).
    pub fn open_with_limit(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_bytes: max_bytes.max(1),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one line, rotating first when the line would take the file past
    /// its limit.
    pub fn append(&mut self, event: &AuditEvent) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = open_private(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Opens `path` for appending, creating it 0600; refuses a symbolic link, anything but a
/// regular file, and a file another user owns.
fn open_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link; samld writes the audit only to a file of its own",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to you",
                path.display(),
                meta.uid()
            ),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn event(seq: u64) -> AuditEvent {
        AuditEvent {
            seq,
            at: "2026-12-02T10:00:00Z".into(),
            kind: samld_proto::AuditKind::Logout,
            account: Some("prod".into()),
            role_arn: None,
            via: None,
            source: None,
            error: None,
            process: None,
            ancestry: vec![],
        }
    }

    #[test]
    fn lines_are_appended_to_a_private_file_and_rotated_once_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        // Room for two lines: the third starts a new file.
        let line = serde_json::to_vec(&event(1)).unwrap().len() as u64 + 1;
        let limit = 2 * line + line / 2;
        let mut log = LogFile::open_with_limit(&path, limit).unwrap();
        for seq in 1..=3 {
            log.append(&event(seq)).unwrap();
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        let seqs = |text: &str| -> Vec<u64> {
            text.lines()
                .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap().seq)
                .collect()
        };
        let mut all = seqs(&rotated);
        all.extend(seqs(&current));
        assert_eq!(all, [1, 2, 3], "rotated: {rotated}\ncurrent: {current}");
        assert!(!rotated.is_empty() && !current.is_empty());
        for text in [&current, &rotated] {
            assert!(text.len() as u64 <= limit, "{text}");
        }
        // Reopened, it appends after what is there.
        let mut again = LogFile::open_with_limit(&path, 10_000).unwrap();
        again.append(&event(4)).unwrap();
        assert_eq!(
            seqs(&std::fs::read_to_string(&path).unwrap()).last(),
            Some(&4)
        );
    }

    #[test]
    fn a_planted_symlink_is_refused_and_nothing_is_written_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("someone-elses");
        std::fs::write(&target, "theirs\n").unwrap();
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = LogFile::open(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs\n");
        let dir_err = LogFile::open(dir.path()).unwrap_err();
        assert!(!dir_err.to_string().is_empty());
    }
}
