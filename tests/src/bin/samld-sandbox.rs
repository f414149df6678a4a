//! `samld-sandbox`: samld end to end on one machine, with no JumpCloud or AWS account.
//!
//! It starts the fake JumpCloud and the fake STS of the test suite on 127.0.0.1 (or uses an
//! external STS such as moto), runs the real `samld` against them from a temp dir, logs in
//! with the real `samlctl`, shows what the real `samld-helper` hands to the AWS CLI and SDKs,
//! and writes an AWS config whose profile uses it. Then it stays up, so that the user (or a
//! script, through `--ready-file`) can point their own shell and tools at it, until Ctrl-C or
//! SIGTERM, when it stops samld and the servers and removes the temp dir.
//!
//! The fixture code of the end-to-end tests does the process work (isolated env, readiness
//! through `NOTIFY_SOCKET`), so the sandbox runs samld exactly the way the tests do.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use samld_tests::fake_federation::FakeFederation;
use samld_tests::fake_jumpcloud::{
    DEFAULT_EMAIL, DEFAULT_PASSWORD, FakeJumpCloud, FakeJumpCloudConfig, FakeUser, PageSignIn,
    PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{self, DaemonProcess, TestEnv};
use tokio::runtime::Runtime;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The account name in the sandbox's samld config and the AWS profile name.
const ACCOUNT: &str = "sandbox";
/// The region of the account and of the AWS profile.
const REGION: &str = "us-east-1";
/// The fake JumpCloud app (`/saml2/{app}`) the account points at.
const APP: &str = samld_tests::fake_jumpcloud::DEFAULT_APP;
/// How many polls of a push the fake phone needs before it approves: enough for the user to
/// see samld wait for the phone, short enough not to bore them.
const PUSH_POLLS: u32 = 2;
/// samld never hands out credentials with less than a minute left, so shorter lifetimes
/// would leave nothing to serve.
const MIN_CREDENTIAL_LIFETIME: u64 = 90;
/// The last line of the ready file, so that a reader of a FIFO knows it has it all.
const READY_MARKER: &str = "# samld-sandbox: ready";
/// How long samld gets to exit after SIGTERM before it is killed.
const DAEMON_STOP_WAIT: Duration = Duration::from_secs(15);

const USAGE: &str = "usage: samld-sandbox [--mfa push|totp|none] [--browser | --browser-headless] \
[--sts-endpoint URL] [--credential-lifetime SECS] [--ready-file PATH] [--no-login] [--verbose]";

const HELP: &str = "\
samld-sandbox: try samld end to end without a JumpCloud or AWS account

usage: samld-sandbox [OPTIONS]
       cargo run --bin samld-sandbox -- [OPTIONS]

Starts a fake JumpCloud (user alice@example.com, password \"correct horse battery staple\"), a
fake AWS STS and a fake AWS console sign-in endpoint on 127.0.0.1, runs the real samld against
them from a temp dir, logs in with samlctl, shows what samld-helper hands to the AWS CLI and
SDKs, and writes an AWS config with a `sandbox` profile. It prints the `export` lines that point
your shell at it (`aws`, `samlctl exec` and `samlctl console` then reach the fakes, not AWS),
and runs until Ctrl-C or SIGTERM, when it stops samld and the servers and removes the temp dir.

options:
  --mfa push|totp|none       the second factor samld uses (default push; the fake phone
                             approves each push after two polls)
  --browser                  sign in through a browser instead (login = \"browser\"): the
                             sandbox does not log in; `samlctl login sandbox` opens Chrome,
                             Chromium, Edge or Brave on the fake's sign-in page (on localhost)
  --browser-headless         sign in through a browser too, but headless, with no one at it:
                             the fake's sign-in page types the fake user's email, password
                             and code (or takes the push) by itself; works without a desktop
  --sts-endpoint URL         use this STS (for example moto: http://127.0.0.1:5000) instead of
                             the fake one
  --credential-lifetime SECS make the credentials live SECS seconds (at least 90), to watch
                             samld refresh them (`samlctl status`)
  --ready-file PATH          once everything is up, write the export lines to PATH (a regular
                             file, replaced atomically, or a FIFO); the last line is
                             `# samld-sandbox: ready`
  --no-login                 start samld but leave the login to you
  --verbose                  echo samld's log (SAMLD_TEST_LOG sets its level, default debug)
  -h, --help                 show this help

When started by `cargo run`, it first builds samld, samlctl and samld-helper
(`cargo build --workspace --bins`), which `cargo run` alone does not.
";

/// The second factor the sandbox account uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mfa {
    Push,
    Totp,
    None,
}

impl Mfa {
    /// The config file's spelling.
    fn as_str(self) -> &'static str {
        match self {
            Mfa::Push => "push",
            Mfa::Totp => "totp",
            Mfa::None => "none",
        }
    }
}

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    mfa: Mfa,
    sts_endpoint: Option<String>,
    credential_lifetime: Option<u64>,
    ready_file: Option<PathBuf>,
    login: bool,
    sign_in: SignIn,
    verbose: bool,
}

/// How the account signs in: `--browser` and `--browser-headless` choose a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignIn {
    /// samld's API login (`login = "api"`).
    Api,
    /// In a browser, by the person at it.
    Browser,
    /// In a headless browser, where the fake's page signs in by itself.
    HeadlessBrowser,
}

