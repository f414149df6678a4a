//! `samld-soak`: the real `samld` kept busy for minutes with short AWS sessions (issue 6).
//!
//! It starts a fake JumpCloud and a fake STS on 127.0.0.1, runs `samld` (from the same
//! target directory) with one account that can log in unattended (`password_command` and
//! a JumpCloud Protect push the fake approves), logs in once with `samlctl login`, and then
//! calls `samld-helper` continuously from several threads while STS issues credentials that
//! live a minute. Now and then it ends the JumpCloud session, as an org's session timeout
//! would, and samld must log in again by itself, exactly once per ended session.
//!
//! It prints a summary and exits non-zero on any failed helper call, any credentials handed
//! out expired or unknown to STS, a login count other than one per JumpCloud session, more
//! STS calls than the refresh schedule allows, or daemon RSS growth past a bound.
//!
//! ```text
//! samld-soak [--minutes N] [--loops N] [--pause-ms N] [--lifetime-secs N]
//!            [--jumpcloud-session-secs N] [--max-rss-growth-mb N]
//! ```

use std::collections::HashSet;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, FakeJumpCloud, FakeJumpCloudConfig, FakeJumpCloudStats, FakeUser, PushBehavior,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig};
use samld_tests::fixture::{TestEnv, stderr};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ACCOUNT: &str = "soak";
const EMAIL: &str = "soak.user@example.com";
const PASSWORD: &str = "pw-soak-Gq3xVt7mWp2";

const USAGE: &str = "usage: samld-soak [--minutes N] [--loops N] [--pause-ms N] [--lifetime-secs N] \
                     [--jumpcloud-session-secs N] [--max-rss-growth-mb N]";

/// The run's shape.
#[derive(Debug, Clone)]
struct Options {
    /// How long the helpers run.
    duration: Duration,
    /// Helper loops running side by side.
    loops: usize,
    /// Pause between two calls of one loop.
    pause: Duration,
    /// How long STS credentials live.
    lifetime: Duration,
    /// How long a JumpCloud session lives before the soak ends it.
    jumpcloud_session: Duration,
    /// The most the daemon's RSS may grow from the start (after warm-up) to the end.
    max_rss_growth_kb: u64,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut minutes = 10.0_f64;
        let mut loops = 4;
        let mut pause_ms = 20;
        let mut lifetime_secs = 60;
        let mut jumpcloud_secs: Option<u64> = None;
        let mut max_rss_mb = 8;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(String::new());
            }
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{arg} {value}: {e}");
            match arg.as_str() {
                "--minutes" => minutes = value.parse().map_err(|e| bad(&e))?,
                "--loops" => loops = value.parse().map_err(|e| bad(&e))?,
                "--pause-ms" => pause_ms = value.parse().map_err(|e| bad(&e))?,
                "--lifetime-secs" => lifetime_secs = value.parse().map_err(|e| bad(&e))?,
                "--jumpcloud-session-secs" => {
                    jumpcloud_secs = Some(value.parse().map_err(|e| bad(&e))?)
                }
                "--max-rss-growth-mb" => max_rss_mb = value.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("unknown option `{arg}`")),
            }
        }
        if minutes.is_nan() || minutes <= 0.0 || loops == 0 || lifetime_secs < 15 {
            return Err(
                "--minutes must be positive, --loops at least 1, --lifetime-secs at least 15"
                    .into(),
            );
        }
        let duration = Duration::from_secs_f64(minutes * 60.0);
        // Long enough for several refreshes per session, short enough that even a two-minute
        // run ends one session and sees the unattended login that follows.
        let lifetime = Duration::from_secs(lifetime_secs);
        let jumpcloud_session = jumpcloud_secs
            .map(Duration::from_secs)
            .unwrap_or_else(|| (duration / 2).min(Duration::from_secs(150)).max(lifetime));
        if jumpcloud_session < lifetime {
            // Each ended session must be renewed (at the next refresh) before the next ends.
            return Err("--jumpcloud-session-secs must be at least --lifetime-secs".into());
        }
        Ok(Self {
            duration,
            loops,
            pause: Duration::from_millis(pause_ms),
            lifetime,
            jumpcloud_session,
            max_rss_growth_kb: max_rss_mb * 1024,
        })
    }
}

