//! Running samld under the user's service manager: systemd user units on Linux, a launchd
//! agent on macOS. Behind `samlctl daemon install|uninstall|start|stop|status`.
//!
//! - systemd: `samld.service` (with the samld path filled in) and `samld.socket` go to
//!   `$XDG_CONFIG_HOME/systemd/user/`; the socket unit is enabled, so systemd listens on
//!   `$XDG_RUNTIME_DIR/samld/samld.sock` and starts samld on the first request.
//! - launchd: `~/Library/LaunchAgents/com.samld.samld.plist`, bootstrapped into the GUI
//!   domain: samld runs from login on, and is restarted if it crashes.
//!
//! A service manager is only consulted for the socket it serves: `samlctl --socket OTHER
//! daemon stop` stops the daemon on OTHER, never the installed one.
//!
//! Every command goes through a [`CommandRunner`], so tests (and `--dry-run`) see exactly
//! what would run without a service manager.
//!
//! The environment and the commands are in [`super::env`], the unit files' text in
//! [`super::units`]; this module writes the files, runs the commands, and reads the
//! managers' answers (`systemctl show`, `launchctl print`).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::autostart::{self, AutostartError, Started};
use super::env::{
    CommandOutput, CommandRunner, EnvError, Manager, ServiceCommand, ServiceEnv, launchd_kickstart,
};
use super::units::{
    LAUNCHD_LABEL, SYSTEMD_SERVICE, SYSTEMD_SOCKET, SYSTEMD_SOCKET_UNIT, UnitError,
    render_launchd_plist, render_systemd_service,
};
use crate::files::{self, FileMode};
use crate::{ClientError, ConnectOptions};

/// How long `stop` waits for the daemon to go away after it acknowledged.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long each "is it still there?" probe of `stop` may take.
const STOP_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a service operation failed. The messages are for the user as they are.
#[derive(Debug)]
pub enum ServiceError {
    /// Something about the environment or a path makes the operation impossible.
    Invalid(String),
    /// A file could not be written, read or removed.
    Io {
        /// What was being done, with the path.
        what: String,
        /// The failure.
        source: io::Error,
    },
    /// A service-manager command failed or could not run.
    Command {
        /// The command, as typed in a shell.
        command: String,
        /// Its error output, or why it could not run.
        detail: String,
    },
    /// Talking to the daemon failed.
    Client(ClientError),
    /// Starting the daemon failed.
    Autostart(AutostartError),
    /// The daemon agreed to stop but still answers.
    StillRunning {
        /// Its pid.
        pid: u32,
        /// Its socket.
        socket: PathBuf,
    },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Invalid(m) => f.write_str(m),
            ServiceError::Io { what, source } => write!(f, "cannot {what}: {source}"),
            ServiceError::Command { command, detail } => {
                write!(f, "`{command}` failed: {detail}")
            }
            ServiceError::Client(e) => write!(f, "{e}"),
            ServiceError::Autostart(e) => write!(f, "{e}"),
            ServiceError::StillRunning { pid, socket } => write!(
                f,
                "samld (pid {pid}) agreed to stop but still answers on {} after {}s",
                socket.display(),
                STOP_WAIT.as_secs()
            ),
        }
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Io { source, .. } => Some(source),
            ServiceError::Client(e) => Some(e),
            ServiceError::Autostart(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ClientError> for ServiceError {
    fn from(e: ClientError) -> Self {
        ServiceError::Client(e)
    }
}

impl From<EnvError> for ServiceError {
    fn from(e: EnvError) -> Self {
        match e {
            EnvError::NoHome => ServiceError::Invalid(e.to_string()),
            EnvError::Command { command, detail } => ServiceError::Command { command, detail },
        }
    }
}

impl From<UnitError> for ServiceError {
    fn from(e: UnitError) -> Self {
        ServiceError::Invalid(e.to_string())
    }
}

fn output_error(source: io::Error) -> ServiceError {
    ServiceError::Io {
        what: "write the output".into(),
        source,
    }
}

/// One unit's (or job's) state as the service manager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    /// `samld.socket`, `samld.service`, `com.samld.samld`.
    pub name: String,
    /// systemd's `ActiveState` (`active`, `inactive`, `failed`, …); launchd's `state`
    /// (`running`, `not running`), or `not loaded`.
    pub state: String,
    /// systemd's `UnitFileState` (`enabled`, `disabled`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
    /// The main process, while there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// The installed service as its manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// The manager.
    pub manager: Manager,
    /// The installed files.
    pub files: Vec<PathBuf>,
    /// The units' states; empty when the manager could not be asked (see `error`).
    pub units: Vec<UnitStatus>,
    /// Why the manager could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ServiceStatus {
    /// True when systemd listens on the socket but samld does not run: connecting would
    /// start it, which a status query must not do.
    pub fn listening_but_stopped(&self) -> bool {
        let state = |name: &str| {
            self.units
                .iter()
                .find(|u| u.name == name)
                .map(|u| u.state.as_str())
        };
        self.manager == Manager::Systemd
            && state(SYSTEMD_SOCKET) == Some("active")
            && state(SYSTEMD_SERVICE).is_some_and(|s| s != "active" && s != "activating")
    }

    /// One line for `samlctl daemon status`.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!(
                "{} service installed; its state is unknown: {e}",
                self.manager
            );
        }
        let units: Vec<String> = self
            .units
            .iter()
            .map(|u| {
                let mut s = format!("{} {}", u.name, u.state);
                // "indirect" and "static" say nothing a user needs here.
                match (u.pid, u.enabled.as_deref()) {
                    (Some(pid), _) => s.push_str(&format!(" (pid {pid})")),
                    (None, Some(e @ ("enabled" | "disabled"))) => s.push_str(&format!(" ({e})")),
                    _ => {}
                }
                s
            })
            .collect();
        format!("{}: {}", self.manager, units.join(", "))
    }
}

