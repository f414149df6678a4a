//! `samlctl exec`, `env` and `console` with the real binaries: a daemon logged in to the fake
//! JumpCloud, credentials from the fake STS, console sign-in at the fake federation endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use samld_tests::fake_federation::FakeFederation;
use samld_tests::fake_jumpcloud::{
    DEFAULT_APP, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_ROLE_ARN, FakeJumpCloud,
    FakeJumpCloudConfig,
};
use samld_tests::fake_sts::{FakeSts, FakeStsConfig, IssuedCredentials};
use samld_tests::fixture::{DaemonProcess, TestEnv, stderr, stdout};

/// A logged-in daemon and its fakes. Field order is drop order: the daemon goes first.
struct World {
    daemon: DaemonProcess,
    env: TestEnv,
    _jumpcloud: FakeJumpCloud,
    sts: FakeSts,
    federation: FakeFederation,
    _runtime: tokio::runtime::Runtime,
}

impl World {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (jumpcloud, sts, federation) = runtime.block_on(async {
            (
                FakeJumpCloud::start(FakeJumpCloudConfig::default()).await,
                FakeSts::start(FakeStsConfig::default()).await,
                FakeFederation::start().await,
            )
        });
        let config = format!(
            r#"
[defaults]
jumpcloud_console_url = "{console}"
sts_endpoint = "{sts}"
federation_url = "{federation}"
url = "{app}"
username = "{DEFAULT_EMAIL}"
role = "{DEFAULT_ROLE_ARN}"

[accounts.prod]
region = "us-east-2"

# Another JumpCloud user: prod's sign-in is not stage's (the same user's accounts share one
# JumpCloud session, and stage would then need no login of its own).
[accounts.stage]
username = "stage.user@example.com"
"#,
            console = jumpcloud.base_url(),
            sts = sts.endpoint_url(),
            federation = federation.url(),
            app = jumpcloud.app_url(DEFAULT_APP),
        );
        let mut env = TestEnv::new(&config);
        if let Some(root) = std::env::var_os("PYENV_ROOT") {
            env.extra_env
                .push(("PYENV_ROOT".into(), root.to_string_lossy().into_owned()));
        }
        let daemon = env.start_daemon();
        let login = env.samlctl_with_stdin(
            &["login", "prod", "--password-stdin"],
            &format!("{DEFAULT_PASSWORD}\n"),
        );
        assert!(login.status.success(), "login: {}", stderr(&login));
        World {
            daemon,
            env,
            _jumpcloud: jumpcloud,
            sts,
            federation,
            _runtime: runtime,
        }
    }

    /// The credentials the fake STS issued last.
    fn issued(&self) -> IssuedCredentials {
        self.sts
            .issued()
            .last()
            .cloned()
            .expect("STS issued credentials")
    }

    fn samlctl(&self, args: &[&str]) -> std::process::Output {
        self.env.samlctl(args)
    }
}

/// `NAME=value` lines of `env` output (single-line values only, which is all AWS uses).
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// GET `url` with `Authorization: token`; the status (0 when the connection is refused or
/// closed) and the body.
fn get_with_token(url: &str, token: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let Ok(mut stream) = TcpStream::connect(host) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Reads lines until one equals `marker`, returning those before it.
fn read_until(reader: &mut impl BufRead, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read child output");
        assert!(n > 0, "output ended before {marker}; got:\n{seen}");
        if line.trim_end() == marker {
            return seen;
        }
        seen.push_str(&line);
    }
}

fn spawn_exec(world: &World, args: &[&str], extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = world.env.command("samlctl");
    cmd.arg("exec")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn samlctl exec")
}

