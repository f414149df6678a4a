//! `samld-bench`: what samld costs, measured on this machine in one run.
//!
//! It starts the fake JumpCloud and the fake STS of the test suite on 127.0.0.1 (and moto,
//! when given the interop venv), runs the real `samld`, `samlctl` and `samld-helper` from the
//! directory it was built into (build with `--release`: `scripts/bench.sh` does), and prints
//! a Markdown report of:
//!
//! 1. samld-helper end to end for cached credentials, against `/bin/true` and `cat`;
//! 2. bursts of parallel helpers, for a cached account and for one that must log in first;
//! 3. the daemon at rest: RSS, CPU time and wakeups per thread over an idle minute;
//! 4. `aws sts get-caller-identity` against moto with samld-helper as credential_process,
//!    against the same command with the keys in the environment;
//! 5. how status, helper latency and config reloads grow with 1, 100 and 500 accounts.
//!
//! Timing is `Instant` around spawn-and-wait of each child: what a caller such as botocore
//! pays. Competing runs are interleaved so that a change in the machine's load (other builds
//! on a shared machine) hits all of them alike; the load average is printed with each
//! section. Nothing here asserts a time: the report says which targets are met.

mod aws;
mod procfs;
mod stats;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use samld_tests::fake_jumpcloud::{
    DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_PROVIDER_ARN, FakeApp, FakeJumpCloud,
    FakeJumpCloudConfig, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{self, DaemonProcess, TestEnv};
use tokio::runtime::Runtime;

use crate::procfs::ProcSample;
use crate::stats::{Summary, mib, ms, ratio, verdict};

const USAGE: &str = "usage: samld-bench [--quick] [--venv DIR] [--runs N] [--idle SECS] [--aws-runs N] \
[--accounts N] [--daemon-env NAME=VALUE]";

const HELP: &str = "\
samld-bench: samld's cost on this machine (helper latency, bursts, idle daemon, AWS CLI,
scaling), printed as a Markdown report on stdout; progress goes to stderr.

usage: samld-bench [OPTIONS]
       scripts/bench.sh [OPTIONS]      (builds the release binaries and the venv first)

options:
  --quick         a smoke run in seconds: few runs, bursts of 1 and 10, 20 accounts
                  instead of 500, a 3-second idle window; its figures mean little
  --venv DIR      the interop venv (scripts/interop/venv.sh) with moto and awscli; without
                  it the AWS CLI comparison is skipped
  --runs N        helper, /bin/true and cat runs each (default 1000)
  --idle SECS     the idle window (default 60)
  --aws-runs N    AWS CLI runs per variant (default 15)
  --accounts N    accounts of the big daemon (default 500)
  --daemon-env NAME=VALUE
                  also set NAME=VALUE for every samld started (repeatable), for
                  experiments such as MALLOC_ARENA_MAX=1
  -h, --help      show this help

It runs samld, samlctl and samld-helper from its own directory: build them in the same
profile (`cargo build --release --workspace --bins`).
";

/// The account of the one-account daemon, the helper's latency subject.
const SOLO: &str = "solo";
/// The cached account of the burst daemon.
const CACHED: &str = "cached";
/// Roles in every account's assertion; the account's default is the first.
const ROLES: [&str; 3] = ["Developer", "Admin", "ReadOnly"];
/// The fake JumpCloud app every account points at: its assertion offers all of [`ROLES`].
const APP: &str = "aws";
/// An app offering one role, for moto, which reads only the first value of the Role
/// attribute and fails on a list.
const APP_ONE_ROLE: &str = "aws-one-role";
/// Helpers run at once while logging in every account of a big daemon.
const WARM_PARALLEL: usize = 8;
/// The config watcher's quiet period (daemon/src/watch.rs `QUIET`): part of every reload
/// seen from outside.
const WATCH_QUIET: Duration = Duration::from_millis(200);
/// How long the measured daemons are left alone after their last login before the idle
/// window opens: the aftermath of a login (idle connections to JumpCloud closed after 5 s,
/// the blocking-pool thread of the DNS lookups ending 10 s after its last job) is over by
/// then, so the window sees the daemon at rest.
const SETTLE: Duration = Duration::from_secs(15);
/// Target: the helper's median within this factor of `/bin/true`'s.
const HELPER_TARGET: f64 = 2.0;
/// Target: idle RSS with one account under 15 MB (decimal megabytes, the stricter reading).
const RSS_TARGET_KIB: u64 = 15_000_000 / 1024;

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    venv: Option<PathBuf>,
    /// Section 1: runs of each command.
    runs: usize,
    /// Section 5: helper runs per daemon.
    scale_runs: usize,
    /// Section 5: status runs per daemon.
    status_runs: usize,
    /// Section 5: reloads timed.
    reload_runs: usize,
    /// Section 2: burst sizes.
    bursts: Vec<usize>,
    /// Section 3 and 5: the big daemon's account count.
    big: usize,
    /// Section 5: the middle daemon's account count.
    mid: usize,
    /// Section 3: the idle window.
    idle: Duration,
    /// Section 4: runs per variant.
    aws_runs: usize,
    /// Extra environment for every daemon.
    daemon_env: Vec<(String, String)>,
}

