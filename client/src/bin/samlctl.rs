//! `samlctl`: the command line for samld.
//!
//! Exit status: 0 success, 1 error, 2 bad usage; `samlctl daemon status` exits 3 when no
//! daemon runs (like `systemctl status`). Every error is one `samlctl: <message>` line on
//! stderr; results go to stdout, progress and prompts to stderr and the terminal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, Parser, Subcommand};
use samld_client::{Client, ClientError, ConnectOptions, PromptError, SecretPrompter, timestamp};
use samld_proto::{
    AccountState, AccountStatus, LoginOutcome, LoginRequest, PROTOCOL_VERSION, RoleInfo,
    RoleStatus, Secret, SecretKind, StatusReport,
};
use serde::Serialize;

/// How long `samlctl daemon stop` waits for the daemon to go away after it acknowledged.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long each "is it still there?" probe of `daemon stop` may take.
const STOP_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
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
    /// Forget an account's session and credentials until the next `samlctl login`
    Logout {
        /// The account to log out
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        account: Option<String>,
        /// Log out every account
        #[arg(long)]
        all: bool,
    },
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
    /// Inspect or stop the running daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The account to log in to
    account: String,
    /// A TOTP code from the authenticator app, if JumpCloud asks for one
    #[arg(long, value_name = "CODE")]
    mfa_code: Option<String>,
    /// Read the password from the first line of stdin, if samld needs one
    #[arg(long)]
    password_stdin: bool,
    /// Log in with the password even if the JumpCloud session is still alive
    #[arg(long)]
    force: bool,
    /// Save the password in the OS keyring once JumpCloud accepts it
    #[arg(long)]
    save_password: bool,
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
    /// Is samld running? Exits 0 if it is, 3 if not
    Status {
        /// Print the answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// Ask samld to stop, and wait until it has
    Stop,
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
        Ok(ConnectOptions::new(socket).client_name("samlctl"))
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
        Command::Daemon(DaemonCommand::Status { json }) => {
            return daemon_status(&opts()?, json, &mut out);
        }
        Command::Daemon(DaemonCommand::Stop) => daemon_stop(&opts()?, &mut out)?,
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
    let mut prompter = LoginPrompter {
        password_stdin: args.password_stdin,
        stdin_used: password.is_some(),
        tty,
    };
    let request = LoginRequest {
        account: args.account,
        password,
        mfa_code: args.mfa_code.map(Secret::from),
        // Whether samld may ask us at all; what we cannot answer fails with a clear message.
        interactive: prompter.tty.is_some() || args.password_stdin,
        force: args.force,
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

fn daemon_status(
    opts: &ConnectOptions,
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
    }

    // Any version: the point of this command is to say which daemon runs, even one this
    // samlctl cannot talk to.
    let client = match opts.clone().any_version().connect() {
        Ok(client) => client,
        Err(e) if e.is_not_running() => {
            if json {
                print_json(
                    out,
                    &DaemonStatus {
                        running: false,
                        socket: opts.socket(),
                        version: None,
                        pid: None,
                        protocol_version: None,
                    },
                )?;
            } else {
                writeln!(
                    out,
                    "samld is not running (no daemon answers on {})",
                    opts.socket().display()
                )?;
            }
            return Ok(ExitCode::from(EXIT_NOT_RUNNING));
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

fn daemon_stop(opts: &ConnectOptions, out: &mut impl Write) -> Result<(), Failure> {
    // Any version: stopping a daemon of another version is how a mismatch is resolved.
    let any = opts.clone().any_version();
    let client = match any.connect() {
        Ok(client) => client,
        Err(e) if e.is_not_running() => {
            writeln!(out, "samld is not running.")?;
            return Ok(());
        }
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
            Err(e) if e.is_not_running() => {
                writeln!(out, "samld (pid {pid}) stopped.")?;
                return Ok(());
            }
            Ok(c) if c.hello().pid != pid => {
                writeln!(
                    out,
                    "samld (pid {pid}) stopped; a new samld (pid {}) already answers on {} \
                     (started by systemd socket activation?)",
                    c.hello().pid,
                    opts.socket().display()
                )?;
                return Ok(());
            }
            // Still there, or on its way out (refusing, timing out): keep watching.
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(Failure(format!(
                "samld (pid {pid}) agreed to stop but still answers on {} after {}s",
                opts.socket().display(),
                STOP_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
            SecretKind::MfaCode => match &mut self.tty {
                Some(tty) => tty.ask(&prompt),
                None => Err(PromptError::Unavailable(
                    "samld needs an MFA code, but there is no terminal to ask on; pass it with \
                     --mfa-code CODE"
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

    let mut rows =
        vec![["ACCOUNT", "STATE", "USER", "ROLE", "EXPIRES", "REFRESH"].map(String::from)];
    for a in &report.accounts {
        let names = role_names(a.roles.iter().map(|r| r.role_arn.as_str()));
        if a.roles.is_empty() {
            rows.push([
                a.name.clone(),
                a.state.to_string(),
                a.username.clone(),
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
        .collect();
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            s.push_str(&n);
            s.push('\n');
        }
    }
    s
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
/// roles of the list share a name.
fn role_names<'a>(arns: impl Iterator<Item = &'a str>) -> Vec<String> {
    let parts: Vec<(Option<&str>, &str)> = arns.map(split_role_arn).collect();
    parts
        .iter()
        .map(|&(account, name)| {
            let clash = parts.iter().filter(|(_, n)| *n == name).count() > 1;
            match account {
                Some(acct) if clash => format!("{acct}/{name}"),
                _ => name.to_owned(),
            }
        })
        .collect()
}

/// `arn:aws:iam::123456789012:role/path/Name` → (`123456789012`, `Name`); anything else is
/// shown whole.
fn split_role_arn(arn: &str) -> (Option<&str>, &str) {
    let mut fields = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("iam"), Some(_), Some(account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return (None, arn);
    };
    match resource.strip_prefix("role/") {
        Some(path) => (Some(account), path.rsplit('/').next().unwrap_or(path)),
        None => (None, arn),
    }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
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
    use samld_proto::{DaemonInfo, ErrorCode, ErrorInfo};
    use std::time::UNIX_EPOCH;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
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
        prod.roles = vec![
            RoleStatus {
                role_arn: "arn:aws:iam::1:role/Admin".into(),
                assumed_role_arn: None,
                expires_at: Some(t(base + 58 * 60)),
                next_refresh_at: Some(t(base + 38 * 60)),
                default: true,
            },
            RoleStatus {
                role_arn: "arn:aws:iam::1:role/ReadOnly".into(),
                assumed_role_arn: None,
                expires_at: Some(t(base - 120)),
                next_refresh_at: Some(t(base - 60)),
                default: false,
            },
        ];
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
        };
        let expected = "\
samld 0.1.0 (pid 77), up 3h 2m
config: /c.toml
config error: line 3, column 1: unknown key `rol` (the last valid configuration stays in force)

ACCOUNT  STATE        USER               ROLE             EXPIRES         REFRESH
prod     active       prod@example.com   Admin (default)  in 58m          in 38m
                                         ReadOnly         expired 2m ago  due
stage    needs-login  stage@example.com  -                -               -

stage: last error 5m ago (needs-login): the JumpCloud session expired; run: samlctl login stage
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
