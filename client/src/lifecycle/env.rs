//! What the lifecycle code knows about this machine and how it talks to the service manager:
//! [`ServiceEnv`] (the manager, the home and runtime directories, the socket, and where the
//! service files go), and [`ServiceCommand`]s run through a [`CommandRunner`].
//!
//! Shared by [`super::autostart`] (which only asks whether systemd owns the socket or launchd
//! serves it, and kickstarts launchd) and [`super::service`] (the installer); it depends on
//! neither.

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Serialize;

use super::units::{LAUNCHD_LABEL, SYSTEMD_SERVICE, SYSTEMD_SOCKET, xml_escape};

/// The service managers samld can be installed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    /// systemd's per-user instance (`systemctl --user`).
    Systemd,
    /// launchd's per-user GUI domain.
    Launchd,
}

impl Manager {
    /// The manager of the platform this was built for.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Manager::Systemd => "systemd",
            Manager::Launchd => "launchd",
        })
    }
}

/// Everything the service code reads from the environment, gathered once so that tests can
/// point it at a temp dir.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// Which manager to use.
    pub manager: Manager,
    /// `$HOME`.
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub config_home: PathBuf,
    /// `$XDG_RUNTIME_DIR` (systemd's `%t`), if set.
    pub runtime_dir: Option<PathBuf>,
    /// Our uid (launchd's `gui/UID` domain).
    pub uid: u32,
    /// The socket the clients of this process use.
    pub socket: PathBuf,
    /// `$PATH`, copied into the launchd agent.
    pub path_var: Option<String>,
}

impl ServiceEnv {
    /// The environment of this process, for clients of `socket`.
    pub fn from_env(socket: PathBuf) -> Result<Self, EnvError> {
        let abs = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let home = abs("HOME").ok_or(EnvError::NoHome)?;
        Ok(Self {
            manager: Manager::native(),
            config_home: abs("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config")),
            home,
            runtime_dir: abs("XDG_RUNTIME_DIR"),
            // SAFETY: getuid has no preconditions and cannot fail.
            uid: unsafe { libc::getuid() },
            socket,
            path_var: std::env::var("PATH").ok(),
        })
    }

    /// `$XDG_CONFIG_HOME/systemd/user`.
    pub fn systemd_unit_dir(&self) -> PathBuf {
        self.config_home.join("systemd").join("user")
    }

    /// Where systemd listens once `samld.socket` runs (`%t/samld/samld.sock`).
    pub fn systemd_socket_path(&self) -> Option<PathBuf> {
        self.runtime_dir
            .as_ref()
            .map(|d| d.join("samld").join("samld.sock"))
    }

    /// `~/Library/LaunchAgents/com.samld.samld.plist`.
    pub fn launchd_plist(&self) -> PathBuf {
        self.home
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist"))
    }

    /// `~/Library/Logs/samld.log`, the agent's stderr.
    pub fn launchd_log(&self) -> PathBuf {
        self.home.join("Library/Logs/samld.log")
    }

    /// The files `install` writes.
    pub fn service_files(&self) -> Vec<PathBuf> {
        match self.manager {
            Manager::Systemd => vec![
                self.systemd_unit_dir().join(SYSTEMD_SERVICE),
                self.systemd_unit_dir().join(SYSTEMD_SOCKET),
            ],
            Manager::Launchd => vec![self.launchd_plist()],
        }
    }

    /// Are samld's service files in place?
    pub fn is_installed(&self) -> bool {
        self.service_files().iter().any(|f| f.exists())
    }

    /// Is the installed service the one serving [`ServiceEnv::socket`]?
    pub fn manages_socket(&self) -> bool {
        match self.manager {
            Manager::Systemd => {
                self.is_installed() && self.systemd_socket_path().as_ref() == Some(&self.socket)
            }
            Manager::Launchd => self.launchd_serves_socket(),
        }
    }

    /// Does systemd own the socket path, so that nobody else may listen there? True when
    /// `samld.socket` is enabled (for this user, or globally) and the socket is its path.
    /// Cheap: a few `stat`s, no D-Bus.
    pub fn systemd_owns_socket(&self) -> bool {
        self.manager == Manager::Systemd
            && self.systemd_socket_path().as_ref() == Some(&self.socket)
            && [
                self.systemd_unit_dir().join("sockets.target.wants"),
                PathBuf::from("/etc/systemd/user/sockets.target.wants"),
            ]
            .iter()
            // exists() follows the link: a dangling one is no longer enabled.
            .any(|wants| wants.join(SYSTEMD_SOCKET).exists())
    }

    /// Is the launchd agent installed for this very socket (it is pinned in the plist)?
    pub fn launchd_serves_socket(&self) -> bool {
        self.manager == Manager::Launchd
            && fs::read_to_string(self.launchd_plist()).is_ok_and(|plist| {
                xml_escape(&self.socket.to_string_lossy())
                    .is_ok_and(|s| plist.contains(&format!("<string>{s}</string>")))
            })
    }

    /// The launchd job, `gui/UID/com.samld.samld`.
    pub(super) fn launchd_target(&self) -> String {
        format!("gui/{}/{LAUNCHD_LABEL}", self.uid)
    }
}

/// A command for the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCommand {
    /// The program (`systemctl`, `launchctl`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl ServiceCommand {
    /// `program` with `args`.
    pub(super) fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// `systemctl --user` with `args`.
    pub(super) fn systemctl(args: &[&str]) -> Self {
        let mut all = vec!["--user"];
        all.extend_from_slice(args);
        Self::new("systemctl", &all)
    }
}

impl fmt::Display for ServiceCommand {
    /// As a shell would need it typed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", shell_quote(a))?;
        }
        Ok(())
    }
}

/// What a [`ServiceCommand`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// It exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs service-manager commands; tests substitute one that records and answers.
pub trait CommandRunner {
    /// Runs `command` to completion.
    fn run(&mut self, command: &ServiceCommand) -> io::Result<CommandOutput>;
}

/// Runs commands for real.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&mut self, command: &ServiceCommand) -> io::Result<CommandOutput> {
        let out = Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::null())
            .output()?;
        Ok(CommandOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Why the environment cannot be used, or a service-manager command failed. The messages
/// are for the user as they are.
#[derive(Debug)]
pub enum EnvError {
    /// `HOME` is not set, or not an absolute path.
    NoHome,
    /// A service-manager command failed or could not run.
    Command {
        /// The command, as typed in a shell.
        command: String,
        /// Its error output, or why it could not run.
        detail: String,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::NoHome => f.write_str("HOME is not set (or not an absolute path)"),
            EnvError::Command { command, detail } => write!(f, "`{command}` failed: {detail}"),
        }
    }
}

impl std::error::Error for EnvError {}

/// Asks launchd to start the agent now (no-op if it runs).
pub fn launchd_kickstart(env: &ServiceEnv, runner: &mut dyn CommandRunner) -> Result<(), EnvError> {
    let cmd = ServiceCommand::new("launchctl", &["kickstart", &env.launchd_target()]);
    match runner.run(&cmd) {
        Ok(o) if o.success => Ok(()),
        Ok(o) => Err(EnvError::Command {
            command: cmd.to_string(),
            detail: o.stderr.trim().to_owned(),
        }),
        Err(e) => Err(EnvError::Command {
            command: cmd.to_string(),
            detail: e.to_string(),
        }),
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-=@,:%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_for_printed_commands() {
        let c = ServiceCommand::new("launchctl", &["bootstrap", "gui/501", "/Users/a b/x.plist"]);
        assert_eq!(
            c.to_string(),
            "launchctl bootstrap gui/501 '/Users/a b/x.plist'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