impl Options {
    fn full() -> Self {
        Self {
            quick: false,
            venv: None,
            runs: 1000,
            scale_runs: 300,
            status_runs: 50,
            reload_runs: 5,
            bursts: vec![1, 10, 100, 500],
            big: 500,
            mid: 100,
            idle: Duration::from_secs(60),
            aws_runs: 15,
            daemon_env: Vec::new(),
        }
    }

    fn quick() -> Self {
        Self {
            quick: true,
            venv: None,
            runs: 50,
            scale_runs: 20,
            status_runs: 5,
            reload_runs: 1,
            bursts: vec![1, 10],
            big: 20,
            mid: 5,
            idle: Duration::from_secs(3),
            aws_runs: 2,
            daemon_env: Vec::new(),
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Options>, String> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let mut options = if args.iter().any(|a| a == "--quick") {
        Options::quick()
    } else {
        Options::full()
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value"))
        };
        let count = |v: String| -> Result<usize, String> {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag} {v:?}: expected a positive number"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => {}
            "--venv" => options.venv = Some(PathBuf::from(value()?)),
            "--runs" => options.runs = count(value()?)?,
            "--idle" => options.idle = Duration::from_secs(count(value()?)? as u64),
            "--aws-runs" => options.aws_runs = count(value()?)?,
            "--accounts" => options.big = count(value()?)?,
            "--daemon-env" => {
                let pair = value()?;
                let (k, v) = pair
                    .split_once('=')
                    .ok_or(format!("--daemon-env {pair:?}: expected NAME=VALUE"))?;
                options.daemon_env.push((k.to_owned(), v.to_owned()));
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("samld-bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Kept in memory for error reports; info is what a user's daemon logs by default, and
    // debug lines would cost the daemon time on every request.
    if std::env::var_os("SAMLD_TEST_LOG").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("SAMLD_TEST_LOG", "info") };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("samld-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&runtime, &options) {
        Ok((report, broken)) => {
            print!("{report}");
            if broken.is_empty() {
                return ExitCode::SUCCESS;
            }
            // Not a slow run (no time is ever judged here) but a wrong answer.
            for what in broken {
                eprintln!("samld-bench: FAILED: {what}");
            }
            ExitCode::FAILURE
        }
        Err(msg) => {
            eprintln!("samld-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn progress(msg: &str) {
    eprintln!("samld-bench: {msg}");
}

/// `/proc/loadavg`'s three averages: how busy the machine was.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// What every daemon is started with: the fakes it talks to, and extra environment.
struct Lab {
    jumpcloud: FakeJumpCloud,
    sts: FakeSts,
    daemon_env: Vec<(String, String)>,
}

impl Lab {
    fn start(runtime: &Runtime, daemon_env: Vec<(String, String)>, bursts: &[usize]) -> Lab {
        let user = |email: &str| {
            FakeUser::new(email, DEFAULT_PASSWORD)
                .with_factor("push", "available")
                // Approved on the first poll: a login costs its requests, not a wait for a
                // phone.
                .with_push(PushBehavior::AcceptAfterPolls(1))
        };
        // Each must-log-in burst account is its own JumpCloud user: samld shares one
        // JumpCloud session among a user's accounts, so another account's login would
        // otherwise serve it.
        let users = std::iter::once(user(DEFAULT_EMAIL))
            .chain(bursts.iter().map(|n| user(&burst_user(&burst_account(*n)))))
            .collect();
        let role = |name: &str| format!("arn:aws:iam::123456789012:role/{name}");
        let roles: Vec<(String, &str)> = ROLES
            .iter()
            .map(|r| (role(r), DEFAULT_PROVIDER_ARN))
            .collect();
        let pairs: Vec<(&str, &str)> = roles.iter().map(|(r, p)| (r.as_str(), *p)).collect();
        let config = FakeJumpCloudConfig {
            apps: vec![
                FakeApp::new(APP, &pairs),
                FakeApp::new(APP_ONE_ROLE, &pairs[..1]),
            ],
            users,
            ..FakeJumpCloudConfig::default()
        };
        Lab {
            jumpcloud: runtime.block_on(FakeJumpCloud::start(config)),
            sts: runtime.block_on(FakeSts::start(FakeStsConfig::default())),
            daemon_env,
        }
    }

    fn logins(&self) -> u64 {
        self.jumpcloud.stats().logins
    }
}

/// A samld config: `accounts` accounts that can all log in unattended (password_command and
/// push), the shared settings in `[defaults]` as a user with many accounts would write it.
fn config_toml(jumpcloud: &FakeJumpCloud, sts_url: &str, app: &str, accounts: &[String]) -> String {
    let mut text = format!(
        "# Generated by samld-bench.\n\
         [defaults]\n\
         username = \"{DEFAULT_EMAIL}\"\n\
         mfa = \"push\"\n\
         region = \"us-east-1\"\n\
         password_command = \"echo '{DEFAULT_PASSWORD}'\"\n\
         jumpcloud_console_url = \"{}\"\n\
         sts_endpoint = \"{sts_url}\"\n",
        jumpcloud.base_url()
    );
    let url = jumpcloud.app_url(app);
    for name in accounts {
        let _ = write!(
            text,
            "\n[accounts.{name}]\nurl = \"{url}\"\nrole = \"{}\"\n",
            ROLES[0]
        );
        if name.starts_with("login-") {
            let _ = writeln!(text, "username = \"{}\"", burst_user(name));
        }
    }
    text
}

/// The account of the must-log-in burst of `n` helpers.
fn burst_account(n: usize) -> String {
    format!("login-{n}")
}

/// The JumpCloud user of a must-log-in burst account.
fn burst_user(account: &str) -> String {
    format!("{account}@example.com")
}

fn account_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

/// One running daemon with its env and its accounts.
struct Daemon {
    label: String,
    env: TestEnv,
    process: DaemonProcess,
    accounts: Vec<String>,
    /// RSS right after READY=1.
    rss_at_start: u64,
    /// RSS once every account held credentials for every role.
    rss_warm: Option<u64>,
}

impl Daemon {
    fn start(
        label: &str,
        lab: &Lab,
        sts_url: &str,
        accounts: Vec<String>,
    ) -> Result<Daemon, String> {
        Self::start_with_app(label, lab, sts_url, APP, accounts)
    }

    fn start_with_app(
        label: &str,
        lab: &Lab,
        sts_url: &str,
        app: &str,
        accounts: Vec<String>,
    ) -> Result<Daemon, String> {
        let mut env = TestEnv::new(&config_toml(&lab.jumpcloud, sts_url, app, &accounts));
        env.extra_env.push(("SAMLD_LOG".into(), "info".into()));
        env.extra_env.extend(lab.daemon_env.iter().cloned());
        let process = env
            .start_daemon_with(&[])
            .map_err(|(status, log)| format!("samld ({label}) exited ({status}):\n{log}"))?;
        let rss_at_start = procfs::sample(process.pid())
            .map_err(|e| format!("cannot read samld's /proc: {e}"))?
            .rss_kib;
        Ok(Daemon {
            label: label.to_owned(),
            env,
            process,
            accounts,
            rss_at_start,
            rss_warm: None,
        })
    }

    fn sample(&self) -> Result<ProcSample, String> {
        procfs::sample(self.process.pid()).map_err(|e| format!("cannot read samld's /proc: {e}"))
    }

    /// `samld-helper ACCOUNT [--role ROLE]`, output captured.
    fn helper(&self, account: &str, role: Option<&str>) -> Command {
        let mut cmd = self.env.command("samld-helper");
        cmd.arg(account);
        if let Some(role) = role {
            cmd.args(["--role", role]);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Another program with exactly the environment the helper gets.
    fn plain(&self, program: &str, args: &[&str]) -> Command {
        let template = self.env.command("samld-helper");
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().stdin(Stdio::null());
        for (k, v) in template.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Logs every account in and fetches every role, a few helpers at a time, the way a
    /// user's first AWS commands of the day would. Returns how long it took.
    fn warm_up(&mut self) -> Result<Duration, String> {
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..WARM_PARALLEL.min(self.accounts.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(account) = self.accounts.get(i) else {
                            break;
                        };
                        for role in ROLES {
                            if let Err(e) = helper_ok(&mut self.helper(account, Some(role))) {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{account} {role}: {e}"));
                            }
                        }
                    }
                });
            }
        });
        let took = start.elapsed();
        let failures = failures.into_inner().unwrap();
        if let Some(first) = failures.first() {
            return Err(format!(
                "{}: {} of {} helper calls failed while logging in; first: {first}\nsamld's log:\n{}",
                self.label,
                failures.len(),
                self.accounts.len() * ROLES.len(),
                tail(&self.process.log(), 20)
            ));
        }
        self.rss_warm = Some(self.sample()?.rss_kib);
        Ok(took)
    }
}

/// Runs a helper command to the end: its time, or why its answer is not a credential
/// document.
fn helper_ok(cmd: &mut Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run samld-helper: {e}"))?;
    let took = start.elapsed();
    check_helper_output(out.status.success(), &out.stdout, &out.stderr)?;
    Ok(took)
}

fn check_helper_output(success: bool, stdout: &[u8], stderr: &[u8]) -> Result<(), String> {
    if success && stdout.starts_with(b"{") && memfind(stdout, b"\"AccessKeyId\"") {
        return Ok(());
    }
    Err(format!(
        "exit {}, stderr: {}",
        if success {
            "0 but no credentials"
        } else {
            "non-zero"
        },
        String::from_utf8_lossy(stderr).trim()
    ))
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs a command to the end: its time, or its failure.
fn timed(cmd: &mut Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(took)
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What every section found, printed in order at the end.
#[derive(Default)]
struct Report {
    sections: BTreeMap<u8, String>,
    /// (target, figure, verdict) for the summary.
    targets: Vec<(String, String, String)>,
    /// What did not work at all (a helper failed, a burst logged in twice): the run exits
    /// non-zero after printing the report.
    broken: Vec<String>,
}

impl Report {
    fn target(&mut self, what: &str, figure: String, met: Option<bool>) {
        let v = match met {
            Some(met) => verdict(met).to_owned(),
            None => "not measured".to_owned(),
        };
        self.targets.push((what.to_owned(), figure, v));
    }
}

/// The report, and what did not work (see [`Report::broken`]).
fn run(runtime: &Runtime, options: &Options) -> Result<(String, Vec<String>), String> {
    let mut report = Report::default();
    let header = header(options);
    progress(&format!("load average at start: {}", loadavg()));

    let lab = Lab::start(runtime, options.daemon_env.clone(), &options.bursts);
    let sts_url = lab.sts.endpoint_url();

    progress("starting the daemons and logging their accounts in");
    let mut one = Daemon::start("1 account", &lab, &sts_url, vec![SOLO.to_owned()])?;
    one.warm_up()?;
    let mut big = Daemon::start(
        &format!("{} accounts", options.big),
        &lab,
        &sts_url,
        account_names("acct-", options.big),
    )?;
    let logins_before = lab.logins();
    let big_warm = big.warm_up()?;
    let big_logins = lab.logins() - logins_before;
    // The 1-account daemon logged in before the big one did.
    let last_login = Instant::now();
    let mut mid = Daemon::start(
        &format!("{} accounts", options.mid),
        &lab,
        &sts_url,
        account_names("acct-", options.mid),
    )?;
    mid.warm_up()?;

    progress(&format!("1. helper latency ({} runs each)", options.runs));
    let section = helper_latency(&one, options, &mut report)?;
    report.sections.insert(1, section);

    progress("5. scaling with the account count");
    let section = scaling(runtime, [&one, &mid, &big], options)?;
    report.sections.insert(5, section);
    drop(mid);

    progress("2. bursts of parallel helpers");
    let section = bursts(&lab, &sts_url, options, &mut report)?;
    report.sections.insert(2, section);

    progress(&format!(
        "3. the daemons at rest: an idle window of {}s{}",
        options.idle.as_secs(),
        if options.venv.is_some() {
            " (the AWS CLI comparison runs meanwhile, against another daemon)"
        } else {
            ""
        }
    ));
    std::thread::sleep(SETTLE.saturating_sub(last_login.elapsed()));
    let settled_for = last_login.elapsed();
    let idle_start = [one.sample()?, big.sample()?];
    let aws_section = match &options.venv {
        Some(venv) => aws_cli(&lab, venv, options, &mut report)?,
        None => {
            report.target(
                "AWS CLI: the helper adds no measurable time",
                "skipped (no --venv)".into(),
                None,
            );
            "Skipped: no `--venv` given (scripts/bench.sh passes the interop venv).\n".to_owned()
        }
    };
    report.sections.insert(4, aws_section);
    let left = options.idle.saturating_sub(idle_start[0].at.elapsed());
    std::thread::sleep(left);
    let idle_end = [one.sample()?, big.sample()?];
    let section = at_rest(
        [&one, &big],
        &idle_start,
        &idle_end,
        big_warm,
        big_logins,
        settled_for,
        &mut report,
    );
    report.sections.insert(3, section);

    let mut out = header;
    let titles = [
        (1, "samld-helper end to end, cached credentials"),
        (2, "Bursts of parallel helpers"),
        (3, "The daemon at rest"),
        (4, "`aws sts get-caller-identity` against moto"),
        (5, "How cost grows with the number of accounts"),
    ];
    for (n, title) in titles {
        let _ = write!(out, "\n## {n}. {title}\n\n{}", report.sections[&n]);
    }
    let _ = writeln!(
        out,
        "\n## Targets\n\n| target | figure | verdict |\n| --- | --- | --- |"
    );
    for (what, figure, v) in &report.targets {
        let _ = writeln!(out, "| {what} | {figure} | {v} |");
    }
    let _ = writeln!(out, "\nLoad average at the end: {}", loadavg());
    Ok((out, report.broken))
}

fn header(options: &Options) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let bin_dir = fixture::bin_dir();
    let profile = bin_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned();
    let size = |name: &str| {
        fs::metadata(bin_dir.join(name)).map_or("?".to_owned(), |m| {
            format!("{:.0} KiB", m.len() as f64 / 1024.0)
        })
    };
    let mut out = String::from("# samld benchmarks\n\n");
    let _ = writeln!(
        out,
        "- machine: {cpu}, {cpus} CPUs, {mem} RAM, Linux {}",
        kernel.trim()
    );
    let _ = writeln!(out, "- load average at start (1, 5, 15 min): {}", loadavg());
    let _ = writeln!(
        out,
        "- binaries: `{}` ({profile} profile{}); samld-helper {}, samlctl {}, samld {}",
        bin_dir.display(),
        if profile == "release" {
            ""
        } else {
            ": **not release, figures are not representative**"
        },
        size("samld-helper"),
        size("samlctl"),
        size("samld"),
    );
    let _ = writeln!(
        out,
        "- mode: {}",
        if options.quick {
            "--quick (smoke run: small counts, figures mean little)"
        } else {
            "full"
        }
    );
    out
}

/// Section 1: the helper against `/bin/true` and `cat` of the same JSON, interleaved.
fn helper_latency(one: &Daemon, options: &Options, report: &mut Report) -> Result<String, String> {
    let json_file = one.env.path().join("creds.json");
    let out = one
        .helper(SOLO, None)
        .output()
        .map_err(|e| format!("cannot run samld-helper: {e}"))?;
    check_helper_output(out.status.success(), &out.stdout, &out.stderr)?;
    fs::write(&json_file, &out.stdout).map_err(|e| e.to_string())?;
    let json_path = json_file
        .to_str()
        .ok_or("temp path is not UTF-8")?
        .to_owned();

    let load_before = loadavg();
    let mut cmds: [(&str, Command); 3] = [
        ("/bin/true", one.plain("/bin/true", &[])),
        ("cat JSON", one.plain("/bin/cat", &[&json_path])),
        ("samld-helper", one.helper(SOLO, None)),
    ];
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let warmup = (options.runs / 20).max(5);
    for i in 0..warmup + options.runs {
        // Rotate the order too, so that no command always follows the same one.
        for k in 0..3 {
            let j = (i + k) % 3;
            let took = if j == 2 {
                helper_ok(&mut cmds[j].1)?
            } else {
                timed(&mut cmds[j].1)?
            };
            if i >= warmup {
                samples[j].push(took);
            }
        }
    }
    let sums = samples.each_ref().map(|s| Summary::of(s));
    let base = sums[0];
    let mut text = format!(
        "{} runs of each, interleaved, after {warmup} warm-up runs; each run is spawn, wait and \
         read of stdout and stderr from the driver. Load average before: {load_before}, after: {}.\n\n\
         | command | median | p99 | min | median vs /bin/true | p99 vs /bin/true |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        options.runs,
        loadavg()
    );
    for (k, s) in sums.iter().enumerate() {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} |",
            cmds[k].0,
            ms(s.median),
            ms(s.p99),
            ms(s.min),
            ratio(s.median, base.median),
            ratio(s.p99, base.p99)
        );
    }
    let helper = sums[2];
    let factor = helper.median.as_secs_f64() / base.median.as_secs_f64();
    let _ = writeln!(
        text,
        "\nThe helper costs {} more than `/bin/true` at the median (`cat` of the same JSON: {} more).",
        ms(helper.median.saturating_sub(base.median)),
        ms(sums[1].median.saturating_sub(base.median)),
    );
    report.target(
        "helper median within 2x of /bin/true",
        format!(
            "{factor:.2}x ({} vs {})",
            ms(helper.median),
            ms(base.median)
        ),
        Some(factor <= HELPER_TARGET),
    );
    Ok(text)
}

/// Section 2: N helpers at once, for a cached account and for accounts that must log in.
fn bursts(
    lab: &Lab,
    sts_url: &str,
    options: &Options,
    report: &mut Report,
) -> Result<String, String> {
    let mut accounts = vec![CACHED.to_owned()];
    accounts.extend(options.bursts.iter().map(|n| burst_account(*n)));
    let mut daemon = Daemon::start("bursts", lab, sts_url, accounts)?;
    // Only `cached` is logged in first; the login-N accounts have no session at all.
    helper_ok(&mut daemon.helper(CACHED, None))?;
    daemon.rss_warm = None;

    let stderr_file = daemon.env.path().join("burst-stderr");
    let mut text = format!(
        "All N helpers are spawned back to back and the wall time runs from the first spawn \
         to the last exit. A login-N account has `password_command` and push MFA and no \
         session, so the first request logs it in unattended and the others wait for that \
         login (single flight). Logins are counted by the fake JumpCloud. Load average \
         before: {}.\n\n\
         | N | account | wall time | failures | logins at JumpCloud | STS calls |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        loadavg()
    );
    let mut all_failures = 0;
    let mut login_counts_ok = true;
    for &n in &options.bursts {
        for account in [CACHED.to_owned(), burst_account(n)] {
            let logins = lab.logins();
            let sts_calls = lab.sts.calls();
            let (wall, failures, first_error) = burst(&daemon, &account, n, &stderr_file)?;
            let logins = lab.logins() - logins;
            let sts_calls = lab.sts.calls() - sts_calls;
            all_failures += failures;
            let expected = u64::from(account != CACHED);
            login_counts_ok &= logins == expected;
            let _ = writeln!(
                text,
                "| {n} | {} | {} | {failures}{} | {logins} | {sts_calls} |",
                if account == CACHED {
                    "cached"
                } else {
                    "must log in"
                },
                ms(wall),
                first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
            );
        }
    }
    let sizes = options
        .bursts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if all_failures > 0 {
        report
            .broken
            .push(format!("{all_failures} helpers failed in the bursts"));
    }
    if !login_counts_ok {
        report
            .broken
            .push("a burst logged in other than exactly once (see section 2)".to_owned());
    }
    report.target(
        &format!("bursts of N = {sizes}: no failures"),
        format!("{all_failures} failures"),
        Some(all_failures == 0),
    );
    report.target(
        "bursts: exactly 1 login per must-log-in burst (0 when cached)",
        if login_counts_ok {
            "as expected".into()
        } else {
            "see section 2".into()
        },
        Some(login_counts_ok),
    );
    Ok(text)
}

/// One burst: the wall time, the failures and the first failure's text.
fn burst(
    daemon: &Daemon,
    account: &str,
    n: usize,
    stderr_file: &Path,
) -> Result<(Duration, usize, Option<String>), String> {
    // stderr goes to one shared file (one descriptor, not N pipes); stdout is checked per
    // helper.
    let stderr = fs::File::create(stderr_file).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut children: Vec<Child> = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = daemon.helper(account, None);
        cmd.stderr(stderr.try_clone().map_err(|e| e.to_string())?);
        children.push(
            cmd.spawn()
                .map_err(|e| format!("cannot spawn samld-helper: {e}"))?,
        );
    }
    let mut failures = 0;
    for child in children {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if check_helper_output(out.status.success(), &out.stdout, b"").is_err() {
            failures += 1;
        }
    }
    let wall = start.elapsed();
    let first_error = (failures > 0).then(|| {
        fs::read_to_string(stderr_file)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("(nothing on stderr)")
            .to_owned()
    });
    Ok((wall, failures, first_error))
}

/// Section 3: memory, CPU time and wakeups of the idle daemons.
fn at_rest(
    daemons: [&Daemon; 2],
    start: &[ProcSample; 2],
    end: &[ProcSample; 2],
    big_warm: Duration,
    big_logins: u64,
    settled_for: Duration,
    report: &mut Report,
) -> String {
    let tick = procfs::ticks_per_second();
    let window = end[0].at.duration_since(start[0].at);
    let mut text = format!(
        "RSS right after READY=1, once every account holds credentials for all {} roles, and \
         at the end of an idle window of {:.1} s in which nothing talked to these daemons. The \
         window opened {:.0} s after their last login (their last requests, all answered from \
         memory, came in section 5), when what a login leaves behind (idle connections, \
         the DNS lookups' thread) is gone. Anonymous memory is the heap and the stacks; the \
         rest of the RSS is the binary's own pages. \
         CPU time is user + system from /proc/PID/stat; wakeups are the voluntary plus \
         involuntary context switches of every thread (/proc/PID/task/*/status). Logging the \
         {} in took {:.1} s ({big_logins} logins at JumpCloud).\n\n\
         | daemon | RSS at start | RSS with credentials | RSS after idle | of which anonymous | peak RSS | threads | CPU time idle | wakeups idle |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        ROLES.len(),
        window.as_secs_f64(),
        settled_for.as_secs_f64(),
        daemons[1].label,
        big_warm.as_secs_f64(),
    );
    let mut deltas_text = String::new();
    let mut total_wakeups = [0u64; 2];
    for (k, d) in daemons.iter().enumerate() {
        let deltas = procfs::thread_deltas(&start[k], &end[k]);
        total_wakeups[k] = deltas.iter().map(|t| t.switches).sum();
        let cpu = (end[k].utime + end[k].stime).saturating_sub(start[k].utime + start[k].stime);
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} ms | {} |",
            d.label,
            mib(d.rss_at_start),
            d.rss_warm.map_or("?".into(), mib),
            mib(end[k].rss_kib),
            mib(end[k].anon_kib),
            mib(end[k].hwm_kib),
            end[k].threads.len(),
            cpu * 1000 / tick,
            total_wakeups[k],
        );
        for t in deltas {
            let _ = writeln!(
                deltas_text,
                "| {} | {} ({}) | {} | {} | {} ms | {} |",
                d.label,
                t.name,
                t.tid,
                t.switches,
                t.nonvoluntary,
                t.cpu_ticks * 1000 / tick,
                t.note
            );
        }
    }
    let _ = write!(
        text,
        "\nPer thread over the idle window:\n\n\
         | daemon | thread (tid) | wakeups | of which involuntary | CPU | note |\n\
         | --- | --- | --- | --- | --- | --- |\n{deltas_text}"
    );
    let one_rss = daemons[0].rss_at_start.max(end[0].rss_kib);
    report.target(
        "idle RSS with 1 account under 15 MB",
        format!(
            "{} at start, {} after idle",
            mib(daemons[0].rss_at_start),
            mib(end[0].rss_kib)
        ),
        Some(one_rss < RSS_TARGET_KIB),
    );
    report.target(
        "no periodic wakeups at rest",
        format!(
            "{} and {} wakeups in {:.0} s ({} / {})",
            total_wakeups[0],
            total_wakeups[1],
            window.as_secs_f64(),
            daemons[0].label,
            daemons[1].label
        ),
        Some(total_wakeups == [0, 0]),
    );
    text
}

