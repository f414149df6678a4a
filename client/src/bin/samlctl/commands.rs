//! One function per `samlctl` subcommand (the `daemon` ones are in [`crate::daemon`]): each
//! talks to samld or reads the files it needs, and writes its result to `out`.
//!
//! [`crate::run`] resolves the socket and connects; what a command prints is rendered by
//! [`crate::render`], and `login` asks its questions through [`crate::prompt`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::CommandFactory;
use samld_client::browser::{self, BrowserSettings};
use samld_client::{Client, ClientError, ConnectOptions, PromptError};
use samld_proto::{
    BrowserPlan, ErrorCode, Handout, HeldSession, LoginIntent, LoginRequest, PasswordLogin,
    RoleInfo, Secret,
};
use serde::Serialize;

use crate::prompt::{LoginPrompter, read_code_line, read_password_line};
use crate::render::{
    AuditScope, Clock, audit_header, dropped_footer, local_utc_offset, render_audit,
    render_audit_line, render_login, render_role_expiry, render_roles, render_status,
};
use crate::{Cli, ExecArgs, Failure, LoginArgs};
use samld_client::tty::Tty;

/// Writes `value` as pretty-printed JSON and a newline.
pub(crate) fn print_json(out: &mut impl Write, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|e| Failure(format!("cannot write the output: {e}")))?;
    writeln!(out)?;
    Ok(())
}

/// `samlctl status [ACCOUNT] [--json]`.
pub(crate) fn status(
    client: Client,
    account: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let report = client.status(account)?;
    if json {
        print_json(out, &report)?;
    } else {
        out.write_all(render_status(&report, SystemTime::now()).as_bytes())?;
    }
    Ok(())
}

