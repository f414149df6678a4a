//! `samlctl`: the command line for samld.
//!
//! Exit status: 0 success, 1 error, 2 bad usage; `samlctl daemon status` exits 3 when no
//! daemon runs (like `systemctl status`). Every error is one `samlctl: <message>` line on
//! stderr; results go to stdout, progress and prompts to stderr and the terminal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use samld_client::service::{Service, ServiceEnv, ServiceStatus, SystemRunner};
use samld_client::{
    Client, ClientError, ConnectOptions, PromptError, SecretPrompter, autostart, timestamp,
};
use samld_config::RoleArn;
use samld_proto::{
    AccountState, AccountStatus, ErrorCode, IdpSessionState, IdpSessionStatus, LoginOutcome,
    LoginRequest, PROTOCOL_VERSION, RoleInfo, RoleStatus, Secret, SecretKind, StatusReport,
};
use serde::Serialize;

/// `daemon status` when nothing answers, as `systemctl status` does for a stopped unit.
const EXIT_NOT_RUNNING: u8 = 3;

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

#[derive(Debug, Args)]
struct LoginArgs {
    /// The account to log in to
    account: String,
    /// A TOTP code from the authenticator app, if JumpCloud asks for one. The code is
    /// visible to other local users in the process list while samlctl runs: on a terminal
    /// leave it out and type the code at the prompt, in scripts use --mfa-code-stdin
    #[arg(long, value_name = "CODE", conflicts_with = "mfa_code_stdin")]
    mfa_code: Option<String>,
    /// Read the password from the first line of stdin, if samld needs one
    #[arg(long)]
    password_stdin: bool,
    /// Read the TOTP code from stdin instead of the command line: the first line, or the
    /// second (after the password) with --password-stdin
    #[arg(long)]
    mfa_code_stdin: bool,
    /// Log in with the password even if the JumpCloud session is still alive
    #[arg(long)]
    force: bool,
    /// Save the password in the OS keyring once JumpCloud accepts it, for unattended
    /// re-login (implies --force: only a password login has a password to save)
    #[arg(long)]
    save_password: bool,
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
            } => format!("login cancelled: no {} entered", secret_noun(*kind)),
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
            let report = connect()?.status(account.as_deref())?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                out.write_all(render_status(&report, SystemTime::now()).as_bytes())?;
            }
        }
        Command::Login(args) => login(connect()?, args, &mut out)?,
        Command::Logout { account, all: _ } => {
            let accounts = connect()?.logout(account.as_deref())?;
            if accounts.is_empty() {
                writeln!(out, "Nothing to log out: no account was logged in.")?;
            }
            for a in accounts {
                writeln!(out, "Logged out of {a}.")?;
            }
        }
        Command::Password(PasswordCommand::Forget { account }) => {
            let removed = connect()?.forget_password(&account).map_err(|e| match e {
                // A daemon older than this command does not know the request.
                ClientError::Daemon(w) if w.code == ErrorCode::BadRequest => Failure(format!(
                    "the running samld does not know `password forget` (it is older than \
                     this samlctl); restart it (`samlctl daemon stop`, then start it again) \
                     and retry: {}",
                    w.message
                )),
                other => Failure::from(other),
            })?;
            if removed {
                writeln!(
                    out,
                    "Removed the saved password of {account} from the OS keyring; samld will \
                     no longer log in with it by itself."
                )?;
            } else {
                writeln!(
                    out,
                    "No password was saved for {account}; nothing to forget."
                )?;
            }
        }
        Command::Refresh { account } => {
            let roles = connect()?.refresh(&account)?;
            writeln!(out, "Refreshed {account}.")?;
            out.write_all(render_role_expiry(&roles, SystemTime::now()).as_bytes())?;
        }
        Command::Roles { account, json } => {
            let roles = connect()?.roles(&account)?;
            if json {
                #[derive(Serialize)]
                struct Roles<'a> {
                    account: &'a str,
                    roles: &'a [RoleInfo],
                }
                print_json(
                    &mut out,
                    &Roles {
                        account: &account,
                        roles: &roles,
                    },
                )?;
            } else {
                out.write_all(render_roles(&roles).as_bytes())?;
            }
        }
        Command::Config(ConfigCommand::Check { config }) => {
            config_check(config.as_deref(), &mut out)?;
        }
        Command::Daemon(command) => return daemon(command, &opts()?.autostart(false), &mut out),
        Command::Exec(args) => {
            let options = samld_client::exec::ExecOptions {
                account: args.account,
                role: args.role,
                static_credentials: args.static_credentials,
                force: args.force,
                command: args.command,
            };
            if !options.static_credentials
                && let Some(warning) = samld_client::awsconfig::default_profile_warning()
            {
                eprintln!("samlctl: warning: {warning}");
            }
            drop(out);
            return match samld_client::exec::run(&opts()?, &options) {
                Ok(status) => Ok(samld_client::exec::exit_like(status)),
                Err(e) => {
                    eprintln!("samlctl: {e}");
                    Ok(ExitCode::from(e.exit_code()))
                }
            };
        }
        Command::Env {
            account,
            role,
            shell,
        } => {
            let creds = connect()?.get_credentials(
                &account,
                role.as_deref(),
                false,
                &mut samld_client::NoPrompter,
                &mut |_| {},
            )?;
            let vars = samld_client::exec::static_vars(&creds);
            out.write_all(samld_client::env::render(shell, &vars).as_bytes())?;
        }
        Command::Console {
            account,
            role,
            print,
            duration,
        } => {
            let signin = connect()?.console_url(&account, role.as_deref(), duration)?;
            if print {
                writeln!(out, "{}", signin.url.expose())?;
            } else {
                samld_client::console::open_in_browser(&signin.url).map_err(Failure)?;
                eprintln!(
                    "Opened the AWS console for {} in your browser.",
                    signin.role_arn
                );
            }
        }
        Command::Import(ImportCommand::Saml2aws {
            file,
            force,
            config,
        }) => {
            let source =
                match file.or_else(|| std::env::var_os("SAML2AWS_CONFIGFILE").map(PathBuf::from)) {
                    Some(path) => path,
                    None => std::env::var_os("HOME")
                        .map(|home| PathBuf::from(home).join(".saml2aws"))
                        .ok_or_else(|| Failure("no HOME; name the saml2aws file".into()))?,
                };
            let target = samld_config::resolve_config_path(config.as_deref())
                .map_err(|e| Failure(format!("cannot locate the config file: {e}")))?;
            let report = samld_client::import::import_saml2aws(&source, &target, force)
                .map_err(|e| Failure(e.to_string()))?;
            write!(out, "{report}")?;
            if !report.imported_any() && !report.skipped.is_empty() {
                out.flush()?;
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::AwsConfig {
            account,
            role,
            profile,
            write,
            config,
        } => {
            use samld_client::awsconfig;
            let path = samld_config::resolve_config_path(config.as_deref())
                .map_err(|e| Failure(format!("cannot locate the config file: {e}")))?;
            let samld = samld_config::load(&path).map_err(|e| Failure(format!("{e:#}")))?;
            let settings = samld.account(&account).ok_or_else(|| {
                Failure(format!(
                    "unknown account `{account}` (not in {})",
                    path.display()
                ))
            })?;
            let profile = awsconfig::Profile::new(
                &account,
                role.as_deref(),
                profile.as_deref(),
                settings.region.as_deref(),
                &awsconfig::helper_command(),
            )
            .map_err(|e| Failure(e.to_string()))?;
            if write {
                let file = awsconfig::config_file()
                    .ok_or_else(|| Failure("no HOME and no AWS_CONFIG_FILE".into()))?;
                match awsconfig::write_profile(&file, &profile)
                    .map_err(|e| Failure(e.to_string()))?
                {
                    awsconfig::WriteOutcome::Unchanged => writeln!(
                        out,
                        "{} already has [{}].",
                        file.display(),
                        profile.section()
                    )?,
                    awsconfig::WriteOutcome::Created => writeln!(
                        out,
                        "Created {} with [{}].",
                        file.display(),
                        profile.section()
                    )?,
                    awsconfig::WriteOutcome::Updated { backup } => writeln!(
                        out,
                        "Wrote [{}] to {} (the previous file is {}).",
                        profile.section(),
                        file.display(),
                        backup.display()
                    )?,
                }
            } else {
                out.write_all(profile.stanza().as_bytes())?;
            }
            if let Some(warning) = awsconfig::credentials_file()
                .and_then(|f| awsconfig::static_keys_warning(&f, &profile.name))
            {
                eprintln!("samlctl: warning: {warning}");
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "samlctl", &mut out);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn print_json(out: &mut impl Write, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|e| Failure(format!("cannot write the output: {e}")))?;
    writeln!(out)?;
    Ok(())
}

fn login(client: Client, args: LoginArgs, out: &mut impl Write) -> Result<(), Failure> {
    let tty = Tty::open();
    // A password piped in is sent with the request: samld uses a password it is given before
    // `password_command`, which may print a stale one (the user is typing the new one here).
    // Whatever feeds the pipe runs anyway, so reading it when the session lives costs nothing.
    let password = if args.password_stdin {
        match read_password_line(io::stdin().lock()) {
            Ok(password) => Some(password),
            // Nothing piped in: that is an error only if samld turns out to need a password,
            // and the prompter says so then.
            Err(PromptError::Unavailable(_)) => None,
            Err(e) => return Err(Failure(format!("--password-stdin: {e}"))),
        }
    } else {
        None
    };
    // The code follows the password, so that one pipe can carry both. Like the password, a
    // missing code is an error only if JumpCloud asks for one.
    let mfa_code = if args.mfa_code_stdin {
        read_code_line(io::stdin().lock()).map_err(|e| Failure(format!("--mfa-code-stdin: {e}")))?
    } else {
        args.mfa_code.map(Secret::from)
    };
    let mut prompter = LoginPrompter {
        password_stdin: args.password_stdin,
        stdin_used: password.is_some(),
        mfa_code_stdin: args.mfa_code_stdin.then_some(mfa_code.is_some()),
        tty,
    };
    let request = LoginRequest {
        account: args.account,
        password,
        mfa_code,
        // Whether samld may ask us at all; what we cannot answer fails with a clear message.
        interactive: prompter.tty.is_some() || args.password_stdin || args.mfa_code_stdin,
        // A reused session asks for no password, so there would be nothing to save.
        force: args.force || args.save_password,
        save_password: args.save_password,
    };
    let outcome = client.login(request, &mut prompter, &mut |msg| eprintln!("{msg}"))?;
    out.write_all(render_login(&outcome).as_bytes())?;
    Ok(())
}

/// `samlctl config check`: needs no daemon and no socket.
fn config_check(cli_path: Option<&Path>, out: &mut impl Write) -> Result<(), Failure> {
    let path = samld_config::resolve_config_path(cli_path)
        .map_err(|e| Failure(format!("cannot locate the config file: {e}")))?;
    // `{:#}` adds the offending line with a caret under the error.
    let config = samld_config::load(&path).map_err(|e| Failure(format!("{e:#}")))?;
    let names: Vec<&str> = config.accounts.keys().map(String::as_str).collect();
    match names.len() {
        0 => writeln!(
            out,
            "{}: valid, but it configures no account",
            path.display()
        )?,
        1 => writeln!(out, "{}: valid (1 account: {})", path.display(), names[0])?,
        n => writeln!(
            out,
            "{}: valid ({n} accounts: {})",
            path.display(),
            names.join(", ")
        )?,
    }
    Ok(())
}

/// `samlctl daemon …`. `opts` never autostart: these commands decide themselves.
fn daemon(
    command: DaemonCommand,
    opts: &ConnectOptions,
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    let env = ServiceEnv::from_env(opts.socket().to_owned());
    let mut runner = SystemRunner;
    // Without HOME there is no service to consult; status, start and stop still work
    // directly on the socket.
    let mut service = env.map(|env| Service::new(env, &mut runner));
    let service_error = |e: samld_client::service::ServiceError| Failure(e.to_string());
    match command {
        DaemonCommand::Install { dry_run } => {
            let samld = autostart::find_samld().map_err(|e| Failure(e.to_string()))?;
            service
                .map_err(service_error)?
                .dry_run(dry_run)
                .install(&samld, out)
                .map_err(service_error)?;
        }
        DaemonCommand::Uninstall { dry_run } => {
            service
                .map_err(service_error)?
                .dry_run(dry_run)
                .uninstall(out)
                .map_err(service_error)?;
        }
        DaemonCommand::Start => match &mut service {
            Ok(service) => service.start(opts, out).map_err(service_error)?,
            Err(_) => {
                autostart::start_daemon(opts.socket()).map_err(|e| Failure(e.to_string()))?;
                writeln!(out, "samld is running on {}.", opts.socket().display())?;
            }
        },
        DaemonCommand::Stop => match &mut service {
            Ok(service) => service.stop(opts, out).map_err(service_error)?,
            Err(_) => samld_client::service::stop_and_report(opts, out).map_err(service_error)?,
        },
        DaemonCommand::Status { json } => {
            let status = service.as_mut().ok().and_then(Service::status);
            return daemon_status(opts, status, json, out);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn daemon_status(
    opts: &ConnectOptions,
    service: Option<ServiceStatus>,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    #[derive(Serialize)]
    struct DaemonStatus<'a> {
        running: bool,
        socket: &'a Path,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        protocol_version: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<&'a ServiceStatus>,
    }
    let not_running = |mut out: &mut dyn Write, why: String| -> Result<ExitCode, Failure> {
        if json {
            print_json(
                &mut out,
                &DaemonStatus {
                    running: false,
                    socket: opts.socket(),
                    version: None,
                    pid: None,
                    protocol_version: None,
                    service: service.as_ref(),
                },
            )?;
        } else {
            writeln!(out, "{why}")?;
            if let Some(s) = &service {
                writeln!(out, "{}", s.summary())?;
            }
        }
        Ok(ExitCode::from(EXIT_NOT_RUNNING))
    };

    // Connecting to systemd's listening socket would start samld: a status query must not.
    if service
        .as_ref()
        .is_some_and(ServiceStatus::listening_but_stopped)
    {
        return not_running(
            out,
            format!(
                "samld is not running; systemd listens on {} and starts it on the first request",
                opts.socket().display()
            ),
        );
    }
    // Any version: the point of this command is to say which daemon runs, even one this
    // samlctl cannot talk to.
    let client = match opts.clone().any_version().connect() {
        Ok(client) => client,
        Err(e) if e.is_not_running() => {
            return not_running(
                out,
                format!(
                    "samld is not running (no daemon answers on {})",
                    opts.socket().display()
                ),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let hello = client.hello();
    if json {
        print_json(
            out,
            &DaemonStatus {
                running: true,
                socket: opts.socket(),
                version: Some(&hello.daemon_version),
                pid: Some(hello.pid),
                protocol_version: Some(hello.protocol_version),
                service: service.as_ref(),
            },
        )?;
    } else {
        writeln!(
            out,
            "samld {} is running (pid {}, protocol {}) on {}",
            hello.daemon_version,
            hello.pid,
            hello.protocol_version,
            opts.socket().display()
        )?;
        if let Some(s) = &service {
            writeln!(out, "{}", s.summary())?;
        }
    }
    out.flush()?;
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ClientError::VersionMismatch {
            client: "samlctl",
            daemon: hello.clone(),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

/// The controlling terminal, for prompts that must work even with stdin and stdout redirected.
struct Tty {
    file: File,
}

impl Tty {
    fn open() -> Option<Tty> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
            .map(|file| Tty { file })
    }

    /// Asks with echo (MFA codes are short-lived and not worth hiding).
    fn ask(&mut self, prompt: &str) -> Result<Secret, PromptError> {
        self.file
            .write_all(prompt.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(PromptError::Io)?;
        let mut line = String::new();
        BufReader::new(&self.file)
            .read_line(&mut line)
            .map_err(PromptError::Io)?;
        let code = line.trim();
        if code.is_empty() {
            return Err(PromptError::Cancelled);
        }
        Ok(Secret::new(code))
    }
}

/// Answers samld's questions during `samlctl login`.
struct LoginPrompter {
    password_stdin: bool,
    stdin_used: bool,
    /// With `--mfa-code-stdin`: whether stdin held a code (sent with the request).
    mfa_code_stdin: Option<bool>,
    tty: Option<Tty>,
}

impl SecretPrompter for LoginPrompter {
    fn prompt(&mut self, kind: SecretKind, prompt: &str) -> Result<Secret, PromptError> {
        let prompt = prompt_text(prompt);
        match kind {
            SecretKind::Password if self.password_stdin => {
                if self.stdin_used {
                    // A second request means JumpCloud refused the first password; reading
                    // another line would guess at what the user meant.
                    return Err(PromptError::Unavailable(
                        "samld asked for the password again, but --password-stdin supplies only one"
                            .into(),
                    ));
                }
                self.stdin_used = true;
                read_password_line(io::stdin().lock())
            }
            SecretKind::Password => {
                if self.tty.is_none() {
                    return Err(PromptError::Unavailable(
                        "samld needs the JumpCloud password, but there is no terminal to ask on; \
                         pipe it in with --password-stdin"
                            .into(),
                    ));
                }
                match rpassword::prompt_password(&prompt) {
                    Ok(p) if p.is_empty() => Err(PromptError::Cancelled),
                    Ok(p) => Ok(Secret::from(p)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(PromptError::Cancelled),
                    Err(e) => Err(PromptError::Io(e)),
                }
            }
            SecretKind::MfaCode if self.mfa_code_stdin.is_some() => {
                let line = if self.password_stdin {
                    "second line, after the password"
                } else {
                    "first line"
                };
                Err(PromptError::Unavailable(
                    if self.mfa_code_stdin == Some(true) {
                        // The code sent with the request was not enough (refused, or a second
                        // factor step asked again); another line would be a guess.
                        "samld asked for the MFA code again, but --mfa-code-stdin supplies only one"
                            .into()
                    } else {
                        format!(
                            "samld needs an MFA code, but --mfa-code-stdin found none on stdin \
                         (expected on its {line})"
                        )
                    },
                ))
            }
            SecretKind::MfaCode => match &mut self.tty {
                Some(tty) => tty.ask(&prompt),
                None => Err(PromptError::Unavailable(
                    "samld needs an MFA code, but there is no terminal to ask on; pipe it in \
                     with --mfa-code-stdin"
                        .into(),
                )),
            },
        }
    }
}

/// One line of `input`, without its line ending, as the password.
fn read_password_line(mut input: impl BufRead) -> Result<Secret, PromptError> {
    // Room for any sane password up front, so that growing the buffer leaves no copies of
    // it behind in freed memory.
    let mut line = String::with_capacity(1024);
    input.read_line(&mut line).map_err(PromptError::Io)?;
    let len = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(len);
    let secret = Secret::from(line);
    if secret.is_empty() {
        return Err(PromptError::Unavailable(
            "--password-stdin: stdin has no password (an empty first line or no input)".into(),
        ));
    }
    Ok(secret)
}

/// The next line of `input` as a TOTP code, blanks trimmed; `None` when there is no line or
/// it is empty.
fn read_code_line(mut input: impl BufRead) -> Result<Option<Secret>, PromptError> {
    let mut line = String::with_capacity(64);
    input.read_line(&mut line).map_err(PromptError::Io)?;
    // Trimmed in place, so that the only copy is the one the Secret wipes.
    line.truncate(line.trim_end().len());
    line.drain(..line.len() - line.trim_start().len());
    let code = Secret::from(line);
    Ok((!code.is_empty()).then_some(code))
}

/// The daemon's prompt, ending in ": ".
fn prompt_text(prompt: &str) -> String {
    let p = prompt.trim_end();
    if p.ends_with(':') || p.ends_with('?') {
        format!("{p} ")
    } else {
        format!("{p}: ")
    }
}

fn secret_noun(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::Password => "password",
        SecretKind::MfaCode => "MFA code",
    }
}

fn render_login(outcome: &LoginOutcome) -> String {
    let mut s = format!("Logged in to {} as {}", outcome.account, outcome.username);
    if outcome.reused_session {
        s.push_str(" (session reused, no password needed)");
    }
    s.push('\n');
    if !outcome.roles.is_empty() {
        s.push_str("Roles:\n");
        for line in render_roles(&outcome.roles).lines() {
            s.push_str("  ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

fn render_roles(roles: &[RoleInfo]) -> String {
    if roles.is_empty() {
        return "No roles known yet: log in first.\n".into();
    }
    roles
        .iter()
        .map(|r| {
            let mark = if r.default { " (default)" } else { "" };
            format!("{}{mark}\n", r.role_arn)
        })
        .collect()
}

fn render_role_expiry(roles: &[RoleStatus], now: SystemTime) -> String {
    let names = role_names(roles.iter().map(|r| r.role_arn.as_str()));
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    roles
        .iter()
        .zip(&names)
        .map(|(r, name)| {
            format!(
                "  {name:<width$}  expires {}, next refresh {}\n",
                expiry_text(r.expires_at.as_deref(), now),
                refresh_text(r.next_refresh_at.as_deref(), now)
            )
        })
        .collect()
}

/// The human `samlctl status`.
fn render_status(report: &StatusReport, now: SystemTime) -> String {
    let d = &report.daemon;
    let mut s = format!("samld {} (pid {})", d.version, d.pid);
    if let Some(started) = timestamp::parse_rfc3339(&d.started_at)
        && let Ok(up) = now.duration_since(started)
    {
        s.push_str(&format!(", up {}", timestamp::human_duration(up)));
    }
    s.push_str(&format!("\nconfig: {}\n", d.config_path));
    if let Some(err) = &d.config_error {
        s.push_str(&format!(
            "config error: {err} (the last valid configuration stays in force)\n"
        ));
    }
    s.push('\n');
    if report.accounts.is_empty() {
        s.push_str(&format!("No accounts: add one to {}\n", d.config_path));
        return s;
    }

    let mut rows = vec![
        [
            "ACCOUNT",
            "STATE",
            "USER",
            "JUMPCLOUD SESSION",
            "ROLE",
            "EXPIRES",
            "REFRESH",
        ]
        .map(String::from),
    ];
    for a in &report.accounts {
        let names = role_names(a.roles.iter().map(|r| r.role_arn.as_str()));
        let session = session_text(a, now);
        if a.roles.is_empty() {
            rows.push([
                a.name.clone(),
                a.state.to_string(),
                a.username.clone(),
                session.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for (i, (r, name)) in a.roles.iter().zip(names).enumerate() {
            let first = i == 0;
            let role = if r.default {
                format!("{name} (default)")
            } else {
                name
            };
            rows.push([
                if first { a.name.clone() } else { String::new() },
                if first {
                    a.state.to_string()
                } else {
                    String::new()
                },
                if first {
                    a.username.clone()
                } else {
                    String::new()
                },
                if first {
                    session.clone()
                } else {
                    String::new()
                },
                role,
                expiry_text(r.expires_at.as_deref(), now),
                refresh_text(r.next_refresh_at.as_deref(), now),
            ]);
        }
    }
    s.push_str(&table(&rows));

    let notes: Vec<String> = report
        .accounts
        .iter()
        .filter_map(|a| account_note(a, now))
        .chain(report.accounts.iter().flat_map(role_warnings))
        .collect();
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            s.push_str(&n);
            s.push('\n');
        }
    }
    s.push_str(&sessions_text(&report.sessions, now));
    s
}

/// The JumpCloud sign-ins behind the accounts, each once with the accounts it serves (one
/// login serves them all, and a logout of one keeps it for the others); those never signed
/// in are left out unless a person is needed.
fn sessions_text(sessions: &[IdpSessionStatus], now: SystemTime) -> String {
    let worth_a_line =
        |s: &&IdpSessionStatus| s.state != IdpSessionState::None || s.reason.is_some();
    if !sessions.iter().any(|s| worth_a_line(&s)) {
        return String::new();
    }
    let mut text = String::from("\nJumpCloud sign-ins:\n");
    for session in sessions.iter().filter(worth_a_line) {
        let age = session
            .session
            .as_ref()
            .and_then(|s| timestamp::parse_rfc3339(&s.established_at))
            .and_then(|t| now.duration_since(t).ok())
            .map(|age| format!(" for {}", timestamp::human_duration(age)))
            .unwrap_or_default();
        text.push_str(&format!(
            "  {} ({}): {}{age}, serves {}",
            session.username,
            session.console_url,
            session.state.as_str(),
            session.accounts.join(", ")
        ));
        if let Some(reason) = &session.reason {
            text.push_str(&format!("; {reason}"));
        }
        text.push('\n');
    }
    text
}

/// Warnings about credentials the daemon holds (STS handing out credentials too short to
/// keep fresh as configured), one line each.
fn role_warnings(a: &AccountStatus) -> Vec<String> {
    let names = role_names(a.roles.iter().map(|r| r.role_arn.as_str()));
    a.roles
        .iter()
        .zip(names)
        .filter_map(|(r, name)| {
            r.warning
                .as_ref()
                .map(|w| format!("{} ({name}): warning: {w}", a.name))
        })
        .collect()
}

/// The JumpCloud session's age and when JumpCloud last confirmed it, e.g. `2h 5m, seen 3m ago`.
fn session_text(a: &AccountStatus, now: SystemTime) -> String {
    let Some(session) = &a.session else {
        return "-".into();
    };
    let age = timestamp::parse_rfc3339(&session.established_at)
        .and_then(|t| now.duration_since(t).ok())
        .map(timestamp::human_duration);
    let seen =
        timestamp::parse_rfc3339(&session.last_verified_at).map(|t| timestamp::relative(t, now));
    match (age, seen) {
        (Some(age), Some(seen)) => format!("{age}, seen {seen}"),
        (Some(age), None) => age,
        _ => "-".into(),
    }
}

/// What the user should know about an account beyond the table: its last error, or what
/// to do.
fn account_note(a: &AccountStatus, now: SystemTime) -> Option<String> {
    let mut note = if let Some(e) = &a.last_error {
        let when = timestamp::parse_rfc3339(&e.at)
            .map(|t| format!(" {}", timestamp::relative(t, now)))
            .unwrap_or_default();
        format!("{}: last error{when} ({}): {}", a.name, e.code, e.message)
    } else if a.state == AccountState::NeedsLogin {
        format!("{}: the JumpCloud session has ended", a.name)
    } else {
        return None;
    };
    if let Some(retry) = a
        .next_retry_at
        .as_deref()
        .and_then(timestamp::parse_rfc3339)
    {
        note.push_str(&format!("; next retry {}", timestamp::relative(retry, now)));
    }
    if a.state == AccountState::NeedsLogin {
        note.push_str(&format!("; run: samlctl login {}", a.name));
    }
    Some(note)
}

fn expiry_text(at: Option<&str>, now: SystemTime) -> String {
    match at {
        None => "-".into(),
        Some(s) => match timestamp::parse_rfc3339(s) {
            Some(t) if t <= now => format!("expired {}", timestamp::relative(t, now)),
            Some(t) => timestamp::relative(t, now),
            None => s.to_owned(),
        },
    }
}

fn refresh_text(at: Option<&str>, now: SystemTime) -> String {
    match at {
        None => "-".into(),
        Some(s) => match timestamp::parse_rfc3339(s) {
            Some(t) if t <= now => "due".into(),
            Some(t) => timestamp::relative(t, now),
            None => s.to_owned(),
        },
    }
}

/// Short names for role ARNs: the role name, qualified with the AWS account id when two
/// roles of the list share a name. Anything that is not a role ARN is shown whole.
fn role_names<'a>(arns: impl Iterator<Item = &'a str>) -> Vec<String> {
    let roles: Vec<(&str, Option<RoleArn>)> = arns.map(|arn| (arn, arn.parse().ok())).collect();
    let names: Vec<&str> = roles
        .iter()
        .map(|(arn, role)| role.as_ref().map_or(*arn, RoleArn::name))
        .collect();
    roles
        .iter()
        .zip(&names)
        .map(|((_, role), &name)| {
            let clash = names.iter().filter(|&&other| other == name).count() > 1;
            match role {
                Some(role) if clash => format!("{}/{name}", role.account_id()),
                _ => name.to_owned(),
            }
        })
        .collect()
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use samld_proto::{DaemonInfo, ErrorCode, ErrorInfo, SessionInfo};
    use std::time::{Duration, UNIX_EPOCH};

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
    fn logout_needs_an_account_or_all_but_not_both() {
        assert!(Cli::try_parse_from(["samlctl", "logout"]).is_err());
        assert!(Cli::try_parse_from(["samlctl", "logout", "a", "--all"]).is_err());
        assert!(Cli::try_parse_from(["samlctl", "logout", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["samlctl", "logout", "a"]).is_ok());
    }

    #[test]
    fn password_line_loses_only_its_line_ending() {
        let p = read_password_line(&b"  pass word \r\nsecond line\n"[..]).unwrap();
        assert_eq!(p.expose(), "  pass word ");
        assert_eq!(
            read_password_line(&b"no newline"[..]).unwrap().expose(),
            "no newline"
        );
        assert!(read_password_line(&b"\n"[..]).is_err());
        assert!(read_password_line(&b""[..]).is_err());
    }

    #[test]
    fn prompts_end_with_a_colon() {
        assert_eq!(
            prompt_text("JumpCloud password for a@b"),
            "JumpCloud password for a@b: "
        );
        assert_eq!(prompt_text("MFA code: "), "MFA code: ");
    }

    #[test]
    fn role_names_are_short_unless_ambiguous() {
        let names = role_names(
            [
                "arn:aws:iam::111111111111:role/Admin",
                "arn:aws:iam::222222222222:role/Admin",
                "arn:aws:iam::111111111111:role/team/ReadOnly",
                "not-an-arn",
            ]
            .into_iter(),
        );
        assert_eq!(
            names,
            [
                "111111111111/Admin",
                "222222222222/Admin",
                "ReadOnly",
                "not-an-arn"
            ]
        );
        // What the daemon's RoleArn would refuse (an account of one digit) is not guessed at.
        assert_eq!(
            role_names(["arn:aws:iam::1:role/Admin"].into_iter()),
            ["arn:aws:iam::1:role/Admin"]
        );
    }

    fn t(secs: u64) -> String {
        timestamp::format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn status_table_shows_states_roles_and_relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let base = 1_800_000_000;
        let account = |name: &str, state| AccountStatus {
            name: name.into(),
            state,
            provider: "jumpcloud".into(),
            username: format!("{name}@example.com"),
            url: "https://sso.jumpcloud.com/saml2/x".into(),
            region: None,
            default_role: None,
            session: None,
            roles: vec![],
            last_error: None,
            next_retry_at: None,
        };
        let mut prod = account("prod", AccountState::Active);
        prod.session = Some(SessionInfo {
            established_at: t(base - 62 * 60),
            last_verified_at: t(base - 120),
        });
        // The daemon only ever reports well-formed role ARNs; anything else is shown whole.
        prod.roles = vec![
            RoleStatus {
                role_arn: "arn:aws:iam::111111111111:role/Admin".into(),
                assumed_role_arn: None,
                expires_at: Some(t(base + 58 * 60)),
                next_refresh_at: Some(t(base + 38 * 60)),
                default: true,
                warning: None,
            },
            RoleStatus {
                role_arn: "arn:aws:iam::111111111111:role/ReadOnly".into(),
                assumed_role_arn: None,
                expires_at: Some(t(base - 120)),
                next_refresh_at: Some(t(base - 60)),
                default: false,
                warning: Some("STS issued these credentials with 5s of life".into()),
            },
        ];
        let sign_in =
            |username: &str, state, accounts: &[&str], reason: Option<&str>| IdpSessionStatus {
                provider: "jumpcloud".into(),
                console_url: "https://console.jumpcloud.com".into(),
                username: username.into(),
                state,
                session: (state == IdpSessionState::Live).then(|| SessionInfo {
                    established_at: t(base - 62 * 60),
                    last_verified_at: t(base - 120),
                }),
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                reason: reason.map(String::from),
            };
        let mut stage = account("stage", AccountState::NeedsLogin);
        stage.last_error = Some(ErrorInfo {
            code: ErrorCode::NeedsLogin,
            message: "the JumpCloud session expired".into(),
            at: t(base - 300),
        });
        let report = StatusReport {
            daemon: DaemonInfo {
                version: "0.1.0".into(),
                protocol_version: 1,
                pid: 77,
                config_path: "/c.toml".into(),
                started_at: t(base - 3 * 3600 - 120),
                config_error: Some("line 3, column 1: unknown key `rol`".into()),
            },
            accounts: vec![prod, stage],
            sessions: vec![
                sign_in(
                    "prod@example.com",
                    IdpSessionState::Live,
                    &["dev", "prod"],
                    None,
                ),
                sign_in("solo@example.com", IdpSessionState::Live, &["solo"], None),
                sign_in("idle@example.com", IdpSessionState::None, &["idle"], None),
                sign_in(
                    "stage@example.com",
                    IdpSessionState::NeedsLogin,
                    &["stage"],
                    Some("the push was denied; run: samlctl login stage"),
                ),
            ],
        };
        let expected = "\
samld 0.1.0 (pid 77), up 3h 2m
config: /c.toml
config error: line 3, column 1: unknown key `rol` (the last valid configuration stays in force)

ACCOUNT  STATE        USER               JUMPCLOUD SESSION   ROLE             EXPIRES         REFRESH
prod     active       prod@example.com   1h 2m, seen 2m ago  Admin (default)  in 58m          in 38m
                                                             ReadOnly         expired 2m ago  due
stage    needs-login  stage@example.com  -                   -                -               -

stage: last error 5m ago (needs-login): the JumpCloud session expired; run: samlctl login stage
prod (ReadOnly): warning: STS issued these credentials with 5s of life

JumpCloud sign-ins:
  prod@example.com (https://console.jumpcloud.com): live for 1h 2m, serves dev, prod
  solo@example.com (https://console.jumpcloud.com): live for 1h 2m, serves solo
  stage@example.com (https://console.jumpcloud.com): needs-login, serves stage; the push was denied; run: samlctl login stage
";
        assert_eq!(render_status(&report, now), expected);
    }

    #[test]
    fn login_message_says_when_no_password_was_needed() {
        let mut o = LoginOutcome {
            account: "prod".into(),
            username: "a@b".into(),
            reused_session: true,
            roles: vec![RoleInfo {
                role_arn: "arn:aws:iam::1:role/A".into(),
                principal_arn: "p".into(),
                default: true,
            }],
        };
        assert_eq!(
            render_login(&o),
            "Logged in to prod as a@b (session reused, no password needed)\nRoles:\n  arn:aws:iam::1:role/A (default)\n"
        );
        o.reused_session = false;
        assert!(render_login(&o).starts_with("Logged in to prod as a@b\n"));
    }
}
