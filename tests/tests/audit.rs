//! The audit of credential hand-outs (`samlctl audit`, `last used` in `samlctl status`) with
//! the real binaries and the real AWS tools: who got which credentials, through what, and the
//! chain of processes that asked, without a secret anywhere in it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use samld_proto::{AuditEvent, AuditKind, Handout, StatusReport};
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_ROLE_ARN, FakeJumpCloud,
    FakeJumpCloudConfig,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig, IssuedCredentials};
use samld_tests::fixture::{DaemonProcess, TestEnv, bin_dir, stderr, stdout, succeeded};

/// A TOTP code that appears on a command line and must not appear in the audit.
const CODE_ON_THE_COMMAND_LINE: &str = "864213";

/// A logged-in daemon and its fakes. Field order is drop order: the daemon goes first.
struct World {
    _daemon: DaemonProcess,
    env: TestEnv,
    _jumpcloud: FakeJumpCloud,
    sts: FakeSts,
    _runtime: tokio::runtime::Runtime,
}

impl World {
    fn new() -> Self {
        Self::with_top_level("")
    }

    /// A world whose config starts with `top` (top-level keys such as `audit_log`).
    fn with_top_level(top: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (jumpcloud, sts) = runtime.block_on(async {
            (
                FakeJumpCloud::start(FakeJumpCloudConfig::default()).await,
                FakeSts::start(FakeStsConfig::default()).await,
            )
        });
        let config = format!(
            "{top}[defaults]\njumpcloud_console_url = \"{console}\"\nsts_endpoint = \"{sts}\"\n\
             url = \"{app}\"\nusername = \"{DEFAULT_EMAIL}\"\nrole = \"{DEFAULT_ROLE_ARN}\"\n\
             region = \"us-east-1\"\n\n[accounts.prod]\n",
            console = jumpcloud.base_url(),
            sts = sts.endpoint_url(),
            app = jumpcloud.app_url(DEFAULT_APP),
        );
        let mut env = TestEnv::new(&config);
        if let Some(root) = std::env::var_os("PYENV_ROOT") {
            env.extra_env
                .push(("PYENV_ROOT".into(), root.to_string_lossy().into_owned()));
        }
        let aws_config = env.path().join("aws-config");
        std::fs::write(
            &aws_config,
            "[profile prod]\ncredential_process = samld-helper prod\nregion = us-east-1\n",
        )
        .unwrap();
        env.extra_env.push((
            "AWS_CONFIG_FILE".into(),
            aws_config.to_string_lossy().into_owned(),
        ));
        env.extra_env
            .push(("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()));
        let daemon = env.start_daemon();
        let login = env.samlctl_with_stdin(
            &["login", "prod", "--password-stdin"],
            &format!("{DEFAULT_PASSWORD}\n"),
        );
        assert!(login.status.success(), "login: {}", stderr(&login));
        World {
            _daemon: daemon,
            env,
            _jumpcloud: jumpcloud,
            sts,
            _runtime: runtime,
        }
    }

    /// Any program, with this env's environment and the workspace's binaries first on PATH
    /// (as an installed samld-helper would be for the AWS CLI).
    fn tool(&self, program: &str) -> Command {
        let template = self.env.command("samlctl");
        let mut cmd = Command::new(program);
        cmd.env_clear();
        for (key, value) in template.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", bin_dir().display()))
            .stdin(Stdio::null());
        cmd
    }

    fn samlctl(&self, args: &[&str]) -> Output {
        self.env.samlctl(args)
    }

    /// The audit as `samlctl audit --json` prints it.
    fn audit(&self, args: &[&str]) -> (Vec<AuditEvent>, String) {
        let mut all = vec!["audit", "--json"];
        all.extend_from_slice(args);
        let out = self.samlctl(&all);
        let text = succeeded(&out, "samlctl audit --json");
        let events = text
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{text}"))
            })
            .collect();
        (events, text)
    }

    /// The hand-outs of the audit, oldest first.
    fn handouts(&self) -> Vec<AuditEvent> {
        self.audit(&[])
            .0
            .into_iter()
            .filter(|e| e.kind == AuditKind::Handout)
            .collect()
    }

    /// The credentials the fake STS issued last.
    fn issued(&self) -> IssuedCredentials {
        self.sts
            .issued()
            .last()
            .cloned()
            .expect("STS issued credentials")
    }
}

/// Writes an executable shell script, so that it shows in the process chain under its own
/// name, as a user's wrapper script would.
fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn names(event: &AuditEvent) -> Vec<String> {
    event
        .process
        .iter()
        .chain(&event.ancestry)
        .map(|p| p.name.clone())
        .collect()
}

