//! `samlctl exec`: run a program with AWS credentials for one role.
//!
//! By default the program gets `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`, which point every AWS SDK at the daemon's loopback
//! endpoint; the SDKs poll it before their credentials expire, so a long job keeps working
//! across the daemon's refreshes. The token is tied to a socket connection that `samlctl`
//! holds open while the program runs: when the program ends (or `samlctl` is killed) the
//! connection closes and the daemon revokes the token. So `samlctl` stays as the program's
//! parent, passes on signals sent to it, and exits the way the program did. It also watches
//! that connection the other way: when samld goes away the program is ended (see
//! `DaemonWatch`), because the token died and the freed port could be taken by another user.
//!
//! With `--static`, the program instead gets `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN` and `AWS_CREDENTIAL_EXPIRATION`, and `samlctl` replaces itself with it.
//! Both forms set `AWS_REGION` and `AWS_DEFAULT_REGION` when the account has a region, and
//! `SAMLD_EXEC=ACCOUNT`, by which a nested `samlctl exec` notices and refuses.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::Duration;

use samld_proto::{Credentials, EndpointToken, Handout, Request, Response};

use crate::{Client, ClientError, ConnectOptions, NoPrompter};

/// Set in the program's environment to the account; a `samlctl exec` that finds it refuses
/// to nest unless forced.
pub const EXEC_MARKER_ENV: &str = "SAMLD_EXEC";

/// Variables that would make an SDK pick other credentials than the ones `exec` provides:
/// the credential variables themselves, a profile (which the SDKs consult before the
/// container endpoint), the container variables of an outer environment (the relative URI
/// beats the full one), and web identity settings.
const CLEARED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
];

/// How long the program has to end after SIGTERM once samld is gone, before SIGKILL.
pub const DAEMON_GONE_GRACE: Duration = Duration::from_secs(5);

/// What to run and with which credentials.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The account.
    pub account: String,
    /// A role ARN or name; `None` takes the account's default role.
    pub role: Option<String>,
    /// Pass the credentials as environment variables instead of the endpoint.
    pub static_credentials: bool,
    /// Run even inside another `samlctl exec`.
    pub force: bool,
    /// The program and its arguments; empty runs `$SHELL`.
    pub command: Vec<OsString>,
}

/// Why `exec` could not run the program.
#[derive(Debug)]
pub enum ExecError {
    /// Already inside `samlctl exec` for this account, without `--force`.
    Nested {
        /// The outer exec's account.
        outer: String,
    },
    /// The daemon refused or could not be reached.
    Daemon(ClientError),
    /// The program does not exist.
    NotFound {
        /// The program.
        program: String,
    },
    /// The program could not be started.
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// samld stopped while the program ran, so the program was ended.
    DaemonGone {
        /// The program.
        program: String,
        /// How it ended.
        status: ExitStatus,
    },
}

impl ExecError {
    /// The exit status a shell would use for the same failure: 127 for a missing program,
    /// 126 for one that cannot run, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::NotFound { .. } => 127,
            ExecError::Spawn { .. } => 126,
            _ => 1,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Nested { outer } => write!(
                f,
                "already inside `samlctl exec {outer}` ({EXEC_MARKER_ENV} is set); nesting \
                 would mix two sets of credentials, so pass --force if you mean it"
            ),
            ExecError::Daemon(e) => write!(f, "{e}"),
            ExecError::NotFound { program } => write!(f, "{program}: command not found"),
            ExecError::Spawn { program, source } => write!(f, "cannot run {program}: {source}"),
            ExecError::DaemonGone { program, status } => write!(
                f,
                "{program} was ended ({status}) because samld stopped while it ran; start samld \
                 (`samlctl daemon start`, or any samlctl command) and run it again"
            ),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Daemon(e) => Some(e),
            ExecError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ClientError> for ExecError {
    fn from(e: ClientError) -> Self {
        ExecError::Daemon(e)
    }
}

/// An endpoint token, valid while this value lives: dropping it closes the connection to the
/// daemon, which revokes the token.
#[derive(Debug)]
pub struct EndpointLease {
    token: EndpointToken,
    connection: Client,
}

impl EndpointLease {
    /// The URL, token, role and region.
    pub fn token(&self) -> &EndpointToken {
        &self.token
    }