/// What the helper loops saw.
#[derive(Debug, Default)]
struct Calls {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    failed: u64,
    /// Every AccessKeyId handed out.
    keys: HashSet<String>,
    /// The least lifetime left on credentials when they were handed out.
    min_remaining: Option<time::Duration>,
}

impl Calls {
    fn merge(&mut self, other: Calls) {
        self.latencies.extend(other.latencies);
        self.failed += other.failed;
        for f in other.failures {
            if self.failures.len() < 5 {
                self.failures.push(f);
            }
        }
        self.keys.extend(other.keys);
        self.min_remaining = match (self.min_remaining, other.min_remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.failures.len() < 5 {
            self.failures.push(why);
        }
    }

    /// One `samld-helper` run: its latency, and whether its answer is good.
    fn call(&mut self, env: &TestEnv) {
        let started = Instant::now();
        let out = env
            .command("samld-helper")
            .arg(ACCOUNT)
            .stdin(Stdio::null())
            .output();
        let latency = started.elapsed();
        self.latencies.push(latency);
        let out = match out {
            Ok(out) => out,
            Err(e) => return self.fail(format!("cannot run samld-helper: {e}")),
        };
        if !out.status.success() {
            return self.fail(format!("{}: {}", out.status, stderr(&out).trim()));
        }
        let doc: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(doc) => doc,
            Err(e) => return self.fail(format!("stdout is not JSON: {e}")),
        };
        let (Some(key), Some(expiration)) = (
            doc["AccessKeyId"].as_str(),
            doc["Expiration"]
                .as_str()
                .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok()),
        ) else {
            return self.fail(format!("not a credential document: {doc}"));
        };
        let remaining = expiration - OffsetDateTime::now_utc();
        if !remaining.is_positive() {
            return self.fail(format!("{key} handed out expired ({expiration})"));
        }
        self.min_remaining = Some(self.min_remaining.map_or(remaining, |m| m.min(remaining)));
        if !self.keys.contains(key) {
            self.keys.insert(key.to_owned());
        }
    }
}