/// The outcome of [`stop_daemon`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Nobody answered on the socket.
    NotRunning,
    /// The daemon with this pid is gone.
    Stopped {
        /// Its pid.
        pid: u32,
    },
    /// The daemon is gone and another one already answers (systemd socket activation).
    Replaced {
        /// The stopped daemon's pid.
        pid: u32,
        /// The new daemon's pid.
        new_pid: u32,
    },
}

/// Asks the daemon on `opts`' socket to stop (whatever its protocol version) and waits until
/// it no longer answers. Never starts one.
pub fn stop_daemon(opts: &ConnectOptions) -> Result<Stopped, ServiceError> {
    use samld_proto::PROTOCOL_VERSION;
    // Any version: stopping a daemon of another version is how a mismatch is resolved.
    let any = opts.clone().any_version().autostart(false);
    let client = match any.connect() {
        Ok(client) => client,
        Err(e) if e.is_not_running() => return Ok(Stopped::NotRunning),
        Err(e) => return Err(e.into()),
    };
    let pid = client.hello().pid;
    let compatible = client.hello().protocol_version == PROTOCOL_VERSION;
    match client.shutdown() {
        Ok(()) => {}
        // Another version may word its acknowledgement differently; whether it is really
        // going away is judged below by the socket, not by that answer.
        Err(ClientError::Protocol(_) | ClientError::UnexpectedResponse { .. }) if !compatible => {}
        Err(e) => return Err(e.into()),
    }

    // The acknowledgement comes before the daemon has closed its listener, so watch the
    // socket until nobody (or a different process) answers.
    let probe = any.timeout(Some(STOP_PROBE_TIMEOUT));
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        match probe.connect() {
            Err(e) if e.is_not_running() => return Ok(Stopped::Stopped { pid }),
            Ok(c) if c.hello().pid != pid => {
                return Ok(Stopped::Replaced {
                    pid,
                    new_pid: c.hello().pid,
                });
            }
            // Still there, or on its way out (refusing, timing out): keep watching.
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(ServiceError::StillRunning {
                pid,
                socket: opts.socket().to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`stop_daemon`], saying what happened on `out`.
pub fn stop_and_report(opts: &ConnectOptions, out: &mut dyn Write) -> Result<(), ServiceError> {
    let line = match stop_daemon(opts)? {
        Stopped::NotRunning => "samld is not running.".to_owned(),
        Stopped::Stopped { pid } => format!("samld (pid {pid}) stopped."),
        Stopped::Replaced { pid, new_pid } => format!(
            "samld (pid {pid}) stopped; a new samld (pid {new_pid}) already answers on {} \
             (started by systemd socket activation?)",
            opts.socket().display()
        ),
    };
    writeln!(out, "{line}").map_err(output_error)
}

/// samld's service for one environment, driving the manager through a [`CommandRunner`].
pub struct Service<'r> {
    env: ServiceEnv,
    runner: &'r mut dyn CommandRunner,
    dry_run: bool,
}

impl<'r> Service<'r> {
    /// A service for `env`, running commands through `runner`.
    pub fn new(env: ServiceEnv, runner: &'r mut dyn CommandRunner) -> Self {
        Self {
            env,
            runner,
            dry_run: false,
        }
    }

    /// With `dry_run`, `install` and `uninstall` print what they would write and run, and
    /// change nothing (queries of the manager's state still run).
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The environment in use.
    pub fn env(&self) -> &ServiceEnv {
        &self.env
    }

    /// Installs samld (the binary at `samld`) as a service and starts listening; an existing
    /// installation is updated. A samld running outside the manager on the same socket is
    /// stopped first, since the manager's samld could not listen next to it.
    pub fn install(&mut self, samld: &Path, out: &mut dyn Write) -> Result<(), ServiceError> {
        if !samld.is_absolute() {
            return Err(ServiceError::Invalid(format!(
                "the samld path {} is not absolute",
                samld.display()
            )));
        }
        match self.env.manager {
            Manager::Systemd => self.install_systemd(samld, out),
            Manager::Launchd => self.install_launchd(samld, out),
        }
    }

    fn install_systemd(&mut self, samld: &Path, out: &mut dyn Write) -> Result<(), ServiceError> {
        let Some(listen) = self.env.systemd_socket_path() else {
            return Err(ServiceError::Invalid(
                "XDG_RUNTIME_DIR is not set, so there is no systemd user session to install \
                 into (log in through a session that runs `systemd --user`)"
                    .into(),
            ));
        };
        let service = render_systemd_service(samld)?;
        let dir = self.env.systemd_unit_dir();
        // Asked first so that a machine without a systemd user manager gets no stray units.
        let units = match self.systemd_show() {
            Ok(units) => units,
            // A dry run is also for reading the units on a machine that cannot run them.
            Err(_) if self.dry_run => Vec::new(),
            Err(e) => {
                return Err(ServiceError::Invalid(format!(
                    "cannot reach the systemd user manager, so nothing was installed ({e}); \
                     without a service manager samld starts on demand whenever a client needs it"
                )));
            }
        };
        let active = |name: &str| units.iter().any(|u| u.name == name && u.state == "active");
        let (socket_active, service_active) = (active(SYSTEMD_SOCKET), active(SYSTEMD_SERVICE));
        if !socket_active {
            self.stop_unmanaged(&listen, out)?;
        }
        self.write_file(&dir.join(SYSTEMD_SERVICE), &service, out)?;
        self.write_file(&dir.join(SYSTEMD_SOCKET), SYSTEMD_SOCKET_UNIT, out)?;
        self.change(&ServiceCommand::systemctl(&["daemon-reload"]), out)?;
        self.change(
            &ServiceCommand::systemctl(&["enable", "--now", SYSTEMD_SOCKET]),
            out,
        )?;
        if !self.dry_run {
            writeln!(
                out,
                "samld is installed: systemd listens on {} and starts samld on the first request.",
                listen.display()
            )
            .map_err(output_error)?;
            if service_active {
                writeln!(
                    out,
                    "note: the running samld keeps the binary it started with; `samlctl daemon \
                     stop` lets the next request start {}",
                    samld.display()
                )
                .map_err(output_error)?;
            }
        }
        if listen != self.env.socket {
            writeln!(
                out,
                "note: this shell's clients use {}, not {}; unset SAMLD_SOCKET to use the \
                 service",
                self.env.socket.display(),
                listen.display()
            )
            .map_err(output_error)?;
        }
        Ok(())
    }

    fn install_launchd(&mut self, samld: &Path, out: &mut dyn Write) -> Result<(), ServiceError> {
        let plist_path = self.env.launchd_plist();
        let plist = render_launchd_plist(
            samld,
            &self.env.socket,
            &self.env.home,
            self.env
                .path_var
                .as_deref()
                .unwrap_or("/usr/bin:/bin:/usr/sbin:/sbin"),
        )?;
        let loaded = self.launchd_loaded();
        if !loaded {
            let socket = self.env.socket.clone();
            self.stop_unmanaged(&socket, out)?;
        }
        if loaded {
            // bootstrap refuses a job that is already loaded; take the old one down first.
            self.change(
                &ServiceCommand::new("launchctl", &["bootout", &self.env.launchd_target()]),
                out,
            )?;
        }
        self.write_file(&plist_path, &plist, out)?;
        let domain = format!("gui/{}", self.env.uid);
        self.change(
            &ServiceCommand::new(
                "launchctl",
                &["bootstrap", &domain, &plist_path.to_string_lossy()],
            ),
            out,
        )?;
        if !self.dry_run {
            writeln!(
                out,
                "samld is installed: launchd runs it from login on, on {}; it logs to {}.",
                self.env.socket.display(),
                self.env.launchd_log().display()
            )
            .map_err(output_error)?;
        }
        Ok(())
    }

    /// Stops the service and removes its files. Not installed is not an error.
    pub fn uninstall(&mut self, out: &mut dyn Write) -> Result<(), ServiceError> {
        if !self.env.is_installed() {
            writeln!(
                out,
                "samld is not installed as a {} service (no {}).",
                self.env.manager,
                self.env.service_files()[0].display()
            )
            .map_err(output_error)?;
            return Ok(());
        }
        match self.env.manager {
            Manager::Systemd => {
                self.change(
                    &ServiceCommand::systemctl(&[
                        "disable",
                        "--now",
                        SYSTEMD_SOCKET,
                        SYSTEMD_SERVICE,
                    ]),
                    out,
                )?;
                for f in self.env.service_files() {
                    self.remove_file(&f, out)?;
                }
                self.change(&ServiceCommand::systemctl(&["daemon-reload"]), out)?;
            }
            Manager::Launchd => {
                if self.launchd_loaded() {
                    self.change(
                        &ServiceCommand::new("launchctl", &["bootout", &self.env.launchd_target()]),
                        out,
                    )?;
                }
                self.remove_file(&self.env.launchd_plist(), out)?;
            }
        }
        if !self.dry_run {
            writeln!(out, "samld is uninstalled.").map_err(output_error)?;
        }
        Ok(())
    }

    /// Starts samld: through the service manager when it serves this socket, else directly
    /// (the autostart path). Already running is fine.
    pub fn start(
        &mut self,
        opts: &ConnectOptions,
        out: &mut dyn Write,
    ) -> Result<(), ServiceError> {
        let socket = opts.socket().to_owned();
        if self.env.manages_socket() {
            match self.env.manager {
                Manager::Systemd => {
                    // Type=notify: this returns once samld is ready (or failed).
                    self.change(&ServiceCommand::systemctl(&["start", SYSTEMD_SERVICE]), out)?;
                }
                Manager::Launchd => {
                    if self.launchd_loaded() {
                        launchd_kickstart(&self.env, self.runner)?;
                        writeln!(
                            out,
                            "Ran: launchctl kickstart {}",
                            self.env.launchd_target()
                        )
                        .map_err(output_error)?;
                    } else {
                        let domain = format!("gui/{}", self.env.uid);
                        let plist = self.env.launchd_plist();
                        self.change(
                            &ServiceCommand::new(
                                "launchctl",
                                &["bootstrap", &domain, &plist.to_string_lossy()],
                            ),
                            out,
                        )?;
                    }
                }
            }
        } else {
            match autostart::start_daemon(&socket).map_err(ServiceError::Autostart)? {
                Started::Spawned { pid, log } => {
                    writeln!(
                        out,
                        "Started samld (pid {pid}) on {}; it logs to {}.",
                        socket.display(),
                        log.display()
                    )
                    .map_err(output_error)?;
                    return Ok(());
                }
                Started::AlreadyRunning | Started::Launchd => {}
            }
        }
        let client = opts.clone().any_version().autostart(false).connect()?;
        writeln!(
            out,
            "samld {} is running (pid {}) on {}.",
            client.hello().daemon_version,
            client.hello().pid,
            socket.display()
        )
        .map_err(output_error)?;
        Ok(())
    }

    /// Stops samld: `systemctl --user stop` when systemd serves this socket (the socket
    /// keeps listening and starts samld again on the next request), else a `Shutdown`
    /// request (launchd does not restart a samld that exited 0).
    pub fn stop(&mut self, opts: &ConnectOptions, out: &mut dyn Write) -> Result<(), ServiceError> {
        if self.env.manager == Manager::Systemd && self.env.manages_socket() {
            self.change(&ServiceCommand::systemctl(&["stop", SYSTEMD_SERVICE]), out)?;
            writeln!(
                out,
                "samld is stopped; {SYSTEMD_SOCKET} still listens on {} and starts it again on \
                 the next request (`samlctl daemon uninstall` removes the service).",
                opts.socket().display()
            )
            .map_err(output_error)?;
            return Ok(());
        }
        stop_and_report(opts, out)
    }

    /// The service's state, when a service manager serves this socket; `None` otherwise.
    pub fn status(&mut self) -> Option<ServiceStatus> {
        if !self.env.manages_socket() {
            return None;
        }
        let (units, error) = match self.env.manager {
            Manager::Systemd => match self.systemd_show() {
                Ok(units) => (units, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            },
            Manager::Launchd => {
                let cmd = ServiceCommand::new("launchctl", &["print", &self.env.launchd_target()]);
                match self.runner.run(&cmd) {
                    Ok(o) if o.success => (vec![parse_launchctl_print(&o.stdout)], None),
                    Ok(_) => (
                        vec![UnitStatus {
                            name: LAUNCHD_LABEL.into(),
                            state: "not loaded".into(),
                            enabled: None,
                            pid: None,
                        }],
                        None,
                    ),
                    Err(e) => (Vec::new(), Some(format!("cannot run launchctl: {e}"))),
                }
            }
        };
        Some(ServiceStatus {
            manager: self.env.manager,
            files: self
                .env
                .service_files()
                .into_iter()
                .filter(|f| f.exists())
                .collect(),
            units,
            error,
        })
    }

    /// `systemctl --user show` for both units.
    fn systemd_show(&mut self) -> Result<Vec<UnitStatus>, ServiceError> {
        let cmd = ServiceCommand::systemctl(&[
            "show",
            "--property=Id,ActiveState,UnitFileState,MainPID",
            SYSTEMD_SOCKET,
            SYSTEMD_SERVICE,
        ]);
        let o = self.query(&cmd)?;
        Ok(parse_systemctl_show(&o.stdout))
    }

    fn launchd_loaded(&mut self) -> bool {
        let cmd = ServiceCommand::new("launchctl", &["print", &self.env.launchd_target()]);
        self.runner.run(&cmd).is_ok_and(|o| o.success)
    }

    /// Stops a samld that answers on `socket` although no manager runs it.
    fn stop_unmanaged(&mut self, socket: &Path, out: &mut dyn Write) -> Result<(), ServiceError> {
        let opts = ConnectOptions::new(socket)
            .any_version()
            .autostart(false)
            .timeout(Some(STOP_PROBE_TIMEOUT));
        let pid = match opts.connect() {
            Ok(c) => c.hello().pid,
            Err(e) if e.is_not_running() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if self.dry_run {
            writeln!(
                out,
                "Would stop the samld (pid {pid}) running outside {} on {}",
                self.env.manager,
                socket.display()
            )
            .map_err(output_error)?;
            return Ok(());
        }
        stop_daemon(&opts)?;
        writeln!(
            out,
            "Stopped the samld (pid {pid}) running outside {} on {}, so that {} can take the \
             socket over (log in again with `samlctl login`)",
            self.env.manager,
            socket.display(),
            self.env.manager
        )
        .map_err(output_error)
    }

    /// Runs a state-changing command, or in a dry run says it would.
    fn change(&mut self, cmd: &ServiceCommand, out: &mut dyn Write) -> Result<(), ServiceError> {
        if self.dry_run {
            return writeln!(out, "Would run: {cmd}").map_err(output_error);
        }
        self.query(cmd)?;
        writeln!(out, "Ran: {cmd}").map_err(output_error)
    }

    /// Runs a command; a non-zero exit is an error carrying its stderr.
    fn query(&mut self, cmd: &ServiceCommand) -> Result<CommandOutput, ServiceError> {
        let fail = |detail: String| ServiceError::Command {
            command: cmd.to_string(),
            detail,
        };
        let o = self
            .runner
            .run(cmd)
            .map_err(|e| fail(format!("cannot run {}: {e}", cmd.program)))?;
        if !o.success {
            let detail = o.stderr.trim();
            return Err(fail(if detail.is_empty() {
                "it exited with an error".into()
            } else {
                detail.replace('\n', "; ")
            }));
        }
        Ok(o)
    }

    /// Writes `contents` to `path` (0644, atomically), or in a dry run shows it.
    fn write_file(
        &mut self,
        path: &Path,
        contents: &str,
        out: &mut dyn Write,
    ) -> Result<(), ServiceError> {
        if self.dry_run {
            writeln!(out, "Would write {}:", path.display()).map_err(output_error)?;
            for line in contents.lines() {
                writeln!(out, "    {line}").map_err(output_error)?;
            }
            return Ok(());
        }
        write_unit_file(path, contents)?;
        writeln!(out, "Wrote {}", path.display()).map_err(output_error)
    }

    fn remove_file(&mut self, path: &Path, out: &mut dyn Write) -> Result<(), ServiceError> {
        if self.dry_run {
            return writeln!(out, "Would remove {}", path.display()).map_err(output_error);
        }
        match fs::remove_file(path) {
            Ok(()) => writeln!(out, "Removed {}", path.display()).map_err(output_error),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ServiceError::Io {
                what: format!("remove {}", path.display()),
                source,
            }),
        }
    }
}

/// Writes through a temp file and a rename, so a unit is never seen half-written (and a unit
/// symlinked from a dotfile repository stays a symlink).
fn write_unit_file(path: &Path, contents: &str) -> Result<(), ServiceError> {
    let io_err = |what: &str, source| ServiceError::Io {
        what: format!("{what} {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_err("create the directory of", e))?;
    }
    // Units must be readable by the service manager, whatever the umask or the old file said.
    files::write_atomically(path, contents.as_bytes(), FileMode::Always(0o644))
        .map_err(|e| io_err("write", e))?;
    Ok(())
}

/// `systemctl show` output: `Key=Value` lines, one blank-line-separated block per unit.
fn parse_systemctl_show(stdout: &str) -> Vec<UnitStatus> {
    stdout
        .split("\n\n")
        .filter_map(|block| {
            let get = |key: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|r| r.strip_prefix('='))
                        .map(str::to_owned)
                })
            };
            Some(UnitStatus {
                name: get("Id")?,
                state: get("ActiveState").unwrap_or_else(|| "unknown".into()),
                enabled: get("UnitFileState").filter(|s| !s.is_empty()),
                pid: get("MainPID")
                    .and_then(|p| p.parse().ok())
                    .filter(|&p| p != 0),
            })
        })
        .collect()
}

