//! Desktop notifications for the moments samld needs the user, such as a JumpCloud session
//! that ended with no way to log in again unattended.
//!
//! [`notify_user`] is fire-and-forget: it hands the work to a short-lived thread and returns
//! at once, so it may be called from async code. The notifier runs as a child process with
//! the title and body as separate arguments (never through a shell), and is killed if it
//! has not finished within [`NOTIFIER_DEADLINE`]. Where no notifier can work (no session
//! bus, no `notify-send`, an unsupported platform) it is a debug log and nothing else:
//! notifications are a courtesy, `samlctl status` and the helper's error stay the record.
//!
//! * Linux: `notify-send` (libnotify-bin), when a D-Bus session bus is reachable:
//!   `DBUS_SESSION_BUS_ADDRESS` is set, or `$XDG_RUNTIME_DIR/bus` exists.
//! * macOS: `osascript`, with the text passed as arguments of its run handler, so nothing
//!   needs escaping.
//!
//! Whether an account wants notifications at all is its `notifications` setting; callers
//! check it.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a notifier may run before it is killed.
pub const NOTIFIER_DEADLINE: Duration = Duration::from_secs(5);

/// Notifications in progress beyond this are dropped: a burst of them helps nobody, and each
/// holds a thread.
const MAX_IN_FLIGHT: usize = 4;

/// How often the waiting thread looks at the notifier; std has no wait with a timeout.
const POLL: Duration = Duration::from_millis(20);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Shows a desktop notification, if this session can show one. Never blocks and never fails:
/// problems are logged at debug level.
pub fn notify_user(title: &str, body: &str) {
    // The thread finishes on its own; nobody waits for it.
    drop(spawn_notification(title, body));
}

/// What became of one notifier process.
#[derive(Debug)]
enum Outcome {
    Exited(ExitStatus),
    Killed,
    Failed(std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    NotifySend,
    Osascript,
}

/// A notifier program and how to talk to it.
#[derive(Debug, Clone)]
struct NotifyProgram {
    program: OsString,
    flavor: Flavor,
    /// Variables the child needs beyond ours (the bus address when only the socket was found).
    env: Vec<(OsString, OsString)>,
    deadline: Duration,
}

impl NotifyProgram {
    /// The notifier for this platform and environment, or why there is none.
    fn for_this_session() -> Result<Self, String> {
        if cfg!(target_os = "macos") {
            return Ok(Self::new("osascript", Flavor::Osascript));
        }
        if !cfg!(target_os = "linux") {
            return Err("no desktop notifications on this platform".into());
        }
        let mut notifier = Self::new("notify-send", Flavor::NotifySend);
        let address = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").filter(|a| !a.is_empty());
        if address.is_none() {
            // systemd user sessions put the bus here; a daemon started outside them may not
            // have inherited the address.
            let socket = std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join("bus"))
                .filter(|p| p.exists())
                .ok_or("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")?;
            let mut value = OsString::from("unix:path=");
            value.push(socket.as_os_str());
            notifier
                .env
                .push(("DBUS_SESSION_BUS_ADDRESS".into(), value));
        }
        Ok(notifier)
    }

    fn new(program: impl Into<OsString>, flavor: Flavor) -> Self {
        Self {
            program: program.into(),
            flavor,
            env: Vec::new(),
            deadline: NOTIFIER_DEADLINE,
        }
    }

    fn command(&self, title: &str, body: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        match self.flavor {
            Flavor::NotifySend => {
                // Most notification servers read the body as markup; the summary never is.
                cmd.args(["--app-name=samld", "--icon=dialog-password", "--"])
                    .arg(title)
                    .arg(escape_markup(body));
            }
            Flavor::Osascript => {
                cmd.args([
                    "-e",
                    "on run argv",
                    "-e",
                    "display notification (item 2 of argv) with title (item 1 of argv)",
                    "-e",
                    "end run",
                ])
                .arg(no_leading_dash(title))
                .arg(no_leading_dash(body));
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Starts the notifier and a thread that reaps it, killing it at the deadline. `None`
    /// when too many are running already or no thread could be started.
    fn spawn(&self, title: &str, body: &str) -> Option<JoinHandle<Outcome>> {
        if IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!("too many desktop notifications in progress; dropping one");
            return None;
        }
        let mut cmd = self.command(title, body);
        let deadline = self.deadline;
        let program = self.program.clone();
        let spawned = std::thread::Builder::new()
            .name("samld-notify".into())
            .spawn(move || {
                let outcome = match cmd.spawn() {
                    Ok(child) => reap(child, deadline),
                    Err(e) => Outcome::Failed(e),
                };
                IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
                log_outcome(&program, &outcome);
                outcome
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(error = %e, "cannot start a thread for a desktop notification");
                None
            }
        }
    }
}

fn spawn_notification(title: &str, body: &str) -> Option<JoinHandle<Outcome>> {
    match NotifyProgram::for_this_session() {
        Ok(notifier) => notifier.spawn(title, body),
        Err(why) => {
            tracing::debug!(%why, %title, "no desktop notification");
            None
        }
    }
}

fn reap(mut child: Child, deadline: Duration) -> Outcome {
    let until = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Outcome::Exited(status),
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Killed;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Outcome::Failed(e),
        }
    }
}

fn log_outcome(program: &OsStr, outcome: &Outcome) {
    let program = program.to_string_lossy();
    match outcome {
        Outcome::Exited(status) if status.success() => {
            tracing::debug!(%program, "desktop notification shown");
        }
        Outcome::Exited(status) => {
            tracing::debug!(%program, %status, "desktop notifier failed");
        }
        Outcome::Killed => tracing::debug!(%program, "desktop notifier hung; killed it"),
        Outcome::Failed(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(%program, "no desktop notifier installed");
        }
        Outcome::Failed(e) => tracing::debug!(%program, error = %e, "desktop notifier failed"),
    }
}

/// The body as notification markup shows it verbatim.
fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// osascript parses its arguments with getopt, which would take a leading `-` for an option.
fn no_leading_dash(text: &str) -> String {
    if text.starts_with('-') {
        format!(" {text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests;