/// `samlctl login ACCOUNT`: through the browser when asked or when the account's
/// `login = "browser"`; otherwise sends what was piped in or given, and answers samld's
/// questions.
pub(crate) fn login(
    connect: &dyn Fn() -> Result<Client, Failure>,
    args: LoginArgs,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let plan = match connect()?.browser_plan(&args.account) {
        Ok(plan) => Some(plan),
        // A daemon older than browser sign-in knows only the API login.
        Err(ClientError::Daemon(w)) if w.code == ErrorCode::BadRequest && !args.browser => None,
        Err(e) => return Err(older_daemon("login --browser", e)),
    };
    if let Some(plan) = plan.filter(|p| args.browser || p.login == "browser") {
        return browser_login(connect, plan, args.force, out);
    }
    let client = connect()?;
    let tty = Tty::open();
    // A password piped in is sent with the request: samld uses a password it is given before
    // `password_command`, which may print a stale one (the user is typing the new one here).
    // Whatever feeds the pipe runs anyway, so reading it when the session lives costs nothing.
    let password = if args.stdin.password_stdin {
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
    let mfa_code = if args.stdin.mfa_code_stdin {
        read_code_line(io::stdin().lock()).map_err(|e| Failure(format!("--mfa-code-stdin: {e}")))?
    } else {
        args.mfa_code.map(Secret::from)
    };
    let mut prompter = LoginPrompter {
        password_stdin: args.stdin.password_stdin,
        stdin_used: password.is_some(),
        mfa_code_stdin: args.stdin.mfa_code_stdin.then_some(mfa_code.is_some()),
        tty,
    };
    let request = LoginRequest {
        account: args.account,
        intent: LoginIntent::Password(PasswordLogin {
            password,
            mfa_code,
            // Whether samld may ask us at all; what we cannot answer fails with a clear
            // message.
            interactive: prompter.tty.is_some()
                || args.stdin.password_stdin
                || args.stdin.mfa_code_stdin,
            session: HeldSession::from_flags(args.force, args.save_password),
        }),
    };
    let outcome = client.login(request, &mut prompter, &mut |msg| eprintln!("{msg}"))?;
    out.write_all(render_login(&outcome).as_bytes())?;
    Ok(())
}

/// `samlctl login ACCOUNT --browser`: while samld's IdP session lives it is reused (no
/// browser); otherwise, or with `--force`, the person signs in in a browser samlctl starts,
/// and samld gets the SAML response and the IdP session and goes on as after any login.
fn browser_login(
    connect: &dyn Fn() -> Result<Client, Failure>,
    plan: BrowserPlan,
    force: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let account = plan.account.clone();
    let mut prompter = LoginPrompter {
        password_stdin: false,
        stdin_used: false,
        mfa_code_stdin: None,
        tty: None,
    };
    if !force {
        let reuse = LoginRequest {
            account: account.clone(),
            intent: LoginIntent::ReuseOnly,
        };
        match connect()?.login(reuse, &mut prompter, &mut |msg| eprintln!("{msg}")) {
            Ok(outcome) => {
                out.write_all(render_login(&outcome).as_bytes())?;
                return Ok(());
            }
            // No live session: that is what the browser is for.
            Err(ClientError::Daemon(w))
                if matches!(w.code, ErrorCode::NeedsLogin | ErrorCode::NotLoggedIn) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let settings = BrowserSettings {
        account: plan.account,
        url: plan.url,
        browser: plan.browser,
        args: plan.browser_args,
    };
    let profile = browser::profile_dir().ok_or_else(|| {
        Failure("cannot place the browser profile: set HOME (or XDG_STATE_HOME)".to_owned())
    })?;
    let mut signed_in = browser::sign_in(&settings, &profile, &mut |m| eprintln!("{m}"))
        .map_err(|e| Failure(format!("{e}; {account} is as it was")))?;
    // Only a person's --force may make someone else the identity of the account.
    signed_in.replace_identity = force;
    let request = LoginRequest {
        account,
        intent: LoginIntent::Browser { sign_in: signed_in },
    };
    let outcome = connect()?.login(request, &mut prompter, &mut |msg| eprintln!("{msg}"))?;
    out.write_all(render_login(&outcome).as_bytes())?;
    eprintln!(
        "samld refreshes from this sign-in while the IdP session lives. The browser profile \
         ({}) stays signed in to the IdP too, so the next `samlctl login --browser` may finish \
         without any typing.",
        profile.display()
    );
    Ok(())
}

/// `samlctl logout ACCOUNT|--all`.
pub(crate) fn logout(
    client: Client,
    account: Option<&str>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let outcome = client.logout(account)?;
    if outcome.accounts.is_empty() && outcome.idp_sessions == 0 {
        writeln!(
            out,
            "Nothing to log out: no account was logged in and no IdP session was held."
        )?;
    }
    for a in &outcome.accounts {
        writeln!(out, "Logged out of {a}.")?;
    }
    match outcome.idp_sessions {
        0 => {}
        1 => writeln!(out, "Signed out of 1 IdP session.")?,
        n => writeln!(out, "Signed out of {n} IdP sessions.")?,
    }
    Ok(())
}

/// `samlctl password forget ACCOUNT`.
pub(crate) fn forget_password(
    client: Client,
    account: &str,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let removed = client
        .forget_password(account)
        .map_err(|e| older_daemon("password forget", e))?;
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
    Ok(())
}

/// The failure for `e`; a daemon older than `command` does not know its request and
/// answers `bad-request`, which says to restart it.
fn older_daemon(command: &str, e: ClientError) -> Failure {
    match e {
        ClientError::Daemon(w) if w.code == ErrorCode::BadRequest => Failure(format!(
            "the running samld does not know `{command}` (it is older than this samlctl); \
             restart it (`samlctl daemon stop`, then start it again) and retry: {}",
            w.message
        )),
        other => Failure::from(other),
    }
}

/// The options of `samlctl audit`.
pub(crate) struct AuditArgs<'a> {
    /// Only this account.
    pub(crate) account: Option<&'a str>,
    /// Only the last this long, parsed and as written.
    pub(crate) since: Option<(Duration, &'a str)>,
    /// One JSON object per line.
    pub(crate) json: bool,
    /// Keep printing new events.
    pub(crate) follow: bool,
}

/// `samlctl audit [ACCOUNT] [--since DURATION] [--json] [--follow]`.
pub(crate) fn audit(
    client: Client,
    args: &AuditArgs<'_>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let since = args.since.map(|(d, _)| d);
    let scope = AuditScope {
        account: args.account,
        since: args.since.map(|(_, text)| text),
        follow: args.follow,
    };
    let clock = |now| Clock {
        now,
        offset: &local_utc_offset,
    };
    if !args.follow {
        let (events, dropped) = client
            .audit(args.account, since)
            .map_err(|e| older_daemon("audit", e))?;
        if args.json {
            for event in &events {
                json_line(out, event)?;
            }
            // stdout carries only events; the footer goes where people look.
            eprint!("{}", dropped_footer(dropped));
        } else {
            let text = render_audit(&events, dropped, &scope, &clock(SystemTime::now()));
            out.write_all(text.as_bytes())?;
        }
        return Ok(());
    }

    let mut follow = client
        .follow_audit(args.account, since)
        .map_err(|e| older_daemon("audit", e))?;
    let events = follow.take_events();
    let mut header_due = events.is_empty();
    if args.json {
        for event in &events {
            json_line(out, event)?;
        }
        eprint!("{}", dropped_footer(follow.dropped()));
    } else {
        let text = render_audit(&events, follow.dropped(), &scope, &clock(SystemTime::now()));
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    while let Some(event) = follow.next_event()? {
        if args.json {
            json_line(out, &event)?;
        } else {
            if header_due {
                out.write_all(audit_header().as_bytes())?;
                header_due = false;
            }
            let line = render_audit_line(&event, &clock(SystemTime::now()));
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
    }
    eprintln!("samlctl: samld closed the connection (it stopped); no more events");
    Ok(())
}

/// Writes `value` as one line of JSON.
fn json_line(out: &mut impl Write, value: &impl Serialize) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| Failure(format!("cannot write the output: {e}")))?;
    writeln!(out)?;
    Ok(())
}

/// `samlctl refresh ACCOUNT`.
pub(crate) fn refresh(client: Client, account: &str, out: &mut impl Write) -> Result<(), Failure> {
    let roles = client.refresh(account)?;
    writeln!(out, "Refreshed {account}.")?;
    out.write_all(render_role_expiry(&roles, SystemTime::now()).as_bytes())?;
    Ok(())
}

/// `samlctl roles ACCOUNT [--json]`.
pub(crate) fn roles(
    client: Client,
    account: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let roles = client.roles(account)?;
    if json {
        #[derive(Serialize)]
        struct Roles<'a> {
            account: &'a str,
            roles: &'a [RoleInfo],
        }
        print_json(
            out,
            &Roles {
                account,
                roles: &roles,
            },
        )?;
    } else {
        out.write_all(render_roles(&roles).as_bytes())?;
    }
    Ok(())
}

/// `samlctl config check`: needs no daemon and no socket.
pub(crate) fn config_check(cli_path: Option<&Path>, out: &mut impl Write) -> Result<(), Failure> {
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

/// `samlctl exec ACCOUNT [COMMAND…]`: runs the command and exits like it. `opts` is called
/// only after the warnings, as late as possible.
pub(crate) fn exec(
    args: ExecArgs,
    opts: impl FnOnce() -> Result<ConnectOptions, Failure>,
) -> Result<ExitCode, Failure> {
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
    match samld_client::exec::run(&opts()?, &options) {
        Ok(status) => Ok(samld_client::exec::exit_like(status)),
        Err(e) => {
            eprintln!("samlctl: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// `samlctl env ACCOUNT`: shell commands that export the credentials.
pub(crate) fn env(
    client: Client,
    account: &str,
    role: Option<&str>,
    shell: samld_client::env::Shell,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let creds = client.get_credentials(
        account,
        role,
        false,
        Some(Handout::Env),
        &mut samld_client::NoPrompter,
        &mut |_| {},
    )?;
    let vars = samld_client::exec::static_vars(&creds);
    out.write_all(samld_client::env::render(shell, &vars).as_bytes())?;
    Ok(())
}

/// `samlctl console ACCOUNT`: opens the sign-in URL, or prints it with `print`.
pub(crate) fn console(
    client: Client,
    account: &str,
    role: Option<&str>,
    print: bool,
    duration: Option<u32>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let signin = client.console_url(account, role, duration)?;
    if print {
        writeln!(out, "{}", signin.url.expose())?;
    } else {
        samld_client::console::open_in_browser(&signin.url).map_err(Failure)?;
        eprintln!(
            "Opened the AWS console for {} in your browser.",
            signin.role_arn
        );
    }
    Ok(())
}

/// `samlctl import saml2aws`: fails (after printing the report) when every account was
/// skipped.
pub(crate) fn import_saml2aws(
    file: Option<PathBuf>,
    force: bool,
    config: Option<&Path>,
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    let source = match file.or_else(|| std::env::var_os("SAML2AWS_CONFIGFILE").map(PathBuf::from)) {
        Some(path) => path,
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".saml2aws"))
            .ok_or_else(|| Failure("no HOME; name the saml2aws file".into()))?,
    };
    let target = samld_config::resolve_config_path(config)
        .map_err(|e| Failure(format!("cannot locate the config file: {e}")))?;
    let report = samld_client::import::import_saml2aws(&source, &target, force)
        .map_err(|e| Failure(e.to_string()))?;
    write!(out, "{report}")?;
    out.flush()?;
    if !report.imported_any() && !report.skipped.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `samlctl aws-config ACCOUNT`: prints the profile, or with `write` adds it to the AWS
/// config file.
pub(crate) fn aws_config(
    account: &str,
    role: Option<&str>,
    profile: Option<&str>,
    write: bool,
    config: Option<&Path>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    use samld_client::awsconfig;
    let path = samld_config::resolve_config_path(config)
        .map_err(|e| Failure(format!("cannot locate the config file: {e}")))?;
    let samld = samld_config::load(&path).map_err(|e| Failure(format!("{e:#}")))?;
    let settings = samld.account(account).ok_or_else(|| {
        Failure(format!(
            "unknown account `{account}` (not in {})",
            path.display()
        ))
    })?;
    let profile = awsconfig::Profile::new(
        account,
        role,
        profile,
        settings.region.as_deref(),
        &awsconfig::helper_command(),
    )
    .map_err(|e| Failure(e.to_string()))?;
    if write {
        let file = awsconfig::config_file()
            .ok_or_else(|| Failure("no HOME and no AWS_CONFIG_FILE".into()))?;
        match awsconfig::write_profile(&file, &profile).map_err(|e| Failure(e.to_string()))? {
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
    Ok(())
}

/// `samlctl completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell, out: &mut impl Write) {
    clap_complete::generate(shell, &mut Cli::command(), "samlctl", out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use samld_proto::WireError;

    #[test]
    fn an_older_daemon_is_told_apart_from_other_errors() {
        let bad_request = ClientError::Daemon(WireError::new(
            ErrorCode::BadRequest,
            "unknown variant `audit`",
        ));
        let Failure(message) = older_daemon("audit", bad_request);
        assert_eq!(
            message,
            "the running samld does not know `audit` (it is older than this samlctl); restart \
             it (`samlctl daemon stop`, then start it again) and retry: unknown variant `audit`"
        );
        let other =
            ClientError::Daemon(WireError::new(ErrorCode::UnknownAccount, "no such account"));
        let Failure(message) = older_daemon("audit", other);
        assert_eq!(message, "no such account");
    }
}