impl SignIn {
    /// Whether the account's config says `login = "browser"`.
    fn browser(self) -> bool {
        self != SignIn::Api
    }

    fn headless(self) -> bool {
        self == SignIn::HeadlessBrowser
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Options),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut options = Options {
        mfa: Mfa::Push,
        sts_endpoint: None,
        credential_lifetime: None,
        ready_file: None,
        login: true,
        sign_in: SignIn::Api,
        verbose: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<OsString, String> {
            match inline {
                Some(v) => Ok(v.into()),
                None => args.next().ok_or(format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--mfa" => {
                let mfa = value()?;
                options.mfa = match mfa.to_str() {
                    Some("push") => Mfa::Push,
                    Some("totp") => Mfa::Totp,
                    Some("none") => Mfa::None,
                    _ => return Err(format!("--mfa {mfa:?}: expected push, totp or none")),
                }
            }
            "--sts-endpoint" => {
                let url = value()?
                    .into_string()
                    .map_err(|v| format!("--sts-endpoint {v:?} is not valid UTF-8"))?;
                options.sts_endpoint = Some(check_endpoint(&url)?);
            }
            "--credential-lifetime" => {
                let text = value()?;
                let secs = text
                    .to_str()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or(format!("--credential-lifetime {text:?}: expected seconds"))?;
                if secs < MIN_CREDENTIAL_LIFETIME {
                    return Err(format!(
                        "--credential-lifetime {secs}: at least {MIN_CREDENTIAL_LIFETIME} \
                         (samld never hands out credentials with under a minute left)"
                    ));
                }
                options.credential_lifetime = Some(secs);
            }
            "--ready-file" => options.ready_file = Some(PathBuf::from(value()?)),
            "--no-login" | "--verbose" | "--browser" | "--browser-headless" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--no-login" => options.login = false,
            // The person signs in, in the browser: the sandbox cannot do it for them.
            "--browser" => {
                // After --browser-headless the browser stays headless.
                if options.sign_in == SignIn::Api {
                    options.sign_in = SignIn::Browser;
                }
                options.login = false;
            }
            // The page signs in by itself: the sandbox logs in as in API mode.
            "--browser-headless" => options.sign_in = SignIn::HeadlessBrowser,
            "--verbose" => options.verbose = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Parsed::Run(options))
}

/// An STS URL that can go into the TOML config as it is.
fn check_endpoint(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("--sts-endpoint {url:?}: {e}"))?;
    let printable = url
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if !matches!(parsed.scheme(), "http" | "https") || !printable {
        return Err(format!(
            "--sts-endpoint {url:?}: expected an http:// or https:// URL"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("samld-sandbox: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The fixture reads these when it starts samld. Nothing else runs yet.
    if options.verbose {
        // SAFETY: single-threaded here: no runtime, no child, no other thread exists yet.
        unsafe { std::env::set_var("SAMLD_TEST_ECHO", "1") };
    } else if std::env::var_os("SAMLD_TEST_LOG").is_none() {
        // Kept in memory for error reports only; info is plenty and stays small.
        // SAFETY: as above.
        unsafe { std::env::set_var("SAMLD_TEST_LOG", "info") };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("samld-sandbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&runtime, &options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("samld-sandbox: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM, caught from the start so that a stop request in the middle of the
/// startup still ends in an orderly teardown.
struct StopSignal {
    received: watch::Receiver<Option<&'static str>>,
}

impl StopSignal {
    fn install(runtime: &Runtime) -> io::Result<Self> {
        let _context = runtime.enter();
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (tx, received) = watch::channel(None);
        runtime.spawn(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            let _ = tx.send(Some(name));
        });
        Ok(Self { received })
    }

    /// The signal received so far, if any.
    fn received(&self) -> Option<&'static str> {
        *self.received.borrow()
    }

    /// An error if a stop was requested: the startup ends there.
    fn check(&self) -> Result<(), String> {
        match self.received() {
            Some(name) => Err(format!("{name} received during the startup")),
            None => Ok(()),
        }
    }

    fn wait(&mut self, runtime: &Runtime) -> &'static str {
        runtime.block_on(async {
            match self.received.wait_for(Option::is_some).await {
                Ok(name) => name.unwrap_or("a signal"),
                // The task holding the sender only ends after sending.
                Err(_) => "a signal",
            }
        })
    }
}

fn run(runtime: &Runtime, options: &Options) -> Result<(), String> {
    let mut stop =
        StopSignal::install(runtime).map_err(|e| format!("cannot catch SIGINT/SIGTERM: {e}"))?;
    let bin_dir = binaries()?;
    stop.check()?;

    let totp_codes: Vec<String> = match options.mfa {
        Mfa::Totp => fresh_totp_codes(4),
        Mfa::Push | Mfa::None => Vec::new(),
    };
    let jumpcloud = runtime.block_on(FakeJumpCloud::start(jumpcloud_config(options, &totp_codes)));
    let fake_sts = match options.sts_endpoint {
        Some(_) => None,
        None => {
            let mut config = FakeStsConfig::default();
            if let Some(secs) = options.credential_lifetime {
                config = config.with_credential_lifetime(Duration::from_secs(secs));
            }
            Some(runtime.block_on(FakeSts::start(config)))
        }
    };
    let sts_url = match (&options.sts_endpoint, &fake_sts) {
        (Some(url), _) => url.clone(),
        (None, Some(fake)) => fake.endpoint_url(),
        (None, None) => unreachable!("the fake STS runs when no endpoint is given"),
    };

    let federation = runtime.block_on(FakeFederation::start());
    let env = TestEnv::new(&samld_config(
        &jumpcloud,
        &sts_url,
        &federation.url(),
        options,
    ));
    let sandbox = Sandbox {
        options,
        env: &env,
        bin_dir: &bin_dir,
        jumpcloud: &jumpcloud,
        sts_url: &sts_url,
        federation_url: &federation.url(),
        totp_codes: &totp_codes,
    };
    sandbox.print_banner();
    let daemon = env.start_daemon_with(&[]).map_err(|(status, log)| {
        format!("samld exited ({status}) before it was ready; its log:\n{log}")
    })?;
    println!(
        "  samld           pid {}, socket {}",
        daemon.pid(),
        env.socket.display()
    );

    let outcome = sandbox.demo(&daemon, &stop);
    if outcome.is_ok() {
        let signal = stop.wait(runtime);
        println!("\n{signal} received: stopping the sandbox.");
    }

    // Teardown, in dependency order, whatever happened: samld first (it may be talking to
    // the servers), then the servers, then the temp dir it all lived in.
    let pid = daemon.pid();
    daemon.signal(libc::SIGTERM);
    let (status, log) = daemon.wait(DAEMON_STOP_WAIT);
    drop(fake_sts);
    drop(federation);
    drop(jumpcloud);
    let dir = env.path().to_owned();
    drop(env);
    let ready_file = outcome.as_ref().ok().and_then(Option::as_ref);
    if let Some(path) = ready_file {
        // Its exports now point at nothing; a FIFO belongs to whoever made it.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(path);
        }
    }
    let samld_result = if status.success() {
        format!("samld (pid {pid}) stopped")
    } else {
        format!("samld (pid {pid}) exited with {status}")
    };
    println!(
        "{samld_result}; fake servers stopped; removed {}",
        dir.display()
    );
    match outcome {
        Ok(_) if !status.success() => Err(format!(
            "samld did not stop cleanly ({status}); its log:\n{}",
            tail(&log, 20)
        )),
        Ok(_) => Ok(()),
        Err(msg) if status.success() || stop.received().is_some() => Err(msg),
        Err(msg) => Err(format!("{msg}\nsamld's log:\n{}", tail(&log, 20))),
    }
}

/// Where samld, samlctl and samld-helper are; built first when `cargo run` started us.
fn binaries() -> Result<PathBuf, String> {
    let dir = fixture::bin_dir();
    // `cargo run --bin samld-sandbox` builds this binary only, so samld could be missing or
    // older than its sources; cargo tells its children where it is and which package ran.
    if let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let status = nested_build(
            cargo.as_ref(),
            Path::new(&manifest_dir),
            profile,
            std::env::vars_os().map(|(name, _)| name),
        )
        .status()
        .map_err(|e| format!("cannot run cargo to build samld: {e}"))?;
        if !status.success() {
            return Err(format!("building samld failed ({status})"));
        }
    }
    for name in ["samld", "samlctl", "samld-helper"] {
        if !dir.join(name).is_file() {
            return Err(format!(
                "{} is missing: build the binaries first (`cargo build --workspace --bins`), \
                 or start the sandbox with `cargo run --bin samld-sandbox`",
                dir.join(name).display()
            ));
        }
    }
    Ok(dir)
}

/// `cargo build --workspace --bins` in `dir`, for `profile`, in the environment the user
/// started `cargo run` in: without the variables `cargo run` set for this binary (named in
/// `inherited`, our environment's variable names).
///
/// Build scripts watch some of those (ring's `rerun-if-env-changed` names
/// `CARGO_MANIFEST_DIR` and the `CARGO_PKG_*` versions): a nested cargo that saw them would
/// find ring's build "changed", rebuild ring and all that depends on it, and leave the next
/// `cargo run` (which does not see them) to rebuild it all back, so that every start took
/// minutes even when nothing changed.
fn nested_build(
    cargo: &OsStr,
    dir: &Path,
    profile: &str,
    inherited: impl IntoIterator<Item = OsString>,
) -> Command {
    let mut build = Command::new(cargo);
    build
        .args(["build", "--workspace", "--bins"])
        .current_dir(dir);
    if profile != "debug" {
        build.args(["--profile", profile]);
    }
    for name in inherited {
        if set_by_cargo_run(&name) {
            build.env_remove(name);
        }
    }
    build
}

/// Whether cargo sets `name` for the program it runs or compiles (`cargo run`, `cargo test`,
/// build scripts), as opposed to a variable of the user's, such as `CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_PROFILE_*` or `RUSTFLAGS`, which the nested build must keep
/// to build what the user asked for.
fn set_by_cargo_run(name: &OsStr) -> bool {
    const NAMES: &[&str] = &[
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_CFG_"];
    name.to_str().is_some_and(|name| {
        NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
    })
}

/// Random six-digit codes, all different.
fn fresh_totp_codes(n: usize) -> Vec<String> {
    let mut codes: Vec<String> = Vec::with_capacity(n);
    while codes.len() < n {
        let code = format!("{:06}", fastrand::u32(0..1_000_000));
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

fn jumpcloud_config(options: &Options, totp_codes: &[String]) -> FakeJumpCloudConfig {
    let mut user = FakeUser::new(DEFAULT_EMAIL, DEFAULT_PASSWORD);
    if options.mfa != Mfa::None {
        let codes: Vec<&str> = totp_codes.iter().map(String::as_str).collect();
        user = user
            .with_factor("push", "available")
            .with_factor("totp", "available")
            .with_totp_codes(&codes)
            .with_push(PushBehavior::AcceptAfterPolls(PUSH_POLLS));
    }
    let mut config = FakeJumpCloudConfig::with_user(user);
    if options.sign_in.browser() {
        // The browser reaches the fake by name (a WebAuthn relying party needs one, and one
        // host name keeps the console's cookies for the SSO host, as in reality).
        config = config.on_localhost();
    }
    if options.sign_in.headless() {
        config.page_signs_in = Some(PageSignIn {
            email: DEFAULT_EMAIL.to_owned(),
            password: DEFAULT_PASSWORD.to_owned(),
            // In totp mode the page enters the first code (as the API login would); otherwise
            // it takes the push, which the fake phone approves.
            totp_code: match options.mfa {
                Mfa::Totp => totp_codes.first().cloned(),
                Mfa::Push | Mfa::None => None,
            },
        });
    }
    if let (Some(secs), Some(_)) = (options.credential_lifetime, &options.sts_endpoint) {
        // An external STS like moto takes the credentials' lifetime from the assertion's
        // SessionDuration (moto ignores DurationSeconds).
        for app in &mut config.apps {
            app.session_duration = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        }
    }
    config
}

fn samld_config(
    jumpcloud: &FakeJumpCloud,
    sts_url: &str,
    federation_url: &str,
    options: &Options,
) -> String {
    let login = if options.sign_in.browser() {
        "browser"
    } else {
        "api"
    };
    let mut config = format!(
        "# Written by samld-sandbox: one account against the fake JumpCloud on 127.0.0.1.\n\
         [accounts.{ACCOUNT}]\n\
         url = \"{app}\"\n\
         username = \"{DEFAULT_EMAIL}\"\n\
         mfa = \"{mfa}\"\n\
         login = \"{login}\"\n\
         region = \"{REGION}\"\n\
         jumpcloud_console_url = \"{console}\"\n\
         sts_endpoint = \"{sts_url}\"\n\
         federation_url = \"{federation_url}\"\n",
        app = jumpcloud.app_url(APP),
        mfa = options.mfa.as_str(),
        console = jumpcloud.base_url(),
    );
    if options.sign_in.headless() {
        config.push_str(&format!(
            "browser_args = [{}]\n",
            headless_browser_args()
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    config
}

/// The browser's flags for `--browser-headless`: no window, nothing fetched in the
/// background, no name resolved but loopback's (the fakes are all there; the SAML POST to
/// AWS is caught by samlctl before it would leave), and as root the one flag Chromium
/// refuses to start without.
fn headless_browser_args() -> Vec<&'static str> {
    let mut args = vec![
        "--headless=new",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        args.push("--no-sandbox");
    }
    args
}

/// Everything the demo steps need.
struct Sandbox<'a> {
    options: &'a Options,
    env: &'a TestEnv,
    bin_dir: &'a Path,
    jumpcloud: &'a FakeJumpCloud,
    sts_url: &'a str,
    federation_url: &'a str,
    totp_codes: &'a [String],
}

impl Sandbox<'_> {
    fn print_banner(&self) {
        let mfa = match self.options.mfa {
            Mfa::Push => format!("MFA push (the fake phone approves after {PUSH_POLLS} polls)"),
            Mfa::Totp => "MFA totp".to_owned(),
            Mfa::None => "no MFA".to_owned(),
        };
        let sts = match (&self.options.sts_endpoint, self.options.credential_lifetime) {
            (Some(_), _) => "external".to_owned(),
            (None, Some(secs)) => format!("fake; credentials live {secs} s"),
            (None, None) => "fake".to_owned(),
        };
        println!("samld sandbox: no JumpCloud or AWS account needed");
        println!(
            "  fake JumpCloud  {}  user {DEFAULT_EMAIL}, {mfa}",
            self.jumpcloud.base_url()
        );
        println!("  STS             {}  ({sts})", self.sts_url);
        println!(
            "  AWS sign-in     {}  (fake; for samlctl console)",
            self.federation_url
        );
    }

    /// Login, helper, status, AWS config and ready file; the ready file's path if one was
    /// written.
    fn demo(&self, daemon: &DaemonProcess, stop: &StopSignal) -> Result<Option<PathBuf>, String> {
        stop.check()?;
        let account_hint = if self.options.login {
            self.login(stop)?;
            let helper = self.env.helper(&[ACCOUNT]);
            if !helper.status.success() {
                return Err(format!(
                    "samld-helper {ACCOUNT} failed: {}",
                    fixture::stderr(&helper).trim()
                ));
            }
            println!("\n$ samld-helper {ACCOUNT}    # what the AWS CLI and SDKs receive");
            print!("{}", fixture::stdout(&helper));
            None
        } else {
            Some(self.login_hint())
        };
        stop.check()?;

        let status = self.env.samlctl(&["status"]);
        if !status.status.success() {
            return Err(format!(
                "samlctl status failed: {}",
                fixture::stderr(&status).trim()
            ));
        }
        println!("\n$ samlctl status");
        print!("{}", indent(&fixture::stdout(&status)));

        let aws_config = self.write_aws_config()?;
        let exports = self.exports(&aws_config)?;
        println!("\nPoint a shell at the sandbox:");
        print!("{}", indent(&exports));
        if let Some(hint) = account_hint {
            print!("{hint}");
        }
        print!("{}", self.things_to_try());
        if self.options.credential_lifetime.is_some() {
            println!(
                "and watch samld refresh the short-lived credentials:  watch -n 5 samlctl status"
            );
        }
        // In totp mode, the sandbox's own login used the first code.
        let used = if self.options.login { 1 } else { 0 };
        let unused_codes = self.totp_codes.get(used..).unwrap_or_default();
        if !unused_codes.is_empty() {
            println!(
                "TOTP codes the fake JumpCloud still accepts (once each): {}",
                unused_codes.join(" ")
            );
        }
        if let Some(path) = &self.options.ready_file {
            write_ready_file(path, daemon.pid(), &exports)?;
        }
        println!(
            "Ctrl-C stops the sandbox and removes {}.",
            self.env.path().display()
        );
        let _ = io::stdout().flush();
        Ok(self.options.ready_file.clone())
    }

    /// `samlctl login sandbox`, its progress shown as it streams.
    fn login(&self, stop: &StopSignal) -> Result<(), String> {
        let (args, comment, input) = self.login_command();
        println!("\n$ samlctl {}    # {comment}", args.join(" "));
        let _ = io::stdout().flush();
        let mut child = self
            .env
            .command("samlctl")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run samlctl: {e}"))?;
        // samlctl reads its lines and closes nothing on its side; dropping the pipe after
        // them is the end of input it expects.
        let written = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes());
        // Progress goes to stderr while samld works; echo it line by line as it comes.
        let stderr = child.stderr.take().expect("piped stderr");
        let progress = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                println!("  {line}");
                let _ = io::stdout().flush();
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut result = String::new();
        let read = child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut result);
        let status = child.wait().map_err(|e| format!("samlctl: {e}"))?;
        // Its error, if any, was echoed above with the progress.
        let _ = progress.join();
        print!("{}", indent(&result));
        stop.check()?;
        if !status.success() {
            return Err(format!("samlctl login failed ({status})"));
        }
        written.map_err(|e| format!("cannot send the password to samlctl: {e}"))?;
        read.map_err(|e| format!("cannot read samlctl's output: {e}"))?;
        Ok(())
    }

    /// samlctl's arguments for the sandbox's login, the comment shown after them, and its
    /// standard input: the fake user's password (and in totp mode the first code) for an
    /// API login; nothing for a headless browser, whose page types them in.
    fn login_command(&self) -> (Vec<&'static str>, &'static str, String) {
        if self.options.sign_in.browser() {
            let comment = match self.options.mfa {
                Mfa::Push => {
                    "a headless browser; the fake's page types the password, takes the push"
                }
                Mfa::Totp => "a headless browser; the fake's page types the password and a code",
                Mfa::None => "a headless browser; the fake's page types the password",
            };
            return (vec!["login", ACCOUNT], comment, String::new());
        }
        let mut args = vec!["login", ACCOUNT, "--password-stdin"];
        // The code goes on stdin after the password: on the command line other users could
        // read it in the process list.
        let mut input = format!("{DEFAULT_PASSWORD}\n");
        let mut comment = "the fake user's password on stdin";
        if let Some(code) = self.totp_codes.first() {
            args.push("--mfa-code-stdin");
            input.push_str(code);
            input.push('\n');
            comment = "the fake user's password and a TOTP code on stdin";
        }
        (args, comment, input)
    }

    /// What to run in the shell the exports point at the sandbox: every command reaches the
    /// fakes only.
    fn things_to_try(&self) -> String {
        let mut text = format!(
            "then try:  aws sts get-caller-identity --profile {ACCOUNT}\n\
             \x20          samlctl exec {ACCOUNT} -- aws sts get-caller-identity    # the fake STS too\n\
             \x20          samlctl console {ACCOUNT} --print    # a sign-in URL of the fake console\n"
        );
        if self.options.login {
            let again = if self.options.sign_in.headless() {
                "the page signs in by itself again".to_owned()
            } else {
                format!("the fake user's password is \"{DEFAULT_PASSWORD}\"")
            };
            text.push_str(&format!(
                "           samlctl logout {ACCOUNT}; samlctl login {ACCOUNT}    # {again}\n"
            ));
        }
        text
    }

    /// How to log in by hand, for `--no-login`. The password is the fake user's, a public
    /// constant of the test suite.
    fn login_hint(&self) -> String {
        if self.options.sign_in.browser() {
            let mut hint = format!(
                "sign in through a browser:  samlctl login {ACCOUNT}\n  (a browser opens on \
                 the fake JumpCloud's sign-in page: email {DEFAULT_EMAIL}, password \
                 \"{DEFAULT_PASSWORD}\"; samld's browser profile stays in the sandbox's temp dir)\n"
            );
            if self.options.mfa == Mfa::Push {
                hint.push_str("  (the fake phone approves the push by itself)\n");
            }
            return hint;
        }
        let mut hint = format!(
            "log in (the fake user's password is \"{DEFAULT_PASSWORD}\"):  samlctl login {ACCOUNT}"
        );
        if self.options.mfa == Mfa::Totp {
            hint.push_str("    # it prompts for the TOTP code");
        }
        hint.push('\n');
        hint
    }

    /// The AWS config: the `sandbox` profile with samld-helper as its credential_process,
    /// and the sandbox's STS as the profile's STS endpoint so that
    /// `aws sts get-caller-identity --profile sandbox` needs no `--endpoint-url`; the default
    /// profile has that endpoint too, for the programs `samlctl exec` runs (it gives them
    /// its credentials endpoint and no profile).
    fn write_aws_config(&self) -> Result<PathBuf, String> {
        let helper = shell_word(&self.bin_dir.join("samld-helper"))?;
        let path = self.env.path().join("aws").join("config");
        // No shell syntax in credential_process: botocore splits it with shlex and runs it
        // without a shell; aws-config runs it with `sh -c`. A plain absolute path with plain
        // arguments means the same to both.
        let text = format!(
            "# Written by samld-sandbox.\n\
             [profile {ACCOUNT}]\n\
             credential_process = {helper} {ACCOUNT}\n\
             region = {REGION}\n\
             services = samld-sandbox\n\
             \n\
             # For the programs samlctl exec runs, which get their credentials from samld.\n\
             [default]\n\
             region = {REGION}\n\
             services = samld-sandbox\n\
             \n\
             # Only STS goes to the sandbox's endpoint; other services keep the real ones.\n\
             [services samld-sandbox]\n\
             sts =\n  endpoint_url = {}\n",
            self.sts_url
        );
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// The `export` lines for a POSIX shell.
    fn exports(&self, aws_config: &Path) -> Result<String, String> {
        let mut exports = format!(
            "export SAMLD_SOCKET={}\n\
             export SAMLD_CONFIG={}\n\
             export AWS_CONFIG_FILE={}\n\
             export AWS_SHARED_CREDENTIALS_FILE={}\n\
             export PATH={}:\"$PATH\"\n",
            shell_word(&self.env.socket)?,
            shell_word(&self.env.config)?,
            shell_word(aws_config)?,
            // None there: keys of the user's own [default] would win over samlctl exec's.
            shell_word(&aws_config.with_file_name("credentials"))?,
            shell_word(self.bin_dir)?,
        );
        if self.options.sign_in.browser() {
            // samlctl keeps samld's browser profile under the state directory: the one the
            // sandbox's own login used (its HOME is the temp dir), which goes with it.
            exports.push_str(&format!(
                "export XDG_STATE_HOME={}\n",
                shell_word(&self.env.path().join(".local").join("state"))?
            ));
        }
        Ok(exports)
    }
}

/// Writes the ready file: a FIFO is written to as it is (by a thread, so that a reader who
/// never comes cannot block Ctrl-C); a regular file is replaced atomically, so that a
/// reader never sees half of it.
fn write_ready_file(path: &Path, samld_pid: u32, exports: &str) -> Result<(), String> {
    let text = format!(
        "# samld-sandbox (pid {}, samld pid {samld_pid}): source this file\n{exports}{READY_MARKER}\n",
        std::process::id()
    );
    let is_fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if is_fifo {
        let path = path.to_owned();
        std::thread::spawn(move || {
            let written = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut fifo| fifo.write_all(text.as_bytes()));
            if let Err(e) = written {
                eprintln!("samld-sandbox: cannot write {}: {e}", path.display());
            }
        });
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write the ready file {}: {e}", path.display()))
}

/// A path as one word for POSIX sh and for Python's shlex (which botocore uses on
/// credential_process): bare when it is made of harmless characters, else single-quoted.
fn shell_word(path: &Path) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    let harmless = |c: char| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c);
    Ok(if !s.is_empty() && s.chars().all(harmless) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn flags_parse_in_both_spellings() {
        let Parsed::Run(o) = parse(&[
            "--mfa=totp",
            "--sts-endpoint",
            "http://127.0.0.1:5000/",
            "--credential-lifetime=120",
            "--ready-file",
            "/tmp/r",
            "--no-login",
        ])
        .unwrap() else {
            panic!("not a run")
        };
        assert_eq!(o.mfa, Mfa::Totp);
        assert_eq!(o.sts_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(o.credential_lifetime, Some(120));
        assert_eq!(o.ready_file, Some(PathBuf::from("/tmp/r")));
        assert!(!o.login && !o.verbose);
        assert_eq!(parse(&["-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn browser_leaves_the_login_to_the_person() {
        let Parsed::Run(o) = parse(&["--browser", "--mfa", "totp"]).unwrap() else {
            panic!("not a run")
        };
        assert!(o.sign_in == SignIn::Browser && !o.login);
        assert_eq!(o.mfa, Mfa::Totp);
        assert_eq!(
            parse(&["--browser=yes"]),
            Err("--browser takes no value".to_owned())
        );
        // Headless, the fake's page signs in by itself: the sandbox logs in.
        let Parsed::Run(o) = parse(&["--browser-headless"]).unwrap() else {
            panic!("not a run")
        };
        assert!(o.sign_in == SignIn::HeadlessBrowser && o.login);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        assert!(
            parse(&["--mfa", "sms"])
                .unwrap_err()
                .contains("push, totp or none")
        );
        assert!(
            parse(&["--credential-lifetime", "30"])
                .unwrap_err()
                .contains("at least 90")
        );
        assert!(
            parse(&["--sts-endpoint", "ftp://x"])
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse(&["--sts-endpoint", "http://a/\"b"]).is_err());
        assert!(
            parse(&["--ready-file"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(parse(&["--no-login=yes"]).unwrap_err().contains("no value"));
        assert!(
            parse(&["--frobnicate"])
                .unwrap_err()
                .contains("--frobnicate")
        );
    }

    #[test]
    fn the_nested_build_sees_the_users_environment_not_cargo_runs() {
        let inherited = [
            // What `cargo run` sets for samld-sandbox (ring watches several of these).
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_PKG_VERSION_PRE",
            "CARGO_PKG_AUTHORS",
            "CARGO_PKG_RUST_VERSION",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "OUT_DIR",
            // The user's own, which choose what gets built and where.
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_BUILD_JOBS",
            "CARGO_INCREMENTAL",
            "RUSTFLAGS",
            "PATH",
        ];
        let build = nested_build(
            OsStr::new("/opt/cargo"),
            Path::new("/src/tests"),
            "release",
            inherited.map(OsString::from),
        );
        let removed: Vec<&str> = build
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_str().unwrap())
            .collect();
        let mut expected = inherited[..13].to_vec();
        expected.sort_unstable();
        assert_eq!(removed, expected);
        assert!(build.get_envs().all(|(_, value)| value.is_none()));
        let args: Vec<&OsStr> = build.get_args().collect();
        assert_eq!(
            args,
            ["build", "--workspace", "--bins", "--profile", "release"]
        );
        assert_eq!(build.get_current_dir(), Some(Path::new("/src/tests")));
    }

    #[test]
    fn shell_words_survive_sh_and_shlex() {
        assert_eq!(shell_word(Path::new("/a/b-c_d.e")).unwrap(), "/a/b-c_d.e");
        assert_eq!(
            shell_word(Path::new("/a b/it's")).unwrap(),
            r"'/a b/it'\''s'"
        );
        assert_eq!(shell_word(Path::new("/$HOME")).unwrap(), "'/$HOME'");
    }
}