#[test]
fn the_aws_cli_through_the_helper_appears_with_the_chain_that_ran_it() {
    let w = World::new();
    // deploy.sh runs the AWS CLI, which runs samld-helper: samld sees the helper and walks up.
    let deploy = script(
        w.env.path(),
        "deploy.sh",
        &format!(
            "aws sts get-caller-identity --profile prod --endpoint-url {} --output text\n\
             echo done",
            w.sts.endpoint_url()
        ),
    );
    let before = w.handouts().len();
    let out = w.tool(deploy.to_str().unwrap()).output().unwrap();
    assert!(out.status.success(), "deploy.sh: {}", stderr(&out));
    assert!(stdout(&out).contains("123456789012"), "{}", stdout(&out));

    let handouts = w.handouts();
    let event = handouts[before..]
        .iter()
        .find(|e| e.via == Some(Handout::Helper))
        .unwrap_or_else(|| panic!("no helper hand-out after the AWS CLI ran: {handouts:#?}"));
    assert_eq!(event.account.as_deref(), Some("prod"));
    assert_eq!(event.role_arn.as_deref(), Some(DEFAULT_ROLE_ARN));
    assert!(event.error.is_none(), "{event:#?}");
    let chain = names(event);
    assert_eq!(
        chain.first().map(String::as_str),
        Some("samld-helper"),
        "{event:#?}"
    );
    assert_eq!(chain.get(1).map(String::as_str), Some("aws"), "{event:#?}");
    assert_eq!(
        chain.get(2).map(String::as_str),
        Some("deploy.sh"),
        "{event:#?}"
    );
    let helper = event.process.as_ref().unwrap();
    assert!(
        helper
            .exe
            .as_deref()
            .is_some_and(|exe| exe.ends_with("/samld-helper")),
        "{helper:#?}"
    );
    assert!(
        helper
            .command_line
            .as_deref()
            .is_some_and(|c| c.contains("samld-helper prod")),
        "{helper:#?}"
    );

    // status names the tool that used the role, and so does the one-command answer.
    let out = w.samlctl(&["status", "--json"]);
    let report: StatusReport = serde_json::from_str(&succeeded(&out, "status --json")).unwrap();
    let role = &report.accounts[0].roles[0];
    let last = role.last_used.as_ref().expect("last_used");
    assert_eq!(last.via, Handout::Helper);
    assert_eq!(
        last.by.as_ref().map(|p| p.name.as_str()),
        Some("aws"),
        "{last:#?}"
    );
    let text = succeeded(&w.samlctl(&["status"]), "samlctl status");
    assert!(text.contains("last used") && text.contains("aws"), "{text}");
    let text = succeeded(
        &w.samlctl(&["audit", "prod", "--since", "1h"]),
        "samlctl audit",
    );
    assert!(text.contains("aws") && text.contains("deploy.sh"), "{text}");
}

