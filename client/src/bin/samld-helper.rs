//! `samld-helper`: the AWS `credential_process` that answers from samld's memory.
//!
//! The AWS CLI and SDKs run it on every command, so it stays tiny: std, serde_json and the
//! proto crate, no argument parser, no async runtime, no TLS. Its stdout is a contract with
//! botocore and aws-config: exactly one JSON document on success and nothing at all on
//! failure. Errors go to stderr, which botocore and aws-config show verbatim in their error,
//! prefixed so the user sees where it came from.
//!
//! When the helper has a terminal (`/dev/tty`, in the foreground), it tells the daemon it
//! can answer questions: a login the daemon needs then asks for the password (hidden) and MFA
//! code there, and shows the daemon's progress ("approve the push on your phone") there too,
//! since the AWS CLI shows neither stdout nor stderr while the helper runs. Without one, the
//! daemon fails fast with the instruction to run `samlctl login`.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use samld_client::tty::{Tty, TtyPrompter};
use samld_client::{
    ClientError, ConnectOptions, NoPrompter, PromptError, SecretPrompter, describe_secret,
    timestamp,
};
use zeroize::Zeroize;

const USAGE: &str = "usage: samld-helper ACCOUNT [--role ROLE]";

const HELP: &str = "\
samld-helper: AWS credential_process helper for samld

usage: samld-helper ACCOUNT [--role ROLE]

Prints the credentials samld holds for ACCOUNT (the account name in samld's config) as the
JSON document the AWS CLI and SDKs expect. Use it in ~/.aws/config:

    [profile production]
    credential_process = samld-helper production

When samld needs you to log in first and the helper runs in a terminal, it asks for the
JumpCloud password and MFA code on the terminal (/dev/tty, even when the AWS CLI captures its
output); without a terminal it fails at once and says to run `samlctl login ACCOUNT`.

options:
  --role ROLE     a role ARN or role name (default: the account's configured role)
  -h, --help      show this help
  -V, --version   show the version

environment:
  SAMLD_SOCKET    the daemon's socket (default: $XDG_RUNTIME_DIR/samld/samld.sock)

exit status:
  0  credentials printed
  1  samld answered with an error (for example: not logged in; run `samlctl login ACCOUNT`)
  2  bad arguments
  3  samld could not be reached or understood (not running, another version, no permission)
";

/// The daemon refused; the message says why.
const EXIT_REFUSED: u8 = 1;
/// Bad arguments.
const EXIT_USAGE: u8 = 2;
/// No usable daemon.
const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Fetch {
        account: String,
        role: Option<String>,
    },
    Help,
    Version,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut account = None;
    let mut role = None;
    let mut args = args.into_iter();
    let mut only_positionals = false;
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        let value_of_role = if only_positionals {
            None
        } else if arg == "--role" {
            Some(
                args.next()
                    .ok_or("--role needs a value")?
                    .into_string()
                    .map_err(|a| format!("--role {a:?} is not valid UTF-8"))?,
            )
        } else if let Some(v) = arg.strip_prefix("--role=") {
            Some(v.to_owned())
        } else {
            match arg.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                "--" => {
                    only_positionals = true;
                    continue;
                }
                a if a.starts_with('-') && a.len() > 1 => {
                    return Err(format!("unknown option `{a}`"));
                }
                _ => None,
            }
        };
        match value_of_role {
            Some(_) if role.is_some() => return Err("--role given twice".into()),
            Some(v) if v.is_empty() => return Err("--role needs a value".into()),
            Some(v) => role = Some(v),
            None if account.is_some() => return Err(format!("unexpected argument `{arg}`")),
            None if arg.is_empty() => return Err("the account name is empty".into()),
            None => account = Some(arg),
        }
    }
    let account = account.ok_or("missing the account name")?;
    Ok(Command::Fetch { account, role })
}

fn main() -> ExitCode {
    let (account, role) = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Fetch { account, role }) => (account, role),
        Ok(Command::Help) => return print_stdout(HELP.as_bytes()),
        Ok(Command::Version) => {
            let v = format!("samld-helper {}\n", samld_proto::CRATE_VERSION);
            return print_stdout(v.as_bytes());
        }
        Err(msg) => {
            eprintln!("samld: {msg}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let tty = Tty::open();
    let mut tty_prompter = tty.as_ref().map(TtyPrompter::new);
    let prompter: &mut dyn SecretPrompter = match &mut tty_prompter {
        Some(p) => p,
        None => &mut NoPrompter,
    };
    let mut progress = |message: &str| {
        if let Some(tty) = &tty {
            // Progress is a courtesy; a terminal that went away must not fail the request.
            let _ = tty.say(&format!("samld: {message}"));
        }
    };
    let creds = match ConnectOptions::from_env()
        .map(|o| o.client_name("samld-helper"))
        .and_then(|o| o.connect())
        .and_then(|c| {
            c.get_credentials(
                &account,
                role.as_deref(),
                tty.is_some(),
                None,
                prompter,
                &mut progress,
            )
        }) {
        Ok(creds) => creds,
        Err(ClientError::Prompt {
            kind,
            error: PromptError::Cancelled,
        }) => {
            eprintln!(
                "samld: login cancelled: nothing entered for {}",
                describe_secret(kind)
            );
            return ExitCode::from(EXIT_REFUSED);
        }
        Err(e) => return fail(&e),
    };

    // The daemon promises fresh credentials; an expired set would make botocore fail with a
    // puzzling "refreshed credentials are still expired", so say plainly what happened.
    if let Some(expiry) = timestamp::parse_rfc3339(&creds.expiration)
        && expiry <= SystemTime::now()
    {
        eprintln!(
            "samld: the credentials samld holds for {account} expired at {}; run: samlctl refresh {account}",
            creds.expiration
        );
        return ExitCode::from(EXIT_REFUSED);
    }

    let mut doc = creds.to_credential_process_json();
    doc.push('\n');
    let code = print_stdout(doc.as_bytes());
    doc.zeroize();
    code
}

/// Writes all of `bytes` to stdout; a closed pipe is an error, not a panic.
fn print_stdout(bytes: &[u8]) -> ExitCode {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("samld: cannot write to stdout: {e}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

fn fail(e: &ClientError) -> ExitCode {
    // One line: botocore and aws-config paste stderr into their own error message.
    let msg = e
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("samld: {msg}");
    ExitCode::from(match e {
        ClientError::Daemon(_) | ClientError::Prompt { .. } => EXIT_REFUSED,
        _ => EXIT_UNREACHABLE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn fetch(account: &str, role: Option<&str>) -> Command {
        Command::Fetch {
            account: account.into(),
            role: role.map(Into::into),
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        // (arguments, the command they mean)
        let cases: [(&[&str], Command); 7] = [
            (&["prod"], fetch("prod", None)),
            (&["prod", "--role", "Admin"], fetch("prod", Some("Admin"))),
            (&["--role", "Admin", "prod"], fetch("prod", Some("Admin"))),
            (
                &["prod", "--role=arn:aws:iam::1:role/A"],
                fetch("prod", Some("arn:aws:iam::1:role/A")),
            ),
            (&["--", "-odd-name"], fetch("-odd-name", None)),
            (&["prod", "--help"], Command::Help),
            (&["-V"], Command::Version),
        ];
        for (args, want) in cases {
            assert_eq!(parse(args), Ok(want), "{args:?}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            &[][..],
            &["a", "b"],
            &["prod", "--role"],
            &["prod", "--role="],
            &["prod", "--role", "A", "--role", "B"],
            &["prod", "--profile", "x"],
            &["-x"],
            &[""],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
