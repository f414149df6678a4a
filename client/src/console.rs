//! `samlctl console`: ask the daemon for an AWS console sign-in URL and open it in the
//! browser.
//!
//! The URL works like the credentials for about 15 minutes, so it is printed only with
//! `--print` and otherwise handed straight to the browser opener.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use samld_proto::{ConsoleSignin, Request, Response, Secret};

use crate::{Client, ClientError};

/// How long an opener (`xdg-open`, `open`, `$BROWSER`) may take before it is assumed to have
/// become the browser itself, which is success.
const OPENER_GRACE: Duration = Duration::from_secs(10);

impl Client {
    /// A console sign-in URL for `role` (or the default role) of `account`;
    /// `session_duration` is the console session's length in seconds (900 to 43200), or
    /// `None` for AWS's default.
    pub fn console_url(
        self,
        account: &str,
        role: Option<&str>,
        session_duration: Option<u32>,
    ) -> Result<ConsoleSignin, ClientError> {
        let request = Request::ConsoleUrl {
            account: account.to_owned(),
            role: role.map(str::to_owned),
            session_duration,
        };
        match self.simple(&request)? {
            Response::ConsoleUrl(signin) => Ok(signin),
            other => Err(crate::unexpected("console_url", &other)),
        }
    }
}

/// Opens `url` with the first of `$BROWSER` (a `:`-separated list of commands, where `%s`
/// stands for the URL), then the platform's opener (`open` on macOS, `xdg-open` elsewhere).
pub fn open_in_browser(url: &Secret) -> Result<(), String> {
    let mut tried = Vec::new();
    let browser = std::env::var("BROWSER").unwrap_or_default();
    let mut candidates: Vec<Vec<OsString>> = browser
        .split(':')
        .filter(|c| !c.trim().is_empty())
        .map(|c| browser_command(c, url.expose()))
        .collect();
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    candidates.push(vec![opener.into(), url.expose().into()]);

    for argv in candidates {
        let name = argv[0].to_string_lossy().into_owned();
        match run_opener(&argv) {
            Ok(()) => return Ok(()),
            Err(why) => tried.push(format!("{name}: {why}")),
        }
    }
    Err(format!(
        "cannot open a browser ({}); run `samlctl console --print` and open the URL yourself",
        tried.join("; ")
    ))
}

/// One `$BROWSER` entry as argv: split on whitespace, `%s` replaced by the URL (or the URL
/// appended when there is none). No shell is involved, so the URL cannot be taken for syntax.
fn browser_command(entry: &str, url: &str) -> Vec<OsString> {
    let mut has_placeholder = false;
    let mut argv: Vec<OsString> = entry
        .split_whitespace()
        .map(|word| {
            if word.contains("%s") {
                has_placeholder = true;
                word.replace("%s", url).into()
            } else {
                word.into()
            }
        })
        .collect();
    if !has_placeholder {
        argv.push(url.into());
    }
    argv
}

fn run_opener(argv: &[OsString]) -> Result<(), String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(OPENER_GRACE) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("exited with {status}")),
        Ok(Err(e)) => Err(e.to_string()),
        // Still running: a browser started in the foreground. It has the URL.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_entries_take_the_url_as_one_argument() {
        let url = "https://x/?a=1&b=$(id)";
        assert_eq!(
            browser_command("firefox --new-window", url),
            ["firefox", "--new-window", url]
        );
        assert_eq!(
            browser_command("chromium --app=%s", url),
            [OsString::from("chromium"), format!("--app={url}").into()]
        );
    }
}