#[test]
fn boto3_through_samlctl_exec_appears_by_name_with_the_exec_as_its_parent() {
    let w = World::new();
    let program = format!(
        "import boto3\n\
         print(boto3.client('sts', endpoint_url='{}', region_name='us-east-1')\
         .get_caller_identity()['Account'])",
        w.sts.endpoint_url()
    );
    let out = w.samlctl(&["exec", "prod", "--", "python3", "-c", &program]);
    assert!(out.status.success(), "boto3 through exec: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "123456789012");
    let handouts = w.handouts();
    let through_exec: Vec<_> = handouts
        .iter()
        .filter(|e| e.via == Some(Handout::ExecEndpoint))
        .collect();
    // Two events: the token handed to samlctl exec, then boto3's request with it.
    let [issued, event] = through_exec[..] else {
        panic!("two exec-endpoint hand-outs: {handouts:#?}");
    };
    assert_eq!(
        issued.process.as_ref().map(|p| p.name.as_str()),
        Some("samlctl"),
        "{issued:#?}"
    );
    assert_eq!(event.account.as_deref(), Some("prod"));
    assert!(event.error.is_none(), "{event:#?}");
    // The program that used the token, with the exec that holds it as its parent.
    let program = event.process.as_ref().expect("the program");
    assert_eq!(program.name, "python3", "{event:#?}");
    assert!(
        program
            .command_line
            .as_deref()
            .is_some_and(|c| c.contains("import boto3")),
        "{event:#?}"
    );
    assert_eq!(
        event.ancestry.first().map(|p| p.name.as_str()),
        Some("samlctl"),
        "the exec that holds the token: {event:#?}"
    );
    // And status names the program, not the exec.
    let out = w.samlctl(&["status", "--json"]);
    let report: StatusReport = serde_json::from_str(&succeeded(&out, "status --json")).unwrap();
    let used = report.accounts[0].roles[0]
        .last_used
        .as_ref()
        .expect("last use");
    assert_eq!(used.by.as_ref().map(|p| p.name.as_str()), Some("python3"));
}

#[test]
fn follow_sees_a_new_hand_out_as_it_happens() {
    let w = World::new();
    let existing = w.audit(&[]).0.len();
    let mut follow = w
        .env
        .command("samlctl")
        .args(["audit", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if lines_tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    for _ in 0..existing {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the events so far");
    }
    let out = w.env.helper(&["prod"]);
    let answered = Instant::now();
    assert!(out.status.success(), "{}", stderr(&out));
    let (seen, line) = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("a followed event");
    let _ = follow.kill();
    let _ = follow.wait();
    let event: AuditEvent = serde_json::from_str(&line).unwrap();
    assert_eq!(event.via, Some(Handout::Helper), "{event:#?}");
    let lag = seen.saturating_duration_since(answered);
    eprintln!("MEASURED --follow printed the hand-out {lag:?} after the helper exited");
    // samld pushes each event down the open connection as it records it (no polling): it
    // arrives in milliseconds. The bound leaves room for a machine loaded by the tests that
    // run beside this one; a follower that polled on a timer of seconds would still miss it.
    assert!(lag < Duration::from_secs(5), "--follow took {lag:?}");
}

#[test]
fn secrets_on_a_command_line_are_masked_and_no_credential_is_recorded() {
    let w = World::new();
    // A parent whose command line carries a code, as `samlctl login --mfa-code` would; `; true`
    // keeps sh from replacing itself with the helper.
    let out = w
        .tool("sh")
        .args([
            "-c",
            "samld-helper prod; true",
            "sh",
            "--mfa-code",
            CODE_ON_THE_COMMAND_LINE,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let handouts = w.handouts();
    let event = handouts.last().expect("a hand-out");
    let parent = event.ancestry.first().expect("the helper's parent");
    let line = parent.command_line.as_deref().unwrap_or_default();
    assert!(line.contains("--mfa-code"), "{parent:#?}");
    assert!(!line.contains(CODE_ON_THE_COMMAND_LINE), "{parent:#?}");

    let issued = w.issued();
    let (_, json) = w.audit(&[]);
    let human = succeeded(&w.samlctl(&["audit"]), "samlctl audit");
    for (what, secret) in [
        ("the code", CODE_ON_THE_COMMAND_LINE),
        ("the password", DEFAULT_PASSWORD),
        ("the access key id", issued.access_key_id.as_str()),
        ("the secret key", issued.secret_access_key.as_str()),
        ("the session token", issued.session_token.as_str()),
    ] {
        assert!(!json.contains(secret), "{what} in `samlctl audit --json`");
        assert!(!human.contains(secret), "{what} in `samlctl audit`");
    }
}

#[test]
fn the_audit_log_file_keeps_the_events_privately_and_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let w = World::with_top_level(&format!("audit_log = \"{}\"\n", file.display()));
    let out = w.env.helper(&["prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (events, _) = w.audit(&[]);
    let text = std::fs::read_to_string(&file).expect("the audit file");
    let written: Vec<AuditEvent> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(written, events, "the file holds what samlctl audit shows");
    assert!(
        written
            .iter()
            .any(|e| e.kind == AuditKind::Handout && e.via == Some(Handout::Helper)),
        "{text}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let issued = w.issued();
    for secret in [
        DEFAULT_PASSWORD,
        issued.access_key_id.as_str(),
        issued.secret_access_key.as_str(),
        issued.session_token.as_str(),
    ] {
        assert!(!text.contains(secret), "a credential in the audit file");
    }
}

#[test]
fn a_full_ring_drops_the_oldest_events_and_says_how_many() {
    // The ring keeps the last DEFAULT_CAPACITY (1,000) events: make 1,050 hand-outs after the
    // login, straight through the client library (no process per request: this is about the
    // ring, not about who asks).
    let w = World::new();
    let (before, _) = w.audit(&[]);
    const HANDOUTS: usize = 1_050;
    let options = samld_client::ConnectOptions::new(&w.env.socket).autostart(false);
    for _ in 0..HANDOUTS {
        options
            .connect()
            .expect("connect")
            .get_credentials(
                "prod",
                None,
                false,
                None,
                &mut samld_client::NoPrompter,
                &mut |_| {},
            )
            .expect("credentials");
    }
    let recorded = before.len() + HANDOUTS;
    let kept = 1_000;
    let dropped = recorded - kept;

    let (events, _) = w.audit(&[]);
    assert_eq!(events.len(), kept);
    // The oldest went first: what is left is the newest, in order, with no gap.
    let first = events[0].seq;
    assert_eq!(first, dropped as u64 + 1, "{:?}", &events[..2]);
    assert!(events.windows(2).all(|p| p[1].seq == p[0].seq + 1));
    assert!(events.iter().all(|e| e.kind == AuditKind::Handout));

    // Both forms say how many were dropped: the table in its footer, --json on stderr (its
    // stdout stays one event per line).
    let table = succeeded(&w.samlctl(&["audit"]), "samlctl audit");
    let footer = format!("{dropped} older events were dropped (samld keeps the last 1,000)");
    assert!(
        table.trim_end().ends_with(&footer),
        "{}",
        &table[table.len().saturating_sub(300)..]
    );
    let out = w.samlctl(&["audit", "--json"]);
    assert!(stderr(&out).contains(&footer), "{}", stderr(&out));
}