/// `launchctl print gui/UID/LABEL` output: indented `key = value` lines.
fn parse_launchctl_print(stdout: &str) -> UnitStatus {
    let get = |key: &str| {
        stdout.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(" = ")?;
            (k == key).then(|| v.trim().to_owned())
        })
    };
    UnitStatus {
        name: LAUNCHD_LABEL.into(),
        state: get("state").unwrap_or_else(|| "unknown".into()),
        enabled: None,
        pid: get("pid").and_then(|p| p.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_is_parsed_per_unit() {
        let out = "Id=samld.socket\nActiveState=active\nUnitFileState=enabled\n\n\
                   MainPID=4242\nId=samld.service\nActiveState=active\nUnitFileState=indirect\n";
        let units = parse_systemctl_show(out);
        assert_eq!(
            units,
            [
                UnitStatus {
                    name: "samld.socket".into(),
                    state: "active".into(),
                    enabled: Some("enabled".into()),
                    pid: None,
                },
                UnitStatus {
                    name: "samld.service".into(),
                    state: "active".into(),
                    enabled: Some("indirect".into()),
                    pid: Some(4242),
                },
            ]
        );
    }

    #[test]
    fn launchctl_print_state_and_pid() {
        let out = "gui/501/com.samld.samld = {\n\tactive count = 1\n\tpath = /x.plist\n\t\
                   state = running\n\n\tprogram = /usr/local/bin/samld\n\tpid = 812\n}\n";
        let u = parse_launchctl_print(out);
        assert_eq!(u.state, "running");
        assert_eq!(u.pid, Some(812));
    }
}
