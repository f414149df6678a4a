//! `samlctl`: the command line for samld.
//!
//! Exit status: 0 success, 1 error, 2 bad usage; `samlctl daemon status` exits 3 when no
//! daemon runs (like `systemctl status`). Every error is one `samlctl: <message>` line on
//! stderr; results go to stdout, progress and prompts to stderr and the terminal.
//!
//! This file holds the command line (the clap definitions) and [`run`], which hands each
//! subcommand to its function:
//!
//! - [`commands`]: one function per subcommand that talks to samld or reads files;
//! - [`daemon`]: `samlctl daemon …`, through the service manager;
//! - [`render`]: the human text of the answers;
//! - [`prompt`]: the password and MFA questions of `samlctl login`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use samld_client::lifecycle::autostart;
use samld_client::{Client, ClientError, ConnectOptions, PromptError};

mod commands;
mod daemon;
mod prompt;
mod render;

/// Control samld, the JumpCloud SAML credential agent for AWS.
#[derive(Debug, Parser)]
#[command(name = "samlctl", version)]
struct Cli {
    /// The daemon's socket [default: $SAMLD_SOCKET, else $XDG_RUNTIME_DIR/samld/samld.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the daemon and its accounts: state, roles, expiry, next refresh, last error
    Status {
        /// Only this account
        account: Option<String>,
        /// Print the full report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Log in to an account (asks for the password and MFA only when JumpCloud needs them)
    Login(LoginArgs),
    /// Forget an account's session and credentials until the next `samlctl login` (a password
    /// saved with --save-password stays: `samlctl password forget ACCOUNT` removes it)
    Logout {
        /// The account to log out
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        account: Option<String>,
        /// Log out every account
        #[arg(long)]
        all: bool,
    },
    /// Manage the password saved in the OS keyring by `samlctl login --save-password`
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Fetch fresh AWS credentials for an account now
    Refresh {
        /// The account to refresh
        account: String,
    },
    /// List the roles an account's JumpCloud app offers
    Roles {
        /// The account
        account: String,
        /// Print the roles as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show who got which credentials: samld's record of hand-outs, logins, logouts and
    /// refreshes (kept in memory, the last 1,000 events)
    Audit {
        /// Only this account (adds a count of hand-outs per program)
        account: Option<String>,
        /// Only the events of the last DURATION, e.g. 1h or 30m [default: all kept events]
        #[arg(long, value_name = "DURATION", value_parser = since_duration)]
        since: Option<(std::time::Duration, String)>,
        /// Print one JSON object per event and line
        #[arg(long)]
        json: bool,
        /// Keep printing new events as they happen, until samld stops or Ctrl-C
        #[arg(long)]
        follow: bool,
    },
    /// Work with the configuration file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run samld: install it as a service, start, stop, or check on it
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Run a command with AWS credentials that stay fresh while it runs
    ///
    /// If samld stops while the command runs, its credentials stop with it and the command
    /// is ended (SIGTERM, then SIGKILL after 5 s); samlctl then exits with status 1.
    Exec(ExecArgs),
    /// Print shell commands that export AWS credentials (eval "$(samlctl env ACCOUNT)")
    Env {
        /// The account
        account: String,
        /// A role ARN or role name [default: the account's role]
        #[arg(long)]
        role: Option<String>,
        /// The syntax to print
        #[arg(long, value_enum, default_value_t)]
        shell: samld_client::env::Shell,
    },
    /// Open the AWS console signed in to an account's role
    Console {
        /// The account
        account: String,
        /// A role ARN or role name [default: the account's role]
        #[arg(long)]
        role: Option<String>,
        /// Print the sign-in URL instead of opening a browser (it is valid for 15 minutes and
        /// as good as the credentials: keep it to yourself)
        #[arg(long)]
        print: bool,
        /// How long the console session lasts (15m to 12h) [default: AWS decides]
        #[arg(long, value_name = "DURATION", value_parser = console_duration)]
        duration: Option<u32>,
    },
    /// Import accounts from another tool's configuration
    #[command(subcommand)]
    Import(ImportCommand),
    /// Print the ~/.aws/config profile that gets credentials from samld (or add it there)
    AwsConfig {
        /// The account
        account: String,
        /// A role ARN or role name [default: the account's role]
        #[arg(long)]
        role: Option<String>,
        /// The AWS profile name [default: the account name]
        #[arg(long)]
        profile: Option<String>,
        /// Add the profile to $AWS_CONFIG_FILE or ~/.aws/config (keeping config.bak)
        #[arg(long)]
        write: bool,
        /// The samld config to read the account's region from [default: $SAMLD_CONFIG, else
        /// ~/.config/samld/config.toml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script (bash: `source <(samlctl completions bash)`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// The account
    account: String,
    /// A role ARN or role name [default: the account's role]
    #[arg(long)]
    role: Option<String>,
    /// Pass the credentials as AWS_ACCESS_KEY_ID etc. instead of the refreshing endpoint
    /// (they then expire with the session)
    #[arg(long = "static")]
    static_credentials: bool,
    /// Run even inside another `samlctl exec`
    #[arg(long)]
    force: bool,
    /// The command and its arguments [default: $SHELL]
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import the JumpCloud accounts of a saml2aws config
    Saml2aws {
        /// The saml2aws config [default: $SAML2AWS_CONFIGFILE, else ~/.saml2aws]
        file: Option<PathBuf>,
        /// Replace accounts that already exist in the samld config
        #[arg(long)]
        force: bool,
        /// The samld config to add to [default: $SAMLD_CONFIG, else
        /// ~/.config/samld/config.toml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

fn console_duration(text: &str) -> Result<u32, String> {
    let d = samld_config::parse_duration(text)?;
    match u32::try_from(d.as_secs()) {
        Ok(secs) if (900..=43_200).contains(&secs) => Ok(secs),
        _ => Err("a console session lasts 15m to 12h".into()),
    }
}

/// `--since`: a duration, kept with its text for the messages.
fn since_duration(text: &str) -> Result<(std::time::Duration, String), String> {
    let d = samld_config::parse_duration(text)?;
    if d.is_zero() {
        return Err("--since needs a duration longer than 0s, such as 1h or 30m".into());
    }
    Ok((d, text.to_owned()))
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The account to log in to
    account: String,
    /// A TOTP code from the authenticator app, if JumpCloud asks for one. The code is
    /// visible to other local users in the process list while samlctl runs: on a terminal
    /// leave it out and type the code at the prompt, in scripts use --mfa-code-stdin
    #[arg(long, value_name = "CODE", conflicts_with = "mfa_code_stdin")]
    mfa_code: Option<String>,
    #[command(flatten)]
    stdin: StdinSecrets,
    /// Log in with the password even if the JumpCloud session is still alive
    #[arg(long)]
    force: bool,
    /// Save the password in the OS keyring once JumpCloud accepts it, for unattended
    /// re-login (implies --force: only a password login has a password to save)
    #[arg(long)]
    save_password: bool,
    /// Sign in in a browser (Chrome, Chromium, Edge or Brave, with a profile of samld's
    /// own): for security keys, passkeys, Duo, device trust, or any SAML IdP. The default
    /// for accounts with login = "browser"
    #[arg(
        long,
        conflicts_with_all = ["mfa_code", "password_stdin", "mfa_code_stdin", "save_password"]
    )]
    browser: bool,
}

/// Which of `samlctl login`'s secrets come from stdin rather than a prompt.
#[derive(Debug, Args)]
struct StdinSecrets {
    /// Read the password from the first line of stdin, if samld needs one
    #[arg(long)]
    password_stdin: bool,
    /// Read the TOTP code from stdin instead of the command line: the first line, or the
    /// second (after the password) with --password-stdin
    #[arg(long)]
    mfa_code_stdin: bool,
}

#[derive(Debug, Subcommand)]
enum PasswordCommand {
    /// Remove an account's saved password from the OS keyring, so that samld no longer logs
    /// in with it by itself (the session and credentials stay; `samlctl logout` ends them)
    Forget {
        /// The account whose password to forget
        account: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file without a daemon; reports errors with line and column
    Check {
        /// The file to check [default: $SAMLD_CONFIG, else ~/.config/samld/config.toml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DaemonCommand {
    /// Install samld as a systemd user service (socket-activated) or a launchd agent
    Install {
        /// Print the files and commands instead of writing and running them
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop and remove the service installed by `daemon install`
    Uninstall {
        /// Print what would be removed and run, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Start samld (through the service manager if installed) and wait until it is ready
    Start,
    /// Stop samld (through the service manager if installed) and wait until it has
    Stop,
    /// Is samld running? Exits 0 if it is, 3 if not
    Status {
        /// Print the answer as JSON
        #[arg(long)]
        json: bool,
    },
}

/// An error for the user; printed as `samlctl: <message>`.
struct Failure(String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(match &e {
            ClientError::Prompt {
                kind,
                error: PromptError::Cancelled,
            } => format!("login cancelled: no {} entered", prompt::secret_noun(*kind)),
            _ => e.to_string(),
        })
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure(format!("cannot write the output: {e}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure(msg)) => {
            eprintln!("samlctl: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the subcommand through its function in [`commands`] or [`daemon`]: the exit code,
/// or the failure that `main` prints.
fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let mut out = io::stdout().lock();
    // Resolved on demand: `config check` needs no socket, so a bad SAMLD_SOCKET must not
    // stop it.
    let Cli { socket, command } = cli;
    let opts = || -> Result<ConnectOptions, Failure> {
        let socket = match &socket {
            Some(path) => path.clone(),
            None => samld_proto::default_socket_path()
                .map_err(|e| Failure(format!("cannot locate the samld socket: {e}")))?,
        };
        Ok(ConnectOptions::new(socket)
            .client_name("samlctl")
            .autostart(autostart::enabled_by_env()))
    };
    let connect = || -> Result<Client, Failure> { Ok(opts()?.connect()?) };

    match command {
        Command::Status { account, json } => {
            commands::status(connect()?, account.as_deref(), json, &mut out)?;
        }
        Command::Login(args) => commands::login(&connect, args, &mut out)?,
        Command::Logout { account, all: _ } => {
            commands::logout(connect()?, account.as_deref(), &mut out)?;
        }
        Command::Password(PasswordCommand::Forget { account }) => {
            commands::forget_password(connect()?, &account, &mut out)?;
        }
        Command::Refresh { account } => commands::refresh(connect()?, &account, &mut out)?,
        Command::Roles { account, json } => {
            commands::roles(connect()?, &account, json, &mut out)?;
        }
        Command::Audit {
            account,
            since,
            json,
            follow,
        } => {
            let args = commands::AuditArgs {
                account: account.as_deref(),
                since: since.as_ref().map(|(d, text)| (*d, text.as_str())),
                json,
                follow,
            };
            commands::audit(connect()?, &args, &mut out)?;
        }
        Command::Config(ConfigCommand::Check { config }) => {
            commands::config_check(config.as_deref(), &mut out)?;
        }
        Command::Daemon(command) => {
            return daemon::run(command, &opts()?.autostart(false), &mut out);
        }
        Command::Exec(args) => {
            drop(out);
            return commands::exec(args, opts);
        }
        Command::Env {
            account,
            role,
            shell,
        } => commands::env(connect()?, &account, role.as_deref(), shell, &mut out)?,
        Command::Console {
            account,
            role,
            print,
            duration,
        } => commands::console(
            connect()?,
            &account,
            role.as_deref(),
            print,
            duration,
            &mut out,
        )?,
        Command::Import(ImportCommand::Saml2aws {
            file,
            force,
            config,
        }) => return commands::import_saml2aws(file, force, config.as_deref(), &mut out),
        Command::AwsConfig {
            account,
            role,
            profile,
            write,
            config,
        } => commands::aws_config(
            &account,
            role.as_deref(),
            profile.as_deref(),
            write,
            config.as_deref(),
            &mut out,
        )?,
        Command::Completions { shell } => commands::completions(shell, &mut out),
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_the_command_after_its_own_options() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Exec(a) => a,
            other => panic!("{other:?}"),
        };
        let a = parse(&[
            "samlctl", "exec", "prod", "--role", "R", "--", "aws", "s3", "ls",
        ]);
        assert_eq!((a.account.as_str(), a.role.as_deref()), ("prod", Some("R")));
        assert_eq!(a.command, ["aws", "s3", "ls"]);
        let a = parse(&[
            "samlctl",
            "exec",
            "prod",
            "terraform",
            "apply",
            "--auto-approve",
        ]);
        assert_eq!(a.command, ["terraform", "apply", "--auto-approve"]);
        let a = parse(&[
            "samlctl", "exec", "--static", "prod", "--", "sh", "-c", "env",
        ]);
        assert!(a.static_credentials);
        assert_eq!(a.command, ["sh", "-c", "env"]);
        assert!(parse(&["samlctl", "exec", "prod"]).command.is_empty());
    }

    #[test]
    fn console_durations_are_bounded() {
        assert_eq!(console_duration("1h"), Ok(3600));
        assert!(console_duration("5m").is_err());
        assert!(console_duration("13h").is_err());
    }

    #[test]
    fn audit_since_takes_a_duration_and_says_what_is_wrong() {
        assert_eq!(
            since_duration("1h"),
            Ok((std::time::Duration::from_secs(3600), "1h".into()))
        );
        assert_eq!(since_duration("30m").map(|(d, _)| d.as_secs()), Ok(1800));
        let err = since_duration("yesterday").unwrap_err();
        assert!(err.starts_with("invalid duration \"yesterday\": "), "{err}");
        assert_eq!(
            since_duration("0s").unwrap_err(),
            "--since needs a duration longer than 0s, such as 1h or 30m"
        );
        let err = Cli::try_parse_from(["samlctl", "audit", "--since", "soon"]).unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
        match Cli::try_parse_from([
            "samlctl", "audit", "prod", "--since", "1h", "--json", "--follow",
        ])
        .unwrap()
        .command
        {
            Command::Audit {
                account,
                since,
                json,
                follow,
            } => {
                assert_eq!(account.as_deref(), Some("prod"));
                assert_eq!(since.map(|(d, _)| d.as_secs()), Some(3600));
                assert!(json && follow);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logout_needs_an_account_or_all_but_not_both() {
        // (command line, whether it parses)
        const CASES: &[(&[&str], bool)] = &[
            (&["samlctl", "logout"], false),
            (&["samlctl", "logout", "a", "--all"], false),
            (&["samlctl", "logout", "--all"], true),
            (&["samlctl", "logout", "a"], true),
        ];
        for &(args, ok) in CASES {
            assert_eq!(Cli::try_parse_from(args).is_ok(), ok, "{args:?}");
        }
    }
}