    /// The connection that keeps the token alive: it ends when samld does.
    fn connection(&self) -> &std::os::unix::net::UnixStream {
        &self.connection.stream
    }
}

impl Client {
    /// Asks for a loopback endpoint token for `role` (or the default role) of `account`. The
    /// daemon first makes sure credentials can be had, so errors such as "not logged in"
    /// come from here.
    pub fn issue_endpoint_token(
        mut self,
        account: &str,
        role: Option<&str>,
    ) -> Result<EndpointLease, ClientError> {
        self.write(&Request::IssueEndpointToken {
            account: account.to_owned(),
            role: role.map(str::to_owned),
        })?;
        loop {
            match self.read()? {
                Response::Progress { .. } => {}
                Response::NeedSecret { kind, .. } => {
                    // The daemon never asks here (it does not log in for this request), but
                    // a question must not go unanswered by mistake.
                    let error = crate::PromptError::Unavailable(format!(
                        "samld asked for {} while issuing an endpoint token",
                        crate::describe_secret(kind)
                    ));
                    return Err(ClientError::Prompt { kind, error });
                }
                Response::EndpointToken(token) => {
                    return Ok(EndpointLease {
                        token,
                        connection: self,
                    });
                }
                Response::Error(e) => return Err(ClientError::Daemon(e)),
                other => return Err(crate::unexpected("endpoint_token", &other)),
            }
        }
    }
}

/// Refuses to run inside another `samlctl exec` unless `force`.
pub fn check_nesting(force: bool) -> Result<(), ExecError> {
    match std::env::var_os(EXEC_MARKER_ENV) {
        Some(outer) if !force && !outer.is_empty() => Err(ExecError::Nested {
            outer: outer.to_string_lossy().into_owned(),
        }),
        _ => Ok(()),
    }
}

/// Runs the program as `options` says and returns its exit status. With
/// `static_credentials` this only returns on failure (the program replaces this process).
pub fn run(connect: &ConnectOptions, options: &ExecOptions) -> Result<ExitStatus, ExecError> {
    check_nesting(options.force)?;
    let mut command = command(&options.command);
    for name in CLEARED {
        command.env_remove(name);
    }
    command.env(EXEC_MARKER_ENV, &options.account);

    if options.static_credentials {
        let creds = connect.connect()?.get_credentials(
            &options.account,
            options.role.as_deref(),
            false,
            Some(Handout::Env),
            &mut NoPrompter,
            &mut |_| {},
        )?;
        for (name, value) in static_vars(&creds) {
            command.env(name, value);
        }
        let error = command.exec();
        return Err(spawn_error(&options.command, error));
    }

    let lease = connect
        .connect()?
        .issue_endpoint_token(&options.account, options.role.as_deref())?;
    let token = lease.token();
    command
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &token.url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token.token.expose());
    if let Some(region) = &token.region {
        command
            .env("AWS_REGION", region)
            .env("AWS_DEFAULT_REGION", region);
    }
    let program = program_name(&options.command);
    let (status, daemon_gone) = signals::run_forwarding(
        &mut command,
        Some(DaemonWatch {
            connection: lease.connection(),
            program: &program,
        }),
    )
    .map_err(|e| spawn_error(&options.command, e))?;
    drop(lease);
    if daemon_gone {
        return Err(ExecError::DaemonGone { program, status });
    }
    Ok(status)
}

/// What [`signals::run_forwarding`] watches so that the program does not outlive samld.
///
/// The program's token dies with samld, and the endpoint's port is then free: another local
/// user could bind it and answer the program's next credential request with keys of an
/// account they control (a `terraform apply` writing state into their account). So when the
/// connection that holds the token ends, the program is ended too: SIGTERM, and SIGKILL after
/// [`DAEMON_GONE_GRACE`].
struct DaemonWatch<'a> {
    connection: &'a std::os::unix::net::UnixStream,
    program: &'a str,
}

/// The variables `--static` (and `samlctl env`) set: the credentials, their expiry and the
/// region, in a stable order.
pub fn static_vars(creds: &Credentials) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", creds.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            creds.secret_access_key.expose().to_owned(),
        ),
        ("AWS_SESSION_TOKEN", creds.session_token.expose().to_owned()),
        ("AWS_CREDENTIAL_EXPIRATION", creds.expiration.clone()),
    ];
    if let Some(region) = &creds.region {
        // botocore before 1.35 and awscli v1 read only AWS_DEFAULT_REGION.
        vars.push(("AWS_REGION", region.clone()));
        vars.push(("AWS_DEFAULT_REGION", region.clone()));
    }
    vars
}

fn command(argv: &[OsString]) -> Command {
    match argv.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        None => Command::new(default_shell()),
    }
}