/// Section 4: the AWS CLI with the helper, with `cat`, and with keys in the environment.
fn aws_cli(
    lab: &Lab,
    venv: &Path,
    options: &Options,
    report: &mut Report,
) -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix("samld-bench-aws-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let moto = aws::Moto::start(venv, dir.path())?;
    let daemon =
        Daemon::start_with_app("moto", lab, &moto.url, APP_ONE_ROLE, vec![SOLO.to_owned()])?;
    let cli = aws_cli_for(&daemon, &moto, venv, dir.path())?;

    let load_before = loadavg();
    let samples = time_aws_variants(&cli, options)?;
    let sum = |v: aws::Variant| Summary::of(&samples[v.label()]);
    let (stat, helper, cat) = (
        sum(aws::Variant::Static),
        sum(aws::Variant::Helper),
        sum(aws::Variant::Cat),
    );
    let mut text = format!(
        "`aws sts get-caller-identity --endpoint-url {{moto}}` (awscli from the venv), {} runs \
         of each after {AWS_WARMUP_RUNS} warm-up runs, interleaved. All three use the same \
         keys, which moto issued to samld; moto named the same caller (ARN) each time. Load \
         average before: {load_before}, after: {}.\n\n\
         | credentials from | median | p25 | p75 | p99 | median vs static |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        options.aws_runs,
        loadavg()
    );
    for (label, s) in [
        (aws::Variant::Static.label(), stat),
        (aws::Variant::Helper.label(), helper),
        (aws::Variant::Cat.label(), cat),
    ] {
        let _ = writeln!(
            text,
            "| {label} | {} | {} | {} | {} | {} |",
            ms(s.median),
            ms(s.p25),
            ms(s.p75),
            ms(s.p99),
            ratio(s.median, stat.median)
        );
    }
    let diff = helper.median.as_secs_f64() - stat.median.as_secs_f64();
    let noise = stat.iqr().max(helper.iqr()).as_secs_f64() / 2.0;
    let _ = writeln!(
        text,
        "\nThe helper's median differs from the static keys' by {:+.1} ms; the runs' own spread \
         (half the larger interquartile range) is {:.1} ms. botocore spawning any \
         credential_process (the `cat` row) differs by {:+.1} ms.",
        diff * 1000.0,
        noise * 1000.0,
        (cat.median.as_secs_f64() - stat.median.as_secs_f64()) * 1000.0,
    );
    report.target(
        "AWS CLI: the helper adds no measurable time",
        format!(
            "{:+.1} ms ({}) against noise of ±{:.1} ms",
            diff * 1000.0,
            ratio(helper.median, stat.median),
            noise * 1000.0
        ),
        Some(diff <= noise),
    );
    drop(daemon);
    drop(moto);
    Ok(text)
}

