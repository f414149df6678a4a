//! Where the configuration file is: `--config`, else `$SAMLD_CONFIG`, else the platform
//! config directory.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "SAMLD_CONFIG";

/// The platform's place for the file: `$XDG_CONFIG_HOME/samld/config.toml`, which is
/// `~/.config/samld/config.toml` on Linux, and `~/Library/Application
/// Support/samld/config.toml` on macOS. `None` when there is no home directory.
pub fn default_config_path() -> Option<PathBuf> {
    ProjectDirs::from("", "", "samld").map(|dirs| dirs.config_dir().join("config.toml"))
}

/// The configuration file to use: the `--config` argument if given, else `$SAMLD_CONFIG` if
/// set and not empty, else [`default_config_path`]. The result is absolute (relative to the
/// current directory), because the daemon watches the file's directory and names the file
/// in messages.
pub fn resolve_config_path(cli: Option<&Path>) -> Result<PathBuf, ConfigPathError> {
    resolve_config_path_from(
        cli,
        std::env::var_os(CONFIG_ENV).as_deref(),
        default_config_path,
    )
}

/// [`resolve_config_path`] with the environment passed in, for callers (and tests) that
/// must not read the process environment.
pub fn resolve_config_path_from(
    cli: Option<&Path>,
    env: Option<&OsStr>,
    default: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, ConfigPathError> {
    let (path, origin) = if let Some(path) = cli {
        (path.to_path_buf(), "--config")
    } else if let Some(value) = env.filter(|v| !v.is_empty()) {
        (PathBuf::from(value), CONFIG_ENV)
    } else {
        let path = default().ok_or(ConfigPathError::NoHome)?;
        (path, "the default")
    };
    if path.as_os_str().is_empty() {
        return Err(ConfigPathError::Empty { origin });
    }
    std::path::absolute(&path).map_err(|error| ConfigPathError::Absolute {
        path,
        message: error.to_string(),
        kind: error.kind(),
    })
}

/// The configuration file's path could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigPathError {
    /// No `--config`, no `$SAMLD_CONFIG`, and no home directory to find the default under.
    NoHome,
    /// `--config ""` (an empty `$SAMLD_CONFIG` is ignored instead).
    Empty {
        /// Where the empty path came from.
        origin: &'static str,
    },
    /// A relative path could not be made absolute (the current directory is gone).
    Absolute {
        /// The relative path.
        path: PathBuf,
        /// The OS error's text.
        message: String,
        /// The OS error's kind.
        kind: io::ErrorKind,
    },
}

impl fmt::Display for ConfigPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHome => write!(
                f,
                "cannot find the configuration file: no home directory; \
                 pass --config or set {CONFIG_ENV}"
            ),
            Self::Empty { origin } => write!(f, "the configuration path from {origin} is empty"),
            Self::Absolute { path, message, .. } => write!(
                f,
                "cannot resolve the configuration path {}: {message}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigPathError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Option<PathBuf> {
        Some(PathBuf::from("/home/a/.config/samld/config.toml"))
    }

    #[test]
    fn cli_beats_env_beats_default() {
        let env = Some(OsStr::new("/from/env.toml"));
        // (the command-line path, the environment variable, the path chosen)
        let cases = [
            (
                Some(Path::new("/from/cli.toml")),
                env,
                PathBuf::from("/from/cli.toml"),
            ),
            (None, env, PathBuf::from("/from/env.toml")),
            (None, None, default().unwrap()),
            // An empty variable counts as unset, as shells make it easy to export one by mistake.
            (None, Some(OsStr::new("")), default().unwrap()),
        ];
        for (cli, env, want) in cases {
            assert_eq!(
                resolve_config_path_from(cli, env, default),
                Ok(want),
                "{cli:?} {env:?}"
            );
        }
    }

    #[test]
    fn the_default_is_not_consulted_when_not_needed() {
        let no_home = || -> Option<PathBuf> { panic!("the default must not be computed") };
        assert!(resolve_config_path_from(Some(Path::new("/c.toml")), None, no_home).is_ok());
        assert!(resolve_config_path_from(None, Some(OsStr::new("/c.toml")), no_home).is_ok());
    }

    #[test]
    fn relative_paths_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            resolve_config_path_from(Some(Path::new("conf/samld.toml")), None, default),
            Ok(cwd.join("conf/samld.toml"))
        );
        assert_eq!(
            resolve_config_path_from(None, Some(OsStr::new("samld.toml")), default),
            Ok(cwd.join("samld.toml"))
        );
    }

    #[test]
    fn failures_explain_themselves() {
        let error = resolve_config_path_from(None, None, || None).unwrap_err();
        assert_eq!(error, ConfigPathError::NoHome);
        assert_eq!(
            error.to_string(),
            "cannot find the configuration file: no home directory; pass --config or set \
             SAMLD_CONFIG"
        );
        let error = resolve_config_path_from(Some(Path::new("")), None, default).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the configuration path from --config is empty"
        );
    }

    #[test]
    fn default_path_is_samld_config_toml_in_the_config_dir() {
        // The exact directory depends on HOME/XDG_CONFIG_HOME, which tests must not change.
        if let Some(path) = default_config_path() {
            assert!(path.is_absolute(), "{}", path.display());
            assert!(path.ends_with("samld/config.toml"), "{}", path.display());
        }
    }
}