/// Fails the test when `program PROBE...` does not succeed: a test of the real AWS tools
/// must not pass without them.
fn require(program: &str, probe: &[&str]) {
    let found = std::process::Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{program} {}` failed: this test needs the AWS CLI and botocore on PATH; \
         scripts/test.sh puts the interop venv (scripts/interop/venv.sh) there",
        probe.join(" ")
    );
}

#[test]
fn exec_gives_the_child_a_live_endpoint_that_dies_with_it() {
    let world = World::new();
    let mut child = spawn_exec(
        &world,
        &[
            "prod",
            "--",
            "sh",
            "-c",
            "env; echo __END__; read line; exit 0",
        ],
        // Settings of an outer environment that would otherwise win over the endpoint.
        &[
            ("AWS_PROFILE", "someone-else"),
            ("AWS_ACCESS_KEY_ID", "AKIAOUTER"),
        ],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let vars = parse_env(&read_until(&mut out, "__END__"));

    let url = var(&vars, "AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .expect("FULL_URI set")
        .to_owned();
    let token = var(&vars, "AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .expect("token set")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(token.len(), 64);
    assert_eq!(var(&vars, "AWS_REGION"), Some("us-east-2"));
    assert_eq!(var(&vars, "AWS_DEFAULT_REGION"), Some("us-east-2"));
    assert_eq!(var(&vars, "SAMLD_EXEC"), Some("prod"));
    assert_eq!(var(&vars, "AWS_PROFILE"), None);
    assert_eq!(var(&vars, "AWS_ACCESS_KEY_ID"), None);

    let (status, body) = get_with_token(&url, &token);
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let issued = world.issued();
    assert_eq!(doc["AccessKeyId"], issued.access_key_id.as_str());
    assert_eq!(doc["SecretAccessKey"], issued.secret_access_key.as_str());
    assert_eq!(doc["Token"], issued.session_token.as_str());
    assert_eq!(doc["RoleArn"], DEFAULT_ROLE_ARN);

    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    // The daemon revokes the token when samlctl's connection closes, which it notices a
    // moment after samlctl exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get_with_token(&url, &token);
        if status != 200 {
            assert!(status == 0 || status == 401, "revoked, got {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the token outlived the exec");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = world.daemon.log();
    assert!(!log.contains(&token), "the daemon logged the token");
    assert!(!log.contains(&issued.secret_access_key));
}

#[test]
fn real_aws_tools_use_the_endpoint() {
    let world = World::new();
    let sts = world.sts.endpoint_url();
    require("python3", &["-c", "import botocore"]);
    let script = "import botocore.session\n\
                  c = botocore.session.get_session().get_credentials()\n\
                  print(c.method, c.get_frozen_credentials().access_key)";
    let out = world.samlctl(&["exec", "prod", "--", "python3", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("container-role {}", world.issued().access_key_id)
    );
    require("aws", &["--version"]);
    let out = world.samlctl(&[
        "exec",
        "prod",
        "--",
        "aws",
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        &sts,
        "--output",
        "text",
    ]);
    assert!(out.status.success(), "aws failed: {}", stderr(&out));
    assert!(stdout(&out).contains("123456789012"), "{}", stdout(&out));
    assert_eq!(
        world.sts.caller_identity_keys().last(),
        Some(&world.issued().access_key_id),
        "the AWS CLI signed with the daemon's credentials"
    );
}

#[test]
fn exit_status_and_signals_pass_through() {
    let world = World::new();

    let out = world.samlctl(&["exec", "prod", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    let out = world.samlctl(&["exec", "prod", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "dies the way the child died"
    );

    let out = world.samlctl(&["exec", "prod", "--", "no-such-program-here"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("command not found"),
        "{}",
        stderr(&out)
    );

    // A TERM sent to samlctl (by a process: a supervisor, `kill`) reaches the child.
    let mut child = spawn_exec(
        &world,
        &[
            "prod",
            "--",
            "sh",
            "-c",
            r#"trap 'echo got-term; exit 42' TERM; echo ready; i=0; while [ $i -lt 60 ]; do sleep 1 & wait $!; i=$((i+1)); done"#,
        ],
        &[],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "ready");
    // SAFETY: kill only signals our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    read_until(&mut out, "got-term");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "samlctl survived and passed on the exit code"
    );
}

#[test]
fn nested_exec_is_refused_unless_forced() {
    let world = World::new();
    let out = world
        .env
        .command("samlctl")
        .args(["exec", "prod", "--", "sh", "-c", "echo ran"])
        .env("SAMLD_EXEC", "stage")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already inside `samlctl exec stage`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "", "the command did not run");

    let out = world
        .env
        .command("samlctl")
        .args([
            "exec",
            "--force",
            "prod",
            "--",
            "sh",
            "-c",
            "echo $SAMLD_EXEC",
        ])
        .env("SAMLD_EXEC", "stage")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "prod\n");
}

#[test]
fn an_account_without_credentials_runs_nothing() {
    let world = World::new();
    let out = world.samlctl(&["exec", "stage", "--", "sh", "-c", "echo ran"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("samlctl login stage"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn static_exec_and_env_hand_out_the_keys() {
    let world = World::new();
    let out = world
        .env
        .command("samlctl")
        .args(["exec", "--static", "prod", "--", "sh", "-c", "env"])
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://127.0.0.1:1/outer",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let vars = parse_env(&stdout(&out));
    let issued = world.issued();
    assert_eq!(
        var(&vars, "AWS_ACCESS_KEY_ID"),
        Some(issued.access_key_id.as_str())
    );
    assert_eq!(
        var(&vars, "AWS_SECRET_ACCESS_KEY"),
        Some(issued.secret_access_key.as_str())
    );
    assert_eq!(
        var(&vars, "AWS_SESSION_TOKEN"),
        Some(issued.session_token.as_str())
    );
    assert!(var(&vars, "AWS_CREDENTIAL_EXPIRATION").is_some_and(|e| e.ends_with('Z')));
    assert_eq!(var(&vars, "AWS_DEFAULT_REGION"), Some("us-east-2"));
    assert_eq!(var(&vars, "AWS_CONTAINER_CREDENTIALS_FULL_URI"), None);
    assert_eq!(var(&vars, "SAMLD_EXEC"), Some("prod"));

    // `env` for sh, evaluated by sh.
    let out = world.samlctl(&["env", "prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = format!(
        "{}printf '%s %s %s' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SESSION_TOKEN\" \"$AWS_REGION\"",
        stdout(&out)
    );
    let evaluated = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&evaluated.stdout),
        format!(
            "{} {} us-east-2",
            issued.access_key_id, issued.session_token
        )
    );

    let fish = stdout(&world.samlctl(&["env", "prod", "--shell", "fish"]));
    assert!(
        fish.contains(&format!(
            "set -gx AWS_ACCESS_KEY_ID '{}';",
            issued.access_key_id
        )),
        "{fish}"
    );
    let pwsh = stdout(&world.samlctl(&["env", "prod", "--shell", "powershell"]));
    assert!(
        pwsh.contains("$Env:AWS_DEFAULT_REGION = 'us-east-2'"),
        "{pwsh}"
    );
}

#[test]
fn console_signs_in_through_the_federation_endpoint() {
    let world = World::new();
    let out = world.samlctl(&["console", "prod", "--print", "--duration", "2h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = world.federation.requests();
    assert_eq!(requests.len(), 1);
    let issued = world.issued();
    assert_eq!(requests[0].session_id, issued.access_key_id);
    assert_eq!(requests[0].session_key, issued.secret_access_key);
    assert_eq!(requests[0].session_token, issued.session_token);
    assert_eq!(requests[0].session_duration, Some(7200));
    assert_eq!(
        stdout(&out),
        format!(
            "{}?Action=login&Issuer=samld&Destination=https%3A%2F%2Fconsole.aws.amazon.com%2Fconsole%2Fhome%3Fregion%3Dus-east-2&SigninToken=fake-signin-token-1%2B%2F%3D\n",
            world.federation.url()
        )
    );

    // Without --print the URL goes to $BROWSER, not to the terminal.
    let opened = world.env.path().join("opened-url");
    let browser = world.env.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let out = world
        .env
        .command("samlctl")
        .args(["console", "prod"])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let url = std::fs::read_to_string(&opened).unwrap();
    assert!(
        url.ends_with("&SigninToken=fake-signin-token-2%2B%2F%3D"),
        "{url}"
    );
    assert!(!stdout(&out).contains("SigninToken") && !stderr(&out).contains("SigninToken"));

    let log = world.daemon.log();
    assert!(
        !log.contains("fake-signin-token"),
        "the daemon logged a sign-in token"
    );
    assert!(!log.contains(&issued.secret_access_key));
}

#[test]
fn aws_config_writes_a_profile_the_aws_cli_can_use() {
    let world = World::new();
    let aws_dir = world.env.path().join("aws");
    std::fs::create_dir_all(&aws_dir).unwrap();
    let config = aws_dir.join("config");
    let credentials = aws_dir.join("credentials");
    std::fs::write(&config, "[default]\noutput = json\n").unwrap();
    std::fs::write(
        &credentials,
        "[prod]\naws_access_key_id = AKIASTALE\naws_secret_access_key = stale\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        world
            .env
            .command("samlctl")
            .args(args)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .output()
            .unwrap()
    };

    let helper = samld_tests::fixture::bin_path("samld-helper");
    let printed = run(&["aws-config", "prod"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert_eq!(
        stdout(&printed),
        format!(
            "[profile prod]\ncredential_process = {} prod\nregion = us-east-2\n",
            helper.display()
        )
    );
    assert!(
        stderr(&printed).contains("static keys in [prod]"),
        "warns about the shadowing keys: {}",
        stderr(&printed)
    );

    let written = run(&["aws-config", "prod", "--write"]);
    assert!(written.status.success(), "{}", stderr(&written));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        format!(
            "[default]\noutput = json\n\n[profile prod]\ncredential_process = {} prod\nregion = us-east-2\n",
            helper.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(aws_dir.join("config.bak")).unwrap(),
        "[default]\noutput = json\n"
    );

    require("aws", &["--version"]);
    // With the stale keys gone, the AWS CLI runs samld-helper from the written profile.
    std::fs::write(&credentials, "").unwrap();
    let sts = world.sts.endpoint_url();
    let mut aws = std::process::Command::new("aws");
    aws.args([
        "sts",
        "get-caller-identity",
        "--profile",
        "prod",
        "--endpoint-url",
        &sts,
    ])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", world.env.path())
    .env("SAMLD_SOCKET", &world.env.socket)
    .env("SAMLD_CONFIG", &world.env.config)
    .env("AWS_CONFIG_FILE", &config)
    .env("AWS_SHARED_CREDENTIALS_FILE", &credentials);
    for (k, v) in &world.env.extra_env {
        aws.env(k, v);
    }
    let out = aws.output().unwrap();
    assert!(out.status.success(), "aws: {}", stderr(&out));
    assert_eq!(
        world.sts.caller_identity_keys().last(),
        Some(&world.issued().access_key_id)
    );
}

#[test]
fn exec_warns_when_the_default_profile_would_win_over_the_endpoint() {
    let world = World::new();
    let config = world.env.path().join("aws-config");
    std::fs::write(
        &config,
        "[default]\ncredential_process = samld-helper stage\n",
    )
    .unwrap();
    let out = world
        .env
        .command("samlctl")
        .args(["exec", "prod", "--", "true"])
        .env("AWS_CONFIG_FILE", &config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[default] in") && stderr(&out).contains("--static"),
        "{}",
        stderr(&out)
    );
    let quiet = world.samlctl(&["exec", "prod", "--", "true"]);
    assert_eq!(stderr(&quiet), "", "no warning without such a profile");
}

/// Waits for `child` (whose stdout was taken) to exit and returns its status and stderr; past
/// `within` it is killed and the test fails with `what`.
fn finish_within(child: Child, within: Duration, what: &str) -> std::process::Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(output) => output.expect("wait for samlctl"),
        Err(_) => {
            // SAFETY: kill only signals our own (not yet reaped) child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("{what}: samlctl exec was still running after {within:?}");
        }
    }
}

#[test]
fn a_running_exec_does_not_hold_up_daemon_shutdown() {
    let world = World::new();
    let mut child = spawn_exec(
        &world,
        &["prod", "--", "sh", "-c", "echo ready; read x; exit 0"],
        &[],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "ready");
    let World { daemon, .. } = world;
    daemon.signal(libc::SIGTERM);
    let started = Instant::now();
    let (status, log) = daemon.wait(Duration::from_secs(20));
    assert!(status.success(), "{log}");
    // Held up, shutdown would end only at the server's grace period (10 s); unheld, it takes
    // milliseconds. 8 s tells the two apart with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown waited for the exec's connection ({:?})",
        started.elapsed()
    );
    // The token died with the daemon, and the port is free for anyone to take: the program
    // is ended rather than left to ask whoever binds it next (stdin stays open: it would
    // otherwise wait forever).
    let stdin = child.stdin.take();
    let exec = finish_within(child, Duration::from_secs(20), "after samld stopped");
    drop(stdin);
    assert!(!exec.status.success());
    assert!(
        stderr(&exec).contains("samld stopped"),
        "says why: {}",
        stderr(&exec)
    );
}

#[test]
fn the_program_is_ended_when_the_daemon_dies() {
    let world = World::new();
    let mut child = spawn_exec(
        &world,
        &[
            "prod",
            "--",
            "sh",
            "-c",
            r#"trap 'echo got-term; exit 143' TERM; echo ready; i=0; while [ $i -lt 60 ]; do sleep 1 & wait $!; i=$((i+1)); done"#,
        ],
        &[],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "ready");
    let World { daemon, .. } = world;
    // No goodbye: the way an OOM kill or a crash ends it.
    daemon.signal(libc::SIGKILL);
    let _ = daemon.wait(Duration::from_secs(20));

    let exec = finish_within(child, Duration::from_secs(20), "after samld was killed");
    read_until(&mut out, "got-term");
    assert_eq!(
        exec.status.code(),
        Some(1),
        "samlctl fails, whatever the program made of the TERM: {}",
        stderr(&exec)
    );
    let err = stderr(&exec);
    assert!(
        err.contains("samld stopped") && err.contains("sent it SIGTERM"),
        "says why and what it did: {err}"
    );
}

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_a_grace_period() {
    let world = World::new();
    let mut child = spawn_exec(
        &world,
        &[
            "prod",
            "--",
            "sh",
            "-c",
            r#"trap 'echo got-term' TERM; echo ready; i=0; while [ $i -lt 60 ]; do sleep 1 & wait $!; i=$((i+1)); done"#,
        ],
        &[],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "ready");
    let World { daemon, .. } = world;
    daemon.signal(libc::SIGKILL);
    let _ = daemon.wait(Duration::from_secs(20));

    let exec = finish_within(
        child,
        Duration::from_secs(30),
        "with a program ignoring TERM",
    );
    read_until(&mut out, "got-term");
    assert_eq!(exec.status.code(), Some(1), "{}", stderr(&exec));
    let err = stderr(&exec);
    assert!(err.contains("SIGKILL"), "says it killed it: {err}");
}

const ENDPOINT_PROBE_ENV: &str = "SAMLD_TEST_ENDPOINT_PROBE";

/// The program `samlctl exec` runs in the flood test (this test binary again): one request
/// with its token, as an SDK makes it; prints the status and the key id.
fn endpoint_probe() {
    let url = std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI").expect("FULL_URI");
    let token = std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN").expect("token");
    let (status, body) = get_with_token(&url, &token);
    let key = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|doc| doc["AccessKeyId"].as_str().map(str::to_owned))
        .unwrap_or_default();
    println!("probe: {status} {key}");
}

/// One token-less (or wrong-token) keep-alive request on a fresh connection: the status,
/// and whether the server then closed the connection (within `within`).
fn refused_request(addr: &str, auth: Option<&str>, within: Duration) -> (u16, bool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, true);
    };
    stream.set_read_timeout(Some(within)).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET /v1/credentials/prod HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, true);
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the connection ends or goes quiet: a refusal is a few hundred bytes.
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break false;
            }
            Err(_) => break true,
        }
    };
    let text = String::from_utf8_lossy(&seen);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, closed)
}

const FLOOD_ENV: &str = "SAMLD_TEST_FLOOD_ADDR";

/// The attacker's side (this test binary again, run as another user): floods `addr` with
/// connections that keep alive after a refused request and connections that never say
/// anything, each reopened as soon as it ends, and reports on stdout how many it opened.
fn flood(addr: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let opened = Arc::new(AtomicUsize::new(0));
    for i in 0..96 {
        let (opened, addr) = (opened.clone(), addr.to_owned());
        std::thread::spawn(move || {
            loop {
                opened.fetch_add(1, Ordering::Relaxed);
                if i % 3 == 0 {
                    // Silent: holds a slot until the server gives up on it.
                    if let Ok(mut s) = TcpStream::connect(&addr) {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = s.read(&mut [0u8; 64]);
                    }
                } else {
                    let auth = (i % 3 == 1).then_some("not-a-token");
                    refused_request(&addr, auth, Duration::from_secs(2));
                }
            }
        });
    }
    let mut reported = 0;
    // Runs until the test kills it.
    loop {
        let now = opened.load(Ordering::Relaxed);
        if now >= reported + 100 {
            reported = now;
            println!("opened {now}");
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_flood_of_tokenless_connections_cannot_starve_the_program() {
    if std::env::var_os(ENDPOINT_PROBE_ENV).is_some() {
        endpoint_probe();
        return;
    }
    if let Ok(addr) = std::env::var(FLOOD_ENV) {
        flood(&addr);
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && std::path::Path::new("/usr/bin/setpriv").exists(),
        "this test floods the endpoint as another user: run it as root with setpriv \
         (util-linux) installed, as CI does"
    );
    let world = World::new();
    let (mut holder, _holder_out, addr) = hold_endpoint(&world);

    // A refused keep-alive request gets its answer and then the connection is closed at
    // once (not when the server's idle timeout would end it anyway).
    let (status, closed) = refused_request(&addr, None, Duration::from_secs(1));
    assert_eq!(status, 401);
    assert!(closed, "the connection stayed open after a 401");
    let (status, closed) = refused_request(&addr, Some("guess"), Duration::from_secs(1));
    assert_eq!(status, 401);
    assert!(closed, "the connection stayed open after a refused token");

    // The checkout may sit where nobody cannot reach (under /root): the flood runs a copy
    // of this test binary from a directory of its own.
    let bin_dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let flood = Flood::start(bin_dir.path(), &me, &addr);

    // The real program, started during the flood, still gets its credentials, every time.
    let failures = probe_during_flood(&world, &me);
    flood.stop();
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert!(
        failures.is_empty(),
        "the program got no credentials during the flood:\n{}",
        failures.join("\n")
    );
    assert_few_warnings(&world);
}

/// Starts an exec that keeps the endpoint listening until its stdin closes, and finds its
/// port, as a port scan would. Returns the exec, its stdout, and the endpoint's address.
fn hold_endpoint(world: &World) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut holder = spawn_exec(
        world,
        &[
            "prod",
            "--",
            "sh",
            "-c",
            r#"echo "$AWS_CONTAINER_CREDENTIALS_FULL_URI"; echo ready; read x"#,
        ],
        &[],
    );
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let url = read_until(&mut out, "ready");
    let addr = url
        .trim()
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("endpoint URL")
        .to_owned();
    (holder, out, addr)
}

/// Another local user (nobody) flooding the endpoint, from a copy of this test binary.
struct Flood {
    process: Child,
    /// Reads the flood's reports, or it would block on a full pipe and stop flooding.
    drain: std::thread::JoinHandle<()>,
}

impl Flood {
    /// Copies `me` into `bin_dir`, runs it as nobody against `addr`, and returns once the
    /// flood has saturated the endpoint: well over its 64 connections have been opened.
    fn start(bin_dir: &std::path::Path, me: &std::path::Path, addr: &str) -> Flood {
        use std::os::unix::fs::PermissionsExt;

        std::fs::set_permissions(bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = bin_dir.join("flood");
        std::fs::copy(me, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut process = std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&copy)
            .args([
                "--exact",
                "a_flood_of_tokenless_connections_cannot_starve_the_program",
                "--nocapture",
            ])
            .env(FLOOD_ENV, addr)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the flood as nobody");
        let mut flood_out = BufReader::new(process.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            let n = flood_out.read_line(&mut line).unwrap();
            assert!(n > 0, "the flood ended early");
            if line
                .strip_prefix("opened ")
                .and_then(|n| n.trim().parse::<usize>().ok())
                .is_some_and(|n| n >= 300)
            {
                break;
            }
        }
        let drain = std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = flood_out.read_to_string(&mut sink);
        });
        Flood { process, drain }
    }

    fn stop(mut self) {
        // SAFETY: kill only signals our own child (setpriv exec'd the flood in its place).
        unsafe {
            libc::kill(self.process.id() as i32, libc::SIGKILL);
        }
        let _ = self.process.wait();
        let _ = self.drain.join();
    }
}

/// Runs the real program (this test binary as the endpoint's prober) under `samlctl exec`
/// three times; what went wrong in each attempt that got no credentials.
fn probe_during_flood(world: &World, me: &std::path::Path) -> Vec<String> {
    let mut failures = Vec::new();
    for attempt in 0..3 {
        let out = world
            .env
            .command("samlctl")
            .args(["exec", "prod", "--"])
            .arg(me)
            .args([
                "--exact",
                "a_flood_of_tokenless_connections_cannot_starve_the_program",
                "--nocapture",
            ])
            .env(ENDPOINT_PROBE_ENV, "1")
            .output()
            .unwrap();
        let text = stdout(&out);
        if !text.contains(&format!("probe: 200 {}", world.issued().access_key_id)) {
            failures.push(format!("attempt {attempt}: {text}{}", stderr(&out)));
        }
    }
    failures
}

/// Thousands of refusals, a handful of warnings: still saying that requests were refused.
fn assert_few_warnings(world: &World) {
    let log = world.daemon.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(
        warnings.len() <= 4,
        "{} WARN lines for one flood; the first:\n{}",
        warnings.len(),
        warnings[..20.min(warnings.len())].join("\n")
    );
    assert!(
        warnings.iter().any(|w| w.contains("refused")),
        "the refusals are still reported: {log}"
    );
}