/// The AWS CLI set up to take its credentials from `daemon`'s helper (and the other ways
/// the section compares), once the helper is seen to get credentials from moto.
fn aws_cli_for(
    daemon: &Daemon,
    moto: &aws::Moto,
    venv: &Path,
    dir: &Path,
) -> Result<aws::AwsCli, String> {
    let out = daemon
        .helper(SOLO, None)
        .output()
        .map_err(|e| format!("cannot run samld-helper: {e}"))?;
    check_helper_output(out.status.success(), &out.stdout, &out.stderr).map_err(|e| {
        let log = fs::read_to_string(dir.join("moto.log")).unwrap_or_default();
        format!(
            "samld-helper against moto: {e}\nmoto's log:\n{}",
            tail(&log, 30)
        )
    })?;
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let template = daemon.env.command("samld-helper");
    let mut base_env: Vec<(String, String)> = template
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .filter(|(k, _)| k != "PATH")
        .collect();
    let path = std::env::var("PATH").unwrap_or_default();
    base_env.push((
        "PATH".into(),
        format!("{}:{path}", venv.join("bin").display()),
    ));
    aws::AwsCli::new(
        venv,
        dir,
        &moto.url,
        &fixture::bin_path("samld-helper"),
        SOLO,
        &json,
        base_env,
    )
}