fn default_shell() -> OsString {
    std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

fn program_name(argv: &[OsString]) -> String {
    argv.first()
        .cloned()
        .unwrap_or_else(default_shell)
        .to_string_lossy()
        .into_owned()
}

fn spawn_error(argv: &[OsString], source: io::Error) -> ExecError {
    let program = program_name(argv);
    if source.kind() == io::ErrorKind::NotFound {
        ExecError::NotFound { program }
    } else {
        ExecError::Spawn { program, source }
    }
}

/// The exit status of `samlctl` for a program that ended with `status`: its exit code, or,
/// when a signal killed it, the same signal raised on this process, so that the shell sees
/// (and, for Ctrl-C, acts on) what really happened.
pub fn exit_like(status: ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1));
    }
    let Some(signal) = status.signal() else {
        return ExitCode::FAILURE;
    };
    signals::die_by(signal);
    // Still alive: the signal is one that does not kill. Say it the way shells do.
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
}

/// Signal handling while the program runs.
mod signals {
    use std::io::{self, Read};
    use std::os::unix::net::UnixStream;
    use std::process::{Command, ExitStatus};
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};

    use super::DaemonWatch;

    /// The program's pid while it runs, for the signal handler; 0 otherwise.
    static CHILD: AtomicI32 = AtomicI32::new(0);

    const FORWARDED: [libc::c_int; 6] = [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ];

    /// Runs `command`, passing on the signals in [`FORWARDED`] that a process sends to
    /// `samlctl`, and waits for it. With `watch`, the program is ended when the daemon's
    /// connection closes; the flag says whether that happened.
    ///
    /// Signals from the terminal (Ctrl-C, Ctrl-\, hang-up) go to the whole foreground
    /// process group, which includes the program; the kernel sends those (the sender pid is
    /// 0), and they are not passed on, or the program would get each of them twice.
    pub(super) fn run_forwarding(
        command: &mut Command,
        watch: Option<DaemonWatch<'_>>,
    ) -> io::Result<(ExitStatus, bool)> {
        let blocked = SignalMask::block(&FORWARDED)?;
        // std resets the signal mask (and dispositions are reset by exec), so the program
        // starts with normal signal handling.
        let mut child = command.spawn()?;
        let pid = i32::try_from(child.id()).unwrap_or(0);
        CHILD.store(pid, Ordering::SeqCst);
        for signal in FORWARDED {
            install(signal)?;
        }
        let shared = Arc::new(ChildState::default());
        // Started while the signals are blocked, so that they are handled on this thread.
        let watcher = match &watch {
            Some(watch) => {
                let connection = watch.connection.try_clone()?;
                let program = watch.program.to_owned();
                let shared = shared.clone();
                Some(std::thread::spawn(move || {
                    watch_daemon(connection, pid, &program, &shared)
                }))
            }
            None => None,
        };
        // Signals that arrived since the block are delivered (and forwarded) now.
        drop(blocked);
        // The program is waited for without being reaped first: until it is reaped its pid
        // cannot be reused, so the watcher may still signal it while `exited` is false.
        let _ = wait_exited(pid);
        shared.lock().exited = true;
        shared.changed.notify_all();
        CHILD.store(0, Ordering::SeqCst);
        let status = child.wait();
        let mut daemon_gone = false;
        if let (Some(watch), Some(watcher)) = (watch, watcher) {
            // Ends the watcher's read (on every handle of the socket) and, for the daemon,
            // the token, as closing the connection would.
            let _ = watch.connection.shutdown(std::net::Shutdown::Both);
            let _ = watcher.join();
            daemon_gone = shared.lock().signalled;
        }
        Ok((status?, daemon_gone))
    }

    /// What the main thread and the watcher share about the program.
    #[derive(Default)]
    struct ChildState {
        state: Mutex<Flags>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct Flags {
        /// The program has exited (not yet reaped): do not signal it anymore.
        exited: bool,
        /// The watcher signalled it because the daemon went away.
        signalled: bool,
    }

    impl ChildState {
        fn lock(&self) -> MutexGuard<'_, Flags> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Blocks until the daemon's connection ends (EOF or an error: the daemon exited or was
    /// killed), then ends the program unless it has exited already.
    fn watch_daemon(mut connection: UnixStream, pid: i32, program: &str, shared: &ChildState) {
        // The client's request timeout would otherwise end the read early; the connection is
        // no longer used for requests.
        let _ = connection.set_read_timeout(None);
        let mut buf = [0u8; 256];
        loop {
            match connection.read(&mut buf) {
                Ok(0) => break,
                // The daemon sends nothing more after the token; anything it might is ignored.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let flags = shared.lock();
        if flags.exited || pid <= 0 {
            return;
        }
        eprintln!(
            "samlctl: samld stopped while {program} was running, and its credential endpoint \
             with it (another user could now take the port); sent it SIGTERM, and SIGKILL \
             follows in {}s if it does not end",
            super::DAEMON_GONE_GRACE.as_secs()
        );
        // SAFETY: the program is our child and not reaped (`exited` is false under the lock),
        // so the pid is still its own.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let mut flags = flags;
        flags.signalled = true;
        let (flags, _) = shared
            .changed
            .wait_timeout_while(flags, super::DAEMON_GONE_GRACE, |f| !f.exited)
            .unwrap_or_else(|e| e.into_inner());
        if !flags.exited {
            eprintln!(
                "samlctl: {program} did not end within {}s of SIGTERM; sent it SIGKILL",
                super::DAEMON_GONE_GRACE.as_secs()
            );
            // SAFETY: as above, still under the lock with `exited` false.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Waits until `pid` has exited, leaving it to be reaped (`WNOWAIT`).
    fn wait_exited(pid: i32) -> io::Result<()> {
        let Ok(id) = libc::id_t::try_from(pid) else {
            return Ok(());
        };
        loop {
            // SAFETY: waitid writes only into the zeroed siginfo we pass.
            let rc = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT)
            };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let child = CHILD.load(Ordering::SeqCst);
        if child <= 0 || info.is_null() {
            return;
        }
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let sender = unsafe { sender_pid(&*info) };
        if sender != 0 && sender != child {
            // SAFETY: kill is async-signal-safe; the pid is our own unreaped child.
            unsafe {
                libc::kill(child, signal);
            }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe fn sender_pid(info: &libc::siginfo_t) -> libc::pid_t {
        // SAFETY: si_pid is meaningful for the user- and kernel-sent signals handled here,
        // and zero for kernel-generated ones.
        unsafe { info.si_pid() }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    unsafe fn sender_pid(info: &libc::siginfo_t) -> libc::pid_t {
        info.si_pid
    }

    fn install(signal: libc::c_int) -> io::Result<()> {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler has the
        // SA_SIGINFO signature and only calls async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Kills this process with `signal`, as the program died: default disposition, no core
    /// file (the crash was the program's, not ours).
    pub(super) fn die_by(signal: libc::c_int) {
        // SAFETY: plain syscalls on our own process.
        unsafe {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
    }

    /// Signals blocked for this thread until dropped.
    struct SignalMask {
        previous: libc::sigset_t,
    }

    impl SignalMask {
        fn block(signals: &[libc::c_int]) -> io::Result<Self> {
            // SAFETY: the sets are initialised by sigemptyset before use.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                let mut previous: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &s in signals {
                    libc::sigaddset(&mut set, s);
                }
                let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
                if rc != 0 {
                    return Err(io::Error::from_raw_os_error(rc));
                }
                Ok(Self { previous })
            }
        }
    }

    impl Drop for SignalMask {
        fn drop(&mut self) {
            // SAFETY: restores the mask saved by `block`.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samld_proto::Secret;

    fn creds(region: Option<&str>) -> Credentials {
        Credentials {
            account: "prod".into(),
            role_arn: "arn:aws:iam::1:role/A".into(),
            access_key_id: "ASIA1".into(),
            secret_access_key: Secret::new("sk"),
            session_token: Secret::new("tok"),
            expiration: "2026-11-28T12:00:00Z".into(),
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn static_vars_set_both_region_variables() {
        let vars = static_vars(&creds(Some("eu-west-1")));
        let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_CREDENTIAL_EXPIRATION",
                "AWS_REGION",
                "AWS_DEFAULT_REGION"
            ]
        );
        assert_eq!(vars[1].1, "sk");
        assert_eq!(vars[5].1, "eu-west-1");
        assert_eq!(
            static_vars(&creds(None)).len(),
            4,
            "no region, no region vars"
        );
    }

    #[test]
    fn exit_codes_follow_the_shell_conventions() {
        let missing = spawn_error(
            &["no-such-program".into()],
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(missing.exit_code(), 127);
        assert_eq!(missing.to_string(), "no-such-program: command not found");
        let denied = spawn_error(
            &["./x".into()],
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(denied.exit_code(), 126);
    }
}
