//! Replacing a user's file (`~/.aws/config`, samld's config, a service unit) in one step.
//!
//! Such files are often symlinks into a dotfile repository (stow, chezmoi, yadm, home-manager).
//! Renaming a new file over the link would replace the link with a plain file and silently
//! fork the user's configuration from their repository, so the link is followed and the file
//! it points to is replaced instead, from a temp file in the target's own directory (a rename
//! is atomic only within one file system).

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The mode a written file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileMode {
    /// The mode of the file it replaces, or this one for a new file.
    KeepOr(u32),
    /// Always this one (service units must be readable whatever they were).
    Always(u32),
}

/// Symlinks followed before giving up, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// The file `path` names once every symlink on its last component is followed; `path` itself
/// when it is not a symlink (or does not exist). A dangling link resolves to where it points,
/// so writing creates the file there.
pub(crate) fn resolve_link(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = match current.parent() {
                    // A relative link is relative to the directory that holds it.
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a loop of symlinks (more than {MAX_LINKS}); fix the link",
            path.display()
        ),
    ))
}

/// Writes `contents` to a temp file beside the file `path` names (through symlinks) and
/// renames it over that file, so that readers see the old or the new file, never half of
/// one, and a symlink at `path` stays a symlink. Returns the file written.
pub(crate) fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: FileMode,
) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let target = resolve_link(path)?;
    let mode = match mode {
        FileMode::Always(mode) => mode,
        FileMode::KeepOr(default) => std::fs::metadata(&target)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(default),
    };
    let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(
        ".samlctl-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = target.with_file_name(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            // Never wider than the final mode, not even for an instant.
            .mode(mode & 0o700)
            .open(&tmp)?;
        file.write_all(contents)?;
        // After creation: the umask filtered the mode given to open.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        // The one place a user's file is replaced: this function is the policy.
        #[allow(clippy::disallowed_methods)]
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(target)
}

#[cfg(test)]
// Fixtures are written directly; only the code under test must use write_atomically.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_chain_of_links_is_followed_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        symlink("real", dir.path().join("one")).unwrap();
        symlink(dir.path().join("one"), dir.path().join("two")).unwrap();

        let written =
            write_atomically(&dir.path().join("two"), b"new", FileMode::KeepOr(0o600)).unwrap();
        assert_eq!(written, real);
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert!(
            std::fs::symlink_metadata(dir.path().join("two"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn new_files_get_the_default_mode_and_fixed_modes_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new");
        write_atomically(&path, b"x", FileMode::KeepOr(0o600)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        write_atomically(&path, b"y", FileMode::Always(0o644)).unwrap();
        assert_eq!(mode(&path), 0o644);
        // A dangling link: the file is created where it points.
        symlink("made", dir.path().join("dangling")).unwrap();
        write_atomically(&dir.path().join("dangling"), b"z", FileMode::KeepOr(0o600)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("made")).unwrap(),
            "z"
        );
    }

    #[test]
    fn a_loop_of_links_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let e = write_atomically(&dir.path().join("a"), b"x", FileMode::KeepOr(0o600))
            .unwrap_err()
            .to_string();
        assert!(e.contains("loop of symlinks"), "{e}");
    }
}