/// Times each way of getting credentials, interleaved, after warm-up runs that check the
/// ways all name the same caller.
fn time_aws_variants(
    cli: &aws::AwsCli,
    options: &Options,
) -> Result<BTreeMap<&'static str, Vec<Duration>>, String> {
    let mut samples: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut identities = Vec::new();
    let warmup = AWS_WARMUP_RUNS;
    for i in 0..warmup + options.aws_runs {
        for k in 0..aws::Variant::ALL.len() {
            let variant = aws::Variant::ALL[(i + k) % aws::Variant::ALL.len()];
            let (took, stdout) = cli.run(variant)?;
            if i >= warmup {
                samples.entry(variant.label()).or_default().push(took);
            } else {
                let doc: serde_json::Value = serde_json::from_str(&stdout)
                    .map_err(|e| format!("aws printed no JSON ({e}): {stdout}"))?;
                identities.push(doc["Arn"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    // The same keys, so moto must name the same caller whichever way they came (moto makes
    // up a new UserId each time, so only the ARN is compared).
    identities.dedup();
    if identities.len() != 1 {
        return Err(format!(
            "the variants saw different identities: {identities:?}"
        ));
    }
    Ok(samples)
}

/// Runs of each variant before the timed ones, left out of the timings.
const AWS_WARMUP_RUNS: usize = 2;

/// Section 5: helper and status latency with 1, 100 and 500 accounts, and the reload.
fn scaling(runtime: &Runtime, daemons: [&Daemon; 3], options: &Options) -> Result<String, String> {
    // The helper for the account in the middle of each config, interleaved across daemons.
    let load_before = loadavg();
    let mut helper_samples: [Vec<Duration>; 3] = Default::default();
    let mut status_samples: [Vec<Duration>; 3] = Default::default();
    let mut helpers: Vec<Command> = daemons
        .iter()
        .map(|d| d.helper(&d.accounts[d.accounts.len() / 2], None))
        .collect();
    let mut statuses: Vec<Command> = daemons
        .iter()
        .map(|d| {
            let mut c = d.env.command("samlctl");
            c.arg("status")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c
        })
        .collect();
    for i in 0..options.scale_runs + 5 {
        for k in 0..3 {
            let j = (i + k) % 3;
            let took = helper_ok(&mut helpers[j])?;
            if i >= 5 {
                helper_samples[j].push(took);
            }
        }
    }
    for i in 0..options.status_runs + 2 {
        for k in 0..3 {
            let j = (i + k) % 3;
            let took = timed(&mut statuses[j])?;
            if i >= 2 {
                status_samples[j].push(took);
            }
        }
    }
    let mut text = format!(
        "Each daemon's accounts all hold credentials for {} roles. The helper asks for the \
         account in the middle of the config; `samlctl status` lists every account and role. \
         {} helper and {} status runs per daemon, interleaved. Load average before: \
         {load_before}, after: {}.\n\n\
         | accounts | helper median | helper p99 | status median | status p99 | RSS with credentials |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        ROLES.len(),
        options.scale_runs,
        options.status_runs,
        loadavg()
    );
    let helper_sums = helper_samples.each_ref().map(|s| Summary::of(s));
    let status_sums = status_samples.each_ref().map(|s| Summary::of(s));
    for (k, d) in daemons.iter().enumerate() {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} |",
            d.accounts.len(),
            ms(helper_sums[k].median),
            ms(helper_sums[k].p99),
            ms(status_sums[k].median),
            ms(status_sums[k].p99),
            d.rss_warm.map_or("?".into(), mib),
        );
    }
    let big = daemons[2];
    let (parse, apply, first_apply) = reload_in_process(runtime, big, options)?;
    let end_to_end = reload_end_to_end(big, options)?;
    let _ = write!(
        text,
        "\nConfig reload at {n} accounts: reading and parsing the file {parse}, applying it \
         (one account changed) {apply}, the very first apply of all {n} accounts {first}; \
         medians of {runs} reloads in-process (the daemon's own `samld_config::load_or_empty` \
         and `Daemon::apply_config`). Seen from outside (file renamed into place until the \
         daemon logs `config reloaded`), a reload takes {e2e}, of which {quiet} is the \
         watcher's deliberate quiet period that lets an editor finish writing.\n",
        n = big.accounts.len(),
        parse = ms(parse),
        apply = ms(apply),
        first = ms(first_apply),
        runs = options.reload_runs.max(5),
        e2e = ms(end_to_end),
        quiet = ms(WATCH_QUIET),
    );
    let _ = writeln!(
        text,
        "\nThe helper's median with {} accounts is {} of its median with 1.",
        big.accounts.len(),
        ratio(helper_sums[2].median, helper_sums[0].median)
    );
    Ok(text)
}

/// The reload's own work, in this process with the daemon's code: read and parse the config
/// file, then apply it to a manager that holds the previous version. Returns the medians of
/// parse and apply, and the first apply (every account new).
fn reload_in_process(
    runtime: &Runtime,
    big: &Daemon,
    options: &Options,
) -> Result<(Duration, Duration, Duration), String> {
    use samld::manager::{DaemonOptions, Manager};
    let _context = runtime.enter();
    let path = big.env.config.clone();
    let manager = Manager::new(
        samld_config::Config::default(),
        DaemonOptions::new(path.clone()),
        std::sync::Arc::new(samld::clock::SystemClock),
        std::sync::Arc::new(samld::sts::SdkSts::new()),
        std::sync::Arc::new(samld::providers::DefaultProviders),
    );
    let dir = big.env.path().join("reload-variants");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let base = fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let variants = [base.clone(), with_region_changed(&base)];
    let files: Vec<PathBuf> = variants
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let p = dir.join(format!("config-{i}.toml"));
            fs::write(&p, text).map(|()| p)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let load = |p: &Path| {
        samld_config::load_or_empty(p)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    };

    let first = load(&files[0])?;
    let start = Instant::now();
    manager.apply_config(first);
    let first_apply = start.elapsed();

    let mut parses = Vec::new();
    let mut applies = Vec::new();
    for i in 0..options.reload_runs.max(5) * 2 {
        let start = Instant::now();
        let config = load(&files[(i + 1) % 2])?;
        parses.push(start.elapsed());
        let start = Instant::now();
        if *manager.config() != config {
            manager.apply_config(config);
        }
        applies.push(start.elapsed());
    }
    Ok((
        Summary::of(&parses).median,
        Summary::of(&applies).median,
        first_apply,
    ))
}

/// The config with the first account's region changed (one account's settings differ).
fn with_region_changed(text: &str) -> String {
    let marker = "role = \"Developer\"\n";
    match text.find(marker) {
        Some(at) => {
            let end = at + marker.len();
            let (head, rest) = text.split_at(end);
            if let Some(rest) = rest.strip_prefix("region = \"us-west-2\"\n") {
                format!("{head}{rest}")
            } else {
                format!("{head}region = \"us-west-2\"\n{rest}")
            }
        }
        None => text.to_owned(),
    }
}

/// A reload seen from outside: the config file renamed into place, until the daemon logs
/// that it reloaded. The median of a few.
fn reload_end_to_end(big: &Daemon, options: &Options) -> Result<Duration, String> {
    let mut times = Vec::new();
    for _ in 0..options.reload_runs {
        let text =
            with_region_changed(&fs::read_to_string(&big.env.config).map_err(|e| e.to_string())?);
        let before = big.process.log().matches("config reloaded").count();
        let tmp = big.env.config.with_extension("toml.tmp");
        fs::write(&tmp, text).map_err(|e| e.to_string())?;
        let start = Instant::now();
        fs::rename(&tmp, &big.env.config).map_err(|e| e.to_string())?;
        // The log is the only outside sign of a finished reload; poll it finely.
        loop {
            if big.process.log().matches("config reloaded").count() > before {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "no reload within 10 s; samld's log:\n{}",
                    tail(&big.process.log(), 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(start.elapsed());
    }
    Ok(Summary::of(&times).median)
}