/// The daemon's resident set size in kB, from /proc.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn config_toml(jc: &FakeJumpCloud, sts: &FakeSts) -> String {
    format!(
        "[accounts.{ACCOUNT}]\nurl = \"{app}\"\nusername = \"{EMAIL}\"\nregion = \"us-east-1\"\n\
         mfa = \"push\"\npassword_command = \"echo '{PASSWORD}'\"\nrefresh_before = \"45s\"\n\
         jumpcloud_console_url = \"{console}\"\nsts_endpoint = \"{sts}\"\n",
        app = jc.app_url(DEFAULT_APP),
        console = jc.base_url(),
        sts = sts.endpoint_url(),
    )
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("samld-soak: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match soak(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("samld-soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(false)` when a check failed (the summary says which).
fn soak(options: &Options) -> Result<bool, String> {
    // The fakes run on their own worker thread while this thread keeps time.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let user = FakeUser::new(EMAIL, PASSWORD)
        .with_factor("push", "available")
        .with_push(PushBehavior::AcceptAfterPolls(1));
    let (jc, sts) = rt.block_on(async {
        (
            FakeJumpCloud::start(FakeJumpCloudConfig::with_user(user)).await,
            FakeSts::start(FakeStsConfig::default().with_credential_lifetime(options.lifetime))
                .await,
        )
    });
    let mut env = TestEnv::new(&config_toml(&jc, &sts));
    // What a user runs with; debug would make the log, not the daemon, the subject.
    env.extra_env.push(("SAMLD_LOG".into(), "info".into()));
    let daemon = env.start_daemon();
    let pid = daemon.pid();
    println!(
        "samld-soak: {:.1} min, {} helper loops ({} ms apart), {} s AWS sessions, JumpCloud \
         session ended every {} s; samld pid {pid}",
        options.duration.as_secs_f64() / 60.0,
        options.loops,
        options.pause.as_millis(),
        options.lifetime.as_secs(),
        options.jumpcloud_session.as_secs(),
    );

    let login_at = Instant::now();
    login_and_warm_up(&env)?;
    let rss_start = rss_kb(pid).ok_or("cannot read samld's VmRSS")?;

    let env = Arc::new(env);
    let stop = Arc::new(AtomicBool::new(false));
    let loops = spawn_helper_loops(&env, &stop, options);
    let started = Instant::now();
    let mut timeline = keep_time(options, started, &jc, &sts, pid, rss_start);
    stop.store(true, Ordering::Relaxed);
    let mut calls = Calls::default();
    for handle in loops {
        calls.merge(handle.join().map_err(|_| "a helper loop panicked")?);
    }
    let rss_end = rss_kb(pid).ok_or("cannot read samld's VmRSS at the end")?;
    timeline.rss_max = timeline.rss_max.max(rss_end);
    let elapsed = started.elapsed();
    let stats = jc.stats();
    let sts_calls = sts.calls();
    let issued: HashSet<String> = sts.issued_key_ids().into_iter().collect();
    let unknown_keys = calls.keys.difference(&issued).count();
    drop(daemon);
    let run = Run {
        calls,
        rss_start,
        rss_middle: timeline.rss_middle.unwrap_or(rss_end),
        rss_end,
        timeline,
        elapsed,
        stats,
        sts_calls,
        sts_allowed: sts_allowed(options, login_at),
        issued,
        unknown_keys,
    };

    let problems = problems(options, &run);
    print_summary(options, &run);
    if problems.is_empty() {
        println!("\nPASS");
        Ok(true)
    } else {
        println!("\nFAIL");
        for p in &problems {
            println!("  - {p}");
        }
        for f in &run.calls.failures {
            println!("  failed call: {f}");
        }
        Ok(false)
    }
}

/// Logs in once with `samlctl login`, then makes the helper calls that allocate what every
/// later call reuses, so that the RSS measured next is the daemon's settled size.
fn login_and_warm_up(env: &TestEnv) -> Result<(), String> {
    let login = env
        .command("samlctl")
        .args(["login", ACCOUNT])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("samlctl login: {e}"))?;
    if !login.status.success() {
        return Err(format!("samlctl login failed: {}", stderr(&login)));
    }
    let mut warmup = Calls::default();
    for _ in 0..50 {
        warmup.call(env);
    }
    if warmup.failed > 0 {
        return Err(format!("warm-up calls failed: {:?}", warmup.failures));
    }
    Ok(())
}

/// Starts the helper loops; each runs until `stop` is set and returns what it saw.
fn spawn_helper_loops(
    env: &Arc<TestEnv>,
    stop: &Arc<AtomicBool>,
    options: &Options,
) -> Vec<std::thread::JoinHandle<Calls>> {
    (0..options.loops)
        .map(|_| {
            let (env, stop, pause) = (env.clone(), stop.clone(), options.pause);
            std::thread::spawn(move || {
                let mut calls = Calls::default();
                while !stop.load(Ordering::Relaxed) {
                    calls.call(&env);
                    std::thread::sleep(pause);
                }
                calls
            })
        })
        .collect()
}

/// What the clock of the run saw while the helpers ran.
struct Timeline {
    sessions_ended: u64,
    /// Login counts that were wrong when a session was about to be ended.
    login_mismatches: Vec<String>,
    rss_samples: Vec<(Duration, u64)>,
    /// The first sample from the second half of the run.
    rss_middle: Option<u64>,
    rss_max: u64,
}

/// The clock of the run, until `options.duration` after `started`: end JumpCloud sessions
/// on schedule, sample the daemon's RSS, report progress.
fn keep_time(
    options: &Options,
    started: Instant,
    jc: &FakeJumpCloud,
    sts: &FakeSts,
    pid: u32,
    rss_start: u64,
) -> Timeline {
    let end = started + options.duration;
    // An ended session is renewed at the next refresh (within two thirds of a lifetime);
    // none is ended so late that the run stops before that.
    let last_end_at = options
        .duration
        .saturating_sub(options.lifetime * 2 / 3 + Duration::from_secs(10));
    let mut next_session_end = options.jumpcloud_session;
    let mut timeline = Timeline {
        sessions_ended: 0,
        login_mismatches: Vec::new(),
        rss_samples: vec![(Duration::ZERO, rss_start)],
        rss_middle: None,
        rss_max: rss_start,
    };
    let mut next_sample = Duration::from_secs(10);
    let mut next_report = Duration::from_secs(30);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250).min(end - Instant::now()));
        let elapsed = started.elapsed();
        if elapsed >= next_session_end && next_session_end <= last_end_at {
            timeline.end_session(jc);
            next_session_end += options.jumpcloud_session;
        }
        if elapsed >= next_sample {
            timeline.sample_rss(pid, elapsed, options.duration);
            next_sample += Duration::from_secs(10);
        }
        if elapsed >= next_report {
            let stats = jc.stats();
            println!(
                "  {:>5.0} s: JumpCloud logins {}, STS calls {}, samld RSS {}",
                elapsed.as_secs_f64(),
                stats.logins,
                sts.calls(),
                rss_kb(pid).map(mb).unwrap_or_else(|| "?".into()),
            );
            next_report += Duration::from_secs(30);
        }
    }
    timeline
}

impl Timeline {
    /// Ends the JumpCloud session, as an org's session timeout would, after checking that
    /// each session so far had one login: the first, and one after each ended session.
    fn end_session(&mut self, jc: &FakeJumpCloud) {
        let logins = jc.stats().logins;
        if logins != self.sessions_ended + 1 {
            self.login_mismatches.push(format!(
                "{logins} logins before ending session {} (expected {})",
                self.sessions_ended + 1,
                self.sessions_ended + 1
            ));
        }
        jc.expire_all_sessions();
        self.sessions_ended += 1;
    }

    /// Records the daemon's RSS now, `elapsed` into a run of `duration`.
    fn sample_rss(&mut self, pid: u32, elapsed: Duration, duration: Duration) {
        if let Some(rss) = rss_kb(pid) {
            self.rss_samples.push((elapsed, rss));
            self.rss_max = self.rss_max.max(rss);
            if self.rss_middle.is_none() && elapsed >= duration / 2 {
                self.rss_middle = Some(rss);
            }
        }
    }
}

/// Everything the run measured, for the checks and the summary.
struct Run {
    calls: Calls,
    timeline: Timeline,
    rss_start: u64,
    rss_middle: u64,
    rss_end: u64,
    elapsed: Duration,
    stats: FakeJumpCloudStats,
    sts_calls: usize,
    /// The most STS calls the refresh schedule needs since the login.
    sts_allowed: usize,
    /// Every AccessKeyId STS issued.
    issued: HashSet<String>,
    /// Keys handed out that STS never issued.
    unknown_keys: usize,
}

impl Run {
    fn expected_logins(&self) -> u64 {
        self.timeline.sessions_ended + 1
    }

    fn rss_growth(&self) -> u64 {
        self.rss_end.saturating_sub(self.rss_start)
    }
}

/// One refresh per two thirds of a lifetime (less 2% jitter), plus the login's call.
fn sts_allowed(options: &Options, login_at: Instant) -> usize {
    let period = options.lifetime.as_secs_f64() * 2.0 / 3.0 * 0.98;
    (login_at.elapsed().as_secs_f64() / period).ceil() as usize + 1
}

/// What went wrong in the run, if anything.
fn problems(options: &Options, run: &Run) -> Vec<String> {
    let (calls, stats) = (&run.calls, &run.stats);
    let expected_logins = run.expected_logins();
    let mut problems = run.timeline.login_mismatches.clone();
    if calls.failed > 0 {
        problems.push(format!("{} helper calls failed", calls.failed));
    }
    if run.unknown_keys > 0 {
        problems.push(format!(
            "{} keys handed out were never issued by STS",
            run.unknown_keys
        ));
    }
    if stats.logins != expected_logins {
        problems.push(format!(
            "{} JumpCloud logins for {expected_logins} sessions",
            stats.logins
        ));
    }
    if stats.password_posts != expected_logins
        || stats.pushes_started != expected_logins
        || stats.failed_passwords != 0
    {
        problems.push(format!(
            "one password and one push per login expected: {} password posts ({} failed), {} pushes",
            stats.password_posts, stats.failed_passwords, stats.pushes_started
        ));
    }
    if run.sts_calls > run.sts_allowed {
        problems.push(format!(
            "{} STS calls, more than the {} the refresh schedule needs",
            run.sts_calls, run.sts_allowed
        ));
    }
    let growth = run.rss_growth();
    if growth > options.max_rss_growth_kb {
        problems.push(format!(
            "samld's RSS grew by {} (more than {})",
            mb(growth),
            mb(options.max_rss_growth_kb)
        ));
    }
    problems
}

/// Prints the summary table and the RSS samples.
fn print_summary(options: &Options, run: &Run) {
    let rows = summary_rows(options, run);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("\n{:<width$}  value", "samld soak");
    println!("{}  {}", "-".repeat(width), "-".repeat(32));
    for (k, v) in &rows {
        println!("{k:<width$}  {v}");
    }
    let samples: Vec<String> = run
        .timeline
        .rss_samples
        .iter()
        .map(|(at, kb)| format!("{:.0}s={:.1}", at.as_secs_f64(), *kb as f64 / 1024.0))
        .collect();
    println!("\nRSS samples (MB): {}", samples.join(" "));
}

/// The rows of the summary table: what was measured, and what was expected.
fn summary_rows(options: &Options, run: &Run) -> Vec<(&'static str, String)> {
    let (calls, stats, elapsed) = (&run.calls, &run.stats, run.elapsed);
    let mut sorted = calls.latencies.clone();
    sorted.sort_unstable();
    let total = sorted.len() as u64;
    vec![
        (
            "duration",
            format!("{:.1} min", elapsed.as_secs_f64() / 60.0),
        ),
        ("helper loops", options.loops.to_string()),
        (
            "helper calls",
            format!(
                "{total} ({:.1}/s)",
                total as f64 / elapsed.as_secs_f64().max(1.0)
            ),
        ),
        ("failed calls", calls.failed.to_string()),
        (
            "latency p50 / p90 / p99",
            format!(
                "{} / {} / {}",
                ms(percentile(&sorted, 50.0)),
                ms(percentile(&sorted, 90.0)),
                ms(percentile(&sorted, 99.0))
            ),
        ),
        (
            "latency max",
            ms(sorted.last().copied().unwrap_or_default()),
        ),
        (
            "least lifetime left when served",
            calls
                .min_remaining
                .map(|d| format!("{:.1} s", d.as_seconds_f64()))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "distinct keys served / issued",
            format!("{} / {}", calls.keys.len(), run.issued.len()),
        ),
        (
            "STS calls (allowed)",
            format!("{} ({})", run.sts_calls, run.sts_allowed),
        ),
        (
            "JumpCloud sessions ended",
            run.timeline.sessions_ended.to_string(),
        ),
        (
            "JumpCloud logins (expected)",
            format!("{} ({})", stats.logins, run.expected_logins()),
        ),
        (
            "password posts / pushes",
            format!("{} / {}", stats.password_posts, stats.pushes_started),
        ),
        ("SAML assertions served", stats.saml_pages.to_string()),
        (
            "samld RSS start / middle / end",
            format!(
                "{} / {} / {}",
                mb(run.rss_start),
                mb(run.rss_middle),
                mb(run.rss_end)
            ),
        ),
        ("samld RSS max", mb(run.timeline.rss_max)),
        ("samld RSS growth", mb(run.rss_growth())),
    ]
}
