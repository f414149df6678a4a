//! Browser sign-in (`samlctl login --browser`): a Chromium-family browser, started by
//! samlctl with a profile of samld's own, where the person signs in however their
//! organisation requires (security key, passkey, Duo, device trust). samlctl takes the SAML
//! response from the browser's POST to AWS before it leaves the machine, with the IdP's
//! cookies, and hands both to samld, which then refreshes headlessly from that session.
//!
//! samlctl starts the browser, not the daemon: the daemon may run as a service without a
//! display, and the browser belongs on the person's desktop.
//!
//! The browser is driven over the DevTools protocol on `--remote-debugging-pipe` (see
//! `pipe.rs`); the flow is in `flow.rs`.

mod find;
mod flow;
mod pipe;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use samld_proto::BrowserSignIn;

pub use find::find_browser;
pub use flow::{caught_saml_post, idp_cookies};

/// How long samlctl waits for the person to finish signing in.
pub const SIGN_IN_WAIT: Duration = Duration::from_secs(10 * 60);

/// What to open and with which browser.
#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// The account, for messages.
    pub account: String,
    /// The IdP's sign-in URL of the AWS app.
    pub url: String,
    /// The account's `browser`, if set.
    pub browser: Option<String>,
    /// The account's `browser_args`.
    pub args: Vec<String>,
}

/// Why a browser sign-in did not finish. The account is left as it was.
#[derive(Debug)]
pub enum BrowserError {
    /// No browser to start.
    NotFound(String),
    /// The profile directory or its lock could not be set up.
    Profile(String),
    /// Another browser sign-in holds the profile.
    Busy,
    /// The browser could not be started.
    Start {
        /// The browser.
        program: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The browser exited (or crashed) before the sign-in finished.
    Exited {
        /// Its exit status, if seen.
        status: Option<String>,
        /// The last lines it wrote to stderr.
        stderr: Vec<String>,
        /// What the person can do about it, when samlctl can tell.
        hint: Option<String>,
    },
    /// The person closed the window before signing in.
    ClosedByPerson,
    /// Nobody finished signing in within [`SIGN_IN_WAIT`].
    TimedOut,
    /// The browser refused a DevTools command.
    Protocol {
        /// The command.
        method: String,
        /// The browser's words.
        message: String,
    },
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(why) => f.write_str(why),
            Self::Profile(why) => write!(f, "cannot set up the browser profile: {why}"),
            Self::Busy => f.write_str(
                "another `samlctl login --browser` is running with samld's browser profile; \
                 finish signing in there (or close its window) and try again",
            ),
            Self::Start { program, error } => {
                write!(f, "cannot start the browser {}: {error}", program.display())
            }
            Self::Exited {
                status,
                stderr,
                hint,
            } => {
                f.write_str("the browser exited before the sign-in finished")?;
                if let Some(status) = status {
                    write!(f, " ({status})")?;
                }
                // The zygote's complaint that its pipe broke follows the real reason.
                let said = stderr
                    .iter()
                    .rev()
                    .find(|l| !l.contains("zygote_linux"))
                    .or(stderr.last());
                if let Some(last) = said {
                    write!(f, "; it said: {last}")?;
                }
                match hint {
                    Some(hint) => write!(f, " ({hint})"),
                    None => Ok(()),
                }
            }
            Self::ClosedByPerson => {
                f.write_str("the browser window was closed before the sign-in finished")
            }
            Self::TimedOut => write!(
                f,
                "the sign-in did not finish within {} minutes",
                SIGN_IN_WAIT.as_secs() / 60
            ),
            Self::Protocol { method, message } => {
                write!(f, "the browser refused {method}: {message}")
            }
        }
    }
}

impl std::error::Error for BrowserError {}

/// samld's browser profile: `$XDG_STATE_HOME/samld/browser` (`~/.local/state/samld/browser`),
/// or `~/Library/Application Support/samld/browser` on macOS. Never the person's own
/// browser profile: samld's holds only the IdP's session.
pub fn profile_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute());
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library/Application Support/samld/browser"));
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/state")))
        .map(|state| state.join("samld").join("browser"))
}

/// Signs in through the browser: starts it with `profile`, opens the URL, and returns the
/// SAML response and cookies once the browser posts to AWS. `progress` hears what samlctl
/// is waiting for.
pub fn sign_in(
    settings: &BrowserSettings,
    profile: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BrowserSignIn, BrowserError> {
    let program = find_browser(settings.browser.as_deref()).map_err(BrowserError::NotFound)?;
    samld_proto::prepare_private_dir(profile).map_err(|e| BrowserError::Profile(e.to_string()))?;
    let _lock = lock_profile(profile)?;
    let mut args = vec![
        "--remote-debugging-pipe".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".to_owned(),
        "--no-default-browser-check".to_owned(),
    ];
    args.extend(settings.args.iter().cloned());
    args.push("about:blank".to_owned());
    if settings
        .args
        .iter()
        .any(|a| a.starts_with("--remote-debugging-port"))
    {
        progress(
            "Warning: browser_args opens a DevTools port: while this browser runs, any local \
             user can reach it and the IdP session in it. samlctl needs no port (it uses a \
             pipe); remove the flag unless you are testing.",
        );
    }
    progress(&format!(
        "Opening {} for {} (profile {}).",
        program.display(),
        settings.account,
        profile.display()
    ));
    let mut browser =
        pipe::Browser::start(&program, &args).map_err(|error| BrowserError::Start {
            program: program.clone(),
            error,
        })?;
    let result = flow::run(
        &mut browser,
        &settings.url,
        Instant::now() + SIGN_IN_WAIT,
        progress,
    )
    .map_err(|e| match e {
        BrowserError::Exited { status, stderr, .. } => BrowserError::Exited {
            status,
            stderr,
            hint: exit_hint(&args),
        },
        other => other,
    });
    // Closed by `Browser.close` after a sign-in; killed otherwise.
    browser.finish(Duration::from_secs(5));
    result
}

/// What a person can do about a browser that would not run: the likely causes samlctl can
/// see from here, or nothing when it sees none.
fn exit_hint(args: &[String]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let headless = args.iter().any(|a| a.starts_with("--headless"));
    if root && !args.iter().any(|a| a == "--no-sandbox") {
        return Some(
            "as root, Chromium-family browsers need browser_args = [\"--no-sandbox\"]".to_owned(),
        );
    }
    let no_display = cfg!(all(unix, not(target_os = "macos")))
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none();
    if no_display && !headless {
        return Some(
            "DISPLAY and WAYLAND_DISPLAY are unset: there is no desktop here for the browser to \
             show the sign-in in; run samlctl login --browser in your desktop session (samld \
             itself may run anywhere)"
                .to_owned(),
        );
    }
    None
}

/// Holds `<profile>.lock` for the sign-in: a browser started on a profile already in use
/// hands its URL to the running one and exits, which would look like a crash.
fn lock_profile(profile: &Path) -> Result<File, BrowserError> {
    let mut name = profile.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let path = profile.with_file_name(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| BrowserError::Profile(format!("{}: {e}", path.display())))?;
    // SAFETY: flock on an open descriptor has no other precondition.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(BrowserError::Busy);
    }
    Ok(file)
}
